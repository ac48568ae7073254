package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"

	"github.com/portfwd/portfwd/internal/natlab"
)

// TestLabBenchCarrier runs portfwd's gateway as a carrier's PCP server on
// one external address: 10,000 subscriber addresses behind the LAN host
// map 6 TCP ports each through 8 clients at once (60,000 mappings, most of
// what one address holds), then the gateway is killed with -9 and
// restarted, and must serve all of them again. It prints the add rate,
// the RSS and the time to serving.
func TestLabBenchCarrier(t *testing.T) {
	requireBench(t)
	const subscribers, each = 10000, 6
	loadStart := loadavg()
	l := natlab.Start(t, natlab.Options{Router: natlab.RouterNone})
	state := filepath.Join(l.RunDir, "gw")
	gw, _ := startGatewayArgs(t, l, state, "--memory-limit", "1GiB")
	first := addSubscribers(t, l, subscribers)
	grow := load(t, l, "-n", strconv.Itoa(subscribers*each/8), "-clients", "8", "-sources", first.String()+"+"+strconv.Itoa(subscribers),
		"-lifetime", "7200", "-phases", "pcp-grow")[0]
	rss := rssMiB(t, gw.PID())
	syscall.Kill(gw.PID(), syscall.SIGKILL)
	<-gw.Done()
	// A carrier's gateway is given memory: the default soft limit (40 MiB,
	// for home routers) would make the collector run all the time.
	extra := []string{"--memory-limit", "1GiB"}
	if dir := os.Getenv("PORTFWD_PROFILE_DIR"); dir != "" {
		// Profile the restart only: stopped once serving, started again.
		gw, _ = startGatewayArgs(t, l, state, append(extra, "--cpu-profile", filepath.Join(dir, "restart.pprof"))...)
		gw.Stop()
		<-gw.Done()
	}
	gw, restart := startGatewayArgs(t, l, state, extra...)
	got := count(t, l)
	if got != subscribers*each {
		t.Errorf("after kill -9 and restart %d mappings are listed, want %d", got, subscribers*each)
	}
	fmt.Printf("\ncarrier (load average %s at the start, %s at the end): %d PCP mappings from %d subscribers, 8 clients at once: %.0f adds/s (p50 %.2f ms, p99 %.2f ms); RSS %.1f MiB; kill -9, restart to serving: %v; %d listed after\n",
		loadStart, loadavg(), grow.N, subscribers, grow.PerSec, grow.P50ms, grow.P99ms, rss, restart.Round(1e6), got)
	_ = gw
}
