// Package pmp serves UDP port 5351 of a gateway, where NAT-PMP (RFC 6886)
// and PCP (RFC 6887) share one socket: it owns the socket, decides which
// requests are answered (those that arrived on an internal interface,
// addressed to that interface's own address), hands each request to the
// protocol its version byte names, and sends the multicast announcements
// both protocols make when the gateway starts or its external address
// changes.
//
// It holds no protocol logic of its own. The codecs and the request
// handling are the protocol packages' server halves, natpmp.HandlePacket
// and pcp.HandlePacket, each over the Handler a gateway implements on its
// mapping table (package gateway/daemon does); this package is the one
// server both are served by, so that there is one read loop, one ingress
// rule and one announcement schedule for the port.
//
// Dispatch: a packet whose first byte is NAT-PMP's version 0 goes to
// NAT-PMP; any other goes to PCP (which answers versions it does not speak
// with UNSUPP_VERSION), or, with PCP off, to NAT-PMP, whose Unsupported
// Version answer tells a PCP client to fall back (pcp.IsPCP). A server
// with NAT-PMP off hands everything to PCP.
package pmp

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/ipv4"

	"github.com/portfwd/portfwd/internal/netroute"
	"github.com/portfwd/portfwd/natpmp"
	"github.com/portfwd/portfwd/pcp"
)

// A Server answers NAT-PMP and PCP requests on one UDP socket. Set its
// fields, then call Serve or ServePacketConn; the fields must not change
// afterwards.
type Server struct {
	// NATPMP answers NAT-PMP requests; nil turns NAT-PMP off, and PCP
	// then answers them with UNSUPP_VERSION (RFC 6887 §9). One of NATPMP
	// and PCP is required.
	NATPMP natpmp.Handler
	// NATPMPEpoch returns NAT-PMP's seconds since the gateway's mapping
	// table last started empty (RFC 6886 §3.6): it restarts from 0 only
	// when the table is lost. Nil means seconds since Serve was called.
	NATPMPEpoch func() uint32

	// PCP answers PCP requests; nil turns PCP off, and NAT-PMP then
	// answers them with its Unsupported Version, which tells a PCP client
	// to fall back.
	PCP pcp.Handler
	// PCPEpoch returns PCP's epoch (RFC 6887 §8.5): NAT-PMP's, except that
	// it also restarts when the external address changes. Nil means
	// seconds since Serve was called.
	PCPEpoch func() uint32
	// PCPOptions tune PCP's checks and lifetimes.
	PCPOptions pcp.ServerOptions

	// Interfaces, when not empty, restricts the server to requests that
	// arrive on these network interfaces and are addressed to one of that
	// interface's own addresses: RFC 6886 §3.3 and RFC 6887 §8.3 forbid
	// answering the external side, or a request addressed to the external
	// address, so a gateway lists its LAN interfaces here. Empty means all
	// interfaces. Announcements go to these interfaces only.
	Interfaces []string

	// ExternalAddress returns the external address NAT-PMP announcements
	// carry (the zero Addr while there is none). Nil turns announcements
	// off; with it, Serve announces at once, and Announce again.
	ExternalAddress func() netip.Addr

	// Addr is the UDP address Serve listens on. Empty means ":5351".
	Addr string

	// Logger receives a debug line per request and warnings for failures.
	// Nil means no logging.
	Logger *slog.Logger

	// RequestContext, when set, derives each request's context from the
	// server's, as http.Server.ConnContext does for a connection: a
	// gateway attaches per-request state there that its handlers fill in
	// and Answered reads.
	RequestContext func(ctx context.Context) context.Context
	// Answered, when set, is called after each request is answered, with
	// the request's context and what was answered, on the worker's
	// goroutine (it must not block for long).
	Answered func(ctx context.Context, a Answer)

	// Group, when set, is called when a worker has read n > 1 requests at
	// once, which it then answers concurrently: it returns the context
	// the n answers run under, and done, which each of them calls once,
	// when answered. A gateway uses it for group commit
	// (gateway.CommitGroup): the changes of requests that arrived
	// together go to its backend and store together. A request read
	// alone is answered as if Group were nil. The router build (the
	// gatewayonly tag) reads one request at a time and never calls it.
	Group func(ctx context.Context, n int) (groupCtx context.Context, done func())

	ingress ingressCache

	mu      sync.Mutex
	conn    *packetConn // while serving
	ann     *announcer  // while serving, with ExternalAddress
	ann6    *announcer  // while serving PCP over IPv6, with ExternalAddress
	started time.Time
	served  bool
}

// Answer is a request and the server's answer to it, for Server.Answered.
type Answer struct {
	// Version is the protocol that answered: natpmp.Version (0) or
	// pcp.Version (2).
	Version uint8
	// Client is where the request came from.
	Client netip.AddrPort
	// Op is the request's opcode, and Result the answer's result code
	// (0 is success).
	Op     uint8
	Result uint16
	// Request and Response are the packets.
	Request, Response []byte
	// Panic is set when handling the request panicked: nothing was
	// answered (the panic was logged).
	Panic any
}

// Protocol is the name of the answering protocol: "natpmp" or "pcp".
func (a Answer) Protocol() string {
	if a.Version == natpmp.Version {
		return "natpmp"
	}
	return "pcp"
}

// Action names the request: for NAT-PMP "external_address", "map_udp",
// "map_tcp" (the words of the daemon's metrics), for PCP its opcode in
// lower case ("map", "peer", "announce").
func (a Answer) Action() string {
	if a.Version != natpmp.Version {
		return strings.ToLower(pcp.Opcode(a.Op).String())
	}
	switch natpmp.Opcode(a.Op) {
	case natpmp.OpExternalAddress:
		return "external_address"
	case natpmp.OpMapUDP:
		return "map_udp"
	case natpmp.OpMapTCP:
		return "map_tcp"
	}
	return "opcode " + strconv.Itoa(int(a.Op))
}

// ResultName is the result code's name in the answering protocol.
func (a Answer) ResultName() string {
	if a.Version == natpmp.Version {
		return natpmp.ResultCode(a.Result).String()
	}
	return pcp.ResultCode(a.Result).String()
}

// Mapping reports whether the request asked for a mapping (NAT-PMP's map
// opcodes, PCP's MAP and PEER) rather than an address or an ANNOUNCE.
func (a Answer) Mapping() bool {
	if a.Version == natpmp.Version {
		return a.Op == uint8(natpmp.OpMapUDP) || a.Op == uint8(natpmp.OpMapTCP)
	}
	return a.Op == uint8(pcp.OpMap) || a.Op == uint8(pcp.OpPeer)
}

// maxPacket is the largest request read: PCP's 1100 bytes, and one more to
// tell an oversized packet from a full one.
const maxPacket = pcp.MaxPacketLen + 1

// Requests are answered by workers goroutines, so that one slow request
// (deleting thousands of mappings) never holds up the others. A client has
// at most perClient requests in progress; beyond that its packets are
// dropped, as a busy UDP server does, and the client's retransmission gets
// the answer. While every worker is busy, requests wait in the socket's
// buffer, and beyond it the kernel drops them.
const (
	workers   = 4
	perClient = 2
)

// Listen opens the UDP socket a Server serves, on addr ("" means :5351,
// every IPv4 address: the server's Interfaces then say which requests are
// answered). The socket reports each packet's arrival interface and
// address from the start, so that a request that arrives before serving
// starts is not dropped as of unknown origin.
func Listen(ctx context.Context, addr string) (net.PacketConn, error) {
	if addr == "" {
		addr = ":" + strconv.Itoa(natpmp.ServerPort)
	}
	var lc net.ListenConfig
	pc, err := lc.ListenPacket(ctx, "udp4", addr)
	if err != nil {
		return nil, fmt.Errorf("NAT-PMP and PCP on UDP %s: %w (is another NAT-PMP or PCP daemon, such as miniupnpd, running?)", addr, err)
	}
	if _, err := newPacketConn(pc); err != nil {
		pc.Close()
		return nil, err
	}
	return pc, nil
}

// Serve listens on s.Addr and answers requests until ctx ends, then
// returns nil. It returns an error if the socket cannot be opened or
// fails.
func (s *Server) Serve(ctx context.Context) error {
	pc, err := Listen(ctx, s.Addr)
	if err != nil {
		return err
	}
	defer pc.Close()
	return s.ServePacketConn(ctx, pc)
}

// ServePacketConn answers requests read from pc until ctx ends, then
// returns nil; it does not close pc. It may be called once. When pc is an
// IPv4 *net.UDPConn, replies leave from the address each request was sent
// to, so that a client, which only accepts replies from the address it
// asked, gets them even from a gateway with several addresses on the
// interface; other PacketConns (tests, wrappers) are served without
// knowing where a request arrived, which Interfaces needs.
func (s *Server) ServePacketConn(ctx context.Context, pc net.PacketConn) error {
	if s.NATPMP == nil && s.PCP == nil {
		return errors.New("pmp: Server.NATPMP and Server.PCP are nil; set them to the gateway's mapping table")
	}
	c, err := newPacketConn(pc)
	if err != nil {
		return err
	}
	if len(s.Interfaces) > 0 && c.p == nil {
		return fmt.Errorf("pmp: Server.Interfaces is set but the socket on %s cannot report which interface a packet arrived on; use an IPv4 UDP socket", pc.LocalAddr())
	}
	s.mu.Lock()
	if s.served {
		s.mu.Unlock()
		return errors.New("pmp: ServePacketConn called twice")
	}
	s.served = true
	s.conn = c
	s.started = time.Now()
	if s.ExternalAddress != nil && c.p != nil {
		s.ann = newAnnouncer(s.announce)
	}
	ann := s.ann
	s.mu.Unlock()
	if ann != nil {
		// Tell the LAN the gateway (re)started: clients whose mappings
		// were lost see the epoch go back and make them again at once.
		ann.Restart()
		defer ann.Stop()
	}
	return s.serve(ctx, c)
}

// Announce starts a new burst of announcements (RFC 6886 §3.2.1, RFC
// 6887 §14.1.3): the first at once, the other nine over about two
// minutes, each carrying the state of the moment it is sent. A gateway
// calls it when its external address changes. It does nothing unless the
// server is serving with ExternalAddress set. Over IPv6 (ServePCPIPv6)
// the PCP ANNOUNCE goes to [ff02::1]:5350 on the same schedule.
func (s *Server) Announce() {
	s.mu.Lock()
	ann, ann6 := s.ann, s.ann6
	s.mu.Unlock()
	if ann != nil {
		ann.Restart()
	}
	if ann6 != nil {
		ann6.Restart()
	}
}

func (s *Server) logger() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// natpmpEpoch and pcpEpoch are the epochs of the answers.
func (s *Server) natpmpEpoch() uint32 {
	if s.NATPMPEpoch != nil {
		return s.NATPMPEpoch()
	}
	return s.sinceStart()
}

func (s *Server) pcpEpoch() uint32 {
	if s.PCPEpoch != nil {
		return s.PCPEpoch()
	}
	return s.sinceStart()
}

func (s *Server) sinceStart() uint32 {
	s.mu.Lock()
	start := s.started
	s.mu.Unlock()
	return uint32(time.Since(start) / time.Second)
}

// serve answers requests until ctx ends (nil) or the socket fails. Each
// of the workers reads every request waiting (up to maxBatch, batch.go),
// answers them and sends the replies itself: no hand-off between
// goroutines on a request's path, which on a busy machine cost as much as
// answering. Several requests read at once are answered together under
// the Group (group commit). While every worker is busy, requests wait in
// the socket's buffer. The router build reads and answers one request at
// a time (batch_gatewayonly.go).
func (s *Server) serve(ctx context.Context, c *packetConn) error {
	log := s.logger()
	stop := context.AfterFunc(ctx, func() { c.pc.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	var mu sync.Mutex
	inProgress := map[netip.Addr]int{}
	// begin counts a request of client in progress, or reports that the
	// client already has perClient.
	begin := func(client netip.Addr) bool {
		mu.Lock()
		defer mu.Unlock()
		if inProgress[client] >= perClient {
			return false
		}
		inProgress[client]++
		return true
	}
	done := func(client netip.Addr) {
		mu.Lock()
		if inProgress[client]--; inProgress[client] <= 0 {
			delete(inProgress, client)
		}
		mu.Unlock()
	}
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for range workers {
		wg.Go(func() {
			b := newBatch(c)
			for {
				n, err := b.read()
				if ctx.Err() != nil {
					return
				}
				if err != nil {
					errs <- fmt.Errorf("reading NAT-PMP/PCP requests on %s: %w", c.pc.LocalAddr(), err)
					c.pc.SetReadDeadline(time.Unix(1, 0)) // stop the other workers
					return
				}
				reqs := b.reqs[:0]
				for i := range n {
					pkt, cm, from := b.message(i)
					if from == nil {
						continue
					}
					client := from.AddrPort()
					client = netip.AddrPortFrom(client.Addr().Unmap(), client.Port())
					dst, why := s.ingress.check(cm, s.Interfaces)
					if why != "" {
						log.Debug("natpmp: dropped a request "+why, "client", client)
						continue
					}
					if !begin(client.Addr()) {
						log.Debug("natpmp: dropped a request: the client has others in progress", "client", client)
						continue
					}
					reqs = append(reqs, request{pkt: pkt, client: client, dst: dst, from: from})
				}
				b.reqs = reqs
				s.answerAll(ctx, c, reqs)
				for _, r := range reqs {
					done(r.client.Addr())
				}
			}
		})
	}
	wg.Wait()
	select {
	case err := <-errs:
		if ctx.Err() == nil {
			return err
		}
	default:
	}
	return nil
}

// answer dispatches one request and returns the reply, or nil. A panic
// costs this one request only.
func (s *Server) answer(ctx context.Context, pkt []byte, client netip.AddrPort, dst netip.Addr) (resp []byte) {
	log := s.logger()
	if s.RequestContext != nil {
		ctx = s.RequestContext(ctx)
	}
	a := Answer{Client: client, Request: pkt}
	defer func() {
		if p := recover(); p != nil {
			log.Error("natpmp: panic while answering a request; dropped it", "client", client, "panic", p, "stack", string(debug.Stack()))
			resp = nil
			a.Panic, a.Response = p, nil
		}
		if resp != nil || a.Panic != nil {
			if s.Answered != nil {
				s.Answered(ctx, a)
			}
		}
	}()
	if s.PCP != nil && (pcp.IsPCP(pkt) || s.NATPMP == nil) {
		a.Version = pcp.Version
		r, ok := pcp.HandlePacket(ctx, pkt, client.Addr(), s.PCP, s.pcpEpoch(), s.PCPOptions)
		if !ok {
			log.Debug("pcp: dropped a packet that is not a request", "client", client, "len", len(pkt))
			return nil
		}
		a.Op, a.Result, a.Response = r[1]&^0x80, uint16(r[3]), r // a response is at least a 24-byte header
		if log.Enabled(ctx, slog.LevelDebug) {
			log.Debug("pcp: request", "client", client, "op", pcp.Opcode(a.Op).String(),
				"result", pcp.ResultCode(a.Result).String(), "request", fmt.Sprintf("% x", pkt), "response", fmt.Sprintf("% x", r))
		}
		return r
	}
	a.Version = natpmp.Version
	r, ok := natpmp.HandlePacket(ctx, pkt, client.Addr(), s.NATPMP, s.natpmpEpoch())
	if !ok {
		log.Debug("natpmp: dropped a packet that is not a request", "client", client, "len", len(pkt))
		return nil
	}
	if log.Enabled(ctx, slog.LevelDebug) {
		log.Debug("natpmp: request", "client", client, "request", fmt.Sprintf("% x", pkt), "reply", fmt.Sprintf("% x", r))
	}
	if len(r) >= 4 {
		a.Op, a.Result = r[1]&^0x80, binary.BigEndian.Uint16(r[2:4])
	}
	a.Response = r
	return r
}

// packetConn is the server's socket: with IP_PKTINFO when it is an IPv4
// UDP socket (p), without otherwise.
type packetConn struct {
	pc net.PacketConn
	p  *ipv4.PacketConn
}

// newPacketConn wraps pc. It asks for the arrival interface and address
// at once, so that a request queued before serving starts still carries
// them (one without would be dropped as of unknown origin).
func newPacketConn(pc net.PacketConn) (*packetConn, error) {
	c := &packetConn{pc: pc}
	if uc, ok := pc.(*net.UDPConn); ok {
		p := ipv4.NewPacketConn(uc)
		if err := p.SetControlMessage(ipv4.FlagDst|ipv4.FlagInterface, true); err == nil {
			c.p = p
		} else if la, ok := uc.LocalAddr().(*net.UDPAddr); ok && la.IP.To4() != nil {
			return nil, fmt.Errorf("the NAT-PMP socket cannot tell which interface a request arrived on: %w", err)
		}
	}
	return c, nil
}

func (c *packetConn) read(b []byte) (int, *ipv4.ControlMessage, net.Addr, error) {
	if c.p != nil {
		return c.p.ReadFrom(b)
	}
	n, src, err := c.pc.ReadFrom(b)
	return n, nil, src, err
}

// reply sends b to to, from the address the request was sent to when it
// is known.
func (c *packetConn) reply(b []byte, from netip.Addr, to net.Addr) error {
	if c.p == nil {
		_, err := c.pc.WriteTo(b, to)
		return err
	}
	var cm *ipv4.ControlMessage
	if from.IsValid() && !from.IsUnspecified() {
		cm = &ipv4.ControlMessage{Src: from.AsSlice()}
	}
	_, err := c.p.WriteTo(b, cm, to)
	return err
}

// CheckIngress decides whether a server on port 5351 answers a request
// that arrived with control message cm (IP_PKTINFO: ipv4.FlagDst and
// ipv4.FlagInterface enabled on the socket; nil when the socket cannot
// tell). A request sent to a multicast or broadcast address is never
// answered (RFC 6886 §3.3, RFC 6887 §8.3): answering would answer for
// every gateway. With interfaces set, the request must have arrived on one
// of them, addressed to that interface's own address: acceptance goes by
// ingress, never by an address the client claims. It returns the address
// the request was sent to, or why it is dropped.
func CheckIngress(cm *ipv4.ControlMessage, interfaces []string) (dst netip.Addr, why string) {
	return checkIngress(cm, interfaces, lookupInterface)
}

// ifaceInfo is what CheckIngress needs to know of an interface.
type ifaceInfo struct {
	name  string
	addrs []netip.Addr
}

// lookupInterface asks the kernel for interface index's name and addresses.
func lookupInterface(index int) (ifaceInfo, error) {
	ifi, err := net.InterfaceByIndex(index)
	if err != nil {
		return ifaceInfo{}, err
	}
	info := ifaceInfo{name: ifi.Name}
	addrs, err := ifi.Addrs()
	if err != nil {
		return info, fmt.Errorf("on %s, whose addresses cannot be listed: %w", ifi.Name, err)
	}
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(ipn.IP); ok {
				info.addrs = append(info.addrs, ip.Unmap())
			}
		}
	}
	return info, nil
}

func checkIngress(cm *ipv4.ControlMessage, interfaces []string, lookup func(int) (ifaceInfo, error)) (dst netip.Addr, why string) {
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
	ifi, err := lookup(cm.IfIndex)
	if ifi.name == "" || !slices.Contains(interfaces, ifi.name) {
		return netip.Addr{}, fmt.Sprintf("from interface %d, which is not one it serves", cm.IfIndex)
	}
	if err != nil {
		return netip.Addr{}, err.Error()
	}
	if slices.Contains(ifi.addrs, dst) {
		return dst, ""
	}
	return netip.Addr{}, fmt.Sprintf("on %s not addressed to its own address (%v)", ifi.name, dst)
}

// ingressTTL is how long the server trusts what it learnt of an interface
// that accepted a request. Asking the kernel per packet (two netlink dumps)
// cost a quarter of the CPU a NAT-PMP request takes; interfaces that are
// re-created (bridges, VPN tunnels) or renumbered are seen again within
// this time, and a request the cached view would drop is always checked
// again against the kernel first, so a new interface or address works at
// once.
const ingressTTL = time.Second

// ingressCache remembers interfaces by index for CheckIngress.
type ingressCache struct {
	mu   sync.Mutex
	byIx map[int]ingressEntry
}

type ingressEntry struct {
	info ifaceInfo
	at   time.Time
}

// check is CheckIngress through the cache: an accepted request needs no
// system call, a dropped one is decided on a fresh look-up.
func (c *ingressCache) check(cm *ipv4.ControlMessage, interfaces []string) (netip.Addr, string) {
	if len(interfaces) == 0 || cm == nil || cm.IfIndex == 0 {
		return CheckIngress(cm, interfaces)
	}
	now := time.Now()
	c.mu.Lock()
	e, ok := c.byIx[cm.IfIndex]
	c.mu.Unlock()
	if ok && now.Sub(e.at) < ingressTTL {
		if dst, why := checkIngress(cm, interfaces, func(int) (ifaceInfo, error) { return e.info, nil }); why == "" {
			return dst, ""
		}
	}
	var fresh ifaceInfo
	dst, why := checkIngress(cm, interfaces, func(ix int) (ifaceInfo, error) {
		info, err := lookupInterface(ix)
		fresh = info
		return info, err
	})
	c.mu.Lock()
	if c.byIx == nil || len(c.byIx) > 1024 {
		c.byIx = make(map[int]ingressEntry) // bounded: indexes grow as interfaces come and go
	}
	if fresh.name != "" {
		c.byIx[cm.IfIndex] = ingressEntry{info: fresh, at: now}
	} else {
		delete(c.byIx, cm.IfIndex)
	}
	c.mu.Unlock()
	return dst, why
}

// announce sends announcement i of the current burst: a NAT-PMP external
// address response and, with PCP on, a PCP ANNOUNCE, each carrying the
// state of this moment.
func (s *Server) announce(i int) {
	log := s.logger()
	defer func() {
		if p := recover(); p != nil {
			log.Error("panic in announcement; carrying on", "panic", p, "stack", string(debug.Stack()))
		}
	}()
	ext := s.ExternalAddress()
	pkts := [][]byte{natpmpAnnouncement(s.natpmpEpoch(), ext)}
	if s.PCP != nil {
		pkts = append(pkts, pcpAnnouncement(s.pcpEpoch()))
	}
	s.mu.Lock()
	c := s.conn
	s.mu.Unlock()
	on, err := multicast(c.p, s.Interfaces, pkts)
	level := slog.LevelDebug
	if i == 0 {
		level = slog.LevelInfo // once per burst; the other nine at debug level
	}
	if err != nil {
		if i == 0 {
			level = slog.LevelWarn
		}
		log.Log(context.Background(), level, "natpmp: cannot send an announcement", "n", i+1, "err", err)
	}
	if len(on) > 0 {
		log.Log(context.Background(), level, "natpmp: announced the external address and epoch on the LAN",
			"n", i+1, "of", announceCount, "external_address", ext, "epoch", s.natpmpEpoch(), "pcp_epoch", s.pcpEpoch(), "interfaces", on)
	}
}

// multicast sends each packet to the all-hosts group (224.0.0.1:5350) on
// every interface of interfaces that can carry it, from the server's
// socket, so that the source port is 5351 and the source address the
// interface's own, which is what clients check an announcement against.
// The outgoing interface is set per packet, never left to the routing
// table: an announcement must not leave by the external interface. It
// returns the interfaces it sent on.
func multicast(p *ipv4.PacketConn, interfaces []string, pkts [][]byte) ([]string, error) {
	dst := net.UDPAddrFromAddrPort(allHostsGroup)
	var sent []string
	var errs []error
	for _, name := range interfaces {
		ifi, src, ok := announceSource(name)
		if !ok {
			continue
		}
		cm := &ipv4.ControlMessage{IfIndex: ifi.Index, Src: src.AsSlice()}
		var err error
		for _, pkt := range pkts {
			if _, werr := p.WriteTo(pkt, cm, dst); werr != nil {
				err = werr
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("on %s: %w", name, err))
			continue
		}
		sent = append(sent, name)
	}
	return sent, errors.Join(errs...)
}

// announceSource looks up the interface name and the address announcements
// leave it from (its first IPv4 address). Interfaces that are down, cannot
// multicast or are loopback get none: there is no LAN host there to hear
// them (and so tests on loopback send nothing).
func announceSource(name string) (*net.Interface, netip.Addr, bool) {
	ifi, err := net.InterfaceByName(name)
	if err != nil || ifi.Flags&net.FlagUp == 0 || ifi.Flags&net.FlagMulticast == 0 || ifi.Flags&net.FlagLoopback != 0 {
		return nil, netip.Addr{}, false
	}
	prefixes, err := netroute.InterfaceAddrs(name)
	if err != nil || len(prefixes) == 0 {
		return nil, netip.Addr{}, false
	}
	return ifi, prefixes[0].Addr(), true
}
