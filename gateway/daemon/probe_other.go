//go:build !unix

package daemon

import (
	"net/netip"

	"github.com/portfwd/portfwd/gateway"
)

// canProbePorts: the router's own listening ports are not probed on this
// system (see probe_unix.go).
const canProbePorts = false

func portServed(gateway.Protocol, uint16, []netip.Addr) bool { return false }
