package gateway_test

import (
	"context"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/portfwd/portfwd/gateway"
	"github.com/portfwd/portfwd/gateway/clocktest"
)

// benchLeases is how many leases BenchmarkRestore and BenchmarkExpiry
// hold: 100,000, or PORTFWD_BENCH_LEASES (1000000 for the carrier-scale
// figure of docs/scale.md).
func benchLeases(b *testing.B) int {
	n := 100000
	if v, err := strconv.Atoi(os.Getenv("PORTFWD_BENCH_LEASES")); err == nil && v > 0 {
		n = v
	}
	if n < 16*2 {
		b.Fatalf("PORTFWD_BENCH_LEASES=%d: at least 32", n)
	}
	return n
}

// carrierPool is the external address pool of the carrier-scale
// benchmarks: 16 addresses, as TestCarrierScaleMillion has.
func carrierPool() []netip.Addr {
	pool := make([]netip.Addr, 16)
	for i := range pool {
		pool[i] = netip.AddrFrom4([4]byte{198, 51, 100, byte(1 + i)})
	}
	return pool
}

// writeCarrierJournal fills dir's journal with n PCP leases as
// TestCarrierScaleMillion makes them (100 per subscriber, half TCP and
// half UDP, each subscriber on one address of the pool), one Save each as
// the Core writes them: the first `ending` end an hour from now, the
// others in two.
func writeCarrierJournal(b *testing.B, dir string, clock *clocktest.Fake, n, ending int) {
	b.Helper()
	s, err := gateway.OpenFileStore(dir, &gateway.FileStoreOptions{Clock: clock})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	pool := carrierPool()
	const perSub = 100
	next := map[netip.Addr]*[2]uint16{}
	for i := range n {
		sub := i / perSub
		subAddr := netip.AddrFrom4([4]byte{100, 64 + byte(sub>>16), byte(sub >> 8), byte(sub)})
		j := i % perSub
		ext := pool[sub%len(pool)]
		ports := next[ext]
		if ports == nil {
			ports = &[2]uint16{1024, 1024}
			next[ext] = ports
		}
		proto, pi := gateway.TCP, 0
		if j%2 == 1 {
			proto, pi = gateway.UDP, 1
		}
		lease := 2 * time.Hour
		if i < ending {
			lease = time.Hour
		}
		m := gateway.Mapping{Protocol: proto, ExternalAddr: ext, ExternalPort: ports[pi],
			InternalAddr: subAddr, InternalPort: uint16(10000 + j), Enabled: true,
			Source: gateway.SourcePCP, Owner: subAddr, Nonce: [12]byte{byte(i), byte(i >> 8), byte(i >> 16), 1},
			Created: clock.Now(), Expires: clock.Now().Add(lease)}
		ports[pi]++
		if err := s.Save([]gateway.Mapping{m}, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// restart opens dir's FileStore and a Core on it with the memory backend
// and the carrier pool, as a gateway starting with a state directory does;
// with background, the Core re-applies the leases to the backend after
// New returns (Config.ApplyInBackground).
func restart(b *testing.B, dir string, clock *clocktest.Fake, background bool) (*gateway.Core, *gateway.FileStore) {
	b.Helper()
	s, err := gateway.OpenFileStore(dir, &gateway.FileStoreOptions{Clock: clock})
	if err != nil {
		b.Fatal(err)
	}
	pool := carrierPool()
	c, err := gateway.New(context.Background(), gateway.Config{Backend: gateway.NewMemory(), Store: s, Clock: clock,
		ExternalPool: pool, ExternalAddr: func() netip.Addr { return pool[0] }, ApplyInBackground: background})
	if err != nil {
		b.Fatal(err)
	}
	return c, s
}

// BenchmarkRestore measures a restart with benchLeases leases in the
// journal (written one Save each, as the Core writes them) to serving:
// opening the FileStore (the journal's replay) and New (the restore into
// the table, and, unless in the background, into the memory backend). It
// reports the process's CPU time per restart (cpu-s/op) beside the wall
// time, which a loaded machine stretches, and in the background case the
// time until the backend holds every lease (applied-s/op). The issue's
// target is 5 s to serving for a million.
func BenchmarkRestore(b *testing.B) {
	n := benchLeases(b)
	dir := b.TempDir()
	clock := newFakeClock()
	writeCarrierJournal(b, dir, clock, n, n/10)
	for _, background := range []bool{false, true} {
		name := "apply=before-serving"
		if background {
			name = "apply=in-background"
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			var cpu, applied time.Duration
			for b.Loop() {
				b.StopTimer()
				runtime.GC()
				cpu0 := cpuTime()
				b.StartTimer()
				start := time.Now()
				c, s := restart(b, dir, clock, background)
				b.StopTimer()
				cpu += cpuTime() - cpu0
				<-c.Applied()
				applied += time.Since(start)
				if c.Len() != n {
					b.Fatalf("restored %d leases, want %d", c.Len(), n)
				}
				c.Close(context.Background(), false)
				s.Close()
				b.StartTimer()
			}
			b.ReportMetric(cpu.Seconds()/float64(b.N), "cpu-s/op")
			b.ReportMetric(applied.Seconds()/float64(b.N), "applied-s/op")
			b.ReportMetric(float64(n), "leases")
		})
	}
}

// BenchmarkExpiry measures the expiry of a tenth of benchLeases leases
// (100,000 of a million) that end at one moment, with nothing else
// running: the table, the journal's deletes, the backend's, and the
// events, with the process's CPU time (cpu-s/op). The target is
// one second for 100,000.
func BenchmarkExpiry(b *testing.B) {
	n := benchLeases(b)
	ending := n / 10
	dir := b.TempDir()
	clock := newFakeClock()
	writeCarrierJournal(b, dir, clock, n, ending)
	b.ReportAllocs()
	var cpu time.Duration
	for b.Loop() {
		b.StopTimer()
		// Each round starts from the journal's copy as written, an hour
		// before the leases end.
		round := b.TempDir()
		data, err := os.ReadFile(dir + "/leases.journal")
		if err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(round+"/leases.journal", data, 0o600); err != nil {
			b.Fatal(err)
		}
		rc := clocktest.New(t0)
		c, s := restart(b, round, rc, false)
		runtime.GC()
		cpu0 := cpuTime()
		b.StartTimer()
		rc.Advance(time.Hour + time.Second)
		b.StopTimer()
		cpu += cpuTime() - cpu0
		if c.Len() != n-ending {
			b.Fatalf("after the expiry %d leases, want %d", c.Len(), n-ending)
		}
		c.Close(context.Background(), false)
		s.Close()
		b.StartTimer()
	}
	b.ReportMetric(cpu.Seconds()/float64(b.N), "cpu-s/op")
	b.ReportMetric(float64(ending), "expired")
}
