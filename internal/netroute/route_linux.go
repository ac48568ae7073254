package netroute

import (
	"fmt"
	"net/netip"
	"os"
)

// DefaultGateway returns the IPv4 default gateway of this host and the
// interface that reaches it, from the main routing table. Policy routing
// rules and other tables are not consulted.
func DefaultGateway() (gw netip.Addr, ifname string, err error) {
	data, err := os.ReadFile(procNetRoute)
	if err != nil {
		return netip.Addr{}, "", fmt.Errorf("netroute: cannot read the routing table: %w; give the gateway address explicitly", err)
	}
	routes, err := ParseProcNetRoute(data)
	if err != nil {
		return netip.Addr{}, "", err
	}
	return DefaultGatewayFrom(routes)
}
