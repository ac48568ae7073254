package natlab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

// Server is a tiny TCP banner server or UDP echo server running in a lab
// host. It records who talked to it, which shows what NAT did to the source
// address.
type Server struct {
	addr  netip.AddrPort
	mu    sync.Mutex
	peers []netip.AddrPort
	close func()
}

// Addr returns the address the server listens on.
func (s *Server) Addr() netip.AddrPort { return s.addr }

// Peers returns the source addresses of the connections or datagrams seen
// so far, in order.
func (s *Server) Peers() []netip.AddrPort {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]netip.AddrPort(nil), s.peers...)
}

// Close stops the server. It also happens when the test ends.
func (s *Server) Close() { s.close() }

func (s *Server) saw(a net.Addr) {
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return
	}
	s.mu.Lock()
	s.peers = append(s.peers, netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()))
	s.mu.Unlock()
}

// ServeTCP starts a TCP server on addr in host's namespace that writes
// banner and a newline to every connection and closes it. The server runs
// in the test process (its socket lives in the namespace) and is ready when
// ServeTCP returns.
func (l *Lab) ServeTCP(t testing.TB, host string, addr netip.AddrPort, banner string) *Server {
	t.Helper()
	ln, err := l.Listen(host, tcpNetwork("tcp", addr.Addr()), addr.String())
	if err != nil {
		t.Fatalf("natlab: TCP server on %s %v: %v", host, addr, err)
	}
	s := &Server{addr: addr}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return // closed
			}
			s.saw(c.RemoteAddr())
			c.SetWriteDeadline(time.Now().Add(5 * time.Second))
			io.WriteString(c, banner+"\n")
			c.Close()
		}
	}()
	var once sync.Once
	s.close = func() { once.Do(func() { ln.Close(); wg.Wait() }) }
	t.Cleanup(s.close)
	return s
}

// DialTCP connects from host to `to`, reads until the server closes, and
// returns what it read without surrounding space. It fails when the
// connection is refused or nothing arrives within timeout.
func (l *Lab) DialTCP(t testing.TB, from string, to netip.AddrPort, timeout time.Duration) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c, err := l.DialContext(ctx, from, tcpNetwork("tcp", to.Addr()), to.String())
	if err != nil {
		return "", fmt.Errorf("natlab: TCP from %s to %v: %w", from, to, err)
	}
	defer c.Close()
	deadline, _ := ctx.Deadline()
	c.SetDeadline(deadline)
	b, err := io.ReadAll(c)
	if err != nil {
		return string(b), fmt.Errorf("natlab: TCP from %s to %v: reading: %w", from, to, err)
	}
	return strings.TrimSpace(string(b)), nil
}

// ServeUDPEcho starts a UDP server on addr in host's namespace that sends
// every datagram back to its sender unchanged.
func (l *Lab) ServeUDPEcho(t testing.TB, host string, addr netip.AddrPort) *Server {
	t.Helper()
	pc, err := l.ListenPacket(host, tcpNetwork("udp", addr.Addr()), addr.String())
	if err != nil {
		t.Fatalf("natlab: UDP echo on %s %v: %v", host, addr, err)
	}
	s := &Server{addr: addr}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue // e.g. ICMP-induced errors: keep serving
			}
			s.saw(from)
			pc.WriteTo(buf[:n], from)
		}
	}()
	var once sync.Once
	s.close = func() { once.Do(func() { pc.Close(); wg.Wait() }) }
	t.Cleanup(s.close)
	return s
}

// ProbeUDP sends payload from host to `to` from a fresh port (so no older
// conntrack entry can help it), resending every 200 ms, and returns the
// first reply. It fails on an ICMP port unreachable or when nothing comes
// back within timeout.
func (l *Lab) ProbeUDP(t testing.TB, from string, to netip.AddrPort, payload string, timeout time.Duration) (string, error) {
	t.Helper()
	// Connected, so an ICMP error ends the wait at once.
	c, err := l.DialContext(context.Background(), from, tcpNetwork("udp", to.Addr()), to.String())
	if err != nil {
		return "", fmt.Errorf("natlab: UDP from %s to %v: %w", from, to, err)
	}
	defer c.Close()
	deadline := time.Now().Add(timeout)
	buf := make([]byte, 2048)
	for time.Now().Before(deadline) {
		if _, err := c.Write([]byte(payload)); err != nil {
			return "", fmt.Errorf("natlab: UDP from %s to %v: %w", from, to, err)
		}
		wait := time.Now().Add(200 * time.Millisecond)
		if wait.After(deadline) {
			wait = deadline
		}
		c.SetReadDeadline(wait)
		n, err := c.Read(buf)
		if err == nil {
			return string(buf[:n]), nil
		}
		if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
			return "", fmt.Errorf("natlab: UDP from %s to %v: %w", from, to, err)
		}
	}
	return "", fmt.Errorf("natlab: UDP from %s to %v: no reply within %v", from, to, timeout)
}
