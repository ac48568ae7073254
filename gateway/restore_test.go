package gateway_test

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/portfwd/portfwd/gateway"
	"github.com/portfwd/portfwd/gateway/clocktest"
)

func TestRestore(t *testing.T) {
	f := newFixture(t, gateway.Policy{})
	a, b := upnp("192.168.1.10"), upnp("192.168.2.20")
	short := tcp(1000, "192.168.1.10", 1)
	short.Expires = f.lease(time.Minute)
	long := tcp(1001, "192.168.1.10", 2)
	long.Expires = f.lease(time.Hour)
	f.add(a, short)
	f.add(a, long)
	f.add(b, tcp(1002, "192.168.2.20", 3)) // the new policy will deny this client
	f.add(a, tcp(22, "192.168.1.10", 22))  // and reserve this port
	perm := f.add(a, tcp(1003, "192.168.1.10", 4))
	if err := f.core.Close(ctx, false); err != nil {
		t.Fatal(err)
	}

	// Reboot two minutes later: fresh backend holding a stale rule, new policy.
	f.clock.Advance(2 * time.Minute)
	f.mem = gateway.NewMemory()
	stray := gateway.Rule{Protocol: gateway.UDP, ExternalPort: 9999, InternalAddr: addr("192.168.1.99"), InternalPort: 9}
	f.mem.Add(ctx, stray)
	rule, _ := gateway.ParsePermRule("allow 0-65535 192.168.1.0/24 0-65535")
	f.start(gateway.Policy{
		Rules:    []gateway.PermRule{rule},
		Reserved: []gateway.PortSpec{{Protocol: gateway.TCP, Ports: gateway.PortRange{Min: 22, Max: 22}}},
		MaxLease: 30 * time.Minute,
	})

	var ports []uint16
	for _, m := range f.all() {
		ports = append(ports, m.ExternalPort)
	}
	if len(ports) != 2 || ports[0] != 1001 || ports[1] != 1003 {
		t.Fatalf("restored %v, want [1001 1003]: 1000 expired, 1002 denied, 22 reserved", ports)
	}
	// MaxLease now applies: the hour lease is cut to 30 minutes from now, and
	// the permanent mapping gets 30 minutes too.
	now := t0.Add(2 * time.Minute)
	for _, p := range []uint16{1001, 1003} {
		m, _ := f.core.Get(a, gateway.TCP, p, netip.Addr{})
		if !m.Expires.Equal(now.Add(30 * time.Minute)) {
			t.Errorf("%d: Expires %v, want %v", p, m.Expires, now.Add(30*time.Minute))
		}
	}
	got, _ := f.core.Get(a, gateway.TCP, 1003, netip.Addr{})
	if !got.Created.Equal(perm.Created) || got.Owner != perm.Owner || got.Source != perm.Source {
		t.Errorf("restored %+v, want the saved owner, source and creation time of %+v", got, perm)
	}
	if _, ok := f.mem.Rule(gateway.Key{Protocol: gateway.UDP, ExternalPort: 9999}); ok {
		t.Error("a rule from before the restart survived; New must flush the backend")
	}
	f.checkConsistent() // backend re-applied, store rewritten
}

func TestRestoreKeepsOldestUnderLoweredQuota(t *testing.T) {
	f := newFixture(t, gateway.Policy{})
	c := upnp("192.168.1.10")
	for i, p := range []uint16{3000, 1000, 2000} {
		f.clock.Advance(time.Second * time.Duration(i+1))
		f.add(c, tcp(p, "192.168.1.10", p))
	}
	f.core.Close(ctx, false)
	f.start(gateway.Policy{MaxPerClient: 2})
	all := f.all()
	if len(all) != 2 || all[0].ExternalPort != 1000 || all[1].ExternalPort != 3000 {
		t.Errorf("kept %v, want the two oldest (3000 then 1000)", all)
	}
}

// A saved lease the backend refuses at start is parked: kept in the store
// for the next start, left out of the table, while every other lease is
// served. The backend is never flushed first: rules that were already
// right keep forwarding, untouched.
func TestRestoreParksWhatTheBackendRefusesAndServesTheRest(t *testing.T) {
	f := newFixture(t, gateway.Policy{})
	a := upnp("192.168.1.10")
	f.add(a, tcp(80, "192.168.1.10", 80))
	f.add(a, tcp(81, "192.168.1.10", 81))
	f.add(a, tcp(82, "192.168.1.10", 82))
	f.core.Close(ctx, false)
	before := f.mem.Calls()

	var audit []gateway.AuditRecord
	f.mem.SetFault(func(op string, r gateway.Rule) error {
		switch {
		case op == "flush":
			return errors.New("flushed before applying")
		case op == "add" && r.ExternalPort == 81:
			return errors.New("nf_tables: no such address family")
		}
		return nil
	})
	// The backend lost rule 82 meanwhile; 80 is still installed.
	f.mem.Delete(ctx, tcp(82, "192.168.1.10", 82).Rule())
	f.mem.Delete(ctx, tcp(81, "192.168.1.10", 81).Rule())
	c, err := gateway.New(ctx, gateway.Config{Backend: f.mem, Store: f.store, Clock: f.clock,
		Audit: func(r gateway.AuditRecord) { audit = append(audit, r) }})
	if err != nil {
		t.Fatalf("a start with one refused lease failed: %v", err)
	}
	defer c.Close(ctx, false)
	if c.Len() != 2 {
		t.Errorf("serving %d mappings, want 80 and 82", c.Len())
	}
	if p := c.Parked(); len(p) != 1 || p[0].ExternalPort != 81 {
		t.Errorf("parked %v, want 81", p)
	}
	if f.store.len() != 3 {
		t.Errorf("store holds %d leases, want all 3 (the parked one kept for the next start)", f.store.len())
	}
	calls := f.mem.Calls()
	if calls.Flush != before.Flush {
		t.Error("the backend was flushed at start")
	}
	// 80 was installed and right: not touched. 82 re-added, 81 tried.
	if adds := calls.Add - before.Add; adds != 2 {
		t.Errorf("%d adds at start, want 2 (81 refused, 82 re-added)", adds)
	}
	if _, ok := f.mem.Rule(gateway.Key{Protocol: gateway.TCP, ExternalPort: 81}); ok {
		t.Error("the refused lease is installed")
	}
	if len(audit) != 1 || audit[0].Event != gateway.AuditParked || audit[0].ExternalPort != 81 {
		t.Errorf("audit %+v, want one parked record for 81", audit)
	}
}

// A listing backend holding rules that are no lease any more (expired
// while the gateway was down, or never recorded) is cleaned up after the
// leases are applied.
func TestRestoreRemovesLeftoverRulesAfterApplying(t *testing.T) {
	f := newFixture(t, gateway.Policy{})
	f.add(upnp("192.168.1.10"), tcp(80, "192.168.1.10", 80))
	f.core.Close(ctx, false)
	var order []string
	f.mem.Add(ctx, gateway.Rule{Protocol: gateway.UDP, ExternalPort: 9999, InternalAddr: addr("192.168.1.99"), InternalPort: 9})
	f.mem.Delete(ctx, tcp(80, "192.168.1.10", 80).Rule())
	f.mem.SetFault(func(op string, r gateway.Rule) error {
		order = append(order, op)
		return nil
	})
	f.start(gateway.Policy{})
	if want := []string{"list", "add", "delete"}; !slices.Equal(order, want) {
		t.Errorf("backend calls %v, want %v: apply, then remove what is left", order, want)
	}
	f.checkConsistent()
}

func TestRestoreFromFileStoreAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	clock := clocktest.New(t0)
	run := func(fn func(c *gateway.Core, mem *gateway.Memory, s *gateway.FileStore)) {
		t.Helper()
		s, err := gateway.OpenFileStore(dir, &gateway.FileStoreOptions{Clock: clock})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		mem := gateway.NewMemory()
		c, err := gateway.New(context.Background(), gateway.Config{Backend: mem, Store: s, Clock: clock})
		if err != nil {
			t.Fatal(err)
		}
		fn(c, mem, s)
	}
	var uuid string
	var epoch time.Time
	run(func(c *gateway.Core, _ *gateway.Memory, s *gateway.FileStore) {
		uuid, epoch = s.UUID(), s.EpochOrigin()
		m := tcp(8080, "192.168.1.10", 80)
		m.Expires = clock.Now().Add(time.Hour)
		m.Description = "game server"
		m.Nonce = [12]byte{1, 2, 3}
		if _, err := c.Add(ctx, upnp("192.168.1.10"), m); err != nil {
			t.Fatal(err)
		}
		c.Close(ctx, false)
	})
	clock.Advance(time.Minute)
	run(func(c *gateway.Core, mem *gateway.Memory, s *gateway.FileStore) {
		if s.UUID() != uuid || !s.EpochOrigin().Equal(epoch) {
			t.Errorf("UUID %s epoch %v after restart, want %s %v", s.UUID(), s.EpochOrigin(), uuid, epoch)
		}
		m, err := c.Get(upnp("192.168.1.10"), gateway.TCP, 8080, netip.Addr{})
		if err != nil || m.Description != "game server" || m.Nonce != [12]byte{1, 2, 3} || !m.Expires.Equal(t0.Add(time.Hour)) {
			t.Errorf("restored %+v, %v", m, err)
		}
		if mem.Len() != 1 {
			t.Errorf("backend has %d rules, want the restored one", mem.Len())
		}
		c.Close(ctx, true) // a flush forgets the leases
	})
	clock.Advance(time.Minute)
	run(func(c *gateway.Core, _ *gateway.Memory, s *gateway.FileStore) {
		if c.Len() != 0 {
			t.Errorf("%d leases back after Close with flush", c.Len())
		}
		if s.UUID() != uuid {
			t.Errorf("UUID changed to %s", s.UUID())
		}
		// No mappings survived, so clients must be told: a new epoch.
		if !s.EpochOrigin().After(epoch) {
			t.Errorf("epoch origin %v not reset after the leases were flushed (was %v)", s.EpochOrigin(), epoch)
		}
	})
}
