package testenv

import (
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"strconv"
	"testing"
)

// Bind is one place a test will listen: a network ("tcp", "tcp4", "udp4",
// ...) and a host address, the zero Addr meaning every address.
type Bind struct {
	Network string
	Addr    netip.Addr
}

// Port range FreePort draws from: below Linux's default ephemeral range
// (net.ipv4.ip_local_port_range, 32768-60999).
const (
	freePortLow  = 20000
	freePortHigh = 32768
)

// FreePort returns a port that every one of binds could listen on at the
// time of the call.
//
// It draws the port from below the kernel's ephemeral range, not by
// listening on port 0: a port from that range is handed out again as the
// source port of outgoing connections, and any connection in the network
// namespace (which all of a run's packages share) can take it in the moment
// between the helper closing it and the test listening on it again. CI
// caught that: a check found "its" port held and probed a program that was
// not there.
func FreePort(t testing.TB, binds ...Bind) uint16 {
	t.Helper()
	if len(binds) == 0 {
		binds = []Bind{{Network: "tcp"}}
	}
	for range 200 {
		port := uint16(freePortLow + rand.IntN(freePortHigh-freePortLow))
		if canBindAll(port, binds) {
			return port
		}
	}
	t.Fatalf("testenv: no port in %d-%d is free for %v", freePortLow, freePortHigh-1, binds)
	return 0
}

func canBindAll(port uint16, binds []Bind) bool {
	var held []io.Closer
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for _, b := range binds {
		host := ""
		if b.Addr.IsValid() {
			host = b.Addr.String()
		}
		addr := net.JoinHostPort(host, strconv.Itoa(int(port)))
		var c io.Closer
		var err error
		switch b.Network {
		case "udp", "udp4", "udp6":
			c, err = net.ListenPacket(b.Network, addr)
		default:
			c, err = net.Listen(b.Network, addr)
		}
		if err != nil {
			return false
		}
		held = append(held, c)
	}
	return true
}
