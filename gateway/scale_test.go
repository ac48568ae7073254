package gateway_test

import (
	"context"
	"fmt"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/portfwd/portfwd/gateway"
	"github.com/portfwd/portfwd/gateway/clocktest"
)

func newFakeClock() *clocktest.Fake { return clocktest.New(t0) }

// fullTable adds a mapping on every TCP port, from 256 hosts, with leases
// from 1 to 65,535 seconds.
func fullTable(tb testing.TB, c *gateway.Core, clock *clocktest.Fake) {
	tb.Helper()
	for p := 1; p <= 65535; p++ {
		host := netip.AddrFrom4([4]byte{192, 168, 1, byte(p)})
		m := gateway.Mapping{Protocol: gateway.TCP, ExternalPort: uint16(p), InternalAddr: host, InternalPort: uint16(p),
			Enabled: true, Description: fmt.Sprintf("application %05d", p), Expires: clock.Now().Add(time.Duration(p) * time.Second)}
		if _, err := c.Add(context.Background(), gateway.Requester{Addr: host, Source: gateway.SourceUPnP}, m); err != nil {
			tb.Fatalf("Add %d: %v", p, err)
		}
	}
}

func TestFullPortRange(t *testing.T) {
	if testing.Short() {
		t.Skip("fills the table")
	}
	f := newFixture(t, gateway.Policy{})
	fullTable(t, f.core, f.clock)
	if f.core.Len() != 65535 || f.mem.Len() != 65535 {
		t.Fatalf("table %d, backend %d; want 65,535", f.core.Len(), f.mem.Len())
	}
	// Every index answers, and each mapping exactly once.
	seen := make([]bool, 65536)
	for i := range 65535 {
		m, err := f.core.Index(admin, i)
		if err != nil || seen[m.ExternalPort] {
			t.Fatalf("Index(%d) = %v, %v (seen before: %v)", i, m.ExternalPort, err, seen[m.ExternalPort])
		}
		seen[m.ExternalPort] = true
	}
	// The port space is full: AddAny has nowhere to go.
	_, err := f.core.AddAny(ctx, upnp("192.168.1.1"), tcp(1, "192.168.1.1", 9))
	errIs(t, err, gateway.ErrNoPortsAvailable)
	// Half the leases end.
	f.clock.Advance(32768 * time.Second)
	if f.core.Len() != 65535-32768 || f.mem.Len() != 65535-32768 || f.store.len() != 65535-32768 {
		t.Fatalf("after half the leases: table %d, backend %d, store %d; want %d", f.core.Len(), f.mem.Len(), f.store.len(), 65535-32768)
	}
	if f.clock.Pending() != 1 {
		t.Errorf("%d timers armed, want 1", f.clock.Pending())
	}
	f.checkConsistent()
}

func TestCoreMemoryAtFullPortRange(t *testing.T) {
	if testing.Short() {
		t.Skip("fills the table")
	}
	clock := newFakeClock()
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	c, err := gateway.New(ctx, gateway.Config{Backend: gateway.NewMemory(), Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx, false)
	fullTable(t, c, clock)
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&after)
	used := after.HeapAlloc - before.HeapAlloc
	t.Logf("Core and Memory backend with 65,535 mappings: %.1f MiB, %d bytes per mapping", float64(used)/(1<<20), used/65535)
	if used > 48<<20 {
		t.Errorf("a full table uses %d MiB; it must fit well under 64 MiB", used>>20)
	}
	runtime.KeepAlive(c)
}

// BenchmarkCoreAddDelete measures an Add and a Delete of one mapping with
// size other mappings in the table: the cost must not grow with size.
func BenchmarkCoreAddDelete(b *testing.B) {
	for _, size := range []int{0, 1000, 10000} {
		b.Run(fmt.Sprintf("size=%d", size), func(b *testing.B) {
			c, clock := benchCore(b, nil)
			prefill(b, c, clock, size)
			benchAddDelete(b, c)
		})
	}
}

// BenchmarkCoreAddDeleteFileStore is BenchmarkCoreAddDelete with every
// change written to a FileStore journal (without fsync).
func BenchmarkCoreAddDeleteFileStore(b *testing.B) {
	for _, size := range []int{0, 1000, 10000} {
		b.Run(fmt.Sprintf("size=%d", size), func(b *testing.B) {
			s, err := gateway.OpenFileStore(b.TempDir(), nil)
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			c, clock := benchCore(b, s)
			prefill(b, c, clock, size)
			benchAddDelete(b, c)
		})
	}
}

// BenchmarkCoreRefresh measures lease refreshes in a table of 10,000.
func BenchmarkCoreRefresh(b *testing.B) {
	c, clock := benchCore(b, nil)
	prefill(b, c, clock, 10000)
	req := gateway.Requester{Addr: netip.MustParseAddr("10.0.0.1"), Source: gateway.SourceNATPMP}
	m := gateway.Mapping{Protocol: gateway.TCP, ExternalPort: 40000, InternalAddr: req.Addr, InternalPort: 80, Enabled: true}
	i := 0
	for b.Loop() {
		i++
		m.Expires = clock.Now().Add(time.Hour + time.Duration(i)*time.Second)
		if _, err := c.Add(ctx, req, m); err != nil {
			b.Fatal(err)
		}
	}
}

func benchCore(b *testing.B, store gateway.Store) (*gateway.Core, *clocktest.Fake) {
	clock := newFakeClock()
	c, err := gateway.New(ctx, gateway.Config{Backend: gateway.NewMemory(), Store: store, Clock: clock})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close(ctx, false) })
	return c, clock
}

// prefill adds n UDP mappings with leases, so that the TCP port the
// benchmark uses is free but the table, heap and indexes are populated.
func prefill(b *testing.B, c *gateway.Core, clock *clocktest.Fake, n int) {
	for p := 1; p <= n; p++ {
		host := netip.AddrFrom4([4]byte{192, 168, 1, byte(p)})
		m := gateway.Mapping{Protocol: gateway.UDP, ExternalPort: uint16(p), InternalAddr: host, InternalPort: uint16(p),
			Enabled: true, Expires: clock.Now().Add(time.Hour + time.Duration(p)*time.Second)}
		if _, err := c.Add(ctx, gateway.Requester{Addr: host, Source: gateway.SourceUPnP}, m); err != nil {
			b.Fatal(err)
		}
	}
}

func benchAddDelete(b *testing.B, c *gateway.Core) {
	req := gateway.Requester{Addr: netip.MustParseAddr("10.0.0.1"), Source: gateway.SourceUPnP}
	m := gateway.Mapping{Protocol: gateway.TCP, ExternalPort: 40000, InternalAddr: req.Addr, InternalPort: 80,
		Enabled: true, Expires: t0.Add(time.Hour)}
	for b.Loop() {
		if _, err := c.Add(ctx, req, m); err != nil {
			b.Fatal(err)
		}
		if err := c.Delete(ctx, req, gateway.TCP, 40000, netip.Addr{}); err != nil {
			b.Fatal(err)
		}
	}
}
