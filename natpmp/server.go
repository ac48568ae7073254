package natpmp

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"time"

	"golang.org/x/net/ipv4"
)

// A Handler owns a gateway's mapping table. HandlePacket and Server call it
// with requests already decoded and validated, and turn its answers into
// replies. client is the IPv4 source address of the request, which RFC 6886
// §3.3 makes the internal address of any mapping: a host cannot map ports
// for another. Methods may be called concurrently.
type Handler interface {
	// ExternalAddress returns the gateway's external IPv4 address, or a
	// failure code. Success with an invalid or unspecified address is sent
	// as NetworkFailure: the gateway has no external address to give.
	ExternalAddress(ctx context.Context, client netip.Addr) (netip.Addr, ResultCode)

	// Map creates, renews or deletes a mapping from an external port to
	// client:internalPort and returns the external port and lifetime (in
	// seconds) granted. A request for an internal port the client already
	// has mapped must return the existing external port, so that a
	// retransmitted request gets the same answer (RFC 6886 §3.3).
	//
	// lifetime 0 deletes the client's mapping for internalPort (the
	// suggested port is then meaningless); deleting a mapping that does not
	// exist succeeds. internalPort 0 with lifetime 0 deletes all the
	// client's mappings of proto. On deletion the reply carries external
	// port 0 and lifetime 0 whatever Map returns; on failure it carries
	// lifetime 0 and the external port Map returned (0 if none).
	Map(ctx context.Context, client netip.Addr, proto Protocol, internalPort, suggestedExternal uint16, lifetime uint32) (externalPort uint16, granted uint32, result ResultCode)
}

// HandlePacket answers one request packet req from client, on behalf of h,
// stamping the reply with epoch (the seconds since the gateway's mapping
// table started empty). It returns false when the packet must be dropped
// without a reply: when it is too short, or is itself a response.
//
// A packet whose version is not 0 gets the Unsupported Version reply, which
// is how a PCP client learns to fall back to NAT-PMP; a daemon that also
// serves PCP must hand version-2 packets to its PCP server before calling
// HandlePacket. A version-0 request with an unknown opcode is echoed back
// with the response bit and result UnsupportedOpcode (RFC 6886 §3.5); bytes
// 4-7 of the echo carry epoch, as they do in every response, because
// clients (libnatpmp, this package) read the epoch there.
func HandlePacket(ctx context.Context, req []byte, client netip.Addr, h Handler, epoch uint32) (resp []byte, ok bool) {
	r, err := ParseRequest(req)
	switch {
	case errors.Is(err, ErrUnsupportedVersion):
		// Opcode 128 as corrected by erratum 3618, not the 0 of the RFC's
		// figure.
		return AppendResponse(nil, Response{Op: OpExternalAddress, Result: UnsupportedVersion, Epoch: epoch}), true
	case errors.Is(err, ErrUnsupportedOpcode):
		return unsupportedOpcodeReply(req, epoch), true
	case err != nil:
		return nil, false
	}
	client = client.Unmap()
	out := Response{Op: r.Op, Epoch: epoch}
	switch r.Op {
	case OpExternalAddress:
		addr, rc := h.ExternalAddress(ctx, client)
		addr = addr.Unmap()
		if rc == Success && (!addr.Is4() || addr.IsUnspecified()) {
			rc = NetworkFailure
		}
		out.Result = rc
		if rc == Success {
			out.ExternalAddr = addr
		}
	case OpMapUDP, OpMapTCP:
		ext, granted, rc := h.Map(ctx, client, Protocol(r.Op), r.InternalPort, r.SuggestedExternalPort, r.Lifetime)
		out.Result = rc
		out.InternalPort = r.InternalPort // lets the client tell which request this answers
		switch {
		case rc != Success:
			out.ExternalPort = ext // RFC 6886 §3.4: lifetime undefined, sent as 0
		case r.Lifetime == 0:
			// RFC 6886 §3.4: a successful deletion answers port 0,
			// lifetime 0, so that a retransmission gets the same reply.
		default:
			out.ExternalPort = ext
			out.Lifetime = granted
		}
	}
	return AppendResponse(nil, out), true
}

// unsupportedOpcodeReply echoes req as the reply to an unknown opcode.
func unsupportedOpcodeReply(req []byte, epoch uint32) []byte {
	b := make([]byte, max(len(req), responseHeaderLen))
	copy(b, req)
	b[0] = Version
	b[1] |= opReply
	binary.BigEndian.PutUint16(b[2:], uint16(UnsupportedOpcode))
	binary.BigEndian.PutUint32(b[4:], epoch)
	return b
}

// A Server answers NAT-PMP requests on a UDP socket through a Handler.
// Unsolicited address announcements (RFC 6886 §3.2.1) are not sent yet.
type Server struct {
	// Handler answers the requests. Required.
	Handler Handler

	// Epoch returns the seconds since the gateway's mapping table last
	// started empty (RFC 6886 §3.6); it must restart from 0 whenever the
	// table is lost. Nil means seconds since Serve was called.
	Epoch func() uint32

	// Interfaces, when not empty, restricts the server to requests that
	// arrive on these network interfaces and are addressed to one of that
	// interface's own addresses. RFC 6886 §3.3 forbids accepting requests
	// from the external side or addressed to the external address, so a
	// gateway lists its LAN interfaces here. Empty means all interfaces.
	Interfaces []string

	// Addr is the UDP address Serve listens on. Empty means ":5351".
	Addr string

	// Logger receives a debug line per request and warnings for failures.
	// Nil means no logging.
	Logger *slog.Logger
}

// maxRequestLen bounds what the server reads; NAT-PMP requests are at most
// 12 bytes, PCP packets at most 1100.
const maxRequestLen = 1100

// Serve listens on s.Addr and answers requests until ctx ends, then returns
// nil. It returns an error if the socket cannot be opened or fails.
func (s *Server) Serve(ctx context.Context) error {
	addr := s.Addr
	if addr == "" {
		addr = fmt.Sprintf(":%d", ServerPort)
	}
	var lc net.ListenConfig
	pc, err := lc.ListenPacket(ctx, "udp4", addr)
	if err != nil {
		return fmt.Errorf("natpmp: cannot listen on %s: %w (is another NAT-PMP or PCP daemon, such as miniupnpd, already using the port?)", addr, err)
	}
	defer pc.Close()
	return s.ServePacketConn(ctx, pc)
}

// ServePacketConn answers requests read from pc until ctx ends, then returns
// nil; it does not close pc. When pc is an IPv4 *net.UDPConn, replies leave
// from the address each request was sent to, so that a client, which only
// accepts replies from the address it asked, gets them even from a gateway
// with several addresses on the interface. Requests are answered one at a
// time, in arrival order.
func (s *Server) ServePacketConn(ctx context.Context, pc net.PacketConn) error {
	if s.Handler == nil {
		return errors.New("natpmp: Server.Handler is nil; set it to the gateway's mapping table")
	}
	log := s.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	epoch := s.Epoch
	if epoch == nil {
		start := time.Now()
		epoch = func() uint32 { return uint32(time.Since(start) / time.Second) }
	}

	// With a UDP socket, IP_PKTINFO tells which interface and address each
	// request came in on; other PacketConns (tests, wrappers) are served
	// without it.
	var p *ipv4.PacketConn
	if uc, ok := pc.(*net.UDPConn); ok {
		p = ipv4.NewPacketConn(uc)
		if p.SetControlMessage(ipv4.FlagDst|ipv4.FlagInterface, true) != nil {
			p = nil // not an IPv4 socket
		}
	}
	if len(s.Interfaces) > 0 && p == nil {
		return fmt.Errorf("natpmp: Server.Interfaces is set but the socket on %s cannot report which interface a packet arrived on; use an IPv4 UDP socket", pc.LocalAddr())
	}
	read := func(b []byte) (int, *ipv4.ControlMessage, net.Addr, error) {
		if p != nil {
			return p.ReadFrom(b)
		}
		n, src, err := pc.ReadFrom(b)
		return n, nil, src, err
	}
	write := func(b []byte, cm *ipv4.ControlMessage, dst net.Addr) (int, error) {
		if p != nil {
			return p.WriteTo(b, cm, dst)
		}
		return pc.WriteTo(b, dst)
	}

	stop := context.AfterFunc(ctx, func() { pc.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()

	buf := make([]byte, maxRequestLen)
	for {
		n, cm, src, err := read(buf)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return fmt.Errorf("natpmp: reading requests on %s: %w", pc.LocalAddr(), err)
		}
		from, ok := src.(*net.UDPAddr)
		if !ok {
			continue
		}
		client := from.AddrPort()
		if !s.accept(cm, client, log) {
			continue
		}
		resp, ok := HandlePacket(ctx, buf[:n], client.Addr(), s.Handler, epoch())
		if !ok {
			log.Debug("natpmp: dropped a packet that is not a request", "client", client, "len", n)
			continue
		}
		if log.Enabled(ctx, slog.LevelDebug) {
			log.Debug("natpmp: request", "client", client, "request", fmt.Sprintf("% x", buf[:n]), "reply", fmt.Sprintf("% x", resp))
		}
		var wcm *ipv4.ControlMessage
		if cm != nil && cm.Dst != nil && !cm.Dst.IsUnspecified() {
			wcm = &ipv4.ControlMessage{Src: cm.Dst}
		}
		if _, err := write(resp, wcm, from); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			log.Warn("natpmp: cannot send reply", "client", client, "err", err)
		}
	}
}

// accept decides whether to answer a request that arrived with control
// message cm (nil when the socket cannot tell).
func (s *Server) accept(cm *ipv4.ControlMessage, client netip.AddrPort, log *slog.Logger) bool {
	if _, why := CheckIngress(cm, s.Interfaces); why != "" {
		log.Debug("natpmp: dropped a request "+why, "client", client)
		return false
	}
	return true
}

// CheckIngress decides whether a server on port 5351 (NAT-PMP, or PCP
// sharing the socket) answers a request that arrived with control message
// cm (IP_PKTINFO: enable ipv4.FlagDst|ipv4.FlagInterface on the socket).
// A request sent to a multicast or broadcast address is never answered
// (RFC 6886 §3.3): answering would answer for every gateway. With
// interfaces set, the request must have arrived on one of them, addressed
// to that interface's own address: acceptance goes by ingress, never by an
// address the client claims. It returns the address the request was sent
// to, or why it is dropped.
func CheckIngress(cm *ipv4.ControlMessage, interfaces []string) (dst netip.Addr, why string) {
	if cm != nil && cm.Dst != nil {
		d, ok := netip.AddrFromSlice(cm.Dst)
		dst = d.Unmap()
		if !ok || dst.IsMulticast() || dst == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
			return netip.Addr{}, fmt.Sprintf("not sent to a unicast address (%v)", cm.Dst)
		}
	}
	if len(interfaces) == 0 {
		return dst, ""
	}
	if cm == nil || cm.IfIndex == 0 || !dst.IsValid() {
		return netip.Addr{}, "whose arrival interface or address is unknown"
	}
	// Looked up per packet rather than once, so that interfaces that are
	// re-created (bridges, VPN tunnels) keep working; NAT-PMP traffic is
	// a handful of packets per client per hour.
	ifi, err := net.InterfaceByIndex(cm.IfIndex)
	if err != nil || !slices.Contains(interfaces, ifi.Name) {
		return netip.Addr{}, fmt.Sprintf("from interface %d, which is not one it serves", cm.IfIndex)
	}
	addrs, err := ifi.Addrs()
	if err != nil {
		return netip.Addr{}, fmt.Sprintf("on %s, whose addresses cannot be listed: %v", ifi.Name, err)
	}
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(ipn.IP); ok && ip.Unmap() == dst {
				return dst, ""
			}
		}
	}
	return netip.Addr{}, fmt.Sprintf("on %s not addressed to its own address (%v)", ifi.Name, dst)
}
