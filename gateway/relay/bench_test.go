package relay

import (
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"testing"

	"github.com/portfwd/portfwd/gateway"
)

// benchTarget returns where the benchmark client connects: straight to the
// server ("direct"), or through a relay, so that the two results side by
// side show what the relay costs.
func benchTarget(b *testing.B, via string, srv netip.AddrPort) string {
	if via == "direct" {
		return srv.String()
	}
	r := New(Config{BindAddr: loopback, Logger: slog.New(slog.DiscardHandler)})
	b.Cleanup(func() { r.Close() })
	return fmt.Sprintf("127.0.0.1:%d", relayPort(b, r, hop{proto: gateway.TCP, to: srv}))
}

// BenchmarkTCPThroughput streams 1 MiB per op to a sink that reports the
// byte count at the end, so the time covers delivery, not just buffering.
func BenchmarkTCPThroughput(b *testing.B) {
	srv := server(b, func(c *net.TCPConn) {
		n, _ := io.Copy(io.Discard, c)
		binary.Write(c, binary.BigEndian, n)
	})
	chunk := make([]byte, 1<<20)
	for _, via := range []string{"direct", "relay"} {
		b.Run(via, func(b *testing.B) {
			c, err := net.Dial("tcp4", benchTarget(b, via, srv))
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			b.SetBytes(int64(len(chunk)))
			b.ResetTimer()
			for range b.N {
				if _, err := c.Write(chunk); err != nil {
					b.Fatal(err)
				}
			}
			c.(*net.TCPConn).CloseWrite()
			var n int64
			if err := binary.Read(c, binary.BigEndian, &n); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			if n != int64(b.N)*int64(len(chunk)) {
				b.Fatalf("sink got %d bytes, want %d", n, b.N*len(chunk))
			}
		})
	}
}

// BenchmarkTCPLatency is a 1-byte ping-pong: ns/op is the round-trip time,
// and relay minus direct is the latency the relay adds (two more hops
// through the loopback and the relay's goroutines).
func BenchmarkTCPLatency(b *testing.B) {
	srv := server(b, func(c *net.TCPConn) {
		buf := make([]byte, 1)
		for {
			if _, err := c.Read(buf); err != nil {
				return
			}
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
	})
	for _, via := range []string{"direct", "relay"} {
		b.Run(via, func(b *testing.B) {
			c, err := net.Dial("tcp4", benchTarget(b, via, srv))
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			buf := []byte{1}
			b.ResetTimer()
			for range b.N {
				if _, err := c.Write(buf); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(c, buf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkPinholeAddDelete times one relayed IPv6 pinhole opened and
// closed (a TCP listener bound and closed, its goroutine ended), on ::1,
// with 0 and 1,000 other pinholes relayed.
func BenchmarkPinholeAddDelete(b *testing.B) {
	for _, others := range []int{0, 1000} {
		b.Run(fmt.Sprintf("others=%d", others), func(b *testing.B) {
			r := New(Config{PinholeAddrs: []netip.Addr{netip.IPv6Loopback()}, Logger: slog.New(slog.DiscardHandler)})
			b.Cleanup(func() { r.Close() })
			ctx := b.Context()
			host := netip.MustParseAddr("2001:db8:77::2")
			added := 0
			for port := uint16(20000); added < others && port < 40000; port++ {
				if r.AddPinhole(ctx, gateway.PinholeRule{PinholeKey: gateway.PinholeKey{Protocol: gateway.UDP, InternalAddr: host, InternalPort: port}}) == nil {
					added++
				}
			}
			p := gateway.PinholeRule{PinholeKey: gateway.PinholeKey{Protocol: gateway.TCP, InternalAddr: host, InternalPort: freePort(b)}}
			for b.Loop() {
				if err := r.AddPinhole(ctx, p); err != nil {
					b.Fatal(err)
				}
				if err := r.DeletePinhole(ctx, p); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
