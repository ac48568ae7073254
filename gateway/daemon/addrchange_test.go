package daemon

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portfwd/portfwd/igd"
	"github.com/portfwd/portfwd/natpmp"
	"github.com/portfwd/portfwd/pcp"
	"github.com/portfwd/portfwd/upnp"
)

// subscribeEvents subscribes to the daemon's WANIPConnection events with a
// callback server on loopback, and returns the events' variables as they
// arrive (the initial event first).
func subscribeEvents(t *testing.T, r *running) <-chan map[string]string {
	t.Helper()
	events := make(chan map[string]string, 16)
	cb, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		vars, err := upnp.ParsePropertySet(body)
		if err != nil {
			t.Errorf("event body: %v\n%s", err, body)
		}
		m := map[string]string{}
		for _, v := range vars {
			m[v.Name] = v.Value
		}
		events <- m
	})}
	go srv.Serve(cb)
	t.Cleanup(func() { srv.Close() })
	u := strings.TrimSuffix(r.DescriptionURLs()[0], igd.DescriptionPath) + igd.WANIPConnectionEventPath
	req, _ := http.NewRequest("SUBSCRIBE", u, nil)
	req.Header.Set("CALLBACK", "<http://"+cb.Addr().String()+"/>")
	req.Header.Set("NT", "upnp:event")
	req.Header.Set("TIMEOUT", "Second-1800")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("SUBSCRIBE: %s", resp.Status)
	}
	return events
}

// A new external address is news for every protocol: UPnP subscribers get
// ExternalIPAddress, NAT-PMP answers the new address with its epoch going
// on (only lost leases reset it), and PCP's epoch starts again (RFC 6887
// §8.5), which is how a PCP client learns that it must map again.
func TestDaemonExternalAddressChange(t *testing.T) {
	cfg := testConfig(t)
	d, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	d.epoch = time.Now().Add(-time.Hour) // leases kept for an hour
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Serve(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	r := &running{Daemon: d}

	events := subscribeEvents(t, r)
	next := func() map[string]string {
		t.Helper()
		select {
		case v := <-events:
			return v
		case <-time.After(5 * time.Second):
			t.Fatal("no event within 5 s")
			return nil
		}
	}
	if initial := next(); initial["ExternalIPAddress"] != "198.51.100.1" {
		t.Fatalf("initial event %v", initial)
	}
	pc := &pcp.Client{Gateway: d.NATPMPAddrs()[0]}
	if e, err := pc.Announce(context.Background()); err != nil || e < 3599 {
		t.Fatalf("PCP epoch before the change = %d, %v; want about 3600", e, err)
	}

	newAddr := netip.MustParseAddr("198.51.100.2")
	d.wan.ext.lookup = func(context.Context) (netip.Addr, error) { return newAddr, nil }
	if err := d.wan.ext.update(context.Background()); err != nil {
		t.Fatal(err)
	}

	if ev := next(); ev["ExternalIPAddress"] != newAddr.String() || ev["ConnectionStatus"] != "Connected" {
		t.Errorf("event after the change: %v", ev)
	}
	a := r.pmp(t, natpmp.Request{Op: natpmp.OpExternalAddress})
	if a.ExternalAddr != newAddr || a.Epoch < 3599 {
		t.Errorf("NAT-PMP after the change: %v, epoch %d; want %v and the epoch going on from 3600", a.ExternalAddr, a.Epoch, newAddr)
	}
	if e, err := pc.Announce(context.Background()); err != nil || e > 2 {
		t.Errorf("PCP epoch after the change = %d, %v; want it started again", e, err)
	}
	if !pc.LostState() {
		t.Error("the PCP client did not conclude that it must map again")
	}
	m, err := pc.Map(context.Background(), pcp.MapRequest{Protocol: pcp.TCP, InternalPort: 9000, Lifetime: time.Hour})
	if err != nil || m.ExternalAddr != newAddr {
		t.Errorf("PCP MAP after the change: %+v, %v; want external address %v", m, err, newAddr)
	}
}

// The first address learned after the first lookup failed is news too.
func TestExternalAddrOnChangeAfterFailedLookup(t *testing.T) {
	e := newExternalAddr(ExternalAddressConfig{Source: SourceInterface}, []string{"x"}, discardLogger())
	e.lookup = func(context.Context) (netip.Addr, error) { return netip.Addr{}, errors.New("no address yet") }
	var seen []netip.Addr
	e.OnChange(func(a netip.Addr) { seen = append(seen, a) })
	if err := e.update(context.Background()); err == nil {
		t.Fatal("a failed lookup reported no error")
	}
	addr := netip.MustParseAddr("192.0.2.1")
	e.lookup = func(context.Context) (netip.Addr, error) { return addr, nil }
	e.update(context.Background())
	if len(seen) != 1 || seen[0] != addr {
		t.Errorf("changes seen: %v, want [%v]", seen, addr)
	}
}

// run reads the address again as soon as it is woken, without waiting for
// the refresh.
func TestExternalAddrRunWakes(t *testing.T) {
	e := newExternalAddr(ExternalAddressConfig{Source: SourceInterface, Refresh: Duration(time.Hour)}, []string{"x"}, discardLogger())
	var lookups atomic.Int32
	read := make(chan struct{}, 4)
	e.lookup = func(context.Context) (netip.Addr, error) {
		lookups.Add(1)
		read <- struct{}{}
		return netip.MustParseAddr("192.0.2.1"), nil
	}
	wake := make(chan struct{}, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { e.run(ctx, wake); close(done) }()
	defer func() { cancel(); <-done }()

	select {
	case <-read:
		t.Fatal("run read the address before it was woken or the refresh came")
	case <-time.After(50 * time.Millisecond):
	}
	wake <- struct{}{}
	select {
	case <-read:
	case <-time.After(2 * time.Second):
		t.Fatal("run did not read the address when woken")
	}
	if n := lookups.Load(); n != 1 {
		t.Errorf("%d lookups for one wake", n)
	}
}
