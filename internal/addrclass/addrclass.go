// Package addrclass tells what kind of address an IP address is, as seen by
// someone who wants a port mapped on it to be reachable from the Internet:
// public, private (behind another NAT), carrier-grade NAT, documentation
// (TEST-NET), and so on, with the sentence that tells a user what it means.
//
// It is the one classification of the project, and a leaf: the client
// (package portmap, which re-exports it as AddrClass and Classify, and the
// CLI, the web UI and package reach on top of it) and the gateway daemon
// (its external address and interface checks) both use it, so they never
// disagree about an address, and the daemon needs nothing of the client.
package addrclass

import "net/netip"

// Class says what kind of address a router reported as its external
// address, and so whether a mapping on it can be reached from the Internet.
type Class int

const (
	// Public is a globally routable address: mappings are reachable.
	Public Class = iota
	// Unspecified is 0.0.0.0 or ::: the router has no WAN address yet
	// (disconnected, or still negotiating).
	Unspecified
	// Private is RFC 1918 / unique local: the router sits behind another NAT.
	Private
	// CGNAT is 100.64.0.0/10 (RFC 6598): the ISP runs carrier-grade NAT.
	CGNAT
	// Loopback is 127/8 or ::1: a misconfigured or proxying router.
	Loopback
	// LinkLocal is 169.254/16 or fe80::/10: no DHCP lease on the WAN side.
	LinkLocal
	// Documentation is TEST-NET-1/2/3 (RFC 5737) or 2001:db8::/32: used in
	// labs and examples. It is not routable on the Internet, but unlike
	// miniupnpc portfwd does not refuse to work with it.
	Documentation
	// Reserved is any other special-purpose range (240/4, benchmarking
	// 198.18/15, multicast).
	Reserved
)

var (
	cgnat      = netip.MustParsePrefix("100.64.0.0/10")
	docNets    = []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("198.51.100.0/24"), netip.MustParsePrefix("203.0.113.0/24"), netip.MustParsePrefix("2001:db8::/32")}
	reserved4  = []netip.Prefix{netip.MustParsePrefix("0.0.0.0/8"), netip.MustParsePrefix("192.0.0.0/24"), netip.MustParsePrefix("198.18.0.0/15"), netip.MustParsePrefix("240.0.0.0/4")}
	classNames = [...]string{"public", "unspecified", "private", "CGNAT", "loopback", "link-local", "documentation (TEST-NET)", "reserved"}
)

// Of returns the class of a, as seen from a user who wants a mapping on it
// to be reachable from the Internet.
func Of(a netip.Addr) Class {
	a = a.Unmap()
	switch {
	case !a.IsValid() || a.IsUnspecified():
		return Unspecified
	case a.IsLoopback():
		return Loopback
	case a.IsLinkLocalUnicast():
		return LinkLocal
	case a.IsPrivate():
		return Private
	case cgnat.Contains(a):
		return CGNAT
	case a.IsMulticast() || a.IsInterfaceLocalMulticast():
		return Reserved
	}
	for _, p := range docNets {
		if p.Contains(a) {
			return Documentation
		}
	}
	if a.Is4() {
		for _, p := range reserved4 {
			if p.Contains(a) {
				return Reserved
			}
		}
	}
	return Public
}

func (c Class) String() string {
	if int(c) < len(classNames) {
		return classNames[c]
	}
	return "unknown"
}

// Warning returns a sentence telling the user what an external address of
// this class means for their mappings, or "" for a public address. It is
// advice only: portfwd never refuses to act on such a gateway.
func (c Class) Warning() string {
	switch c {
	case Unspecified:
		return "the router reports no external address: it is not connected to the Internet (yet); mappings will not be reachable until it is"
	case Private:
		return "the router's external address is private: it sits behind another router (double NAT); mappings are only reachable from that outer network unless the outer router forwards the same ports too (or puts this router in its DMZ)"
	case CGNAT:
		return "the router's external address is in the carrier-grade NAT range 100.64.0.0/10: your ISP shares one public address between customers; mappings will not be reachable from the Internet. Ask the ISP for a public IPv4 address, or use IPv6"
	case Loopback:
		return "the router reports a loopback external address: it is misconfigured; mappings will not be reachable"
	case LinkLocal:
		return "the router's external address is link-local: it got no address from the ISP; mappings will not be reachable"
	case Documentation:
		return "the router's external address is a documentation (TEST-NET) address: fine in a lab, but not routable on the Internet"
	case Reserved:
		return "the router's external address is in a reserved range: mappings are unlikely to be reachable from the Internet"
	}
	return ""
}
