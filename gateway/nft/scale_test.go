//go:build linux

package nft

import (
	"context"
	"fmt"
	"net/netip"
	"os"
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
