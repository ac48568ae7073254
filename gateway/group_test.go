//go:build !gatewayonly

package gateway_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/portfwd/portfwd/gateway"
)

// runGroup runs each op as a member of one commit group, at once, as a
// server does with the requests it read together, and returns their
// errors. It fails the test if the group does not finish.
func runGroup(t *testing.T, ops ...func(ctx context.Context) error) []error {
	t.Helper()
	g := gateway.NewCommitGroup(context.Background(), len(ops))
	ctx := gateway.WithCommitGroup(context.Background(), g)
	errs := make([]error, len(ops))
	var wg sync.WaitGroup
	for i, op := range ops {
		wg.Go(func() {
			defer g.Done()
			errs[i] = op(ctx)
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the commit group never finished: its members wait for each other")
	}
	return errs
}

func noErrors(t *testing.T, errs []error) {
	t.Helper()
	for i, err := range errs {
		if err != nil {
			t.Errorf("member %d: %v", i, err)
		}
	}
}

// Eight requests read together make one store write, and every one of
// them is in the table, the backend and the store when it returns.
func TestCommitGroupOneWriteForAll(t *testing.T) {
	f := newFixture(t, gateway.Policy{})
	var adds []func(context.Context) error
	for i := range 8 {
		host := fmt.Sprintf("192.168.1.%d", 10+i)
		adds = append(adds, func(ctx context.Context) error {
			m := tcp(uint16(20000+i), host, 8080) // suggested ports of their own
			m.Expires = f.lease(time.Hour)
			_, err := f.core.AddAny(ctx, natpmp(host), m)
			return err
		})
	}
	before := f.store.saves
	noErrors(t, runGroup(t, adds...))
	if got := f.store.saves - before; got != 1 {
		t.Errorf("8 adds in one group made %d store writes, want 1", got)
	}
	if f.core.Len() != 8 {
		t.Fatalf("table holds %d mappings, want 8", f.core.Len())
	}
	f.checkConsistent()

	// Deletions and additions together: still one write.
	var mixed []func(context.Context) error
	for _, m := range f.all()[:4] {
		mixed = append(mixed, func(ctx context.Context) error {
			return f.core.Delete(ctx, natpmp(m.InternalAddr.String()), m.Protocol, m.ExternalPort, m.RemoteHost)
		})
	}
	for i := range 4 {
		host := fmt.Sprintf("192.168.1.%d", 50+i)
		mixed = append(mixed, func(ctx context.Context) error {
			m := tcp(uint16(21000+i), host, 9090)
			m.Expires = f.lease(time.Hour)
			_, err := f.core.AddAny(ctx, natpmp(host), m)
			return err
		})
	}
	before = f.store.saves
	noErrors(t, runGroup(t, mixed...))
	if got := f.store.saves - before; got != 1 {
		t.Errorf("4 deletes and 4 adds in one group made %d store writes, want 1", got)
	}
	if f.core.Len() != 8 {
		t.Fatalf("table holds %d mappings, want 8", f.core.Len())
	}
	f.checkConsistent()
}

// Members that change nothing (a refusal, a read) finish without holding
// up the others, and a member that waits for a key another member holds
// does not hold up the group that will free it.
func TestCommitGroupNoDeadlock(t *testing.T) {
	f := newFixture(t, gateway.Policy{})
	same := tcp(20000, "192.168.1.10", 8080)
	same.Expires = f.lease(time.Hour)
	errs := runGroup(t,
		func(ctx context.Context) error { _, err := f.core.Add(ctx, upnp("192.168.1.10"), same); return err },
		func(ctx context.Context) error { _, err := f.core.Add(ctx, upnp("192.168.1.10"), same); return err },
		func(ctx context.Context) error {
			_, err := f.core.Add(ctx, upnp("192.168.1.11"), same) // another host: a conflict, or first
			return err
		},
		func(ctx context.Context) error { f.core.Len(); return nil },
		func(ctx context.Context) error {
			_, err := f.core.Add(ctx, upnp("192.168.1.12"), tcp(0, "192.168.1.12", 1)) // refused: port 0
			return err
		},
	)
	if errs[0] != nil || errs[1] != nil {
		t.Errorf("the same host's add and its repeat: %v, %v", errs[0], errs[1])
	}
	if errs[2] == nil {
		t.Error("a host mapped a port to another host in secure mode")
	}
	if errs[4] == nil {
		t.Error("an add of external port 0 was not refused")
	}
	f.checkConsistent()
}

// When the store fails, every member of the group fails with ErrStore and
// nothing it did stays in the backend.
func TestCommitGroupStoreFailure(t *testing.T) {
	f := newFixture(t, gateway.Policy{})
	kept := f.add(upnp("192.168.1.9"), tcp(30000, "192.168.1.9", 22))
	f.store.setFail(errors.New("disk full"))
	var ops []func(context.Context) error
	for i := range 4 {
		host := fmt.Sprintf("192.168.1.%d", 10+i)
		ops = append(ops, func(ctx context.Context) error {
			m := tcp(0, host, 8080)
			m.Expires = f.lease(time.Hour)
			_, err := f.core.AddAny(ctx, natpmp(host), m)
			return err
		})
	}
	ops = append(ops, func(ctx context.Context) error {
		return f.core.Delete(ctx, upnp("192.168.1.9"), kept.Protocol, kept.ExternalPort, kept.RemoteHost)
	})
	for i, err := range runGroup(t, ops...) {
		if !errors.Is(err, gateway.ErrStore) {
			t.Errorf("member %d: %v, want ErrStore", i, err)
		}
	}
	f.store.setFail(nil)
	if f.core.Len() != 1 {
		t.Errorf("table holds %d mappings after the failed group, want only the one kept", f.core.Len())
	}
	f.checkConsistent()
}

// BenchmarkCommitGroup8 is 8 clients' add+delete pairs committed as
// groups of 8 (one store write for the 8 adds, one for the 8 deletes),
// against a FileStore journal; per op, the 8 pairs. Compare 8 times
// BenchmarkCoreAddDeleteFileStore/size=0.
func BenchmarkCommitGroup8(b *testing.B) {
	s, err := gateway.OpenFileStore(b.TempDir(), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	c, _ := benchCore(b, s)
	var reqs [8]gateway.Requester
	var ms [8]gateway.Mapping
	for i := range ms {
		reqs[i] = gateway.Requester{Addr: netip.AddrFrom4([4]byte{10, 0, 0, byte(1 + i)}), Source: gateway.SourceNATPMP}
		ms[i] = gateway.Mapping{Protocol: gateway.TCP, ExternalPort: uint16(40000 + i), InternalAddr: reqs[i].Addr, InternalPort: 80,
			Enabled: true, Expires: t0.Add(time.Hour)}
	}
	group := func(op func(ctx context.Context, i int) error) {
		g := gateway.NewCommitGroup(ctx, len(ms))
		gctx := gateway.WithCommitGroup(ctx, g)
		var wg sync.WaitGroup
		for i := range ms {
			wg.Go(func() {
				defer g.Done()
				if err := op(gctx, i); err != nil {
					b.Error(err)
				}
			})
		}
		wg.Wait()
	}
	b.ReportAllocs()
	for b.Loop() {
		group(func(ctx context.Context, i int) error { _, err := c.Add(ctx, reqs[i], ms[i]); return err })
		group(func(ctx context.Context, i int) error {
			return c.Delete(ctx, reqs[i], gateway.TCP, ms[i].ExternalPort, netip.Addr{})
		})
	}
}

// Clients that suggest the same port do not queue behind each other: the
// first gets it, the others the next free ports, all in one commit.
func TestCommitGroupSameSuggestedPort(t *testing.T) {
	f := newFixture(t, gateway.Policy{})
	var ops []func(context.Context) error
	got := make([]gateway.Mapping, 4)
	for i := range got {
		host := fmt.Sprintf("192.168.1.%d", 10+i)
		ops = append(ops, func(ctx context.Context) error {
			m := tcp(3074, host, 3074)
			m.Expires = f.lease(time.Hour)
			var err error
			got[i], err = f.core.AddAny(ctx, natpmp(host), m)
			return err
		})
	}
	before := f.store.saves
	noErrors(t, runGroup(t, ops...))
	if n := f.store.saves - before; n != 1 {
		t.Errorf("4 adds suggesting one port made %d store writes, want 1", n)
	}
	ports := map[uint16]bool{}
	for _, m := range got {
		ports[m.ExternalPort] = true
	}
	if len(ports) != 4 || !ports[3074] {
		t.Errorf("external ports granted %v: want 3074 and three others", got)
	}
	f.checkConsistent()
}
