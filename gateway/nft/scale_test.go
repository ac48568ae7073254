//go:build linux

package nft

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/portfwd/portfwd/gateway"
)

// TestNftScale fills the backend's map with every TCP and UDP port of one
// external address (131,070 elements, the most one address holds), each
// to its own subscriber address, and prints the add rate, the kernel
// memory it took (the Slab line of /proc/meminfo: the machine's, so other
// work shows in it too), the backend's own heap, the time to read the
// rules back and to remove them all. PORTFWD_SCALE=1 runs it.
func TestNftScale(t *testing.T) {
	if os.Getenv("PORTFWD_SCALE") != "1" {
		t.Skip("nft scale measurement: PORTFWD_SCALE=1 runs it")
	}
	ns := newLab(t).ns()
	be := newBackend(t, ns, Config{ExternalInterfaces: []string{"wan0"}, Logger: quietLogger()})
	ctx := context.Background()
	var rules []gateway.Rule
	for _, proto := range []gateway.Protocol{gateway.TCP, gateway.UDP} {
		for p := 1; p <= 65535; p++ {
			sub := netip.AddrFrom4([4]byte{100, 64 + byte(p>>14), byte(p >> 8), byte(p)})
			rules = append(rules, gateway.Rule{Protocol: proto, ExternalPort: uint16(p), InternalAddr: sub, InternalPort: 10000})
		}
	}
	runtime.GC()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	slab0 := slabKiB(t)
	start := time.Now()
	for _, r := range rules {
		if err := be.Add(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	addTook := time.Since(start)
	slab1 := slabKiB(t)
	runtime.GC()
	runtime.ReadMemStats(&m1)
	start = time.Now()
	got, err := be.Rules(ctx) // from the kernel
	if err != nil || len(got) != len(rules) {
		t.Fatalf("Rules: %d rules, %v; want %d", len(got), err, len(rules))
	}
	listTook := time.Since(start)
	start = time.Now()
	if err := be.DeleteBatch(ctx, rules); err != nil {
		t.Fatal(err)
	}
	delTook := time.Since(start)
	n := float64(len(rules))
	fmt.Printf("nft scale: %d elements added one by one in %v (%.0f/s); kernel Slab +%.1f MiB (%.0f bytes per element; 1,000,000 would take %.0f MiB); backend heap +%.1f MiB; read back from the kernel in %v; all removed (DeleteBatch) in %v\n",
		len(rules), addTook.Round(time.Millisecond), n/addTook.Seconds(), float64(slab1-slab0)/1024, float64(slab1-slab0)*1024/n,
		float64(slab1-slab0)*1024/n*1e6/(1<<20), float64(int64(m1.HeapAlloc)-int64(m0.HeapAlloc))/(1<<20), listTook.Round(time.Millisecond), delTook.Round(time.Millisecond))
}

// slabKiB reads the Slab line of /proc/meminfo.
func slabKiB(t *testing.T) int64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "Slab:" {
			v, _ := strconv.ParseInt(f[1], 10, 64)
			return v
		}
	}
	t.Fatal("no Slab line in /proc/meminfo")
	return 0
}

// TestNftScalePool fills the pool map with PORTFWD_NFT_ELEMENTS elements
// (1,000,000 unless told; a pool of 16 addresses, every TCP and UDP port
// above 1023 of each, to 10,000 subscribers) and prints: the rate of adds
// one by one (the first 20,000, one netlink batch and ack each), the rate
// of the rest through AddBatch (as a restart with Config.Rebuild
// re-applies the journal), the kernel memory they took (Slab of
// /proc/meminfo, the machine's), the time "nft list map" takes to print
// them, and a restart with Rebuild: New (which empties the maps) and
// AddBatch of all of them. PORTFWD_SCALE=1 runs it.
func TestNftScalePool(t *testing.T) {
	if os.Getenv("PORTFWD_SCALE") != "1" {
		t.Skip("nft scale measurement: PORTFWD_SCALE=1 runs it")
	}
	n := 1000000
	if s := os.Getenv("PORTFWD_NFT_ELEMENTS"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	var pool []netip.Addr
	for i := range 16 {
		pool = append(pool, netip.AddrFrom4([4]byte{198, 51, 100, byte(1 + i)}))
	}
	var rules []gateway.Rule
	for i := 0; len(rules) < n; i++ {
		a, proto, port := pool[i%16], gateway.TCP, 1024+(i/16)%64512
		if (i/16)/64512 == 1 {
			proto = gateway.UDP
		}
		if (i/16)/64512 > 1 {
			t.Fatalf("%d elements do not fit in a pool of 16", n)
		}
		sub := (i * 7919) % 10000
		rules = append(rules, gateway.Rule{Protocol: proto, ExternalPort: uint16(port), ExternalAddr: a,
			InternalAddr: netip.AddrFrom4([4]byte{100, 64, byte(sub >> 8), byte(sub)}), InternalPort: uint16(10000 + i%100)})
	}
	ns := newLab(t).ns()
	cfg := Config{ExternalInterfaces: []string{"wan0"}, Logger: quietLogger(), Pool: pool}
	be := newBackend(t, ns, cfg)
	ctx := context.Background()
	runtime.GC()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	slab0 := slabKiB(t)
	one := min(20000, n)
	start := time.Now()
	for _, r := range rules[:one] {
		if err := be.Add(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	oneTook := time.Since(start)
	start = time.Now()
	if err := be.AddBatch(ctx, rules[one:]); err != nil {
		t.Fatal(err)
	}
	batchTook := time.Since(start)
	slab1 := slabKiB(t)
	runtime.GC()
	runtime.ReadMemStats(&m1)
	heap := float64(int64(m1.HeapAlloc)-int64(m0.HeapAlloc)) / float64(n)
	// The kernel's dump is quadratic: bounded, and reported as such.
	start = time.Now()
	lctx, cancel := context.WithTimeout(ctx, 120*time.Second)
	out, err := exec.CommandContext(lctx, "ip", "netns", "exec", ns.name, "sh", "-c", "nft list map inet portfwd fwd4pool | wc -l").Output()
	cancel()
	listed := time.Since(start).Round(time.Millisecond).String()
	if err != nil {
		listed = "over 120 s (stopped)"
	} else if lines, _ := strconv.Atoi(strings.TrimSpace(string(out))); lines < n/4 { // several elements a line
		t.Fatalf("nft list map printed %d lines for %d elements", lines, n)
	}
	be.Close()

	// A restart that rebuilds from the journal (here: the rules).
	start = time.Now()
	cfg.Rebuild = true
	cfg.NetNS = ns.fd()
	b2, err := New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer b2.Close()
	newTook := time.Since(start)
	if err := b2.AddBatch(ctx, rules); err != nil {
		t.Fatal(err)
	}
	rebuildTook := time.Since(start)
	fmt.Printf("nft scale (pool): %d elements in fwd4pool; %d added one by one at %.0f/s, %d by AddBatch at %.0f/s; kernel Slab +%.1f MiB (%.0f bytes per element); backend heap %.0f bytes per element; \"nft list map\" %s; restart with Rebuild: maps emptied in %v, all %d back in %v (%.0f/s)\n",
		n, one, float64(one)/oneTook.Seconds(), n-one, float64(n-one)/batchTook.Seconds(),
		float64(slab1-slab0)/1024, float64(slab1-slab0)*1024/float64(n), heap, listed,
		newTook.Round(time.Millisecond), n, rebuildTook.Round(time.Millisecond), float64(n)/rebuildTook.Seconds())
}
