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
		if gw.IsLinkLocalUnicast() {
			gw = gw.WithZone(f[9])
		}
		return gw, nil
	}
	return netip.Addr{}, errors.New("no IPv6 default route with a gateway")
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
