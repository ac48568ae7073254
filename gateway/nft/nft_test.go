//go:build linux

package nft

import (
	"context"
	"log/slog"
	"net/netip"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/portfwd/portfwd/gateway"
	"github.com/portfwd/portfwd/internal/testenv"
)

var (
	lanHost  = netip.MustParseAddr("10.88.0.2")
	lanHost2 = netip.MustParseAddr("10.88.0.3")
	remote   = netip.MustParseAddr("203.0.113.7")
)

func tcpRule(ext uint16, to netip.Addr, port uint16) gateway.Rule {
	return gateway.Rule{Protocol: gateway.TCP, ExternalPort: ext, InternalAddr: to, InternalPort: port}
}

func udpRule(ext uint16, to netip.Addr, port uint16) gateway.Rule {
	return gateway.Rule{Protocol: gateway.UDP, ExternalPort: ext, InternalAddr: to, InternalPort: port}
}

// mapElements returns the elements of one of our maps as nft prints them,
// sorted: "tcp . 18080 : 10.88.0.2 . 8080".
func mapElements(t testing.TB, ns *netNS, table, name string) []string {
	t.Helper()
	out := ns.nft(t, "list", "map", "inet", table, name)
	m := regexp.MustCompile(`(?s)elements = \{(.*?)\}`).FindStringSubmatch(out)
	if m == nil {
		return nil
	}
	var elems []string
	for _, e := range strings.Split(m[1], ",") {
		elems = append(elems, strings.Join(strings.Fields(e), " "))
	}
	slices.Sort(elems)
	return elems
}

func wantRules(t testing.TB, b *Backend, want ...gateway.Rule) {
	t.Helper()
	got, err := b.Rules(context.Background())
	if err != nil {
		t.Fatalf("Rules: %v", err)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("Rules() = %v\nwant      %v", got, want)
	}
}

func wantElements(t testing.TB, ns *netNS, name string, want ...string) {
	t.Helper()
	got := mapElements(t, ns, DefaultTable, name)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("map %s holds %q, want %q", name, got, want)
	}
}

// TestRulesetMatchesDocumentation keeps the package documentation honest:
// the ruleset it shows in nft syntax is what nft lists after New.
func TestRulesetMatchesDocumentation(t *testing.T) {
	ns := newLab(t).ns()
	newBackend(t, ns, Config{ExternalInterfaces: []string{"wan0"}, InternalInterfaces: []string{"lan0"}})

	src, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	var doc []string
	in := false
	for _, line := range strings.Split(string(src), "\n") {
		code, ok := strings.CutPrefix(line, "//\t")
		if strings.HasPrefix(code, "table inet portfwd {") {
			in = true
		}
		if in && ok {
			doc = append(doc, strings.TrimSpace(code))
			if code == "}" {
				break
			}
		}
	}
	var listed []string
	for _, line := range strings.Split(ns.nft(t, "list", "table", "inet", DefaultTable), "\n") {
		if line = strings.TrimSpace(line); line != "" {
			listed = append(listed, line)
		}
	}
	if len(doc) == 0 || !slices.Equal(doc, listed) {
		t.Fatalf("nft lists:\n%s\n\nthe package documentation shows:\n%s", strings.Join(listed, "\n"), strings.Join(doc, "\n"))
	}
}

func TestAddDeleteReplace(t *testing.T) {
	ns := newLab(t).ns()
	b := newBackend(t, ns, Config{ExternalInterfaces: []string{"wan0"}})
	ctx := context.Background()

	web := tcpRule(18080, lanHost, 8080)
	dns := udpRule(5353, lanHost, 53)
	dns.RemoteHost = remote
	for _, r := range []gateway.Rule{web, dns} {
		if err := b.Add(ctx, r); err != nil {
			t.Fatalf("Add(%v): %v", r, err)
		}
	}
	wantElements(t, ns, mapFwd, "tcp . 18080 : 10.88.0.2 . 8080")
	wantElements(t, ns, mapFwdSrc, "203.0.113.7 . udp . 5353 : 10.88.0.2 . 53")
	wantRules(t, b, web, dns)

	t.Run("same port, other protocol is another mapping", func(t *testing.T) {
		udpWeb := udpRule(18080, lanHost2, 8080)
		if err := b.Add(ctx, udpWeb); err != nil {
			t.Fatal(err)
		}
		wantElements(t, ns, mapFwd, "tcp . 18080 : 10.88.0.2 . 8080", "udp . 18080 : 10.88.0.3 . 8080")
		if err := b.Delete(ctx, udpWeb); err != nil {
			t.Fatal(err)
		}
		wantElements(t, ns, mapFwd, "tcp . 18080 : 10.88.0.2 . 8080")
	})

	t.Run("add replaces the target", func(t *testing.T) {
		web = tcpRule(18080, lanHost2, 80)
		if err := b.Add(ctx, web); err != nil {
			t.Fatal(err)
		}
		wantElements(t, ns, mapFwd, "tcp . 18080 : 10.88.0.3 . 80")
		wantRules(t, b, web, dns)
	})

	t.Run("add with the same rule again is fine", func(t *testing.T) {
		if err := b.Add(ctx, web); err != nil {
			t.Fatal(err)
		}
		wantElements(t, ns, mapFwd, "tcp . 18080 : 10.88.0.3 . 80")
	})

	t.Run("replacing moves between maps", func(t *testing.T) {
		open := dns
		open.RemoteHost = netip.Addr{}
		if err := b.Add(ctx, open); err != nil {
			t.Fatal(err)
		}
		wantElements(t, ns, mapFwdSrc)
		wantElements(t, ns, mapFwd, "tcp . 18080 : 10.88.0.3 . 80", "udp . 5353 : 10.88.0.2 . 53")
		if err := b.Add(ctx, dns); err != nil {
			t.Fatal(err)
		}
		wantElements(t, ns, mapFwdSrc, "203.0.113.7 . udp . 5353 : 10.88.0.2 . 53")
		wantElements(t, ns, mapFwd, "tcp . 18080 : 10.88.0.3 . 80")
	})

	t.Run("delete needs only protocol and port", func(t *testing.T) {
		if err := b.Delete(ctx, gateway.Rule{Protocol: gateway.UDP, ExternalPort: 5353}); err != nil {
			t.Fatal(err)
		}
		wantElements(t, ns, mapFwdSrc)
		wantRules(t, b, web)
	})

	t.Run("deleting what is not installed is not an error", func(t *testing.T) {
		if err := b.Delete(ctx, dns); err != nil {
			t.Fatalf("second Delete: %v", err)
		}
		if err := b.Delete(ctx, udpRule(1, lanHost, 1)); err != nil {
			t.Fatalf("Delete of a never added rule: %v", err)
		}
	})

	t.Run("an element removed behind our back", func(t *testing.T) {
		ns.nft(t, "delete", "element", "inet", DefaultTable, mapFwd, "{ tcp . 18080 }")
		if err := b.Delete(ctx, web); err != nil {
			t.Fatalf("Delete: %v", err)
		}
		if err := b.Add(ctx, web); err != nil {
			t.Fatal(err)
		}
		ns.nft(t, "delete", "element", "inet", DefaultTable, mapFwd, "{ tcp . 18080 }")
		other := tcpRule(18080, lanHost, 81)
		if err := b.Add(ctx, other); err != nil {
			t.Fatalf("Add replacing a vanished element: %v", err)
		}
		wantRules(t, b, other)
	})

	t.Run("invalid rules are rejected before netlink", func(t *testing.T) {
		bad := tcpRule(1, netip.MustParseAddr("fd00::1"), 1)
		if err := b.Add(ctx, bad); err == nil {
			t.Fatalf("Add(%v) succeeded", bad)
		}
	})

	t.Run("flush empties both maps and keeps the chains", func(t *testing.T) {
		if err := b.Add(ctx, dns); err != nil {
			t.Fatal(err)
		}
		if err := b.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		wantElements(t, ns, mapFwd)
		wantElements(t, ns, mapFwdSrc)
		wantRules(t, b)
		if !strings.Contains(ns.nft(t, "list", "chain", "inet", DefaultTable, chainPre), "@fwd4") {
			t.Fatal("prerouting chain lost its rules")
		}
		if err := b.Add(ctx, web); err != nil {
			t.Fatalf("Add after Flush: %v", err)
		}
		wantRules(t, b, web)
	})
}

func TestNewAdoptsExistingTable(t *testing.T) {
	ns := newLab(t).ns()
	ctx := context.Background()
	cfg := Config{ExternalInterfaces: []string{"wan0"}, InternalInterfaces: []string{"lan0"}}
	b := newBackend(t, ns, cfg)
	web, game := tcpRule(18080, lanHost, 8080), udpRule(27015, lanHost2, 27015)
	game.RemoteHost = remote
	for _, r := range []gateway.Rule{web, game} {
		if err := b.Add(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	before := ns.nft(t, "list", "ruleset")
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if after := ns.nft(t, "list", "ruleset"); after != before {
		t.Fatalf("Close changed the ruleset:\n%s\nwas:\n%s", after, before)
	}

	t.Run("same config: nothing changes", func(t *testing.T) {
		b := newBackend(t, ns, cfg)
		if after := ns.nft(t, "list", "ruleset"); after != before {
			t.Fatalf("New on an existing table changed the ruleset:\n%s\nwas:\n%s", after, before)
		}
		wantRules(t, b, web, game)
	})

	t.Run("new interfaces: chains rewritten, mappings kept", func(t *testing.T) {
		b := newBackend(t, ns, Config{ExternalInterfaces: []string{"ppp*"}})
		pre := ns.nft(t, "list", "chain", "inet", DefaultTable, chainPre)
		if strings.Contains(pre, "wan0") || strings.Contains(pre, "lan0") || !strings.Contains(pre, `iifname "ppp*"`) {
			t.Fatalf("prerouting after restart with ppp*:\n%s", pre)
		}
		if post := ns.nft(t, "list", "chain", "inet", DefaultTable, chainPost); strings.Contains(post, "masquerade") {
			t.Fatalf("hairpin masquerade left after hairpin was turned off:\n%s", post)
		}
		wantRules(t, b, web, game)

		// The index was loaded from the maps: replacing and deleting a
		// mapping made by the previous run works.
		moved := game
		moved.InternalPort = 27016
		if err := b.Add(ctx, moved); err != nil {
			t.Fatal(err)
		}
		if err := b.Delete(ctx, web); err != nil {
			t.Fatal(err)
		}
		wantElements(t, ns, mapFwd)
		wantElements(t, ns, mapFwdSrc, "203.0.113.7 . udp . 27015 : 10.88.0.3 . 27016")
	})
}

// TestNewRefusesForeignTable: a table of our name whose map has another
// shape is not ours to rewrite; New says how to get out of it.
func TestNewRefusesForeignTable(t *testing.T) {
	ns := newLab(t).ns()
	ns.nft(t, "add", "table", "inet", DefaultTable)
	ns.nft(t, "add", "map", "inet", DefaultTable, mapFwd, "{ type inet_service : ipv4_addr; }")
	cfg := Config{ExternalInterfaces: []string{"wan0"}, NetNS: ns.fd(), Logger: testenv.Logger(t)}
	b, err := New(context.Background(), cfg)
	if err == nil {
		b.Close()
		t.Fatal("New adopted a table with a foreign map")
	}
	if !strings.Contains(err.Error(), "nft delete table inet "+DefaultTable) {
		t.Fatalf("error %q does not tell how to recover", err)
	}
}

// TestRecreatesVanishedTable covers "nft flush ruleset" run by an
// administrator or a firewall reload while the daemon runs: the next change
// re-creates the table with every mapping the daemon knows.
func TestRecreatesVanishedTable(t *testing.T) {
	ns := newLab(t).ns()
	ctx := context.Background()
	b := newBackend(t, ns, Config{ExternalInterfaces: []string{"wan0"}})
	web := tcpRule(18080, lanHost, 8080)
	if err := b.Add(ctx, web); err != nil {
		t.Fatal(err)
	}
	ns.nft(t, "flush", "ruleset")
	dns := udpRule(5353, lanHost, 53)
	if err := b.Add(ctx, dns); err != nil {
		t.Fatalf("Add after the ruleset was flushed: %v", err)
	}
	wantRules(t, b, web, dns)
	if !strings.Contains(ns.nft(t, "list", "chain", "inet", DefaultTable, chainPre), "@fwd4") {
		t.Fatal("prerouting chain not re-created")
	}

	ns.nft(t, "delete", "table", "inet", DefaultTable)
	if err := b.Delete(ctx, web); err != nil {
		t.Fatalf("Delete after the table was deleted: %v", err)
	}
	wantRules(t, b, dns)
}

func TestDestroy(t *testing.T) {
	ns := newLab(t).ns()
	ctx := context.Background()
	b := newBackend(t, ns, Config{Table: "pftest", ExternalInterfaces: []string{"wan0"}})
	if err := b.Add(ctx, tcpRule(1, lanHost, 1)); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(ns.nft(t, "list", "tables"), "table inet pftest") {
		t.Fatal("Config.Table not honoured")
	}
	if err := b.Destroy(ctx); err != nil {
		t.Fatal(err)
	}
	if out := ns.nft(t, "list", "ruleset"); strings.TrimSpace(out) != "" {
		t.Fatalf("ruleset after Destroy:\n%s", out)
	}
	if err := b.Destroy(ctx); err != nil {
		t.Fatalf("second Destroy: %v", err)
	}
}

func TestNewValidatesConfig(t *testing.T) {
	// Validation happens before any netlink traffic: no lab needed.
	for _, cfg := range []Config{
		{},
		{ExternalInterfaces: []string{"*"}},
		{ExternalInterfaces: []string{"wan0"}, InternalInterfaces: []string{"a-name-much-too-long"}},
	} {
		if b, err := New(context.Background(), cfg); err == nil {
			b.Close()
			t.Errorf("New(%+v) succeeded, want an error", cfg)
		}
	}
}

// TestConcurrentUse runs Adds, Deletes and Rules from many goroutines: they
// share one netlink socket, so the Backend must serialize them.
func TestConcurrentUse(t *testing.T) {
	ns := newLab(t).ns()
	b := newBackend(t, ns, Config{ExternalInterfaces: []string{"wan0"}, Logger: quietLogger()})
	ctx := context.Background()
	const workers, each = 8, 50
	errc := make(chan error, workers)
	for w := range workers {
		go func() {
			for i := range each {
				port := uint16(1000*(w+1) + i)
				if err := b.Add(ctx, tcpRule(port, lanHost, port)); err != nil {
					errc <- err
					return
				}
				if i%2 == 1 { // keep the even ports
					if err := b.Delete(ctx, tcpRule(port, lanHost, port)); err != nil {
						errc <- err
						return
					}
				}
				if _, err := b.Rules(ctx); err != nil {
					errc <- err
					return
				}
			}
			errc <- nil
		}()
	}
	for range workers {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	rules, err := b.Rules(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(rules) != workers*each/2 {
		t.Fatalf("%d mappings left, want %d", len(rules), workers*each/2)
	}
	for _, r := range rules {
		if r.ExternalPort%2 != 0 {
			t.Fatalf("deleted mapping %v survived", r)
		}
	}
}

// TestInsertScale shows that an insert costs the same with 10,000 mappings
// installed as with none: each is one hash insert in the kernel, not a
// ruleset rewrite.
func TestInsertScale(t *testing.T) {
	if testing.Short() {
		t.Skip("inserts 11,000 elements")
	}
	ns := newLab(t).ns()
	ctx := context.Background()
	b := newBackend(t, ns, Config{ExternalInterfaces: []string{"wan0"}, Logger: quietLogger()})

	insert := func(from, n int) time.Duration {
		start := time.Now()
		for p := from; p < from+n; p++ {
			if err := b.Add(ctx, tcpRule(uint16(p), lanHost, uint16(p))); err != nil {
				t.Fatalf("Add port %d: %v", p, err)
			}
		}
		return time.Since(start)
	}
	first := insert(1, 1000)
	t.Logf("1,000 inserts into an empty table: %v (%v each)", first, first/1000)
	insert(1001, 9000)
	last := insert(10001, 1000)
	t.Logf("1,000 inserts with 10,000 installed: %v (%v each)", last, last/1000)

	rules, err := b.Rules(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(rules) != 11000 {
		t.Fatalf("Rules() returned %d mappings, want 11000", len(rules))
	}
	if n := len(mapElements(t, ns, DefaultTable, mapFwd)); n != 11000 {
		t.Fatalf("nft lists %d elements, want 11000", n)
	}
	// A ruleset rewrite per insert would make the last batch ~10x slower;
	// allow generous noise.
	if last > 4*first+100*time.Millisecond {
		t.Errorf("inserting got slower with the table's size: %v for the last 1,000 vs %v for the first", last, first)
	}

	// Re-creating a vanished table restores every mapping.
	ns.nft(t, "flush", "ruleset")
	start := time.Now()
	if err := b.Add(ctx, udpRule(1, lanHost, 1)); err != nil {
		t.Fatalf("Add after flush ruleset: %v", err)
	}
	t.Logf("re-creating the table with 11,000 mappings: %v", time.Since(start))
	if n := len(mapElements(t, ns, DefaultTable, mapFwd)); n != 11001 {
		t.Fatalf("after re-creation nft lists %d elements, want 11001", n)
	}

	start = time.Now()
	if err := b.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("Flush of 11,001 mappings: %v", time.Since(start))
	wantRules(t, b)
}

// quietLogger drops the per-mapping debug logs of bulk tests.
func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// TestDeleteBatchAndInstalledRules: a bulk delete goes in netlink batches
// and removes exactly what it names; InstalledRules reports what a
// previous run left, so that a restart can reconcile instead of flushing.
func TestDeleteBatchAndInstalledRules(t *testing.T) {
	ns := newLab(t).ns()
	ctx := context.Background()
	cfg := Config{ExternalInterfaces: []string{"wan0"}}
	b := newBackend(t, ns, cfg)
	var rules []gateway.Rule
	for p := range 1200 {
		r := udpRule(uint16(20000+p), lanHost, uint16(1+p))
		if p%100 == 0 {
			r.RemoteHost = remote
		}
		if err := b.Add(ctx, r); err != nil {
			t.Fatal(err)
		}
		rules = append(rules, r)
	}
	keep := tcpRule(18080, lanHost, 8080)
	b.Add(ctx, keep)
	b.Close()

	b = newBackend(t, ns, cfg)
	got, err := b.InstalledRules(ctx)
	if err != nil || len(got) != 1201 {
		t.Fatalf("InstalledRules after a restart: %d rules, %v; want 1201", len(got), err)
	}
	if err := b.DeleteBatch(ctx, rules); err != nil {
		t.Fatal(err)
	}
	wantRules(t, b, keep)
	wantElements(t, ns, mapFwdSrc)
}
