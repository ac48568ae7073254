package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/portfwd/portfwd/internal/natlab"
)

// TestLabProfileGateway runs portfwd's gateway under the load generator one
// request pattern at a time, each with its own gateway and its own CPU
// profile, written to $PORTFWD_PROFILE_DIR (default /tmp/portfwd-profiles)
// as PHASE.pprof; read them with `go tool pprof -top`. scripts/bench.sh
// TestLabProfileGateway runs it.
func TestLabProfileGateway(t *testing.T) {
	requireBench(t)
	dir := os.Getenv("PORTFWD_PROFILE_DIR")
	if dir == "" {
		dir = "/tmp/portfwd-profiles"
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	n := 3000
	if s := os.Getenv("PORTFWD_PROFILE_N"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil {
			t.Fatal(err)
		}
	}
	for _, phase := range []string{"natpmp-pairs", "pcp-pairs", "soap-pairs", "soap-list"} {
		l := natlab.Start(t, natlab.Options{Router: natlab.RouterNone})
		prof := filepath.Join(dir, phase+".pprof")
		gw, _ := startGatewayArgs(t, l, filepath.Join(l.RunDir, "gw"), "--cpu-profile", prof)
		if phase == "soap-list" {
			load(t, l, "-n", "1000", "-phases", "soap-grow")
			for range 5 {
				load(t, l, "-phases", "soap-list")
			}
		} else {
			for _, p := range load(t, l, "-n", strconv.Itoa(n), "-phases", phase) {
				fmt.Printf("%s: %.0f/s, p50 %.3f ms, p99 %.3f ms\n", p.Phase, p.PerSec, p.P50ms, p.P99ms)
			}
		}
		gw.Stop()
		<-gw.Done()
		t.Logf("%s: %s", phase, prof)
	}
}
