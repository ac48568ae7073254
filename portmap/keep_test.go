package portmap

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/portfwd/portfwd/igd/igdtest"
)

// next waits for the next event of one of the kinds, failing after d.
func next(t *testing.T, k *Keeper, d time.Duration, kinds ...EventKind) Event {
	t.Helper()
	deadline := time.After(d)
	for {
		select {
		case e, ok := <-k.Events():
			if !ok {
				t.Fatalf("events closed while waiting for %v", kinds)
			}
			for _, want := range kinds {
				if e.Kind == want {
					return e
				}
			}
			t.Logf("event %s (%s)", e.Kind, e.Reason)
		case <-deadline:
			t.Fatalf("no %v event within %v", kinds, d)
		}
	}
}

func TestKeeperUPnPRenewsRecreatesAndDeletes(t *testing.T) {
	srv := igdtest.NewServer(t, igdtest.Options{Version: 2, ExternalIP: "198.51.100.7"})
	o := testOptions(t)
	o.GatewayURL = srv.Location
	k := Keep(context.Background(), KeepConfig{
		Options:         o,
		Request:         Request{Protocol: TCP, InternalPort: 8080, ExternalPort: 18080, Lease: 2 * time.Second, Description: "kept"},
		CheckInterval:   200 * time.Millisecond,
		NoAnnouncements: true,
	})
	e := next(t, k, 3*time.Second, EventMapped)
	if e.Mapping.ExternalPort != 18080 || e.Mapping.ExternalAddr.String() != "198.51.100.7" {
		t.Errorf("mapped %+v", e.Mapping)
	}
	// Renewal at half the 2 s lease.
	start := time.Now()
	next(t, k, 3*time.Second, EventRenewed)
	if d := time.Since(start); d > 1500*time.Millisecond {
		t.Errorf("renewed after %v, want about 1 s (half the lease)", d)
	}
	// The router loses its table: the next check notices and re-creates it.
	srv.SetMappings(nil)
	lost := next(t, k, 2*time.Second, EventLost)
	if lost.Reason == "" {
		t.Error("a lost event should say why")
	}
	next(t, k, 2*time.Second, EventRecreated)
	if len(srv.Mappings()) != 1 {
		t.Fatalf("router table after re-creation: %+v", srv.Mappings())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := k.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if len(srv.Mappings()) != 0 {
		t.Errorf("Close left %+v on the router", srv.Mappings())
	}
	if _, ok := k.Mapping(); ok {
		t.Error("Mapping() still reports a mapping after Close")
	}
}

func TestKeeperNATPMPRebootRecreatesWithinCheck(t *testing.T) {
	addr, h := startPMP(t)
	o := testOptions(t)
	o.NATPMPServer, o.Methods = addr, []Method{NATPMP}
	k := Keep(context.Background(), KeepConfig{
		Options:         o,
		Request:         Request{Protocol: UDP, InternalPort: 9000, Lease: time.Hour},
		CheckInterval:   time.Hour, // only the explicit Check below may notice
		NoAnnouncements: true,
	})
	next(t, k, 3*time.Second, EventMapped)
	// Simulate a reboot: the table is gone and the epoch starts again.
	h.mu.Lock()
	clear(h.maps)
	h.mu.Unlock()
	h.epoch.Store(1)
	k.Check() // what an announcement does
	next(t, k, 2*time.Second, EventLost)
	next(t, k, 2*time.Second, EventRecreated)
	h.mu.Lock()
	n := len(h.maps)
	h.mu.Unlock()
	if n != 1 {
		t.Errorf("after re-creation the router has %d mappings", n)
	}
	k.Close(context.Background())
}

func TestKeeperReportsGatewayGoneAndNeverBlocks(t *testing.T) {
	o := testOptions(t)
	o.GatewayURL = "http://127.0.0.1:9/rootDesc.xml" // nothing listens
	o.Methods = []Method{UPnP}
	k := Keep(context.Background(), KeepConfig{Options: o, Request: Request{Protocol: TCP, InternalPort: 1}, NoAnnouncements: true})
	next(t, k, 5*time.Second, EventGatewayGone)
	done := make(chan struct{})
	go func() { k.Close(context.Background()); close(done) }()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		t.Fatal("Close blocked while the gateway was unreachable")
	}
}

// fakeTimers records the durations the Keeper arms and fires them on
// demand: the renewal schedule without waiting for it.
type fakeTimers struct {
	mu    sync.Mutex
	armed []fakeTimer
}

type fakeTimer struct {
	d  time.Duration
	ch chan time.Time
}

func (f *fakeTimers) after(d time.Duration) <-chan time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	ch := make(chan time.Time, 1)
	f.armed = append(f.armed, fakeTimer{d, ch})
	return ch
}

// fire fires the earliest armed timer of duration d, and reports whether
// there was one.
func (f *fakeTimers) fire(d time.Duration) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, t := range f.armed {
		if t.d == d {
			t.ch <- time.Now()
			f.armed = append(f.armed[:i], f.armed[i+1:]...)
			return true
		}
	}
	return false
}

func (f *fakeTimers) durations() []time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	var ds []time.Duration
	for _, t := range f.armed {
		ds = append(ds, t.d)
	}
	return ds
}

// The Keeper renews at half the lease the router granted, each time, on a
// fake clock: a 2 h lease is renewed after 1 h, and the renewal arms the
// next at 1 h again.
func TestKeeperRenewsAtHalfTheGrantedLeaseFakeClock(t *testing.T) {
	srv := igdtest.NewServer(t, igdtest.Options{Version: 2, ExternalIP: "198.51.100.7"})
	o := testOptions(t)
	o.GatewayURL = srv.Location
	ft := &fakeTimers{}
	k := Keep(context.Background(), KeepConfig{
		Options:         o,
		Request:         Request{Protocol: TCP, InternalPort: 8080, ExternalPort: 18080, Lease: 2 * time.Hour},
		CheckInterval:   10 * time.Minute,
		NoAnnouncements: true,
		after:           ft.after,
	})
	defer k.Close(context.Background())
	next(t, k, 3*time.Second, EventMapped)
	waitArmed := func(d time.Duration) {
		t.Helper()
		deadline := time.Now().Add(2 * time.Second)
		for !slices.Contains(ft.durations(), d) {
			if time.Now().After(deadline) {
				t.Fatalf("no %v timer armed; armed: %v", d, ft.durations())
			}
			time.Sleep(time.Millisecond)
		}
	}
	waitArmed(time.Hour)        // renewal at half the 2 h lease
	waitArmed(10 * time.Minute) // and the periodic check
	before := len(srv.Requests())
	if !ft.fire(time.Hour) {
		t.Fatal("no renewal timer to fire")
	}
	e := next(t, k, 2*time.Second, EventRenewed)
	if e.Mapping.Lease != 2*time.Hour {
		t.Errorf("renewed lease %v, want 2h", e.Mapping.Lease)
	}
	if actions := srv.Actions()[before:]; !slices.Contains(actions, "AddPortMapping") {
		t.Errorf("renewal sent %v, want an AddPortMapping", actions)
	}
	waitArmed(time.Hour) // the next renewal, again at half the lease
	// A check that finds everything in place changes nothing and re-arms.
	ft.fire(10 * time.Minute)
	waitArmed(10 * time.Minute)
	select {
	case e := <-k.Events():
		t.Errorf("a clean check produced event %s", e.Kind)
	case <-time.After(100 * time.Millisecond):
	}
}
