package portmap

import (
	"bufio"
	"bytes"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"

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
//   - the link-local address the router's MAC address makes (modified
//     EUI-64, RFC 4291 §2.5.1 and appendix A), mac being the router's
//     link-layer address on hostIf (from this host's ARP entry for it):
//     the source the kernel picks for a packet to ff02::1, and the one
//     miniupnpd announces from, whatever the host's routes;
//   - the next hop of each IPv6 default route: the router this host
//     sends its IPv6 traffic through, link-local (as router
//     advertisements give it) or global, as long as it is reached on
//     hostIf, the interface the router's address is on (a router on
//     another link is another box). When hostIf is unknown, every
//     default router counts.
//
// Another address of the router (a global one while the default route
// names its link-local one, a link-local one not made from its MAC
// address) is not known, and announcements from it are not heard: the
// poll still finds what they would have told.
func routerAddrs6(host netip.Addr, hostIf string, mac net.HardwareAddr, defaults []route6) []linkAddr {
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
	if ll := eui64LinkLocal(mac); ll.IsValid() && hostIf != "" {
		add(ll, hostIf)
	}
	for _, r := range defaults {
		if hostIf == "" || r.ifname == hostIf {
			add(r.gw, r.ifname)
		}
	}
	return out
}

// routerAddrs6Of is routerAddrs6 for a router at host, with what this
// host knows of it: the interface it is on and its MAC address there.
func routerAddrs6Of(host netip.Addr, defaults []route6) []linkAddr {
	ifname := interfaceOf(host)
	return routerAddrs6(host, ifname, arpMAC(host, ifname), defaults)
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

// eui64LinkLocal returns the link-local address an interface with a
// 48-bit MAC address gives itself by modified EUI-64 (RFC 4291 §2.5.1,
// appendix A): fe80::, then the MAC with ff:fe in its middle and the
// universal/local bit inverted. The zero Addr for any other address.
func eui64LinkLocal(mac net.HardwareAddr) netip.Addr {
	if len(mac) != 6 {
		return netip.Addr{}
	}
	var b [16]byte
	b[0], b[1] = 0xfe, 0x80
	b[8], b[9], b[10] = mac[0]^0x02, mac[1], mac[2]
	b[11], b[12] = 0xff, 0xfe
	b[13], b[14], b[15] = mac[3], mac[4], mac[5]
	return netip.AddrFrom16(b)
}

// parseARP returns the link-layer address /proc/net/arp gives for ip on
// the interface ifname (any when ""): a complete entry (ATF_COM), nil
// when there is none.
func parseARP(data []byte, ip netip.Addr, ifname string) net.HardwareAddr {
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Scan() // the header
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 6 || f[0] != ip.String() || (ifname != "" && f[5] != ifname) {
			continue
		}
		if flags, err := strconv.ParseUint(f[2], 0, 32); err != nil || flags&0x2 == 0 { // ATF_COM: resolved
			continue
		}
		mac, err := net.ParseMAC(f[3])
		if err != nil || len(mac) != 6 {
			continue
		}
		return mac
	}
	return nil
}

// arpMAC returns this host's ARP entry for ip on ifname; nil when the
// system does not say.
func arpMAC(ip netip.Addr, ifname string) net.HardwareAddr {
	if !ip.Is4() {
		return nil
	}
	b, err := os.ReadFile("/proc/net/arp")
	if err != nil {
		return nil
	}
	return parseARP(b, ip, ifname)
}
