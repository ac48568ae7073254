package gateway_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portfwd/portfwd/gateway"
)

// slowBackend widens the window in which a backend call is in flight, so
// that concurrent operations really overlap.
type slowBackend struct {
	*gateway.Memory
	inFlight, maxInFlight atomic.Int32
}

func (b *slowBackend) slow() func() {
	n := b.inFlight.Add(1)
	for {
		m := b.maxInFlight.Load()
		if n <= m || b.maxInFlight.CompareAndSwap(m, n) {
			break
		}
	}
	time.Sleep(time.Duration(rand.IntN(50)) * time.Microsecond)
	return func() { b.inFlight.Add(-1) }
}

func (b *slowBackend) Add(ctx context.Context, r gateway.Rule) error {
	defer b.slow()()
	return b.Memory.Add(ctx, r)
}

func (b *slowBackend) Delete(ctx context.Context, r gateway.Rule) error {
	defer b.slow()()
	return b.Memory.Delete(ctx, r)
}

func TestConcurrentOperationsStayConsistent(t *testing.T) {
	const clients, opsEach, quota = 8, 300, 25
	f := &fixture{t: t, clock: newFakeClock(), mem: gateway.NewMemory(), store: newMemStore()}
	slow := &slowBackend{Memory: f.mem}
	c, err := gateway.New(ctx, gateway.Config{Backend: slow, Store: f.store, Clock: f.clock,
		Policy: gateway.Policy{MaxPerClient: quota, ListOwnOnly: true}})
	if err != nil {
		t.Fatal(err)
	}
	f.core = c
	defer c.Close(ctx, false)

	var lastCount atomic.Int64
	c.Subscribe(func(e gateway.Event) { lastCount.Store(int64(e.Count)) })

	expected := []error{gateway.ErrConflict, gateway.ErrNoSuchEntry, gateway.ErrNotAuthorized,
		gateway.ErrQuota, gateway.ErrNoneInRange, gateway.ErrNoPortsAvailable}
	var unexpected atomic.Value
	check := func(err error) {
		if err == nil {
			return
		}
		for _, e := range expected {
			if errors.Is(err, e) {
				return
			}
		}
		unexpected.Store(err)
	}

	var wg sync.WaitGroup
	for i := range clients {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(i), 7))
			host := fmt.Sprintf("192.168.1.%d", 10+i)
			req := upnp(host)
			for range opsEach {
				// All clients compete for the same 60 ports.
				port := uint16(2000 + rng.IntN(60))
				m := tcp(port, host, port)
				if rng.IntN(2) == 0 {
					m.Expires = f.clock.Now().Add(time.Duration(1+rng.IntN(5)) * time.Second)
				}
				// The clock runs on in another goroutine, so a short lease
				// may end before the Core sees the request; that refusal
				// is correct.
				checkAdd := func(err error) {
					if errors.Is(err, gateway.ErrInvalidArgs) && !m.Expires.IsZero() && !f.clock.Now().Before(m.Expires) {
						return
					}
					check(err)
				}
				switch rng.IntN(7) {
				case 0, 1:
					_, err := c.Add(ctx, req, m)
					checkAdd(err)
				case 2:
					_, err := c.AddAny(ctx, req, m)
					checkAdd(err)
				case 3:
					check(c.Delete(ctx, req, gateway.TCP, port, netip.Addr{}))
				case 4:
					_, err := c.DeleteRange(ctx, req, gateway.TCP, port, port+3, rng.IntN(2) == 0)
					check(err)
				case 5:
					_, err := c.DeleteAllFor(ctx, req, gateway.TCP)
					check(err)
				case 6:
					for j := 0; ; j++ {
						got, err := c.Index(req, j)
						if err != nil {
							break
						}
						if got.Owner != req.Addr {
							unexpected.Store(fmt.Errorf("ListOwnOnly showed %v to %v", got, req.Addr))
						}
					}
					c.List(req, gateway.TCP, 2000, 2059, 10)
					c.Get(req, gateway.TCP, port, netip.Addr{})
					c.FindByInternal(req.Addr, gateway.TCP, port)
				}
			}
		})
	}
	// Leases expire while all this goes on.
	stop := make(chan struct{})
	var clockDone sync.WaitGroup
	clockDone.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
				f.clock.Advance(100 * time.Millisecond)
				time.Sleep(50 * time.Microsecond)
			}
		}
	})
	wg.Wait()
	close(stop)
	clockDone.Wait()

	if err, _ := unexpected.Load().(error); err != nil {
		t.Fatalf("unexpected error under concurrency: %v", err)
	}
	if slow.maxInFlight.Load() < 2 {
		t.Errorf("backend calls never overlapped; the test did not exercise concurrency")
	}
	f.checkConsistent()
	owners := make(map[netip.Addr]int)
	for _, m := range f.all() {
		owners[m.Owner]++
	}
	for o, n := range owners {
		if n > quota {
			t.Errorf("%v holds %d mappings, quota is %d", o, n, quota)
		}
	}
	// Once events drain, the last event's count is the table's size.
	deadline := time.Now().Add(5 * time.Second)
	for lastCount.Load() != int64(c.Len()) && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if lastCount.Load() != int64(c.Len()) {
		t.Errorf("last event Count %d, Len %d", lastCount.Load(), c.Len())
	}
}
