package relay

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/portfwd/portfwd/gateway"
	"github.com/portfwd/portfwd/internal/testenv"
)

// All tests run on 127.0.0.1 only, with ports the kernel hands out.

var loopback = netip.MustParseAddr("127.0.0.1")

// wait bounds every blocking step of a test.
const wait = 5 * time.Second

func newRelay(t testing.TB, cfg Config) *Relay {
	t.Helper()
	cfg.BindAddr = loopback
	if cfg.Logger == nil {
		cfg.Logger = testenv.Logger(t)
	}
	r := New(cfg)
	t.Cleanup(func() { r.Close() })
	return r
}

// freePort returns a port that is free on 127.0.0.1 for both TCP and UDP
// at the time of the call.
func freePort(t testing.TB) uint16 {
	t.Helper()
	lo := netip.MustParseAddr("127.0.0.1")
	return testenv.FreePort(t, testenv.Bind{Network: "tcp4", Addr: lo}, testenv.Bind{Network: "udp4", Addr: lo})
}

// server is a TCP service on 127.0.0.1 that handles each connection with
// handle.
func server(t testing.TB, handle func(c *net.TCPConn)) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serveConns(t, ln, handle)
	return ln.Addr().(*net.TCPAddr).AddrPort()
}

// serveConns handles each connection ln accepts with handle, until the
// test ends.
func serveConns(t testing.TB, ln net.Listener, handle func(c *net.TCPConn)) {
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				// No deadline: benchmarks stream for long. Handlers end
				// when the client closes, which every test does.
				defer c.Close()
				handle(c.(*net.TCPConn))
			}()
		}
	}()
}

func echo(c *net.TCPConn) { io.Copy(c, c) }

// servePackets answers each datagram pc reads with reply's answer, until
// the test ends.
func servePackets(t testing.TB, pc net.PacketConn, reply func(from net.Addr, b []byte) []byte) {
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, maxDatagram)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo(reply(from, buf[:n]), from)
		}
	}()
}

// udpServer answers each datagram with "<peer> <payload>", so that clients
// can tell which relay session carried it.
func udpServer(t testing.TB) netip.AddrPort {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	servePackets(t, pc, func(from net.Addr, b []byte) []byte { return fmt.Appendf(nil, "%s %s", from, b) })
	return pc.LocalAddr().(*net.UDPAddr).AddrPort()
}

// hop is one protocol relayed to a target, from any host or only from.
type hop struct {
	proto gateway.Protocol
	to    netip.AddrPort
	from  netip.Addr
}

// relayPort adds a rule for each hop on one external port and returns the
// port. It picks the port itself and moves on when another process takes
// it between freePort and Add.
func relayPort(t testing.TB, r *Relay, hops ...hop) uint16 {
	t.Helper()
	ctx := context.Background()
	for range 20 {
		port := freePort(t)
		var added []gateway.Rule
		var err error
		for _, h := range hops {
			rule := ruleTo(h.proto, port, h.to)
			rule.RemoteHost = h.from
			if err = r.Add(ctx, rule); err != nil {
				break
			}
			added = append(added, rule)
		}
		if err == nil {
			return port
		}
		for _, rule := range added {
			r.Delete(ctx, rule)
		}
		var inUse *PortInUseError
		if !errors.As(err, &inUse) {
			t.Fatal(err)
		}
	}
	t.Fatal("no external port could be bound")
	return 0
}

func ruleTo(proto gateway.Protocol, ext uint16, target netip.AddrPort) gateway.Rule {
	return gateway.Rule{Protocol: proto, ExternalPort: ext, InternalAddr: target.Addr(), InternalPort: target.Port()}
}

func add(t testing.TB, r *Relay, rule gateway.Rule) {
	t.Helper()
	if err := r.Add(context.Background(), rule); err != nil {
		t.Fatalf("Add(%v): %v", rule, err)
	}
}

func dial(t testing.TB, port uint16) *net.TCPConn {
	t.Helper()
	c, err := net.DialTimeout("tcp4", fmt.Sprintf("127.0.0.1:%d", port), wait)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(wait))
	return c.(*net.TCPConn)
}

// roundTrip writes msg and reads back as many bytes.
func roundTrip(c net.Conn, msg string) (string, error) {
	if _, err := io.WriteString(c, msg); err != nil {
		return "", err
	}
	buf := make([]byte, len(msg))
	_, err := io.ReadFull(c, buf)
	return string(buf), err
}

// wantClosed asserts that the peer of c closed or reset the connection.
func wantClosed(t testing.TB, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(wait))
	n, err := c.Read(make([]byte, 1))
	var ne net.Error
	if err == nil || (errors.As(err, &ne) && ne.Timeout()) {
		t.Fatalf("connection still open: read %d bytes, err %v", n, err)
	}
}

// wantRefused asserts that a connection to port is refused or closed
// without an answer: the relay's RST can beat the end of the client's
// connect, which then fails instead of a later read.
func wantRefused(t testing.TB, port uint16) {
	t.Helper()
	c, err := net.DialTimeout("tcp4", fmt.Sprintf("127.0.0.1:%d", port), wait)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("dial: %v, want a refusal", err)
		}
		return
	}
	defer c.Close()
	io.WriteString(c, "anyone?")
	wantClosed(t, c)
}

func TestTCPEcho(t *testing.T) {
	r := newRelay(t, Config{})
	port := relayPort(t, r, hop{proto: gateway.TCP, to: server(t, echo)})
	c := dial(t, port)
	for _, msg := range []string{"hello", "world", strings.Repeat("x", 10000)} {
		if got, err := roundTrip(c, msg); err != nil || got != msg {
			t.Fatalf("echo of %d bytes: %d bytes back, %v", len(msg), len(got), err)
		}
	}
}

func TestTCPLargeTransfer(t *testing.T) {
	r := newRelay(t, Config{})
	port := relayPort(t, r, hop{proto: gateway.TCP, to: server(t, echo)})
	c := dial(t, port)

	data := make([]byte, 8<<20)
	rand.Read(data)
	want := sha256.Sum256(data)
	errc := make(chan error, 1)
	go func() {
		_, err := c.Write(data)
		if err == nil {
			err = c.CloseWrite()
		}
		errc <- err
	}()
	h := sha256.New()
	n, err := io.Copy(h, c) // until the echo server's FIN, relayed
	if err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("writing: %v", err)
	}
	if n != int64(len(data)) || !bytes.Equal(h.Sum(nil), want[:]) {
		t.Fatalf("got %d bytes back with sha256 %x, want %d bytes with %x", n, h.Sum(nil), len(data), want)
	}
}

// TestTCPHalfClose: the client ends its request with a half-close and the
// server answers after seeing EOF, which only works if the relay passes the
// FIN on without closing the way back.
func TestTCPHalfClose(t *testing.T) {
	r := newRelay(t, Config{})
	port := relayPort(t, r, hop{proto: gateway.TCP, to: server(t, func(c *net.TCPConn) {
		body, err := io.ReadAll(c)
		if err != nil {
			return
		}
		fmt.Fprintf(c, "got %d bytes", len(body))
	})})
	c := dial(t, port)
	io.WriteString(c, "request body")
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	reply, err := io.ReadAll(c)
	if err != nil || string(reply) != "got 12 bytes" {
		t.Fatalf("reply after half-close: %q, %v", reply, err)
	}
}

func udpClient(t testing.TB, port uint16, local string) *net.UDPConn {
	t.Helper()
	laddr, err := net.ResolveUDPAddr("udp4", local)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.DialUDP("udp4", laddr, net.UDPAddrFromAddrPort(netip.AddrPortFrom(loopback, port)))
	if err != nil {
		testenv.Missing(t, "cannot bind a UDP client on %s: %v", local, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// exchange sends msg and returns the reply, or an error after d.
func exchange(c *net.UDPConn, msg string, d time.Duration) (string, error) {
	if _, err := c.Write([]byte(msg)); err != nil {
		return "", err
	}
	c.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, maxDatagram)
	n, err := c.Read(buf)
	return string(buf[:n]), err
}

// sessionOf splits an udpServer reply into the relay session's address as
// the server saw it and the payload.
func sessionOf(t testing.TB, reply string) (string, string) {
	t.Helper()
	from, payload, ok := strings.Cut(reply, " ")
	if !ok {
		t.Fatalf("malformed reply %q", reply)
	}
	return from, payload
}

func TestUDPTwoClients(t *testing.T) {
	r := newRelay(t, Config{})
	port := relayPort(t, r, hop{proto: gateway.UDP, to: udpServer(t)})
	a, b := udpClient(t, port, "127.0.0.1:0"), udpClient(t, port, "127.0.0.1:0")

	seen := map[string]string{} // client -> session address seen by the server
	for i := range 5 {
		for name, c := range map[string]*net.UDPConn{"a": a, "b": b} {
			msg := fmt.Sprintf("%s-%d", name, i)
			reply, err := exchange(c, msg, wait)
			if err != nil {
				t.Fatalf("client %s: %v", name, err)
			}
			from, payload := sessionOf(t, reply)
			if payload != msg {
				t.Fatalf("client %s sent %q and got %q: flows mixed up", name, msg, payload)
			}
			if prev, ok := seen[name]; ok && prev != from {
				t.Fatalf("client %s moved from session %s to %s", name, prev, from)
			}
			seen[name] = from
		}
	}
	if seen["a"] == seen["b"] {
		t.Fatalf("both clients share session %s", seen["a"])
	}
}

func TestUDPIdleTimeout(t *testing.T) {
	// Generous against a loaded machine: keepalives come every idle/5.
	const idle = 500 * time.Millisecond
	r := newRelay(t, Config{UDPIdleTimeout: idle})
	port := relayPort(t, r, hop{proto: gateway.UDP, to: udpServer(t)})
	c := udpClient(t, port, "127.0.0.1:0")

	first, _ := mustExchange(t, c, "1")
	// Traffic keeps the session alive past the timeout. The pause between
	// two exchanges is the stimulus; a stalled machine that stretched one
	// past the timeout proves nothing, and the session then starts afresh.
	last := time.Now()
	for range 8 {
		time.Sleep(idle / 5)
		from, _ := mustExchange(t, c, "keep")
		gap := time.Since(last)
		last = time.Now()
		if from != first {
			if gap < idle {
				t.Fatalf("session changed from %s to %s although busy (%v since the last exchange)", first, from, gap)
			}
			t.Logf("the machine stalled %v between two exchanges; the session restarted, as it should", gap)
			first = from
		}
	}
	f := r.forwardOf(gateway.UDP, port)
	deadline := time.Now().Add(wait)
	for f.sessionCount() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("session still open %v after the idle timeout", wait)
		}
		time.Sleep(idle / 4)
	}
	if from, _ := mustExchange(t, c, "2"); from == first {
		t.Fatalf("after idling, traffic still uses the old session %s", first)
	}
}

func mustExchange(t testing.TB, c *net.UDPConn, msg string) (string, string) {
	t.Helper()
	reply, err := exchange(c, msg, wait)
	if err != nil {
		t.Fatalf("exchange %q: %v", msg, err)
	}
	return sessionOf(t, reply)
}

func (r *Relay) forwardOf(p gateway.Protocol, port uint16) *forward {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.fwds[key{p, port}]
}

func (f *forward) sessionCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.sessions)
}

func TestDeleteEndsFlowsAndFreesPort(t *testing.T) {
	r := newRelay(t, Config{})
	port := relayPort(t, r, hop{proto: gateway.TCP, to: server(t, echo)}, hop{proto: gateway.UDP, to: udpServer(t)})
	tcp, udp := r.Rules()[0], r.Rules()[1]
	c := dial(t, port)
	if _, err := roundTrip(c, "live"); err != nil {
		t.Fatal(err)
	}
	u := udpClient(t, port, "127.0.0.1:0")
	mustExchange(t, u, "live")

	for _, rule := range []gateway.Rule{tcp, udp} {
		if err := r.Delete(context.Background(), rule); err != nil {
			t.Fatalf("Delete(%v): %v", rule, err)
		}
	}
	wantClosed(t, c)
	if reply, err := exchange(u, "anyone?", 300*time.Millisecond); err == nil {
		t.Fatalf("UDP still relayed after Delete: %q", reply)
	}
	// The port is free again, for both protocols.
	ln, err := net.Listen("tcp4", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatalf("TCP port not freed: %v", err)
	}
	ln.Close()
	pc, err := net.ListenPacket("udp4", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatalf("UDP port not freed: %v", err)
	}
	pc.Close()
	if got := r.Rules(); len(got) != 0 {
		t.Fatalf("Rules() after Delete = %v", got)
	}
	if err := r.Delete(context.Background(), tcp); err != nil {
		t.Fatalf("deleting a deleted rule: %v", err)
	}
}

func TestRemoteHost(t *testing.T) {
	r := newRelay(t, Config{})
	allowed := netip.MustParseAddr("127.0.0.2") // all of 127/8 is loopback on Linux
	port := relayPort(t, r,
		hop{proto: gateway.TCP, to: server(t, echo), from: allowed},
		hop{proto: gateway.UDP, to: udpServer(t), from: allowed})

	t.Run("tcp", func(t *testing.T) {
		d := net.Dialer{Timeout: wait, LocalAddr: &net.TCPAddr{IP: allowed.AsSlice()}}
		c, err := d.Dial("tcp4", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			testenv.Missing(t, "cannot use 127.0.0.2 as a source: %v", err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(wait))
		if got, err := roundTrip(c, "allowed"); err != nil || got != "allowed" {
			t.Fatalf("from the allowed host: %q, %v", got, err)
		}
		wantRefused(t, port) // from 127.0.0.1
	})
	t.Run("udp", func(t *testing.T) {
		if _, payload := mustExchange(t, udpClient(t, port, "127.0.0.2:0"), "allowed"); payload != "allowed" {
			t.Fatalf("from the allowed host: %q", payload)
		}
		if reply, err := exchange(udpClient(t, port, "127.0.0.1:0"), "denied", 300*time.Millisecond); err == nil {
			t.Fatalf("datagram from another host relayed: %q", reply)
		}
	})
}

func TestReplace(t *testing.T) {
	r := newRelay(t, Config{})
	old := server(t, echo)
	port := relayPort(t, r, hop{proto: gateway.TCP, to: old})
	live := dial(t, port)
	if _, err := roundTrip(live, "old"); err != nil {
		t.Fatal(err)
	}
	add(t, r, ruleTo(gateway.TCP, port, old)) // the same rule again: nothing ends
	if got, err := roundTrip(live, "still"); err != nil || got != "still" {
		t.Fatalf("re-adding the same rule disturbed a flow: %q, %v", got, err)
	}

	add(t, r, ruleTo(gateway.TCP, port, server(t, func(c *net.TCPConn) { io.WriteString(c, "new") })))
	wantClosed(t, live)
	reply, err := io.ReadAll(dial(t, port))
	if err != nil || string(reply) != "new" {
		t.Fatalf("after replacing: %q, %v", reply, err)
	}
	if got := r.Rules(); len(got) != 1 {
		t.Fatalf("Rules() = %v, want the one replaced rule", got)
	}

	t.Run("udp", func(t *testing.T) {
		add(t, r, ruleTo(gateway.UDP, port, udpServer(t)))
		c := udpClient(t, port, "127.0.0.1:0")
		mustExchange(t, c, "old")
		// The new server tells itself apart by answering in upper case.
		pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		go func() {
			buf := make([]byte, 1500)
			for {
				n, from, err := pc.ReadFrom(buf)
				if err != nil {
					return
				}
				pc.WriteTo(append([]byte("NEW "), bytes.ToUpper(buf[:n])...), from)
			}
		}()
		add(t, r, ruleTo(gateway.UDP, port, pc.LocalAddr().(*net.UDPAddr).AddrPort()))
		if reply, err := exchange(c, "again", wait); err != nil || reply != "NEW AGAIN" {
			t.Fatalf("same client after replacing: %q, %v", reply, err)
		}
	})
}

func TestConnectionLimit(t *testing.T) {
	r := newRelay(t, Config{MaxConnsPerRule: 2})
	port := relayPort(t, r, hop{proto: gateway.TCP, to: server(t, echo)})
	a, b := dial(t, port), dial(t, port)
	for _, c := range []net.Conn{a, b} {
		if _, err := roundTrip(c, "in"); err != nil {
			t.Fatal(err)
		}
	}
	wantRefused(t, port)

	a.Close()
	deadline := time.Now().Add(wait)
	for {
		// Until the relay has seen a's end, new connections are still
		// reset, possibly before the dial completes.
		if c, err := net.DialTimeout("tcp4", fmt.Sprintf("127.0.0.1:%d", port), wait); err == nil {
			c.SetDeadline(time.Now().Add(wait))
			got, err := roundTrip(c, "again")
			c.Close()
			if err == nil && got == "again" {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("no slot freed after a connection ended")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestUnreachableTargetResetsClient(t *testing.T) {
	r := newRelay(t, Config{DialTimeout: time.Second})
	closed := freePort(t) // nothing listens there
	port := relayPort(t, r, hop{proto: gateway.TCP, to: netip.AddrPortFrom(loopback, closed)})
	wantRefused(t, port)
}

func TestPortInUse(t *testing.T) {
	r := newRelay(t, Config{})
	for _, proto := range []gateway.Protocol{gateway.TCP, gateway.UDP} {
		t.Run(proto.String(), func(t *testing.T) {
			port := freePort(t)
			addr := fmt.Sprintf("127.0.0.1:%d", port)
			var busy io.Closer
			var err error
			if proto == gateway.TCP {
				busy, err = net.Listen("tcp4", addr)
			} else {
				busy, err = net.ListenPacket("udp4", addr)
			}
			if err != nil {
				t.Fatal(err)
			}
			defer busy.Close()
			err = r.Add(context.Background(), ruleTo(proto, port, netip.MustParseAddrPort("127.0.0.1:9")))
			var inUse *PortInUseError
			if !errors.As(err, &inUse) || inUse.Port != port || inUse.Protocol != proto {
				t.Fatalf("Add on a busy port: %v, want a *PortInUseError for %d/%v", err, port, proto)
			}
			if want := fmt.Sprintf("external port %d/%v is in use on the gateway itself", port, proto); !strings.Contains(err.Error(), want) {
				t.Fatalf("error %q does not say %q", err, want)
			}
			if len(r.Rules()) != 0 {
				t.Fatalf("failed Add left a rule: %v", r.Rules())
			}
		})
	}
}

func TestAddRejects(t *testing.T) {
	r := newRelay(t, Config{})
	port := freePort(t)
	for name, rule := range map[string]gateway.Rule{
		"no target": {Protocol: gateway.TCP, ExternalPort: port, InternalPort: 80},
		"port 0":    {Protocol: gateway.TCP, InternalAddr: loopback, InternalPort: 80},
		"sctp":      {Protocol: 132, ExternalPort: port, InternalAddr: loopback, InternalPort: 80},
		"itself":    {Protocol: gateway.TCP, ExternalPort: port, InternalAddr: loopback, InternalPort: port},
	} {
		if err := r.Add(context.Background(), rule); err == nil {
			t.Errorf("%s: Add(%v) succeeded", name, rule)
		}
	}
}

func TestCloseAndFlush(t *testing.T) {
	r := newRelay(t, Config{})
	p1 := relayPort(t, r, hop{proto: gateway.TCP, to: server(t, echo)})
	relayPort(t, r, hop{proto: gateway.UDP, to: udpServer(t)})
	c := dial(t, p1)
	if err := r.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	wantClosed(t, c)
	if got := r.Rules(); len(got) != 0 {
		t.Fatalf("Rules() after Flush = %v", got)
	}
	add(t, r, ruleTo(gateway.TCP, p1, server(t, echo)))
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := net.DialTimeout("tcp4", fmt.Sprintf("127.0.0.1:%d", p1), wait); err == nil {
		t.Fatal("port still open after Close")
	}
	if err := r.Add(context.Background(), ruleTo(gateway.TCP, p1, netip.MustParseAddrPort("127.0.0.1:9"))); err == nil {
		t.Fatal("Add after Close succeeded")
	}
}

// TestManyConcurrentFlows runs TCP and UDP flows at once, for the race
// detector.
func TestManyConcurrentFlows(t *testing.T) {
	r := newRelay(t, Config{Logger: slog.New(slog.DiscardHandler)})
	port := relayPort(t, r, hop{proto: gateway.TCP, to: server(t, echo)}, hop{proto: gateway.UDP, to: udpServer(t)})
	errc := make(chan error, 40)
	for i := range 20 {
		go func() {
			c, err := net.DialTimeout("tcp4", fmt.Sprintf("127.0.0.1:%d", port), wait)
			if err != nil {
				errc <- err
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(wait))
			msg := fmt.Sprintf("tcp %d", i)
			got, err := roundTrip(c, msg)
			if err == nil && got != msg {
				err = fmt.Errorf("got %q for %q", got, msg)
			}
			errc <- err
		}()
		go func() {
			c, err := net.Dial("udp4", fmt.Sprintf("127.0.0.1:%d", port))
			if err != nil {
				errc <- err
				return
			}
			defer c.Close()
			msg := fmt.Sprintf("udp %d", i)
			reply, err := exchange(c.(*net.UDPConn), msg, wait)
			if err == nil && !strings.HasSuffix(reply, " "+msg) {
				err = fmt.Errorf("got %q for %q", reply, msg)
			}
			errc <- err
		}()
	}
	for range 40 {
		if err := <-errc; err != nil {
			t.Error(err)
		}
	}
}
