package bench

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/portfwd/portfwd/internal/natlab"
)

// runs is the number of timed runs per row; PORTFWD_BENCH_RUNS overrides it.
func runs() int {
	if n, err := strconv.Atoi(os.Getenv("PORTFWD_BENCH_RUNS")); err == nil && n > 0 && n <= 1000 {
		return n
	}
	return 21
}

func requireBench(t *testing.T) {
	if os.Getenv("PORTFWD_BENCH") != "1" {
		t.Skip("lab benchmark: run scripts/bench.sh (sets PORTFWD_BENCH=1)")
	}
}

// timed runs a command in the lab's LAN namespace and returns its wall time,
// process start-up (and `ip netns exec`) included, as for every row alike.
func timed(t *testing.T, l *natlab.Lab, name string, args ...string) time.Duration {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := l.Cmd(ctx, natlab.HostLAN, name, args...)
	cmd.Env = l.Env()
	start := time.Now()
	out, err := cmd.CombinedOutput()
	d := time.Since(start)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return d
}

// untimed runs a clean-up command; failures are fatal too.
func untimed(t *testing.T, l *natlab.Lab, name string, args ...string) {
	t.Helper()
	timed(t, l, name, args...)
}

type row struct {
	name  string
	times []time.Duration
}

func (r row) median() time.Duration {
	s := slices.Clone(r.times)
	slices.Sort(s)
	return s[len(s)/2]
}

func (r row) pct(p float64) time.Duration {
	s := slices.Clone(r.times)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d.Microseconds())/1000) }

func printTable(t *testing.T, title string, rows []row, base int) {
	var b strings.Builder
	fmt.Fprintf(&b, "\n%s (%d runs each)\n", title, len(rows[0].times))
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "command\tmedian ms\tp90 ms\tmin ms\tvs row 1\t")
	for _, r := range rows {
		ratio := float64(r.median()) / float64(rows[base].median())
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%.1fx\t\n", r.name, ms(r.median()), ms(r.pct(0.9)), ms(r.pct(0)), ratio)
	}
	tw.Flush()
	// Printed, not logged: the table is the benchmark's output.
	fmt.Print(b.String())
}

// TestLabBenchDiscoverAdd times "discover the gateway + add one mapping",
// each tool from a fresh process on the LAN host against miniupnpd:
// portfwd (cold: no remembered gateway; warm: the cached description URL
// races SSDP), portfwd over NAT-PMP, upnpc -a with SSDP discovery, and
// natpmpc -a.
func TestLabBenchDiscoverAdd(t *testing.T) {
	requireBench(t)
	natlab.Require(t, "upnpc", "natpmpc")
	l := natlab.Start(t, natlab.Options{MiniupnpdConf: func(c *natlab.Conf) {}})
	bin := natlab.GoBuild(t, "github.com/portfwd/portfwd/cmd/portfwd")
	lan := l.LANIP.String()
	n := runs()
	rows := []row{
		{name: "portfwd add (auto, cold: SSDP)"},
		{name: "portfwd add (auto, warm cache)"},
		{name: "portfwd add --protocol natpmp"},
		{name: "upnpc -i -a (SSDP discovery)"},
		{name: "natpmpc -a"},
	}
	port := func(i int) string { return strconv.Itoa(20000 + i) }
	untimed(t, l, bin, "ip") // fills the cache for the warm row
	for i := range n {
		p := port(i)
		rows[0].times = append(rows[0].times, timed(t, l, bin, "add", "8080", "--external", p, "--no-cache"))
		untimed(t, l, bin, "delete", p+"/tcp")
		rows[1].times = append(rows[1].times, timed(t, l, bin, "add", "8080", "--external", p))
		untimed(t, l, bin, "delete", p+"/tcp")
		rows[2].times = append(rows[2].times, timed(t, l, bin, "add", "8080", "--external", p, "--protocol", "natpmp"))
		untimed(t, l, bin, "delete", p+"/tcp", "--protocol", "natpmp")
		rows[3].times = append(rows[3].times, timed(t, l, "upnpc", "-i", "-a", lan, "8080", p, "TCP"))
		untimed(t, l, bin, "delete", p+"/tcp")
		rows[4].times = append(rows[4].times, timed(t, l, "natpmpc", "-g", l.RouterLANIP.String(), "-a", p, "8080", "tcp", "3600"))
		untimed(t, l, "natpmpc", "-g", l.RouterLANIP.String(), "-a", p, "8080", "tcp", "0")
	}
	printTable(t, "discover + add one mapping, against miniupnpd", rows, 0)
	if _, err := exec.LookPath("upnpc"); err == nil && rows[0].median() > 0 {
		fmt.Printf("upnpc / portfwd (cold): %.0fx   upnpc / portfwd (warm): %.0fx\n",
			float64(rows[3].median())/float64(rows[0].median()), float64(rows[3].median())/float64(rows[1].median()))
	}
}

// TestLabBenchKeepReachable times "start keeping a port open" to "a WAN
// host's connection reaches the LAN server": portfwd keep (a background
// process, as a user runs it) against upnpc -a, both against miniupnpd.
func TestLabBenchKeepReachable(t *testing.T) {
	requireBench(t)
	natlab.Require(t, "upnpc")
	l := natlab.Start(t, natlab.Options{})
	bin := natlab.GoBuild(t, "github.com/portfwd/portfwd/cmd/portfwd")
	l.ServeTCP(t, natlab.HostLAN, netip.AddrPortFrom(l.LANIP, 8080), "lan")
	untimed(t, l, bin, "ip") // warm the discovery cache, as a second run would have it
	reachable := func(port uint16, start time.Time) time.Duration {
		for time.Since(start) < 10*time.Second {
			if _, err := l.DialTCP(t, natlab.HostWAN, netip.AddrPortFrom(l.RouterWANIP, port), 50*time.Millisecond); err == nil {
				return time.Since(start)
			}
			time.Sleep(2 * time.Millisecond)
		}
		t.Fatalf("port %d never became reachable", port)
		return 0
	}
	n := runs()
	rows := []row{{name: "portfwd keep (warm cache)"}, {name: "portfwd keep --no-cache"}, {name: "upnpc -i -a (SSDP discovery)"}}
	for i := range n {
		port := uint16(21000 + i)
		for j, extra := range [][]string{nil, {"--no-cache"}} {
			start := time.Now()
			p := l.Start(t, natlab.HostLAN, bin, append([]string{"keep", "8080", "--external", strconv.Itoa(int(port))}, extra...)...)
			rows[j].times = append(rows[j].times, reachable(port, start))
			p.Stop() // deletes the mapping on its way out
		}
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		cmd := l.Cmd(ctx, natlab.HostLAN, "upnpc", "-i", "-a", l.LANIP.String(), "8080", strconv.Itoa(int(port)), "TCP")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		rows[2].times = append(rows[2].times, reachable(port, start))
		cmd.Wait()
		cancel()
		untimed(t, l, bin, "delete", strconv.Itoa(int(port))+"/tcp")
	}
	printTable(t, "start keeping a port open -> reachable from the WAN host, against miniupnpd", rows, 0)
}
