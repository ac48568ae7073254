package portmap

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"net/netip"
	"os"
	"strings"
)

// ParseIPv6Routes reads /proc/net/ipv6_route and returns the next hop of
// the default route (::/0 with a gateway), with its interface as the zone
// when the next hop is link-local, as it usually is (a router's
// link-local address, learnt from its advertisements).
func ParseIPv6Routes(data []byte) (netip.Addr, error) {
	routes := parseIPv6DefaultRoutes(data)
	if len(routes) == 0 {
		return netip.Addr{}, errors.New("no IPv6 default route with a gateway")
	}
	gw := routes[0].gw
	if gw.IsLinkLocalUnicast() {
		gw = gw.WithZone(routes[0].ifname)
	}
	return gw, nil
}

// route6 is an IPv6 default route: its next hop (no zone) and the
// interface it goes out of.
type route6 struct {
	gw     netip.Addr
	ifname string
}

// parseIPv6DefaultRoutes returns every default route with a gateway in
// /proc/net/ipv6_route, in the kernel's order.
func parseIPv6DefaultRoutes(data []byte) []route6 {
	var out []route6
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 10 {
			continue
		}
		if f[0] != strings.Repeat("0", 32) || f[1] != "00" {
			continue
		}
		b, err := hex.DecodeString(f[4])
		if err != nil || len(b) != 16 {
			continue
		}
		gw := netip.AddrFrom16([16]byte(b))
		if gw.IsUnspecified() {
			continue // a default route without a gateway (a point-to-point link, "unreachable")
		}
		out = append(out, route6{gw: gw, ifname: f[9]})
	}
	return out
}

// defaultRoutes6 returns this host's IPv6 default routes; none when the
// system does not say.
func defaultRoutes6() []route6 {
	b, err := os.ReadFile("/proc/net/ipv6_route")
	if err != nil {
		return nil
	}
	return parseIPv6DefaultRoutes(b)
}

// defaultRouter6 returns the IPv6 default router, where a PCP server
// listens when the router runs one.
func defaultRouter6() (netip.Addr, error) {
	b, err := os.ReadFile("/proc/net/ipv6_route")
	if err != nil {
		return netip.Addr{}, errors.New("the IPv6 default router is unknown on this system; give the PCP server with --natpmp")
	}
	return ParseIPv6Routes(b)
}
