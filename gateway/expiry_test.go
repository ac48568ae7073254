package gateway_test

import (
	"errors"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/portfwd/portfwd/gateway"
)

func TestLeaseExpires(t *testing.T) {
	f := newFixture(t, gateway.Policy{})
	next := events(t, f.core)
	c := upnp("192.168.1.10")
	m := tcp(8080, "192.168.1.10", 80)
	m.Expires = f.lease(10 * time.Second)
	f.add(c, m)
	next(1)

	f.clock.Advance(10*time.Second - time.Nanosecond)
	if f.core.Len() != 1 {
		t.Fatalf("mapping gone before its lease ended")
	}
	f.clock.Advance(time.Nanosecond)
	if f.core.Len() != 0 || f.mem.Len() != 0 || f.store.len() != 0 {
		t.Fatalf("after expiry: table %d, backend %d, store %d; want all empty", f.core.Len(), f.mem.Len(), f.store.len())
	}
	if e := next(1)[0]; e.Kind != gateway.EventExpired || e.Count != 0 || e.Mapping.ExternalPort != 8080 {
		t.Errorf("event = %+v, want expiry of 8080 leaving 0", e)
	}
}

func TestRefreshExtendsLease(t *testing.T) {
	f := newFixture(t, gateway.Policy{})
	c := upnp("192.168.1.10")
	m := tcp(8080, "192.168.1.10", 80)
	m.Expires = f.lease(10 * time.Second)
	f.add(c, m)

	f.clock.Advance(5 * time.Second)
	m.Expires = f.lease(10 * time.Second)
	f.add(c, m)

	f.clock.Advance(6 * time.Second) // past the first lease
	if f.core.Len() != 1 {
		t.Fatal("refreshed mapping expired at its old lease end")
	}
	f.clock.Advance(4 * time.Second)
	if f.core.Len() != 0 {
		t.Fatal("refreshed mapping outlived its new lease")
	}
	f.checkConsistent()
}

func TestPermanentMappingsDoNotExpire(t *testing.T) {
	f := newFixture(t, gateway.Policy{})
	f.add(upnp("192.168.1.10"), tcp(8080, "192.168.1.10", 80))
	f.clock.Advance(365 * 24 * time.Hour)
	if f.core.Len() != 1 {
		t.Fatal("permanent mapping expired")
	}
}

func TestExpiryUsesOneTimerInLeaseOrder(t *testing.T) {
	f := newFixture(t, gateway.Policy{})
	rng := rand.New(rand.NewPCG(1, 2))
	const n = 1000
	leases := make(map[uint16]time.Duration)
	for p := uint16(1); p <= n; p++ {
		d := time.Duration(1+rng.IntN(600)) * time.Second
		m := tcp(p, "192.168.1.10", p)
		m.Expires = f.lease(d)
		f.add(upnp("192.168.1.10"), m)
		leases[p] = d
		if got := f.clock.Pending(); got > 1 {
			t.Fatalf("%d timers armed after %d adds, want one", got, p)
		}
	}
	// Step through time; after each step exactly the mappings whose lease
	// has not ended remain.
	for elapsed := time.Duration(0); elapsed <= 601*time.Second; elapsed += 7 * time.Second {
		f.clock.Set(t0.Add(elapsed))
		want := 0
		for _, d := range leases {
			if d > elapsed {
				want++
			}
		}
		if got := f.core.Len(); got != want {
			t.Fatalf("at +%v: %d mappings, want %d", elapsed, got, want)
		}
	}
	f.checkConsistent()
}

func TestTimerNeverSleepsPastAMinute(t *testing.T) {
	// Leases end at wall-clock times; the cap bounds how late expiry
	// notices a wall-clock step (a router without RTC syncing NTP).
	f := newFixture(t, gateway.Policy{})
	m := tcp(8080, "192.168.1.10", 80)
	m.Expires = f.lease(24 * time.Hour)
	f.add(upnp("192.168.1.10"), m)
	at, ok := f.clock.NextDeadline()
	if !ok || at.After(t0.Add(time.Minute)) {
		t.Errorf("timer armed for %v (armed %v), want within a minute of now", at, ok)
	}
}

func TestExpiryRetriesWhenBackendFails(t *testing.T) {
	f := newFixture(t, gateway.Policy{})
	m := tcp(8080, "192.168.1.10", 80)
	m.Expires = f.lease(10 * time.Second)
	f.add(upnp("192.168.1.10"), m)
	f.mem.SetFault(func(op string, r gateway.Rule) error {
		if op == "delete" {
			return errors.New("netlink: device busy")
		}
		return nil
	})

	f.clock.Advance(10 * time.Second)
	// The rule could not be removed, so the table keeps saying it exists.
	if f.core.Len() != 1 || f.mem.Len() != 1 {
		t.Fatalf("table %d, backend %d; want the mapping kept while its rule is installed", f.core.Len(), f.mem.Len())
	}
	deletes := f.mem.Calls().Delete
	f.clock.Advance(5 * time.Second) // within the back-off: no hammering
	if f.mem.Calls().Delete != deletes {
		t.Errorf("expiry retried %d times within the back-off", f.mem.Calls().Delete-deletes)
	}
	f.mem.SetFault(nil)
	f.clock.Advance(time.Minute)
	if f.core.Len() != 0 || f.mem.Len() != 0 {
		t.Fatalf("table %d, backend %d after the backend recovered; want both empty", f.core.Len(), f.mem.Len())
	}
}

func TestDeleteOfExpiringMappingRacesSafely(t *testing.T) {
	// A delete and a refresh after expiry must both see a consistent table.
	f := newFixture(t, gateway.Policy{})
	c := upnp("192.168.1.10")
	m := tcp(8080, "192.168.1.10", 80)
	m.Expires = f.lease(time.Second)
	f.add(c, m)
	f.clock.Advance(time.Second)
	errIs(t, f.core.Delete(ctx, c, gateway.TCP, 8080, netip.Addr{}), gateway.ErrNoSuchEntry)
	m.Expires = f.lease(time.Minute)
	f.add(c, m)
	f.checkConsistent()
}
