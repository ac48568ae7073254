package gateway_test

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/portfwd/portfwd/gateway"
	"github.com/portfwd/portfwd/gateway/clocktest"
)

// fakeUpstream is a router above: it holds halves by local external port,
// refuses ports in taken, and records what it was asked. With crashAfter
// set, Map panics with errCrash after granting, as a kill -9 between the
// upstream's answer and the local commit would leave things.
type fakeUpstream struct {
	mu      sync.Mutex
	public  netip.Addr
	held    map[gateway.Key]gateway.UpstreamHalf // by local key
	taken   map[uint16]bool                      // public ports held by others
	down    bool
	unmaps  []gateway.Key
	crash   bool
	nextNon byte
}

var errCrash = errors.New("simulated crash")

func newFakeUpstream() *fakeUpstream {
	return &fakeUpstream{public: addr("203.0.113.1"), held: map[gateway.Key]gateway.UpstreamHalf{}, taken: map[uint16]bool{}}
}

func (u *fakeUpstream) Prepare(m gateway.Mapping) (gateway.UpstreamHalf, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.nextNon++
	return gateway.UpstreamHalf{Method: "pcp", Nonce: [12]byte{u.nextNon}}, true
}

func (u *fakeUpstream) Map(_ context.Context, m gateway.Mapping, h gateway.UpstreamHalf, exact bool) (gateway.UpstreamHalf, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.down {
		return h, &gateway.UpstreamError{Kind: gateway.ErrUpstreamDown, Server: "fake", Err: errors.New("timeout")}
	}
	want := m.ExternalPort
	if h.Public.IsValid() {
		want = h.Public.Port()
	}
	port := want
	for u.taken[port] {
		if exact {
			return h, &gateway.UpstreamError{Kind: gateway.ErrUpstreamConflict, Server: "fake", Err: errors.New("CANNOT_PROVIDE_EXTERNAL")}
		}
		port++
	}
	h.Public = netip.AddrPortFrom(u.public, port)
	h.Granted = t0
	h.Expires = t0.Add(time.Hour)
	u.held[m.Key()] = h
	if u.crash {
		panic(errCrash)
	}
	return h, nil
}

func (u *fakeUpstream) Unmap(_ context.Context, m gateway.Mapping) {
	u.mu.Lock()
	defer u.mu.Unlock()
	delete(u.held, m.Key())
	u.unmaps = append(u.unmaps, m.Key())
}

func newChainedCore(t *testing.T, st gateway.Store, up gateway.Upstream) (*gateway.Core, *gateway.Memory) {
	t.Helper()
	be := gateway.NewMemory()
	c, err := gateway.New(context.Background(), gateway.Config{Backend: be, Store: st, Upstream: up, Clock: clocktest.New(t0)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background(), false) })
	return c, be
}

func TestChainedAddCarriesTheUpstreamHalfAndDeleteRemovesBoth(t *testing.T) {
	up := newFakeUpstream()
	st := newMemStore()
	c, _ := newChainedCore(t, st, up)
	ctx := context.Background()
	m := tcp(18080, "10.77.0.2", 8080)
	m.Expires = t0.Add(2 * time.Hour)
	got, err := c.Add(ctx, upnp("10.77.0.2"), m)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Chained() || got.Upstream.Public != netip.MustParseAddrPort("203.0.113.1:18080") {
		t.Fatalf("half = %+v, want 203.0.113.1:18080", got.Upstream)
	}
	if !got.Expires.Equal(t0.Add(time.Hour)) {
		t.Errorf("lease ends %v, want the upstream's grant %v", got.Expires, t0.Add(time.Hour))
	}
	if s := st.m[got.Key()]; s.Half() != got.Half() {
		t.Errorf("stored half %+v, want %+v", s.Upstream, got.Upstream)
	}
	if err := c.Delete(ctx, upnp("10.77.0.2"), gateway.TCP, 18080, netip.Addr{}); err != nil {
		t.Fatal(err)
	}
	if len(up.held) != 0 || len(up.unmaps) != 1 {
		t.Errorf("upstream holds %v after delete (unmaps %v)", up.held, up.unmaps)
	}
}

func TestChainedAddOfAPortHeldUpstream(t *testing.T) {
	up := newFakeUpstream()
	up.taken[18080] = true
	c, be := newChainedCore(t, nil, up)
	ctx := context.Background()

	// UPnP AddPortMapping: exactly that port or a conflict, nothing local.
	_, err := c.Add(ctx, upnp("10.77.0.2"), tcp(18080, "10.77.0.2", 8080))
	if !errors.Is(err, gateway.ErrUpstreamConflict) {
		t.Fatalf("Add = %v, want ErrUpstreamConflict", err)
	}
	if c.Len() != 0 || len(rulesOf(be)) != 0 {
		t.Fatalf("a refused chained add left %d mappings, %d rules", c.Len(), len(rulesOf(be)))
	}
	// UPnP AddAny: the next port free on both levels, the same on both.
	got, err := c.AddAny(ctx, upnp("10.77.0.2"), tcp(18080, "10.77.0.2", 8080))
	if err != nil {
		t.Fatal(err)
	}
	if got.ExternalPort != 18081 || got.PublicPort() != 18081 {
		t.Errorf("UPnP AddAny got local %d public %d, want 18081 both", got.ExternalPort, got.PublicPort())
	}
	// NAT-PMP: any public port; the local one stays what it was.
	got, err = c.AddAny(ctx, natpmp("10.77.0.3"), mapping(gateway.UDP, 9000, "10.77.0.3", 9000))
	if err != nil || got.PublicPort() != 9000 {
		t.Fatalf("NAT-PMP AddAny = %v, %v", got, err)
	}
	up.taken[9100] = true
	got, err = c.AddAny(ctx, natpmp("10.77.0.3"), mapping(gateway.UDP, 9100, "10.77.0.3", 9100))
	if err != nil || got.ExternalPort != 9100 || got.PublicPort() != 9101 {
		t.Fatalf("NAT-PMP AddAny of a port held upstream = %v (public %d), %v; want local 9100, public 9101", got, got.PublicPort(), err)
	}
}

func TestChainedAddWhileTheUpstreamIsDownIsRefused(t *testing.T) {
	up := newFakeUpstream()
	up.down = true
	st := newMemStore()
	c, _ := newChainedCore(t, st, up)
	_, err := c.Add(context.Background(), upnp("10.77.0.2"), tcp(18080, "10.77.0.2", 8080))
	if !errors.Is(err, gateway.ErrUpstreamDown) {
		t.Fatalf("Add = %v, want ErrUpstreamDown", err)
	}
	if c.Len() != 0 || len(st.m) != 0 {
		t.Errorf("refused add left %d mappings and %d stored records (the intent must go)", c.Len(), len(st.m))
	}
}

func TestKilledBetweenUpstreamGrantAndCommitLeaksNothing(t *testing.T) {
	up := newFakeUpstream()
	st := newMemStore()
	// Not closed: the crash left its key busy, as a killed process would.
	c, err := gateway.New(context.Background(), gateway.Config{Backend: gateway.NewMemory(), Store: st, Upstream: up, Clock: clocktest.New(t0)})
	if err != nil {
		t.Fatal(err)
	}
	up.crash = true
	func() {
		defer func() {
			if p := recover(); p != errCrash {
				t.Fatalf("recover() = %v", p)
			}
		}()
		c.Add(context.Background(), upnp("10.77.0.2"), tcp(18080, "10.77.0.2", 8080))
	}()
	up.crash = false
	if len(up.held) != 1 {
		t.Fatalf("upstream holds %d halves, want the 1 granted before the crash", len(up.held))
	}
	// The restart: the journal has the intent only.
	c2, be := newChainedCore(t, st, up)
	if c2.Len() != 0 || len(rulesOf(be)) != 0 {
		t.Errorf("an uncommitted intent was restored as a mapping")
	}
	orph := c2.UpstreamOrphans()
	if len(orph) != 1 || orph[0].Mapping.Upstream.Nonce != [12]byte{1} {
		t.Fatalf("orphans = %+v, want the intent with its pre-chosen nonce", orph)
	}
	if len(c2.UpstreamOrphans()) != 0 {
		t.Error("orphans are handed out once")
	}
	if len(st.m) != 0 {
		t.Errorf("the intent is still stored: %v", st.m)
	}
}

// chainedLeaseOnDisk makes a chained mapping, 18080/TCP to 10.77.0.2:8080
// for 30 minutes, through a Core over a FileStore in a new directory,
// stops both as the daemon does, and returns the directory and the
// mapping as granted.
func chainedLeaseOnDisk(t *testing.T, up *fakeUpstream) (dir string, got gateway.Mapping) {
	t.Helper()
	dir = t.TempDir()
	fs, err := gateway.OpenFileStore(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := newChainedCore(t, fs, up)
	m := tcp(18080, "10.77.0.2", 8080)
	m.Expires = t0.Add(30 * time.Minute)
	if got, err = c.Add(context.Background(), upnp("10.77.0.2"), m); err != nil {
		t.Fatal(err)
	}
	c.Close(context.Background(), false)
	fs.Close()
	return dir, got
}

func TestChainedMappingSurvivesARestartWithItsHalf(t *testing.T) {
	up := newFakeUpstream()
	dir, got := chainedLeaseOnDisk(t, up)
	fs2, err := gateway.OpenFileStore(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer fs2.Close()
	c2, _ := newChainedCore(t, fs2, up)
	back, err := c2.Get(admin, gateway.TCP, 18080, netip.Addr{})
	if err != nil {
		t.Fatal(err)
	}
	if back.Half() != got.Half() {
		t.Errorf("restored half %+v, want %+v", back.Upstream, got.Upstream)
	}
	// The upstream lost it: Rechain makes it again with the same nonce.
	delete(up.held, back.Key())
	re, err := c2.Rechain(context.Background(), back.Key())
	if err != nil || re.Upstream.Nonce != got.Upstream.Nonce || len(up.held) != 1 {
		t.Errorf("Rechain = %+v, %v; upstream holds %d", re.Upstream, err, len(up.held))
	}
}

func rulesOf(be *gateway.Memory) []gateway.Rule {
	r, _ := be.InstalledRules(context.Background())
	return r
}

func TestChainingObeysThePolicyFirst(t *testing.T) {
	up := newFakeUpstream()
	be := gateway.NewMemory()
	c, err := gateway.New(context.Background(), gateway.Config{Backend: be, Upstream: up, Clock: clocktest.New(t0),
		Policy: gateway.Policy{Rules: []gateway.PermRule{{Allow: true, External: gateway.PortRange{Min: 1024, Max: 65535},
			Client: netip.MustParsePrefix("10.77.0.0/24"), Internal: gateway.PortRange{Min: 1, Max: 65535}}}}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background(), false)
	// A port the rules deny, and another host's address in secure mode:
	// refused here, and the router above is never asked.
	if _, err := c.Add(context.Background(), upnp("10.77.0.2"), tcp(80, "10.77.0.2", 8080)); !errors.Is(err, gateway.ErrNotAuthorized) {
		t.Errorf("port 80: %v, want ErrNotAuthorized", err)
	}
	if _, err := c.Add(context.Background(), upnp("10.77.0.2"), tcp(18080, "10.77.0.9", 8080)); !errors.Is(err, gateway.ErrNotAuthorized) {
		t.Errorf("another host: %v, want ErrNotAuthorized", err)
	}
	if len(up.held) != 0 || up.nextNon != 0 {
		t.Errorf("the router above was asked for refused mappings: %v", up.held)
	}
}

// A saved chained lease that is not restored (the policy now denies it)
// has a half on the router above that nothing here forwards to: the
// restart hands it to the Upstream to delete, journaled, so that a second
// restart before the delete still does.
func TestRestoreHandsOutTheHalvesOfLeasesItDrops(t *testing.T) {
	up := newFakeUpstream()
	dir, got := chainedLeaseOnDisk(t, up)

	reopen := func() []gateway.UpstreamDelete {
		t.Helper()
		fs, err := gateway.OpenFileStore(dir, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer fs.Close()
		c, err := gateway.New(context.Background(), gateway.Config{Backend: gateway.NewMemory(), Store: fs, Upstream: up, Clock: clocktest.New(t0),
			Policy: gateway.Policy{Reserved: []gateway.PortSpec{{Protocol: gateway.TCP, Ports: gateway.PortRange{Min: 18080, Max: 18080}}}}})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close(context.Background(), false)
		if c.Len() != 0 {
			t.Fatalf("a lease on a now reserved port was restored")
		}
		return c.UpstreamOrphans()
	}
	for run := 1; run <= 2; run++ {
		orph := reopen()
		if len(orph) != 1 || orph[0].Mapping.Half() != got.Half() || orph[0].ID == 0 {
			t.Fatalf("restart %d: orphans = %+v, want the dropped lease's half %+v, journaled", run, orph, got.Half())
		}
	}
}

// The journal keeps pending upstream deletes as records of their own:
// not leases, kept across reopening and compaction until done.
func TestFileStoreKeepsPendingUpstreamDeletes(t *testing.T) {
	dir := t.TempDir()
	fs, err := gateway.OpenFileStore(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	half := func(n byte) gateway.Mapping {
		m := tcp(18080+uint16(n), "10.77.0.2", 8080)
		m.Upstream = &gateway.UpstreamHalf{Method: "pcp", Nonce: [12]byte{n}, Public: netip.MustParseAddrPort("203.0.113.1:18080"),
			Granted: t0, Expires: t0.Add(time.Hour)}
		if n == 2 {
			// A mapping on an external pool address: its record in the
			// pending delete is a putat, not a put.
			m.ExternalAddr = netip.MustParseAddr("198.51.100.39")
		}
		return m
	}
	// Beside them, leases on the own address and on a pool address, with
	// the same protocol and port: neither may be mistaken for a pending
	// delete, nor a pending delete for a lease.
	pooled := tcp(9000, "10.77.0.3", 9000)
	pooled.ExternalAddr = netip.MustParseAddr("198.51.100.39")
	if err := fs.Save([]gateway.Mapping{tcp(9000, "10.77.0.2", 9000), pooled}, nil); err != nil {
		t.Fatal(err)
	}
	if err := fs.SaveUpstreamDeletes([]gateway.UpstreamDelete{{ID: 1, Mapping: half(1)}, {ID: 2, Mapping: half(2)}}, nil); err != nil {
		t.Fatal(err)
	}
	if err := fs.SaveUpstreamDeletes(nil, []uint32{1}); err != nil {
		t.Fatal(err)
	}
	check := func(when string) {
		t.Helper()
		ds, err := fs.LoadUpstreamDeletes()
		if err != nil {
			t.Fatal(err)
		}
		if len(ds) != 1 || ds[0].ID != 2 || ds[0].Mapping.Half() != half(2).Half() || ds[0].Mapping.Key() != half(2).Key() {
			t.Errorf("%s: pending deletes %+v, want ID 2 with its half and its pool address", when, ds)
		}
		ms, err := fs.Load()
		if err != nil || len(ms) != 2 || ms[0].ExternalPort != 9000 || ms[1].ExternalPort != 9000 || ms[0].Key() == ms[1].Key() {
			t.Errorf("%s: leases %v, %v; want the two leases only", when, ms, err)
		}
	}
	check("written")
	fs.Close()
	if fs, err = gateway.OpenFileStore(dir, nil); err != nil {
		t.Fatal(err)
	}
	check("reopened")
	if err := fs.Compact(); err != nil {
		t.Fatal(err)
	}
	fs.Close()
	if fs, err = gateway.OpenFileStore(dir, nil); err != nil {
		t.Fatal(err)
	}
	defer fs.Close()
	check("compacted")
	if err := fs.SaveUpstreamDeletes(nil, []uint32{2}); err != nil {
		t.Fatal(err)
	}
	if ds, _ := fs.LoadUpstreamDeletes(); len(ds) != 0 {
		t.Errorf("done deletes still pending: %+v", ds)
	}
}

// A client's refresh that outlives the half renews it upstream. If the
// router above lost the half and another holder took its port meanwhile,
// the half moves to the port the router above grants (as a renewal does)
// rather than failing: refusing the refresh would leave the mapping here
// with a half that no longer exists above.
func TestRefreshThatRenewsAHalfWhosePortWasTakenMovesIt(t *testing.T) {
	up := newFakeUpstream()
	c, _ := newChainedCore(t, nil, up)
	ctx := context.Background()
	m := tcp(18080, "10.77.0.2", 8080)
	m.Expires = t0.Add(30 * time.Minute)
	if _, err := c.Add(ctx, upnp("10.77.0.2"), m); err != nil {
		t.Fatal(err)
	}
	up.taken[18080] = true // lost above, and taken by someone else
	m.Expires = t0.Add(2 * time.Hour)
	got, err := c.Add(ctx, upnp("10.77.0.2"), m)
	if err != nil {
		t.Fatalf("refresh = %v, want the half renewed on another port", err)
	}
	if got.PublicPort() != 18081 || up.held[got.Key()].Public.Port() != 18081 {
		t.Errorf("after the refresh the public port is %d, the router above holds %+v; want 18081 on both", got.PublicPort(), up.held[got.Key()])
	}
}
