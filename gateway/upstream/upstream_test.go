package upstream

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/portfwd/portfwd/gateway"
	"github.com/portfwd/portfwd/natpmp"
	"github.com/portfwd/portfwd/pcp"
	"github.com/portfwd/portfwd/upnp"
)

// fakeMethod is a router above in memory: it holds mappings by protocol
// and internal port, can be made to fail, and forgets everything on
// reboot.
type fakeMethod struct {
	mu       sync.Mutex
	down     bool
	noUnmap  bool                     // refuses deletes only (no answer)
	noReply  bool                     // makes mappings but its answers are lost
	byPort   bool                     // deletes by internal port whatever the nonce (NAT-PMP, UPnP)
	nm       string                   // its protocol's name; "" is "pcp"
	held     map[gateway.Key][12]byte // internal port -> nonce
	maps     int
	unmapped [][12]byte
}

func newFake() *fakeMethod { return &fakeMethod{held: map[gateway.Key][12]byte{}} }

var public = netip.MustParseAddr("203.0.113.1")

func (f *fakeMethod) name() string {
	if f.nm != "" {
		return f.nm
	}
	return "pcp"
}
func (f *fakeMethod) server() string { return "100.64.0.1:5351" }
func (f *fakeMethod) probe(context.Context) (netip.Addr, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return netip.Addr{}, false, upErr(f, gateway.ErrUpstreamDown, errors.New("port closed"))
	}
	return public, false, nil
}
func (f *fakeMethod) mapHalf(_ context.Context, r halfRequest) (halfGrant, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return halfGrant{}, upErr(f, gateway.ErrUpstreamDown, errors.New("port closed"))
	}
	f.maps++
	f.held[gateway.Key{Protocol: r.proto, ExternalPort: r.internalPort}] = r.nonce
	if f.noReply {
		return halfGrant{}, upErr(f, gateway.ErrUpstreamDown, context.DeadlineExceeded)
	}
	return halfGrant{public: netip.AddrPortFrom(public, r.want), lifetime: r.lifetime}, nil
}
func (f *fakeMethod) unmap(_ context.Context, proto gateway.Protocol, internalPort, _ uint16, nonce [12]byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down || f.noUnmap {
		return upErr(f, gateway.ErrUpstreamDown, errors.New("no answer"))
	}
	k := gateway.Key{Protocol: proto, ExternalPort: internalPort}
	if n, ok := f.held[k]; ok && n != nonce && !f.byPort {
		return upErr(f, gateway.ErrUpstreamRefused, errors.New("NOT_AUTHORIZED: nonce mismatch"))
	}
	delete(f.held, k)
	f.unmapped = append(f.unmapped, nonce)
	return nil
}
func (f *fakeMethod) set(fn func(f *fakeMethod)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

func (f *fakeMethod) count() (int, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.maps, len(f.held)
}

// start runs a Manager over fake on a Core with a FileStore in dir.
func start(t *testing.T, fake *fakeMethod, dir string) (*Manager, *gateway.Core, *[]netip.Addr, func()) {
	t.Helper()
	return startWith(t, func() []method { return []method{fake} }, 0, dir)
}

// startWith is start with the methods the router above answers in, asked
// anew at each discovery, and how long a router above that stopped
// answering is asked in its old protocol first (0: the default).
func startWith(t *testing.T, methods func() []method, stick time.Duration, dir string) (*Manager, *gateway.Core, *[]netip.Addr, func()) {
	t.Helper()
	var mu sync.Mutex
	var told []netip.Addr
	u := New(Config{Mode: ModeAuto, Interface: "wan0", Gateway: netip.MustParseAddr("100.64.0.1"),
		LocalAddr: func() netip.Addr { return netip.MustParseAddr("100.64.0.2") },
		OnPublic:  func(a netip.Addr) { mu.Lock(); told = append(told, a); mu.Unlock() }})
	u.methodsFor = func(netip.Addr) []method { return methods() }
	if stick > 0 {
		u.stickFor = stick
	}
	st, err := gateway.OpenFileStore(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	c, err := gateway.New(context.Background(), gateway.Config{Backend: gateway.NewMemory(), Store: st, Upstream: u})
	if err != nil {
		t.Fatal(err)
	}
	u.Attach(c)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); u.run(ctx, false) }()
	return u, c, &told, func() {
		cancel()
		<-done
		c.Close(context.Background(), false)
		st.Close()
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("never: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

var lan = gateway.Requester{Addr: netip.MustParseAddr("10.77.0.2"), Source: gateway.SourceNATPMP}

func mapping(port uint16) gateway.Mapping {
	return gateway.Mapping{Protocol: gateway.TCP, ExternalPort: port, InternalAddr: lan.Addr, InternalPort: port,
		Enabled: true, Expires: time.Now().Add(time.Hour)}
}

func TestManagerChainsRecreatesAndGoesDown(t *testing.T) {
	fake := newFake()
	u, c, told, stop := start(t, fake, t.TempDir())
	defer stop()
	waitUntil(t, "up", func() bool { return u.Status().State == "up" })
	if u.Public() != public || len(*told) != 1 || (*told)[0] != public {
		t.Fatalf("public address %v, told %v", u.Public(), *told)
	}
	got, err := c.AddAny(context.Background(), lan, mapping(18080))
	if err != nil || got.Half().Public != netip.AddrPortFrom(public, 18080) {
		t.Fatalf("AddAny = %v (%+v), %v", got, got.Half(), err)
	}

	// The router above reboots and forgets: an announcement makes the
	// half again, with the same nonce.
	fake.mu.Lock()
	fake.held = map[gateway.Key][12]byte{}
	fake.mu.Unlock()
	u.noticeRestart("restart")
	waitUntil(t, "the half made again", func() bool { _, n := fake.count(); return n == 1 })
	if n := fake.held[got.Key()]; n != got.Upstream.Nonce {
		t.Errorf("re-made with nonce %x, want the mapping's %x", n, got.Upstream.Nonce)
	}
	// The half is counted once its re-make returns, a moment after the
	// router above has it.
	waitUntil(t, "the re-make counted as for a restart", func() bool { return u.Status().Recreated["restart"] == 1 })

	// Down: a new mapping is refused at once, the old one kept.
	fake.mu.Lock()
	fake.down = true
	fake.mu.Unlock()
	if _, err := c.AddAny(context.Background(), lan, mapping(18081)); !errors.Is(err, gateway.ErrUpstreamDown) {
		t.Fatalf("AddAny while down = %v, want ErrUpstreamDown", err)
	}
	if c.Len() != 1 || u.Status().State != "down" {
		t.Fatalf("len %d, state %q", c.Len(), u.Status().State)
	}
	// Deleting while down: local at once, upstream retried until it works.
	if err := c.Delete(context.Background(), lan, gateway.TCP, 18080, netip.Addr{}); err != nil {
		t.Fatal(err)
	}
	// Two: this one, and the refused add's half, whose request got no
	// answer (the router above may have made it).
	if u.Status().Pending != 2 {
		t.Errorf("pending deletes = %d, want 2", u.Status().Pending)
	}
	fake.mu.Lock()
	fake.down = false
	fake.mu.Unlock()
	waitUntil(t, "the delete retried", func() bool { _, n := fake.count(); return n == 0 && u.Status().Pending == 0 })
	waitUntil(t, "up again", func() bool { return u.Status().State == "up" })
}

func TestManagerDeletesUncommittedIntentsAtStart(t *testing.T) {
	dir := t.TempDir()
	// A journal with the intent of a mapping whose answer never came.
	st, err := gateway.OpenFileStore(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	m := mapping(18080)
	m.Owner, m.Source = lan.Addr, lan.Source
	m.Upstream = &gateway.UpstreamHalf{Method: "pcp", Nonce: [12]byte{7}, State: gateway.HalfPendingNew}
	if err := st.Save([]gateway.Mapping{m}, nil); err != nil {
		t.Fatal(err)
	}
	st.Close()

	fake := newFake()
	fake.held[m.Key()] = [12]byte{7} // the router above did make it
	u, c, _, stop := start(t, fake, dir)
	defer stop()
	waitUntil(t, "the orphan deleted upstream", func() bool { _, n := fake.count(); return n == 0 })
	if c.Len() != 0 {
		t.Errorf("the uncommitted intent was restored as a mapping")
	}
	if len(fake.unmapped) != 1 || fake.unmapped[0] != [12]byte{7} {
		t.Errorf("unmapped %x, want the intent's nonce", fake.unmapped)
	}
	_ = u
}

func TestNeededOnlyBehindPrivateOrCGNAT(t *testing.T) {
	for addr, want := range map[string]bool{"100.64.0.2": true, "192.168.1.2": true, "10.0.0.2": true,
		"198.51.100.7": false, "203.0.113.1": false, "8.8.8.8": false} {
		u := New(Config{LocalAddr: func() netip.Addr { return netip.MustParseAddr(addr) }})
		if got := u.needed(); got != want {
			t.Errorf("auto with external address %s: chain = %v, want %v", addr, got, want)
		}
	}
	if err := ValidMode("pcpx"); err == nil {
		t.Error("ValidMode(pcpx) = nil")
	}
	for _, m := range []string{"", "off", "auto", "pcp", "natpmp", "upnp", "http://100.64.0.1:5000/rootDesc.xml"} {
		if err := ValidMode(m); err != nil {
			t.Errorf("ValidMode(%q) = %v", m, err)
		}
	}
}

// pendingDeletes reads the journal in dir (the gateway stopped).
func pendingDeletes(t *testing.T, dir string) []gateway.UpstreamDelete {
	t.Helper()
	st, err := gateway.OpenFileStore(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ds, err := st.LoadUpstreamDeletes()
	if err != nil {
		t.Fatal(err)
	}
	return ds
}

// A delete the router above does not take is journaled: a gateway killed
// while it waits deletes the half after its restart, and the record goes.
func TestPendingUpstreamDeleteSurvivesARestart(t *testing.T) {
	dir := t.TempDir()
	fake := newFake()
	u, c, _, stop := start(t, fake, dir)
	waitUntil(t, "up", func() bool { return u.Status().State == "up" })
	got, err := c.AddAny(context.Background(), lan, mapping(18080))
	if err != nil {
		t.Fatal(err)
	}
	fake.set(func(f *fakeMethod) { f.noUnmap = true })
	if err := c.Delete(context.Background(), lan, gateway.TCP, 18080, netip.Addr{}); err != nil {
		t.Fatal(err)
	}
	if u.Status().Pending != 1 {
		t.Fatalf("pending deletes = %d, want 1", u.Status().Pending)
	}
	stop() // the pending delete is in memory only in this run: as kill -9 leaves it
	ds := pendingDeletes(t, dir)
	if len(ds) != 1 || ds[0].Mapping.Half().Nonce != got.Upstream.Nonce || ds[0].Mapping.Key() != got.Key() {
		t.Fatalf("journaled pending deletes = %+v, want the half of %v with its nonce", ds, got)
	}

	fake.set(func(f *fakeMethod) { f.noUnmap = false })
	u, c, _, stop = start(t, fake, dir)
	waitUntil(t, "the half deleted after the restart", func() bool { _, n := fake.count(); return n == 0 && u.Status().Pending == 0 })
	if len(fake.unmapped) != 1 || fake.unmapped[0] != got.Upstream.Nonce {
		t.Errorf("deleted with nonces %x, want the half's", fake.unmapped)
	}
	if c.Len() != 0 {
		t.Errorf("the deleted mapping came back: %d mappings", c.Len())
	}
	stop()
	if ds := pendingDeletes(t, dir); len(ds) != 0 {
		t.Errorf("the done delete is still journaled: %+v", ds)
	}
}

// A pending delete of a port that a client mapped again meanwhile must not
// take the new mapping's half: a router above that names mappings by
// internal port (NAT-PMP, UPnP) would delete the new one in its place.
func TestPendingUpstreamDeleteSparesAPortMappedAgain(t *testing.T) {
	fake := newFake()
	fake.byPort = true
	u, c, _, stop := start(t, fake, t.TempDir())
	defer stop()
	waitUntil(t, "up", func() bool { return u.Status().State == "up" })
	if _, err := c.AddAny(context.Background(), lan, mapping(18080)); err != nil {
		t.Fatal(err)
	}
	fake.set(func(f *fakeMethod) { f.noUnmap = true })
	if err := c.Delete(context.Background(), lan, gateway.TCP, 18080, netip.Addr{}); err != nil {
		t.Fatal(err)
	}
	again, err := c.AddAny(context.Background(), lan, mapping(18080))
	if err != nil || again.ExternalPort != 18080 {
		t.Fatalf("mapping the port again = %v, %v", again, err)
	}
	fake.set(func(f *fakeMethod) { f.noUnmap = false })
	waitUntil(t, "the pending delete settled", func() bool { return u.Status().Pending == 0 })
	if _, n := fake.count(); n != 1 {
		t.Errorf("the router above holds %d halves, want the new mapping's", n)
	}
}

// A new half whose answer never came may exist upstream: it is deleted,
// since no mapping here forwards to it.
func TestUnansweredNewHalfIsDeleted(t *testing.T) {
	fake := newFake()
	u, c, _, stop := start(t, fake, t.TempDir())
	defer stop()
	waitUntil(t, "up", func() bool { return u.Status().State == "up" })
	fake.set(func(f *fakeMethod) { f.noReply = true })
	if _, err := c.AddAny(context.Background(), lan, mapping(18080)); !errors.Is(err, gateway.ErrUpstreamDown) {
		t.Fatalf("AddAny with the answer lost = %v, want ErrUpstreamDown", err)
	}
	if _, n := fake.count(); n != 1 {
		t.Fatalf("the fake holds %d halves, want the one whose answer was lost", n)
	}
	fake.set(func(f *fakeMethod) { f.noReply = false })
	waitUntil(t, "the unanswered half deleted", func() bool { _, n := fake.count(); return n == 0 && u.Status().Pending == 0 })
	if c.Len() != 0 {
		t.Errorf("a refused add left %d mappings", c.Len())
	}
}

func TestAnsweredTellsARefusalFromNoAnswer(t *testing.T) {
	p := newFake()
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"PCP result", upErr(p, gateway.ErrUpstreamExhausted, &pcp.ResultError{Code: pcp.ResultNoResources}), true},
		{"NAT-PMP result", upErr(p, gateway.ErrUpstreamRefused, &natpmp.ResultError{Code: natpmp.NotAuthorized}), true},
		{"timeout", upErr(p, gateway.ErrUpstreamDown, context.DeadlineExceeded), false},
		{"other port, given back", upErr(p, gateway.ErrUpstreamConflict, givenBack(nil, 18080, 18081)), true},
		{"other port, giving back failed", upErr(p, gateway.ErrUpstreamConflict,
			givenBack(&pcp.ResultError{Code: pcp.ResultNetworkFailure}, 18080, 18081)), false},
	} {
		if got := answered(tc.err); got != tc.want {
			t.Errorf("%s: answered(%v) = %v, want %v", tc.name, tc.err, got, tc.want)
		}
	}
}

// A router above that speaks only UPnP has no epoch: its SSDP NOTIFY with
// another BOOTID.UPNP.ORG is what says it restarted, and every half is
// made again at once.
func TestChangedBootIDRemakesEveryHalf(t *testing.T) {
	fake := newFake()
	u, c, _, stop := start(t, fake, t.TempDir())
	defer stop()
	waitUntil(t, "up", func() bool { return u.Status().State == "up" })
	if _, err := c.AddAny(context.Background(), lan, mapping(18080)); err != nil {
		t.Fatal(err)
	}
	gw := netip.MustParseAddr("100.64.0.1")
	u.noticeBootID(1700000000, gw) // the first one seen: a check, nothing lost
	u.noticeBootID(1700000000, gw) // the periodic repeat
	fake.set(func(f *fakeMethod) { f.held = map[gateway.Key][12]byte{} })
	if n := u.Status().Recreated["restart"]; n != 0 {
		t.Fatalf("re-made %d halves on an unchanged BOOTID", n)
	}
	u.noticeBootID(1700000042, gw)
	waitUntil(t, "the half made again", func() bool { _, n := fake.count(); return n == 1 })
	// The half is counted once its re-make returns, a moment after the
	// router above has it.
	waitUntil(t, "the re-make counted as for a restart", func() bool { return u.Status().Recreated["restart"] == 1 })
}

// A router above that comes back speaking another protocol: each half made
// in the old one is deleted in it (while the router above still answers
// it) before it is made in the new one, not left to expire there.
func TestProtocolSwitchDeletesTheOldHalvesFirst(t *testing.T) {
	for _, oldAnswers := range []bool{true, false} {
		natpmpOld, pcpNew := newFake(), newFake()
		natpmpOld.nm = "natpmp"
		var mu sync.Mutex
		list := []method{natpmpOld}
		u, c, _, stop := startWith(t, func() []method { mu.Lock(); defer mu.Unlock(); return slices.Clone(list) }, time.Millisecond, t.TempDir())
		waitUntil(t, "up", func() bool { return u.Status().State == "up" })
		got, err := c.AddAny(context.Background(), lan, mapping(18080))
		if err != nil || got.Half().Method != "natpmp" {
			t.Fatalf("AddAny = %+v, %v", got.Half(), err)
		}
		natpmpOld.set(func(f *fakeMethod) { f.down = true })
		u.checkNow()
		waitUntil(t, "down", func() bool { return u.Status().State == "down" })
		mu.Lock()
		list = []method{pcpNew, natpmpOld}
		mu.Unlock()
		natpmpOld.set(func(f *fakeMethod) { f.down = !oldAnswers })
		// The half is made in the router above first, and recorded in the
		// table after: wait for the record, which comes last.
		half := func() (gateway.Mapping, error) {
			return c.Get(gateway.Requester{Source: gateway.SourceAdmin}, gateway.TCP, 18080, netip.Addr{})
		}
		waitUntil(t, "the half made in the new protocol", func() bool { back, err := half(); return err == nil && back.Half().Method == "pcp" })
		if _, n := pcpNew.count(); n != 1 {
			back, err := half()
			t.Fatalf("after the switch: %+v, %v; the new protocol holds %d halves, want 1", back.Half(), err, n)
		}
		_, n := natpmpOld.count()
		switch {
		case oldAnswers && n != 0:
			t.Errorf("the router above still answers NAT-PMP, but the old half was not deleted in it")
		case !oldAnswers && n != 1:
			t.Errorf("old protocol dead: %d old halves, want the one left to its lease", n)
		}
		stop()
	}
}

// The router above's UPnP events: fewer mappings than this router's halves
// there, or a subscription it forgot, make every half again.
func TestUPnPEventsRemakeMissingHalves(t *testing.T) {
	fake := newFake()
	fake.nm = "upnp"
	u, c, _, stop := start(t, fake, t.TempDir())
	defer stop()
	waitUntil(t, "up", func() bool { return u.Status().State == "up" })
	if _, err := c.AddAny(context.Background(), lan, mapping(18080)); err != nil {
		t.Fatal(err)
	}
	w := &genaWatch{u: u}
	entries := func(sid string, n int, initial bool) upnp.Event {
		return upnp.Event{SID: sid, Initial: initial, Vars: upnp.Args{{Name: "PortMappingNumberOfEntries", Value: strconv.Itoa(n)}}}
	}
	w.handle(entries("uuid:a", 1, true))
	w.handle(entries("uuid:a", 3, false)) // others' mappings too: nothing missing
	time.Sleep(2 * missingGrace)
	if r := u.Status().Recreated; r["missing"]+r["restart"] != 0 {
		t.Fatalf("re-made halves with none missing: %v", r)
	}
	fake.set(func(f *fakeMethod) { f.held = map[gateway.Key][12]byte{} })
	w.handle(entries("uuid:a", 0, false))
	waitUntil(t, "the missing half made again", func() bool { _, n := fake.count(); return n == 1 })
	w.handle(entries("uuid:b", 1, true)) // subscribed anew: it forgot us
	waitUntil(t, "every half made again after a restart", func() bool { return u.Status().Recreated["restart"] == 1 })
}
