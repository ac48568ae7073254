package gateway_test

import (
	"cmp"
	"context"
	"errors"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/portfwd/portfwd/gateway"
	"github.com/portfwd/portfwd/gateway/clocktest"
)

// t0 is the fake clock's start; any fixed instant works.
var t0 = time.Date(2025, 3, 14, 15, 9, 26, 0, time.UTC)

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

// upnp, natpmp and pcp build requesters for a LAN host.
func upnp(s string) gateway.Requester {
	return gateway.Requester{Addr: addr(s), Source: gateway.SourceUPnP}
}
func natpmp(s string) gateway.Requester {
	return gateway.Requester{Addr: addr(s), Source: gateway.SourceNATPMP}
}

var admin = gateway.Requester{Source: gateway.SourceAdmin}

// mapping is an enabled, permanent mapping of ext on proto to host:port.
func mapping(proto gateway.Protocol, ext uint16, host string, port uint16) gateway.Mapping {
	return gateway.Mapping{Protocol: proto, ExternalPort: ext, InternalAddr: addr(host), InternalPort: port, Enabled: true}
}

func tcp(ext uint16, host string, port uint16) gateway.Mapping {
	return mapping(gateway.TCP, ext, host, port)
}

// memStore is an in-memory Store that can be told to fail.
type memStore struct {
	mu    sync.Mutex
	m     map[gateway.Key]gateway.Mapping
	fail  error
	saves int
}

func newMemStore() *memStore { return &memStore{m: make(map[gateway.Key]gateway.Mapping)} }

func (s *memStore) Load() ([]gateway.Mapping, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]gateway.Mapping, 0, len(s.m))
	for _, m := range s.m {
		out = append(out, m)
	}
	return out, nil
}

func (s *memStore) Save(put []gateway.Mapping, del []gateway.Key) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return s.fail
	}
	s.saves++
	for _, m := range put {
		s.m[m.Key()] = m
	}
	for _, k := range del {
		delete(s.m, k)
	}
	return nil
}

func (s *memStore) setFail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fail = err
}

func (s *memStore) get(k gateway.Key) (gateway.Mapping, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, ok := s.m[k]
	return m, ok
}

func (s *memStore) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}

// fixture is a Core over a Memory backend, a memStore and a fake clock.
type fixture struct {
	t     testing.TB
	clock *clocktest.Fake
	mem   *gateway.Memory
	store *memStore
	core  *gateway.Core
}

func newFixture(t testing.TB, pol gateway.Policy) *fixture {
	t.Helper()
	f := &fixture{t: t, clock: clocktest.New(t0), mem: gateway.NewMemory(), store: newMemStore()}
	f.start(pol)
	return f
}

// start (re)creates the Core over the fixture's backend, store and clock.
func (f *fixture) start(pol gateway.Policy) {
	f.t.Helper()
	c, err := gateway.New(context.Background(), gateway.Config{
		Backend: f.mem, Store: f.store, Clock: f.clock, Policy: pol,
	})
	if err != nil {
		f.t.Fatalf("New: %v", err)
	}
	f.core = c
	f.t.Cleanup(func() { c.Close(context.Background(), false) })
}

func (f *fixture) add(req gateway.Requester, m gateway.Mapping) gateway.Mapping {
	f.t.Helper()
	got, err := f.core.Add(context.Background(), req, m)
	if err != nil {
		f.t.Fatalf("Add(%v, %v): %v", req.Addr, m, err)
	}
	return got
}

// lease returns an expiry d from the fixture's now.
func (f *fixture) lease(d time.Duration) time.Time { return f.clock.Now().Add(d) }

// all returns the whole table as the administrator sees it, by key order.
func (f *fixture) all() []gateway.Mapping {
	var out []gateway.Mapping
	for i := 0; ; i++ {
		m, err := f.core.Index(admin, i)
		if errors.Is(err, gateway.ErrIndexOutOfRange) {
			break
		}
		if err != nil {
			f.t.Fatalf("Index(%d): %v", i, err)
		}
		out = append(out, m)
	}
	slices.SortFunc(out, byKey)
	return out
}

func byKey(a, b gateway.Mapping) int {
	if c := cmp.Compare(a.Protocol, b.Protocol); c != 0 {
		return c
	}
	return cmp.Compare(a.ExternalPort, b.ExternalPort)
}

// checkConsistent fails the test unless the table, the backend and the
// store agree: the backend holds exactly the enabled mappings' rules, and
// the store exactly the table.
func (f *fixture) checkConsistent() {
	f.t.Helper()
	table := f.all()
	if len(table) != f.core.Len() {
		f.t.Errorf("Index enumerates %d mappings, Len says %d", len(table), f.core.Len())
	}
	var want []gateway.Rule
	for _, m := range table {
		if m.Enabled {
			want = append(want, m.Rule())
		}
	}
	if got := f.mem.Rules(); !slices.Equal(got, want) {
		f.t.Errorf("backend rules disagree with the table:\nbackend %v\ntable   %v", got, want)
	}
	if f.store.len() != len(table) {
		f.t.Errorf("store holds %d leases, table %d", f.store.len(), len(table))
	}
	for _, m := range table {
		s, ok := f.store.get(m.Key())
		if !ok || !sameMapping(s, m) {
			f.t.Errorf("store has %v (present %v), table has %v", s, ok, m)
		}
	}
}

// sameMapping compares mappings field by field, times with Equal.
func sameMapping(a, b gateway.Mapping) bool {
	return a.Protocol == b.Protocol && a.ExternalPort == b.ExternalPort && a.InternalAddr == b.InternalAddr &&
		a.InternalPort == b.InternalPort && a.RemoteHost == b.RemoteHost && a.Enabled == b.Enabled &&
		a.Description == b.Description && a.Expires.Equal(b.Expires) && a.Owner == b.Owner &&
		a.Source == b.Source && a.Nonce == b.Nonce && a.Created.Equal(b.Created)
}

// events subscribes to c and returns a function that waits for the next n
// events.
func events(t testing.TB, c *gateway.Core) func(n int) []gateway.Event {
	ch := make(chan gateway.Event, 1024)
	cancel := c.Subscribe(func(e gateway.Event) { ch <- e })
	t.Cleanup(cancel)
	return func(n int) []gateway.Event {
		t.Helper()
		var out []gateway.Event
		timeout := time.After(5 * time.Second)
		for len(out) < n {
			select {
			case e := <-ch:
				out = append(out, e)
			case <-timeout:
				t.Fatalf("got %d events, want %d: %v", len(out), n, out)
			}
		}
		return out
	}
}

// errIs fails unless errors.Is(err, target).
func errIs(t testing.TB, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("error = %v, want %v", err, target)
	}
}
