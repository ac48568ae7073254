package upnp

import (
	"context"
	"net"
	nethttp "net/http"
	"net/netip"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	http "github.com/portfwd/portfwd/internal/httpx"
	"github.com/portfwd/portfwd/internal/httpx/httpxtest"

	"github.com/portfwd/portfwd/internal/testenv"
)

var loopback = netip.MustParseAddr("127.0.0.1")

// events collects what a Subscription's handler is given.
type events chan Event

func (e events) handler(ev Event) { e <- ev }

// next waits for the next event, failing the test after a few seconds.
func (e events) next(t *testing.T) Event {
	t.Helper()
	select {
	case ev := <-e:
		return ev
	case <-time.After(5 * time.Second):
		t.Fatal("no event within 5 s")
		return Event{}
	}
}

func (e events) none(t *testing.T, within time.Duration) {
	t.Helper()
	select {
	case ev := <-e:
		t.Fatalf("unexpected event %+v", ev)
	case <-time.After(within):
	}
}

func newTestSubscriber(t *testing.T) *Subscriber {
	t.Helper()
	s := &Subscriber{Listen: "127.0.0.1:0", CallbackHost: loopback}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Close(ctx)
	})
	return s
}

// device is a Publisher served on 127.0.0.1 that counts renewals.
type device struct {
	p        *Publisher
	srv      *httpxtest.Server
	st       *state
	renewals atomic.Int32
}

func newDevice(t *testing.T, cfg PublisherConfig) *device {
	t.Helper()
	d := &device{st: &state{vars: []Arg{{"PortMappingNumberOfEntries", "0"}, {"ExternalIPAddress", "192.0.2.1"}}}}
	cfg.Services = map[string]func() []Arg{evtPath: d.st.get}
	d.p = newTestPublisher(t, cfg)
	d.srv = httpxtest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == "SUBSCRIBE" && r.Header.Get("SID") != "" {
			d.renewals.Add(1)
		}
		d.p.ServeHTTP(w, r)
	}))
	t.Cleanup(d.srv.Close)
	return d
}

func (d *device) eventURL() string { return d.srv.URL + evtPath }

func TestSubscriberEndToEnd(t *testing.T) {
	d := newDevice(t, PublisherConfig{MinTimeout: time.Second, MaxTimeout: time.Second})
	s := newTestSubscriber(t)
	evs := make(events, 16)
	ctx := context.Background()
	sub, err := s.Subscribe(ctx, d.eventURL(), time.Second, evs.handler)
	if err != nil {
		t.Fatal(err)
	}
	if sub.Timeout() != time.Second {
		t.Errorf("granted %v, want 1s", sub.Timeout())
	}
	sid := sub.SID()
	ev := evs.next(t)
	want := Event{EventURL: d.eventURL(), SID: sid, Seq: 0, Vars: d.st.get(), Initial: true}
	if !reflect.DeepEqual(ev, want) {
		t.Fatalf("initial event\n got %+v\nwant %+v", ev, want)
	}

	// Renewals at half the granted second keep the subscription alive well
	// past its first expiry.
	waitFor(t, "three renewals", func() bool { return d.renewals.Load() >= 3 })
	d.p.Notify(evtPath, []Arg{{"PortMappingNumberOfEntries", "1"}})
	ev = evs.next(t)
	if ev.Seq != 1 || ev.Resync || ev.Initial || ev.SID != sid || ev.Vars.Value("PortMappingNumberOfEntries") != "1" {
		t.Fatalf("change event %+v", ev)
	}
	if sub.SID() != sid {
		t.Errorf("SID changed from %s to %s although the device kept it", sid, sub.SID())
	}

	if err := sub.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if n := d.p.Subscribers(evtPath); n != 0 {
		t.Errorf("%d subscribers at the device after Close", n)
	}
	if err := sub.Close(ctx); err != nil {
		t.Errorf("second Close: %v", err)
	}
	d.p.Notify(evtPath, []Arg{{"PortMappingNumberOfEntries", "2"}})
	evs.none(t, 100*time.Millisecond)
}

func TestSubscriberResubscribes(t *testing.T) {
	d := newDevice(t, PublisherConfig{MinTimeout: time.Second, MaxTimeout: time.Second})
	s := newTestSubscriber(t)
	evs := make(events, 16)
	sub, err := s.Subscribe(context.Background(), d.eventURL(), time.Second, evs.handler)
	if err != nil {
		t.Fatal(err)
	}
	old := sub.SID()
	if ev := evs.next(t); !ev.Initial || ev.Resync || ev.Forgotten {
		t.Fatalf("first initial event %+v", ev)
	}

	// The device forgets the subscription, as after a reboot.
	if w := call(d.p, "UNSUBSCRIBE", evtPath, "127.0.0.1:1", map[string]string{"SID": old}); w.Code != 200 {
		t.Fatalf("forgetting the SID: %d", w.Code)
	}
	d.st.set(Arg{"PortMappingNumberOfEntries", "5"}, Arg{"ExternalIPAddress", "192.0.2.1"})

	// The next renewal gets 412 and the subscription is made anew; its
	// initial event carries the whole state and is flagged Resync, since
	// changes in between were missed, and Forgotten, since the device did
	// not know the subscription any more.
	ev := evs.next(t)
	if !ev.Initial || !ev.Resync || !ev.Forgotten || ev.Seq != 0 || ev.SID == old || !reflect.DeepEqual([]Arg(ev.Vars), d.st.get()) {
		t.Fatalf("event after resubscription %+v (old SID %s)", ev, old)
	}
	if sub.SID() != ev.SID {
		t.Errorf("SID() = %s, events come with %s", sub.SID(), ev.SID)
	}
	d.p.Notify(evtPath, []Arg{{"PortMappingNumberOfEntries", "6"}})
	if ev := evs.next(t); ev.Seq != 1 || ev.Resync || ev.Forgotten {
		t.Fatalf("event after that %+v", ev)
	}
	if n := d.p.Subscribers(evtPath); n != 1 {
		t.Errorf("%d subscriptions at the device, want 1", n)
	}
}

func TestSubscriberCallbackRefused(t *testing.T) {
	// A callback address that is not where our requests come from is
	// refused by a CallStranger-safe device, and the error says what to do.
	d := newDevice(t, PublisherConfig{})
	s := &Subscriber{Listen: "127.0.0.1:0", CallbackHost: netip.MustParseAddr("127.0.0.2")}
	defer s.Close(context.Background())
	_, err := s.Subscribe(context.Background(), d.eventURL(), 0, func(Event) {})
	if err == nil || !strings.Contains(err.Error(), "CallbackHost") {
		t.Fatalf("Subscribe with a foreign callback host: %v", err)
	}
	if n := d.p.Subscribers(evtPath); n != 0 {
		t.Errorf("%d subscriptions at the device", n)
	}
}

func TestSubscriberConfigErrors(t *testing.T) {
	h := func(Event) {}
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		s    *Subscriber
		url  string
	}{
		{"no address at all", &Subscriber{}, "http://127.0.0.1:9/evt"},
		{"wildcard listener without CallbackHost", &Subscriber{Listener: wildcardListener(t)}, "http://127.0.0.1:9/evt"},
		{"wildcard CallbackHost", &Subscriber{CallbackHost: netip.IPv4Unspecified()}, "http://127.0.0.1:9/evt"},
		{"relative event URL", &Subscriber{CallbackHost: loopback}, "/evt/IPConn"},
	} {
		if _, err := tc.s.Subscribe(ctx, tc.url, 0, h); err == nil {
			t.Errorf("%s: Subscribe succeeded", tc.name)
		}
		tc.s.Close(ctx)
	}
	if _, err := (&Subscriber{CallbackHost: loopback}).Subscribe(ctx, "http://127.0.0.1:9/evt", 0, nil); err == nil {
		t.Error("Subscribe without a handler succeeded")
	}
}

// wildcardListener listens on 127.0.0.1 but claims the wildcard address,
// without binding a socket on every interface of the machine.
func wildcardListener(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	port := ln.Addr().(*net.TCPAddr).Port
	return addrListener{ln, &net.TCPAddr{IP: net.IPv4zero, Port: port}}
}

type addrListener struct {
	net.Listener
	addr net.Addr
}

func (l addrListener) Addr() net.Addr { return l.addr }

// fakeDevice answers SUBSCRIBE with a fixed SID, so that a test can send
// NOTIFY requests of its own making to the callback URL it learns.
type fakeDevice struct {
	srv      *httpxtest.Server
	mu       sync.Mutex
	callback string
	before   func(callback string) // run before answering SUBSCRIBE
}

const fakeSID = "uuid:11111111-2222-4333-8444-555555555555"

func newFakeDevice(t *testing.T) *fakeDevice {
	t.Helper()
	f := &fakeDevice{}
	f.srv = httpxtest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == "SUBSCRIBE" && r.Header.Get("CALLBACK") != "" {
			urls, err := ParseCallback(r.Header.Get("CALLBACK"))
			if err != nil {
				http.Error(w, err.Error(), http.StatusPreconditionFailed)
				return
			}
			f.mu.Lock()
			f.callback = urls[0].String()
			before := f.before
			f.mu.Unlock()
			if before != nil {
				before(urls[0].String())
			}
		}
		w.Header()["SID"] = []string{fakeSID}
		w.Header()["TIMEOUT"] = []string{"Second-300"}
		w.WriteHeader(200)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

// notify sends a NOTIFY to the subscriber's callback and returns the status.
func notify(t *testing.T, url string, hdr map[string]string, body string) int {
	t.Helper()
	req, err := nethttp.NewRequest("NOTIFY", url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := nethttp.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func event(seq uint32, vars ...Arg) (map[string]string, string) {
	return map[string]string{"NT": NTEvent, "NTS": NTSPropChange, "SID": fakeSID, "SEQ": strconv.FormatUint(uint64(seq), 10)},
		string(AppendPropertySet(nil, vars))
}

func TestSubscriberSequence(t *testing.T) {
	f := newFakeDevice(t)
	s := newTestSubscriber(t)
	evs := make(events, 16)
	if _, err := s.Subscribe(context.Background(), f.srv.URL+"/evt", 300*time.Second, evs.handler); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		seq     uint32
		initial bool
		resync  bool
	}{
		{0, true, false},
		{1, false, false},
		{2, false, false},
		{4, false, true},  // 3 was lost
		{5, false, false}, // back in step
		{0, true, true},   // the device restarted and kept our SID
		{1, false, false},
		{4294967295, false, true},
		{1, false, false}, // the wrap skips 0
		{1, false, true},  // a repeat is not the next event either
	}
	for i, st := range steps {
		hdr, body := event(st.seq, Arg{"Step", strconv.Itoa(i)})
		if code := notify(t, f.callback, hdr, body); code != 200 {
			t.Fatalf("step %d: NOTIFY status %d", i, code)
		}
		ev := evs.next(t)
		if ev.Seq != st.seq || ev.Initial != st.initial || ev.Resync != st.resync || ev.Vars.Value("Step") != strconv.Itoa(i) || ev.SID != fakeSID {
			t.Errorf("step %d: %+v; want SEQ %d initial %v resync %v", i, ev, st.seq, st.initial, st.resync)
		}
	}
}

func TestSubscriberStrictCallbacks(t *testing.T) {
	f := newFakeDevice(t)
	s := newTestSubscriber(t)
	evs := make(events, 16)
	if _, err := s.Subscribe(context.Background(), f.srv.URL+"/evt", 0, evs.handler); err != nil {
		t.Fatal(err)
	}
	good, body := event(0, Arg{"A", "1"})
	with := func(k, v string) map[string]string {
		h := map[string]string{}
		for a, b := range good {
			h[a] = b
		}
		if v == "" {
			delete(h, k)
		} else {
			h[k] = v
		}
		return h
	}
	base := f.callback[:strings.LastIndexByte(f.callback, '/')]
	tests := []struct {
		name   string
		url    string
		hdr    map[string]string
		body   string
		status int
	}{
		{"unknown callback path", base + "/nope", good, body, 412},
		{"unknown SID", f.callback, with("SID", "uuid:other"), body, 412},
		{"missing SID", f.callback, with("SID", ""), body, 412},
		{"missing NT", f.callback, with("NT", ""), body, 400},
		{"missing NTS", f.callback, with("NTS", ""), body, 400},
		{"wrong NT", f.callback, with("NT", "upnp:rootdevice"), body, 412},
		{"wrong NTS", f.callback, with("NTS", "ssdp:alive"), body, 412},
		{"missing SEQ", f.callback, with("SEQ", ""), body, 400},
		{"bad SEQ", f.callback, with("SEQ", "-1"), body, 400},
		{"bad body", f.callback, good, "<html>no</html>", 400},
		{"body too large", f.callback, good, "<propertyset>" + strings.Repeat(" ", MaxEventBody) + "</propertyset>", 413},
	}
	for _, tc := range tests {
		if code := notify(t, tc.url, tc.hdr, tc.body); code != tc.status {
			t.Errorf("%s: status %d, want %d", tc.name, code, tc.status)
		}
	}
	req, _ := nethttp.NewRequest("GET", f.callback, nil)
	if resp, err := nethttp.DefaultClient.Do(req); err != nil || resp.StatusCode != 405 {
		t.Errorf("GET on the callback: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	evs.none(t, 50*time.Millisecond)

	// None of the refused messages counted: the initial event is still
	// the one expected.
	if code := notify(t, f.callback, good, body); code != 200 {
		t.Fatalf("valid NOTIFY: %d", code)
	}
	if ev := evs.next(t); ev.Seq != 0 || ev.Resync {
		t.Errorf("event after refusals %+v", ev)
	}
}

func TestSubscriberInitialEventOvertakesResponse(t *testing.T) {
	// The device's initial event can reach us before its SUBSCRIBE
	// response does; it must wait for the SID rather than get 412.
	f := newFakeDevice(t)
	status := make(chan int, 1)
	f.before = func(callback string) {
		go func() {
			hdr, body := event(0, Arg{"A", "1"})
			status <- notify(t, callback, hdr, body)
		}()
		// The SUBSCRIBE response waits until the NOTIFY is with the
		// subscriber, waiting for the SID.
		if !testenv.Blocked("(*Subscription).waitReady", time.Minute) {
			t.Error("the early NOTIFY never reached the subscriber's wait for the SID")
		}
	}
	s := newTestSubscriber(t)
	evs := make(events, 16)
	if _, err := s.Subscribe(context.Background(), f.srv.URL+"/evt", 0, evs.handler); err != nil {
		t.Fatal(err)
	}
	select {
	case code := <-status:
		if code != 200 {
			t.Fatalf("early initial event: status %d", code)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("early NOTIFY not answered")
	}
	if ev := evs.next(t); !ev.Initial || ev.Resync || ev.Vars.Value("A") != "1" {
		t.Errorf("early initial event %+v", ev)
	}
}

func TestSubscriberSlowHandler(t *testing.T) {
	f := newFakeDevice(t)
	s := newTestSubscriber(t)
	release := make(chan struct{})
	got := make(events, 2*eventBacklog+8)
	var calls atomic.Int32
	handler := func(ev Event) {
		if calls.Add(1) == 1 {
			<-release
		}
		got <- ev
	}
	if _, err := s.Subscribe(context.Background(), f.srv.URL+"/evt", 0, handler); err != nil {
		t.Fatal(err)
	}
	// The handler is stuck in the first event; the backlog fills, then
	// events are dropped, and NOTIFY is still answered at once.
	const sent = eventBacklog + 5
	for seq := uint32(0); seq <= sent; seq++ {
		hdr, body := event(seq, Arg{"N", strconv.Itoa(int(seq))})
		if code := notify(t, f.callback, hdr, body); code != 200 {
			t.Fatalf("NOTIFY %d: %d", seq, code)
		}
		if seq == 0 {
			waitFor(t, "the handler to start", func() bool { return calls.Load() == 1 })
		}
	}
	close(release)
	for seq := uint32(0); seq <= eventBacklog; seq++ {
		if ev := got.next(t); ev.Seq != seq || ev.Resync {
			t.Fatalf("queued event %+v, want SEQ %d", ev, seq)
		}
	}
	got.none(t, 50*time.Millisecond)
	// The next event delivered says some were lost.
	hdr, body := event(sent + 1)
	notify(t, f.callback, hdr, body)
	if ev := got.next(t); ev.Seq != sent+1 || !ev.Resync {
		t.Errorf("event after drops %+v, want Resync", ev)
	}
}

func TestSubscriberClose(t *testing.T) {
	d := newDevice(t, PublisherConfig{})
	s := &Subscriber{Listen: "127.0.0.1:0", CallbackHost: loopback}
	evs := make(events, 16)
	ctx := context.Background()
	var subs []*Subscription
	for range 2 {
		sub, err := s.Subscribe(ctx, d.eventURL(), 0, evs.handler)
		if err != nil {
			t.Fatal(err)
		}
		subs = append(subs, sub)
		evs.next(t)
	}
	if n := d.p.Subscribers(evtPath); n != 2 {
		t.Fatalf("%d subscriptions", n)
	}
	if err := s.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if n := d.p.Subscribers(evtPath); n != 0 {
		t.Errorf("%d subscriptions left at the device after Close", n)
	}
	if _, err := s.Subscribe(ctx, d.eventURL(), 0, evs.handler); err == nil {
		t.Error("Subscribe after Close succeeded")
	}
	for _, sub := range subs {
		if err := sub.Close(ctx); err != nil {
			t.Errorf("Subscription.Close after Subscriber.Close: %v", err)
		}
	}
}

func TestRestartEvidence(t *testing.T) {
	for _, tc := range []struct {
		name, sid string
		ev        Event
		wantSID   string
		restarted bool
	}{
		{"first event", "", Event{SID: "uuid:a", Initial: true}, "uuid:a", false},
		{"next event", "uuid:a", Event{SID: "uuid:a", Seq: 1}, "uuid:a", false},
		{"subscribed anew", "uuid:a", Event{SID: "uuid:b", Initial: true}, "uuid:b", true},
		{"sequence back at 0", "uuid:a", Event{SID: "uuid:a", Initial: true}, "uuid:a", true},
		// The device forgot the subscription before its first event came
		// (or that event was lost): no SID was seen, the 412 says it.
		{"forgotten before any event", "", Event{SID: "uuid:b", Initial: true, Resync: true, Forgotten: true}, "uuid:b", true},
	} {
		sid, why := RestartEvidence(tc.sid, tc.ev)
		if sid != tc.wantSID || (why != "") != tc.restarted {
			t.Errorf("%s: RestartEvidence = %q, %q; want SID %q, restarted %v", tc.name, sid, why, tc.wantSID, tc.restarted)
		}
	}
}
