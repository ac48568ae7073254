package gateway_test

import (
	"errors"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/portfwd/portfwd/gateway"
)

// poolOf returns n consecutive addresses from 198.51.100.1.
func poolOf(n int) []netip.Addr {
	var out []netip.Addr
	a := addr("198.51.100.1")
	for range n {
		out = append(out, a)
		a = a.Next()
	}
	return out
}

func pcpReq(a netip.Addr) gateway.Requester {
	return gateway.Requester{Addr: a, Source: gateway.SourcePCP}
}

// newPoolCore is a Core with a pool of 4 addresses, the first of which is
// the gateway's own external address.
func newPoolCore(t *testing.T, store gateway.Store) *gateway.Core {
	t.Helper()
	pool := poolOf(4)
	cfg := gateway.Config{Backend: gateway.NewMemory(), ExternalPool: pool,
		ExternalAddr: func() netip.Addr { return pool[0] }, Clock: newFakeClock()}
	if store != nil {
		cfg.Store = store
	}
	c, err := gateway.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(ctx, false) })
	return c
}

func TestPoolPairsEachSubscriberWithOneAddress(t *testing.T) {
	c := newPoolCore(t, nil)
	perAddr := map[netip.Addr]int{}
	for i := range 400 {
		sub := netip.AddrFrom4([4]byte{100, 64, byte(i >> 8), byte(i)})
		paired := c.PoolAddr(sub)
		if paired != c.PoolAddr(sub) {
			t.Fatal("PoolAddr is not stable")
		}
		for j := range 3 {
			got, err := c.AddAny(ctx, pcpReq(sub), gateway.Mapping{Protocol: gateway.UDP, ExternalAddr: paired,
				InternalAddr: sub, InternalPort: uint16(5000 + j), Enabled: true})
			if err != nil {
				t.Fatal(err)
			}
			if got.ExternalAddr != paired {
				t.Fatalf("%v: mapping on %v, paired with %v", sub, got.ExternalAddr, paired)
			}
		}
		perAddr[paired]++
		// Once it holds mappings, the subscriber stays on their address.
		if c.PoolAddr(sub) != paired {
			t.Fatalf("%v moved from %v to %v", sub, paired, c.PoolAddr(sub))
		}
	}
	// The own address is the zero Addr; the three others are named.
	if len(perAddr) != 4 {
		t.Fatalf("subscribers spread over %d addresses, want 4: %v", len(perAddr), perAddr)
	}
	for a, n := range perAddr {
		if n < 60 || n > 140 {
			t.Errorf("%v holds %d of 400 subscribers: not spread", a, n)
		}
	}
	if c.Len() != 1200 {
		t.Fatalf("table holds %d, want 1200", c.Len())
	}
}

func TestPoolAddressesHaveTheirOwnPorts(t *testing.T) {
	c := newPoolCore(t, nil)
	pool := c.ExternalPool()
	// The same protocol and port on the own address and on two pool
	// addresses are three mappings.
	for i, ext := range []netip.Addr{{}, pool[1], pool[2]} {
		host := netip.AddrFrom4([4]byte{10, 0, 0, byte(i + 1)})
		m := gateway.Mapping{Protocol: gateway.TCP, ExternalPort: 4000, ExternalAddr: ext, InternalAddr: host, InternalPort: 80, Enabled: true}
		if _, err := c.Add(ctx, pcpReq(host), m); err != nil {
			t.Fatalf("%v: %v", ext, err)
		}
	}
	// The own address named explicitly is the own address: taken.
	m := gateway.Mapping{Protocol: gateway.TCP, ExternalPort: 4000, ExternalAddr: pool[0], InternalAddr: addr("10.0.0.9"), InternalPort: 80, Enabled: true}
	var conflict *gateway.ConflictError
	if _, err := c.Add(ctx, pcpReq(addr("10.0.0.9")), m); !errors.As(err, &conflict) {
		t.Fatalf("own address named explicitly: %v, want a conflict", err)
	}
	// NAT-PMP and UPnP see the own address's mapping only.
	if got, err := c.Get(admin, gateway.TCP, 4000, netip.Addr{}); err != nil || got.InternalAddr != addr("10.0.0.1") {
		t.Fatalf("Get: %v %v", got, err)
	}
	if l := c.List(admin, gateway.TCP, 0, 65535, 0); len(l) != 1 {
		t.Fatalf("List shows %d mappings, want the own address's 1", len(l))
	}
	// A delete names the address.
	if err := c.Delete(ctx, pcpReq(addr("10.0.0.2")), gateway.TCP, 4000, netip.Addr{}); !errors.Is(err, gateway.ErrNotAuthorized) {
		t.Fatalf("Delete of the own address's mapping by another host: %v", err)
	}
	if err := c.DeleteAt(ctx, pcpReq(addr("10.0.0.2")), gateway.Key{Protocol: gateway.TCP, ExternalPort: 4000, ExternalAddr: pool[1]}, netip.Addr{}); err != nil {
		t.Fatal(err)
	}
	if c.Len() != 2 {
		t.Fatalf("%d left, want 2", c.Len())
	}
}

func TestPoolRefusals(t *testing.T) {
	c := newPoolCore(t, nil)
	host := addr("10.0.0.1")
	m := gateway.Mapping{Protocol: gateway.TCP, ExternalPort: 4000, ExternalAddr: addr("203.0.113.9"), InternalAddr: host, InternalPort: 80, Enabled: true}
	if _, err := c.Add(ctx, pcpReq(host), m); !errors.Is(err, gateway.ErrInvalidArgs) {
		t.Fatalf("address outside the pool: %v, want ErrInvalidArgs", err)
	}
	m.ExternalAddr = c.ExternalPool()[2]
	m.RemoteHost = addr("192.0.2.1")
	if _, err := c.Add(ctx, pcpReq(host), m); !errors.Is(err, gateway.ErrRemoteHostNotSupported) {
		t.Fatalf("remote host on a pool address: %v, want ErrRemoteHostNotSupported", err)
	}
	// Without a pool, no mapping has an address.
	plain, err := gateway.New(ctx, gateway.Config{Backend: gateway.NewMemory()})
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close(ctx, false)
	m.RemoteHost = netip.Addr{}
	if _, err := plain.Add(ctx, pcpReq(host), m); !errors.Is(err, gateway.ErrInvalidArgs) {
		t.Fatalf("pool address without a pool: %v, want ErrInvalidArgs", err)
	}
	// A backend that cannot forward from a pool is refused at start.
	if _, err := gateway.New(ctx, gateway.Config{Backend: noPool{gateway.NewMemory()}, ExternalPool: poolOf(2)}); err == nil {
		t.Fatal("a pool with a backend without pool support was accepted")
	}
	for _, bad := range [][]netip.Addr{{addr("2001:db8::1")}, {addr("198.51.100.1"), addr("198.51.100.1")}, {addr("0.0.0.0")}} {
		if _, err := gateway.New(ctx, gateway.Config{Backend: gateway.NewMemory(), ExternalPool: bad}); err == nil {
			t.Errorf("pool %v accepted", bad)
		}
	}
}

// noPool hides Memory's pool support.
type noPool struct{ *gateway.Memory }

func (noPool) SupportsPool() bool { return false }

// The journal keeps a mapping's pool address across a restart, and deletes
// by address; a journal without pool records (every earlier one) reads as
// before, which the other FileStore tests show.
func TestPoolLeasesSurviveARestart(t *testing.T) {
	dir := t.TempDir()
	s, err := gateway.OpenFileStore(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := newPoolCore(t, s)
	pool := c.ExternalPool()
	var keep, drop gateway.Mapping
	for i, ext := range []netip.Addr{pool[1], pool[3], {}} {
		host := netip.AddrFrom4([4]byte{10, 0, 0, byte(i + 1)})
		m := gateway.Mapping{Protocol: gateway.UDP, ExternalPort: 7000, ExternalAddr: ext, InternalAddr: host, InternalPort: 70,
			Enabled: true, Expires: c.Now().Add(time.Hour), Nonce: [12]byte{byte(i)}}
		got, err := c.Add(ctx, pcpReq(host), m)
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			keep = got
		} else if i == 1 {
			drop = got
		}
	}
	if err := c.DeleteAt(ctx, admin, drop.Key(), netip.Addr{}); err != nil {
		t.Fatal(err)
	}
	c.Close(ctx, false)
	s.Close()

	s, err = gateway.OpenFileStore(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	saved, err := s.Load()
	if err != nil {
		t.Fatal(err)
	}
	byKey := map[gateway.Key]gateway.Mapping{}
	for _, m := range saved {
		byKey[m.Key()] = m
	}
	if len(byKey) != 2 {
		t.Fatalf("restored %d leases, want 2: %v", len(byKey), saved)
	}
	if got, ok := byKey[keep.Key()]; !ok || got.ExternalAddr != pool[1] || got.Nonce != keep.Nonce {
		t.Fatalf("lease on %v: %+v", pool[1], got)
	}
	if _, ok := byKey[gateway.Key{Protocol: gateway.UDP, ExternalPort: 7000}]; !ok {
		t.Fatal("the own address's lease is gone")
	}
	c2 := newPoolCore(t, s)
	if c2.Len() != 2 || c2.PoolAddr(addr("10.0.0.1")) != pool[1] {
		t.Fatalf("restored Core: %d mappings, 10.0.0.1 paired with %v", c2.Len(), c2.PoolAddr(addr("10.0.0.1")))
	}
}

// A FileStore hands its leases over one at a time (EachLoader), so New
// restores them without a sorted copy; when a lowered quota must choose
// among them, it starts again with the whole list, oldest first, and
// records each dropped lease once.
func TestRestoreFromFileStoreStreamsAndKeepsOldestUnderLoweredQuota(t *testing.T) {
	dir := t.TempDir()
	clock := newFakeClock()
	open := func(pol gateway.Policy, audit func(gateway.AuditRecord)) (*gateway.Core, *gateway.FileStore) {
		s, err := gateway.OpenFileStore(dir, &gateway.FileStoreOptions{Clock: clock})
		if err != nil {
			t.Fatal(err)
		}
		c, err := gateway.New(ctx, gateway.Config{Backend: gateway.NewMemory(), Store: s, Clock: clock, Policy: pol, Audit: audit})
		if err != nil {
			t.Fatal(err)
		}
		return c, s
	}
	c, s := open(gateway.Policy{}, nil)
	host := "192.168.1.10"
	for i, p := range []uint16{3000, 1000, 2000, 4000} {
		clock.Advance(time.Second * time.Duration(i+1))
		if _, err := c.Add(ctx, upnp(host), tcp(p, host, p)); err != nil {
			t.Fatal(err)
		}
	}
	c.Close(ctx, false)
	s.Close()

	c, s = open(gateway.Policy{}, nil) // no quota: streamed
	if c.Len() != 4 {
		t.Fatalf("restored %d, want 4", c.Len())
	}
	c.Close(ctx, false)
	s.Close()

	var dropped []uint16
	c, s = open(gateway.Policy{MaxPerClient: 2}, func(r gateway.AuditRecord) {
		if r.Event == gateway.AuditDropped {
			dropped = append(dropped, r.ExternalPort)
		}
	})
	defer s.Close()
	defer c.Close(ctx, false)
	var kept []uint16
	for _, m := range c.List(admin, gateway.TCP, 0, 65535, 0) {
		kept = append(kept, m.ExternalPort)
	}
	if len(kept) != 2 || kept[0] != 1000 || kept[1] != 3000 {
		t.Errorf("kept %v, want the two oldest, 1000 and 3000", kept)
	}
	slices.Sort(dropped)
	if len(dropped) != 2 || dropped[0] != 2000 || dropped[1] != 4000 {
		t.Errorf("dropped %v, recorded once each; want 2000 and 4000", dropped)
	}
}

// TestPoolIndexSeesTheOwnAddressOnly: UPnP's i-th entry (Index), its
// count (OwnAddrLen) and the events' Count cover the gateway's own
// address only, whatever the pool holds and however the table churns;
// All lists every address's.
func TestPoolIndexSeesTheOwnAddressOnly(t *testing.T) {
	c := newPoolCore(t, nil)
	pool := c.ExternalPool()
	own := map[uint16]bool{}
	for i := range 300 {
		host := netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)})
		ext := netip.Addr{}
		if i%3 != 0 {
			ext = pool[1+i%3]
		} else {
			own[uint16(5000+i)] = true
		}
		m := gateway.Mapping{Protocol: gateway.UDP, ExternalPort: uint16(5000 + i), ExternalAddr: ext, InternalAddr: host, InternalPort: 80, Enabled: true}
		if _, err := c.Add(ctx, pcpReq(host), m); err != nil {
			t.Fatal(err)
		}
	}
	// Churn: delete some of each kind, the swap-removes move entries.
	for i := 0; i < 300; i += 7 {
		ext := netip.Addr{}
		if i%3 != 0 {
			ext = pool[1+i%3]
		} else {
			delete(own, uint16(5000+i))
		}
		if err := c.DeleteAt(ctx, admin, gateway.Key{Protocol: gateway.UDP, ExternalPort: uint16(5000 + i), ExternalAddr: ext}, netip.Addr{}); err != nil {
			t.Fatal(err)
		}
	}
	if n := c.OwnAddrLen(); n != len(own) {
		t.Fatalf("OwnAddrLen = %d, want %d", n, len(own))
	}
	if n, all := c.Len(), len(c.All()); n != all || n <= len(own) {
		t.Fatalf("Len %d, All %d: want every address's, more than the own %d", n, all, len(own))
	}
	seen := map[uint16]bool{}
	for i := range len(own) {
		m, err := c.Index(admin, i)
		if err != nil {
			t.Fatalf("Index(%d): %v", i, err)
		}
		if m.ExternalAddr.IsValid() || !own[m.ExternalPort] || seen[m.ExternalPort] {
			t.Fatalf("Index(%d) = %v: not one of the own address's, or twice", i, m.Key())
		}
		seen[m.ExternalPort] = true
	}
	if _, err := c.Index(admin, len(own)); !errors.Is(err, gateway.ErrIndexOutOfRange) {
		t.Fatalf("Index past the own address's entries: %v", err)
	}
}
