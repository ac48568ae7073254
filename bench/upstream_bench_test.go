package bench

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/portfwd/portfwd/internal/natlab"
	"github.com/portfwd/portfwd/natpmp"
	"github.com/portfwd/portfwd/pcp"
)

// TestLabBenchChained measures what chaining to the router above costs
// (issue 15), in the double-NAT lab: portfwd's gateway on the home router,
// miniupnpd on the ISP router. A PCP client on the LAN host makes and
// deletes one mapping N times against the gateway with upstream = off
// (local only), then with upstream = pcp, natpmp and upnp (each add and
// delete also made on the ISP). The round trip of the same request from
// the home router straight to the ISP is measured too: the target is that
// a chained add costs at most that round trip + 2 ms more than a local
// one.
func TestLabBenchChained(t *testing.T) {
	requireBench(t)
	n := 300
	if s := os.Getenv("PORTFWD_BENCH_RUNS"); s != "" {
		fmt.Sscan(s, &n)
		n = max(n, 30)
	}
	d := natlab.StartDouble(t, natlab.DoubleOptions{ISPConf: func(c *natlab.Conf) {}})
	bin := natlab.GoBuild(t, "github.com/portfwd/portfwd/cmd/portfwd")
	conf := filepath.Join(d.RunDir, "bench-gateway.toml")
	if err := os.WriteFile(conf, []byte("[policy]\nmax_per_client = 0\nmax_mappings = 0\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	// The round trips from the home router straight to the ISP.
	pcpUp := &pcp.Client{Gateway: netip.AddrPortFrom(d.ISPInsideIP, pcp.ServerPort), Dial: dialIn(d.Lab, natlab.HostRouter)}
	rttPCP := pairs(t, n, func(i int) (time.Duration, time.Duration) {
		non := pcp.NewNonce()
		t0 := time.Now()
		if _, err := pcpUp.Map(context.Background(), pcp.MapRequest{Protocol: pcp.TCP, InternalPort: 41000, SuggestedExternalPort: 41000, Lifetime: time.Hour, Nonce: non}); err != nil {
			t.Fatal(err)
		}
		t1 := time.Now()
		if err := pcpUp.Delete(context.Background(), pcp.TCP, 41000, non); err != nil {
			t.Fatal(err)
		}
		return t1.Sub(t0), time.Since(t1)
	})
	var rttPMP chainResult
	d.In(natlab.HostRouter, func() error {
		c := &natpmp.Client{Gateway: netip.AddrPortFrom(d.ISPInsideIP, natpmp.ServerPort)}
		rttPMP = pairs(t, n, func(i int) (time.Duration, time.Duration) {
			t0 := time.Now()
			if _, err := c.Map(context.Background(), natpmp.TCP, 41000, 41000, time.Hour); err != nil {
				t.Fatal(err)
			}
			t1 := time.Now()
			if err := c.Unmap(context.Background(), natpmp.TCP, 41000); err != nil {
				t.Fatal(err)
			}
			return t1.Sub(t0), time.Since(t1)
		})
		return nil
	})

	type modeRow struct {
		mode string
		r    chainResult
	}
	var rows []modeRow
	for i, mode := range []string{"off", "pcp", "natpmp", "upnp"} {
		state := filepath.Join(d.RunDir, "gw-"+mode)
		p := d.Start(t, natlab.HostRouter, bin, "gateway", "--config", conf, "--internal", natlab.RouterLANIf,
			"--external", natlab.RouterWANIf, "--backend", "nft", "--state-dir", state, "--log-level", "info",
			"--admin", "off", "--upstream", mode)
		d.WaitTCP(t, natlab.HostLAN, netip.AddrPortFrom(d.RouterLANIP, 5000), 30*time.Second, p)
		if mode != "off" {
			deadline := time.Now().Add(15 * time.Second)
			for !strings.Contains(p.Output(), "chaining mappings to the router above") {
				if time.Now().After(deadline) {
					t.Fatalf("upstream %s: the gateway never chained:\n%s", mode, p.Output())
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
		c := &pcp.Client{Gateway: netip.AddrPortFrom(d.RouterLANIP, pcp.ServerPort), Dial: dialIn(d.Lab, natlab.HostLAN)}
		port := uint16(42000 + i)
		non := pcp.NewNonce()
		r := pairs(t, n, func(int) (time.Duration, time.Duration) {
			t0 := time.Now()
			got, err := c.Map(context.Background(), pcp.MapRequest{Protocol: pcp.TCP, InternalPort: port, SuggestedExternalPort: port, Lifetime: time.Hour, Nonce: non})
			if err != nil {
				t.Fatalf("upstream %s: %v", mode, err)
			}
			t1 := time.Now()
			if mode != "off" && got.ExternalAddr.Unmap() != d.ISPOutsideIP {
				t.Fatalf("upstream %s: the gateway answered %v, want the ISP's %v", mode, got.ExternalAddr, d.ISPOutsideIP)
			}
			if err := c.Delete(context.Background(), pcp.TCP, port, non); err != nil {
				t.Fatalf("upstream %s: %v", mode, err)
			}
			return t1.Sub(t0), time.Since(t1)
		})
		rows = append(rows, modeRow{mode, r})
		p.Stop()
	}

	var b strings.Builder
	fmt.Fprintf(&b, "\nchained mappings (double NAT): PCP client on the LAN -> portfwd gateway -> miniupnpd on the ISP router, %d add+delete pairs each\n", n)
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "measure\tadd p50\tadd p99\tdelete p50\tpairs/s\tadded to an add (p50)\ttarget")
	local := rows[0].r
	fmt.Fprintf(tw, "upstream round trip, PCP MAP (home router -> ISP)\t%s\t%s\t%s\t%.0f\t\t\n", ms2(rttPCP.addP50), ms2(rttPCP.addP99), ms2(rttPCP.delP50), rttPCP.perSec)
	fmt.Fprintf(tw, "upstream round trip, NAT-PMP map (home router -> ISP)\t%s\t%s\t%s\t%.0f\t\t\n", ms2(rttPMP.addP50), ms2(rttPMP.addP99), ms2(rttPMP.delP50), rttPMP.perSec)
	for _, r := range rows {
		added, target := "", ""
		switch r.mode {
		case "pcp":
			added = ms2(r.r.addP50 - local.addP50)
			target = "<= " + ms2(rttPCP.addP50+2*time.Millisecond)
		case "natpmp":
			added = ms2(r.r.addP50 - local.addP50)
			target = "<= " + ms2(rttPMP.addP50+2*time.Millisecond)
		case "upnp":
			added = ms2(r.r.addP50 - local.addP50)
			target = "(SOAP: a TCP connection per call)"
		}
		fmt.Fprintf(tw, "gateway, upstream = %s\t%s\t%s\t%s\t%.0f\t%s\t%s\n", r.mode, ms2(r.r.addP50), ms2(r.r.addP99), ms2(r.r.delP50), r.r.perSec, added, target)
	}
	tw.Flush()
	fmt.Print(b.String())
}

// chainResult summarises add+delete pairs.
type chainResult struct {
	addP50, addP99, delP50 time.Duration
	perSec                 float64
}

// pairs runs f n times (after a few warm-up runs) and summarises the add
// and delete latencies it returns.
func pairs(t *testing.T, n int, f func(i int) (add, del time.Duration)) chainResult {
	t.Helper()
	for i := range 5 {
		f(i)
	}
	adds, dels := make([]time.Duration, 0, n), make([]time.Duration, 0, n)
	t0 := time.Now()
	for i := range n {
		a, d := f(i)
		adds, dels = append(adds, a), append(dels, d)
	}
	total := time.Since(t0)
	slices.Sort(adds)
	slices.Sort(dels)
	return chainResult{addP50: adds[n/2], addP99: adds[n*99/100], delP50: dels[n/2], perSec: float64(n) / total.Seconds()}
}

// dialIn dials from inside host's namespace, for clients with a Dial hook.
func dialIn(l *natlab.Lab, host string) func(ctx context.Context, network, address string) (net.Conn, error) {
	return func(ctx context.Context, network, address string) (net.Conn, error) {
		return l.DialContext(ctx, host, network, address)
	}
}

// ms2 formats d in milliseconds with two decimals: chained and local adds
// differ by fractions of a millisecond.
func ms2(d time.Duration) string { return fmt.Sprintf("%.2f", float64(d.Microseconds())/1000) }
