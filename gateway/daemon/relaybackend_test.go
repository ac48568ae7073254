package daemon

import (
	"context"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/portfwd/portfwd/gateway"
	"github.com/portfwd/portfwd/gateway/relay"
	"github.com/portfwd/portfwd/internal/testenv"
)

// banner serves TCP on loopback, writing msg to each connection.
func banner(t *testing.T, msg string) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return serveBanner(t, ln, msg)
}

// serveBanner writes msg to each connection ln accepts until the test
// ends, and returns ln's address.
func serveBanner(t *testing.T, ln net.Listener, msg string) netip.AddrPort {
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			io.WriteString(c, msg)
			c.Close()
		}
	}()
	return netip.MustParseAddrPort(ln.Addr().String())
}

// read connects to addr and returns what it says, or the error.
func read(addr netip.AddrPort) (string, error) {
	c, err := net.DialTimeout("tcp", addr.String(), time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	b, err := io.ReadAll(c)
	return string(b), err
}

// freePort returns a TCP port free on both addresses, as far as a quick
// bind can tell.
func freePort(t *testing.T, a, b netip.Addr) uint16 {
	t.Helper()
	return testenv.FreePort(t, testenv.Bind{Network: "tcp4", Addr: a}, testenv.Bind{Network: "tcp4", Addr: b})
}

// The relay follows the external interface's address: after rebind, every
// relayed port answers on the new address and no longer on the old one.
func TestRelayBackendRebind(t *testing.T) {
	oldAddr, newAddr := netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.2")
	if ln, err := net.Listen("tcp4", netip.AddrPortFrom(newAddr, 0).String()); err != nil {
		testenv.Missing(t, "cannot bind %v on this system (%v)", newAddr, err)
	} else {
		ln.Close()
	}
	internal := banner(t, "inside")
	port := freePort(t, oldAddr, newAddr)
	b := newRelayBackend(relay.Config{BindAddr: oldAddr, Logger: discardLogger()}, discardLogger())
	defer b.Close()
	ctx := context.Background()
	rule := gateway.Rule{Protocol: gateway.TCP, ExternalPort: port, InternalAddr: internal.Addr(), InternalPort: internal.Port()}
	if err := b.Add(ctx, rule); err != nil {
		t.Fatal(err)
	}
	if got, err := read(netip.AddrPortFrom(oldAddr, port)); err != nil || got != "inside" {
		t.Fatalf("before the change, %v:%d gave %q, %v", oldAddr, port, got, err)
	}

	if err := b.rebind(ctx, newAddr); err != nil {
		t.Fatalf("rebind: %v", err)
	}
	if b.bindAddr() != newAddr {
		t.Errorf("bound on %v after rebind, want %v", b.bindAddr(), newAddr)
	}
	if got, err := read(netip.AddrPortFrom(newAddr, port)); err != nil || got != "inside" {
		t.Errorf("after the change, %v:%d gave %q, %v", newAddr, port, got, err)
	}
	if _, err := read(netip.AddrPortFrom(oldAddr, port)); err == nil {
		t.Errorf("the old address still relays port %d", port)
	}
	// Rules added later go to the new address; deleting works as before.
	if err := b.Delete(ctx, rule); err != nil {
		t.Fatal(err)
	}
	if _, err := read(netip.AddrPortFrom(newAddr, port)); err == nil {
		t.Error("the port still relays after Delete")
	}
	// Rebinding to the same address changes nothing.
	if err := b.rebind(ctx, newAddr); err != nil {
		t.Errorf("rebind to the same address: %v", err)
	}
}
