//go:build !unix

package ssdp

import "syscall"

// reuseAddr is a no-op where SO_REUSEADDR is not reachable the Unix way; the
// responder then needs port 1900 to itself.
func reuseAddr(network, address string, c syscall.RawConn) error { return nil }
