package portmap

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portfwd/portfwd/igd"
	"github.com/portfwd/portfwd/igd/igdtest"
	"github.com/portfwd/portfwd/natpmp"
	"github.com/portfwd/portfwd/pmp"
	"github.com/portfwd/portfwd/upnp"
)

// Like the rest of the package's tests, these use fakes on 127.0.0.1 with
// explicit addresses, NoDefaultGateway and NoMulticast; announcements are
// fed through a loopback socket (WatchOptions.Announcements), never the
// multicast group.

// eventedIGD puts UPnP eventing in front of igdtest's fake router, which
// has none. It serves on a fixed loopback port, so that the router can
// stop and come back at the same address, and:
//   - answers SUBSCRIBE and UNSUBSCRIBE on the connection service's event
//     URL (/evt/Conn) with an upnp.Publisher,
//   - answers GetExternalIPAddress and GetStatusInfo from values the test
//     sets (the uptime runs from a boot time the test can reset),
//   - passes every other request to the igdtest server.
//
// Changes are published only when the test says (notify), so that a test
// can also play a router whose events are broken.
type eventedIGD struct {
	t        *testing.T
	igd      *igdtest.Server
	Location string
	addr     string
	proxy    *httputil.ReverseProxy
	pubCfg   upnp.PublisherConfig

	mu     sync.Mutex
	pub    *upnp.Publisher
	srv    *http.Server
	ext    string
	status string
	boot   time.Time
}

const evtConn = "/evt/Conn"

func newEventedIGD(t *testing.T, opts igdtest.Options, pub upnp.PublisherConfig) *eventedIGD {
	t.Helper()
	back := igdtest.NewServer(t, opts)
	target, _ := url.Parse(back.Location)
	target.Path = ""
	e := &eventedIGD{t: t, igd: back, proxy: httputil.NewSingleHostReverseProxy(target),
		ext: "198.51.100.7", status: "Connected", boot: time.Now().Add(-time.Hour), pubCfg: pub}
	e.pubCfg.Services = map[string]func() []upnp.Arg{evtConn: e.vars}
	e.pub = upnp.NewPublisher(e.pubCfg)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.addr = ln.Addr().String()
	e.Location = "http://" + e.addr + "/rootDesc.xml"
	e.serve(ln)
	t.Cleanup(func() {
		e.stop()
		e.mu.Lock()
		e.pub.Close()
		e.mu.Unlock()
	})
	return e
}

func (e *eventedIGD) serve(ln net.Listener) {
	srv := &http.Server{Handler: e}
	e.mu.Lock()
	e.srv = srv
	e.mu.Unlock()
	go srv.Serve(ln)
}

// stop makes the router unreachable: nothing listens on its port.
func (e *eventedIGD) stop() {
	e.mu.Lock()
	srv := e.srv
	e.srv = nil
	e.mu.Unlock()
	if srv != nil {
		srv.Close()
	}
}

// start brings the router back on the same port.
func (e *eventedIGD) start() {
	ln, err := net.Listen("tcp", e.addr)
	if err != nil {
		e.t.Fatalf("the fake router cannot come back on %s: %v", e.addr, err)
	}
	e.serve(ln)
}

// forgetSubscriptions replaces the Publisher, as a restart of the router's
// daemon does: renewals of the old subscriptions get 412.
func (e *eventedIGD) forgetSubscriptions() {
	e.mu.Lock()
	old := e.pub
	e.pub = upnp.NewPublisher(e.pubCfg)
	e.mu.Unlock()
	old.Close()
}

func (e *eventedIGD) publisher() *upnp.Publisher {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.pub
}

func (e *eventedIGD) vars() []upnp.Arg {
	e.mu.Lock()
	defer e.mu.Unlock()
	return []upnp.Arg{
		{Name: "ExternalIPAddress", Value: e.ext},
		{Name: "ConnectionStatus", Value: e.status},
		{Name: "PortMappingNumberOfEntries", Value: strconv.Itoa(len(e.igd.Mappings()))},
	}
}

// notify publishes the named variables' current values.
func (e *eventedIGD) notify(names ...string) {
	var changed []upnp.Arg
	for _, v := range e.vars() {
		for _, n := range names {
			if v.Name == n {
				changed = append(changed, v)
			}
		}
	}
	e.publisher().Notify(evtConn, changed)
}

func (e *eventedIGD) setExternal(ip string) {
	e.mu.Lock()
	e.ext = ip
	e.mu.Unlock()
}

func (e *eventedIGD) setStatus(s string) {
	e.mu.Lock()
	e.status = s
	e.mu.Unlock()
}

// reboot restarts the uptime clock, as if the router had just started.
func (e *eventedIGD) reboot(upFor time.Duration) {
	e.mu.Lock()
	e.boot = time.Now().Add(-upFor)
	e.mu.Unlock()
}

// add puts a mapping on the router behind the watcher's back.
func (e *eventedIGD) add(pm igd.PortMapping) {
	e.igd.SetMappings(append(e.igd.Mappings(), pm))
}

func (e *eventedIGD) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case "SUBSCRIBE", "UNSUBSCRIBE":
		e.publisher().ServeHTTP(w, r)
		return
	case http.MethodPost:
		_, action, _ := strings.Cut(strings.Trim(r.Header.Get("SOAPAction"), `"`), "#")
		e.mu.Lock()
		ext, status, up := e.ext, e.status, time.Since(e.boot)
		e.mu.Unlock()
		var out upnp.Args
		switch action {
		case "GetExternalIPAddress":
			out = upnp.Args{{Name: "NewExternalIPAddress", Value: ext}}
		case "GetStatusInfo":
			out = upnp.Args{{Name: "NewConnectionStatus", Value: status}, {Name: "NewLastConnectionError", Value: "ERROR_NONE"},
				{Name: "NewUptime", Value: strconv.Itoa(int(up / time.Second))}}
		}
		if out != nil {
			w.Header().Set("Content-Type", `text/xml; charset="utf-8"`)
			w.Write(upnp.AppendEnvelope(nil, e.igd.ServiceType, action+"Response", out))
			return
		}
	}
	e.proxy.ServeHTTP(w, r)
}

// watchUPnP watches e with the test's options.
func watchUPnP(t *testing.T, e *eventedIGD, wo WatchOptions) (<-chan WatchEvent, context.CancelFunc) {
	t.Helper()
	o := testOptions(t)
	o.GatewayURL, o.Methods = e.Location, []Method{UPnP}
	wo.NoAnnouncements = wo.Announcements == nil && wo.Announcements6 == nil
	if !wo.NoAnnouncements {
		loopbackAnnouncements(t, &wo)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return startWatchCtx(t, ctx, cancel, o, wo), cancel
}

// startWatch starts Watch, ended and drained when the test ends.
func startWatch(t *testing.T, o Options, wo WatchOptions) <-chan WatchEvent {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	return startWatchCtx(t, ctx, cancel, o, wo)
}

func startWatchCtx(t *testing.T, ctx context.Context, cancel context.CancelFunc, o Options, wo WatchOptions) <-chan WatchEvent {
	t.Helper()
	ch, err := Watch(ctx, o, wo)
	if err != nil {
		cancel()
		t.Fatalf("Watch: %v", err)
	}
	t.Cleanup(func() { cancel(); drain(ch) })
	return ch
}

// loopbackAnnouncements gives wo a loopback socket for each family of
// announcements it has none for, so that no test opens port 5350.
func loopbackAnnouncements(t *testing.T, wo *WatchOptions) {
	t.Helper()
	for _, x := range []struct {
		pc      *net.PacketConn
		network string
		addr    string
	}{{&wo.Announcements, "udp4", "127.0.0.1:0"}, {&wo.Announcements6, "udp6", "[::1]:0"}} {
		if *x.pc != nil {
			continue
		}
		pc, err := net.ListenPacket(x.network, x.addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { pc.Close() })
		*x.pc = pc
	}
}

// drain reads ch until it is closed, for at most a few seconds.
func drain(ch <-chan WatchEvent) bool {
	deadline := time.After(5 * time.Second)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return true
			}
		case <-deadline:
			return false
		}
	}
}

// expect returns the next event, failing unless it is of kind and arrives
// within d: an event of another kind in between is a failure, so that
// duplicates and spurious events are caught.
func expect(t *testing.T, ch <-chan WatchEvent, d time.Duration, kind WatchEventKind) WatchEvent {
	t.Helper()
	select {
	case e, ok := <-ch:
		if !ok {
			t.Fatalf("events closed while waiting for %s", kind)
		}
		if e.Kind != kind {
			t.Fatalf("got %s event (%+v), want %s", e.Kind, e, kind)
		}
		return e
	case <-time.After(d):
		t.Fatalf("no %s event within %v", kind, d)
	}
	return WatchEvent{}
}

// quiet fails if an event arrives within d.
func quiet(t *testing.T, ch <-chan WatchEvent, d time.Duration) {
	t.Helper()
	select {
	case e := <-ch:
		t.Fatalf("unexpected %s event: %+v", e.Kind, e)
	case <-time.After(d):
	}
}

var web = igd.PortMapping{ExternalPort: 18080, Protocol: "TCP", InternalPort: 8080, InternalClient: "192.168.1.20", Enabled: true, Description: "web"}

func TestWatchUPnPEventsReportEachChangeOnce(t *testing.T) {
	e := newEventedIGD(t, igdtest.Options{Version: 2, Mappings: []igd.PortMapping{web}}, upnp.PublisherConfig{})
	// An hour between polls: only events can report the changes in time.
	ch, _ := watchUPnP(t, e, WatchOptions{PollInterval: time.Hour})

	first := expect(t, ch, 3*time.Second, WatchInitial)
	if first.Method != UPnP || first.Gateway != "http://"+e.addr+"/ctl/Conn" ||
		first.ExternalAddr.String() != "198.51.100.7" || first.Count != 1 || first.Status != "Connected" || first.Via != ViaStart {
		t.Errorf("initial event %+v", first)
	}
	if !strings.Contains(first.Reason, "UPnP events") || !slices.Contains(first.Means, ViaGENA) || !slices.Contains(first.Means, ViaPoll) {
		t.Errorf("initial event should say it uses UPnP events: %q, %v", first.Reason, first.Means)
	}
	// The initial NOTIFY restates what was just read: no event.
	quiet(t, ch, 200*time.Millisecond)

	// A mapping added by another client; the router publishes the count.
	game := igd.PortMapping{ExternalPort: 27015, Protocol: "UDP", InternalPort: 27015, InternalClient: "192.168.1.30", Enabled: true, Description: "game"}
	e.add(game)
	e.notify("PortMappingNumberOfEntries")
	ev := expect(t, ch, 2*time.Second, WatchMappingsChanged)
	if ev.Via != ViaGENA || ev.Count != 2 || ev.PreviousCount != 1 || len(ev.Removed) != 0 ||
		len(ev.Added) != 1 || ev.Added[0].ExternalPort != 27015 || ev.Added[0].InternalClient != "192.168.1.30" || ev.Added[0].Description != "game" {
		t.Errorf("mappings-changed %+v", ev)
	}

	// The web entry is re-pointed to another host: same key, same count,
	// but a different mapping.
	moved := web
	moved.InternalClient = "192.168.1.21"
	e.igd.SetMappings([]igd.PortMapping{moved, game})
	e.notify("PortMappingNumberOfEntries")
	ev = expect(t, ch, 2*time.Second, WatchMappingsChanged)
	if ev.Count != 2 || ev.PreviousCount != 2 || len(ev.Added) != 1 || len(ev.Removed) != 1 ||
		ev.Added[0].InternalClient != "192.168.1.21" || ev.Removed[0].InternalClient != "192.168.1.20" {
		t.Errorf("re-pointed entry: %+v", ev)
	}

	e.setExternal("198.51.100.8")
	e.notify("ExternalIPAddress")
	ev = expect(t, ch, 2*time.Second, WatchExternalAddressChanged)
	if ev.ExternalAddr.String() != "198.51.100.8" || ev.Previous.String() != "198.51.100.7" || ev.Via != ViaGENA || ev.Count != 2 {
		t.Errorf("external-address-changed %+v", ev)
	}

	e.setStatus("Disconnected")
	e.notify("ConnectionStatus")
	ev = expect(t, ch, 2*time.Second, WatchStatusChanged)
	if ev.Status != "Disconnected" || ev.PreviousStatus != "Connected" {
		t.Errorf("status-changed %+v", ev)
	}

	// A router that sends every variable in each message (miniupnpd does)
	// repeats values that did not change: nothing to report.
	e.notify("ExternalIPAddress", "ConnectionStatus", "PortMappingNumberOfEntries")
	quiet(t, ch, 300*time.Millisecond)
}

func TestWatchChangeSeenByEventAndPollIsReportedOnce(t *testing.T) {
	e := newEventedIGD(t, igdtest.Options{Version: 1}, upnp.PublisherConfig{})
	ch, _ := watchUPnP(t, e, WatchOptions{PollInterval: 20 * time.Millisecond})
	expect(t, ch, 3*time.Second, WatchInitial)
	for i := range 3 {
		e.add(igd.PortMapping{ExternalPort: uint16(20000 + i), Protocol: "TCP", InternalPort: 80, InternalClient: "192.168.1.20", Enabled: true})
		e.setExternal(fmt.Sprintf("198.51.100.%d", 10+i))
		e.notify("PortMappingNumberOfEntries", "ExternalIPAddress")
		// The poll or the event, whichever comes first, reports each
		// change; the other finds nothing new.
		got := map[WatchEventKind]int{}
		deadline := time.After(500 * time.Millisecond)
	collect:
		for {
			select {
			case ev := <-ch:
				got[ev.Kind]++
				if ev.Kind == WatchMappingsChanged && (len(ev.Added) != 1 || ev.Added[0].ExternalPort != uint16(20000+i)) {
					t.Errorf("round %d: %+v", i, ev)
				}
			case <-deadline:
				break collect
			}
		}
		if got[WatchMappingsChanged] != 1 || got[WatchExternalAddressChanged] != 1 || len(got) != 2 {
			t.Fatalf("round %d: events %v, want one mappings-changed and one external-address-changed", i, got)
		}
	}
}

func TestWatchPollCatchesWhatBrokenEventsMiss(t *testing.T) {
	// The router accepts the subscription but never sends a change.
	e := newEventedIGD(t, igdtest.Options{Version: 2}, upnp.PublisherConfig{})
	ch, _ := watchUPnP(t, e, WatchOptions{PollInterval: 100 * time.Millisecond})
	expect(t, ch, 3*time.Second, WatchInitial)
	e.add(web)
	ev := expect(t, ch, time.Second, WatchMappingsChanged)
	if ev.Via != ViaPoll || len(ev.Added) != 1 || ev.Added[0].ExternalPort != 18080 || ev.Count != 1 || ev.PreviousCount != 0 {
		t.Errorf("mappings-changed %+v", ev)
	}
	e.setExternal("203.0.113.99")
	ev = expect(t, ch, time.Second, WatchExternalAddressChanged)
	if ev.Via != ViaPoll || ev.ExternalAddr.String() != "203.0.113.99" {
		t.Errorf("external-address-changed %+v", ev)
	}
	e.igd.SetMappings(nil)
	ev = expect(t, ch, time.Second, WatchMappingsChanged)
	if len(ev.Removed) != 1 || len(ev.Added) != 0 || ev.Count != 0 {
		t.Errorf("deletion %+v", ev)
	}
}

func TestWatchWithoutEventingPolls(t *testing.T) {
	// igdtest alone answers SUBSCRIBE with 405, as routers without
	// eventing do: the watch says so and polls.
	srv := igdtest.NewServer(t, igdtest.Options{Version: 1, ExternalIP: "198.51.100.7"})
	o := testOptions(t)
	o.GatewayURL, o.Methods = srv.Location, []Method{UPnP}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := Watch(ctx, o, WatchOptions{PollInterval: 100 * time.Millisecond, NoAnnouncements: true})
	if err != nil {
		t.Fatal(err)
	}
	ev := expect(t, ch, 3*time.Second, WatchInitial)
	if !strings.Contains(ev.Reason, "watching by polling every 100ms; no UPnP events: ") || !strings.Contains(ev.Reason, "405") || ev.Count != 0 ||
		!slices.Equal(ev.Means, []WatchSource{ViaPoll}) {
		t.Errorf("initial %+v", ev)
	}
	srv.SetMappings([]igd.PortMapping{web})
	if ev := expect(t, ch, time.Second, WatchMappingsChanged); len(ev.Added) != 1 {
		t.Errorf("mappings-changed %+v", ev)
	}
	cancel()
	if !drain(ch) {
		t.Fatal("the channel was not closed after the context ended")
	}
}

func TestWatchRouterForgetsSubscriptionIsARestart(t *testing.T) {
	// Subscriptions last 2 s, so the watcher renews every second; the
	// router's daemon restarts and answers the renewal with 412.
	e := newEventedIGD(t, igdtest.Options{Version: 2}, upnp.PublisherConfig{MinTimeout: 2 * time.Second, MaxTimeout: 2 * time.Second})
	ch, _ := watchUPnP(t, e, WatchOptions{PollInterval: time.Hour})
	expect(t, ch, 3*time.Second, WatchInitial)
	e.add(web) // no event tells of it
	e.forgetSubscriptions()
	// The renewal's 412 is a restart, and the watcher reads everything
	// afresh and finds the change it was not told of. The change may also
	// show first: when the subscription's initial event is late (a loaded
	// machine), the watcher re-reads the table on it, after the add.
	var restarted, changed bool
	timeout := time.After(5 * time.Second)
	for !restarted || !changed {
		select {
		case ev := <-ch:
			switch {
			case ev.Kind == WatchRouterRestarted && !restarted:
				restarted = true
				if ev.Via != ViaGENA || !strings.Contains(ev.Reason, "forgot our event subscription") {
					t.Errorf("router-restarted %+v", ev)
				}
			case ev.Kind == WatchMappingsChanged && !changed:
				changed = true
				if len(ev.Added) != 1 {
					t.Errorf("mappings-changed %+v", ev)
				}
			default:
				t.Fatalf("unexpected %s event: %+v", ev.Kind, ev)
			}
		case <-timeout:
			t.Fatalf("within 5 s: router-restarted %v, mappings-changed %v; want both", restarted, changed)
		}
	}
	// Events flow on the new subscription.
	e.setExternal("198.51.100.50")
	e.notify("ExternalIPAddress")
	if ev := expect(t, ch, 2*time.Second, WatchExternalAddressChanged); ev.Via != ViaGENA {
		t.Errorf("after resubscribing: %+v", ev)
	}
}

func TestWatchUptimeGoingBackIsARestartReportedOnce(t *testing.T) {
	e := newEventedIGD(t, igdtest.Options{Version: 2}, upnp.PublisherConfig{})
	ch, _ := watchUPnP(t, e, WatchOptions{PollInterval: 100 * time.Millisecond, NoGENA: true})
	expect(t, ch, 3*time.Second, WatchInitial)
	e.reboot(5 * time.Second)
	ev := expect(t, ch, time.Second, WatchRouterRestarted)
	if ev.Via != ViaPoll || !strings.Contains(ev.Reason, "uptime went back") {
		t.Errorf("router-restarted %+v", ev)
	}
	// Later polls see the new uptime advancing: no second restart.
	quiet(t, ch, 1500*time.Millisecond)
}

func TestWatchGatewayGoneAndBack(t *testing.T) {
	e := newEventedIGD(t, igdtest.Options{Version: 2}, upnp.PublisherConfig{})
	ch, _ := watchUPnP(t, e, WatchOptions{PollInterval: 100 * time.Millisecond})
	expect(t, ch, 3*time.Second, WatchInitial)
	e.stop()
	gone := expect(t, ch, 2*time.Second, WatchGatewayGone)
	if gone.Reason == "" || gone.Via != ViaPoll {
		t.Errorf("gateway-gone %+v", gone)
	}
	e.add(web) // made while the watcher could not see
	e.start()
	back := expect(t, ch, 3*time.Second, WatchGatewayBack)
	if back.Via != ViaDiscovery || !strings.Contains(back.Reason, "upnp gateway at") {
		t.Errorf("gateway-back %+v", back)
	}
	if ev := expect(t, ch, time.Second, WatchMappingsChanged); ev.Via != ViaDiscovery || len(ev.Added) != 1 {
		t.Errorf("change made while gone: %+v", ev)
	}
	// The watcher subscribed again: events arrive.
	e.setExternal("198.51.100.60")
	e.notify("ExternalIPAddress")
	ev := expect(t, ch, time.Second, WatchExternalAddressChanged)
	if ev.ExternalAddr.String() != "198.51.100.60" {
		t.Errorf("after coming back: %+v", ev)
	}
}

func TestWatchSlowReaderNeverBlocksTheWatcher(t *testing.T) {
	e := newEventedIGD(t, igdtest.Options{Version: 2}, upnp.PublisherConfig{})
	ch, _ := watchUPnP(t, e, WatchOptions{PollInterval: time.Hour})
	// Nobody reads while the router changes address many times.
	const changes = 2 * watchBacklog
	for i := range changes {
		e.setExternal(fmt.Sprintf("198.51.%d.%d", 100+i/200, 1+i%200))
		e.notify("ExternalIPAddress")
		time.Sleep(2 * time.Millisecond)
	}
	last := fmt.Sprintf("198.51.%d.%d", 100+(changes-1)/200, 1+(changes-1)%200)
	deadline := time.Now().Add(5 * time.Second)
	for len(ch) < cap(ch) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if len(ch) != cap(ch) {
		t.Fatalf("only %d of %d events queued; the test needs a full queue", len(ch), cap(ch))
	}
	// The watcher still works with the queue full: this change reaches us
	// after the backlog.
	e.setStatus("Disconnected")
	e.notify("ConnectionStatus")
	var got []WatchEvent
	timeout := time.After(5 * time.Second)
	for len(got) == 0 || got[len(got)-1].Kind != WatchStatusChanged {
		select {
		case ev := <-ch:
			got = append(got, ev)
		case <-timeout:
			t.Fatalf("the status change never arrived after %d events", len(got))
		}
	}
	if got[0].Kind == WatchInitial {
		t.Error("the oldest events should have been dropped, but the initial one is still there")
	}
	end := got[len(got)-1]
	if end.ExternalAddr.String() != last || end.Status != "Disconnected" {
		t.Errorf("last event %+v, want the latest address %s", end, last)
	}
	// Without drops all the changes would come, and the status after
	// them. With drops, about a queue's worth: the watcher may queue a few
	// more changes that were still on their way when the reading began,
	// so no exact count.
	if len(got) > changes {
		t.Errorf("%d events read for %d changes and a status: none dropped though nobody read", len(got), changes)
	}
}

func TestWatchClosesAndUnsubscribes(t *testing.T) {
	e := newEventedIGD(t, igdtest.Options{Version: 2}, upnp.PublisherConfig{})
	ch, cancel := watchUPnP(t, e, WatchOptions{PollInterval: time.Hour})
	expect(t, ch, 3*time.Second, WatchInitial)
	if n := e.publisher().Subscribers(evtConn); n != 1 {
		t.Fatalf("%d subscriptions on the router, want 1", n)
	}
	cancel()
	if !drain(ch) {
		t.Fatal("the channel was not closed after the context ended")
	}
	if n := e.publisher().Subscribers(evtConn); n != 0 {
		t.Errorf("%d subscriptions left on the router after the watch ended", n)
	}
}

func TestWatchNoGateway(t *testing.T) {
	o := testOptions(t)
	o.GatewayURL, o.Methods = "http://127.0.0.1:9/rootDesc.xml", []Method{UPnP}
	o.RequestTimeout = 500 * time.Millisecond
	start := time.Now()
	_, err := Watch(context.Background(), o, WatchOptions{NoAnnouncements: true})
	if !errors.Is(err, ErrNoGateway) {
		t.Fatalf("Watch without a gateway: %v, want ErrNoGateway", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Watch took %v to give up", d)
	}
	_, err = Watch(context.Background(), o, WatchOptions{CallbackAddr: netip.IPv4Unspecified()})
	if err == nil || !strings.Contains(err.Error(), "wildcard") {
		t.Errorf("a wildcard callback address: %v", err)
	}
}

// pmpRouter is a NAT-PMP router whose epoch runs with the clock, as RFC
// 6886 §3.6 requires, and can restart.
type pmpRouter struct {
	mu   sync.Mutex
	ext  netip.Addr
	boot time.Time
	base uint32
	stop func()
	addr netip.AddrPort
}

func (r *pmpRouter) ExternalAddress(context.Context, netip.Addr) (netip.Addr, natpmp.ResultCode) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ext, natpmp.Success
}

func (r *pmpRouter) Map(_ context.Context, _ netip.Addr, _ natpmp.Protocol, _, ext uint16, life uint32) (uint16, uint32, natpmp.ResultCode) {
	return ext, life, natpmp.Success
}

func (r *pmpRouter) epoch() uint32 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.base + uint32(time.Since(r.boot)/time.Second)
}

// restart starts the epoch again from 0.
func (r *pmpRouter) restart() {
	r.mu.Lock()
	r.base, r.boot = 0, time.Now()
	r.mu.Unlock()
}

func (r *pmpRouter) setExternal(a string) {
	r.mu.Lock()
	r.ext = netip.MustParseAddr(a)
	r.mu.Unlock()
}

func (r *pmpRouter) serve(t *testing.T, addr string) {
	pc, err := net.ListenPacket("udp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	r.addr = pc.LocalAddr().(*net.UDPAddr).AddrPort()
	ctx, cancel := context.WithCancel(context.Background())
	s := &pmp.Server{NATPMP: r, NATPMPEpoch: r.epoch}
	done := make(chan struct{})
	go func() { s.ServePacketConn(ctx, pc); close(done) }()
	r.stop = func() { cancel(); pc.Close(); <-done }
}

func startPMPRouter(t *testing.T) *pmpRouter {
	r := &pmpRouter{ext: netip.MustParseAddr("198.51.100.9"), boot: time.Now(), base: 5000}
	r.serve(t, "127.0.0.1:0")
	t.Cleanup(func() { r.stop() })
	return r
}

// announcer sends announcements to the watcher's socket from host.
type announcer struct {
	t    *testing.T
	conn *net.UDPConn
}

func newAnnouncer(t *testing.T, from string, to net.PacketConn) *announcer {
	network := "udp4"
	if netip.MustParseAddrPort(from).Addr().Is6() {
		network = "udp6"
	}
	c, err := net.DialUDP(network, net.UDPAddrFromAddrPort(netip.MustParseAddrPort(from)), to.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &announcer{t: t, conn: c}
}

func (a *announcer) natpmp(epoch uint32, ext string) {
	b := natpmp.AppendResponse(nil, natpmp.Response{Op: natpmp.OpExternalAddress, Result: natpmp.Success, Epoch: epoch, ExternalAddr: netip.MustParseAddr(ext)})
	if _, err := a.conn.Write(b); err != nil {
		a.t.Fatal(err)
	}
}

func watchPMP(t *testing.T, r *pmpRouter, wo WatchOptions) (<-chan WatchEvent, net.PacketConn) {
	t.Helper()
	o := testOptions(t)
	o.NATPMPServer, o.Methods = r.addr, []Method{NATPMP}
	ann, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ann.Close() })
	wo.Announcements = ann
	loopbackAnnouncements(t, &wo)
	return startWatch(t, o, wo), ann
}

func TestWatchNATPMPEpochResetByPoll(t *testing.T) {
	r := startPMPRouter(t)
	ch, _ := watchPMP(t, r, WatchOptions{PollInterval: 100 * time.Millisecond})
	ev := expect(t, ch, 3*time.Second, WatchInitial)
	if ev.Method != NATPMP || ev.ExternalAddr.String() != "198.51.100.9" || ev.Count != -1 || ev.Gateway != r.addr.String() {
		t.Errorf("initial %+v", ev)
	}
	r.restart()
	ev = expect(t, ch, time.Second, WatchRouterRestarted)
	if ev.Via != ViaPoll || !strings.Contains(ev.Reason, "epoch went back") {
		t.Errorf("router-restarted %+v", ev)
	}
	r.setExternal("198.51.100.10")
	ev = expect(t, ch, time.Second, WatchExternalAddressChanged)
	if ev.Previous.String() != "198.51.100.9" || ev.ExternalAddr.String() != "198.51.100.10" {
		t.Errorf("external-address-changed %+v", ev)
	}
	quiet(t, ch, 500*time.Millisecond)
}

func TestWatchNATPMPAnnouncements(t *testing.T) {
	r := startPMPRouter(t)
	// No poll in the test's time: only announcements can tell.
	ch, ann := watchPMP(t, r, WatchOptions{PollInterval: time.Hour})
	expect(t, ch, 3*time.Second, WatchInitial)
	a := newAnnouncer(t, "127.0.0.1:0", ann)

	// The router's address changed: the announcement carries the new one.
	a.natpmp(r.epoch(), "198.51.100.11")
	ev := expect(t, ch, time.Second, WatchExternalAddressChanged)
	if ev.Via != ViaAnnouncement || ev.ExternalAddr.String() != "198.51.100.11" || ev.Previous.String() != "198.51.100.9" {
		t.Errorf("external-address-changed %+v", ev)
	}
	// Routers repeat an announcement up to ten times: once is enough.
	a.natpmp(r.epoch(), "198.51.100.11")
	a.natpmp(r.epoch(), "198.51.100.11")
	quiet(t, ch, 200*time.Millisecond)

	// The router restarted: its epoch starts again.
	a.natpmp(1, "198.51.100.11")
	ev = expect(t, ch, time.Second, WatchRouterRestarted)
	if ev.Via != ViaAnnouncement || !strings.Contains(ev.Reason, "NAT-PMP epoch went back") {
		t.Errorf("router-restarted %+v", ev)
	}
	a.natpmp(2, "198.51.100.11")
	quiet(t, ch, 200*time.Millisecond)

	// Another host cannot fake the router's announcements.
	other := newAnnouncer(t, "127.0.0.2:0", ann)
	other.natpmp(0, "192.0.2.66")
	quiet(t, ch, 200*time.Millisecond)
}

func TestWatchNATPMPGatewayGoneAndBack(t *testing.T) {
	r := startPMPRouter(t)
	ch, ann := watchPMP(t, r, WatchOptions{PollInterval: 100 * time.Millisecond})
	expect(t, ch, 3*time.Second, WatchInitial)
	r.stop()
	expect(t, ch, 3*time.Second, WatchGatewayGone)
	// It comes back at the same address, restarted, and announces it.
	r.restart()
	r.serve(t, r.addr.String())
	newAnnouncer(t, "127.0.0.1:0", ann).natpmp(r.epoch(), "198.51.100.9")
	back := expect(t, ch, 3*time.Second, WatchGatewayBack)
	if back.Gateway != r.addr.String() {
		t.Errorf("gateway-back %+v", back)
	}
	if ev := expect(t, ch, time.Second, WatchRouterRestarted); !strings.Contains(ev.Reason, "epoch went back") {
		t.Errorf("router-restarted %+v", ev)
	}
}

func TestWatchUPnPRouterAnnouncingRestartIsReportedOnce(t *testing.T) {
	// A router speaking UPnP and NAT-PMP announces its restart. The
	// watcher reads the UPnP side at once, whose uptime shows the same
	// restart: it must not make a second report.
	e := newEventedIGD(t, igdtest.Options{Version: 2}, upnp.PublisherConfig{})
	ann, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ann.Close()
	ch, _ := watchUPnP(t, e, WatchOptions{PollInterval: time.Hour, NoGENA: true, Announcements: ann})
	expect(t, ch, 3*time.Second, WatchInitial)
	a := newAnnouncer(t, "127.0.0.1:0", ann)
	a.natpmp(5000, "198.51.100.7") // the first one is only a baseline
	quiet(t, ch, 200*time.Millisecond)
	e.reboot(time.Second)
	a.natpmp(1, "198.51.100.7")
	ev := expect(t, ch, time.Second, WatchRouterRestarted)
	if ev.Via != ViaAnnouncement || !strings.Contains(ev.Reason, "NAT-PMP epoch went back") {
		t.Errorf("router-restarted %+v", ev)
	}
	quiet(t, ch, 500*time.Millisecond)
}

func (a *announcer) pcp(epoch uint32) {
	b := make([]byte, 24)
	b[0], b[1] = 2, 0x80 // version 2, ANNOUNCE response
	b[8], b[9], b[10], b[11] = byte(epoch>>24), byte(epoch>>16), byte(epoch>>8), byte(epoch)
	if _, err := a.conn.Write(b); err != nil {
		a.t.Fatal(err)
	}
}

func TestWatchPCPAnnouncementPromptsAReading(t *testing.T) {
	e := newEventedIGD(t, igdtest.Options{Version: 2}, upnp.PublisherConfig{})
	ann, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ann.Close()
	ch, _ := watchUPnP(t, e, WatchOptions{PollInterval: time.Hour, NoGENA: true, Announcements: ann})
	expect(t, ch, 3*time.Second, WatchInitial)
	a := newAnnouncer(t, "127.0.0.1:0", ann)
	e.setExternal("198.51.100.70")
	a.pcp(1000)
	if ev := expect(t, ch, time.Second, WatchExternalAddressChanged); ev.Via != ViaAnnouncement || ev.ExternalAddr.String() != "198.51.100.70" {
		t.Errorf("external-address-changed %+v", ev)
	}
	// miniupnpd sends its unsolicited ANNOUNCE with epoch 0 every time:
	// not a restart.
	a.pcp(0)
	a.pcp(0)
	quiet(t, ch, 300*time.Millisecond)
}

func TestDiffMappings(t *testing.T) {
	m := func(port uint16, client string, desc string) Mapping {
		return Mapping{Protocol: TCP, ExternalPort: port, InternalClient: client, InternalPort: port, Description: desc, Enabled: true}
	}
	ports := func(l []Mapping) string {
		var s []string
		for _, x := range l {
			s = append(s, fmt.Sprintf("%d:%s:%s", x.ExternalPort, x.InternalClient, x.Description))
		}
		return strings.Join(s, ",")
	}
	leased := m(1, "a", "x")
	leased.Lease, leased.Enabled = time.Minute, false
	tests := []struct {
		name           string
		before, after  []Mapping
		added, removed string
	}{
		{"same", []Mapping{m(1, "a", "x"), m(2, "a", "y")}, []Mapping{m(2, "a", "y"), m(1, "a", "x")}, "", ""},
		{"added sorted", []Mapping{m(5, "a", "")}, []Mapping{m(9, "b", ""), m(5, "a", ""), m(3, "c", "")}, "3:c:,9:b:", ""},
		{"removed", []Mapping{m(1, "a", ""), m(2, "a", "")}, nil, "", "1:a:,2:a:"},
		{"re-pointed", []Mapping{m(1, "a", "x")}, []Mapping{m(1, "b", "x")}, "1:b:x", "1:a:x"},
		{"renamed", []Mapping{m(1, "a", "x")}, []Mapping{m(1, "a", "y")}, "1:a:y", "1:a:x"},
		{"lease and enabled do not count", []Mapping{m(1, "a", "x")}, []Mapping{leased}, "", ""},
		{"duplicates counted", []Mapping{m(1, "a", "")}, []Mapping{m(1, "a", ""), m(1, "a", "")}, "1:a:", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			added, removed := DiffMappings(tc.before, tc.after)
			if ports(added) != tc.added || ports(removed) != tc.removed {
				t.Errorf("added %q removed %q, want %q and %q", ports(added), ports(removed), tc.added, tc.removed)
			}
		})
	}
}

func TestParseAnnouncement(t *testing.T) {
	from := netip.MustParseAddr("192.168.1.1")
	pmp := natpmp.AppendResponse(nil, natpmp.Response{Op: natpmp.OpExternalAddress, Epoch: 77, ExternalAddr: netip.MustParseAddr("198.51.100.1")})
	pcpAnnounce := make([]byte, 24)
	pcpAnnounce[0], pcpAnnounce[1] = 2, 0x80
	pcpAnnounce[8], pcpAnnounce[11] = 1, 2 // epoch 0x01000002
	tests := []struct {
		name string
		b    []byte
		ok   bool
		want announcement
	}{
		{"NAT-PMP", pmp, true, announcement{from: from, version: 0, epoch: 77, ext: netip.MustParseAddr("198.51.100.1")}},
		{"NAT-PMP not connected", natpmp.AppendResponse(nil, natpmp.Response{Op: natpmp.OpExternalAddress, Epoch: 5, ExternalAddr: netip.IPv4Unspecified()}),
			true, announcement{from: from, epoch: 5}},
		{"PCP ANNOUNCE", pcpAnnounce, true, announcement{from: from, version: 2, epoch: 0x01000002}},
		{"NAT-PMP error", natpmp.AppendResponse(nil, natpmp.Response{Op: natpmp.OpExternalAddress, Result: natpmp.NetworkFailure}), false, announcement{}},
		{"NAT-PMP mapping response", natpmp.AppendResponse(nil, natpmp.Response{Op: natpmp.OpMapTCP, InternalPort: 1, ExternalPort: 1}), false, announcement{}},
		{"NAT-PMP request", []byte{0, 0}, false, announcement{}},
		{"PCP request", append([]byte{2, 0}, make([]byte, 22)...), false, announcement{}},
		{"PCP error", append([]byte{2, 0x80, 0, 3}, make([]byte, 20)...), false, announcement{}},
		{"short", []byte{0, 128, 0, 0, 0}, false, announcement{}},
		{"empty", nil, false, announcement{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := parseAnnouncement(tc.b, from)
			if ok != tc.ok || (ok && got != tc.want) {
				t.Errorf("parseAnnouncement = %+v, %v; want %+v, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}

func FuzzParseAnnouncement(f *testing.F) {
	f.Add(natpmp.AppendResponse(nil, natpmp.Response{Op: natpmp.OpExternalAddress, Epoch: 77, ExternalAddr: netip.MustParseAddr("198.51.100.1")}))
	f.Add(append([]byte{2, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0}, make([]byte, 12)...))
	f.Add([]byte{0, 128, 0})
	from := netip.MustParseAddr("192.168.1.1")
	f.Fuzz(func(t *testing.T, b []byte) {
		a, ok := parseAnnouncement(b, from)
		if !ok {
			return
		}
		if a.from != from || (a.version != 0 && a.version != 2) || (a.version == 2 && a.ext.IsValid()) {
			t.Errorf("parseAnnouncement(% x) = %+v", b, a)
		}
		if a.version == 0 {
			// A NAT-PMP announcement re-encodes to the bytes it came from.
			re := natpmp.AppendResponse(nil, natpmp.Response{Op: natpmp.OpExternalAddress, Epoch: a.epoch, ExternalAddr: cmpOr(a.ext, netip.IPv4Unspecified())})
			if string(re) != string(b[:12]) {
				t.Errorf("announcement % x re-encodes as % x", b[:12], re)
			}
		}
	})
}

func cmpOr(a, b netip.Addr) netip.Addr {
	if a.IsValid() {
		return a
	}
	return b
}
