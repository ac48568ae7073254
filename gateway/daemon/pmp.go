package daemon

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/portfwd/portfwd/gateway"
	"github.com/portfwd/portfwd/internal/netroute"
	"github.com/portfwd/portfwd/natpmp"
	"github.com/portfwd/portfwd/pcp"
	"golang.org/x/net/ipv4"
)

// pmpServer answers UDP port 5351, where NAT-PMP and PCP share one socket:
// each packet goes to PCP when its version byte says so (pcp.IsPCP) and
// PCP is enabled, to NAT-PMP otherwise (which answers other versions with
// "unsupported version", telling a PCP client to fall back).
//
// natpmp.Server cannot hand packets to another protocol, so the daemon
// reads the socket itself, with the same rule for where requests are
// accepted: only those that arrived on an internal interface, addressed to
// one of that interface's own unicast addresses (RFC 6886 section 3.3,
// RFC 6887 section 8.3), never from the external side.
type pmpServer struct {
	conn       *net.UDPConn
	p          *ipv4.PacketConn
	interfaces []string
	natpmp     *natpmpHandler
	pcp        *pcp.Server // nil when PCP is disabled
	epoch      func() uint32
	d          *Daemon
}

// newPMPServer wraps the NAT-PMP socket. It asks for the arrival interface
// at once, so that a request queued before serving starts still carries
// it (one without it would be dropped as of unknown origin).
func newPMPServer(conn *net.UDPConn) (*pmpServer, error) {
	p := ipv4.NewPacketConn(conn)
	if err := p.SetControlMessage(ipv4.FlagDst|ipv4.FlagInterface, true); err != nil {
		return nil, fmt.Errorf("the NAT-PMP socket cannot tell which interface a request arrived on: %w", err)
	}
	return &pmpServer{conn: conn, p: p}, nil
}

// maxPMPPacket is the largest request read: PCP's 1100 bytes, and one more
// to tell an oversized packet from a full one.
const maxPMPPacket = pcp.MaxPacketLen + 1

// Requests are answered by pmpWorkers goroutines, so that one slow request
// (deleting thousands of mappings) never holds up the others. A client
// has at most pmpPerClient requests in progress and pmpQueue wait in
// all; beyond that, packets are dropped, as a busy UDP server does, and
// the client's retransmission gets the answer.
const (
	pmpWorkers   = 4
	pmpQueue     = 256
	pmpPerClient = 2
)

// pmpRequest is one packet waiting for a worker.
type pmpRequest struct {
	buf    *[maxPMPPacket]byte
	n      int
	from   *net.UDPAddr
	client netip.AddrPort
	dst    netip.Addr
}

// serve answers requests until ctx ends (nil) or the socket fails.
func (s *pmpServer) serve(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() { s.conn.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	bufs := sync.Pool{New: func() any { return new([maxPMPPacket]byte) }}
	queue := make(chan pmpRequest, pmpQueue)
	var wg sync.WaitGroup
	var mu sync.Mutex
	inProgress := map[netip.Addr]int{}
	for range pmpWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range queue {
				resp := s.answer(ctx, r.buf[:r.n], r.client, r.dst)
				if resp != nil {
					if _, err := s.p.WriteTo(resp, &ipv4.ControlMessage{Src: r.dst.AsSlice()}, r.from); err != nil && ctx.Err() == nil {
						s.d.log.Warn("natpmp: cannot send a reply", "client", r.client, "err", err)
					}
				}
				bufs.Put(r.buf)
				mu.Lock()
				if inProgress[r.client.Addr()]--; inProgress[r.client.Addr()] <= 0 {
					delete(inProgress, r.client.Addr())
				}
				mu.Unlock()
			}
		}()
	}
	defer func() {
		close(queue)
		wg.Wait()
	}()
	for {
		buf := bufs.Get().(*[maxPMPPacket]byte)
		n, cm, src, err := s.p.ReadFrom(buf[:])
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading NAT-PMP/PCP requests: %w", err)
		}
		from, ok := src.(*net.UDPAddr)
		if !ok {
			bufs.Put(buf)
			continue
		}
		client := from.AddrPort()
		client = netip.AddrPortFrom(client.Addr().Unmap(), client.Port())
		dst, ok := s.accept(cm, client)
		if !ok {
			bufs.Put(buf)
			continue
		}
		mu.Lock()
		busy := inProgress[client.Addr()] >= pmpPerClient
		if !busy {
			inProgress[client.Addr()]++
		}
		mu.Unlock()
		if busy {
			s.d.log.Debug("natpmp: dropped a request: the client has others in progress", "client", client)
			bufs.Put(buf)
			continue
		}
		select {
		case queue <- pmpRequest{buf: buf, n: n, from: from, client: client, dst: dst}:
		default:
			s.d.log.Debug("natpmp: dropped a request: every worker is busy", "client", client)
			bufs.Put(buf)
			mu.Lock()
			if inProgress[client.Addr()]--; inProgress[client.Addr()] <= 0 {
				delete(inProgress, client.Addr())
			}
			mu.Unlock()
		}
	}
}

// answer dispatches one request and returns the reply, or nil. A panic
// costs this one request only. A reply with an error result is logged
// and, for a mapping request, audited.
func (s *pmpServer) answer(ctx context.Context, pkt []byte, client netip.AddrPort, dst netip.Addr) (resp []byte) {
	defer func() {
		if p := recover(); p != nil {
			s.d.metrics.error(errKindPanic)
			s.d.log.Error("natpmp: panic while answering a request; dropped it", "client", client, "panic", p, "stack", string(debug.Stack()))
			resp = nil
		}
	}()
	ctx, note := withPMPNote(ctx)
	if pcp.IsPCP(pkt) && s.pcp != nil {
		resp = s.pcp.HandleUDP(ctx, pkt, client, netip.AddrPortFrom(dst, 0))
		if len(resp) >= 4 && resp[3] != 0 {
			op := pcp.Opcode(resp[1] &^ 0x80)
			note.mapping = note.mapping || op == pcp.OpMap || op == pcp.OpPeer
			s.d.onPMPRefusal(gateway.SourcePCP, client.Addr(), note, strings.ToLower(op.String()), pcp.ResultCode(resp[3]).String())
		}
		return resp
	}
	r, ok := natpmp.HandlePacket(ctx, pkt, client.Addr(), s.natpmp, s.epoch())
	if !ok {
		s.d.log.Debug("natpmp: dropped a packet that is not a request", "client", client, "len", len(pkt))
		return nil
	}
	s.d.log.Debug("natpmp: request", "client", client, "request", fmt.Sprintf("% x", pkt), "reply", fmt.Sprintf("% x", r))
	if len(r) >= 4 {
		if rc := natpmp.ResultCode(binary.BigEndian.Uint16(r[2:4])); rc != natpmp.Success {
			op := r[1] &^ 0x80
			note.mapping = note.mapping || op == 1 || op == 2
			action := "opcode " + strconv.Itoa(int(op))
			switch op {
			case 0:
				action = "external_address"
			case 1:
				action = "map_udp"
			case 2:
				action = "map_tcp"
			}
			s.d.onPMPRefusal(gateway.SourceNATPMP, client.Addr(), note, action, rc.String())
		}
	}
	return r
}

// accept decides whether to answer a packet that arrived with control
// message cm, and returns the address it was sent to: the check is
// natpmp.CheckIngress, shared with the standalone NAT-PMP server.
func (s *pmpServer) accept(cm *ipv4.ControlMessage, client netip.AddrPort) (netip.Addr, bool) {
	dst, why := natpmp.CheckIngress(cm, s.interfaces)
	if why != "" {
		s.d.log.Debug("natpmp: dropped a request "+why, "client", client)
		return netip.Addr{}, false
	}
	return dst, true
}

// multicast sends each packet to the all-hosts group (224.0.0.1:5350) on
// every internal interface that can carry it, from the NAT-PMP socket, so
// that the source port is 5351 and the source address the interface's own,
// which is what clients check an announcement against. The outgoing
// interface is set per packet, never left to the routing table: an
// announcement must not leave by the external interface. It returns the
// interfaces it sent on.
func (s *pmpServer) multicast(pkts [][]byte) ([]string, error) {
	dst := net.UDPAddrFromAddrPort(allHostsGroup)
	var sent []string
	var errs []error
	for _, name := range s.interfaces {
		ifi, src, ok := announceSource(name)
		if !ok {
			continue
		}
		cm := &ipv4.ControlMessage{IfIndex: ifi.Index, Src: src.AsSlice()}
		var err error
		for _, pkt := range pkts {
			if _, werr := s.p.WriteTo(pkt, cm, dst); werr != nil {
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

// announceSource looks up the internal interface name and the address
// announcements leave it from (its first IPv4 address). Interfaces that are
// down, cannot multicast or are loopback get none: there is no LAN host
// there to hear them (and so the daemon's tests on loopback send nothing).
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

// errNotUDP reports a NAT-PMP socket of the wrong kind.
var errNotUDP = errors.New("the NAT-PMP socket is not a UDP socket")
