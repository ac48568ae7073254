package gateway_test

import (
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/portfwd/portfwd/gateway"
	"github.com/portfwd/portfwd/gateway/clocktest"
)

// TestCarrierScale measures the Core as a carrier-grade PCP server runs
// it, in process (memory backend, FileStore journal): as many live
// mappings as one external address holds (TCP and UDP, every port above
// 1023: 129,024), made by PCP from 10,000 subscriber addresses through 8
// clients at once; the heap they take; a restart (journal replay and
// restore) with all of them; and the expiry of 100,000 at one moment while
// 4 other clients refresh their leases, with those requests' latency. It
// prints its figures; PORTFWD_SCALE=1 runs it (it takes a minute and a
// few hundred MiB).
func TestCarrierScale(t *testing.T) {
	if os.Getenv("PORTFWD_SCALE") != "1" {
		t.Skip("carrier-scale measurement: PORTFWD_SCALE=1 runs it")
	}
	const (
		subscribers = 10000
		clients     = 8
		expiring    = 100000
	)
	perSub := 2 * (65535 - 1023) / subscribers // 12 each
	total := perSub * subscribers
	dir := t.TempDir()
	clock := newFakeClock()
	open := func() (*gateway.Core, *gateway.FileStore, time.Duration) {
		c, s, _, took := openCarrier(t, dir, gateway.Config{Clock: clock})
		return c, s, took
	}
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	c, s, _ := open()
	addTook := fill(t, c, clock, carrierLoad{subscribers, perSub, clients, expiring}, func(m gateway.Mapping) gateway.Mapping { return m })
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	heap := after.HeapAlloc - before.HeapAlloc
	report := []string{
		fmt.Sprintf("%d mappings from %d subscribers, %d clients at once: %.0f adds/s", total, subscribers, clients, float64(total)/addTook.Seconds()),
		fmt.Sprintf("heap with them (Core, memory backend, FileStore): %.1f MiB, %d bytes per mapping (1,000,000 would take %.0f MiB); process RSS %s",
			float64(heap)/(1<<20), heap/uint64(total), float64(heap)/float64(total)*1e6/(1<<20), rss()),
	}

	// Restart: replay the journal, restore every lease.
	if err := c.Close(ctx, false); err != nil {
		t.Fatal(err)
	}
	s.Close()
	c, s, restart := open()
	defer s.Close()
	defer c.Close(ctx, false)
	if c.Len() != total {
		t.Fatalf("after restart %d mappings, want %d", c.Len(), total)
	}
	st, _ := os.Stat(dir + "/leases.journal")
	report = append(report, fmt.Sprintf("restart with %d leases (journal %.1f MiB) to serving: %v (%.1f s per million)",
		total, float64(st.Size())/(1<<20), restart.Round(time.Millisecond), restart.Seconds()*1e6/float64(total)))

	// Expiry of 100,000 at once, beside 4 clients refreshing theirs.
	report = append(report, expireWhileRefreshing(t, c, clock, carrierLoad{subscribers, perSub, clients, expiring}))
	for _, r := range report {
		fmt.Println("carrier scale:", r)
	}
}

// rss is this process's resident set, from /proc ("unknown" elsewhere).
func rss() string { return procStatus("VmRSS:") }

// TestCarrierScaleMillion measures the carrier-scale targets of a PCP
// server with an external address pool, in process (memory backend,
// FileStore journal without fsync, as the daemon runs it): 1,000,000 live
// PCP mappings from 10,000 subscribers (100 each, half TCP, half UDP) on a
// pool of 16 addresses, each subscriber paired with one of them, made by
// 8 clients at once; the heap and the process's resident set (now and at
// its peak) with them, under a runtime memory limit (the daemon's
// --memory-limit: 800 MiB, or PORTFWD_SCALE_MEMLIMIT MiB); a restart
// with all of them; and the expiry of 100,000 at one moment while 4 other
// clients refresh theirs, with those requests' latency. It fails if the
// process's resident set ever passed 1 GiB (the bound); the times
// are reported, not checked. PORTFWD_SCALE=1 runs it: it takes a minute
// or more and about 1 GiB.
func TestCarrierScaleMillion(t *testing.T) {
	if os.Getenv("PORTFWD_SCALE") != "1" || testing.Short() {
		t.Skip("carrier-scale measurement: PORTFWD_SCALE=1 runs it")
	}
	const (
		subscribers = 10000
		perSub      = 100
		total       = subscribers * perSub
		clients     = 8
		expiring    = 100000
		poolSize    = 16
	)
	// The runtime's soft memory limit, as the daemon's --memory-limit sets
	// it: 800 MiB unless PORTFWD_SCALE_MEMLIMIT gives MiB. The Go runtime's
	// own memory (heap, stacks, metadata) stays under it; RSS is a little
	// more, and while 8 clients fill the table at 50,000-70,000 adds/s the
	// collector lags: with 900 MiB the peak passed 1 GiB (1,004-1,031
	// MiB), with 800 MiB it stays near 920.
	limitMiB := 800
	if v, err := strconv.Atoi(os.Getenv("PORTFWD_SCALE_MEMLIMIT")); err == nil && v > 0 {
		limitMiB = v
	}
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(int64(limitMiB) << 20))
	pool := make([]netip.Addr, poolSize)
	for i := range pool {
		pool[i] = netip.AddrFrom4([4]byte{198, 51, 100, byte(1 + i)})
	}
	dir := t.TempDir()
	clock := newFakeClock()
	var replay time.Duration
	open := func() (c *gateway.Core, s *gateway.FileStore, took time.Duration) {
		c, s, replay, took = openCarrier(t, dir, gateway.Config{Clock: clock, ExternalPool: pool, ExternalAddr: func() netip.Addr { return pool[0] }, ApplyInBackground: true})
		return c, s, took
	}
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	c, s, _ := open()
	// As the PCP adapter asks: the subscriber's pool address.
	addTook := fill(t, c, clock, carrierLoad{subscribers, perSub, clients, expiring}, func(m gateway.Mapping) gateway.Mapping {
		m.ExternalAddr = c.PoolAddr(m.InternalAddr)
		return m
	})
	// Paired pooling: every mapping of a subscriber is on one address.
	perAddr := map[netip.Addr]int{}
	for i := 0; i < subscribers; i += 97 {
		a := subscriber(i)
		seen := map[netip.Addr]bool{}
		for _, p := range []gateway.Protocol{gateway.TCP, gateway.UDP} {
			for _, m := range c.MappingsTo(a, p) {
				seen[m.ExternalAddr] = true
			}
		}
		if len(seen) != 1 {
			t.Fatalf("subscriber %v is on %d addresses", a, len(seen))
		}
		for ea := range seen {
			perAddr[ea]++
		}
	}
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	heap := after.HeapAlloc - before.HeapAlloc
	report := []string{
		fmt.Sprintf("%d mappings from %d subscribers on %d pool addresses (sampled subscribers per address %v), %d clients at once: %.0f adds/s",
			total, subscribers, poolSize, len(perAddr), clients, float64(total)/addTook.Seconds()),
		fmt.Sprintf("heap with them (Core, memory backend, FileStore): %.1f MiB, %d bytes per mapping; process RSS %s, peak %s (memory limit %d MiB)",
			float64(heap)/(1<<20), heap/uint64(total), rss(), procStatus("VmHWM:"), limitMiB),
	}

	if err := c.Close(ctx, false); err != nil {
		t.Fatal(err)
	}
	s.Close()
	// A restart is a new process: nothing of the old table stays live.
	c, s = nil, nil
	runtime.GC()
	debug.FreeOSMemory()
	var g0, g1 runtime.MemStats
	runtime.ReadMemStats(&g0)
	cpu0 := cpuTime()
	restartStart := time.Now()
	c, s, restart := open()
	cpu := cpuTime() - cpu0
	<-c.Applied() // before the expiry, which it would slow down
	applied, appliedCPU := time.Since(restartStart), cpuTime()-cpu0
	runtime.ReadMemStats(&g1)
	defer s.Close()
	defer c.Close(ctx, false)
	if c.Len() != total {
		t.Fatalf("after restart %d mappings, want %d", c.Len(), total)
	}
	st, _ := os.Stat(dir + "/leases.journal")
	report = append(report, fmt.Sprintf("restart with %d leases (journal %.1f MiB) to serving: %v (journal replay %v, restore %v), process CPU %v; all in the backend after %v (CPU %v), %d garbage collections; RSS after it %s, peak %s (the peak of the whole run)",
		total, float64(st.Size())/(1<<20), restart.Round(time.Millisecond), replay.Round(time.Millisecond), (restart-replay).Round(time.Millisecond),
		cpu.Round(time.Millisecond), applied.Round(time.Millisecond), appliedCPU.Round(time.Millisecond), g1.NumGC-g0.NumGC, rss(), procStatus("VmHWM:")))

	report = append(report, expireWhileRefreshing(t, c, clock, carrierLoad{subscribers, perSub, clients, expiring}))
	for _, r := range report {
		fmt.Println("carrier scale (1M):", r)
	}
	if peak := procStatusMiB("VmHWM:"); peak > 1024 {
		t.Errorf("the process's resident set peaked at %.0f MiB, over 1 GiB (memory limit %d MiB)", peak, limitMiB)
	}
}

// procStatus returns a memory line of /proc/self/status in MiB.
func procStatus(field string) string {
	mib := procStatusMiB(field)
	if mib < 0 {
		return "unknown"
	}
	return fmt.Sprintf("%.0f MiB", mib)
}

// procStatusMiB returns a memory line of /proc/self/status in MiB, or -1
// when it cannot be read.
func procStatusMiB(field string) float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == field {
			kb, _ := strconv.Atoi(f[1])
			return float64(kb) / 1024
		}
	}
	return -1
}

// cpuTime is the CPU time this process has used, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// openCarrier opens the FileStore in dir and a Core over it with cfg, a
// memory backend and that store, as a restart does, and returns them with
// how long the journal's replay and the whole took.
func openCarrier(t *testing.T, dir string, cfg gateway.Config) (c *gateway.Core, s *gateway.FileStore, replay, took time.Duration) {
	t.Helper()
	start := time.Now()
	s, err := gateway.OpenFileStore(dir, &gateway.FileStoreOptions{Clock: cfg.Clock})
	if err != nil {
		t.Fatal(err)
	}
	replay = time.Since(start)
	cfg.Backend, cfg.Store = gateway.NewMemory(), s
	if c, err = gateway.New(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	return c, s, replay, time.Since(start)
}

// carrierLoad is the table the carrier-scale tests fill: perSub mappings
// (half TCP, half UDP) for each of subscribers, made by clients at once;
// the first expiring of them made end an hour after the start, the
// others an hour later.
type carrierLoad struct {
	subscribers, perSub, clients, expiring int
}

func (l carrierLoad) total() int { return l.subscribers * l.perSub }

// subscriber is the address of subscriber i, in 100.64.0.0/10.
func subscriber(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{100, 64 + byte(i>>16), byte(i >> 8), byte(i)})
}

// fill makes l's mappings in c through AddAny, as PCP does, each as
// adjust leaves it, and returns how long it took. It fails t unless the
// table then holds l.total() mappings.
func fill(t *testing.T, c *gateway.Core, clock *clocktest.Fake, l carrierLoad, adjust func(gateway.Mapping) gateway.Mapping) time.Duration {
	t.Helper()
	var made atomic.Int64
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, l.clients)
	for w := range l.clients {
		wg.Go(func() {
			for i := w; i < l.subscribers; i += l.clients {
				req := gateway.Requester{Addr: subscriber(i), Source: gateway.SourcePCP}
				for j := range l.perSub {
					proto := gateway.TCP
					if j%2 == 1 {
						proto = gateway.UDP
					}
					// The first `expiring` mappings made end together.
					lease := 2 * time.Hour
					if n := made.Add(1); n <= int64(l.expiring) {
						lease = time.Hour
					}
					m := adjust(gateway.Mapping{Protocol: proto, InternalAddr: req.Addr, InternalPort: uint16(10000 + j), Enabled: true,
						Expires: clock.Now().Add(lease)})
					if _, err := c.AddAny(ctx, req, m); err != nil {
						errs <- fmt.Errorf("subscriber %v mapping %d: %w", req.Addr, j, err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	took := time.Since(start)
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
	if c.Len() != l.total() {
		t.Fatalf("%d mappings in the table, want %d", c.Len(), l.total())
	}
	return took
}

// expireWhileRefreshing ends l's expiring leases at one moment, while 4
// clients refresh the leases of the last 500 subscribers' last mappings
// (those that outlive the expiry), and returns the report's line: how
// long the expiry took and the refreshes' latency meanwhile (and until
// the clients stopped). It fails t unless the expired mappings, and only
// they, are gone.
func expireWhileRefreshing(t *testing.T, c *gateway.Core, clock *clocktest.Fake, l carrierLoad) string {
	t.Helper()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var lat []time.Duration
	for w := range 4 {
		wg.Go(func() {
			var mine []time.Duration
			defer func() { mu.Lock(); lat = append(lat, mine...); mu.Unlock() }()
			for k := 0; ; k++ {
				select {
				case <-stop:
					return
				default:
				}
				i := l.subscribers - 1 - (w+4*k)%500
				req := gateway.Requester{Addr: subscriber(i), Source: gateway.SourcePCP}
				held, ok := c.FindByInternal(req.Addr, gateway.UDP, 10000+uint16(l.perSub-1))
				if !ok || !held.Expires.After(clock.Now().Add(time.Hour+time.Second)) {
					continue // one of those ending now: a refresh would keep it
				}
				held.Expires = clock.Now().Add(2 * time.Hour)
				t0 := time.Now()
				if _, err := c.Add(ctx, req, held); err != nil {
					t.Error(err)
					return
				}
				mine = append(mine, time.Since(t0))
			}
		})
	}
	// The refreshers' first requests warm up; only those during and after
	// the expiry count.
	time.Sleep(50 * time.Millisecond)
	mu.Lock()
	lat = lat[:0]
	mu.Unlock()
	expStart, expCPU0 := time.Now(), cpuTime()
	clock.Advance(time.Hour + time.Second)
	expTook, expCPU := time.Since(expStart), cpuTime()-expCPU0
	close(stop)
	wg.Wait()
	if got := c.Len(); got != l.total()-l.expiring {
		t.Errorf("after the expiry %d mappings, want %d", got, l.total()-l.expiring)
	}
	slices.Sort(lat)
	q := func(p float64) time.Duration {
		if len(lat) == 0 {
			return 0
		}
		return lat[min(len(lat)-1, int(float64(len(lat))*p))]
	}
	return fmt.Sprintf("expiry of %d leases at one moment: %v (process CPU %v, the refreshing clients' included); %d refreshes meanwhile (and until the clients stopped), p50 %v, p99 %v, max %v",
		l.expiring, expTook.Round(time.Millisecond), expCPU.Round(time.Millisecond), len(lat), q(0.5), q(0.99), q(1))
}
