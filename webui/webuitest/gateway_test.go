package webuitest_test

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/portfwd/portfwd/igd/igdtest"
	"github.com/portfwd/portfwd/portmap"
	"github.com/portfwd/portfwd/webui/webuitest"
)

// realUPnP is portmap's own UPnP gateway talking to igdtest's fake router
// over HTTP on 127.0.0.1: the reference the in-memory fake must match.
func realUPnP(t *testing.T) portmap.Gateway {
	t.Helper()
	srv := igdtest.NewServer(t, igdtest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	gws, err := portmap.Discover(ctx, portmap.Options{
		Methods: []portmap.Method{portmap.UPnP}, GatewayURL: srv.Location,
		NoDefaultGateway: true, NoCache: true, NoMulticast: true,
	})
	if err != nil {
		t.Fatalf("discovering the igdtest router: %v", err)
	}
	return gws[0]
}

// TestFakeMatchesPortmapOverIGD runs one script of operations against the
// fake and against portmap over a fake IGD, and requires the same results:
// the same mappings, the same refusals with the same sentences for the
// user. That is what makes UI tests on the fake say something about the
// real thing.
func TestFakeMatchesPortmapOverIGD(t *testing.T) {
	real := realUPnP(t)
	fake := webuitest.New(webuitest.Options{LocalAddr: real.LocalAddr(), ExternalIP: netip.MustParseAddr("203.0.113.1")})
	other := netip.MustParseAddr("192.168.1.20")
	ptr := func(v uint16) *uint16 { return &v }
	desc := "renamed <b>"

	type result struct {
		m    portmap.Mapping
		gone []portmap.Mapping
		err  error
		list []portmap.Mapping
	}
	steps := []struct {
		name string
		do   func(ctx context.Context, g portmap.Gateway) result
	}{
		{"add for another host", func(ctx context.Context, g portmap.Gateway) result {
			m, err := g.Add(ctx, portmap.Request{Protocol: portmap.TCP, InternalPort: 8080, ExternalPort: 18080, InternalClient: other, Description: "web"})
			return result{m: m, err: err}
		}},
		{"add on a taken port", func(ctx context.Context, g portmap.Gateway) result {
			m, err := g.Add(ctx, portmap.Request{Protocol: portmap.TCP, InternalPort: 9000, ExternalPort: 18080, Description: "mine"})
			return result{m: m, err: err}
		}},
		{"add any port", func(ctx context.Context, g portmap.Gateway) result {
			m, err := g.Add(ctx, portmap.Request{Protocol: portmap.TCP, InternalPort: 9000, ExternalPort: 18080, Description: "mine", Any: true, Lease: time.Hour})
			return result{m: m, err: err}
		}},
		{"renew in place", func(ctx context.Context, g portmap.Gateway) result {
			m, err := g.Add(ctx, portmap.Request{Protocol: portmap.TCP, InternalPort: 8080, ExternalPort: 18080, InternalClient: other, Description: "web again"})
			return result{m: m, err: err}
		}},
		{"add UDP, same port number", func(ctx context.Context, g portmap.Gateway) result {
			m, err := g.Add(ctx, portmap.Request{Protocol: portmap.UDP, InternalPort: 18080, Description: "udp"})
			return result{m: m, err: err}
		}},
		{"edit onto a taken port", func(ctx context.Context, g portmap.Gateway) result {
			m, err := g.Edit(ctx, portmap.Key{Protocol: portmap.TCP, ExternalPort: 18081}, portmap.Change{ExternalPort: ptr(18080)})
			return result{m: m, err: err}
		}},
		{"edit the description", func(ctx context.Context, g portmap.Gateway) result {
			m, err := g.Edit(ctx, portmap.Key{Protocol: portmap.TCP, ExternalPort: 18081}, portmap.Change{Description: &desc})
			return result{m: m, err: err}
		}},
		{"edit the port", func(ctx context.Context, g portmap.Gateway) result {
			m, err := g.Edit(ctx, portmap.Key{Protocol: portmap.TCP, ExternalPort: 18081}, portmap.Change{ExternalPort: ptr(18090), InternalPort: ptr(9001)})
			return result{m: m, err: err}
		}},
		{"edit a missing mapping", func(ctx context.Context, g portmap.Gateway) result {
			m, err := g.Edit(ctx, portmap.Key{Protocol: portmap.UDP, ExternalPort: 9999}, portmap.Change{Description: &desc})
			return result{m: m, err: err}
		}},
		{"delete a missing mapping", func(ctx context.Context, g portmap.Gateway) result {
			return result{err: g.Delete(ctx, portmap.Key{Protocol: portmap.TCP, ExternalPort: 9999})}
		}},
		{"delete one", func(ctx context.Context, g portmap.Gateway) result {
			return result{err: g.Delete(ctx, portmap.Key{Protocol: portmap.UDP, ExternalPort: 18080})}
		}},
		{"delete an empty range", func(ctx context.Context, g portmap.Gateway) result {
			gone, err := g.DeleteRange(ctx, portmap.UDP, 1, 65535)
			return result{gone: gone, err: err}
		}},
		{"delete a range", func(ctx context.Context, g portmap.Gateway) result {
			gone, err := g.DeleteRange(ctx, portmap.TCP, 18000, 18085)
			return result{gone: gone, err: err}
		}},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// Both count leases down on the real clock, from when each made the
	// mapping: they may differ by as long as the test has run, which a
	// loaded machine stretches to seconds, and by one second of rounding.
	began := time.Now()
	same := func(a, b portmap.Mapping) bool { return sameMapping(a, b, time.Since(began)+time.Second) }
	for _, st := range steps {
		want, got := st.do(ctx, real), st.do(ctx, fake)
		var err error
		if want.list, err = real.List(ctx, nil); err != nil {
			t.Fatalf("%s: listing the reference: %v", st.name, err)
		}
		if got.list, err = fake.List(ctx, nil); err != nil {
			t.Fatalf("%s: listing the fake: %v", st.name, err)
		}
		if errText(got.err) != errText(want.err) {
			t.Errorf("%s: fake error\n  %v\nwant\n  %v", st.name, got.err, want.err)
		}
		var wre, gre *portmap.RefusedError
		if errors.As(want.err, &wre) != errors.As(got.err, &gre) || (wre != nil && gre != nil && wre.Code != gre.Code) {
			t.Errorf("%s: fake refusal %#v, want %#v", st.name, gre, wre)
		}
		if len(got.gone) != len(want.gone) {
			t.Errorf("%s: fake deleted %+v, want %+v", st.name, got.gone, want.gone)
		} else {
			sortList(got.gone)
			sortList(want.gone)
			for i := range want.gone {
				if !same(got.gone[i], want.gone[i]) {
					t.Errorf("%s: fake deleted\n  %+v\nwant\n  %+v", st.name, got.gone[i], want.gone[i])
				}
			}
		}
		if !same(got.m, want.m) {
			t.Errorf("%s: fake returned\n  %+v\nwant\n  %+v", st.name, got.m, want.m)
		}
		sortList(got.list)
		sortList(want.list)
		if len(got.list) != len(want.list) {
			t.Fatalf("%s: fake table %+v, want %+v", st.name, got.list, want.list)
		}
		for i := range want.list {
			if !same(got.list[i], want.list[i]) {
				t.Errorf("%s: fake table row %d\n  %+v\nwant\n  %+v", st.name, i, got.list[i], want.list[i])
			}
		}
	}
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func sortList(ms []portmap.Mapping) {
	slices.SortFunc(ms, func(a, b portmap.Mapping) int {
		return strings.Compare(a.Key().String(), b.Key().String())
	})
}

// sameMapping compares mappings, allowing a running lease a second of
// difference.
// sameMapping reports whether a and b are the same but for leases that
// differ by slack at the most.
func sameMapping(a, b portmap.Mapping, slack time.Duration) bool {
	la, lb := a.Lease, b.Lease
	a.Lease, b.Lease = 0, 0
	d := la - lb
	return a == b && d <= slack && d >= -slack
}

// Leases count down on the clock and run out: in a synctest bubble, whose
// clock moves only when the test sleeps, so the 60 ms are exact.
func TestLeasesRunOut(t *testing.T) { synctest.Test(t, testLeasesRunOut) }

func testLeasesRunOut(t *testing.T) {
	g := webuitest.New(webuitest.Options{})
	g.SetMappings([]portmap.Mapping{
		{Protocol: portmap.TCP, ExternalPort: 1, InternalClient: "192.168.1.10", InternalPort: 1, Lease: 30 * time.Millisecond},
		{Protocol: portmap.TCP, ExternalPort: 2, InternalClient: "192.168.1.10", InternalPort: 2, Lease: time.Hour},
		{Protocol: portmap.TCP, ExternalPort: 3, InternalClient: "192.168.1.10", InternalPort: 3},
	})
	ms, err := g.List(context.Background(), nil)
	if err != nil || len(ms) != 3 {
		t.Fatalf("List = %v, %v; want 3 mappings", ms, err)
	}
	if ms[0].Lease != time.Second || ms[0].Permanent {
		t.Errorf("a lease with 30 ms left reads %v (permanent %v); routers round up to 1 s", ms[0].Lease, ms[0].Permanent)
	}
	if !ms[2].Permanent || ms[2].Lease != 0 {
		t.Errorf("mapping without lease: %+v, want permanent", ms[2])
	}
	time.Sleep(29 * time.Millisecond)
	if ms, _ := g.List(context.Background(), nil); len(ms) != 3 {
		t.Errorf("with 1 ms of its lease left, the table is %+v; want all 3", ms)
	}
	time.Sleep(time.Millisecond)
	ms, _ = g.List(context.Background(), nil)
	if len(ms) != 2 || ms[0].ExternalPort != 2 {
		t.Errorf("after its lease, the table is %+v; want the expired mapping gone", ms)
	}
	if ms[0].Lease != time.Hour-30*time.Millisecond && ms[0].Lease != time.Hour {
		t.Errorf("an hour's lease reads %v", ms[0].Lease)
	}
}

func TestHookSlowsOneCall(t *testing.T) {
	g := webuitest.New(webuitest.Options{})
	g.SetHook(func(ctx context.Context, op string) error {
		if op == "Add" {
			<-ctx.Done()
			return ctx.Err()
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := g.Add(ctx, portmap.Request{Protocol: portmap.TCP, InternalPort: 80}); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Add with a blocking hook: %v, want the context's deadline", err)
	}
	if _, err := g.List(context.Background(), nil); err != nil {
		t.Errorf("List is not hooked, yet: %v", err)
	}
	if g.Calls("Add") != 1 || g.Calls("List") != 1 {
		t.Errorf("calls: Add %d, List %d; want 1 each", g.Calls("Add"), g.Calls("List"))
	}
	if len(g.Mappings()) != 0 {
		t.Errorf("an Add that timed out left %v", g.Mappings())
	}
}

func TestNATPMPCannotList(t *testing.T) {
	g := webuitest.New(webuitest.Options{Method: portmap.NATPMP})
	if _, err := g.List(context.Background(), nil); !errors.Is(err, portmap.ErrNotSupported) {
		t.Errorf("List over NAT-PMP: %v, want ErrNotSupported", err)
	}
	if g.Addr() != "192.168.1.1:5351" {
		t.Errorf("Addr %q", g.Addr())
	}
}
