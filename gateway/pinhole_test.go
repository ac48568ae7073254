package gateway_test

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/portfwd/portfwd/gateway"
	"github.com/portfwd/portfwd/gateway/clocktest"
)

// Hosts of the pinhole tests: host A has a stable, a temporary and a
// unique-local address (one MAC); host B is another machine.
const (
	aStable = "2001:db8:77::2"
	aTemp   = "2001:db8:77::22"
	aULA    = "fd00:77::2"
	bHost   = "2001:db8:77::99"
	gwAddr  = "2001:db8:77::1"
)

func sameHostA(x, y netip.Addr) bool {
	hostA := map[netip.Addr]bool{addr(aStable): true, addr(aTemp): true, addr(aULA): true}
	return hostA[x] && hostA[y]
}

type pinRig struct {
	core  *gateway.Core
	mem   *gateway.Memory
	clock *clocktest.Fake
}

func newPinRig(t *testing.T, pol gateway.Policy, store gateway.Store) *pinRig {
	t.Helper()
	r := &pinRig{mem: gateway.NewMemory(), clock: clocktest.New(t0)}
	var err error
	r.core, err = gateway.New(context.Background(), gateway.Config{
		Backend: r.mem, Store: store, Clock: r.clock, Policy: pol,
		SameHost: sameHostA,
		OwnAddr:  func(a netip.Addr) bool { return a == addr(gwAddr) },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.core.Close(context.Background(), false) })
	return r
}

func pin(host string, port uint16) gateway.Pinhole {
	return gateway.Pinhole{Protocol: gateway.TCP, InternalAddr: addr(host), InternalPort: port}
}

func TestPinholeAddRenewsSameTupleAndKeepsItsID(t *testing.T) {
	r := newPinRig(t, gateway.Policy{}, nil)
	ctx := context.Background()
	p1, err := r.core.AddPinhole(ctx, upnp(aStable), pin(aStable, 8080), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if p1.ID == 0 || !p1.Expires.Equal(t0.Add(time.Hour)) {
		t.Fatalf("got %+v; want an ID and a lease of one hour", p1)
	}
	r.clock.Advance(10 * time.Minute)
	p2, err := r.core.AddPinhole(ctx, upnp(aStable), pin(aStable, 8080), 2*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if p2.ID != p1.ID || !p2.Expires.Equal(t0.Add(10*time.Minute+2*time.Hour)) {
		t.Fatalf("renewal: got ID %d expiring %v; want ID %d expiring 2h from now", p2.ID, p2.Expires, p1.ID)
	}
	if n := len(r.mem.Pinholes()); n != 1 {
		t.Fatalf("backend holds %d pinholes; want 1", n)
	}
	// Another remote host is another tuple, another pinhole.
	p3 := pin(aStable, 8080)
	p3.RemoteHost = addr("2001:db8:113::2")
	got, err := r.core.AddPinhole(ctx, upnp(aStable), p3, time.Hour)
	if err != nil || got.ID == p1.ID {
		t.Fatalf("pinhole with a remote host: %+v, %v; want a new ID", got, err)
	}
}

func TestPinholeSecureModeAcceptsEveryAddressOfTheSameHost(t *testing.T) {
	r := newPinRig(t, gateway.Policy{}, nil)
	ctx := context.Background()
	for _, tc := range []struct{ from, to string }{
		{aStable, aStable}, {aTemp, aStable}, {aStable, aTemp}, {aULA, aStable},
	} {
		if _, err := r.core.AddPinhole(ctx, upnp(tc.from), pin(tc.to, 9000), time.Hour); err != nil {
			t.Errorf("%s opening a pinhole to %s (same host): %v", tc.from, tc.to, err)
		}
	}
	if _, err := r.core.AddPinhole(ctx, upnp(bHost), pin(aStable, 9001), time.Hour); !errors.Is(err, gateway.ErrNotAuthorized) {
		t.Errorf("another host opening a pinhole to host A: %v; want ErrNotAuthorized", err)
	}
	if _, err := r.core.AddPinhole(ctx, upnp(aStable), pin(bHost, 9001), time.Hour); !errors.Is(err, gateway.ErrNotAuthorized) {
		t.Errorf("host A opening a pinhole to host B: %v; want ErrNotAuthorized", err)
	}
}

func TestPinholeOwnerKeepsControlAfterItsAddressRotates(t *testing.T) {
	r := newPinRig(t, gateway.Policy{}, nil)
	ctx := context.Background()
	p, err := r.core.AddPinhole(ctx, upnp(aTemp), pin(aStable, 8080), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	// The temporary address rotated; the host now sends from its ULA.
	if _, err := r.core.UpdatePinhole(ctx, upnp(aULA), p.ID, time.Hour); err != nil {
		t.Fatalf("update from another address of the same host: %v", err)
	}
	if _, err := r.core.UpdatePinhole(ctx, upnp(bHost), p.ID, time.Hour); !errors.Is(err, gateway.ErrNotAuthorized) {
		t.Fatalf("update by another host: %v; want ErrNotAuthorized", err)
	}
	if err := r.core.DeletePinhole(ctx, upnp(bHost), p.ID); !errors.Is(err, gateway.ErrNotAuthorized) {
		t.Fatalf("delete by another host: %v; want ErrNotAuthorized", err)
	}
	if err := r.core.DeletePinhole(ctx, upnp(aULA), p.ID); err != nil {
		t.Fatalf("delete by the owner host: %v", err)
	}
	if n := len(r.mem.Pinholes()); n != 0 {
		t.Fatalf("backend still holds %d pinholes after delete", n)
	}
	if err := r.core.DeletePinhole(ctx, upnp(aStable), p.ID); !errors.Is(err, gateway.ErrNoSuchPinhole) {
		t.Fatalf("second delete: %v; want ErrNoSuchEntry", err)
	}
}

func TestPinholeRefusals(t *testing.T) {
	r := newPinRig(t, gateway.Policy{}, nil)
	ctx := context.Background()
	udpLite := pin(aStable, 8080)
	udpLite.Protocol = 136
	remote4 := pin(aStable, 8080)
	remote4.RemoteHost = addr("203.0.113.2")
	for _, tc := range []struct {
		name  string
		p     gateway.Pinhole
		lease time.Duration
		want  error
	}{
		{"protocol UDP-Lite", udpLite, time.Hour, gateway.ErrProtocolNotSupported},
		{"internal port 0", pin(aStable, 0), time.Hour, gateway.ErrWildcardInternalPort},
		{"IPv4 internal client", pin("10.77.0.2", 8080), time.Hour, gateway.ErrInvalidArgs},
		{"v4-mapped internal client", pin("::ffff:10.77.0.2", 8080), time.Hour, gateway.ErrInvalidArgs},
		{"link-local internal client", pin("fe80::2", 8080), time.Hour, gateway.ErrInvalidArgs},
		{"multicast internal client", pin("ff02::1", 8080), time.Hour, gateway.ErrInvalidArgs},
		{"loopback internal client", pin("::1", 8080), time.Hour, gateway.ErrInvalidArgs},
		{"unspecified internal client", pin("::", 8080), time.Hour, gateway.ErrInvalidArgs},
		{"the gateway's own address", pin(gwAddr, 8080), time.Hour, gateway.ErrNotAuthorized},
		{"IPv4 remote host", remote4, time.Hour, gateway.ErrInvalidArgs},
		{"port below 1024", pin(aStable, 80), time.Hour, gateway.ErrNotAuthorized},
		{"no lease", pin(aStable, 8080), 0, gateway.ErrInvalidArgs},
	} {
		if _, err := r.core.AddPinhole(ctx, upnp(aStable), tc.p, tc.lease); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v; want %v", tc.name, err, tc.want)
		}
	}
	if n := len(r.mem.Pinholes()); n != 0 {
		t.Fatalf("refused requests left %d pinholes in the backend", n)
	}
}

func TestPinholeLeaseIsClampedToTheSpecAndPolicy(t *testing.T) {
	r := newPinRig(t, gateway.Policy{MaxPinholeLease: time.Hour}, nil)
	p, err := r.core.AddPinhole(context.Background(), upnp(aStable), pin(aStable, 8080), 1000*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if !p.Expires.Equal(t0.Add(time.Hour)) {
		t.Fatalf("lease ends %v; want clamped to one hour", p.Expires)
	}
	r2 := newPinRig(t, gateway.Policy{}, nil)
	p, _ = r2.core.AddPinhole(context.Background(), upnp(aStable), pin(aStable, 8080), 1000*time.Hour)
	if !p.Expires.Equal(t0.Add(gateway.MaxPinholeLease)) {
		t.Fatalf("lease ends %v; want the spec's 86400 s", p.Expires)
	}
}

func TestPinholeIPv6PermissionRules(t *testing.T) {
	rules := []gateway.PermRule{
		mustRule(t, "allow 80 2001:db8:77::2 80"),
		mustRule(t, "deny 0-65535 ::/0 0-65535"),
	}
	r := newPinRig(t, gateway.Policy{Rules: rules}, nil)
	ctx := context.Background()
	if _, err := r.core.AddPinhole(ctx, upnp(aStable), pin(aStable, 80), time.Hour); err != nil {
		t.Fatalf("port 80 allowed by an IPv6 rule: %v", err)
	}
	if _, err := r.core.AddPinhole(ctx, upnp(aStable), pin(aStable, 8080), time.Hour); !errors.Is(err, gateway.ErrNotAuthorized) {
		t.Fatalf("port 8080 denied by the rules: %v", err)
	}
}

func mustRule(t *testing.T, s string) gateway.PermRule {
	t.Helper()
	r, err := gateway.ParsePermRule(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestPinholeDisabledAndQuota(t *testing.T) {
	r := newPinRig(t, gateway.Policy{DisablePinholes: true}, nil)
	if _, err := r.core.AddPinhole(context.Background(), upnp(aStable), pin(aStable, 8080), time.Hour); !errors.Is(err, gateway.ErrPinholesDisabled) {
		t.Fatalf("disabled: %v", err)
	}
	r = newPinRig(t, gateway.Policy{MaxPinholesPerClient: 2}, nil)
	ctx := context.Background()
	for port := uint16(5000); port < 5002; port++ {
		if _, err := r.core.AddPinhole(ctx, upnp(aStable), pin(aStable, port), time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := r.core.AddPinhole(ctx, upnp(aStable), pin(aTemp, 5002), time.Hour); !errors.Is(err, gateway.ErrPinholeSpace) {
		t.Fatalf("third pinhole from the address: %v; want ErrPinholeSpace", err)
	}
	if _, err := r.core.AddPinhole(ctx, upnp(bHost), pin(bHost, 5002), time.Hour); err != nil {
		t.Fatalf("another host: %v", err)
	}
}

// The per-client pinhole quota counts a host, not an address: a host that
// asks from its stable, temporary and unique-local addresses (secure
// mode's host identity: Config.HostAddrs, else SameHostNow) shares one
// quota; without a host identity each address counts alone.
func TestPinholeQuotaPerHost(t *testing.T) {
	hostAAddrs := func(a netip.Addr) []netip.Addr {
		var out []netip.Addr
		for _, s := range []string{aStable, aTemp, aULA} {
			if o := addr(s); sameHostA(a, o) && o != a {
				out = append(out, o)
			}
		}
		return out
	}
	type req struct {
		from, to string
		port     uint16
		full     bool // refused with ErrPinholeSpace
	}
	for _, tc := range []struct {
		name      string
		sameHost  func(a, b netip.Addr) bool
		hostAddrs func(netip.Addr) []netip.Addr
		reqs      []req
	}{
		{"neighbour table (HostAddrs)", sameHostA, hostAAddrs, []req{
			{aStable, aStable, 5000, false},
			{aTemp, aStable, 5001, false},
			{aULA, aStable, 5002, true}, // the host's third, from a third address
			{aTemp, aTemp, 5003, true},
			{bHost, bHost, 5000, false}, // another host has its own share
			{bHost, bHost, 5001, false},
			{bHost, bHost, 5002, true},
		}},
		{"SameHostNow asked per owner", sameHostA, nil, []req{
			{aStable, aStable, 5000, false},
			{aTemp, aStable, 5001, false},
			{aULA, aStable, 5002, true},
			{bHost, bHost, 5000, false},
		}},
		{"no host identity: by address", nil, nil, []req{
			{aStable, aStable, 5000, false},
			{aStable, aStable, 5001, false},
			{aStable, aStable, 5002, true},
			{aTemp, aTemp, 5000, false}, // counted alone, as nothing tells it is A
			{aTemp, aTemp, 5001, false},
			{aTemp, aTemp, 5002, true},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			core, err := gateway.New(context.Background(), gateway.Config{
				Backend: gateway.NewMemory(), Clock: clocktest.New(t0),
				Policy:   gateway.Policy{MaxPinholesPerClient: 2},
				SameHost: tc.sameHost, HostAddrs: tc.hostAddrs,
			})
			if err != nil {
				t.Fatal(err)
			}
			defer core.Close(context.Background(), false)
			for _, r := range tc.reqs {
				_, err := core.AddPinhole(context.Background(), upnp(r.from), pin(r.to, r.port), time.Hour)
				if full := errors.Is(err, gateway.ErrPinholeSpace); full != r.full || (err != nil && !full) {
					t.Errorf("from %s to [%s]:%d: %v; want refused for room: %v", r.from, r.to, r.port, err, r.full)
				}
			}
			// The operator is not counted.
			if _, err := core.AddPinhole(context.Background(), gateway.Requester{Source: gateway.SourceAdmin}, pin(aStable, 6000), time.Hour); err != nil {
				t.Errorf("operator: %v", err)
			}
		})
	}
}

func TestPinholeExpires(t *testing.T) {
	r := newPinRig(t, gateway.Policy{}, nil)
	p, err := r.core.AddPinhole(context.Background(), upnp(aStable), pin(aStable, 8080), 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if got := r.mem.Pinholes(); len(got) != 1 || got[0].Timeout != 30*time.Second+2*time.Second {
		t.Fatalf("backend: %+v; want one pinhole with the lease plus grace as its own timeout", got)
	}
	r.clock.Advance(29 * time.Second)
	if r.core.PinholeCount() != 1 {
		t.Fatal("pinhole gone before its lease ended")
	}
	r.clock.Advance(2 * time.Second)
	if r.core.PinholeCount() != 0 || len(r.mem.Pinholes()) != 0 {
		t.Fatalf("pinhole %d still open after its lease ended", p.ID)
	}
}

func TestPinholePackets(t *testing.T) {
	r := newPinRig(t, gateway.Policy{}, nil)
	ctx := context.Background()
	p, _ := r.core.AddPinhole(ctx, upnp(aStable), pin(aStable, 8080), time.Hour)
	n, counted, err := r.core.PinholePackets(ctx, upnp(aStable), p.ID)
	if err != nil || !counted || n != 0 {
		t.Fatalf("before traffic: %d, %v, %v", n, counted, err)
	}
	r.mem.CountPinholePacket(p.Key(), 3)
	if n, _, _ = r.core.PinholePackets(ctx, upnp(aStable), p.ID); n != 3 {
		t.Fatalf("after 3 packets: %d", n)
	}
	if _, _, err := r.core.PinholePackets(ctx, upnp(bHost), p.ID); !errors.Is(err, gateway.ErrNotAuthorized) {
		t.Fatalf("another host reading the count: %v", err)
	}
}

func TestPinholesPersistAndIDsAreNotReused(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	st, err := gateway.OpenFileStore(dir, &gateway.FileStoreOptions{Clock: clocktest.New(t0)})
	if err != nil {
		t.Fatal(err)
	}
	r := newPinRig(t, gateway.Policy{}, st)
	p1, _ := r.core.AddPinhole(ctx, upnp(aStable), pin(aStable, 8080), time.Hour)
	p2, _ := r.core.AddPinhole(ctx, upnp(aStable), pin(aStable, 8081), time.Hour)
	if err := r.core.DeletePinhole(ctx, upnp(aStable), p2.ID); err != nil {
		t.Fatal(err)
	}
	r.core.Close(ctx, false)
	st.Close()

	st, err = gateway.OpenFileStore(dir, &gateway.FileStoreOptions{Clock: clocktest.New(t0)})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	mem := gateway.NewMemory()
	core, err := gateway.New(ctx, gateway.Config{Backend: mem, Store: st, Clock: clocktest.New(t0.Add(time.Minute)), SameHost: sameHostA})
	if err != nil {
		t.Fatal(err)
	}
	defer core.Close(ctx, false)
	got := core.Pinholes()
	if len(got) != 1 || got[0].ID != p1.ID || got[0].Key() != p1.Key() || !got[0].Expires.Equal(p1.Expires) {
		t.Fatalf("restored %+v; want pinhole %d as it was", got, p1.ID)
	}
	if len(mem.Pinholes()) != 1 {
		t.Fatalf("restored pinhole not installed in the backend")
	}
	if _, err := core.UpdatePinhole(ctx, upnp(aStable), p1.ID, time.Hour); err != nil {
		t.Fatalf("renewing the restored pinhole by its ID: %v", err)
	}
	p3, err := core.AddPinhole(ctx, upnp(aStable), pin(aStable, 8082), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if p3.ID == p1.ID || p3.ID == p2.ID {
		t.Fatalf("new pinhole got ID %d, already given out before the restart (%d, %d)", p3.ID, p1.ID, p2.ID)
	}
	if len(core.Parked()) != 0 {
		t.Fatal("port mappings parked")
	}
}

func TestPinholesExpiredWhileDownAreDropped(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	st, _ := gateway.OpenFileStore(dir, nil)
	r := newPinRig(t, gateway.Policy{}, st)
	r.core.AddPinhole(ctx, upnp(aStable), pin(aStable, 8080), time.Minute)
	r.core.Close(ctx, false)
	st.Close()
	st, _ = gateway.OpenFileStore(dir, nil)
	defer st.Close()
	mem := gateway.NewMemory()
	// A stray pinhole left in the firewall by a crashed run is removed.
	mem.AddPinhole(ctx, gateway.PinholeRule{PinholeKey: pin(bHost, 7000).Key()})
	core, err := gateway.New(ctx, gateway.Config{Backend: mem, Store: st, Clock: clocktest.New(t0.Add(time.Hour))})
	if err != nil {
		t.Fatal(err)
	}
	defer core.Close(ctx, false)
	if core.PinholeCount() != 0 || len(mem.Pinholes()) != 0 {
		t.Fatalf("after restart: %d pinholes in the table, %v in the backend; want none", core.PinholeCount(), mem.Pinholes())
	}
}

// noPinholes is a Backend without a pinhole side, as the relay.
type noPinholes struct{ gateway.Backend }

func TestPinholeNeedsABackendThatCan(t *testing.T) {
	core, err := gateway.New(context.Background(), gateway.Config{Backend: noPinholes{gateway.NewMemory()}})
	if err != nil {
		t.Fatal(err)
	}
	defer core.Close(context.Background(), false)
	if core.PinholesAllowed() {
		t.Fatal("PinholesAllowed with a backend that cannot open them")
	}
	if _, err := core.AddPinhole(context.Background(), upnp(aStable), pin(aStable, 8080), time.Hour); !errors.Is(err, gateway.ErrNoPinholeBackend) {
		t.Fatalf("got %v; want ErrNoPinholeBackend", err)
	}
}

func TestPinholeStoreFailureLeavesNothingOpen(t *testing.T) {
	st := &failingPinStore{memStore: newMemStore(), err: errors.New("disk full")}
	r := newPinRig(t, gateway.Policy{}, st)
	if _, err := r.core.AddPinhole(context.Background(), upnp(aStable), pin(aStable, 8080), time.Hour); !errors.Is(err, gateway.ErrStore) {
		t.Fatalf("got %v; want ErrStore", err)
	}
	if r.core.PinholeCount() != 0 || len(r.mem.Pinholes()) != 0 {
		t.Fatal("a pinhole the store did not record stayed open")
	}
}

type failingPinStore struct {
	*memStore
	err error
}

func (s *failingPinStore) LoadPinholes() ([]gateway.Pinhole, uint16, error) { return nil, 1, nil }
func (s *failingPinStore) SavePinholes([]gateway.Pinhole, []uint16, uint16) error {
	return s.err
}
