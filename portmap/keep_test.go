package portmap

import (
	"context"
	"errors"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/portfwd/portfwd/igd"
	"github.com/portfwd/portfwd/igd/igdtest"
	"github.com/portfwd/portfwd/natpmp"
)

// The Keeper's timing is tested under testing/synctest: time is virtual
// and advances only when every goroutine of the test waits, so "renewed at
// half the lease" is checked exactly, and backoffs take no real time. The
// fake router is reached in memory (handlerTransport), which synctest
// needs: a client blocked on a socket would hold the clock still.

// next returns the next event of one of the kinds, failing on the way at
// an event of a kind in fatal, or when the events end.
func next(t *testing.T, k *Keeper, kinds ...EventKind) Event {
	t.Helper()
	for e := range k.Events() {
		if slices.Contains(kinds, e.Kind) {
			return e
		}
		t.Logf("event %s (%s)", e.Kind, e.Reason)
		if e.Kind == EventError {
			t.Fatalf("the keeper gave up while waiting for %v: %s", kinds, e.Reason)
		}
	}
	t.Fatalf("events closed while waiting for %v", kinds)
	return Event{}
}

// portmapGoroutines returns the stacks of the goroutines running this
// package's code, other than tests.
func portmapGoroutines() []string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "portfwd/portmap.") && !strings.Contains(g, "portfwd/portmap.Test") {
			out = append(out, g)
		}
	}
	return out
}

// inMemory is Options for srv reached without a socket, under dir.
func inMemory(srv *igdtest.Server, dir string) Options {
	return Options{NoDefaultGateway: true, NoMulticast: true, StateDir: dir, RequestTimeout: 2 * time.Second,
		GatewayURL: srv.Location, HTTPClient: &http.Client{Transport: handlerTransport{srv.Handler()}}}
}

func TestKeeperUPnPRenewsAtHalfTheLeaseRecreatesAndDeletes(t *testing.T) {
	srv := igdtest.NewServer(t, igdtest.Options{Version: 2, ExternalIP: "198.51.100.7"})
	dir := t.TempDir()
	synctest.Test(t, func(t *testing.T) {
		k := Keep(context.Background(), KeepConfig{
			Options:         inMemory(srv, dir),
			Request:         Request{Protocol: TCP, InternalPort: 8080, ExternalPort: 18080, Lease: 2 * time.Second, Description: "kept"},
			CheckInterval:   300 * time.Millisecond,
			NoAnnouncements: true,
		})
		e := next(t, k, EventMapped)
		mapped := time.Now()
		if e.Mapping.ExternalPort != 18080 || e.Mapping.ExternalAddr.String() != "198.51.100.7" || !e.Mapping.ReadBack {
			t.Errorf("mapped %+v", e.Mapping)
		}
		// Renewed at half the 2 s lease granted, to the nanosecond of the
		// virtual clock, and again a second later.
		next(t, k, EventRenewed)
		if d := time.Since(mapped); d != time.Second {
			t.Errorf("renewed after %v, want 1s (half the lease)", d)
		}
		next(t, k, EventRenewed)
		if d := time.Since(mapped); d != 2*time.Second {
			t.Errorf("second renewal after %v, want 2s", d)
		}
		// The router loses its table: the next check (300 ms) notices.
		srv.SetMappings(nil)
		lostAt := time.Now()
		lost := next(t, k, EventLost)
		if lost.Reason == "" || time.Since(lostAt) > 300*time.Millisecond {
			t.Errorf("lost %v after the loss: %q", time.Since(lostAt), lost.Reason)
		}
		next(t, k, EventRecreated)
		if got := srv.Mappings(); len(got) != 1 || got[0].ExternalPort != 18080 {
			t.Fatalf("router table after re-creation: %+v", got)
		}
		if err := k.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
		if len(srv.Mappings()) != 0 {
			t.Errorf("Close left %+v on the router", srv.Mappings())
		}
		if _, ok := k.Mapping(); ok {
			t.Error("Mapping() still reports a mapping after Close")
		}
		// Close twice: no panic, the same result.
		if err := k.Close(context.Background()); err != nil {
			t.Errorf("second Close: %v", err)
		}
		// Every goroutine the Keeper started is gone when Close returns.
		select {
		case <-k.Done():
		default:
			t.Error("Close returned before the Keeper's loop ended")
		}
		if left := portmapGoroutines(); len(left) > 0 {
			t.Errorf("goroutines of the Keeper left after Close:\n%s", strings.Join(left, "\n\n"))
		}
		if recs, _ := Remembered(dir); len(recs) != 0 {
			t.Errorf("records left after Close: %+v", recs)
		}
	})
}

// TestKeeperRenewsTheGrantedPortNoLeak: the port asked for is held by
// another host and the request allows any: the router grants another.
// Renewals ask for that one, never the original request again, so the
// router's table holds one mapping of ours however many renewals pass.
func TestKeeperRenewsTheGrantedPortNoLeak(t *testing.T) {
	srv := igdtest.NewServer(t, igdtest.Options{Version: 2, Mappings: []igd.PortMapping{
		{ExternalPort: 18080, Protocol: "TCP", InternalPort: 80, InternalClient: "192.168.1.7", Enabled: true, Description: "nas"}}})
	dir := t.TempDir()
	synctest.Test(t, func(t *testing.T) {
		k := Keep(context.Background(), KeepConfig{Options: inMemory(srv, dir), NoAnnouncements: true, CheckInterval: time.Hour,
			Request: Request{Protocol: TCP, InternalPort: 8080, ExternalPort: 18080, Lease: 10 * time.Second, Any: true}})
		defer k.Close(context.Background())
		m := next(t, k, EventMapped).Mapping
		if m.ExternalPort == 18080 {
			t.Fatalf("mapped %+v over the other host's port", m)
		}
		before := len(srv.Requests())
		for range 6 {
			if e := next(t, k, EventRenewed); e.Mapping.ExternalPort != m.ExternalPort {
				t.Fatalf("renewed %+v, want port %d", e.Mapping, m.ExternalPort)
			}
		}
		for _, r := range srv.Requests()[before:] {
			if strings.HasPrefix(r.Action, "Add") && (r.Action != "AddPortMapping" || r.Args.Value("NewExternalPort") != strconv.Itoa(int(m.ExternalPort))) {
				t.Errorf("a renewal sent %s for port %s, want AddPortMapping for %d", r.Action, r.Args.Value("NewExternalPort"), m.ExternalPort)
			}
		}
		if got := srv.Mappings(); len(got) != 2 {
			t.Errorf("after 6 renewals the router holds %d mappings, want 2 (the other host's and ours): %+v", len(got), got)
		}
	})
}

// TestKeeperRenewalFallsBackToAnyOnlyOnRefusal: someone else takes the
// granted port while the router lost ours; with Any, the Keeper asks for
// another port, and says so.
func TestKeeperRenewalFallsBackToAnyOnlyOnRefusal(t *testing.T) {
	srv := igdtest.NewServer(t, igdtest.Options{Version: 2})
	dir := t.TempDir()
	synctest.Test(t, func(t *testing.T) {
		k := Keep(context.Background(), KeepConfig{Options: inMemory(srv, dir), NoAnnouncements: true, CheckInterval: time.Hour,
			Request: Request{Protocol: TCP, InternalPort: 8080, ExternalPort: 18080, Lease: 10 * time.Second, Any: true}})
		defer k.Close(context.Background())
		if m := next(t, k, EventMapped).Mapping; m.ExternalPort != 18080 {
			t.Fatalf("mapped %+v", m)
		}
		srv.SetMappings([]igd.PortMapping{{ExternalPort: 18080, Protocol: "TCP", InternalPort: 80, InternalClient: "192.168.1.7", Enabled: true}})
		next(t, k, EventLost)
		e := next(t, k, EventRecreated)
		if e.Mapping.ExternalPort == 18080 || !strings.Contains(e.Reason, "18080") {
			t.Errorf("recreated %+v (%s)", e.Mapping, e.Reason)
		}
		if got := srv.Mappings(); len(got) != 2 || got[0].InternalClient != "192.168.1.7" {
			t.Errorf("router table %+v: the other host's mapping must stay", got)
		}
	})
}

// TestKeeperGivesUpOnPermanentRefusals: 606, and a port this host maps to
// another internal port (which must not be taken over), end the Keeper
// with an error event at once; nothing is retried.
func TestKeeperGivesUpOnPermanentRefusals(t *testing.T) {
	tests := []struct {
		name string
		opts igdtest.Options
		want func(error) bool
	}{
		{"606", igdtest.Options{Faults: []igdtest.Fault{{Action: "AddPortMapping", Code: 606}}}, func(err error) bool {
			var re *RefusedError
			return errors.As(err, &re) && re.Code == 606 && !re.Transient()
		}},
		{"own mapping to another internal port", igdtest.Options{Mappings: []igd.PortMapping{
			{ExternalPort: 18080, Protocol: "TCP", InternalPort: 8081, InternalClient: "127.0.0.1", Enabled: true, Description: "other"}}},
			func(err error) bool {
				var ee *ExistsError
				return errors.As(err, &ee) && ee.Existing.InternalPort == 8081
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := igdtest.NewServer(t, tt.opts)
			dir := t.TempDir()
			synctest.Test(t, func(t *testing.T) {
				k := Keep(context.Background(), KeepConfig{Options: inMemory(srv, dir), NoAnnouncements: true,
					Request: Request{Protocol: TCP, InternalPort: 8080, ExternalPort: 18080, Description: "kept"}})
				var e Event
				for e = range k.Events() {
					if e.Kind == EventError {
						break
					}
				}
				<-k.Done()
				if e.Kind != EventError || !tt.want(k.Err()) {
					t.Fatalf("event %+v, Err %v", e, k.Err())
				}
				k.Close(context.Background())
				if n := strings.Count(strings.Join(srv.Actions(), " "), "AddPortMapping"); n > 1 {
					t.Errorf("%d AddPortMapping sent: a permanent refusal was retried", n)
				}
				if got := srv.Mappings(); len(got) != len(tt.opts.Mappings) || (len(got) > 0 && got[0].Description != "other") {
					t.Errorf("router table %+v", got)
				}
			})
		})
	}
}

// TestKeeperRetriesTransientRefusals: 501 (the WAN link down) twice, then
// the mapping is made; the retries wait with backoff.
func TestKeeperRetriesTransientRefusals(t *testing.T) {
	srv := igdtest.NewServer(t, igdtest.Options{Faults: []igdtest.Fault{{Action: "AddPortMapping", Code: 501, Times: 2}}})
	dir := t.TempDir()
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		k := Keep(context.Background(), KeepConfig{Options: inMemory(srv, dir), NoAnnouncements: true,
			Request: Request{Protocol: TCP, InternalPort: 8080}})
		defer k.Close(context.Background())
		for range 2 {
			if e := next(t, k, EventFailed, EventMapped); e.Kind != EventFailed {
				t.Fatalf("got %s, want failed", e.Kind)
			}
		}
		next(t, k, EventMapped)
		if d := time.Since(start); d != backoff(0)+backoff(1) {
			t.Errorf("mapped after %v, want the two backoffs %v", d, backoff(0)+backoff(1))
		}
	})
}

// TestKeeperReleaseLeavesTheMapping: Release stops the Keeper without
// deleting; the record stays for a later delete, no longer a Keeper's.
func TestKeeperReleaseLeavesTheMapping(t *testing.T) {
	srv := igdtest.NewServer(t, igdtest.Options{})
	dir := t.TempDir()
	synctest.Test(t, func(t *testing.T) {
		k := Keep(context.Background(), KeepConfig{Options: inMemory(srv, dir), NoAnnouncements: true,
			Request: Request{Protocol: UDP, InternalPort: 9000}})
		next(t, k, EventMapped)
		m, ok := k.Release()
		if !ok || m.ExternalPort != 9000 {
			t.Fatalf("Release = %+v, %v", m, ok)
		}
		if _, open := <-k.Events(); open {
			t.Error("events still open after Release")
		}
		if len(srv.Mappings()) != 1 {
			t.Errorf("Release deleted the mapping: %+v", srv.Mappings())
		}
		if err := k.Close(context.Background()); err != nil || len(srv.Mappings()) != 1 {
			t.Errorf("Close after Release: %v, table %+v", err, srv.Mappings())
		}
		recs, _ := Remembered(dir)
		for _, r := range recs {
			if r.Keeper != nil {
				t.Errorf("record still held by a keeper after Release: %+v", r)
			}
		}
	})
}

// deadProcess is a process that ran and ended: a crashed keeper.
func deadProcess(t *testing.T) *Process {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	return &Process{PID: cmd.Process.Pid, Start: "gone"}
}

// TestKeeperDeletesWhatACrashedKeeperLeft: a record says a keeper whose
// process is gone held 18099; the next Keeper on the gateway deletes that
// mapping, and the record, and says so. A live keeper's mapping is left
// alone, and Add refuses to take it.
func TestKeeperDeletesWhatACrashedKeeperLeft(t *testing.T) {
	srv := igdtest.NewServer(t, igdtest.Options{Mappings: []igd.PortMapping{
		{ExternalPort: 18099, Protocol: "TCP", InternalPort: 8099, InternalClient: "127.0.0.1", Enabled: true, Description: "crashed"},
		{ExternalPort: 18098, Protocol: "TCP", InternalPort: 8098, InternalClient: "127.0.0.1", Enabled: true, Description: "alive"}}})
	dir := t.TempDir()
	st := newStore(dir, nil)
	live := &Process{PID: os.Getppid()}
	for _, r := range []Record{
		{Method: UPnP, Gateway: srv.ControlURL, Protocol: TCP, ExternalPort: 18099, InternalClient: "127.0.0.1", InternalPort: 8099, Keeper: deadProcess(t)},
		{Method: UPnP, Gateway: srv.ControlURL, Protocol: TCP, ExternalPort: 18098, InternalClient: "127.0.0.1", InternalPort: 8098, Keeper: live},
	} {
		if _, err := st.put(r); err != nil {
			t.Fatal(err)
		}
	}
	synctest.Test(t, func(t *testing.T) {
		k := Keep(context.Background(), KeepConfig{Options: inMemory(srv, dir), NoAnnouncements: true,
			Request: Request{Protocol: TCP, InternalPort: 8080, ExternalPort: 18080}})
		defer k.Close(context.Background())
		e := next(t, k, EventLeftoverDeleted)
		if e.Mapping.ExternalPort != 18099 || !strings.Contains(e.Reason, "ended without deleting it") {
			t.Errorf("leftover event %+v", e)
		}
		next(t, k, EventMapped)
		got := srv.Mappings()
		if len(got) != 2 || slices.ContainsFunc(got, func(m igd.PortMapping) bool { return m.ExternalPort == 18099 }) {
			t.Errorf("router table %+v: want the live keeper's 18098 and ours", got)
		}
		recs, _ := Remembered(dir)
		if slices.ContainsFunc(recs, func(r Record) bool { return r.ExternalPort == 18099 }) {
			t.Errorf("the crashed keeper's record is still there: %+v", recs)
		}
		// Add will not take the live keeper's port, even for the very
		// mapping it keeps.
		g := discoverOne(t, inMemory(srv, dir))
		_, err := g.Add(context.Background(), Request{Protocol: TCP, InternalPort: 8098, ExternalPort: 18098, Description: "alive"})
		if ee := refusal[*ExistsError](t, err); ee.KeptBy == nil || ee.KeptBy.PID != live.PID {
			t.Errorf("Add over a kept port: %v", err)
		}
	})
}

// TestKeeperNATPMPRebootRecreates: over NAT-PMP the Keeper cannot read the
// mapping back; the router's epoch going back says it is gone.
func TestKeeperNATPMPRebootRecreates(t *testing.T) {
	r := startPMPRouter(t)
	o := testOptions(t)
	o.NATPMPServer, o.Methods = r.addr, []Method{NATPMP}
	k := Keep(context.Background(), KeepConfig{
		Options:         o,
		Request:         Request{Protocol: UDP, InternalPort: 9000, Lease: time.Hour},
		CheckInterval:   time.Hour, // only the explicit Check below may notice
		NoAnnouncements: true,
	})
	defer k.Close(context.Background())
	next(t, k, EventMapped)
	r.restart()
	k.Check() // what an announcement does
	if e := next(t, k, EventLost); !strings.Contains(e.Reason, "NAT-PMP epoch went back") {
		t.Errorf("lost: %q", e.Reason)
	}
	next(t, k, EventRecreated)
}

// TestKeeperNATPMPCheckBringsBackADeletedMapping: NAT-PMP cannot read a
// mapping back, so each check asks for it again: one deleted behind the
// Keeper's back (the epoch does not move) is there again after it.
func TestKeeperNATPMPCheckBringsBackADeletedMapping(t *testing.T) {
	addr, h := startPMP(t)
	o := testOptions(t)
	o.NATPMPServer, o.Methods = addr, []Method{NATPMP}
	k := Keep(context.Background(), KeepConfig{Options: o, CheckInterval: time.Hour, NoAnnouncements: true,
		Request: Request{Protocol: UDP, InternalPort: 9000, Lease: time.Hour}})
	defer k.Close(context.Background())
	next(t, k, EventMapped)
	h.mu.Lock()
	clear(h.maps)
	h.mu.Unlock()
	k.Check()
	if e := next(t, k, EventRenewed); e.Mapping.ExternalPort != 9000 {
		t.Errorf("renewed %+v", e.Mapping)
	}
	h.mu.Lock()
	ext, ok := h.maps[[2]uint16{uint16(natpmp.UDP), 9000}]
	h.mu.Unlock()
	if !ok || ext != 9000 {
		t.Errorf("the router's table after the check: %v", ok)
	}
}

// TestKeeperReportsGatewayGoneAndCloseNeverBlocks: nothing answers; the
// Keeper says so and keeps looking, and Close returns at once.
func TestKeeperReportsGatewayGoneAndCloseNeverBlocks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := Options{NoDefaultGateway: true, NoMulticast: true, NoState: true, Methods: []Method{UPnP}, GatewayURL: "http://192.0.2.1/rootDesc.xml",
			HTTPClient: &http.Client{Transport: handlerTransport{http.NotFoundHandler()}}}
		k := Keep(context.Background(), KeepConfig{Options: o, Request: Request{Protocol: TCP, InternalPort: 1}, NoAnnouncements: true})
		next(t, k, EventGatewayGone)
		k.Close(context.Background())
		if _, open := <-k.Events(); open {
			t.Error("events still open after Close")
		}
	})
}

// foreignGateway is a Gateway from outside portmap: an in-memory table
// reached only through the Gateway interface.
type foreignGateway struct {
	mu    sync.Mutex
	table map[Key]Mapping
	adds  int
}

func (f *foreignGateway) Method() Method        { return "foreign" }
func (f *foreignGateway) Addr() string          { return "foreign:1" }
func (f *foreignGateway) LocalAddr() netip.Addr { return netip.MustParseAddr("192.168.9.2") }
func (f *foreignGateway) ExternalIP(context.Context) (netip.Addr, error) {
	return netip.MustParseAddr("198.51.100.99"), nil
}
func (f *foreignGateway) Info(context.Context) (Info, error) { return Info{Method: "foreign"}, nil }
func (f *foreignGateway) List(context.Context, func(int)) ([]Mapping, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []Mapping
	for _, m := range f.table {
		out = append(out, m)
	}
	return out, nil
}
func (f *foreignGateway) Add(_ context.Context, r Request) (Mapping, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.adds++
	m := Mapping{Protocol: r.Protocol, ExternalPort: cmpOr16(r.ExternalPort, r.InternalPort), InternalClient: "192.168.9.2",
		InternalPort: r.InternalPort, Enabled: true, Lease: r.Lease, Method: "foreign"}
	f.table[m.Key()] = m
	return m, nil
}
func (f *foreignGateway) Edit(context.Context, Key, Change) (Mapping, error) {
	return Mapping{}, ErrNotSupported
}
func (f *foreignGateway) Delete(_ context.Context, k Key) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.table, k)
	return nil
}
func (f *foreignGateway) DeleteRange(context.Context, Protocol, uint16, uint16) ([]Mapping, error) {
	return nil, ErrNotSupported
}

func cmpOr16(a, b uint16) uint16 {
	if a != 0 {
		return a
	}
	return b
}

// TestKeeperAndWatchOnAForeignGateway: a Gateway from outside portmap is
// kept and watched through the Gateway interface alone: renewals, a loss
// seen by listing, re-creation; and the watch says what it cannot do.
func TestKeeperAndWatchOnAForeignGateway(t *testing.T) {
	f := &foreignGateway{table: map[Key]Mapping{}}
	dir := t.TempDir()
	synctest.Test(t, func(t *testing.T) {
		o := Options{NoDefaultGateway: true, NoMulticast: true, StateDir: dir}
		k := Keep(context.Background(), KeepConfig{Options: o, Gateway: f, NoAnnouncements: true, CheckInterval: time.Second,
			Request: Request{Protocol: TCP, InternalPort: 8080, Lease: 4 * time.Second}})
		defer k.Close(context.Background())
		next(t, k, EventMapped)
		next(t, k, EventRenewed)
		f.mu.Lock()
		clear(f.table)
		f.mu.Unlock()
		next(t, k, EventLost)
		next(t, k, EventRecreated)

		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		ch, err := Watch(ctx, o, WatchOptions{Gateway: f, NoAnnouncements: true, PollInterval: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		ev := <-ch
		if ev.Kind != WatchInitial || ev.Count != 1 || !strings.Contains(ev.Reason, "not one of portmap's gateways") {
			t.Errorf("initial watch event %+v", ev)
		}
		cancel()
		for range ch {
		}
	})
}

// slowAddGateway is a foreignGateway whose Add reaches the router at once
// but answers only when released: a Keeper stopped meanwhile must still
// learn of the mapping, or it leaves it behind.
type slowAddGateway struct {
	*foreignGateway
	started, release chan struct{}
}

func (g *slowAddGateway) Add(ctx context.Context, r Request) (Mapping, error) {
	m, err := g.foreignGateway.Add(ctx, r)
	close(g.started)
	<-g.release
	return m, err
}

// TestKeeperCloseDuringAddLeavesNothing: Close (Ctrl-C, SIGTERM) arrives
// while the request that makes the mapping is in flight. The request is
// seen to its end and the mapping it made is deleted, not leaked.
func TestKeeperCloseDuringAddLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	synctest.Test(t, func(t *testing.T) {
		g := &slowAddGateway{foreignGateway: &foreignGateway{table: map[Key]Mapping{}},
			started: make(chan struct{}), release: make(chan struct{})}
		o := Options{NoDefaultGateway: true, NoMulticast: true, StateDir: dir}
		k := Keep(context.Background(), KeepConfig{Options: o, Gateway: g, NoAnnouncements: true,
			Request: Request{Protocol: TCP, InternalPort: 8080, ExternalPort: 18080, Lease: time.Hour}})
		<-g.started
		closed := make(chan error, 1)
		go func() { closed <- k.Close(context.Background()) }()
		synctest.Wait() // Close has stopped the Keeper and waits for the request
		close(g.release)
		if err := <-closed; err != nil {
			t.Fatalf("Close: %v", err)
		}
		var kinds []EventKind
		for e := range k.Events() {
			kinds = append(kinds, e.Kind)
		}
		if !slices.Contains(kinds, EventDeleted) {
			t.Errorf("events %v: want the mapping made during Close deleted", kinds)
		}
		g.mu.Lock()
		defer g.mu.Unlock()
		if len(g.table) != 0 {
			t.Errorf("the router still holds %v after Close", g.table)
		}
	})
}
