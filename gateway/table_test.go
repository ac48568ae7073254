package gateway

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"testing"
	"time"
)

var tableT0 = time.Date(2025, 3, 14, 15, 9, 26, 0, time.UTC)

// checkTable fails unless every index of t agrees with ref.
func checkTable(t *testing.T, tab *table, ref map[uint64]Mapping) {
	t.Helper()
	if tab.len() != len(ref) || len(tab.slots) != len(ref) {
		t.Fatalf("len %d, slots %d, want %d", tab.len(), len(tab.slots), len(ref))
	}
	owned := 0
	for i := range tab.entries {
		e := &tab.entries[i]
		k := e.m.Key().pack()
		if want, ok := ref[k]; !ok || want != e.m {
			t.Fatalf("slot %d holds %v, reference has %v (present %v)", i, e.m, want, ok)
		}
		if tab.slots[k] != int32(i) {
			t.Fatalf("slots[%v] = %d, entry is at %d", unpackKey(k), tab.slots[k], i)
		}
		if o := tab.owners[e.m.Owner]; o == nil || int(e.ownerIdx) >= len(o.keys) || o.keys[e.ownerIdx] != k {
			t.Fatalf("owner index of %v is wrong", e.m)
		}
		if o := tab.owners[e.m.InternalAddr]; o == nil || int(e.internalIdx) >= len(o.internal) || o.internal[e.internalIdx] != k {
			t.Fatalf("internal address index of %v is wrong", e.m)
		}
		found := 0
		for kk := range tab.forwardingTo(e.m.InternalAddr, e.m.Protocol, e.m.InternalPort) {
			if kk == k {
				found++
			}
		}
		if found != 1 {
			t.Fatalf("%v is listed %d times under its internal side", e.m, found)
		}
		if !tab.inUse(e.m.Protocol, e.m.ExternalPort) {
			t.Fatalf("%v: port not marked in use", e.m)
		}
		_, expires := expiryNanos(e.m.Expires)
		if expires != (e.heapIdx >= 0) {
			t.Fatalf("%v: heap index %d, expires %v", e.m, e.heapIdx, expires)
		}
		if e.heapIdx >= 0 && tab.heap[e.heapIdx].slot != int32(i) {
			t.Fatalf("heap[%d] points at slot %d, entry %v is at %d", e.heapIdx, tab.heap[e.heapIdx].slot, e.m, i)
		}
	}
	internal, byInternal, used := 0, 0, 0
	for _, o := range tab.owners {
		if len(o.keys) == 0 && len(o.internal) == 0 {
			t.Fatal("empty owner and internal lists kept")
		}
		owned += len(o.keys)
		internal += len(o.internal)
	}
	if owned != len(ref) {
		t.Fatalf("owner lists hold %d keys, want %d", owned, len(ref))
	}
	byInternal = len(tab.byInternal)
	for ik, keys := range tab.byInternalMore {
		if len(keys) == 0 {
			t.Fatal("empty internal-side list kept")
		}
		if _, ok := tab.byInternal[ik]; !ok {
			t.Fatal("internal side with more keys but no first one")
		}
		byInternal += len(keys)
	}
	for i := range tab.used {
		used += tab.used[i].Len()
	}
	if internal != len(ref) || byInternal != len(ref) || used != len(ref) {
		t.Fatalf("internal lists hold %d keys, internal sides %d, port bitmaps %d; want %d", internal, byInternal, used, len(ref))
	}
	for i := 1; i < len(tab.heap); i++ {
		if tab.heap[(i-1)/2].at > tab.heap[i].at {
			t.Fatalf("heap order broken at %d", i)
		}
	}
}

func TestTableMatchesReferenceUnderRandomOperations(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	tab := newTable()
	ref := make(map[uint64]Mapping)
	owners := []netip.Addr{netip.MustParseAddr("192.168.1.1"), netip.MustParseAddr("192.168.1.2"), netip.MustParseAddr("fd00::3")}
	for i := 0; i < 20000; i++ {
		k := Key{Protocol: []Protocol{TCP, UDP}[rng.IntN(2)], ExternalPort: uint16(1 + rng.IntN(300))}
		switch rng.IntN(3) {
		case 0, 1:
			m := Mapping{Protocol: k.Protocol, ExternalPort: k.ExternalPort, InternalPort: uint16(1 + rng.IntN(3)),
				InternalAddr: owners[rng.IntN(3)], Owner: owners[rng.IntN(3)]}
			if rng.IntN(4) != 0 {
				m.Expires = tableT0.Add(time.Duration(rng.IntN(1000)) * time.Second)
			}
			tab.put(m)
			ref[k.pack()] = m
		case 2:
			got, ok := tab.remove(k.pack())
			want, wantOK := ref[k.pack()]
			if ok != wantOK || got != want {
				t.Fatalf("remove(%v) = %v, %v; want %v, %v", k, got, ok, want, wantOK)
			}
			delete(ref, k.pack())
		}
		if i%97 == 0 {
			checkTable(t, tab, ref)
		}
	}
	checkTable(t, tab, ref)

	// earliest and due agree with a scan of the reference.
	skip := func(k uint64) bool { return k%3 == 0 }
	var min int64
	found := false
	for k, m := range ref {
		if at, ok := expiryNanos(m.Expires); ok && !skip(k) && (!found || at < min) {
			min, found = at, true
		}
	}
	if got, ok := tab.earliest(skip); ok != found || got != min {
		t.Errorf("earliest = %d, %v; want %d, %v", got, ok, min, found)
	}
	now := tableT0.Add(500 * time.Second).UnixNano()
	due := make(map[uint64]bool)
	for _, k := range tab.due(now, skip, -1) {
		due[k] = true
	}
	for k, m := range ref {
		at, ok := expiryNanos(m.Expires)
		if want := ok && at <= now && !skip(k); due[k] != want {
			t.Errorf("due(%v) = %v, want %v", unpackKey(k), due[k], want)
		}
	}
}

// fillTable puts n TCP mappings on ports 1..n with leases, descriptions
// and 256 distinct owners, like a busy gateway.
func fillTable(tab *table, n int) {
	for p := 1; p <= n; p++ {
		owner := netip.AddrFrom4([4]byte{192, 168, 1, byte(p)})
		tab.put(Mapping{
			Protocol: TCP, ExternalPort: uint16(p), InternalAddr: owner, InternalPort: uint16(p),
			Enabled: true, Description: fmt.Sprintf("application %05d on host", p),
			Expires: tableT0.Add(time.Duration(p) * time.Second), Owner: owner, Source: SourceUPnP,
			Created: tableT0,
		})
	}
}

func TestTableHoldsFullPortRange(t *testing.T) {
	tab := newTable()
	fillTable(tab, 65535)
	if tab.len() != 65535 {
		t.Fatalf("len = %d", tab.len())
	}
	for _, p := range []uint16{1, 32768, 65535} {
		e := tab.lookup(Key{Protocol: TCP, ExternalPort: p}.pack())
		if e == nil || e.m.ExternalPort != p {
			t.Fatalf("lookup %d = %v", p, e)
		}
	}
	if at, _ := tab.earliest(func(uint64) bool { return false }); at != tableT0.Add(time.Second).UnixNano() {
		t.Errorf("earliest expiry is not port 1's")
	}
	if n := tab.ownerLen(netip.AddrFrom4([4]byte{192, 168, 1, 7})); n != 256 {
		t.Errorf("owner .7 holds %d, want 256", n)
	}
}

// heapInUse returns the live heap after a full collection.
func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

func TestTableMemoryAtFullPortRange(t *testing.T) {
	before := heapInUse()
	tab := newTable()
	fillTable(tab, 65535)
	after := heapInUse()
	runtime.KeepAlive(tab)
	used := after - before
	perEntry := used / 65535
	t.Logf("65,535 entries: %d bytes, %d bytes per entry", used, perEntry)
	if used > 32<<20 {
		t.Errorf("a full table uses %d MiB; it must stay well under 64 MiB", used>>20)
	}
}

func BenchmarkTableAdd(b *testing.B) {
	// Inserting into a table that already holds 65,534 entries (and
	// removing again, to stay at that size).
	tab := newTable()
	fillTable(tab, 65534)
	m := Mapping{Protocol: UDP, ExternalPort: 9, InternalAddr: netip.MustParseAddr("192.168.1.9"),
		InternalPort: 9, Expires: tableT0.Add(time.Hour), Owner: netip.MustParseAddr("192.168.1.9")}
	k := m.Key().pack()
	for b.Loop() {
		tab.put(m)
		tab.remove(k)
	}
}

func BenchmarkTableFill65535(b *testing.B) {
	for b.Loop() {
		fillTable(newTable(), 65535)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/65535, "ns/entry")
}

func BenchmarkTableLookup(b *testing.B) {
	tab := newTable()
	fillTable(tab, 65535)
	i := 0
	for b.Loop() {
		i = i%65535 + 1
		if tab.lookup(Key{Protocol: TCP, ExternalPort: uint16(i)}.pack()) == nil {
			b.Fatal("missing")
		}
	}
}

func BenchmarkTableIndex(b *testing.B) {
	tab := newTable()
	fillTable(tab, 65535)
	i := 0
	for b.Loop() {
		i = (i + 1) % 65535
		if tab.at(i).m.ExternalPort == 0 {
			b.Fatal("empty entry")
		}
	}
}

func BenchmarkTableMemory(b *testing.B) {
	var perEntry uint64
	for b.Loop() {
		before := heapInUse()
		tab := newTable()
		fillTable(tab, 65535)
		perEntry = (heapInUse() - before) / 65535
		runtime.KeepAlive(tab)
	}
	b.ReportMetric(float64(perEntry), "bytes/entry")
}
