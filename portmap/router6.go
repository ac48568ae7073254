package portmap

import (
	"net/netip"

	"github.com/portfwd/portfwd/internal/netroute"
)

// linkAddr is an IPv6 address of the router and the interface it is
// reached on ("" when any): a link-local address means a host only on
// one link.
type linkAddr struct {
	addr   netip.Addr // no zone
	ifname string
}

// routerAddrs6 returns the IPv6 addresses a router watched at host may
// send its PCP ANNOUNCEs from (RFC 6887 §14.1.3 multicasts them to
// [ff02::1]:5350 from an address of the server's own, which on a
// dual-stack router is not its IPv4 address):
//   - host itself, when the router is watched at an IPv6 address;
//   - the next hop of each IPv6 default route: the router this host
//     sends its IPv6 traffic through, link-local (as router
//     advertisements give it) or global, as long as it is reached on
//     hostIf, the interface the router's address is on (a router on
//     another link is another box). When hostIf is unknown, every
//     default router counts.
//
// Another address of the router (a global one while the default route
// names its link-local one) is not known, and announcements from it are
// not heard: the poll still finds what they would have told.
func routerAddrs6(host netip.Addr, hostIf string, defaults []route6) []linkAddr {
	if !host.IsValid() {
		return nil // a router of unknown address: nothing is known to be its
	}
	var out []linkAddr
	add := func(a netip.Addr, ifname string) {
		a = a.WithZone("")
		if !a.Is6() || a.Is4In6() || a.IsUnspecified() || a.IsMulticast() {
			return
		}
		if !a.IsLinkLocalUnicast() {
			ifname = "" // a global address is one host on any link
		}
		for _, x := range out {
			if x.addr == a && x.ifname == ifname {
				return
			}
		}
		out = append(out, linkAddr{addr: a, ifname: ifname})
	}
	if host.Is6() && !host.Is4In6() {
		add(host, host.Zone())
		if hostIf == "" {
			hostIf = host.Zone()
		}
	}
	for _, r := range defaults {
		if hostIf == "" || r.ifname == hostIf {
			add(r.gw, r.ifname)
		}
	}
	return out
}

// interfaceOf returns the name of the interface host is on, or "" when
// it cannot tell (an IPv6 host without a zone, a routed address).
func interfaceOf(host netip.Addr) string {
	if !host.Is4() {
		return host.Zone()
	}
	_, ifi, err := netroute.LocalAddrFor(host)
	if err != nil {
		return ""
	}
	return ifi.Name
}

// fromAny says whether an announcement heard over IPv6 came from one of
// addrs. A link-local source is the router's only on the router's link:
// when both interfaces are known they must be the same.
func fromAny(a announcement, addrs []linkAddr) bool {
	for _, x := range addrs {
		if a.from != x.addr {
			continue
		}
		if a.from.IsLinkLocalUnicast() && a.zone != "" && x.ifname != "" && a.zone != x.ifname {
			continue
		}
		return true
	}
	return false
}

func (x linkAddr) String() string {
	if x.addr.IsLinkLocalUnicast() && x.ifname != "" {
		return x.addr.WithZone(x.ifname).String()
	}
	return x.addr.String()
}
