package gateway_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/portfwd/portfwd/gateway"
)

var ctx = context.Background()

func TestAddInstallsRuleAndRecordsLease(t *testing.T) {
	f := newFixture(t, gateway.Policy{})
	want := tcp(8080, "192.168.1.10", 80)
	want.Description = "web"
	want.Expires = f.lease(time.Hour)

	got := f.add(upnp("192.168.1.10"), want)

	if got.Owner != addr("192.168.1.10") || got.Source != gateway.SourceUPnP || !got.Created.Equal(t0) {
		t.Errorf("Add filled Owner=%v Source=%v Created=%v; want the requester, UPnP and now", got.Owner, got.Source, got.Created)
	}
	if r, ok := f.mem.Rule(want.Key()); !ok || r != want.Rule() {
		t.Errorf("backend rule = %v (present %v), want %v", r, ok, want.Rule())
	}
	g, err := f.core.Get(upnp("192.168.1.99"), gateway.TCP, 8080, netip.Addr{})
	if err != nil || !sameMapping(g, got) {
		t.Errorf("Get = %v, %v; want %v", g, err, got)
	}
	f.checkConsistent()
}

func TestAddBySameClientUpdatesInPlace(t *testing.T) {
	f := newFixture(t, gateway.Policy{})
	next := events(t, f.core)
	c := upnp("192.168.1.10")
	m := tcp(8080, "192.168.1.10", 80)
	m.Expires = f.lease(time.Hour)
	first := f.add(c, m)

	// A refresh: same rule, longer lease. The backend is not touched.
	f.clock.Advance(10 * time.Minute)
	adds := f.mem.Calls().Add
	m.Expires = f.lease(time.Hour)
	refreshed := f.add(c, m)
	if f.mem.Calls().Add != adds {
		t.Errorf("refresh with an unchanged rule called Backend.Add")
	}
	if !refreshed.Expires.Equal(t0.Add(70*time.Minute)) || !refreshed.Created.Equal(first.Created) {
		t.Errorf("refresh: Expires %v Created %v; want the new lease and the original creation time", refreshed.Expires, refreshed.Created)
	}

	// A change of internal port replaces the rule.
	m.InternalPort = 81
	f.add(c, m)
	if r, _ := f.mem.Rule(m.Key()); r.InternalPort != 81 {
		t.Errorf("backend rule after change = %v, want internal port 81", r)
	}
	if f.core.Len() != 1 {
		t.Errorf("Len = %d after three Adds of one key, want 1", f.core.Len())
	}
	var kinds []gateway.EventKind
	for _, e := range next(3) {
		kinds = append(kinds, e.Kind)
	}
	if want := []gateway.EventKind{gateway.EventAdded, gateway.EventUpdated, gateway.EventUpdated}; !slices.Equal(kinds, want) {
		t.Errorf("events = %v, want %v", kinds, want)
	}
	f.checkConsistent()
}

func TestAddOfAnotherClientsPortConflicts(t *testing.T) {
	f := newFixture(t, gateway.Policy{})
	held := f.add(upnp("192.168.1.10"), tcp(8080, "192.168.1.10", 80))

	_, err := f.core.Add(ctx, upnp("192.168.1.11"), tcp(8080, "192.168.1.11", 80))

	var ce *gateway.ConflictError
	if !errors.As(err, &ce) || !errors.Is(err, gateway.ErrConflict) {
		t.Fatalf("Add of a held port = %v, want a *ConflictError", err)
	}
	if !sameMapping(ce.Holder, held) {
		t.Errorf("ConflictError.Holder = %v, want %v", ce.Holder, held)
	}
	// The same port on the other protocol is a different key.
	f.add(upnp("192.168.1.11"), mapping(gateway.UDP, 8080, "192.168.1.11", 80))
	f.checkConsistent()
}

func TestInsecureModeConflictFollowsInternalClient(t *testing.T) {
	f := newFixture(t, gateway.Policy{InsecureMode: true})
	a, b := upnp("192.168.1.10"), upnp("192.168.1.11")
	f.add(a, tcp(8080, "192.168.1.20", 80)) // a maps a port to a third host

	// b asking for the same port for another host conflicts...
	_, err := f.core.Add(ctx, b, tcp(8080, "192.168.1.21", 80))
	errIs(t, err, gateway.ErrConflict)
	// ...but for the same internal client it is an update, and b now owns it.
	got := f.add(b, tcp(8080, "192.168.1.20", 8080))
	if got.Owner != b.Addr || got.InternalPort != 8080 {
		t.Errorf("update by another requester = %v, want owner %v and internal port 8080", got, b.Addr)
	}
	f.checkConsistent()
}

func TestSecureMode(t *testing.T) {
	f := newFixture(t, gateway.Policy{})
	me, other := upnp("192.168.1.10"), upnp("192.168.1.11")

	_, err := f.core.Add(ctx, me, tcp(8080, "192.168.1.11", 80))
	errIs(t, err, gateway.ErrNotAuthorized)

	f.add(me, tcp(8080, "192.168.1.10", 80))
	errIs(t, f.core.Delete(ctx, other, gateway.TCP, 8080, netip.Addr{}), gateway.ErrNotAuthorized)
	if _, err := f.core.Get(me, gateway.TCP, 8080, netip.Addr{}); err != nil {
		t.Fatalf("mapping gone after a refused delete: %v", err)
	}
	if err := f.core.Delete(ctx, me, gateway.TCP, 8080, netip.Addr{}); err != nil {
		t.Fatalf("owner's Delete: %v", err)
	}

	t.Run("insecure mode allows both", func(t *testing.T) {
		f := newFixture(t, gateway.Policy{InsecureMode: true})
		f.add(me, tcp(8080, "192.168.1.11", 80))
		if err := f.core.Delete(ctx, upnp("192.168.1.12"), gateway.TCP, 8080, netip.Addr{}); err != nil {
			t.Fatalf("Delete of another's mapping with secure mode off: %v", err)
		}
	})
}

func TestLoopbackTargetOnlyFromGatewayItself(t *testing.T) {
	f := newFixture(t, gateway.Policy{InsecureMode: true})
	_, err := f.core.Add(ctx, upnp("192.168.1.10"), tcp(2222, "127.0.0.1", 22))
	errIs(t, err, gateway.ErrNotAuthorized)
	f.add(upnp("127.0.0.1"), tcp(2222, "127.0.0.1", 22))
}

func TestPermissionRules(t *testing.T) {
	rules := []string{
		"deny 0-1023 0.0.0.0/0 0-65535",
		"allow 1024-65535 192.168.1.0/24 1024-65535",
		"allow 1024-65535 192.168.1.50 22",
	}
	var pol gateway.Policy
	for _, s := range rules {
		r, err := gateway.ParsePermRule(s)
		if err != nil {
			t.Fatal(err)
		}
		pol.Rules = append(pol.Rules, r)
	}
	f := newFixture(t, pol)
	tests := []struct {
		host     string
		ext, int uint16
		allowed  bool
	}{
		{"192.168.1.10", 8080, 8080, true},
		{"192.168.1.10", 80, 8080, false},     // first rule denies low external ports for everyone
		{"192.168.1.10", 8081, 80, false},     // no rule covers internal port 80: default deny
		{"192.168.1.50", 2222, 22, true},      // third rule
		{"192.168.1.51", 2223, 22, false},     // third rule is for .50 only
		{"192.168.2.10", 8082, 8082, false},   // outside the allowed prefix
		{"192.168.1.255", 65535, 65535, true}, // range ends are inclusive
	}
	for _, tt := range tests {
		_, err := f.core.Add(ctx, upnp(tt.host), tcp(tt.ext, tt.host, tt.int))
		if got := err == nil; got != tt.allowed {
			t.Errorf("%s ext %d int %d: err = %v, want allowed=%v", tt.host, tt.ext, tt.int, err, tt.allowed)
		}
		if err != nil {
			errIs(t, err, gateway.ErrNotAuthorized)
		}
	}
	f.checkConsistent()
}

func TestQuota(t *testing.T) {
	f := newFixture(t, gateway.Policy{MaxPerClient: 2})
	c := upnp("192.168.1.10")
	f.add(c, tcp(1001, "192.168.1.10", 1))
	f.add(c, tcp(1002, "192.168.1.10", 2))

	_, err := f.core.Add(ctx, c, tcp(1003, "192.168.1.10", 3))
	errIs(t, err, gateway.ErrQuota)
	// Refreshing a held mapping at the quota is fine, and so is another client.
	f.add(c, tcp(1002, "192.168.1.10", 2))
	f.add(upnp("192.168.1.11"), tcp(1003, "192.168.1.11", 3))
	// Deleting frees a slot.
	if err := f.core.Delete(ctx, c, gateway.TCP, 1001, netip.Addr{}); err != nil {
		t.Fatal(err)
	}
	f.add(c, tcp(1004, "192.168.1.10", 4))
	// The administrator has no quota.
	f.add(admin, tcp(1005, "192.168.1.10", 5))
	f.checkConsistent()
}

func TestTableCap(t *testing.T) {
	f := newFixture(t, gateway.Policy{MaxMappings: 2})
	f.add(upnp("192.168.1.10"), tcp(1001, "192.168.1.10", 1))
	f.add(upnp("192.168.1.11"), tcp(1002, "192.168.1.11", 2))
	for _, req := range []gateway.Requester{upnp("192.168.1.12"), admin} {
		_, err := f.core.Add(ctx, req, tcp(1003, "192.168.1.12", 3))
		errIs(t, err, gateway.ErrTableFull)
		_, err = f.core.AddAny(ctx, req, tcp(1003, "192.168.1.12", 3))
		errIs(t, err, gateway.ErrTableFull)
	}
	// Updates need no new slot.
	f.add(upnp("192.168.1.10"), tcp(1001, "192.168.1.10", 11))
}

func TestReservedPorts(t *testing.T) {
	f := newFixture(t, gateway.Policy{Reserved: []gateway.PortSpec{
		{Protocol: gateway.TCP, Ports: gateway.PortRange{Min: 22, Max: 22}},
		{Ports: gateway.PortRange{Min: 5000, Max: 5001}}, // both protocols
	}})
	for _, tt := range []struct {
		proto gateway.Protocol
		port  uint16
		want  bool
	}{
		{gateway.TCP, 22, true}, {gateway.UDP, 22, false},
		{gateway.TCP, 5000, true}, {gateway.UDP, 5001, true}, {gateway.UDP, 5002, false},
	} {
		for _, req := range []gateway.Requester{upnp("192.168.1.10"), admin} {
			_, err := f.core.Add(ctx, req, mapping(tt.proto, tt.port, "192.168.1.10", 1234))
			if got := errors.Is(err, gateway.ErrReservedPort); got != tt.want {
				t.Errorf("%v %v/%d: err = %v, want reserved=%v", req.Source, tt.proto, tt.port, err, tt.want)
			}
			if err == nil {
				f.core.Delete(ctx, admin, tt.proto, tt.port, netip.Addr{})
			}
		}
	}
	// AddAny steps over reserved ports.
	got, err := f.core.AddAny(ctx, upnp("192.168.1.10"), tcp(5000, "192.168.1.10", 5000))
	if err != nil || got.ExternalPort != 5002 {
		t.Errorf("AddAny from a reserved port = %v, %v; want port 5002", got.ExternalPort, err)
	}
}

func TestLeaseClamps(t *testing.T) {
	f := newFixture(t, gateway.Policy{MinLease: time.Minute, MaxLease: 24 * time.Hour})
	c := upnp("192.168.1.10")
	tests := []struct {
		name    string
		expires time.Time
		want    time.Time
	}{
		{"too short is raised to MinLease", t0.Add(time.Second), t0.Add(time.Minute)},
		{"in range is kept", t0.Add(time.Hour), t0.Add(time.Hour)},
		{"too long is cut to MaxLease", t0.Add(30 * 24 * time.Hour), t0.Add(24 * time.Hour)},
		{"permanent gets MaxLease", time.Time{}, t0.Add(24 * time.Hour)},
	}
	for i, tt := range tests {
		m := tcp(uint16(2000+i), "192.168.1.10", 80)
		m.Expires = tt.expires
		got := f.add(c, m)
		if !got.Expires.Equal(tt.want) {
			t.Errorf("%s: Expires = %v, want %v", tt.name, got.Expires, tt.want)
		}
	}
	m := tcp(3000, "192.168.1.10", 80)
	m.Expires = t0.Add(-time.Second)
	_, err := f.core.Add(ctx, c, m)
	errIs(t, err, gateway.ErrInvalidArgs)

	t.Run("no MaxLease keeps permanent", func(t *testing.T) {
		f := newFixture(t, gateway.Policy{})
		if got := f.add(c, tcp(80, "192.168.1.10", 80)); !got.Permanent() {
			t.Errorf("Expires = %v, want permanent", got.Expires)
		}
	})
}

func TestArgumentChecks(t *testing.T) {
	f := newFixture(t, gateway.Policy{WildcardRemoteHostOnly: true})
	c := upnp("192.168.1.10")
	withRemote := tcp(80, "192.168.1.10", 80)
	withRemote.RemoteHost = addr("203.0.113.7")
	tests := []struct {
		name string
		m    gateway.Mapping
		want error
	}{
		{"unknown protocol", mapping(47, 80, "192.168.1.10", 80), gateway.ErrInvalidArgs},
		{"unspecified internal", tcp(80, "0.0.0.0", 80), gateway.ErrInvalidArgs},
		{"multicast internal", tcp(80, "239.1.1.1", 80), gateway.ErrInvalidArgs},
		{"internal port 0", tcp(80, "192.168.1.10", 0), gateway.ErrWildcardInternalPort},
		{"external port 0", tcp(0, "192.168.1.10", 80), gateway.ErrWildcardExternalPort},
		{"remote host unsupported", withRemote, gateway.ErrRemoteHostNotSupported},
	}
	for _, tt := range tests {
		_, err := f.core.Add(ctx, c, tt.m)
		if !errors.Is(err, tt.want) {
			t.Errorf("%s: err = %v, want %v", tt.name, err, tt.want)
		}
	}
	if f.core.Len() != 0 || f.mem.Len() != 0 {
		t.Errorf("rejected requests left %d mappings and %d rules", f.core.Len(), f.mem.Len())
	}
}

func TestIPv4MappedRequesterIsTheSameClient(t *testing.T) {
	f := newFixture(t, gateway.Policy{})
	// A dual-stack socket reports ::ffff:192.168.1.10 for an IPv4 client.
	mapped := gateway.Requester{Addr: addr("::ffff:192.168.1.10"), Source: gateway.SourceUPnP}
	got := f.add(mapped, tcp(80, "192.168.1.10", 80))
	if got.Owner != addr("192.168.1.10") {
		t.Errorf("Owner = %v, want the plain IPv4 address", got.Owner)
	}
	if err := f.core.Delete(ctx, upnp("192.168.1.10"), gateway.TCP, 80, netip.Addr{}); err != nil {
		t.Errorf("Delete by the same host over IPv4: %v", err)
	}
}

func TestAddAny(t *testing.T) {
	deny := func(s string) gateway.PermRule {
		r, err := gateway.ParsePermRule(s)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	t.Run("requested port when free", func(t *testing.T) {
		f := newFixture(t, gateway.Policy{})
		got, err := f.core.AddAny(ctx, upnp("192.168.1.10"), tcp(6000, "192.168.1.10", 80))
		if err != nil || got.ExternalPort != 6000 {
			t.Fatalf("AddAny = %d, %v; want 6000", got.ExternalPort, err)
		}
	})
	t.Run("next free port upward", func(t *testing.T) {
		f := newFixture(t, gateway.Policy{})
		f.add(upnp("192.168.1.11"), tcp(6000, "192.168.1.11", 80))
		f.add(upnp("192.168.1.11"), tcp(6001, "192.168.1.11", 81))
		got, err := f.core.AddAny(ctx, upnp("192.168.1.10"), tcp(6000, "192.168.1.10", 80))
		if err != nil || got.ExternalPort != 6002 {
			t.Fatalf("AddAny = %d, %v; want 6002", got.ExternalPort, err)
		}
		f.checkConsistent()
	})
	t.Run("own mapping of another internal port is not reused", func(t *testing.T) {
		f := newFixture(t, gateway.Policy{})
		f.add(upnp("192.168.1.10"), tcp(6000, "192.168.1.10", 99))
		got, err := f.core.AddAny(ctx, upnp("192.168.1.10"), tcp(6000, "192.168.1.10", 80))
		if err != nil || got.ExternalPort != 6001 {
			t.Fatalf("AddAny = %d, %v; want 6001", got.ExternalPort, err)
		}
	})
	t.Run("own mapping of the same internal port is refreshed", func(t *testing.T) {
		f := newFixture(t, gateway.Policy{})
		m := tcp(6000, "192.168.1.10", 80)
		m.Expires = f.lease(time.Minute)
		f.add(natpmp("192.168.1.10"), m)
		m.Expires = f.lease(time.Hour)
		got, err := f.core.AddAny(ctx, natpmp("192.168.1.10"), m)
		if err != nil || got.ExternalPort != 6000 || !got.Expires.Equal(t0.Add(time.Hour)) || f.core.Len() != 1 {
			t.Fatalf("AddAny = %v, %v (Len %d); want port 6000 refreshed in place", got, err, f.core.Len())
		}
	})
	t.Run("external port 0 starts at the internal port", func(t *testing.T) {
		f := newFixture(t, gateway.Policy{})
		got, err := f.core.AddAny(ctx, upnp("192.168.1.10"), tcp(0, "192.168.1.10", 7777))
		if err != nil || got.ExternalPort != 7777 {
			t.Fatalf("AddAny = %d, %v; want 7777", got.ExternalPort, err)
		}
	})
	t.Run("wraps without entering the privileged range", func(t *testing.T) {
		f := newFixture(t, gateway.Policy{})
		f.add(upnp("192.168.1.11"), tcp(65535, "192.168.1.11", 1))
		got, err := f.core.AddAny(ctx, upnp("192.168.1.10"), tcp(65535, "192.168.1.10", 80))
		if err != nil || got.ExternalPort != 1024 {
			t.Fatalf("AddAny = %d, %v; want 1024", got.ExternalPort, err)
		}
	})
	t.Run("a privileged start may wrap to 1", func(t *testing.T) {
		f := newFixture(t, gateway.Policy{Rules: []gateway.PermRule{deny("allow 1-100 0.0.0.0/0 1-65535")}})
		for p := uint16(50); p <= 100; p++ {
			f.add(admin, tcp(p, "192.168.1.11", p))
		}
		got, err := f.core.AddAny(ctx, upnp("192.168.1.10"), tcp(50, "192.168.1.10", 80))
		if err != nil || got.ExternalPort != 1 {
			t.Fatalf("AddAny = %d, %v; want 1", got.ExternalPort, err)
		}
	})
	t.Run("skips ports the rules deny", func(t *testing.T) {
		f := newFixture(t, gateway.Policy{Rules: []gateway.PermRule{
			deny("deny 6000-6099 0.0.0.0/0 0-65535"),
			deny("allow 1024-65535 0.0.0.0/0 0-65535"),
		}})
		got, err := f.core.AddAny(ctx, upnp("192.168.1.10"), tcp(6000, "192.168.1.10", 80))
		if err != nil || got.ExternalPort != 6100 {
			t.Fatalf("AddAny = %d, %v; want 6100", got.ExternalPort, err)
		}
	})
	t.Run("no port allowed at all is not authorized", func(t *testing.T) {
		f := newFixture(t, gateway.Policy{Rules: []gateway.PermRule{deny("allow 1024-65535 10.0.0.0/8 0-65535")}})
		_, err := f.core.AddAny(ctx, upnp("192.168.1.10"), tcp(6000, "192.168.1.10", 80))
		errIs(t, err, gateway.ErrNotAuthorized)
	})
	t.Run("all allowed ports taken", func(t *testing.T) {
		f := newFixture(t, gateway.Policy{Rules: []gateway.PermRule{deny("allow 6000-6002 0.0.0.0/0 0-65535")}})
		for p := uint16(6000); p <= 6002; p++ {
			f.add(upnp("192.168.1.11"), tcp(p, "192.168.1.11", p))
		}
		_, err := f.core.AddAny(ctx, upnp("192.168.1.10"), tcp(6000, "192.168.1.10", 80))
		errIs(t, err, gateway.ErrNoPortsAvailable)
	})
}

func TestDelete(t *testing.T) {
	f := newFixture(t, gateway.Policy{})
	c := upnp("192.168.1.10")
	m := tcp(8080, "192.168.1.10", 80)
	m.RemoteHost = addr("203.0.113.7")
	f.add(c, m)

	err := f.core.Delete(ctx, c, gateway.TCP, 8081, netip.Addr{})
	errIs(t, err, gateway.ErrNoSuchEntry)
	// A specific remote host must match; the wildcard matches any.
	errIs(t, f.core.Delete(ctx, c, gateway.TCP, 8080, addr("203.0.113.8")), gateway.ErrNoSuchEntry)
	if _, err := f.core.Get(c, gateway.TCP, 8080, addr("203.0.113.8")); !errors.Is(err, gateway.ErrNoSuchEntry) {
		t.Errorf("Get with another remote host = %v, want ErrNoSuchEntry", err)
	}
	if err := f.core.Delete(ctx, c, gateway.TCP, 8080, netip.Addr{}); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if f.core.Len() != 0 || f.mem.Len() != 0 || f.store.len() != 0 {
		t.Errorf("after Delete: table %d, backend %d, store %d; want all empty", f.core.Len(), f.mem.Len(), f.store.len())
	}
}

func TestDeleteRange(t *testing.T) {
	setup := func(pol gateway.Policy) (*fixture, gateway.Requester, gateway.Requester) {
		f := newFixture(t, pol)
		me, other := upnp("192.168.1.10"), upnp("192.168.1.11")
		for p := uint16(100); p < 110; p++ {
			who, host := me, "192.168.1.10"
			if p%2 == 1 {
				who, host = other, "192.168.1.11"
			}
			f.add(who, tcp(p, host, p))
		}
		f.add(me, mapping(gateway.UDP, 105, "192.168.1.10", 1))
		return f, me, other
	}
	t.Run("own only without manage", func(t *testing.T) {
		f, me, _ := setup(gateway.Policy{InsecureMode: true})
		n, err := f.core.DeleteRange(ctx, me, gateway.TCP, 100, 105, false)
		if err != nil || n != 3 {
			t.Fatalf("DeleteRange = %d, %v; want 3 (100, 102, 104)", n, err)
		}
		if f.core.Len() != 8 {
			t.Errorf("Len = %d, want 8", f.core.Len())
		}
		f.checkConsistent()
	})
	t.Run("manage deletes all when allowed", func(t *testing.T) {
		f, me, _ := setup(gateway.Policy{InsecureMode: true})
		n, err := f.core.DeleteRange(ctx, me, gateway.TCP, 0, 65535, true)
		if err != nil || n != 10 {
			t.Fatalf("DeleteRange = %d, %v; want 10", n, err)
		}
		if _, err := f.core.Get(me, gateway.UDP, 105, netip.Addr{}); err != nil {
			t.Errorf("UDP mapping deleted by a TCP range: %v", err)
		}
		f.checkConsistent()
	})
	t.Run("manage in secure mode is limited to own", func(t *testing.T) {
		f, me, _ := setup(gateway.Policy{})
		n, err := f.core.DeleteRange(ctx, me, gateway.TCP, 100, 109, true)
		if err != nil || n != 5 {
			t.Fatalf("DeleteRange = %d, %v; want 5", n, err)
		}
		f.checkConsistent()
	})
	t.Run("only others' mappings in range", func(t *testing.T) {
		f, me, _ := setup(gateway.Policy{})
		_, err := f.core.DeleteRange(ctx, me, gateway.TCP, 101, 101, true)
		errIs(t, err, gateway.ErrNotAuthorized)
	})
	t.Run("empty range", func(t *testing.T) {
		f, me, _ := setup(gateway.Policy{})
		_, err := f.core.DeleteRange(ctx, me, gateway.TCP, 200, 300, true)
		errIs(t, err, gateway.ErrNoneInRange)
	})
	t.Run("start after end", func(t *testing.T) {
		f, me, _ := setup(gateway.Policy{})
		_, err := f.core.DeleteRange(ctx, me, gateway.TCP, 300, 200, true)
		errIs(t, err, gateway.ErrInconsistentRange)
	})
	t.Run("administrator manages everything", func(t *testing.T) {
		f, _, _ := setup(gateway.Policy{})
		n, err := f.core.DeleteRange(ctx, admin, gateway.TCP, 100, 109, true)
		if err != nil || n != 10 {
			t.Fatalf("DeleteRange = %d, %v; want 10", n, err)
		}
	})
}

func TestDeleteAllFor(t *testing.T) {
	f := newFixture(t, gateway.Policy{InsecureMode: true})
	me := natpmp("192.168.1.10")
	f.add(me, tcp(1000, "192.168.1.10", 1))
	f.add(upnp("192.168.1.10"), tcp(1001, "192.168.1.10", 2))
	f.add(upnp("192.168.1.99"), tcp(1002, "192.168.1.10", 3)) // made by another host, forwards to me
	f.add(me, mapping(gateway.UDP, 1000, "192.168.1.10", 1))  // other protocol
	f.add(upnp("192.168.1.11"), tcp(1003, "192.168.1.11", 4)) // someone else's
	f.add(admin, tcp(1004, "192.168.1.10", 5))                // the operator's

	n, err := f.core.DeleteAllFor(ctx, me, gateway.TCP)
	if n != 3 {
		t.Errorf("deleted %d, want 3 (1000, 1001, 1002)", n)
	}
	errIs(t, err, gateway.ErrNotAuthorized) // the admin mapping was kept
	var left []uint16
	for _, m := range f.all() {
		left = append(left, m.ExternalPort)
	}
	if want := []uint16{1003, 1004, 1000}; !slices.Equal(left, want) {
		t.Errorf("left %v, want %v (TCP 1003, 1004 and UDP 1000)", left, want)
	}
	if n, err := f.core.DeleteAllFor(ctx, natpmp("192.168.1.77"), gateway.TCP); n != 0 || err != nil {
		t.Errorf("DeleteAllFor with nothing to delete = %d, %v; want 0, nil", n, err)
	}
	f.checkConsistent()
}

func TestIndexAndListOwnOnly(t *testing.T) {
	for _, ownOnly := range []bool{false, true} {
		t.Run(fmt.Sprintf("ListOwnOnly=%v", ownOnly), func(t *testing.T) {
			f := newFixture(t, gateway.Policy{ListOwnOnly: ownOnly})
			me, other := upnp("192.168.1.10"), upnp("192.168.1.11")
			for _, p := range []uint16{7000, 5000, 6000} {
				f.add(me, tcp(p, "192.168.1.10", p))
				f.add(other, tcp(p+1, "192.168.1.11", p))
			}
			var viaIndex []gateway.Mapping
			for i := 0; ; i++ {
				m, err := f.core.Index(me, i)
				if err != nil {
					errIs(t, err, gateway.ErrIndexOutOfRange)
					break
				}
				viaIndex = append(viaIndex, m)
			}
			slices.SortFunc(viaIndex, byKey)
			viaList := f.core.List(me, gateway.TCP, 0, 65535, 0)
			if !slices.EqualFunc(viaIndex, viaList, sameMapping) {
				t.Errorf("Index and List disagree:\nIndex %v\nList  %v", viaIndex, viaList)
			}
			want := 6
			if ownOnly {
				want = 3
			}
			if len(viaList) != want {
				t.Errorf("requester sees %d mappings, want %d", len(viaList), want)
			}
			for _, m := range viaList {
				if ownOnly && m.Owner != me.Addr {
					t.Errorf("ListOwnOnly shows %v", m)
				}
			}
			if n := len(f.core.List(admin, gateway.TCP, 0, 65535, 0)); n != 6 {
				t.Errorf("administrator sees %d mappings, want 6", n)
			}
			// Get answers about a named port whoever holds it.
			if _, err := f.core.Get(me, gateway.TCP, 5001, netip.Addr{}); err != nil {
				t.Errorf("Get of another client's port: %v", err)
			}
		})
	}
}

func TestListRangeOrderAndMax(t *testing.T) {
	f := newFixture(t, gateway.Policy{})
	c := upnp("192.168.1.10")
	for _, p := range []uint16{9000, 3000, 5000, 4000, 8000} {
		f.add(c, tcp(p, "192.168.1.10", p))
	}
	f.add(c, mapping(gateway.UDP, 4500, "192.168.1.10", 1))
	ports := func(ms []gateway.Mapping) []uint16 {
		var out []uint16
		for _, m := range ms {
			out = append(out, m.ExternalPort)
		}
		return out
	}
	// Both strategies: a narrow range walks ports, a wide one the table.
	if got := ports(f.core.List(c, gateway.TCP, 3500, 5000, 0)); !slices.Equal(got, []uint16{4000, 5000}) {
		t.Errorf("List 3500-5000 = %v, want [4000 5000]", got)
	}
	if got := ports(f.core.List(c, gateway.TCP, 0, 65535, 3)); !slices.Equal(got, []uint16{3000, 4000, 5000}) {
		t.Errorf("List max 3 = %v, want [3000 4000 5000]", got)
	}
	if got := f.core.List(c, gateway.TCP, 5000, 4000, 0); got != nil {
		t.Errorf("List with start > end = %v, want nil", got)
	}
}

func TestShowDummyRule(t *testing.T) {
	f := newFixture(t, gateway.Policy{ShowDummyRule: true, ListOwnOnly: true})
	me := upnp("192.168.1.10")
	m, err := f.core.Index(me, 0)
	if err != nil || m.ExternalPort != 0 || m.Enabled {
		t.Fatalf("Index(0) of an empty view = %v, %v; want a disabled placeholder with external port 0", m, err)
	}
	_, err = f.core.Index(me, 1)
	errIs(t, err, gateway.ErrIndexOutOfRange)

	f.add(upnp("192.168.1.11"), tcp(80, "192.168.1.11", 80)) // someone else's: my view stays empty
	if m, _ := f.core.Index(me, 0); m.ExternalPort != 0 {
		t.Errorf("Index(0) = %v, want the placeholder", m)
	}
	f.add(me, tcp(81, "192.168.1.10", 81))
	if m, _ := f.core.Index(me, 0); m.ExternalPort != 81 {
		t.Errorf("Index(0) = %v, want the real mapping once there is one", m)
	}

	without := newFixture(t, gateway.Policy{})
	_, err = without.core.Index(me, 0)
	errIs(t, err, gateway.ErrIndexOutOfRange)
}

func TestFindByInternal(t *testing.T) {
	f := newFixture(t, gateway.Policy{})
	me := "192.168.1.10"
	f.add(upnp(me), tcp(4000, me, 80))
	f.add(upnp(me), tcp(3000, me, 80))
	if m, ok := f.core.FindByInternal(addr(me), gateway.TCP, 80); !ok || m.ExternalPort != 3000 {
		t.Errorf("FindByInternal = %v, %v; want the lowest port 3000", m.ExternalPort, ok)
	}
	f.add(natpmp(me), tcp(5000, me, 80))
	if m, ok := f.core.FindByInternal(addr(me), gateway.TCP, 80); !ok || m.ExternalPort != 5000 {
		t.Errorf("FindByInternal = %v, %v; want the NAT-PMP mapping 5000", m.ExternalPort, ok)
	}
	for _, q := range []struct {
		owner string
		proto gateway.Protocol
		port  uint16
	}{{me, gateway.UDP, 80}, {me, gateway.TCP, 81}, {"192.168.1.11", gateway.TCP, 80}} {
		if m, ok := f.core.FindByInternal(addr(q.owner), q.proto, q.port); ok {
			t.Errorf("FindByInternal(%v) = %v, want nothing", q, m)
		}
	}
}

func TestBackendFailureLeavesTableUnchanged(t *testing.T) {
	f := newFixture(t, gateway.Policy{MaxPerClient: 1})
	next := events(t, f.core)
	c := upnp("192.168.1.10")
	boom := errors.New("netlink: operation not permitted")
	f.mem.SetFault(func(op string, r gateway.Rule) error { return boom })

	_, err := f.core.Add(ctx, c, tcp(8080, "192.168.1.10", 80))
	errIs(t, err, gateway.ErrBackend)
	errIs(t, err, boom)
	var be *gateway.BackendError
	if !errors.As(err, &be) || be.Op != "add" {
		t.Errorf("err = %v; want a *BackendError for add", err)
	}
	if f.core.Len() != 0 || f.store.len() != 0 {
		t.Fatalf("failed Add left table %d, store %d", f.core.Len(), f.store.len())
	}

	// The failed Add did not use up the quota.
	f.mem.SetFault(nil)
	held := f.add(c, tcp(8080, "192.168.1.10", 80))

	// A failed update keeps the old mapping, rule and lease.
	f.mem.SetFault(func(op string, r gateway.Rule) error { return boom })
	_, err = f.core.Add(ctx, c, tcp(8080, "192.168.1.10", 81))
	errIs(t, err, gateway.ErrBackend)
	if got, _ := f.core.Get(c, gateway.TCP, 8080, netip.Addr{}); !sameMapping(got, held) {
		t.Errorf("after failed update: %v, want %v", got, held)
	}
	// A failed delete keeps the mapping too.
	errIs(t, f.core.Delete(ctx, c, gateway.TCP, 8080, netip.Addr{}), gateway.ErrBackend)
	f.mem.SetFault(nil)
	f.checkConsistent()

	// Only the one successful Add produced an event.
	if e := next(1); e[0].Kind != gateway.EventAdded || e[0].Mapping.InternalPort != 80 {
		t.Errorf("event = %+v, want the one Add", e[0])
	}
	if err := f.core.Delete(ctx, c, gateway.TCP, 8080, netip.Addr{}); err != nil {
		t.Fatal(err)
	}
	if e := next(1); e[0].Kind != gateway.EventDeleted || e[0].Count != 0 {
		t.Errorf("event = %+v, want the Delete with Count 0", e[0])
	}
}

func TestStoreFailureUndoesBackend(t *testing.T) {
	f := newFixture(t, gateway.Policy{})
	c := upnp("192.168.1.10")
	held := f.add(c, tcp(8080, "192.168.1.10", 80))
	disk := errors.New("no space left on device")
	f.store.setFail(disk)

	_, err := f.core.Add(ctx, c, tcp(9090, "192.168.1.10", 90))
	errIs(t, err, gateway.ErrStore)
	errIs(t, err, disk)
	_, err = f.core.Add(ctx, c, tcp(8080, "192.168.1.10", 81)) // update
	errIs(t, err, gateway.ErrStore)
	errIs(t, f.core.Delete(ctx, c, gateway.TCP, 8080, netip.Addr{}), gateway.ErrStore)

	f.store.setFail(nil)
	if got, _ := f.core.Get(c, gateway.TCP, 8080, netip.Addr{}); !sameMapping(got, held) {
		t.Errorf("after failed writes: %v, want %v", got, held)
	}
	f.checkConsistent() // the backend was put back as it was
}

func TestDisabledMappingHoldsPortWithoutRule(t *testing.T) {
	f := newFixture(t, gateway.Policy{})
	c := upnp("192.168.1.10")
	m := tcp(8080, "192.168.1.10", 80)
	m.Enabled = false
	f.add(c, m)
	if f.mem.Len() != 0 {
		t.Errorf("disabled mapping installed a rule")
	}
	_, err := f.core.Add(ctx, upnp("192.168.1.11"), tcp(8080, "192.168.1.11", 80))
	errIs(t, err, gateway.ErrConflict)

	m.Enabled = true
	f.add(c, m)
	f.checkConsistent()
	m.Enabled = false
	f.add(c, m)
	f.checkConsistent()
}

func TestAdminMappingsAreTheAdminsOnly(t *testing.T) {
	f := newFixture(t, gateway.Policy{InsecureMode: true})
	f.add(admin, tcp(443, "192.168.1.10", 443))
	c := upnp("192.168.1.10")
	_, err := f.core.Add(ctx, c, tcp(443, "192.168.1.10", 8443))
	errIs(t, err, gateway.ErrConflict)
	errIs(t, f.core.Delete(ctx, c, gateway.TCP, 443, netip.Addr{}), gateway.ErrNotAuthorized)
	if err := f.core.Delete(ctx, admin, gateway.TCP, 443, netip.Addr{}); err != nil {
		t.Fatal(err)
	}
}

func TestMayDisableExternal(t *testing.T) {
	off := newFixture(t, gateway.Policy{})
	errIs(t, off.core.MayDisableExternal(upnp("192.168.1.10")), gateway.ErrNotAuthorized)
	if err := off.core.MayDisableExternal(admin); err != nil {
		t.Errorf("administrator refused: %v", err)
	}
	on := newFixture(t, gateway.Policy{AllowDisableExternal: true})
	if err := on.core.MayDisableExternal(upnp("192.168.1.10")); err != nil {
		t.Errorf("AllowDisableExternal set, still refused: %v", err)
	}
}

func TestEventsCarryCount(t *testing.T) {
	f := newFixture(t, gateway.Policy{})
	next := events(t, f.core)
	c := upnp("192.168.1.10")
	for p := uint16(1); p <= 3; p++ {
		f.add(c, tcp(p, "192.168.1.10", p))
	}
	f.core.Delete(ctx, c, gateway.TCP, 2, netip.Addr{})
	var counts []int
	for _, e := range next(4) {
		counts = append(counts, e.Count)
	}
	if want := []int{1, 2, 3, 2}; !slices.Equal(counts, want) {
		t.Errorf("counts = %v, want %v", counts, want)
	}
}

func TestClose(t *testing.T) {
	t.Run("without flush keeps rules and leases", func(t *testing.T) {
		f := newFixture(t, gateway.Policy{})
		f.add(upnp("192.168.1.10"), tcp(80, "192.168.1.10", 80))
		if err := f.core.Close(ctx, false); err != nil {
			t.Fatal(err)
		}
		if f.mem.Len() != 1 || f.store.len() != 1 {
			t.Errorf("backend %d, store %d; want both kept", f.mem.Len(), f.store.len())
		}
		_, err := f.core.Add(ctx, upnp("192.168.1.10"), tcp(81, "192.168.1.10", 81))
		errIs(t, err, gateway.ErrClosed)
		errIs(t, f.core.Delete(ctx, upnp("192.168.1.10"), gateway.TCP, 80, netip.Addr{}), gateway.ErrClosed)
	})
	t.Run("with flush removes everything", func(t *testing.T) {
		f := newFixture(t, gateway.Policy{})
		next := events(t, f.core)
		f.add(upnp("192.168.1.10"), tcp(80, "192.168.1.10", 80))
		next(1)
		if err := f.core.Close(ctx, true); err != nil {
			t.Fatal(err)
		}
		if f.mem.Len() != 0 || f.store.len() != 0 || f.core.Len() != 0 {
			t.Errorf("backend %d, store %d, table %d; want all empty", f.mem.Len(), f.store.len(), f.core.Len())
		}
		if e := next(1); e[0].Kind != gateway.EventDeleted || e[0].Count != 0 {
			t.Errorf("event = %+v, want a deletion leaving 0", e[0])
		}
	})
}

func TestNewRequiresBackendAndValidPolicy(t *testing.T) {
	if _, err := gateway.New(ctx, gateway.Config{}); err == nil {
		t.Error("New without a backend succeeded")
	}
	_, err := gateway.New(ctx, gateway.Config{Backend: gateway.NewMemory(), Policy: gateway.Policy{MinLease: time.Hour, MaxLease: time.Minute}})
	if err == nil {
		t.Error("New with MinLease > MaxLease succeeded")
	}
}

func TestLeaseSeconds(t *testing.T) {
	m := tcp(80, "192.168.1.10", 80)
	if m.LeaseSeconds(t0) != 0 {
		t.Errorf("permanent: %d, want 0", m.LeaseSeconds(t0))
	}
	for _, tt := range []struct {
		left time.Duration
		want uint32
	}{
		{1500 * time.Millisecond, 2}, {time.Hour, 3600}, {0, 1}, {-time.Hour, 1},
		{200 * 365 * 24 * time.Hour, 1<<32 - 1},
	} {
		m.Expires = t0.Add(tt.left)
		if got := m.LeaseSeconds(t0); got != tt.want {
			t.Errorf("%v left: %d, want %d", tt.left, got, tt.want)
		}
	}
}

// TestPMPAddDoesNotTakeOverAnotherInternalPort: NAT-PMP and PCP name a
// mapping by its internal port, so an exact Add (a PCP MAP with
// PREFER_FAILURE) for an external port the same host holds for another
// internal port is refused and the held mapping stays, whichever protocol
// made it; the same request for the held internal port is a refresh.
func TestPMPAddDoesNotTakeOverAnotherInternalPort(t *testing.T) {
	host := "192.168.1.10"
	pcpReq := gateway.Requester{Addr: netip.MustParseAddr(host), Source: gateway.SourcePCP}
	for _, first := range []gateway.Requester{natpmp(host), upnp(host), pcpReq} {
		t.Run(first.Source.String(), func(t *testing.T) {
			f := newFixture(t, gateway.Policy{})
			held := f.add(first, tcp(18083, host, 1000))

			_, err := f.core.Add(ctx, pcpReq, tcp(18083, host, 2000))
			errIs(t, err, gateway.ErrConflict)
			if got, err := f.core.Get(first, gateway.TCP, 18083, netip.Addr{}); err != nil || !sameMapping(got, held) {
				t.Errorf("after the refused Add the port holds %v (%v), want the first mapping %v", got, err, held)
			}

			refreshed := f.add(pcpReq, tcp(18083, host, 1000))
			if refreshed.InternalPort != 1000 || f.core.Len() != 1 {
				t.Errorf("a MAP for the held internal port = %v (Len %d), want the same mapping refreshed", refreshed, f.core.Len())
			}
			f.checkConsistent()
		})
	}
}
