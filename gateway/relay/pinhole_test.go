//go:build linux

package relay

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"testing"
	"time"

	"github.com/portfwd/portfwd/gateway"
	"github.com/portfwd/portfwd/internal/testenv"
)

// Pinholes are relayed from one IPv6 address of the router's to another
// host's at the same port, so a test needs two IPv6 addresses besides ::1:
// each pinhole test runs in a network namespace of its own, where they are
// added to lo (the test binary runs itself again there, naming only that
// test).
var (
	routerAddr = netip.MustParseAddr("2001:db8:113::1") // where the relay listens
	hostAddr   = netip.MustParseAddr("2001:db8:77::2")  // the LAN host
	peerAddr   = netip.MustParseAddr("2001:db8:113::2") // a peer on the Internet
	otherPeer  = netip.MustParseAddr("2001:db8:113::3") // another one
)

// inNetns reports whether t runs in its own namespace with the test
// addresses (testenv.InOwnNetns). When it does not, it runs t there,
// reports its outcome and returns false: the caller returns.
func inNetns(t *testing.T) bool {
	t.Helper()
	if !testenv.InOwnNetns(t) {
		return false
	}
	ip := testenv.Programs(t, "ip")["ip"]
	for _, a := range []netip.Addr{routerAddr, hostAddr, peerAddr, otherPeer} {
		if out, err := exec.Command(ip, "-6", "addr", "add", a.String()+"/128", "dev", "lo", "nodad").CombinedOutput(); err != nil {
			t.Fatalf("ip addr add %v: %v: %s", a, err, out)
		}
	}
	return true
}

func newPinholeRelay(t *testing.T) *Relay {
	t.Helper()
	return newRelay(t, Config{PinholeAddrs: []netip.Addr{routerAddr}})
}

// serve6 runs a TCP echo and a UDP echo on the host's address at port,
// which it picks free for both.
func serve6(t *testing.T) uint16 {
	t.Helper()
	ln, err := net.Listen("tcp6", netip.AddrPortFrom(hostAddr, 0).String())
	if err != nil {
		t.Fatal(err)
	}
	serveConns(t, ln, echo)
	port := ln.Addr().(*net.TCPAddr).AddrPort().Port()
	pc, err := net.ListenPacket("udp6", netip.AddrPortFrom(hostAddr, port).String())
	if err != nil {
		t.Fatal(err)
	}
	servePackets(t, pc, func(_ net.Addr, b []byte) []byte { return b })
	return port
}

func pinholeTo(proto gateway.Protocol, port uint16) gateway.PinholeRule {
	return gateway.PinholeRule{PinholeKey: gateway.PinholeKey{Protocol: proto, InternalAddr: hostAddr, InternalPort: port}}
}

// dial6 connects from from (any port when fromPort is 0) to the router's
// address at port.
func dial6(network string, from netip.Addr, fromPort, port uint16) (net.Conn, error) {
	d := net.Dialer{Timeout: wait}
	to := netip.AddrPortFrom(routerAddr, port).String()
	if network == "tcp6" {
		d.LocalAddr = net.TCPAddrFromAddrPort(netip.AddrPortFrom(from, fromPort))
	} else {
		d.LocalAddr = net.UDPAddrFromAddrPort(netip.AddrPortFrom(from, fromPort))
	}
	c, err := d.Dial(network, to)
	if err == nil {
		c.SetDeadline(time.Now().Add(wait))
	}
	return c, err
}

// tcpThrough says whether an echo through the router's port works from
// from.
func tcpThrough(from netip.Addr, fromPort, port uint16) error {
	c, err := dial6("tcp6", from, fromPort, port)
	if err != nil {
		return err
	}
	defer c.Close()
	if got, err := roundTrip(c, "hello"); err != nil || got != "hello" {
		return fmt.Errorf("echo: %q, %v", got, err)
	}
	return nil
}

// udpThrough says whether a datagram through the router's port is echoed
// within d.
func udpThrough(from netip.Addr, fromPort, port uint16, d time.Duration) error {
	c, err := dial6("udp6", from, fromPort, port)
	if err != nil {
		return err
	}
	defer c.Close()
	got, err := exchange(c.(*net.UDPConn), "ping", d)
	if err == nil && got != "ping" {
		err = fmt.Errorf("echo: %q", got)
	}
	return err
}

// A pinhole is relayed from the router's IPv6 address at its port to the
// LAN host's address, TCP and UDP, until it is deleted; then the port is
// closed and free again.
func TestPinholeRelaysTCPAndUDP(t *testing.T) {
	if !inNetns(t) {
		return
	}
	r := newPinholeRelay(t)
	ctx := context.Background()
	port := serve6(t)
	tcp, udp := pinholeTo(gateway.TCP, port), pinholeTo(gateway.UDP, port)
	if err := tcpThrough(peerAddr, 0, port); err == nil {
		t.Fatal("the router's port answered before any pinhole")
	}
	for _, p := range []gateway.PinholeRule{tcp, udp} {
		if err := r.AddPinhole(ctx, p); err != nil {
			t.Fatalf("AddPinhole(%v): %v", p, err)
		}
	}
	if err := tcpThrough(peerAddr, 0, port); err != nil {
		t.Fatalf("TCP through the pinhole: %v", err)
	}
	if err := udpThrough(peerAddr, 0, port, wait); err != nil {
		t.Fatalf("UDP through the pinhole: %v", err)
	}
	// A renewal (same key, another timeout) changes nothing.
	renewed := tcp
	renewed.Timeout = time.Hour
	if err := r.AddPinhole(ctx, renewed); err != nil {
		t.Fatalf("renewal: %v", err)
	}
	if got := r.Pinholes(); len(got) != 2 {
		t.Fatalf("Pinholes() = %v, want the two", got)
	}
	for _, p := range []gateway.PinholeRule{tcp, udp} {
		if err := r.DeletePinhole(ctx, p); err != nil {
			t.Fatalf("DeletePinhole(%v): %v", p, err)
		}
	}
	if err := tcpThrough(peerAddr, 0, port); err == nil {
		t.Error("TCP still relayed after DeletePinhole")
	}
	if err := udpThrough(peerAddr, 0, port, 300*time.Millisecond); err == nil {
		t.Error("UDP still relayed after DeletePinhole")
	}
	for _, network := range []string{"tcp6", "udp6"} {
		addr := netip.AddrPortFrom(routerAddr, port).String()
		if network == "tcp6" {
			ln, err := net.Listen(network, addr)
			if err != nil {
				t.Errorf("the port is not free after DeletePinhole: %v", err)
				continue
			}
			ln.Close()
		} else {
			pc, err := net.ListenPacket(network, addr)
			if err != nil {
				t.Errorf("the port is not free after DeletePinhole: %v", err)
				continue
			}
			pc.Close()
		}
	}
	// Deleting what is gone is not an error.
	if err := r.DeletePinhole(ctx, tcp); err != nil {
		t.Errorf("DeletePinhole again: %v", err)
	}
}

// A pinhole restricted to a remote host (and port) admits that peer only.
func TestPinholeRemoteFilter(t *testing.T) {
	if !inNetns(t) {
		return
	}
	r := newPinholeRelay(t)
	ctx := context.Background()
	port := serve6(t)
	byHost := pinholeTo(gateway.TCP, port)
	byHost.RemoteHost = peerAddr
	byPort := pinholeTo(gateway.UDP, port)
	byPort.RemoteHost, byPort.RemotePort = peerAddr, 40001
	for _, p := range []gateway.PinholeRule{byHost, byPort} {
		if err := r.AddPinhole(ctx, p); err != nil {
			t.Fatalf("AddPinhole(%v): %v", p, err)
		}
	}
	if err := tcpThrough(peerAddr, 0, port); err != nil {
		t.Errorf("TCP from the remote host: %v", err)
	}
	if err := tcpThrough(otherPeer, 0, port); err == nil {
		t.Error("TCP from another host got through")
	}
	if err := udpThrough(peerAddr, 40001, port, wait); err != nil {
		t.Errorf("UDP from the remote host and port: %v", err)
	}
	if err := udpThrough(peerAddr, 40002, port, 300*time.Millisecond); err == nil {
		t.Error("UDP from another port of the remote host got through")
	}
	if err := udpThrough(otherPeer, 40001, port, 300*time.Millisecond); err == nil {
		t.Error("UDP from another host got through")
	}
}

// One port is one pinhole: a second pinhole of the protocol and port (for
// another filter, or another host) is refused as no room (701 /
// NO_RESOURCES), and the first keeps working; Flush closes them all.
func TestPinholeConflictAndFlush(t *testing.T) {
	if !inNetns(t) {
		return
	}
	r := newPinholeRelay(t)
	ctx := context.Background()
	port := serve6(t)
	first := pinholeTo(gateway.TCP, port)
	if err := r.AddPinhole(ctx, first); err != nil {
		t.Fatal(err)
	}
	second := first
	second.RemoteHost = otherPeer
	err := r.AddPinhole(ctx, second)
	var conflict *PinholeConflictError
	if !errors.As(err, &conflict) || !errors.Is(err, gateway.ErrPinholeSpace) {
		t.Fatalf("a second pinhole on the port: %v, want a *PinholeConflictError that is ErrPinholeSpace", err)
	}
	if err := tcpThrough(peerAddr, 0, port); err != nil {
		t.Fatalf("the first pinhole after the refusal: %v", err)
	}
	// Deleting the refused one does not close the first.
	if err := r.DeletePinhole(ctx, second); err != nil {
		t.Fatal(err)
	}
	if err := tcpThrough(peerAddr, 0, port); err != nil {
		t.Fatalf("the first pinhole after deleting the refused one: %v", err)
	}
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := tcpThrough(peerAddr, 0, port); err == nil {
		t.Error("TCP still relayed after Flush")
	}
	if got := r.Pinholes(); len(got) != 0 {
		t.Errorf("Pinholes() after Flush = %v", got)
	}
}

// AddPinhole refuses what it cannot relay, before binding anything.
func TestAddPinholeRejects(t *testing.T) {
	r := newRelay(t, Config{PinholeAddrs: []netip.Addr{netip.IPv6Loopback()}})
	ctx := context.Background()
	for _, p := range []gateway.PinholeRule{
		{PinholeKey: gateway.PinholeKey{Protocol: 1, InternalAddr: hostAddr, InternalPort: 80}},
		{PinholeKey: gateway.PinholeKey{Protocol: gateway.TCP, InternalAddr: hostAddr}},
		{PinholeKey: gateway.PinholeKey{Protocol: gateway.TCP, InternalAddr: netip.MustParseAddr("192.0.2.1"), InternalPort: 80}},
		{PinholeKey: gateway.PinholeKey{Protocol: gateway.TCP, InternalAddr: netip.MustParseAddr("::ffff:192.0.2.1"), InternalPort: 80}},
		{PinholeKey: gateway.PinholeKey{Protocol: gateway.TCP, InternalAddr: netip.IPv6Unspecified(), InternalPort: 80}},
		// The address it listens on: a loop.
		{PinholeKey: gateway.PinholeKey{Protocol: gateway.TCP, InternalAddr: netip.IPv6Loopback(), InternalPort: 80}},
	} {
		if err := r.AddPinhole(ctx, p); err == nil {
			t.Errorf("AddPinhole(%v) accepted", p)
		}
	}
	if got := r.Pinholes(); len(got) != 0 {
		t.Errorf("Pinholes() = %v", got)
	}
}
