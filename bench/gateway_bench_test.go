package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/portfwd/portfwd/internal/natlab"
)

type phase struct {
	Phase            string  `json:"phase"`
	N                int     `json:"n"`
	Seconds          float64 `json:"seconds"`
	PerSec           float64 `json:"per_sec"`
	P50ms            float64 `json:"p50_ms"`
	P99ms            float64 `json:"p99_ms"`
	FirstTenthPerSec float64 `json:"first_tenth_per_sec"`
	LastTenthPerSec  float64 `json:"last_tenth_per_sec"`
	Entries          int     `json:"entries"`
	Clients          int     `json:"clients"`
	Error            string  `json:"error"`
}

// load runs the load generator on the LAN host and returns its phases.
func load(t *testing.T, l *natlab.Lab, args ...string) []phase {
	t.Helper()
	ps, err := tryLoad(t, l, args...)
	if err != nil {
		t.Fatal(err)
	}
	return ps
}

// tryLoad is load that reports a failing load generator instead of
// failing the test, with the phases it finished.
func tryLoad(t *testing.T, l *natlab.Lab, args ...string) ([]phase, error) {
	t.Helper()
	bin := natlab.GoBuild(t, "github.com/portfwd/portfwd/bench/loadgen")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	base := []string{"-upnp", fmt.Sprintf("http://%s:5000/ctl/IPConn", l.RouterLANIP), "-natpmp", l.RouterLANIP.String() + ":5351", "-client", l.LANIP.String()}
	cmd := l.Cmd(ctx, natlab.HostLAN, bin, append(base, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, runErr := cmd.Output()
	var ps []phase
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if line == "" {
			continue
		}
		var p phase
		if err := json.Unmarshal([]byte(line), &p); err != nil {
			return ps, fmt.Errorf("loadgen output %q: %v", line, err)
		}
		ps = append(ps, p)
	}
	if runErr != nil {
		return ps, fmt.Errorf("loadgen %v: %v\n%s%s", args, runErr, out, stderr.String())
	}
	return ps, nil
}

func rssMiB(t *testing.T, pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("RSS of %d: %v", pid, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.Atoi(f[1])
			return float64(kb) / 1024
		}
	}
	t.Fatalf("no VmRSS for %d", pid)
	return 0
}

// startGateway runs portfwd's gateway with the nft backend on the lab's
// router, as a daemon would run (info logging off: warn only), and waits
// until it answers.
func startGateway(t *testing.T, l *natlab.Lab, stateDir string) (*natlab.Process, time.Duration) {
	return startGatewayArgs(t, l, stateDir)
}

// startGatewayArgs is startGateway with more arguments for the gateway.
func startGatewayArgs(t *testing.T, l *natlab.Lab, stateDir string, extra ...string) (*natlab.Process, time.Duration) {
	bin := natlab.GoBuild(t, "github.com/portfwd/portfwd/cmd/portfwd")
	// One load generator plays every client: no per-client quota, no
	// table cap, as miniupnpd has none.
	conf := filepath.Join(l.RunDir, "bench-gateway.toml")
	// Pinholes go where the dual-stack lab's forward chain jumps to.
	text := "[policy]\nmax_per_client = 0\nmax_mappings = 0\n"
	if l.LANIP6.IsValid() {
		text += "[nft]\nforward_table = \"inet filter\"\nforward_chain = \"miniupnpd\"\n"
	}
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	args := []string{"gateway", "--config", conf, "--internal", natlab.RouterLANIf, "--external", natlab.RouterWANIf,
		"--external-ip", l.RouterWANIP.String(), "--backend", "nft", "--state-dir", stateDir, "--log-level", "warn", "--admin", "off"}
	p := l.Start(t, natlab.HostRouter, bin, append(args, extra...)...)
	l.WaitTCP(t, natlab.HostLAN, netip.AddrPortFrom(l.RouterLANIP, 5000), 30*time.Second, p)
	return p, time.Since(start)
}

func count(t *testing.T, l *natlab.Lab) int {
	for _, p := range load(t, l, "-phases", "soap-list") {
		return p.Entries
	}
	return 0
}

type gwRow struct {
	name       string
	ours, mini string
	target     string
}

// TestLabBenchGateway drives miniupnpd and portfwd's gateway (both with the
// nftables backend, debug logging off) with the same load generator from
// the LAN host, and prints one table.
func TestLabBenchGateway(t *testing.T) {
	requireBench(t)
	loadStart := loadavg()
	n := 1000
	full := os.Getenv("PORTFWD_BENCH_FULL") == "1"
	var rows []gwRow
	grow := func(p phase) string {
		return fmt.Sprintf("%.0f/s (first 10%%: %.0f/s, last 10%%: %.0f/s)", p.PerSec, p.FirstTenthPerSec, p.LastTenthPerSec)
	}

	// miniupnpd.
	lm := natlab.Start(t, natlab.Options{Quiet: true})
	m1 := load(t, lm, "-n", strconv.Itoa(n), "-phases", "natpmp-pairs,pcp-pairs,soap-pairs,soap-grow,soap-list,soap-clear")
	m8 := eightClients(t, lm, n)
	miniPID, err := lm.MiniupnpdPID()
	if err != nil {
		t.Fatal(err)
	}
	miniRSS := rssMiB(t, miniPID)
	// Last, as miniupnpd 2.3 may not survive it: GetListOfPortMappings
	// over a table of n.
	mGet, err := tryLoad(t, lm, "-n", strconv.Itoa(n), "-base", "45000", "-phases", "soap-grow,soap-getlist")
	if err != nil {
		t.Logf("miniupnpd and GetListOfPortMappings: %v", err)
	}
	if alive, _ := lm.MiniupnpdPID(); alive == 0 || syscall.Kill(alive, 0) != nil {
		t.Logf("miniupnpd is gone after GetListOfPortMappings")
	}
	m1 = append(m1, byName(mGet, "soap-getlist"))
	mini10k := map[string]phase{}
	if full {
		for _, p := range load(t, lm, "-n", "10000", "-base", "40000", "-phases", "soap-grow,soap-list") {
			mini10k[p.Phase] = p
		}
	}

	// portfwd gateway, and first the floor under its pair phases: the same
	// client and path to an echo server on the router.
	lg := natlab.Start(t, natlab.Options{Router: natlab.RouterNone})
	echoRaw, echoNetpoll := echoPairs(t, lg, n, false), echoPairs(t, lg, n, true)
	udpFloor, tcpFloor := byName(echoRaw, "udp-echo-pairs"), byName(echoRaw, "tcp-echo-pairs")
	// The same gateway with the memory backend: the pairs without the
	// kernel's nft work, to tell the two apart.
	mem, _ := startGatewayArgs(t, lg, filepath.Join(lg.RunDir, "gw-memory"), "--backend", "memory")
	gMem := load(t, lg, "-n", strconv.Itoa(n), "-phases", "natpmp-pairs,pcp-pairs,soap-pairs")
	mem.Stop()
	state := filepath.Join(lg.RunDir, "gw")
	gw, _ := startGateway(t, lg, state)
	g1 := load(t, lg, "-n", strconv.Itoa(n), "-phases", "natpmp-pairs,pcp-pairs,soap-pairs,soap-grow,soap-list,soap-getlist,soap-clear")
	g8 := eightClients(t, lg, n)
	ours10k := map[string]phase{}
	for _, p := range load(t, lg, "-n", "10000", "-base", "40000", "-phases", "soap-grow,soap-list") {
		ours10k[p.Phase] = p
	}
	rss10k := rssMiB(t, gw.PID())
	// kill -9 with 10,000 leases, restart: time to serving with all restored.
	syscall.Kill(gw.PID(), syscall.SIGKILL)
	<-gw.Done()
	gw, restore := startGateway(t, lg, state)
	if got := count(t, lg); got != 10000 {
		t.Errorf("after kill -9 and restart %d leases are listed, want 10000", got)
	}

	rows = append(rows,
		gwRow{"SOAP AddPortMapping+DeletePortMapping pairs", ofFloor(byName(g1, "soap-pairs"), tcpFloor), ofFloor(byName(m1, "soap-pairs"), tcpFloor), ">= 15x"},
		gwRow{fmt.Sprintf("SOAP adds, table growing to %d", n), grow(byName(g1, "soap-grow")), grow(byName(m1, "soap-grow")), ">= 2x, no slow-down"},
		gwRow{"SOAP adds, table growing 1,000 -> 11,000", grow(ours10k["soap-grow"]), valueOr(mini10k, "soap-grow", grow, "not run (PORTFWD_BENCH_FULL=1)"), "no slow-down"},
		gwRow{fmt.Sprintf("full listing, %d entries (GetGeneric walk)", n), walk(byName(g1, "soap-list"), tcpFloor), walk(byName(m1, "soap-list"), tcpFloor), ">= 5x"},
		gwRow{"full listing, 10,000 entries", fmt.Sprintf("%.3f s", ours10k["soap-list"].Seconds), valueOr(mini10k, "soap-list", func(p phase) string { return fmt.Sprintf("%.3f s", p.Seconds) }, "not run"), ""},
		gwRow{fmt.Sprintf("full listing, %d entries (GetListOfPortMappings, one request)", n), listing(byName(g1, "soap-getlist")), listing(byName(m1, "soap-getlist")), "one request"},
		gwRow{"floor: pairs of UDP round trips to an echo server (blocking calls / Go's poller)", floors(echoRaw, echoNetpoll, "udp-echo-pairs"), "", "no server is faster"},
		gwRow{"floor: pairs of SOAP-sized TCP round trips, one connection (blocking / poller)", floors(echoRaw, echoNetpoll, "tcp-echo-pairs"), "", "no server is faster"},
		gwRow{"NAT-PMP map+unmap pairs", ofFloor(byName(g1, "natpmp-pairs"), udpFloor), ofFloor(byName(m1, "natpmp-pairs"), udpFloor), ">= 10x"},
		gwRow{"PCP MAP+delete pairs", ofFloor(byName(g1, "pcp-pairs"), udpFloor), ofFloor(byName(m1, "pcp-pairs"), udpFloor), ">= 10x"},
		gwRow{"pairs with the memory backend (no nft): NAT-PMP / PCP / SOAP", fmt.Sprintf("%.0f/s / %.0f/s / %.0f/s", byName(gMem, "natpmp-pairs").PerSec, byName(gMem, "pcp-pairs").PerSec, byName(gMem, "soap-pairs").PerSec), "", ""},
		gwRow{"NAT-PMP pairs, 8 clients at once", fmtRate8(byName(g8, "natpmp-pairs"), byName(g1, "natpmp-pairs")), fmtRate8(byName(m8, "natpmp-pairs"), byName(m1, "natpmp-pairs")), "grows"},
		gwRow{"PCP pairs, 8 clients at once", fmtRate8(byName(g8, "pcp-pairs"), byName(g1, "pcp-pairs")), fmtRate8(byName(m8, "pcp-pairs"), byName(m1, "pcp-pairs")), "grows"},
		gwRow{"SOAP pairs, 8 clients at once", fmtRate8(byName(g8, "soap-pairs"), byName(g1, "soap-pairs")), fmtRate8(byName(m8, "soap-pairs"), byName(m1, "soap-pairs")), "grows"},
		gwRow{"restart (kill -9) to serving, 10,000 leases", restore.Round(time.Millisecond).String(), "", ""},
		gwRow{"RSS", fmt.Sprintf("%.1f MiB (10,000 mappings)", rss10k), fmt.Sprintf("%.1f MiB (after the %d-entry run)", miniRSS, n), ""},
	)

	// 65,535 mappings: TCP 10000-65535 and UDP 10000-19998.
	load(t, lg, "-n", "30000", "-base", "10000", "-phases", "soap-grow")
	load(t, lg, "-n", "15536", "-base", "50000", "-phases", "soap-grow")
	load(t, lg, "-n", "9999", "-base", "10000", "-proto", "UDP", "-phases", "soap-grow")
	total := count(t, lg)
	rows = append(rows, gwRow{fmt.Sprintf("RSS with %d mappings", total), fmt.Sprintf("%.1f MiB", rssMiB(t, gw.PID())), "", "<= 64 MiB"})

	var b strings.Builder
	fmt.Fprintf(&b, "\ngateway benchmark: portfwd gateway vs miniupnpd 2.3 (nft backend both, debug off, same load generator)\n")
	fmt.Fprintf(&b, "machine load average (1, 5, 15 min): %s at the start, %s at the end\n", loadStart, loadavg())
	fmt.Fprintf(&b, "kernel: %s\n", rcuMode())
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "measure\tportfwd gateway\tminiupnpd\ttarget")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.name, r.ours, r.mini, r.target)
	}
	tw.Flush()
	fmt.Print(b.String())
}

// echoPairs runs the load generator's echo server on the lab's router (of
// blocking system calls, or through Go's network poller) and returns
// udp-echo-pairs and tcp-echo-pairs against it from the LAN host: two
// round trips the size of NAT-PMP requests, or of SOAP requests over one
// kept connection, per pair, over the path the pair phases take.
func echoPairs(t *testing.T, l *natlab.Lab, n int, netpoll bool) []phase {
	t.Helper()
	bin := natlab.GoBuild(t, "github.com/portfwd/portfwd/bench/loadgen")
	addr, flag := netip.AddrPortFrom(l.RouterLANIP, 5390), "-echo-server"
	if netpoll {
		addr, flag = netip.AddrPortFrom(l.RouterLANIP, 5391), "-echo-server-netpoll"
	}
	srv := l.Start(t, natlab.HostRouter, bin, flag, addr.String())
	defer srv.Stop()
	// The server binds UDP before it listens on TCP.
	l.WaitTCP(t, natlab.HostLAN, addr, 10*time.Second, srv)
	// Five times the pair phases' count: a round trip is short, and the
	// floor is read against every pair phase.
	return load(t, l, "-echo", addr.String(), "-n", strconv.Itoa(5*n), "-phases", "udp-echo-pairs,tcp-echo-pairs")
}

func floors(raw, netpoll []phase, name string) string {
	return fmt.Sprintf("%.0f/s / %.0f/s", byName(raw, name).PerSec, byName(netpoll, name).PerSec)
}

// ofFloor is a pair phase's rate with its share of the echo floor's.
func ofFloor(p, floor phase) string {
	return fmt.Sprintf("%.0f/s (%.0f%% of the floor)", p.PerSec, 100*p.PerSec/floor.PerSec)
}

// walk is a GetGeneric walk's time beside its floor: one kept
// connection's SOAP-sized round trip per entry.
func walk(p, floor phase) string {
	return fmt.Sprintf("%.3f s (floor %.3f s)", p.Seconds, float64(p.Entries)/(2*floor.PerSec))
}

// eightClients runs the pair phases with 8 clients at once, each from its
// own address on the LAN (n/4 pairs each).
func eightClients(t *testing.T, l *natlab.Lab, n int) []phase {
	first := addLANClients(t, l, 8)
	return load(t, l, "-n", strconv.Itoa(n/4), "-clients", "8", "-sources", first.String()+"+8", "-base", "20000", "-phases", "natpmp-pairs,pcp-pairs,soap-pairs")
}

func fmtRate8(p, one phase) string {
	return fmt.Sprintf("%.0f/s (%.2fx one client; p99 %.1f ms)", p.PerSec, p.PerSec/one.PerSec, p.P99ms)
}

func listing(p phase) string {
	if p.Phase == "" {
		return "not measured (the load generator failed before it)"
	}
	if p.Error != "" {
		return "not served (" + p.Error + ")"
	}
	return fmt.Sprintf("%.3f s, %d entries", p.Seconds, p.Entries)
}

// byName returns the phase called name, or a zero phase.
func byName(ps []phase, name string) phase {
	for _, p := range ps {
		if p.Phase == name {
			return p
		}
	}
	return phase{}
}

// rcuMode says whether the kernel expedites RCU grace periods
// (/sys/kernel/rcu_expedited). It matters to every server that deletes
// nftables elements: the kernel frees a deleted element after a grace
// period, which an expedited kernel forces with an interrupt to every CPU,
// once per transaction. On this bench's machine that made one nft element
// add+delete pair cost 32-54 µs instead of 15 µs.
func rcuMode() string {
	b, err := os.ReadFile("/sys/kernel/rcu_expedited")
	switch strings.TrimSpace(string(b)) {
	case "0":
		return "rcu_expedited=0 (RCU grace periods as the kernel's default has them)"
	case "1":
		return "rcu_expedited=1: every RCU grace period is expedited, so each nft element deletion interrupts every CPU (the kernel's default is 0; see docs/scale.md)"
	}
	return fmt.Sprintf("rcu_expedited unknown (%v)", err)
}

// loadavg is the machine's load average, from /proc/loadavg: the
// benchmark shares its CPUs with whatever else runs.
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) >= 3 {
		return strings.Join(f[:3], " ")
	}
	return "unknown"
}

// TestLabBenchPinholes times IPv6 pinhole add+delete pairs through
// WANIPv6FirewallControl, the same load generator against miniupnpd and
// against portfwd's gateway (nft backend both), with no other pinhole and
// with 1,000 live ones: miniupnpd writes one rule per pinhole and re-reads
// its chain on every operation, portfwd one set element.
func TestLabBenchPinholes(t *testing.T) {
	requireBench(t)
	n := 1000
	run := func(l *natlab.Lab, url string) map[string]phase {
		out := map[string]phase{}
		ps := load(t, l, "-upnp6", url, "-client6", l.LANIP6.String(), "-n", strconv.Itoa(n), "-base", "20000",
			"-phases", "pinhole-pairs,pinhole-grow")
		out["pairs-empty"], out["grow"] = ps[0], ps[1]
		ps = load(t, l, "-upnp6", url, "-client6", l.LANIP6.String(), "-n", strconv.Itoa(n), "-base", "20000",
			"-phases", "pinhole-pairs")
		out["pairs-1000"] = ps[0]
		return out
	}
	lm := natlab.Start(t, natlab.Options{Quiet: true, IPv6: true})
	mini := run(lm, "http://["+lm.RouterLANIP6.String()+"]:5000/ctl/IP6FCtl")
	lg := natlab.Start(t, natlab.Options{Router: natlab.RouterNone, IPv6: true})
	startGateway(t, lg, filepath.Join(lg.RunDir, "gw"))
	ours := run(lg, "http://["+lg.RouterLANIP6.String()+"]:5000/ctl/IP6FCtl")

	rate := func(p phase) string { return fmt.Sprintf("%.0f/s (p50 %.2f ms)", p.PerSec, p.P50ms) }
	grow := func(p phase) string {
		return fmt.Sprintf("%.0f/s (first 10%%: %.0f/s, last 10%%: %.0f/s)", p.PerSec, p.FirstTenthPerSec, p.LastTenthPerSec)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\npinhole benchmark: portfwd gateway vs miniupnpd 2.3 (WANIPv6FirewallControl over IPv6 SOAP, nft backend both)\n")
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "measure\tportfwd gateway\tminiupnpd\ttarget")
	fmt.Fprintf(tw, "AddPinhole+DeletePinhole pairs, no other pinhole\t%s\t%s\t>= 2x\n", rate(ours["pairs-empty"]), rate(mini["pairs-empty"]))
	fmt.Fprintf(tw, "AddPinhole, table growing to %d\t%s\t%s\tno slow-down\n", n, grow(ours["grow"]), grow(mini["grow"]))
	fmt.Fprintf(tw, "AddPinhole+DeletePinhole pairs, %d live pinholes\t%s\t%s\t>= 2x\n", n, rate(ours["pairs-1000"]), rate(mini["pairs-1000"]))
	tw.Flush()
	fmt.Print(b.String())
}

func valueOr(m map[string]phase, k string, f func(phase) string, def string) string {
	if p, ok := m[k]; ok {
		return f(p)
	}
	return def
}
