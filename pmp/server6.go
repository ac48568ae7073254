package pmp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/portfwd/portfwd/pcp"
	"golang.org/x/net/ipv6"
)

// PCP over IPv6 (RFC 6887 §8: PCP runs over both families; NAT-PMP is
// IPv4 only). A gateway that filters IPv6 answers MAP there as a
// firewall pinhole (the Handler decides: a request from an IPv6 client
// is one). The IPv6 socket is served on its own loop with the same
// ingress rule as IPv4: the request must arrive on one of Interfaces,
// addressed to one of that interface's own unicast addresses (global,
// unique-local or link-local); anything else, and anything that is not
// PCP, is dropped without an answer.

// ListenIPv6 opens the IPv6 UDP socket ServePCPIPv6 serves, on addr ("",
// "[::]:5351"), IPv6 only, reporting each packet's arrival interface and
// destination address.
func ListenIPv6(ctx context.Context, addr string) (net.PacketConn, error) {
	if addr == "" {
		addr = "[::]:" + strconv.Itoa(pcp.ServerPort)
	}
	var lc net.ListenConfig
	pc, err := lc.ListenPacket(ctx, "udp6", addr)
	if err != nil {
		return nil, fmt.Errorf("PCP over IPv6 on UDP %s: %w (is another PCP daemon, such as miniupnpd, running?)", addr, err)
	}
	p := ipv6.NewPacketConn(pc.(*net.UDPConn))
	if err := p.SetControlMessage(ipv6.FlagDst|ipv6.FlagInterface, true); err != nil {
		pc.Close()
		return nil, fmt.Errorf("the PCP IPv6 socket cannot tell which interface a request arrived on: %w", err)
	}
	return pc, nil
}

// ServePCPIPv6 answers PCP requests read from pc, an IPv6 UDP socket from
// ListenIPv6, until ctx ends, then returns nil; it does not close pc. It
// needs s.PCP, and s.Interfaces (a gateway must not answer its external
// side). It may run beside ServePacketConn.
func (s *Server) ServePCPIPv6(ctx context.Context, pc net.PacketConn) error {
	if s.PCP == nil {
		return fmt.Errorf("pmp: Server.PCP is nil; PCP over IPv6 needs the gateway's handler")
	}
	uc, ok := pc.(*net.UDPConn)
	if !ok {
		return fmt.Errorf("pmp: PCP over IPv6 needs a UDP socket")
	}
	p := ipv6.NewPacketConn(uc)
	if err := p.SetControlMessage(ipv6.FlagDst|ipv6.FlagInterface, true); err != nil {
		return fmt.Errorf("pmp: the PCP IPv6 socket cannot tell which interface a request arrived on: %w", err)
	}
	log := s.logger()
	if s.ExternalAddress != nil {
		// The PCP ANNOUNCE over IPv6, on the IPv4 schedule: clients whose
		// pinholes were lost make them again at once.
		ann := newAnnouncer(func(i int) { s.announce6(p, i) })
		s.mu.Lock()
		s.ann6 = ann
		s.mu.Unlock()
		ann.Restart()
		defer func() {
			ann.Stop()
			s.mu.Lock()
			s.ann6 = nil
			s.mu.Unlock()
		}()
	}
	stop := context.AfterFunc(ctx, func() { pc.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	sem := make(chan struct{}, workers)
	for {
		buf := make([]byte, maxPacket)
		n, cm, src, err := p.ReadFrom(buf)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading PCP requests on %s: %w", pc.LocalAddr(), err)
		}
		from, ok := src.(*net.UDPAddr)
		if !ok {
			continue
		}
		client := from.AddrPort()
		dst, ifindex, why := checkIngress6(cm, s.Interfaces)
		if why != "" {
			log.Debug("pcp: dropped an IPv6 request "+why, "client", client)
			continue
		}
		pkt := buf[:n]
		if !pcp.IsPCP(pkt) {
			log.Debug("pcp: dropped a non-PCP packet on IPv6 (NAT-PMP is IPv4 only)", "client", client)
			continue
		}
		select {
		case sem <- struct{}{}:
		default:
			log.Debug("pcp: dropped an IPv6 request: every worker is busy", "client", client)
			continue
		}
		wg.Go(func() {
			defer func() { <-sem }()
			resp := s.answer(ctx, pkt, netip.AddrPortFrom(client.Addr().WithZone(""), client.Port()), dst)
			if resp == nil {
				return
			}
			ocm := &ipv6.ControlMessage{Src: dst.AsSlice(), IfIndex: ifindex}
			if _, err := p.WriteTo(resp, ocm, from); err != nil && ctx.Err() == nil {
				log.Warn("pcp: cannot send a reply over IPv6", "client", client, "err", err)
			}
		})
	}
}

// checkIngress6 is CheckIngress for IPv6: a unicast destination that is
// one of the arrival interface's own addresses, on one of interfaces.
func checkIngress6(cm *ipv6.ControlMessage, interfaces []string) (dst netip.Addr, ifindex int, why string) {
	if cm == nil || cm.Dst == nil || cm.IfIndex == 0 {
		return netip.Addr{}, 0, "whose arrival interface or address is unknown"
	}
	d, ok := netip.AddrFromSlice(cm.Dst)
	if !ok || d.IsMulticast() {
		return netip.Addr{}, 0, fmt.Sprintf("not sent to a unicast address (%v)", cm.Dst)
	}
	ifi, err := net.InterfaceByIndex(cm.IfIndex)
	if err != nil || (len(interfaces) > 0 && !slices.Contains(interfaces, ifi.Name)) {
		return netip.Addr{}, 0, fmt.Sprintf("from interface %d, which is not one it serves", cm.IfIndex)
	}
	addrs, err := ifi.Addrs()
	if err != nil {
		return netip.Addr{}, 0, fmt.Sprintf("on %s, whose addresses cannot be listed: %v", ifi.Name, err)
	}
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(ipn.IP); ok && ip == d {
				return d, cm.IfIndex, ""
			}
		}
	}
	return netip.Addr{}, 0, fmt.Sprintf("on %s not addressed to its own address (%v)", ifi.Name, d)
}

// allNodesGroup is where PCP announcements go over IPv6 (RFC 6887
// §14.1.3): the link-local all-nodes group, on the client port.
var allNodesGroup = netip.AddrPortFrom(netip.IPv6LinkLocalAllNodes(), pcp.ClientPort)

// announce6 sends announcement i of the current IPv6 burst: a PCP
// ANNOUNCE to [ff02::1]:5350 on each of s.Interfaces that has IPv6, with
// the outgoing interface set per packet (never the external side), once
// from each of the interface's IPv6 addresses (at most
// maxAnnounceSources, link-local first): a client checks that an
// announcement comes from the address it knows its PCP server by, which
// may be the router's link-local address (its default route) or a global
// one (the one it was given).
func (s *Server) announce6(p *ipv6.PacketConn, i int) {
	log := s.logger()
	defer func() {
		if r := recover(); r != nil {
			log.Error("panic in an IPv6 announcement; carrying on", "panic", r)
		}
	}()
	pkt := pcpAnnouncement(s.pcpEpoch())
	var sent []string
	var errs []error
	for _, name := range s.Interfaces {
		ifi, srcs := announceSources6(name)
		var err error
		for _, src := range srcs {
			dst := &net.UDPAddr{IP: allNodesGroup.Addr().AsSlice(), Port: int(allNodesGroup.Port()), Zone: ifi.Name}
			if _, werr := p.WriteTo(pkt, &ipv6.ControlMessage{IfIndex: ifi.Index, Src: src.AsSlice()}, dst); werr != nil {
				err = werr
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("on %s: %w", name, err))
		} else if len(srcs) > 0 {
			sent = append(sent, name)
		}
	}
	level := slog.LevelDebug
	if i == 0 {
		level = slog.LevelInfo // once per burst; the other nine at debug level
	}
	if err := errors.Join(errs...); err != nil {
		if i == 0 {
			level = slog.LevelWarn
		}
		log.Log(context.Background(), level, "pcp: cannot send an announcement over IPv6", "n", i+1, "err", err)
	}
	if len(sent) > 0 {
		log.Log(context.Background(), level, "pcp: announced the epoch on the LAN over IPv6 ([ff02::1]:5350)",
			"n", i+1, "of", announceCount, "pcp_epoch", s.pcpEpoch(), "interfaces", sent)
	}
}

// maxAnnounceSources bounds the copies of an IPv6 announcement sent on one
// interface.
const maxAnnounceSources = 4

// announceSources6 is announceSource for IPv6: the interface, up, able to
// multicast and not loopback, and its IPv6 unicast addresses, link-local
// first (none: nothing to send).
func announceSources6(name string) (*net.Interface, []netip.Addr) {
	ifi, err := net.InterfaceByName(name)
	if err != nil || ifi.Flags&net.FlagUp == 0 || ifi.Flags&net.FlagMulticast == 0 || ifi.Flags&net.FlagLoopback != 0 {
		return nil, nil
	}
	addrs, err := ifi.Addrs()
	if err != nil {
		return nil, nil
	}
	var out []netip.Addr
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		ip, ok := netip.AddrFromSlice(ipn.IP)
		if !ok || !ip.Is6() || ip.Is4In6() || ip.IsMulticast() {
			continue
		}
		out = append(out, ip)
	}
	// Link-local addresses first, each group in the interface's order
	// (a stable partition, by hand: slices.SortStableFunc would link
	// one more sort routine into the router build).
	ordered := make([]netip.Addr, 0, len(out))
	for _, a := range out {
		if a.IsLinkLocalUnicast() {
			ordered = append(ordered, a)
		}
	}
	for _, a := range out {
		if !a.IsLinkLocalUnicast() {
			ordered = append(ordered, a)
		}
	}
	out = ordered
	return ifi, out[:min(len(out), maxAnnounceSources)]
}
