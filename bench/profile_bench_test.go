package bench

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/portfwd/portfwd/internal/natlab"
)

// profilePhase is one request pattern TestLabProfileGateway measures:
// the load generator's phase with that many clients at once.
type profilePhase struct {
	phase   string
	clients int
}

func (p profilePhase) name() string {
	if p.clients > 1 {
		return fmt.Sprintf("%s-x%d", p.phase, p.clients)
	}
	return p.phase
}

// TestLabProfileGateway runs portfwd's gateway under the load generator one
// request pattern at a time, each with its own gateway and its own CPU
// profile, written to $PORTFWD_PROFILE_DIR (default /tmp/portfwd-profiles)
// as PHASE.pprof; read them with `go tool pprof -top`. scripts/bench.sh
// TestLabProfileGateway runs it.
//
// For each pattern it also prints the gateway's CPU time per pair (user +
// system, from /proc/PID/stat, over the load phase only), which on a
// shared machine varies much less than the rate. With
// PORTFWD_PROFILE_STRACE=1 each pattern runs a second time, without the
// profile and with fewer pairs, under `strace -c -f`, and the table gains
// the system calls per pair (the summaries are written beside the
// profiles as PHASE.strace). PORTFWD_PROFILE_PHASES=natpmp-pairs,soap-list
// (a comma-separated list of the patterns' names) runs only those.
func TestLabProfileGateway(t *testing.T) {
	requireBench(t)
	dir := os.Getenv("PORTFWD_PROFILE_DIR")
	if dir == "" {
		dir = "/tmp/portfwd-profiles"
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	n := 10000
	if s := os.Getenv("PORTFWD_PROFILE_N"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil {
			t.Fatal(err)
		}
	}
	withStrace := os.Getenv("PORTFWD_PROFILE_STRACE") == "1"
	loadStart := loadavg()
	phases := []profilePhase{{"natpmp-pairs", 1}, {"pcp-pairs", 1}, {"soap-pairs", 1}, {"natpmp-pairs", 8}, {"pcp-pairs", 8}, {"soap-pairs", 8}, {"soap-list", 1}}
	if only := os.Getenv("PORTFWD_PROFILE_PHASES"); only != "" {
		// A comma-separated subset by name (natpmp-pairs, pcp-pairs-x8, ...).
		var keep []profilePhase
		for _, ph := range phases {
			if slices.Contains(strings.Split(only, ","), ph.name()) {
				keep = append(keep, ph)
			}
		}
		phases = keep
	}
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "pattern\trate\tp50\tp99\tgateway CPU per pair\tsystem calls per pair")
	for _, ph := range phases {
		l := natlab.Start(t, natlab.Options{Router: natlab.RouterNone})
		prof := filepath.Join(dir, ph.name()+".pprof")
		gw, _ := startGatewayArgs(t, l, filepath.Join(l.RunDir, "gw"), "--cpu-profile", prof)
		var src []string
		if ph.clients > 1 {
			first := addLANClients(t, l, ph.clients)
			src = []string{"-clients", strconv.Itoa(ph.clients), "-sources", first.String() + "+" + strconv.Itoa(ph.clients)}
		}
		row := func(gw *natlab.Process, pairs int, runStrace bool) (phase, float64, string) {
			if ph.phase == "soap-list" {
				load(t, l, "-n", "1000", "-phases", "soap-grow")
			}
			var st *exec.Cmd
			out := filepath.Join(dir, ph.name()+".strace")
			if runStrace {
				st = exec.Command("strace", "-c", "-f", "-o", out, "-p", strconv.Itoa(gw.PID()))
				if err := st.Start(); err != nil {
					t.Fatalf("strace: %v", err)
				}
				time.Sleep(500 * time.Millisecond) // attached to every thread
			}
			before := cpuTime(t, gw.PID())
			var got phase
			if ph.phase == "soap-list" {
				for range 5 {
					got = load(t, l, "-phases", "soap-list")[0]
				}
				pairs = 5 * got.Entries
			} else {
				each := pairs / ph.clients
				pairs = each * ph.clients
				got = byName(load(t, l, append(src, "-n", strconv.Itoa(each), "-base", "20000", "-phases", ph.phase)...), ph.phase)
			}
			used := cpuTime(t, gw.PID()) - before
			calls := ""
			if st != nil {
				st.Process.Signal(syscall.SIGINT)
				st.Wait()
				calls = fmt.Sprintf("%.1f", float64(straceCalls(t, out))/float64(pairs))
			}
			return got, float64(used.Microseconds()) / float64(pairs), calls
		}
		got, perPair, _ := row(gw, n, false)
		gw.Stop()
		<-gw.Done()
		calls := "-"
		if withStrace {
			l2 := natlab.Start(t, natlab.Options{Router: natlab.RouterNone})
			gw2, _ := startGatewayArgs(t, l2, filepath.Join(l2.RunDir, "gw"))
			l = l2
			if ph.clients > 1 {
				addLANClients(t, l, ph.clients)
			}
			_, _, calls = row(gw2, min(n, 2000), true)
			gw2.Stop()
			<-gw2.Done()
		}
		unit := "pair"
		if ph.phase == "soap-list" {
			unit = "entry"
		}
		fmt.Fprintf(tw, "%s\t%.0f/s\t%.3f ms\t%.3f ms\t%.0f µs per %s\t%s\n", ph.name(), got.PerSec, got.P50ms, got.P99ms, perPair, unit, calls)
		t.Logf("%s: %s", ph.name(), prof)
	}
	tw.Flush()
	fmt.Printf("\ngateway profile (%d pairs per pattern; load average %s at the start, %s at the end)\n%s", n, loadStart, loadavg(), b.String())
}

// cpuTime is the user and system CPU time process pid has used, from
// /proc/PID/stat (in clock ticks of 10 ms).
func cpuTime(t *testing.T, pid int) time.Duration {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatalf("CPU time of %d: %v", pid, err)
	}
	// The command name (field 2) may hold spaces: count from its ')'.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		t.Fatalf("CPU time of %d: short /proc stat %q", pid, s)
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

// straceCalls is the total of the calls column of a `strace -c` summary.
func straceCalls(t *testing.T, path string) int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("strace summary: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		// The total line: "100.00 SECONDS USECS/CALL? CALLS [ERRORS] total".
		if len(fields) >= 4 && fields[len(fields)-1] == "total" {
			for _, i := range []int{3, 2} {
				if v, err := strconv.Atoi(fields[i]); err == nil && i < len(fields)-1 {
					return v
				}
			}
		}
	}
	t.Fatalf("strace summary %s has no total line", path)
	return 0
}
