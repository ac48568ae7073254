package testenv

import (
	"net"
	"net/netip"
	"strconv"
	"testing"
)

func TestFreePortIsBelowTheEphemeralRangeAndBindable(t *testing.T) {
	lo := netip.MustParseAddr("127.0.0.1")
	binds := []Bind{{"tcp4", lo}, {"udp4", lo}}
	for range 20 {
		port := FreePort(t, binds...)
		if port < freePortLow || port >= freePortHigh {
			t.Fatalf("port %d outside %d-%d", port, freePortLow, freePortHigh-1)
		}
		if !canBindAll(port, binds) {
			t.Fatalf("port %d is not free for TCP and UDP on %v", port, lo)
		}
	}
}

func TestFreePortSkipsAHeldPort(t *testing.T) {
	// A port a listener holds is never returned.
	lo := netip.MustParseAddr("127.0.0.1")
	port := FreePort(t, Bind{"tcp4", lo})
	ln, err := net.Listen("tcp4", net.JoinHostPort(lo.String(), strconv.Itoa(int(port))))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if canBindAll(port, []Bind{{"tcp4", lo}}) {
		t.Fatalf("canBindAll says the held port %d is free", port)
	}
	for range 50 {
		if p := FreePort(t, Bind{"tcp4", lo}); p == port {
			t.Fatalf("FreePort returned the held port %d", port)
		}
	}
}
