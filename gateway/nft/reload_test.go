//go:build linux

package nft

import (
	"context"
	"encoding/binary"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portfwd/portfwd/internal/testenv"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// countingHandler counts the log records whose message contains want,
// and passes every record on.
type countingHandler struct {
	slog.Handler
	want string
	mu   *sync.Mutex
	n    *int
}

func (h countingHandler) Handle(ctx context.Context, r slog.Record) error {
	if strings.Contains(r.Message, h.want) {
		h.mu.Lock()
		*h.n++
		h.mu.Unlock()
	}
	return h.Handler.Handle(ctx, r)
}

func (h countingHandler) WithAttrs(as []slog.Attr) slog.Handler {
	h.Handler = h.Handler.WithAttrs(as)
	return h
}

func (h countingHandler) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return *h.n
}

// waitReached polls, bounded, until addr answers from the WAN host.
func waitReached(t *testing.T, top *topology6, addr string, within time.Duration) {
	t.Helper()
	start := time.Now()
	for {
		if _, err := top.wan.dialTCP("tcp6", addr); err == nil {
			return
		}
		if time.Since(start) > within {
			t.Fatalf("%s not reachable within %v, with no operation on the backend", addr, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitRepaired polls the router's ruleset, bounded, until our pinhole rule
// and element are back in the admin's chain, and returns how long that
// took from since.
func waitRepaired(t *testing.T, top *topology6, since time.Time, within time.Duration) time.Duration {
	t.Helper()
	for {
		out := top.router.nft(t, "list table inet filter")
		if strings.Contains(out, "@portfwd_pin6 accept") && strings.Contains(out, "2001:db8:77::2 . tcp . 8080") {
			return time.Since(since)
		}
		if time.Since(since) > within {
			t.Fatalf("our pinhole rules and elements are not back within %v of the reload, with no operation on the backend:\n%s", within, out)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A firewall reload, fw4's (the administrator's table rebuilt without our
// pinhole sets and rules) or "nft flush ruleset" (our own table gone
// too), is repaired by WatchReloads within about ReloadDebounce, with no
// mapping or pinhole operation to notice it; each reload, one batch, is
// repaired once (the repair's own changes find nothing more to do).
func TestWatchReloadsRepairs(t *testing.T) {
	top := newTopology6(t)
	top.lan.serveTCP(t, "tcp6", "["+lan6+"]:8080")
	h := countingHandler{Handler: testenv.Logger(t).Handler(), want: "putting", mu: &sync.Mutex{}, n: new(int)}
	cfg := Config{ExternalInterfaces: []string{"wan0"}, ForwardTable: "inet filter", ForwardChain: "miniupnpd", Logger: slog.New(h)}
	b := newBackend(t, top.router, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	watched := make(chan error, 1)
	go func() { watched <- b.WatchReloads(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-watched; err != nil {
			t.Errorf("WatchReloads: %v", err)
		}
	})
	web := pinRule(lan6, 8080)
	if err := b.AddPinhole(ctx, web); err != nil {
		t.Fatal(err)
	}
	addr := "[" + lan6 + "]:8080"
	waitReached(t, top, addr, 5*time.Second)
	testenv.WaitBlocked(t, "(*Backend).watchOnce") // subscribed

	// The admin's table, rebuilt in one batch as fw4 does.
	reload := filepath.Join(t.TempDir(), "fw4.nft")
	if err := os.WriteFile(reload, []byte(`delete table inet filter
table inet filter {
	chain miniupnpd {
	}
	chain forward {
		type filter hook forward priority filter; policy drop;
		ct state established,related accept
		iifname "lan0" oifname "wan0" accept
		jump miniupnpd
	}
}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	reloaded := time.Now()
	top.router.nft(t, "-f", reload)
	took := waitRepaired(t, top, reloaded, 3*time.Second)
	t.Logf("pinhole back in the ruleset %v after the fw4-style reload (debounce %v)", took.Round(time.Millisecond), ReloadDebounce)
	waitReached(t, top, addr, 5*time.Second)

	// nft flush ruleset: everything goes, ours included (an IPv4 mapping
	// in our own table too); the admin loads its table again.
	if err := b.Add(ctx, udpRule(40053, lanHost, 53)); err != nil {
		t.Fatal(err)
	}
	before := h.count()
	flush := filepath.Join(t.TempDir(), "flush.nft")
	body, _ := os.ReadFile(reload)
	if err := os.WriteFile(flush, []byte("flush ruleset\n"+strings.TrimPrefix(string(body), "delete table inet filter\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	reloaded = time.Now()
	top.router.nft(t, "-f", flush)
	took = waitRepaired(t, top, reloaded, 3*time.Second)
	t.Logf("pinhole back in the ruleset %v after nft flush ruleset", took.Round(time.Millisecond))
	waitReached(t, top, addr, 5*time.Second)
	if out := top.router.nft(t, "list table inet portfwd"); !strings.Contains(out, "udp . 40053 : 10.88.0.2 . 53") {
		t.Fatalf("our own table is not back with its mapping:\n%s", out)
	}
	// Let any repair of the repair's own changes run, then count: one
	// repair of our table and one of the pinholes, no more.
	time.Sleep(3 * ReloadDebounce)
	if got := h.count() - before; got != 2 {
		t.Errorf("%d repairs logged for one flush; want 2 (our table, the pinholes)", got)
	}
	// Nothing to repair: no change, no log.
	if err := b.Repair(ctx); err != nil {
		t.Fatal(err)
	}
	if got := h.count() - before; got != 2 {
		t.Errorf("Repair with everything in place logged a repair (%d)", got)
	}
}

// The socket filter lets through the changes of tables, chains, rules and
// sets, and drops element changes (the backend's own work), generations
// and other subsystems' messages, read in host byte order.
func TestWatchFilter(t *testing.T) {
	raw := watchFilter()
	prog, ok := bpf.Disassemble(raw)
	if !ok {
		t.Fatal("the filter does not disassemble")
	}
	// The hand-written instructions are what x/net/bpf assembles from
	// the program in its own terms.
	want := []bpf.Instruction{bpf.LoadAbsolute{Off: 4, Size: 2}}
	for i, typ := range watchedTypes {
		native := binary.NativeEndian.AppendUint16(nil, unix.NFNL_SUBSYS_NFTABLES<<8|typ)
		want = append(want, bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(binary.BigEndian.Uint16(native)),
			SkipTrue: uint8(len(watchedTypes) - i)})
	}
	want = append(want, bpf.RetConstant{Val: 0}, bpf.RetConstant{Val: 0xffffffff})
	wantRaw, err := bpf.Assemble(want)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(raw, wantRaw) {
		t.Errorf("watchFilter() = %v\nwant %v (%v)", raw, wantRaw, want)
	}
	vm, err := bpf.NewVM(prog)
	if err != nil {
		t.Fatal(err)
	}
	msg := func(subsys, typ uint16) []byte {
		b := make([]byte, 20)
		binary.NativeEndian.PutUint32(b[0:], 20)
		binary.NativeEndian.PutUint16(b[4:], subsys<<8|typ)
		return b
	}
	for _, tc := range []struct {
		name   string
		subsys uint16
		typ    uint16
		pass   bool
	}{
		{"new table", unix.NFNL_SUBSYS_NFTABLES, unix.NFT_MSG_NEWTABLE, true},
		{"delete table", unix.NFNL_SUBSYS_NFTABLES, unix.NFT_MSG_DELTABLE, true},
		{"delete chain", unix.NFNL_SUBSYS_NFTABLES, unix.NFT_MSG_DELCHAIN, true},
		{"new rule", unix.NFNL_SUBSYS_NFTABLES, unix.NFT_MSG_NEWRULE, true},
		{"delete set", unix.NFNL_SUBSYS_NFTABLES, unix.NFT_MSG_DELSET, true},
		{"new element", unix.NFNL_SUBSYS_NFTABLES, unix.NFT_MSG_NEWSETELEM, false},
		{"delete element", unix.NFNL_SUBSYS_NFTABLES, unix.NFT_MSG_DELSETELEM, false},
		{"generation", unix.NFNL_SUBSYS_NFTABLES, unix.NFT_MSG_NEWGEN, false},
		{"another subsystem", unix.NFNL_SUBSYS_CTNETLINK, unix.NFT_MSG_NEWRULE, false},
	} {
		n, err := vm.Run(msg(tc.subsys, tc.typ))
		if err != nil {
			t.Fatal(err)
		}
		if (n > 0) != tc.pass {
			t.Errorf("%s: filter kept %d bytes; want it kept: %v", tc.name, n, tc.pass)
		}
	}
}
