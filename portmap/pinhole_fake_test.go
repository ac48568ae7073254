package portmap

import (
	"context"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/portfwd/portfwd/igd"
	"github.com/portfwd/portfwd/upnp"
)

// fakeFirewall is a WANIPv6FirewallControl service on [::1] that, like a
// strict router, refuses a pinhole whose InternalClient is not the TCP
// sender (606), and answers 704 for IDs it does not have.
type fakeFirewall struct {
	mu      sync.Mutex
	next    uint16
	holes   map[uint16]string // id -> tuple
	updates int
	senders []string
}

func (f *fakeFirewall) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	st, action, args, err := upnp.ReadRequest(r, 1<<16)
	if err != nil {
		http.Error(w, err.Error(), 400)
		return
	}
	host, _, _ := net.SplitHostPort(r.RemoteAddr)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.senders = append(f.senders, host)
	get := func(n string) string { v, _ := args.Get(n); return v }
	id := func() (uint16, bool) {
		n, err := strconv.Atoi(get("UniqueID"))
		_, ok := f.holes[uint16(n)]
		return uint16(n), err == nil && ok
	}
	switch action {
	case "AddPinhole":
		if get("InternalClient") != host {
			upnp.WriteFault(w, 606, "Action not authorized")
			return
		}
		tuple := get("InternalClient") + "/" + get("InternalPort") + "/" + get("Protocol")
		for k, v := range f.holes {
			if v == tuple {
				upnp.WriteResponse(w, st, action, upnp.Args{{Name: "UniqueID", Value: strconv.Itoa(int(k))}})
				return
			}
		}
		f.next++
		f.holes[f.next] = tuple
		upnp.WriteResponse(w, st, action, upnp.Args{{Name: "UniqueID", Value: strconv.Itoa(int(f.next))}})
	case "UpdatePinhole", "DeletePinhole":
		n, ok := id()
		if !ok {
			upnp.WriteFault(w, 704, "NoSuchEntry")
			return
		}
		if action == "DeletePinhole" {
			delete(f.holes, n)
		} else {
			f.updates++
		}
		upnp.WriteResponse(w, st, action, nil)
	default:
		upnp.WriteFault(w, 401, "Invalid Action")
	}
}

func (f *fakeFirewall) count() (int, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.holes), f.updates
}

// fakePinholer serves a fakeFirewall on [::1] and returns a Pinholer for
// it whose host has the address ::1 (loopback stands for a global one).
func fakePinholer(t *testing.T) (*Pinholer, *fakeFirewall) {
	ln, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback here: %v", err)
	}
	f := &fakeFirewall{holes: map[uint16]string{}}
	srv := &http.Server{Handler: f}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	o := PinholeOptions{StateDir: t.TempDir(), RequestTimeout: 2 * time.Second,
		Addrs: func() ([]HostAddr6, error) { return []HostAddr6{{Addr: netip.IPv6Loopback(), Iface: "lo"}}, nil }}
	p := &Pinholer{method: UPnP, controlURL: "http://" + ln.Addr().String() + "/ctl/IP6FCtl", serviceType: igd.ServiceWANIPv6FirewallControl,
		o: o, st: newStore(o.StateDir, nil), log: o.logger()}
	return p, f
}

// Open, Renew (UpdatePinhole; a lost ID is added again with a new one)
// and Close, against a router that checks the sender: the requests come
// from the pinhole's address because the Pinholer binds it.
func TestPinholerUPnP(t *testing.T) {
	p, f := fakePinholer(t)
	ctx := context.Background()
	m, err := p.Open(ctx, PinholeRequest{Protocol: TCP, Port: 8080, Client: netip.IPv6Loopback(), Lease: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if m.Family != IPv6 || m.ID != "1" || m.ExternalAddr != netip.IPv6Loopback() || m.Lease != time.Minute {
		t.Errorf("Open = %+v", m)
	}
	if m2, _, err := p.Renew(ctx, m, 0); err != nil || m2.ID != "1" {
		t.Errorf("Renew = %+v, %v", m2, err)
	}
	if _, updates := f.count(); updates != 1 {
		t.Errorf("%d UpdatePinhole, want 1", updates)
	}
	// The router loses it (a restart): the renewal adds it again.
	f.mu.Lock()
	delete(f.holes, 1)
	f.mu.Unlock()
	m3, recreated, err := p.Renew(ctx, m, 0)
	if err != nil || !recreated || m3.ID != "2" {
		t.Fatalf("Renew of a lost pinhole = %+v, %v, %v; want it added again as 2", m3, recreated, err)
	}
	if ms, _ := p.Pinholes(); len(ms) != 1 || ms[0].ID != "2" {
		t.Errorf("records after the re-add: %+v", ms)
	}
	if _, err := p.Close(ctx, "2"); err != nil {
		t.Fatal(err)
	}
	if n, _ := f.count(); n != 0 {
		t.Errorf("%d pinholes left on the router", n)
	}
	if ms, _ := p.Pinholes(); len(ms) != 0 {
		t.Errorf("records left: %+v", ms)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, s := range f.senders {
		if s != "::1" {
			t.Errorf("a request came from %s, not the pinhole's address", s)
		}
	}
}

// The keeper opens, notices a loss at its next check, and closes on Close.
func TestPinholeKeeper(t *testing.T) {
	p, f := fakePinholer(t)
	k := KeepPinhole(context.Background(), p, PinholeRequest{Protocol: UDP, Port: 5000, Client: netip.IPv6Loopback(), Lease: time.Minute}, 20*time.Millisecond)
	ev := <-k.Events()
	if ev.Kind != EventMapped || ev.Mapping.ID != "1" {
		t.Fatalf("first event %+v", ev)
	}
	f.mu.Lock()
	delete(f.holes, 1)
	f.mu.Unlock()
	ev = <-k.Events()
	if ev.Kind != EventRecreated || ev.Mapping.ID != "2" {
		t.Fatalf("after the loss: %+v", ev)
	}
	if err := k.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	var last Event
	for e := range k.Events() {
		last = e
	}
	if last.Kind != EventDeleted {
		t.Errorf("last event %+v, want deleted", last)
	}
	if n, _ := f.count(); n != 0 {
		t.Errorf("%d pinholes left after Close", n)
	}
}

// A router that refuses for good ends the keeper with the reason.
func TestPinholeKeeperGivesUp(t *testing.T) {
	p, _ := fakePinholer(t)
	// ::1 is this host's, but the router sees the request come from ::1
	// and is asked for ::2: refused 606, for good... except that the
	// Pinholer refuses ::2 itself first, as not this host's.
	k := KeepPinhole(context.Background(), p, PinholeRequest{Protocol: TCP, Port: 8080, Client: netip.MustParseAddr("::2"), Lease: time.Minute}, 0)
	<-k.Done()
	if k.Err() == nil {
		t.Fatal("the keeper did not give up")
	}
	ev := <-k.Events()
	if ev.Kind != EventError {
		t.Errorf("event %+v, want error", ev)
	}
	k.Close(context.Background())
}
