package ssdp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"
	"unicode"

	"golang.org/x/net/ipv4"
)

// SearchOptions says what Search looks for, and where.
type SearchOptions struct {
	// Targets are the ST values searched for, all at once. Empty means
	// DefaultTargets: the IGD device types and WAN connection services a
	// port-mapping client can use.
	Targets []string

	// MX is the MX header, in seconds: how long devices may wait before
	// answering a multicast search. 0 means 1; it is clamped to 1..5.
	MX int

	// Interfaces names the interfaces to multicast on. Empty means every
	// interface that is up, multicast-capable, not loopback and has an
	// IPv4 address.
	Interfaces []string

	// NoMulticast skips multicast entirely: only Unicast is searched.
	NoMulticast bool

	// Family selects IPv4 (239.255.255.250), IPv6 (ff02::c and ff05::c on
	// each interface with an IPv6 address) or, by default, both at once.
	Family Family

	// Unicast lists extra destinations for a unicast M-SEARCH, typically
	// the default gateway's port 1900: some routers answer those when
	// multicast is filtered on the LAN (Wi-Fi isolation, IGMP snooping).
	Unicast []netip.AddrPort

	// Resend is the time between rounds of searches: UDP is lossy, so the
	// searches are sent again, at most three rounds in all. 0 means 500ms.
	Resend time.Duration

	// Logger receives debug logs about skipped replies and send errors.
	// nil means no logging.
	Logger *slog.Logger
}

// DefaultTargets returns the search targets Search uses when none are given.
func DefaultTargets() []string {
	return []string{STIGDv1, STIGDv2, STWANIPConnectionv1, STWANIPConnectionv2, STWANPPPConnectionv1}
}

const (
	defaultResend = 500 * time.Millisecond
	searchRounds  = 3
	// multicastTTL is the TTL UDA 1.1 recommends for SSDP: enough for
	// a LAN with one router hop, not enough to leak much further.
	multicastTTL = 2
	// maxDatagram bounds one SSDP datagram; real ones are well under 1500.
	maxDatagram = 8192
)

// Search sends an M-SEARCH for every target, on every chosen interface and to
// every unicast destination at once, and calls found with each new answer,
// in arrival order, from the goroutine that called Search. It returns nil as
// soon as found returns false, and an error wrapping ctx.Err() when ctx ends:
// give ctx a deadline, since a silent network gives no other end. Search
// returns promptly once ctx is done and never calls found after it returns.
//
// Answers are accepted from any source address and port: UDA only says the
// answer goes to the searcher's address and port, and stacks such as
// CyberLink's (mupnp) send it from an ephemeral port rather than 1900, so
// Search reads on unconnected sockets and never filters on the source.
//
// Answers are deduplicated on (LOCATION, ST, USN), since every round of
// searches draws the same answers again. They are not filtered on ST: some
// devices answer with a type other than the one searched for (the DD-WRT
// reply in testdata carries WANConnectionDevice:1), and the caller is better
// placed to decide. Malformed answers are logged at debug level and skipped.
func Search(ctx context.Context, opts SearchOptions, found func(Response) bool) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("ssdp: search: %w", err)
	}
	targets := opts.Targets
	if len(targets) == 0 {
		targets = DefaultTargets()
	}
	for _, t := range targets {
		if strings.TrimSpace(t) == "" || strings.ContainsFunc(t, unicode.IsControl) {
			return fmt.Errorf("ssdp: search target %q is empty or holds control characters: pass an ST such as %q", t, STIGDv1)
		}
	}
	for _, ap := range opts.Unicast {
		if !ap.IsValid() || ap.Port() == 0 {
			return fmt.Errorf("ssdp: unicast destination %v is not an address and port: pass e.g. the gateway's address with port %d", ap, DefaultPort)
		}
	}
	mx := min(max(opts.MX, 1), 5)
	resend := opts.Resend
	if resend <= 0 {
		resend = defaultResend
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}

	conns, err := openSearchConns(ctx, opts, log)
	if err != nil {
		return err
	}
	for _, c := range conns {
		for _, d := range c.dsts {
			for _, t := range targets {
				d.msgs = append(d.msgs, AppendSearch(nil, t, mx, d.host))
			}
		}
	}

	// One reader per socket feeds pkts until done is closed; closing the
	// sockets unblocks the readers, and wg makes Search wait for them so
	// that no goroutine outlives it.
	pkts := make(chan packet)
	done := make(chan struct{})
	var wg sync.WaitGroup
	defer func() {
		close(done)
		for _, c := range conns {
			c.pc.Close()
		}
		wg.Wait()
	}()
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.read(pkts, done, log)
		}()
	}

	if sent, err := sendRound(conns, log); sent == 0 {
		return fmt.Errorf("ssdp: search: could not send any M-SEARCH (is the interface up, with a route to the destination?): %w", err)
	}
	timer := time.NewTimer(resend)
	defer timer.Stop()
	rounds := 1
	seen := make(map[string]bool)
	for {
		select {
		case <-ctx.Done():
			return fmt.Errorf("ssdp: search: %w", ctx.Err())
		case <-timer.C:
			sendRound(conns, log)
			if rounds++; rounds < searchRounds {
				timer.Reset(resend)
			}
		case p := <-pkts:
			if ctx.Err() != nil {
				return fmt.Errorf("ssdp: search: %w", ctx.Err())
			}
			r, err := ParseResponse(p.data)
			if err != nil {
				log.Debug("ssdp: skipping reply", "from", p.from, "interface", p.iface, "err", err)
				continue
			}
			key := r.Location + "\x00" + r.ST + "\x00" + r.USN
			if seen[key] {
				continue
			}
			seen[key] = true
			r.From, r.Interface = p.from, p.iface
			log.Debug("ssdp: found", "location", r.Location, "st", r.ST, "from", r.From, "interface", r.Interface, "server", r.Server)
			if !found(r) {
				return nil
			}
		}
	}
}

// SearchAll runs Search until ctx ends and returns every distinct answer.
// The end of ctx is the normal end of the search, so the error is nil then;
// it is non-nil only when the search could not run at all.
func SearchAll(ctx context.Context, opts SearchOptions) ([]Response, error) {
	var all []Response
	err := Search(ctx, opts, func(r Response) bool {
		all = append(all, r)
		return true
	})
	if err != nil && ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		err = nil
	}
	return all, err
}

// searchConn is one socket with the destinations searched through it.
type searchConn struct {
	pc    net.PacketConn
	iface string // "" for the unicast socket
	dsts  []*searchDst
}

type searchDst struct {
	addr *net.UDPAddr
	host string   // HOST header; "" for the multicast group
	msgs [][]byte // one M-SEARCH per target
}

type packet struct {
	data  []byte
	from  netip.AddrPort
	iface string
}

// openSearchConns opens one socket per multicast interface, bound to that
// interface's IPv4 address so that the answers, unicast to the source
// address, come back to it, plus one socket per address family for the
// unicast destinations. An interface that cannot be used is logged and
// skipped; it is an error only when no socket at all could be opened.
func openSearchConns(ctx context.Context, opts SearchOptions, log *slog.Logger) ([]*searchConn, error) {
	var conns []*searchConn
	var errs []error
	if !opts.NoMulticast && opts.Family.v6() {
		c6, errs6 := openSearchConns6(ctx, opts.Interfaces, log)
		conns = append(conns, c6...)
		errs = append(errs, errs6...)
	}
	if !opts.NoMulticast && opts.Family.v4() {
		ifaces, err := multicastInterfaces(opts.Interfaces)
		if err != nil {
			errs = append(errs, err)
			if len(ifaces) > 0 || len(conns) > 0 {
				log.Warn("ssdp: skipping interfaces", "err", err)
			}
		}
		group := &net.UDPAddr{IP: net.ParseIP(DefaultGroup), Port: DefaultPort}
		for _, ia := range ifaces {
			pc, err := openMulticastConn(ctx, ia)
			if err != nil {
				log.Warn("ssdp: cannot search on interface", "interface", ia.ifi.Name, "err", err)
				errs = append(errs, err)
				continue
			}
			conns = append(conns, &searchConn{pc: pc, iface: ia.ifi.Name, dsts: []*searchDst{{addr: group}}})
		}
	}
	for _, network := range []string{"udp4", "udp6"} {
		var dsts []*searchDst
		for _, ap := range opts.Unicast {
			ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
			if ap.Addr().Is4() == (network == "udp4") {
				dsts = append(dsts, &searchDst{addr: net.UDPAddrFromAddrPort(ap), host: ap.String()})
			}
		}
		if len(dsts) == 0 {
			continue
		}
		var lc net.ListenConfig
		pc, err := lc.ListenPacket(ctx, network, ":0")
		if err != nil {
			errs = append(errs, fmt.Errorf("ssdp: opening a %s socket for unicast search: %w", network, err))
			continue
		}
		conns = append(conns, &searchConn{pc: pc, dsts: dsts})
	}
	if len(conns) == 0 {
		if len(errs) == 0 {
			return nil, errors.New("ssdp: search: nothing to search: NoMulticast is set and Unicast is empty; clear NoMulticast or give a unicast destination")
		}
		return nil, fmt.Errorf("ssdp: search: no up, multicast-capable interface to search on, and no router to ask directly: %w", errors.Join(errs...))
	}
	return conns, nil
}

type ifaceAddr struct {
	ifi  *net.Interface
	addr netip.Addr
}

// multicastInterfaces resolves names, or picks every up, multicast-capable,
// non-loopback interface with an IPv4 address when names is empty. A named
// interface is used even if it is a loopback (tests in a namespace do that);
// one that is down or has no IPv4 address is an error.
func multicastInterfaces(names []string) ([]ifaceAddr, error) {
	var out []ifaceAddr
	if len(names) > 0 {
		var errs []error
		for _, n := range names {
			ifi, err := net.InterfaceByName(n)
			if err != nil {
				errs = append(errs, fmt.Errorf("ssdp: interface %q: %w", n, err))
				continue
			}
			if ifi.Flags&net.FlagUp == 0 {
				errs = append(errs, fmt.Errorf("ssdp: interface %q is down", n))
				continue
			}
			a, err := interfaceIPv4(ifi, netip.Addr{})
			if err != nil {
				errs = append(errs, err)
				continue
			}
			out = append(out, ifaceAddr{ifi, a})
		}
		return out, errors.Join(errs...)
	}
	ifis, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("ssdp: listing interfaces: %w", err)
	}
	for i := range ifis {
		ifi := &ifis[i]
		if ifi.Flags&net.FlagUp == 0 || ifi.Flags&net.FlagMulticast == 0 || ifi.Flags&net.FlagLoopback != 0 {
			continue
		}
		if a, err := interfaceIPv4(ifi, netip.Addr{}); err == nil {
			out = append(out, ifaceAddr{ifi, a})
		}
	}
	if len(out) == 0 {
		return nil, errors.New("ssdp: no interface is up, multicast-capable and has an IPv4 address")
	}
	return out, nil
}

// interfaceIPv4 returns the IPv4 address of ifi to use towards peer: the
// first one whose subnet holds peer, else the first that is not link-local,
// else the first. peer may be the zero Addr.
func interfaceIPv4(ifi *net.Interface, peer netip.Addr) (netip.Addr, error) {
	addrs, err := ifi.Addrs()
	if err != nil {
		return netip.Addr{}, fmt.Errorf("ssdp: addresses of %q: %w", ifi.Name, err)
	}
	var first, global netip.Addr
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok || ipn.IP.To4() == nil {
			continue
		}
		ip, _ := netip.AddrFromSlice(ipn.IP.To4())
		ones, _ := ipn.Mask.Size()
		if peer.IsValid() && netip.PrefixFrom(ip, ones).Masked().Contains(peer.Unmap()) {
			return ip, nil
		}
		if !first.IsValid() {
			first = ip
		}
		if !global.IsValid() && !ip.IsLinkLocalUnicast() {
			global = ip
		}
	}
	switch {
	case global.IsValid():
		return global, nil
	case first.IsValid():
		return first, nil
	}
	return netip.Addr{}, fmt.Errorf("ssdp: interface %q has no IPv4 address", ifi.Name)
}

func openMulticastConn(ctx context.Context, ia ifaceAddr) (net.PacketConn, error) {
	var lc net.ListenConfig
	pc, err := lc.ListenPacket(ctx, "udp4", netip.AddrPortFrom(ia.addr, 0).String())
	if err != nil {
		return nil, fmt.Errorf("ssdp: binding to %s on %q: %w", ia.addr, ia.ifi.Name, err)
	}
	p := ipv4.NewPacketConn(pc)
	// Loopback off: this host's own M-SEARCH must not come back to a
	// responder running here (the gateway daemon) as if from the LAN.
	for _, set := range []func() error{
		func() error { return p.SetMulticastInterface(ia.ifi) },
		func() error { return p.SetMulticastTTL(multicastTTL) },
		func() error { return p.SetMulticastLoopback(false) },
	} {
		if err := set(); err != nil {
			pc.Close()
			return nil, fmt.Errorf("ssdp: setting up multicast on %q: %w", ia.ifi.Name, err)
		}
	}
	return pc, nil
}

// sendRound sends every message through every socket and reports how many
// went out, with the first error.
func sendRound(conns []*searchConn, log *slog.Logger) (sent int, err error) {
	for _, c := range conns {
		for _, d := range c.dsts {
			n := 0
			for _, m := range d.msgs {
				if _, werr := c.pc.WriteTo(m, d.addr); werr != nil {
					log.Debug("ssdp: sending M-SEARCH", "to", d.addr, "interface", c.iface, "err", werr)
					if err == nil {
						err = werr
					}
					continue
				}
				n++
			}
			if n > 0 {
				log.Debug("ssdp: M-SEARCH sent", "to", d.addr, "interface", c.iface, "searches", n)
			}
			sent += n
		}
	}
	return sent, err
}

// read hands every datagram to pkts until the socket is closed or done is.
// Read errors other than a closed socket are skipped, a bounded number of
// times in a row: Windows reports an ICMP port unreachable from an earlier
// unicast send as an error on the next read.
func (c *searchConn) read(pkts chan<- packet, done <-chan struct{}, log *slog.Logger) {
	buf := make([]byte, maxDatagram)
	for failures := 0; failures < 100; {
		n, addr, err := c.pc.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			log.Debug("ssdp: reading replies", "interface", c.iface, "err", err)
			failures++
			continue
		}
		failures = 0
		ua, ok := addr.(*net.UDPAddr)
		if !ok {
			continue
		}
		from := ua.AddrPort()
		p := packet{
			data:  append([]byte(nil), buf[:n]...),
			from:  netip.AddrPortFrom(from.Addr().Unmap(), from.Port()),
			iface: c.iface,
		}
		select {
		case pkts <- p:
		case <-done:
			return
		}
	}
}
