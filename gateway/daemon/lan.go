package daemon

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

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
type lanListener struct {
	net.Listener
	allow func(netip.Addr) bool
	log   *slog.Logger
}

func (l *lanListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ap, err := netip.ParseAddrPort(c.RemoteAddr().String())
		if err == nil && l.allow(ap.Addr()) {
			return c, nil
		}
		l.log.Debug("upnp: dropped a connection from outside the LAN", "peer", c.RemoteAddr(), "local", c.LocalAddr())
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetLinger(0) // reset: nothing is said to a WAN host
		}
		c.Close()
	}
}
