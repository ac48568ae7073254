package ssdp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"time"

	"golang.org/x/net/ipv6"
)

// SSDP over IPv6 (UDA 1.1 Annex A): the groups are ff02::c (link-local
// scope) and ff05::c (site-local); the HOST header is the bracketed
// literal. The responder joins both on the internal interfaces only,
// answers searches by unicast from the interface they came in on, and
// announces to both groups there. LOCATION names a global or unique-local
// address of the interface (Location decides which have a listener):
// a link-local address would need a zone that only the control point
// knows.

// IPv6 SSDP groups.
var (
	GroupLinkLocal6 = netip.MustParseAddr("ff02::c")
	GroupSiteLocal6 = netip.MustParseAddr("ff05::c")
)

// ServeIPv6 is Serve over IPv6: the same advertisements, interfaces,
// Location, budgets and timers, on ff02::c and ff05::c. It runs beside
// Serve, on a socket of its own. It returns an error when it cannot start
// (no IPv6 on the host, say); a gateway then serves IPv4 only.
func (r *Responder) ServeIPv6(ctx context.Context) error {
	s, err := r.start6(ctx)
	if err != nil {
		return err
	}
	s.log.Info("ssdp: responder serving over IPv6", "interfaces", r.Interfaces, "groups", "ff02::c, ff05::c", "port", s.port)
	return s.serve(ctx, s, "ssdp: IPv6 responder socket closed")
}

// responder6 is the running state of one ServeIPv6 call.
type responder6 struct {
	base
	p    *ipv6.PacketConn
	port int
}

func (r *Responder) start6(ctx context.Context) (*responder6, error) {
	s := &responder6{}
	if err := s.init(r); err != nil {
		return nil, err
	}
	s.port = s.cfg.Port
	lc := net.ListenConfig{Control: reuseAddr}
	pc, err := lc.ListenPacket(ctx, "udp6", "[::]:"+strconv.Itoa(s.port))
	if err != nil {
		return nil, fmt.Errorf("ssdp: IPv6 responder listening on UDP port %d: %w", s.port, err)
	}
	s.p = ipv6.NewPacketConn(pc)
	if err := s.p.SetControlMessage(ipv6.FlagDst|ipv6.FlagInterface, true); err != nil {
		pc.Close()
		return nil, fmt.Errorf("ssdp: IPv6 responder needs IPV6_RECVPKTINFO: %w", err)
	}
	if err := s.p.SetMulticastHopLimit(multicastTTL); err != nil {
		pc.Close()
		return nil, fmt.Errorf("ssdp: IPv6 responder setting the hop limit: %w", err)
	}
	joined := 0
	for _, ifi := range s.ifaces {
		for _, g := range []netip.Addr{GroupLinkLocal6, GroupSiteLocal6} {
			if err := s.p.JoinGroup(ifi, &net.UDPAddr{IP: g.AsSlice()}); err != nil {
				s.log.Debug("ssdp: cannot join an IPv6 group", "interface", ifi.Name, "group", g, "err", err)
				continue
			}
			joined++
		}
	}
	if joined == 0 {
		pc.Close()
		return nil, errors.New("ssdp: joined no IPv6 SSDP group on any internal interface (no IPv6 there?)")
	}
	return s, nil
}

func (s *responder6) close() error { return s.p.Close() }

func (s *responder6) readLoop(ctx context.Context) error {
	return readPackets(ctx, s.log, "IPv6 responder", s.p.ReadFrom, func(b []byte, cm *ipv6.ControlMessage, from *net.UDPAddr) {
		if cm != nil {
			s.handle(ctx, b, cm, from)
		}
	})
}

// location returns the description URL for a search that arrived on ifi
// (to dst): dst's own listener when the search was unicast, else the
// first global or unique-local address of ifi that has one.
func (s *responder6) location(ifi *net.Interface, dst netip.Addr) string {
	if dst.IsValid() && !dst.IsMulticast() {
		if loc := s.cfg.Location(dst); loc != "" {
			return loc
		}
	}
	addrs, err := ifi.Addrs()
	if err != nil {
		return ""
	}
	for _, a := range addrs {
		p, err := netip.ParsePrefix(a.String())
		if err != nil || !p.Addr().Is6() || p.Addr().Is4In6() || p.Addr().IsLinkLocalUnicast() {
			continue
		}
		if loc := s.cfg.Location(p.Addr()); loc != "" {
			return loc
		}
	}
	return ""
}

func (s *responder6) handle(ctx context.Context, b []byte, cm *ipv6.ControlMessage, from *net.UDPAddr) {
	ifi, ok := s.byIndex[cm.IfIndex]
	if !ok {
		return // not an internal interface: never answered
	}
	if m, err := ParseMessage(b); err == nil && m.Method != MethodSearch {
		return
	}
	st, mx, err := ParseSearch(b)
	if err != nil {
		s.log.Debug("ssdp: ignoring malformed IPv6 search", "from", from, "err", err)
		return
	}
	ads := answers(s.cfg.Adverts, st)
	if len(ads) == 0 {
		return
	}
	dst, _ := netip.AddrFromSlice(cm.Dst)
	loc := s.location(ifi, dst)
	if loc == "" {
		s.log.Debug("ssdp: no IPv6 Location on interface", "interface", ifi.Name)
		return
	}
	var delay time.Duration
	if dst.IsMulticast() {
		delay = s.delay(mx)
	}
	cmOut := &ipv6.ControlMessage{IfIndex: ifi.Index}
	s.answer(ctx, search{from: from.AddrPort().Addr().WithZone(""), size: len(b), st: st, ifi: ifi}, ads, loc, delay, func(msgs [][]byte) {
		for _, m := range msgs {
			if _, err := s.p.WriteTo(m, cmOut, from); err != nil {
				s.log.Debug("ssdp: sending IPv6 answer", "to", from, "err", err)
			}
		}
	})
}

// announce sends one NOTIFY per advertisement to ff02::c and ff05::c on
// every served interface.
func (s *responder6) announce(nts string) {
	for _, ifi := range s.ifaces {
		loc := s.location(ifi, netip.Addr{})
		if loc == "" {
			continue
		}
		cm := &ipv6.ControlMessage{IfIndex: ifi.Index}
		for _, g := range []netip.Addr{GroupLinkLocal6, GroupSiteLocal6} {
			to := &net.UDPAddr{IP: g.AsSlice(), Port: s.port}
			host := "[" + upperHex(g.String()) + "]:" + strconv.Itoa(s.port)
			for _, a := range s.cfg.Adverts {
				m := AppendNotify(nil, s.response(a, loc), nts, host)
				if _, err := s.p.WriteTo(m, cm, to); err != nil {
					s.log.Debug("ssdp: sending IPv6 NOTIFY", "interface", ifi.Name, "group", g, "err", err)
				}
			}
		}
	}
}

// upperHex writes an address as UDA's examples do, "FF02::C".
func upperHex(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'a' && c <= 'f' {
			b[i] = c - 'a' + 'A'
		}
	}
	return string(b)
}
