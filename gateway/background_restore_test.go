package gateway_test

import (
	"context"
	"net/netip"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portfwd/portfwd/gateway"
)

// gatedBackend is a Memory whose first Add waits until the test opens
// the gate, so that a test can act while the restored leases' first batch
// is being re-applied.
type gatedBackend struct {
	*gateway.Memory
	first   atomic.Bool
	entered chan struct{} // closed when the first Add arrives
	gate    chan struct{} // the first Add goes on once this is closed
}

func newGatedBackend(m *gateway.Memory) *gatedBackend {
	return &gatedBackend{Memory: m, entered: make(chan struct{}), gate: make(chan struct{})}
}

func (b *gatedBackend) Add(ctx context.Context, r gateway.Rule) error {
	if b.first.CompareAndSwap(false, true) {
		close(b.entered)
		<-b.gate
	}
	return b.Memory.Add(ctx, r)
}

// startInBackground restarts the fixture's Core over backend with
// Config.ApplyInBackground.
func (f *fixture) startInBackground(backend gateway.Backend) {
	f.t.Helper()
	c, err := gateway.New(context.Background(), gateway.Config{
		Backend: backend, Store: f.store, Clock: f.clock, ApplyInBackground: true,
	})
	if err != nil {
		f.t.Fatalf("New: %v", err)
	}
	f.core = c
	f.t.Cleanup(func() { c.Close(context.Background(), false) })
}

// With ApplyInBackground, New serves as soon as the table is restored,
// and the leases reach the backend afterwards. The table decides: a
// request on a lease that is not in the backend yet works as on any
// other, and once the re-application is done the backend holds exactly
// the table's mappings, whatever the requests did meanwhile.
func TestApplyInBackgroundServesFirstAndTheTableDecides(t *testing.T) {
	f := newFixture(t, gateway.Policy{})
	c := upnp("192.168.1.10")
	const leases = 600 // two batches: 512 and 88, in port order
	for p := uint16(1001); p <= 1000+leases; p++ {
		f.add(c, tcp(p, "192.168.1.10", p))
	}
	f.core.Close(ctx, false)

	// A new process: an empty backend, whose first Add holds the first
	// batch (ports 1001-1512) until the gate opens.
	f.mem = gateway.NewMemory()
	stray := gateway.Rule{Protocol: gateway.UDP, ExternalPort: 9999, InternalAddr: addr("192.168.1.99"), InternalPort: 9}
	f.mem.Add(ctx, stray) // left by an earlier run, no lease holds it
	backend := newGatedBackend(f.mem)
	f.startInBackground(backend)
	<-backend.entered

	if f.core.Len() != leases {
		t.Fatalf("serving with %d leases, want %d", f.core.Len(), leases)
	}
	select {
	case <-f.core.Applied():
		t.Fatal("Applied is closed while the first batch is still being applied")
	default:
	}
	// A lease of the held batch: its delete waits for the batch.
	deleted := make(chan error, 1)
	go func() { deleted <- f.core.Delete(ctx, c, gateway.TCP, 1001, netip.Addr{}) }()
	// Leases of the second batch, not in the backend yet: deleted and
	// changed at once, and a new mapping made.
	if err := f.core.Delete(ctx, c, gateway.TCP, 1513, netip.Addr{}); err != nil {
		t.Fatalf("deleting a lease not yet re-applied: %v", err)
	}
	f.add(c, tcp(1514, "192.168.1.10", 4444))
	renewed := tcp(1515, "192.168.1.10", 1515) // the same rule: nothing for the backend to do
	renewed.Description = "renewed"
	f.add(c, renewed)
	f.add(c, tcp(2000, "192.168.1.10", 2000))
	select {
	case err := <-deleted:
		t.Fatalf("a delete of a lease in the batch being applied returned (%v) before the batch", err)
	default:
	}

	close(backend.gate)
	if err := <-deleted; err != nil {
		t.Fatalf("deleting a lease of the batch being applied: %v", err)
	}
	<-f.core.Applied()
	if f.core.Len() != leases-2+1 {
		t.Fatalf("%d leases, want %d", f.core.Len(), leases-1)
	}
	for _, k := range []uint16{1001, 1513} {
		if _, ok := f.mem.Rule(gateway.Key{Protocol: gateway.TCP, ExternalPort: k}); ok {
			t.Errorf("the backend holds %d, deleted while the leases were being re-applied", k)
		}
	}
	if r, _ := f.mem.Rule(gateway.Key{Protocol: gateway.TCP, ExternalPort: 1514}); r.InternalPort != 4444 {
		t.Errorf("the backend forwards 1514 to port %d, want 4444 as changed while re-applying", r.InternalPort)
	}
	if _, ok := f.mem.Rule(stray.Key()); ok {
		t.Error("a rule left by an earlier run, which no lease holds, survived the re-application")
	}
	f.checkConsistent()
}

// Close stops the re-application at its next batch and waits for it.
func TestApplyInBackgroundStopsOnClose(t *testing.T) {
	f := newFixture(t, gateway.Policy{})
	c := upnp("192.168.1.10")
	for p := uint16(1001); p <= 1600; p++ {
		m := tcp(p, "192.168.1.10", p)
		m.Expires = f.lease(time.Hour) // so that the Core arms its expiry timer
		f.add(c, m)
	}
	f.core.Close(ctx, false)
	f.mem = gateway.NewMemory()
	backend := newGatedBackend(f.mem)
	f.startInBackground(backend)
	<-backend.entered

	if f.clock.Pending() == 0 {
		t.Fatal("no expiry timer armed while serving")
	}
	closed := make(chan error, 1)
	go func() { closed <- f.core.Close(ctx, false) }()
	// Close stops the expiry timer as it marks the Core closed, before it
	// waits for the batch under way.
	for f.clock.Pending() > 0 {
		runtime.Gosched()
	}
	close(backend.gate)
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	<-f.core.Applied()
	if n := f.mem.Len(); n != 512 {
		t.Errorf("the backend holds %d rules after Close, want the 512 of the batch under way and no more", n)
	}
}

// Without ApplyInBackground, New returns with every lease in the backend.
func TestAppliedAtOnceByDefault(t *testing.T) {
	f := newFixture(t, gateway.Policy{})
	f.add(upnp("192.168.1.10"), tcp(1001, "192.168.1.10", 1))
	f.core.Close(ctx, false)
	f.mem = gateway.NewMemory()
	f.start(gateway.Policy{})
	select {
	case <-f.core.Applied():
	default:
		t.Fatal("Applied is not closed when New returns")
	}
	f.checkConsistent()
}
