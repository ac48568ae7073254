package main

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/portfwd/portfwd/gateway"
	"github.com/portfwd/portfwd/internal/natlab"
)

// The gateway keeps forwarding whatever happens: a second gateway
// started by mistake, swapped interfaces, a damaged journal, a saved
// lease the backend refuses.

// TestLabGatewaySecondInstanceChangesNothing: a second gateway on the
// same nft table (another state directory, another admin port), or on the
// same state directory (another table), refuses in one sentence naming
// the running one, and changes nothing: the first keeps forwarding.
func TestLabGatewaySecondInstanceChangesNothing(t *testing.T) {
	l := natlab.Start(t, natlab.Options{Router: natlab.RouterNone})
	g := startGateway(t, l)
	l.ServeTCP(t, natlab.HostLAN, ap(l.LANIP, 8080), "lan-8080")
	if got, _ := soap(t, l, lanAddr(0), "AddPortMapping", addArgs(18080, l.LANIP, 8080)...); got != "200" {
		t.Fatalf("AddPortMapping: %s", got)
	}
	if _, reached := reachTCP(t, l, 18080, mustWork); !reached {
		t.Fatal("the first gateway's mapping does not forward")
	}
	mapBefore := nftMap(t, l)
	stateDir, _ := filepath.Abs(g.stateDir)

	for _, tc := range []struct {
		name string
		args []string
		what string
	}{
		{"same table, another state directory and admin port",
			gatewayArgs(t, l, "--state-dir", filepath.Join(l.RunDir, "gw2"), "--admin", "127.0.0.1:8901", "--http-port", "5001"),
			"nft table inet portfwd"},
		{"same state directory, another table",
			append(gatewayArgsWithPolicy(t, l, ""), "--config", writeConfig(t, l, "other.toml", "[nft]\ntable = \"portfwd2\"\n"),
				"--admin", "127.0.0.1:8901", "--http-port", "5001"),
			"state directory " + stateDir},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := pf(t, l, natlab.HostRouter, tc.args...)
			if r.code != exitFailure {
				t.Errorf("the second gateway: %v; want exit %d", r, exitFailure)
			}
			msg := strings.TrimSpace(r.stderr)
			for _, want := range []string{"PID " + strconv.Itoa(g.proc.PID()), "state directory " + stateDir, tc.what, "changed nothing"} {
				if !strings.Contains(msg, want) {
					t.Errorf("the refusal does not say %q:\n%s", want, msg)
				}
			}
			if strings.Count(msg, "\n") > 0 {
				t.Errorf("the refusal is more than one line:\n%s", msg)
			}
			t.Logf("the second gateway said: %s", msg)
			if after := nftMap(t, l); after != mapBefore {
				t.Errorf("the first gateway's nft map changed:\n%s\nwas:\n%s", after, mapBefore)
			}
			if tables := nftTables(t, l); strings.Contains(tables, "portfwd2") {
				t.Errorf("the second gateway created its table:\n%s", tables)
			}
			if _, reached := reachTCP(t, l, 18080, mustWork); !reached {
				t.Error("the first gateway's mapping stopped forwarding")
			}
			if got, _ := soap(t, l, lanAddr(0), "GetSpecificPortMappingEntry", "NewRemoteHost", "", "NewExternalPort", "18080", "NewProtocol", "TCP"); got != "200" {
				t.Errorf("the first gateway lost its mapping: %s", got)
			}
		})
	}
	g.stop(t)
}

// writeConfig writes a configuration file in the lab's directory.
func writeConfig(t *testing.T, l *natlab.Lab, name, text string) string {
	t.Helper()
	path := filepath.Join(l.RunDir, name)
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func nftMap(t *testing.T, l *natlab.Lab) string {
	t.Helper()
	out, err := l.Run(t, natlab.HostRouter, "nft", "list", "map", "inet", "portfwd", "fwd4")
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	return out
}

func nftTables(t *testing.T, l *natlab.Lab) string {
	t.Helper()
	out, _ := l.Run(t, natlab.HostRouter, "nft", "list", "tables")
	return out
}

// TestLabGatewayRefusesSwappedInterfaces: with --internal and --external
// swapped, --check says what is wrong and the gateway does not start,
// touching nothing; --force starts it anyway.
func TestLabGatewayRefusesSwappedInterfaces(t *testing.T) {
	l := natlab.Start(t, natlab.Options{Router: natlab.RouterNone})
	swapped := []string{"gateway", "--internal", natlab.RouterWANIf, "--external", natlab.RouterLANIf,
		"--external-ip", l.RouterWANIP.String(), "--backend", "nft", "--state-dir", filepath.Join(l.RunDir, "gw"), "--admin", "off"}
	r := pf(t, l, natlab.HostRouter, append(slicesClone(swapped), "--check")...)
	if r.code != exitUsage {
		t.Errorf("--check with swapped interfaces: %v; want exit %d", r, exitUsage)
	}
	contains(t, "--check", r.stdout,
		"problem: internal interface wan0 carries the default route via "+l.WANIP.String(),
		"problem: external interface lan0 has no route out", "--force")
	r = pf(t, l, natlab.HostRouter, swapped...)
	if r.code != exitUsage || !strings.Contains(r.stderr, "the interface roles look wrong") {
		t.Errorf("starting with swapped interfaces: %v; want exit %d naming the problem", r, exitUsage)
	}
	if tables := nftTables(t, l); strings.Contains(tables, "portfwd") {
		t.Errorf("the refused gateway created its nft table:\n%s", tables)
	}
	r = pf(t, l, natlab.HostRouter, append(slicesClone(swapped), "--check", "--force")...)
	contains(t, "--check --force", r.stdout, "interfaces.force is set, so the gateway starts anyway")
	// The right way round passes.
	r = pf(t, l, natlab.HostRouter, gatewayArgs(t, l, "--check")...)
	contains(t, "--check", r.stdout, "ok: interface roles:", "the gateway is ready to start")
}

func slicesClone(s []string) []string { return append([]string(nil), s...) }

// TestLabGatewayJournalDamage: 1,023 leases; the journal then gets a byte
// flipped in its middle, garbage appended, or its end cut mid-record. At
// each restart the gateway starts, keeps every intact lease (and they
// forward), says what it dropped and where, and keeps the damaged file.
func TestLabGatewayJournalDamage(t *testing.T) {
	l, g := startUnlimitedGateway(t)
	l.ServeTCP(t, natlab.HostLAN, ap(l.LANIP, 8080), "lan")
	loadgen := natlab.GoBuild(t, "github.com/portfwd/portfwd/bench/loadgen")
	control := fmt.Sprintf("http://%s:5000/ctl/IPConn", l.RouterLANIP)
	const n, base = 1023, 40000
	lanRun(t, l, loadgen, "-upnp", control, "-client", l.LANIP.String(), "-n", strconv.Itoa(n), "-base", strconv.Itoa(base), "-phases", "soap-grow")
	listed := func() int {
		var p struct{ Entries int }
		decodeInto(t, lanRun(t, l, loadgen, "-upnp", control, "-phases", "soap-list"), &p)
		return p.Entries
	}
	g.stop(t)
	journal := filepath.Join(g.stateDir, "leases.journal")
	orig, err := os.ReadFile(journal)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		damage func([]byte) []byte
		want   int
	}{
		{"a byte flipped in the middle", func(b []byte) []byte { b[len(b)/2] ^= 0x20; return b }, n - 1},
		{"garbage appended", func(b []byte) []byte {
			return append(b, []byte("\x00\x01garbage from a bad flash page\xa5PF\x5a\xff")...)
		}, n},
		{"cut in the middle of the last record", func(b []byte) []byte { return b[:len(b)-9] }, n - 1},
		{"the first record damaged", func(b []byte) []byte { b[14] ^= 0x01; return b }, n},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := os.WriteFile(journal, tc.damage(bytes.Clone(orig)), 0o600); err != nil {
				t.Fatal(err)
			}
			old, _ := filepath.Glob(journal + ".damaged-*")
			g.start(t)
			got := listed()
			t.Logf("%s: %d of %d leases kept", tc.name, got, n)
			if got < tc.want {
				t.Errorf("%d leases after the restart, want at least %d", got, tc.want)
			}
			for _, p := range []int{0, n / 3, n - 2} {
				if _, reached := reachTCP(t, l, uint16(base+p), mustWork); !reached {
					t.Errorf("port %d does not forward after the restart", base+p)
				}
			}
			copies, _ := filepath.Glob(journal + ".damaged-*")
			if len(copies) != len(old)+1 {
				t.Errorf("damaged copies %v, want one more than %v", copies, old)
			}
			g.stop(t) // no error logged: damage is a warning
			out := g.proc.Output()
			contains(t, "the log", out, "lease journal", "offset=", "kept every intact lease, and a copy of the damaged file")
			if err := os.WriteFile(journal, orig, 0o600); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestLabGatewayParksWhatTheBackendRefuses: a journal holding leases the
// nft backend refuses (written by an older gateway, or while the relay
// backend ran): the gateway starts, parks them with a warning, serves the
// others, and never flushes its map first: the rules already installed
// are not touched.
func TestLabGatewayParksWhatTheBackendRefuses(t *testing.T) {
	l := natlab.Start(t, natlab.Options{Router: natlab.RouterNone})
	l.ServeTCP(t, natlab.HostLAN, ap(l.LANIP, 8080), "lan")
	// No permission rules: the IPv6 lease below passes the policy, and
	// only the backend can refuse it.
	args := append(gatewayArgs(t, l), "--config", writeConfig(t, l, "allow-all.toml", "[policy]\nrules = []\n"))
	g := &labGateway{l: l, args: args, stateDir: filepath.Join(l.RunDir, "gw")}
	g.start(t)
	for p := 18090; p < 18095; p++ {
		if got, _ := soap(t, l, lanAddr(0), "AddPortMapping", addArgs(uint16(p), l.LANIP, 8080)...); got != "200" {
			t.Fatalf("AddPortMapping %d: %s", p, got)
		}
	}
	syscall.Kill(g.proc.PID(), syscall.SIGKILL)
	<-g.proc.Done()

	// Leases this nft backend cannot install, as an older gateway or the
	// relay backend could have stored them.
	s, err := gateway.OpenFileStore(g.stateDir, nil)
	if err != nil {
		t.Fatal(err)
	}
	v6 := netip6("fd00::2")
	bad := []gateway.Mapping{
		{Protocol: gateway.TCP, ExternalPort: 18100, InternalAddr: v6, InternalPort: 80, Enabled: true, Owner: v6,
			Source: gateway.SourcePCP, Expires: time.Now().Add(time.Hour), Created: time.Now()},
		{Protocol: gateway.UDP, ExternalPort: 18101, InternalAddr: l.LANIP, InternalPort: 80, Enabled: true, Owner: l.LANIP,
			RemoteHost: netip6("2001:db8::9"), Source: gateway.SourcePCP, Expires: time.Now().Add(time.Hour), Created: time.Now()},
	}
	if err := s.Save(bad, nil); err != nil {
		t.Fatal(err)
	}
	s.Close()

	// nft monitor prints nothing before its first event: make one, and
	// start the gateway once the monitor has shown it.
	monitor := l.Start(t, natlab.HostRouter, "nft", "monitor")
	seen := within(5*time.Second, 20*time.Millisecond, func() bool {
		l.Run(t, natlab.HostRouter, "nft", "add", "table", "inet", "pfmonitorready")
		l.Run(t, natlab.HostRouter, "nft", "delete", "table", "inet", "pfmonitorready")
		return strings.Contains(monitor.Output(), "pfmonitorready")
	})
	if !seen {
		t.Fatal("nft monitor shows no event")
	}
	g.start(t)
	if got, _ := soap(t, l, lanAddr(0), "GetExternalIPAddress"); got != "200" {
		t.Fatalf("the gateway does not serve: %s", got)
	}
	for p := 18090; p < 18095; p++ {
		if _, reached := reachTCP(t, l, uint16(p), mustWork); !reached {
			t.Errorf("port %d does not forward after the restart", p)
		}
	}
	monitor.Stop()
	m := monitor.Output()
	if !strings.Contains(m, "add rule inet portfwd") {
		t.Fatalf("nft monitor did not see the gateway's start (its chains are rewritten then):\n%s", m)
	}
	if strings.Contains(m, "delete element") || strings.Contains(m, "flush") {
		t.Errorf("the restart removed rules before (or instead of) applying:\n%s", m)
	}
	t.Logf("nft monitor during the restart:\n%s", m)
	g.stop(t)
	out := g.proc.Output()
	contains(t, "the log", out, "the backend refused a saved lease; it is parked", "18100",
		"dropping saved lease the current policy denies", "18101", "parked=1")
	// The parked lease is still in the journal, for the next start.
	s, err = gateway.OpenFileStore(g.stateDir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ms, _ := s.Load()
	kept := false
	for _, m := range ms {
		kept = kept || m.ExternalPort == 18100
	}
	if !kept {
		t.Error("the parked lease is gone from the journal")
	}
}

func netip6(s string) netip.Addr { return netip.MustParseAddr(s) }
