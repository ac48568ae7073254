//go:build unix

package daemon

import (
	"errors"
	"net/netip"
	"syscall"

	"github.com/portfwd/portfwd/gateway"
)

// The router's own services: a mapping of a port on which the router
// itself listens from outside (its SSH, its web interface on 8443) would
// take that service over from the Internet. miniupnpd checks for a
// listener before every mapping (port_in_use, reading /proc/net/tcp);
// this asks the kernel directly, for the one port about to be given, with
// a bind probe on the external addresses: a socket bound to an address
// conflicts exactly with sockets on that address or on every address,
// never with those bound to the LAN side only. It costs four system calls.
//
//   - TCP: with SO_REUSEADDR, as servers set it, so that only a listening
//     socket (or one bound without it) conflicts, not the TIME_WAIT left by
//     closed connections.
//   - UDP: without it, so that any socket bound there conflicts, whatever
//     options it set.

// canProbePorts says that portServed works here.
const canProbePorts = true

// portServed reports whether a socket of this host holds proto's port on
// one of addrs (IPv4).
func portServed(proto gateway.Protocol, port uint16, addrs []netip.Addr) bool {
	typ := syscall.SOCK_STREAM
	if proto == gateway.UDP {
		typ = syscall.SOCK_DGRAM
	}
	for _, a := range addrs {
		if !a.Is4() {
			continue
		}
		fd, err := syscall.Socket(syscall.AF_INET, typ|syscall.SOCK_CLOEXEC, 0)
		if err != nil {
			return false // out of descriptors: do not refuse for it
		}
		if proto == gateway.TCP {
			syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1)
		}
		err = syscall.Bind(fd, &syscall.SockaddrInet4{Port: int(port), Addr: a.As4()})
		syscall.Close(fd)
		if errors.Is(err, syscall.EADDRINUSE) {
			return true
		}
	}
	return false
}
