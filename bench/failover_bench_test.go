package bench

import (
	"fmt"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/portfwd/portfwd/internal/natlab"
)

// TestLabBenchFailover measures the HA step of docs/scale.md that needs no
// shared state: the gateway holding a client's PCP mapping dies (kill -9),
// a standby with an empty state directory takes its place on the same
// addresses (as VRRP would move them), starts a new epoch and announces
// it, and the client (portfwd keep) makes its mapping again. It prints how
// long the standby took to serve and how long until the mapping was back.
func TestLabBenchFailover(t *testing.T) {
	requireBench(t)
	loadStart := loadavg()
	l := natlab.Start(t, natlab.Options{Router: natlab.RouterNone})
	active, _ := startGateway(t, l, filepath.Join(l.RunDir, "active"))
	bin := natlab.GoBuild(t, "github.com/portfwd/portfwd/cmd/portfwd")
	l.Start(t, natlab.HostLAN, bin, "keep", "8123", "--protocol", "pcp", "--natpmp", l.RouterLANIP.String(),
		"--state-dir", filepath.Join(l.RunDir, "client"), "--lease", "1h")
	waitCount := func(want int, limit time.Duration) (time.Duration, bool) {
		start := time.Now()
		for time.Since(start) < limit {
			if ps, err := tryLoad(t, l, "-phases", "soap-list"); err == nil && len(ps) == 1 && ps[0].Entries == want {
				return time.Since(start), true
			}
			time.Sleep(50 * time.Millisecond)
		}
		return time.Since(start), false
	}
	if _, ok := waitCount(1, 30*time.Second); !ok {
		t.Fatal("portfwd keep's mapping never showed up on the active gateway")
	}
	syscall.Kill(active.PID(), syscall.SIGKILL)
	<-active.Done()
	start := time.Now()
	_, serving := startGateway(t, l, filepath.Join(l.RunDir, "standby"))
	back, ok := waitCount(1, 90*time.Second)
	total := time.Since(start)
	if !ok {
		t.Fatalf("the client's mapping was not back on the standby %v after it started", total.Round(time.Millisecond))
	}
	fmt.Printf("\nfailover (load average %s at the start, %s at the end): standby serving %v after its start; the client's PCP mapping back %v after that (%v in all)\n",
		loadStart, loadavg(), serving.Round(time.Millisecond), back.Round(time.Millisecond), total.Round(time.Millisecond))
}
