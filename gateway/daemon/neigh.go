package daemon

import (
	"bytes"
	"context"
	"net"
	"net/netip"
	"time"
)

// Secure mode for IPv6 pinholes asks whether two IPv6 addresses belong to
// one LAN host: a host sends from a temporary (privacy) address, or from a
// unique-local one, and opens a pinhole for its stable global address;
// miniupnpd, which compares the two addresses, refuses it (miniupnp#600,
// #731). The kernel's neighbour table knows better: two addresses that
// resolve to the same link-layer address on the same internal interface
// are the same host.
//
// Caveats, documented in docs/gateway.md: hosts behind a downstream router
// share its link-layer address (and so count as one), and a host that
// forges its MAC address can pass for another. Both are already true of
// the LAN itself.

// neighbour is one entry of the kernel's neighbour table.
type neighbour struct {
	addr    netip.Addr
	ifindex int
	lladdr  net.HardwareAddr
}

// neighProbeWait bounds how long sameHost waits for the kernel to resolve
// an address that is not in the neighbour table yet: three of neighbour
// discovery's solicitations, which the kernel repeats every second
// (retrans_time_ms), since the first one is sometimes not answered.
const neighProbeWait = 3 * time.Second

// sameHost reports whether a and b are addresses of one host on one of the
// internal interfaces ifindexes (nil: any). When one is not in the table
// and probe is set, it sends one datagram to each, which makes the kernel
// resolve them (neighbour discovery), and looks again for up to
// neighProbeWait.
func sameHost(ifindexes map[int]bool, a, b netip.Addr, probe bool) bool {
	if a == b {
		return true
	}
	if !a.Is6() || !b.Is6() || a.Is4In6() || b.Is4In6() {
		return false // IPv4 requesters get no pinholes for IPv6 addresses
	}
	check := func() (found bool, same bool) {
		ns, err := readNeighbours()
		if err != nil {
			return true, false
		}
		var na, nb *neighbour
		for i := range ns {
			n := &ns[i]
			if ifindexes != nil && !ifindexes[n.ifindex] {
				continue
			}
			switch n.addr {
			case a:
				na = n
			case b:
				nb = n
			}
		}
		if na == nil || nb == nil {
			return nb != nil && na != nil, false
		}
		return true, na.ifindex == nb.ifindex && len(na.lladdr) > 0 && bytes.Equal(na.lladdr, nb.lladdr)
	}
	if found, same := check(); found || !probe {
		return same
	}
	// Not resolved yet (a pinhole is often asked for an address that has
	// not talked to the router): make the kernel resolve both.
	ctx, cancel := context.WithTimeout(context.Background(), neighProbeWait)
	defer cancel()
	nudge(a)
	nudge(b)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-tick.C:
			if found, same := check(); found {
				return same
			}
		}
	}
}

// nudge sends one empty UDP datagram to the discard port of a LAN address,
// so that the kernel resolves its link-layer address.
func nudge(a netip.Addr) {
	c, err := net.DialUDP("udp6", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(a, 9)))
	if err != nil {
		return
	}
	c.Write([]byte{0})
	c.Close()
}

// hostAddrs returns the IPv6 addresses the neighbour table shows with a's
// link-layer address on a's interface, among ifindexes (nil: any), a
// excluded: the other addresses of a's host, as known now (no discovery).
func hostAddrs(ifindexes map[int]bool, a netip.Addr) []netip.Addr {
	if !a.Is6() || a.Is4In6() {
		return nil
	}
	ns, err := readNeighbours()
	if err != nil {
		return nil
	}
	var self *neighbour
	for i := range ns {
		if ns[i].addr == a && (ifindexes == nil || ifindexes[ns[i].ifindex]) && len(ns[i].lladdr) > 0 {
			self = &ns[i]
			break
		}
	}
	if self == nil {
		return nil
	}
	var out []netip.Addr
	for _, n := range ns {
		if n.addr != a && n.addr.Is6() && n.ifindex == self.ifindex && bytes.Equal(n.lladdr, self.lladdr) {
			out = append(out, n.addr)
		}
	}
	return out
}
