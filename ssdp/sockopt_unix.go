//go:build unix

package ssdp

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// reuseAddr lets the responder share port 1900 with another SSDP listener on
// the same host (minissdpd, a media server): every socket bound to the port
// gets its copy of the multicast searches.
func reuseAddr(network, address string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
	})
	if err != nil {
		return err
	}
	return serr
}
