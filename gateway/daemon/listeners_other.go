//go:build !linux

package daemon

import (
	"errors"
	"net/netip"

	"github.com/portfwd/portfwd/gateway"
)

// canListListeners: the router's own listening ports are not checked
// on this system (see listeners_linux.go).
const canListListeners = false

func listeningPorts(gateway.Protocol, []netip.Addr) (*gateway.PortSet, error) {
	return nil, errors.New("listing the listening sockets is implemented on Linux only")
}
