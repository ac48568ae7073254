package bench

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/portfwd/portfwd/internal/natlab"
)

// subscriberNet is where addSubscribers numbers the LAN host's extra
// addresses for many subscribers: hosts behind the LAN host, routed to it
// by the router, as a carrier's subscribers sit behind an access network.
var subscriberNet = netip.MustParsePrefix("10.78.0.0/16")

// addSubscribers gives the LAN host count more addresses in subscriberNet
// and routes them to it from the router; it returns the first.
func addSubscribers(t *testing.T, l *natlab.Lab, count int) netip.Addr {
	t.Helper()
	if count > 65000 {
		t.Fatalf("addSubscribers: %d addresses do not fit %v", count, subscriberNet)
	}
	first := subscriberNet.Addr().Next()
	addAddrs(t, l, first, count)
	if _, err := l.Run(t, natlab.HostRouter, "ip", "route", "add", subscriberNet.String(), "via", l.LANIP.String(), "dev", natlab.RouterLANIf); err != nil {
		t.Fatal(err)
	}
	return first
}

// addLANClients gives the LAN host count more addresses on the LAN itself,
// from .100 on, where miniupnpd's permission rules allow them too; it
// returns the first.
func addLANClients(t *testing.T, l *natlab.Lab, count int) netip.Addr {
	t.Helper()
	b := l.LANIP.As4()
	b[3] = 100
	first := netip.AddrFrom4(b)
	addAddrs(t, l, first, count)
	return first
}

// addAddrs adds count addresses from first to the LAN host's interface in
// one ip -batch run.
func addAddrs(t *testing.T, l *natlab.Lab, first netip.Addr, count int) {
	t.Helper()
	var b strings.Builder
	a := first
	for range count {
		fmt.Fprintf(&b, "address add %s/32 dev %s\n", a, natlab.HostIf)
		a = a.Next()
	}
	batch := filepath.Join(l.RunDir, fmt.Sprintf("addrs-%s.batch", first))
	if err := os.WriteFile(batch, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Run(t, natlab.HostLAN, "ip", "-batch", batch); err != nil {
		t.Fatal(err)
	}
}

// TestLabBenchConcurrency measures portfwd's gateway with many clients at
// once: the pair rates with 1 and 8 clients (each from its own address),
// and the NAT-PMP latency of one client, idle and while another client
// fills the table with 63,500 NAT-PMP mappings as fast as it can.
func TestLabBenchConcurrency(t *testing.T) {
	requireBench(t)
	loadStart := loadavg()
	l := natlab.Start(t, natlab.Options{Router: natlab.RouterNone})
	gw, _ := startGateway(t, l, filepath.Join(l.RunDir, "gw"))
	first := addLANClients(t, l, 9)
	eight := first.String() + "+8"
	quiet := first
	for range 8 {
		quiet = quiet.Next()
	}
	var rows [][4]string
	pairs := func(phase string, n int) {
		one := load(t, l, "-n", strconv.Itoa(n), "-sources", first.String(), "-base", "20000", "-phases", phase)[0]
		many := load(t, l, "-n", strconv.Itoa(n/4), "-clients", "8", "-sources", eight, "-base", "20000", "-phases", phase)[0]
		rows = append(rows, [4]string{phase, fmt.Sprintf("%.0f/s (p50 %.2f ms)", one.PerSec, one.P50ms),
			fmt.Sprintf("%.0f/s (p50 %.2f ms, p99 %.2f ms)", many.PerSec, many.P50ms, many.P99ms), fmt.Sprintf("%.2fx", many.PerSec/one.PerSec)})
	}
	pairs("natpmp-pairs", 2000)
	pairs("pcp-pairs", 2000)
	pairs("soap-pairs", 1000)

	// One quiet client's NAT-PMP latency, alone and beside a busy one.
	probe := func() phase {
		return load(t, l, "-n", "1000", "-sources", quiet.String(), "-base", "21000", "-phases", "natpmp-pairs")[0]
	}
	idle := probe()
	bin := natlab.GoBuild(t, "github.com/portfwd/portfwd/bench/loadgen")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	busy := l.Cmd(ctx, natlab.HostLAN, bin, "-natpmp", l.RouterLANIP.String()+":5351", "-sources", l.LANIP.String(),
		"-n", "63500", "-phases", "natpmp-grow")
	busyOut := new(strings.Builder)
	busyErr := new(strings.Builder)
	busy.Stdout, busy.Stderr = busyOut, busyErr
	if err := busy.Start(); err != nil {
		t.Fatal(err)
	}
	busyDone := make(chan error, 1)
	go func() { busyDone <- busy.Wait() }()
	time.Sleep(5 * time.Second) // the busy client's table is thousands of mappings deep
	var during []phase
	for range 3 {
		select {
		case <-busyDone:
			t.Fatalf("the busy client finished before the quiet one was measured beside it: %s%s", busyOut, busyErr)
		default:
		}
		during = append(during, probe())
	}
	if err := <-busyDone; err != nil {
		t.Fatalf("busy client: %v: %s", err, busyErr)
	}
	var worst phase
	for _, p := range during {
		if p.P50ms > worst.P50ms {
			worst = p
		}
	}
	rss := rssMiB(t, gw.PID())

	var b strings.Builder
	fmt.Fprintf(&b, "\nconcurrency: portfwd gateway (nft), 8 clients from 8 addresses vs 1 (load average %s at the start, %s at the end)\n", loadStart, loadavg())
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "phase\t1 client\t8 clients\tgrowth")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r[0], r[1], r[2], r[3])
	}
	tw.Flush()
	fmt.Fprintf(&b, "\nquiet client's NAT-PMP pair latency: idle p50 %.2f ms p99 %.2f ms; beside a client adding 63,500 mappings (busy: %s) worst p50 %.2f ms p99 %.2f ms (%.2fx of idle p50; target <= 2x); RSS after: %.1f MiB\n",
		idle.P50ms, idle.P99ms, strings.TrimSpace(busyOut.String()), worst.P50ms, worst.P99ms, worst.P50ms/idle.P50ms, rss)
	fmt.Print(b.String())
}
