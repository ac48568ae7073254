package portmap

import (
	"net/netip"

	"github.com/portfwd/portfwd/internal/addrclass"
)

// AddrClass says what kind of address a router reported as its external
// address, and so whether a mapping on it can be reached from the Internet.
// It is the project's one classification (internal/addrclass), which the
// gateway daemon uses too.
type AddrClass = addrclass.Class

// The classes of Classify.
const (
	// AddrPublic is a globally routable address: mappings are reachable.
	AddrPublic = addrclass.Public
	// AddrUnspecified is 0.0.0.0 or ::: the router has no WAN address yet
	// (disconnected, or still negotiating).
	AddrUnspecified = addrclass.Unspecified
	// AddrPrivate is RFC 1918 / unique local: the router sits behind another NAT.
	AddrPrivate = addrclass.Private
	// AddrCGNAT is 100.64.0.0/10 (RFC 6598): the ISP runs carrier-grade NAT.
	AddrCGNAT = addrclass.CGNAT
	// AddrLoopback is 127/8 or ::1: a misconfigured or proxying router.
	AddrLoopback = addrclass.Loopback
	// AddrLinkLocal is 169.254/16 or fe80::/10: no DHCP lease on the WAN side.
	AddrLinkLocal = addrclass.LinkLocal
	// AddrDocumentation is TEST-NET-1/2/3 (RFC 5737) or 2001:db8::/32: used in
	// labs and examples. It is not routable on the Internet, but unlike
	// miniupnpc we do not refuse to work with it.
	AddrDocumentation = addrclass.Documentation
	// AddrReserved is any other special-purpose range (240/4, benchmarking 198.18/15, multicast).
	AddrReserved = addrclass.Reserved
)

// Classify returns the class of a, as seen from a user who wants a mapping
// on it to be reachable from the Internet. Warning on the class says what
// it means, in a sentence.
func Classify(a netip.Addr) AddrClass { return addrclass.Of(a) }
