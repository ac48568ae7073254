//go:build !linux

package netroute

import (
	"fmt"
	"net/netip"
	"runtime"
)

// DefaultGateway is implemented on Linux only; elsewhere it returns an error
// asking for the gateway address to be given explicitly.
func DefaultGateway() (gw netip.Addr, ifname string, err error) {
	return netip.Addr{}, "", fmt.Errorf("netroute: finding the default gateway is not implemented on %s; give the gateway address explicitly", runtime.GOOS)
}
