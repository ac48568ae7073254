package daemon

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	http "github.com/portfwd/portfwd/internal/httpx"

	"github.com/portfwd/portfwd/internal/netroute"
)

// lanRefresh is how long the internal subnets and local addresses are
// cached between two checks of a connection's peer.
const lanRefresh = 5 * time.Second

// lanPeers decides who may talk to the UPnP HTTP server: hosts on the
// subnets of the internal interfaces, and the router itself. Addresses are
// re-read every lanRefresh, so a LAN address added after start counts.
type lanPeers struct {
	ifaces []string

	mu       sync.Mutex
	read     time.Time
	prefixes []netip.Prefix
	local    map[netip.Addr]bool
}

// newLANPeers reads the internal interfaces once, failing when one is
// missing or has no IPv4 address: the gateway would have nothing to serve
// on it.
func newLANPeers(ifaces []string) (*lanPeers, error) {
	l := &lanPeers{ifaces: ifaces}
	for _, name := range ifaces {
		if _, err := l.addrsOf(name); err != nil {
			return nil, err
		}
	}
	return l, nil
}

// addrsOf returns the IPv4 addresses of the internal interface name.
func (l *lanPeers) addrsOf(name string) ([]netip.Addr, error) {
	ps, err := netroute.InterfaceAddrs(name)
	if err != nil {
		return nil, fmt.Errorf("internal interface %s: %w", name, err)
	}
	if len(ps) == 0 {
		return nil, fmt.Errorf("internal interface %s has no IPv4 address: give it one, or name the right interface", name)
	}
	out := make([]netip.Addr, len(ps))
	for i, p := range ps {
		out[i] = p.Addr()
	}
	return out, nil
}

// allowed reports whether a peer may use the UPnP HTTP server.
func (l *lanPeers) allowed(a netip.Addr) bool {
	a = a.Unmap().WithZone("")
	l.mu.Lock()
	defer l.mu.Unlock()
	if time.Since(l.read) > lanRefresh {
		l.reload()
	}
	if l.local[a] {
		return true
	}
	for _, p := range l.prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func (l *lanPeers) reload() {
	l.read = time.Now()
	l.prefixes = l.prefixes[:0]
	for _, name := range l.ifaces {
		ps, err := netroute.InterfaceAddrs(name)
		if err != nil {
			continue // gone for now; its hosts cannot reach us through it anyway
		}
		for _, p := range ps {
			l.prefixes = append(l.prefixes, p.Masked())
		}
		// IPv6 control points (pinholes) on the same links.
		l.prefixes = append(l.prefixes, ipv6PrefixesOf(name)...)
	}
	l.local = map[netip.Addr]bool{}
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, ia := range addrs {
			if p, err := netip.ParsePrefix(ia.String()); err == nil {
				l.local[p.Addr().Unmap()] = true
			}
		}
	}
}

// lanListener drops, without a byte, connections whose peer is not allowed:
// Linux accepts packets for a local address on any interface, so a host on
// the WAN side could otherwise route to the LAN address and reach the IGD.
// It also holds every connection to the limits of a connLimiter.
type lanListener struct {
	net.Listener
	allow  func(netip.Addr) bool
	limits *connLimiter
	log    *slog.Logger
}

func (l *lanListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ap, err := netip.ParseAddrPort(c.RemoteAddr().String())
		if err != nil || !l.allow(ap.Addr()) {
			l.log.Debug("upnp: dropped a connection from outside the LAN", "peer", c.RemoteAddr(), "local", c.LocalAddr())
			reset(c) // nothing is said to a WAN host
			continue
		}
		if l.limits == nil {
			return c, nil
		}
		if lc := l.limits.admit(c, ap.Addr().Unmap()); lc != nil {
			return lc, nil
		}
	}
}

// reset closes c at once, with a TCP reset.
func reset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Close()
}

// The UPnP HTTP servers' connections are bounded per peer address and in
// all, so that one host opening thousands of idle connections neither
// takes UPnP away from the others nor uses up the process's file
// descriptors, which the NAT-PMP/PCP side needs too (an interface lookup
// opens a netlink socket). miniupnpd holds such a host at a few hundred
// descriptors; so does this. When the total is reached, a newcomer takes
// the place of an idle connection (one waiting for its first request, or
// kept alive between requests) of the address holding the most; only when
// there is none is the newcomer refused.
const (
	// httpMaxPerAddr bounds one LAN host's connections. Control points
	// use one at a time; a host with many applications a few.
	httpMaxPerAddr = 16
	// httpMaxTotal bounds every connection to the UPnP HTTP servers; it
	// is lowered to a quarter of the descriptor limit when that is small.
	httpMaxTotal = 256
)

// connLimiter counts the connections by peer and in all.
type connLimiter struct {
	perAddr, total int
	log            *slog.Logger

	mu     sync.Mutex
	byAddr map[netip.Addr]int
	conns  map[*limitedConn]struct{}
	n      int
	// refused counts the connections refused or evicted, logged at most
	// once a second so that a flood costs no log volume.
	refused    int
	lastLogged time.Time
}

func newConnLimiter(perAddr, total int, log *slog.Logger) *connLimiter {
	return &connLimiter{perAddr: perAddr, total: total, log: log,
		byAddr: map[netip.Addr]int{}, conns: map[*limitedConn]struct{}{}}
}

// limitedConn is an admitted connection; Close gives its place back.
type limitedConn struct {
	net.Conn
	addr   netip.Addr
	l      *connLimiter
	idle   bool // waiting for a request (new, or kept alive); guarded by l.mu
	closed bool // guarded by l.mu
}

func (c *limitedConn) Close() error {
	c.l.release(c)
	return c.Conn.Close()
}

// CloseWrite lets net/http half-close a connection it ends (so that the
// client reads the whole answer before the close), as on the TCP
// connection itself.
func (c *limitedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// admit returns c wrapped, or nil after closing it when a limit refuses it.
func (l *connLimiter) admit(c net.Conn, addr netip.Addr) net.Conn {
	l.mu.Lock()
	var victim *limitedConn
	why := ""
	switch {
	case l.byAddr[addr] >= l.perAddr:
		why = "the host holds its limit of connections"
	case l.n >= l.total:
		victim = l.evictionLocked(addr)
		if victim == nil {
			why = "the server holds its limit of connections"
		} else {
			l.releaseLocked(victim)
		}
	}
	if why != "" {
		l.refusedLocked(why, addr)
		l.mu.Unlock()
		reset(c)
		return nil
	}
	lc := &limitedConn{Conn: c, addr: addr, l: l, idle: true}
	l.conns[lc] = struct{}{}
	l.byAddr[addr]++
	l.n++
	l.mu.Unlock()
	if victim != nil {
		reset(victim.Conn)
	}
	return lc
}

// evictionLocked picks the idle connection a newcomer from addr may take:
// one of the address holding the most, if that is more than addr holds.
func (l *connLimiter) evictionLocked(addr netip.Addr) *limitedConn {
	var best *limitedConn
	for c := range l.conns {
		if !c.idle || c.closed || l.byAddr[c.addr] <= l.byAddr[addr]+1 {
			continue
		}
		if best == nil || l.byAddr[c.addr] > l.byAddr[best.addr] {
			best = c
		}
	}
	return best
}

func (l *connLimiter) refusedLocked(why string, addr netip.Addr) {
	l.refused++
	if now := time.Now(); now.Sub(l.lastLogged) >= time.Second {
		l.log.Info("upnp: HTTP connections refused: "+why, "last_from", addr, "count", l.refused,
			"per_host_limit", l.perAddr, "total_limit", l.total)
		l.refused, l.lastLogged = 0, now
	}
}

func (l *connLimiter) release(c *limitedConn) {
	l.mu.Lock()
	l.releaseLocked(c)
	l.mu.Unlock()
}

func (l *connLimiter) releaseLocked(c *limitedConn) {
	if c.closed {
		return
	}
	c.closed = true
	delete(l.conns, c)
	if l.byAddr[c.addr]--; l.byAddr[c.addr] <= 0 {
		delete(l.byAddr, c.addr)
	}
	l.n--
}

// connState is the HTTP servers' ConnState hook: it tells the limiter
// which connections are idle, and so may make room for a newcomer.
func (l *connLimiter) connState(c net.Conn, st http.ConnState) {
	lc, ok := c.(*limitedConn)
	if !ok {
		return
	}
	l.mu.Lock()
	lc.idle = st == http.StateNew || st == http.StateIdle
	l.mu.Unlock()
}

// open returns the number of connections held.
func (l *connLimiter) open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n
}

// httpConnLimit is httpMaxTotal, or a quarter of the descriptor limit when
// that is lower, so that the rest of the daemon always has descriptors.
func httpConnLimit() int {
	n := httpMaxTotal
	if fds := fdLimit(); fds > 0 && fds/4 < n {
		n = max(fds/4, 8)
	}
	return n
}
