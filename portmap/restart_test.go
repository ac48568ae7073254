package portmap

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/portfwd/portfwd/internal/epoch"
)

// TestKeepAndWatchAgreeOnAPCPRestart: a PCP router's epoch time jumps far
// ahead of the time passed, which RFC 6887 §8.5 counts as lost state (a
// router replaced, or restarted long ago) and RFC 6886 §3.6's NAT-PMP rule
// does not. The Keeper and the watcher read it with the same component:
// both see the restart, the Keeper makes the mapping again.
func TestKeepAndWatchAgreeOnAPCPRestart(t *testing.T) {
	r := startPCPRouter(t)
	o := testOptions(t)
	o.NATPMPServer, o.Methods = r.addr, []Method{PCP}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := Watch(ctx, o, WatchOptions{PollInterval: 100 * time.Millisecond, NoAnnouncements: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); drain(ch) })
	expect(t, ch, 3*time.Second, WatchInitial)

	k := Keep(context.Background(), KeepConfig{Options: o, NoAnnouncements: true, CheckInterval: 100 * time.Millisecond,
		Request: Request{Protocol: TCP, InternalPort: 8080, ExternalPort: 18080, Lease: time.Hour}})
	defer k.Close(context.Background())
	next(t, k, EventMapped)

	r.jump(100000)
	ev := expect(t, ch, 2*time.Second, WatchRouterRestarted)
	if !strings.Contains(ev.Reason, "PCP epoch") {
		t.Errorf("watch: %q", ev.Reason)
	}
	if e := next(t, k, EventLost); !strings.Contains(e.Reason, "PCP epoch") {
		t.Errorf("keep: %q", e.Reason)
	}
	next(t, k, EventRecreated)
	if r.count() != 1 {
		t.Errorf("the router holds %d mappings", r.count())
	}
}

// TestRestartDetectorReportsOneRestartOnce: a restart shows in two clocks
// of one router (its NAT-PMP epoch and its UPnP uptime); it is reported
// once, and the clock that did not report it starts afresh.
func TestRestartDetectorReportsOneRestartOnce(t *testing.T) {
	var d restartDetector
	t0 := time.Now()
	d.observe([]clock{{epoch.NATPMP, 5000}, {epoch.Uptime, 5000}}, t0, t0)
	why := d.observe([]clock{{epoch.NATPMP, 3}}, t0.Add(10*time.Second), t0.Add(10*time.Second))
	if !strings.Contains(why, "NAT-PMP epoch went back from 5000 to 3") {
		t.Errorf("restart: %q", why)
	}
	if why := d.observe([]clock{{epoch.Uptime, 4}}, t0.Add(11*time.Second), t0.Add(11*time.Second)); why != "" {
		t.Errorf("the same restart reported again by the uptime: %q", why)
	}
	if why := d.observe([]clock{{epoch.PCP, 100}}, t0.Add(12*time.Second), t0.Add(12*time.Second)); why != "" {
		t.Errorf("a first PCP reading is a baseline: %q", why)
	}
	if why := d.observe([]clock{{epoch.PCP, 100000}}, t0.Add(13*time.Second), t0.Add(13*time.Second)); !strings.Contains(why, "PCP epoch") {
		t.Errorf("a PCP epoch far ahead: %q", why)
	}
}
