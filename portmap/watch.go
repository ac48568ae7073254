package portmap

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/ipv4"

	"github.com/portfwd/portfwd/internal/epoch"
	"github.com/portfwd/portfwd/internal/netroute"
	"github.com/portfwd/portfwd/natpmp"
	"github.com/portfwd/portfwd/pcp"
	"github.com/portfwd/portfwd/upnp"
)

// WatchEventKind says what changed on a watched gateway.
type WatchEventKind string

const (
	// WatchInitial is the first event: the gateway's state when watching
	// began (external address, mapping count, connection status).
	WatchInitial WatchEventKind = "initial"
	// WatchExternalAddressChanged: the gateway's external address changed;
	// Previous holds the old one.
	WatchExternalAddressChanged WatchEventKind = "external-address-changed"
	// WatchMappingsChanged: the mapping table changed; Added and Removed
	// hold the difference when the table could be read.
	WatchMappingsChanged WatchEventKind = "mappings-changed"
	// WatchRouterRestarted: the router restarted (or otherwise lost its
	// state); Reason says what showed it.
	WatchRouterRestarted WatchEventKind = "router-restarted"
	// WatchStatusChanged: the UPnP connection status changed
	// ("Connected", "Disconnected", ...); PreviousStatus holds the old one.
	WatchStatusChanged WatchEventKind = "status-changed"
	// WatchGatewayGone: the gateway stopped answering. Watch keeps
	// looking for it.
	WatchGatewayGone WatchEventKind = "gateway-gone"
	// WatchGatewayBack: a gateway answers again (possibly another one, or
	// over another protocol; Gateway and Method say which).
	WatchGatewayBack WatchEventKind = "gateway-back"
)

// WatchSource says how a change was noticed.
type WatchSource string

const (
	ViaStart        WatchSource = "start"        // the reading taken when watching began
	ViaGENA         WatchSource = "gena"         // a UPnP event (NOTIFY) from the router
	ViaPoll         WatchSource = "poll"         // the periodic poll
	ViaAnnouncement WatchSource = "announcement" // a NAT-PMP or PCP announcement on 224.0.0.1:5350, or a PCP one on [ff02::1]:5350
	ViaDiscovery    WatchSource = "discovery"    // re-discovery of a gateway that was gone
)

// WatchEvent is one change on a watched gateway. Every event carries the
// gateway's state after the change (ExternalAddr, Count, Status), so a
// reader that lost events to a full channel still knows where things
// stand.
//
// The JSON form (one object per event, as `portfwd watch --json` prints)
// uses the tags below; zero-valued optional fields are left out.
type WatchEvent struct {
	Kind WatchEventKind `json:"event"`
	Time time.Time      `json:"time"`
	// Gateway is the gateway's Addr: its control URL (UPnP) or host:port
	// (NAT-PMP, PCP).
	Gateway string `json:"gateway"`
	Method  Method `json:"method"`
	// ExternalAddr is the gateway's external address, when known.
	ExternalAddr netip.Addr `json:"external_addr,omitzero"`
	// Previous is the old external address of an external-address-changed
	// event.
	Previous netip.Addr `json:"previous,omitzero"`
	// Count is the number of mappings on the gateway, or -1 when the
	// protocol cannot tell (NAT-PMP and PCP cannot list a router's table).
	Count int `json:"count"`
	// PreviousCount is the count before a mappings-changed event; in other
	// events it equals Count.
	PreviousCount int `json:"previous_count"`
	// Added and Removed are the difference of a mappings-changed event,
	// when the table could be read. Mappings are told apart by key
	// (protocol, external port, remote host), internal client and port,
	// and description: an entry re-pointed to another host shows as one
	// removed and one added.
	Added   []Mapping `json:"added,omitempty"`
	Removed []Mapping `json:"removed,omitempty"`
	// Status is UPnP's connection status ("Connected", ...), when known.
	Status string `json:"status,omitempty"`
	// PreviousStatus is the old status of a status-changed event.
	PreviousStatus string `json:"previous_status,omitempty"`
	// Reason explains router-restarted, gateway-gone and gateway-back
	// events, and says for the initial event how the gateway is watched.
	Reason string `json:"reason,omitempty"`
	// Via says how the change was noticed.
	Via WatchSource `json:"via"`
	// Means, on the initial and gateway-back events, are how the gateway
	// is watched from then on: ViaGENA when its UPnP events arrive,
	// ViaAnnouncement when NAT-PMP/PCP announcements are heard, and
	// ViaPoll always. (Reason says the same in words; this is for
	// programs, such as the web UI, that poll by themselves when the
	// router pushes nothing.)
	Means []WatchSource `json:"-"`
}

// WatchOptions configure Watch. The zero value watches by every means.
type WatchOptions struct {
	// PollInterval is how often the gateway is read (external address,
	// status, mapping table) as a safety net under UPnP events, and as the
	// only means when the router's events are unavailable; many routers'
	// GENA is broken. It is also the longest wait between attempts to find
	// a gateway that went away. Default 30 s.
	PollInterval time.Duration
	// NoGENA disables subscribing to the UPnP connection service's events.
	NoGENA bool
	// NoAnnouncements disables listening for NAT-PMP and PCP announcements
	// on 224.0.0.1:5350, and for PCP announcements on [ff02::1]:5350, which
	// routers multicast when they restart or their external address
	// changes (RFC 6886 §3.2.1, RFC 6887 §14.1.3).
	NoAnnouncements bool
	// CallbackAddr is the local address UPnP event callbacks are served on;
	// the zero Addr means the gateway's LocalAddr, the address the router
	// sees our requests come from (routers refuse callbacks to any other).
	// It is never a wildcard: the callback server must not be reachable
	// from every network the host is on.
	CallbackAddr netip.Addr
	// Announcements, when set, is read for announcements instead of a
	// socket joined to 224.0.0.1:5350, as by a program that already
	// listens there. Watch stops reading it when its context ends but does
	// not close it. NoAnnouncements takes precedence.
	Announcements net.PacketConn
	// Announcements6 is the same over IPv6: read for PCP announcements
	// instead of a socket on [::]:5350 joined to ff02::1. Each family's
	// socket is opened unless given.
	Announcements6 net.PacketConn

	// routes6, when set (by tests), replaces this host's IPv6 default
	// routes, where the router's IPv6 addresses are learnt.
	routes6 func() []route6
	// Gateway, when set, is the gateway to watch instead of the one
	// discovery finds first; when it goes away, discovery (with the
	// Options) looks for one again. A Gateway from outside this package is
	// watched through the Gateway interface alone, by polling: the initial
	// event says so.
	Gateway Gateway
}

// Timing of a watch.
const (
	// DefaultWatchPollInterval is WatchOptions.PollInterval's default.
	DefaultWatchPollInterval = 30 * time.Second
	// watchBacklog is how many events wait for a slow reader before the
	// oldest are dropped.
	watchBacklog = 64
	// defaultRequestTimeout bounds discovery and each reading when
	// Options.RequestTimeout is zero.
	defaultRequestTimeout = 3 * time.Second
)

// Watch finds the gateway (as Discover does with o) and reports every
// change to it on the returned channel until ctx ends: its external
// address, its mapping table, its connection status, restarts, and its
// going away and coming back.
//
// Watch returns once the gateway is found (or with an error wrapping
// ErrNoGateway); the first event is WatchInitial. It notices changes by
// every means the gateway offers: UPnP events (GENA), NAT-PMP and PCP
// announcements, and a poll every PollInterval that catches whatever those
// miss. Each change is reported once, however many of them notice it.
//
// The channel is closed shortly after ctx ends, once the event
// subscription has been cancelled on the router (bounded by
// Options.RequestTimeout). A reader that falls behind loses the oldest
// events; the watcher never waits for it.
func Watch(ctx context.Context, o Options, wo WatchOptions) (<-chan WatchEvent, error) {
	if wo.PollInterval <= 0 {
		wo.PollInterval = DefaultWatchPollInterval
	}
	if wo.CallbackAddr.IsValid() && wo.CallbackAddr.IsUnspecified() {
		return nil, fmt.Errorf("callback address %s is a wildcard: give the local address the router reaches this host on, or leave it unset", wo.CallbackAddr)
	}
	w := &watcher{
		o:        o,
		wo:       wo,
		log:      o.logger(),
		out:      make(chan WatchEvent, watchBacklog),
		gena:     make(chan genaMsg, 16),
		announce: make(chan announcement, 16),
		st:       gwState{count: -1},
	}
	gw := wo.Gateway
	if gw == nil {
		var err error
		if gw, err = w.discover(ctx); err != nil {
			return nil, err
		}
	}
	w.drv = driverFor(gw, &w.o)
	go w.run(ctx)
	return w.out, nil
}

// watcher is the state of one Watch. Everything but the channels is owned
// by the run goroutine.
type watcher struct {
	o   Options
	wo  WatchOptions
	log *slog.Logger
	out chan WatchEvent

	gena     chan genaMsg      // from the GENA handler
	announce chan announcement // from the announcement reader

	drv     driver
	st      gwState
	known   bool // st holds a reading (the initial event was sent)
	gone    bool
	dropped int

	// GENA.
	sub    *upnp.Subscriber
	subGen int    // generation of sub, to drop events of older ones
	sid    string // SID of the events received on sub; "" before the first
	noGENA string // why there are no UPnP events, for the initial event

	ann4, ann6 bool // announcements are being read over IPv4, IPv6

	// router6 are the router's IPv6 addresses, which its PCP
	// announcements over IPv6 may come from (routerAddrs6); learnt when
	// the router is found, and again (at most once a second, at
	// router6At) when an announcement comes from another address, since
	// the IPv6 default route may have come or changed since.
	router6   []linkAddr
	router6At time.Time

	// det tells restarts from every clock the router shows (NAT-PMP and
	// PCP epochs, UPnP uptime), the same way the Keeper does, and reports
	// one restart once however many clocks show it.
	det restartDetector

	bg sync.WaitGroup // background UNSUBSCRIBEs, waited for before out closes
}

// gwState is what is known of the gateway.
type gwState struct {
	ext      netip.Addr
	status   string
	count    int // -1: unknown
	list     []Mapping
	listed   bool   // list is the table as last read
	updateID string // UPnP SystemUpdateID, when evented
}

type genaMsg struct {
	gen int
	ev  upnp.Event
}

func (w *watcher) requestTimeout() time.Duration {
	if w.o.RequestTimeout > 0 {
		return w.o.RequestTimeout
	}
	return defaultRequestTimeout
}

func (w *watcher) discover(ctx context.Context) (Gateway, error) {
	dctx, cancel := context.WithTimeout(ctx, w.requestTimeout())
	defer cancel()
	o := w.o
	o.Wait = false
	gws, err := Discover(dctx, o)
	if err != nil {
		return nil, err
	}
	return gws[0], nil
}

func (w *watcher) run(ctx context.Context) {
	defer func() {
		w.stopGENA(false)
		w.bg.Wait()
		close(w.out)
	}()
	if !w.wo.NoAnnouncements {
		w.startAnnouncements(ctx)
	}
	w.attach(ctx)
	w.refresh(ctx, ViaStart, "")

	poll := time.NewTicker(w.wo.PollInterval)
	defer poll.Stop()
	var retry *time.Timer
	var retryC <-chan time.Time
	failures := 0
	for {
		if w.gone && retryC == nil {
			d := min(backoff(failures), w.wo.PollInterval)
			retry = time.NewTimer(d)
			retryC = retry.C
			failures++
		}
		select {
		case <-ctx.Done():
			if retry != nil {
				retry.Stop()
			}
			return
		case <-poll.C:
			if !w.gone {
				w.refresh(ctx, ViaPoll, "")
			}
		case <-retryC:
			retryC = nil
			w.rediscover(ctx)
			if !w.gone {
				failures = 0
			}
		case m := <-w.gena:
			if m.gen == w.subGen && !w.gone {
				w.onGENA(ctx, m.ev)
			}
		case a := <-w.announce:
			if w.gone && w.fromRouter(a) {
				// The router speaks again: look for it now.
				if retry != nil {
					retry.Stop()
				}
				retryC = nil
				w.rediscover(ctx)
				if !w.gone {
					failures = 0
				}
				continue
			}
			if !w.gone {
				w.onAnnouncement(ctx, a)
			}
		}
	}
}

// routerHost is the router's address: the one announcements over IPv4
// must come from.
func (w *watcher) routerHost() netip.Addr { return w.drv.host() }

// fromRouter says whether an announcement came from the watched router:
// over IPv4 from its address; over IPv6, where only PCP announces (NAT-PMP
// is IPv4's alone), from one of its IPv6 addresses (routerAddrs6).
func (w *watcher) fromRouter(a announcement) bool {
	if a.from.Is4() {
		return a.from == w.routerHost().WithZone("")
	}
	if a.version != pcp.Version {
		return false
	}
	if fromAny(a, w.router6) {
		return true
	}
	if time.Since(w.router6At) < time.Second {
		return false
	}
	w.learnRouter6()
	return fromAny(a, w.router6)
}

// learnRouter6 learns the router's IPv6 addresses (routerAddrs6).
func (w *watcher) learnRouter6() {
	routes := w.wo.routes6
	if routes == nil {
		routes = defaultRoutes6
	}
	w.router6, w.router6At = routerAddrs6Of(w.routerHost(), routes()), time.Now()
	w.log.Debug("watch: PCP announcements over IPv6 are the router's from", "addrs", fmt.Sprint(w.router6))
}

// attach starts following w.drv: the GENA subscription, and the restart
// detector's baselines when the router is another one.
func (w *watcher) attach(ctx context.Context) {
	if h := w.routerHost(); h != w.det.host {
		w.det.reset(h)
	}
	if w.ann6 {
		w.learnRouter6()
	}
	w.noGENA = ""
	if !w.wo.NoGENA {
		w.subscribe(ctx)
	}
}

// means are how the gateway is watched, for the initial and gateway-back
// events.
func (w *watcher) means() []WatchSource {
	var out []WatchSource
	if w.sub != nil {
		out = append(out, ViaGENA)
	}
	if w.ann4 || w.ann6 {
		out = append(out, ViaAnnouncement)
	}
	return append(out, ViaPoll)
}

// how says how the gateway is watched, for the initial event.
func (w *watcher) how() string {
	var means []string
	if w.sub != nil {
		means = append(means, "UPnP events")
	}
	switch {
	case w.ann4 && w.ann6:
		means = append(means, "NAT-PMP/PCP announcements over IPv4 and IPv6")
	case w.ann4:
		means = append(means, "NAT-PMP/PCP announcements over IPv4")
	case w.ann6:
		means = append(means, "PCP announcements over IPv6")
	}
	means = append(means, "polling every "+w.wo.PollInterval.String())
	how := "watching by " + strings.Join(means, ", ")
	if w.noGENA != "" {
		how += "; no UPnP events: " + w.noGENA
	}
	return how
}

// subscribe subscribes to the events of the gateway's connection
// service, when it has any. Failure is not an error: many routers'
// eventing is missing or broken, and the poll covers for it.
func (w *watcher) subscribe(ctx context.Context) {
	w.stopGENA(true)
	w.subGen++
	w.sid = ""
	eventURL, why := w.drv.eventURL()
	if eventURL == "" {
		if w.drv.Method() == UPnP || w.drv.host() == (netip.Addr{}) {
			w.noGENA = why
		}
		return
	}
	cb := w.wo.CallbackAddr
	if !cb.IsValid() {
		cb = w.drv.LocalAddr()
	}
	if !cb.IsValid() || cb.IsUnspecified() {
		w.noGENA = "cannot tell this host's address towards the router for event callbacks"
		return
	}
	s := &upnp.Subscriber{
		Listen:       netip.AddrPortFrom(cb, 0).String(),
		CallbackHost: cb,
		Client:       w.o.HTTPClient,
		Logger:       w.o.Logger,
	}
	gen := w.subGen
	sctx, cancel := context.WithTimeout(ctx, w.requestTimeout())
	defer cancel()
	_, err := s.Subscribe(sctx, eventURL, 0, func(ev upnp.Event) {
		select {
		case w.gena <- genaMsg{gen: gen, ev: ev}:
		case <-ctx.Done():
		}
	})
	if err != nil {
		w.log.Info("watch: no UPnP events; polling instead", "url", eventURL, "err", err)
		w.noGENA = err.Error()
		w.closeSubscriber(s, false)
		return
	}
	w.sub = s
	w.noGENA = ""
}

// stopGENA cancels the subscription, waiting for the UNSUBSCRIBE when
// wait is set and doing it in the background otherwise.
func (w *watcher) stopGENA(wait bool) {
	if w.sub == nil {
		return
	}
	s := w.sub
	w.sub = nil
	w.subGen++
	w.closeSubscriber(s, wait)
}

func (w *watcher) closeSubscriber(s *upnp.Subscriber, wait bool) {
	do := func() {
		ctx, cancel := context.WithTimeout(context.Background(), w.requestTimeout())
		defer cancel()
		if err := s.Close(ctx); err != nil {
			w.log.Debug("watch: closing the event subscription", "err", err)
		}
	}
	if wait {
		do()
		return
	}
	w.bg.Add(1)
	go func() { defer w.bg.Done(); do() }()
}

// read takes a reading of d. It fails only when the gateway does not
// answer; a refusal of one request leaves that part unknown. A large table
// takes many requests, each bounded by the SOAP client's own timeout.
func (w *watcher) read(ctx context.Context, d driver) (reading, error) {
	rctx, cancel := context.WithTimeout(ctx, 10*w.requestTimeout())
	defer cancel()
	sent := time.Now()
	r, err := d.read(rctx, true)
	r.sent = sent
	return r, err
}

// refresh reads the gateway and reports what changed since the last
// reading. evidence, when set, is a sign the router restarted that the
// reading itself cannot show (a forgotten event subscription).
func (w *watcher) refresh(ctx context.Context, via WatchSource, evidence string) {
	s, err := w.read(ctx, w.drv)
	if ctx.Err() != nil {
		return
	}
	if err != nil {
		w.lost(err, via)
		return
	}
	if !w.known {
		w.known = true
		w.st.ext, w.st.status = s.ext, s.status
		if s.listed {
			w.st.list, w.st.listed, w.st.count = s.list, true, len(s.list)
		}
		w.det.observe(s.clocks, s.sent, time.Now()) // baselines only
		w.emit(WatchEvent{Kind: WatchInitial, Via: via, Reason: w.how(), Means: w.means()})
		return
	}
	w.apply(ctx, s, via, evidence)
}

// apply reports the differences between a reading and the known state,
// and records it: a restart first, since the other changes follow from it.
func (w *watcher) apply(ctx context.Context, s reading, via WatchSource, evidence string) {
	switch why := w.det.observe(s.clocks, s.sent, time.Now()); {
	case why != "":
		// A Subscriber that gave evidence has subscribed anew already.
		w.restarted(ctx, via, why, evidence == "")
	case evidence != "":
		w.restarted(ctx, via, evidence, false)
	}
	if s.extOK {
		w.setExternal(s.ext, via)
	}
	if s.status != "" {
		w.setStatus(s.status, via)
	}
	if s.listed {
		w.setList(s.list, via)
	}
}

// restarted reports a restart. resubscribe asks for a new event
// subscription, which the router has forgotten.
func (w *watcher) restarted(ctx context.Context, via WatchSource, why string, resubscribe bool) {
	w.emit(WatchEvent{Kind: WatchRouterRestarted, Via: via, Reason: why})
	// A restarted router has forgotten our event subscription: make a new
	// one now rather than at the next renewal. A router whose eventing
	// failed while it was starting may offer it now.
	if !w.wo.NoGENA && (resubscribe || w.sub == nil) {
		w.subscribe(ctx)
	}
}

func (w *watcher) setExternal(ip netip.Addr, via WatchSource) {
	if ip == w.st.ext {
		return
	}
	prev := w.st.ext
	w.st.ext = ip
	if !prev.IsValid() {
		return // first time known: nothing changed
	}
	w.emit(WatchEvent{Kind: WatchExternalAddressChanged, Via: via, Previous: prev})
}

func (w *watcher) setStatus(status string, via WatchSource) {
	if status == w.st.status {
		return
	}
	prev := w.st.status
	w.st.status = status
	if prev == "" {
		return
	}
	w.emit(WatchEvent{Kind: WatchStatusChanged, Via: via, PreviousStatus: prev})
}

// setList records a table read from the gateway and reports its
// difference from the last one.
func (w *watcher) setList(list []Mapping, via WatchSource) {
	prevCount, wasListed, prev := w.st.count, w.st.listed, w.st.list
	w.st.list, w.st.listed, w.st.count = list, true, len(list)
	if !wasListed {
		if prevCount == 0 && len(list) > 0 {
			// The table could not be read while empty (some routers fault
			// on index 0 of an empty table), but it was known to be
			// empty: everything in it now is new.
			w.emit(WatchEvent{Kind: WatchMappingsChanged, Via: via, PreviousCount: 0, Added: list})
			return
		}
		if prevCount >= 0 && prevCount != len(list) {
			w.emit(WatchEvent{Kind: WatchMappingsChanged, Via: via, PreviousCount: prevCount})
		}
		return
	}
	added, removed := DiffMappings(prev, list)
	if len(added) == 0 && len(removed) == 0 && prevCount == len(list) {
		return
	}
	w.emit(WatchEvent{Kind: WatchMappingsChanged, Via: via, PreviousCount: prevCount, Added: added, Removed: removed})
}

// setCount records a mapping count the router announced without the
// table being readable.
func (w *watcher) setCount(n int, via WatchSource) {
	if n == w.st.count {
		return
	}
	prev := w.st.count
	w.st.count, w.st.listed, w.st.list = n, false, nil
	if prev < 0 {
		return
	}
	w.emit(WatchEvent{Kind: WatchMappingsChanged, Via: via, PreviousCount: prev})
}

// relist reads the table after the router said it changed.
func (w *watcher) relist(ctx context.Context, evented int, via WatchSource) {
	lctx, cancel := context.WithTimeout(ctx, 10*w.requestTimeout())
	defer cancel()
	list, err := w.drv.List(lctx, nil)
	if err == nil {
		w.setList(list, via)
		return
	}
	w.log.Debug("watch: cannot read the mapping table after an event", "err", err)
	if evented >= 0 {
		w.setCount(evented, via)
	}
}

// onGENA handles one UPnP event from the connection service. Most routers
// (miniupnpd among them) send every evented variable in each message, so
// the values are compared with the known state and only differences are
// reported.
func (w *watcher) onGENA(ctx context.Context, ev upnp.Event) {
	var evidence string
	w.sid, evidence = upnp.RestartEvidence(w.sid, ev)
	if evidence != "" || ev.Resync {
		// Events were missed: read everything.
		w.refresh(ctx, ViaGENA, evidence)
		return
	}
	relist, evented := false, -1
	for _, v := range ev.Vars {
		val := strings.TrimSpace(v.Value)
		switch v.Name {
		case "ExternalIPAddress":
			if ip, err := netip.ParseAddr(val); err == nil {
				w.setExternal(ip.Unmap(), ViaGENA)
			} else if val == "" {
				w.setExternal(netip.IPv4Unspecified(), ViaGENA)
			}
		case "ConnectionStatus":
			if val != "" {
				w.setStatus(val, ViaGENA)
			}
		case "PortMappingNumberOfEntries":
			n, err := strconv.Atoi(val)
			if err == nil && n >= 0 {
				evented = n
			}
			// Re-read even when the number is the same: an entry may have
			// been replaced, or one added and one removed. The initial
			// event only restates the table read when watching began,
			// unless the number says otherwise.
			if !ev.Initial || !w.st.listed || evented != w.st.count {
				relist = true
			}
		case "SystemUpdateID":
			if w.st.updateID != "" && val != w.st.updateID {
				relist = true
			}
			w.st.updateID = val
		}
	}
	if relist {
		w.relist(ctx, evented, ViaGENA)
	}
}

// onAnnouncement handles a NAT-PMP or PCP announcement.
func (w *watcher) onAnnouncement(ctx context.Context, a announcement) {
	if !w.fromRouter(a) {
		w.log.Debug("watch: announcement from another host ignored", "from", a.from)
		return
	}
	w.log.Debug("watch: announcement from the router", "from", a.from, "version", a.version, "epoch", strconv.FormatUint(uint64(a.epoch), 10))
	// Quirk: miniupnpd 2.3.1 sends its unsolicited PCP ANNOUNCE with an
	// epoch of 0 whatever its real one (its NAT-PMP announcements and its
	// answers to a PCP ANNOUNCE request carry the right one), so a PCP
	// announcement only prompts a reading; the reading of a PCP gateway
	// asks for the epoch.
	if a.version == 0 {
		now := time.Now()
		if why := w.det.observe([]clock{{rule: epoch.NATPMP, value: a.epoch}}, now, now); why != "" {
			w.restarted(ctx, ViaAnnouncement, why, true)
		}
	}
	if w.drv.Method() == NATPMP && a.ext.IsValid() {
		// RFC 6886 §3.2.1: the announcement is an external-address
		// response and carries everything NAT-PMP can know.
		w.setExternal(a.ext, ViaAnnouncement)
		return
	}
	// The router says something changed; read what.
	w.refresh(ctx, ViaAnnouncement, "")
}

// lost reports the gateway gone: a reading prompted by via failed.
func (w *watcher) lost(err error, via WatchSource) {
	w.gone = true
	w.stopGENA(false) // the router may not answer the UNSUBSCRIBE
	w.emit(WatchEvent{Kind: WatchGatewayGone, Via: via, Reason: err.Error()})
}

// rediscover looks for a gateway again after the last one went away.
func (w *watcher) rediscover(ctx context.Context) {
	gw, err := w.discover(ctx)
	if err != nil {
		w.log.Debug("watch: gateway still gone", "err", err)
		return
	}
	d := driverFor(gw, &w.o)
	s, err := w.read(ctx, d)
	if err != nil {
		w.log.Debug("watch: gateway found but does not answer", "err", err)
		return
	}
	old := w.drv
	w.drv = d
	w.gone = false
	reason := fmt.Sprintf("%s gateway at %s", w.drv.Method(), w.drv.Addr())
	if w.drv.Addr() != old.Addr() || w.drv.Method() != old.Method() {
		reason += fmt.Sprintf(" (was %s at %s)", old.Method(), old.Addr())
	}
	w.attach(ctx)
	if !w.known {
		w.refresh(ctx, ViaDiscovery, "")
		return
	}
	w.emit(WatchEvent{Kind: WatchGatewayBack, Via: ViaDiscovery, Reason: reason, Means: w.means()})
	w.apply(ctx, s, ViaDiscovery, "")
}

// emit fills in the gateway's current state and queues e, dropping the
// oldest queued event when the reader is behind.
func (w *watcher) emit(e WatchEvent) {
	e.Time = time.Now()
	if w.drv != nil {
		e.Gateway, e.Method = w.drv.Addr(), w.drv.Method()
	}
	e.ExternalAddr, e.Status, e.Count = w.st.ext, w.st.status, w.st.count
	if e.Kind != WatchMappingsChanged {
		e.PreviousCount = e.Count
	}
	for range sendNewest(w.out, e) {
		w.dropped++
		if w.dropped == 1 || w.dropped%100 == 0 {
			w.log.Warn("watch: the reader is behind; oldest events dropped", "dropped", w.dropped)
		}
	}
}

// DiffMappings returns the mappings of after that are not in before, and
// those of before that are not in after, each sorted by protocol and
// external port. Two mappings are the same when their key (protocol,
// external port, remote host), internal client, internal port and
// description are: lease and enabled state may change without a mapping
// counting as another.
func DiffMappings(before, after []Mapping) (added, removed []Mapping) {
	ids := func(l []Mapping) map[mappingID]int {
		m := make(map[mappingID]int, len(l))
		for _, x := range l {
			m[idOf(x)]++
		}
		return m
	}
	inBefore, inAfter := ids(before), ids(after)
	for _, x := range after {
		id := idOf(x)
		if inBefore[id] > 0 {
			inBefore[id]--
			continue
		}
		added = append(added, x)
	}
	for _, x := range before {
		id := idOf(x)
		if inAfter[id] > 0 {
			inAfter[id]--
			continue
		}
		removed = append(removed, x)
	}
	sortMappings(added)
	sortMappings(removed)
	return added, removed
}

type mappingID struct {
	key            Key
	internalClient string
	internalPort   uint16
	description    string
}

func idOf(m Mapping) mappingID {
	return mappingID{key: Key{Protocol: Protocol(strings.ToUpper(string(m.Protocol))), ExternalPort: m.ExternalPort, RemoteHost: m.RemoteHost},
		internalClient: m.InternalClient, internalPort: m.InternalPort, description: m.Description}
}

func sortMappings(l []Mapping) {
	slices.SortStableFunc(l, func(a, b Mapping) int {
		return cmp.Or(cmp.Compare(a.Protocol, b.Protocol), cmp.Compare(a.ExternalPort, b.ExternalPort), cmp.Compare(a.RemoteHost, b.RemoteHost))
	})
}

// Announcements.

// announcementGroup is where NAT-PMP and PCP servers multicast their
// announcements (RFC 6886 §3.2.1, RFC 6887 §14.1.3): to all hosts, to
// the client port 5350.
var announcementGroup = netip.AddrPortFrom(netip.AddrFrom4([4]byte{224, 0, 0, 1}), natpmp.ClientPort)

// announcement is a NAT-PMP external-address announcement or a PCP
// ANNOUNCE response heard on the group.
type announcement struct {
	from    netip.Addr // no zone
	zone    string     // from's zone: the interface a link-local source is on
	version byte       // 0 NAT-PMP, 2 PCP
	epoch   uint32     // the server's seconds since its state started (not to be trusted in PCP's: see onAnnouncement)
	ext     netip.Addr // NAT-PMP only: the external address
}

// parseAnnouncement decodes an announcement with the protocols' own
// parsers. NAT-PMP's is a successful external-address response (version
// 0, 12 bytes); PCP's a successful ANNOUNCE response (version 2). Anything
// else is not one.
func parseAnnouncement(b []byte, from netip.Addr) (announcement, bool) {
	a := announcement{from: from.Unmap().WithZone(""), zone: from.Zone()}
	switch {
	case len(b) >= 12 && b[0] == natpmp.Version:
		r, err := natpmp.ParseResponse(b)
		if err != nil || r.Op != natpmp.OpExternalAddress || r.Result != natpmp.Success {
			return a, false
		}
		a.version, a.epoch, a.ext = natpmp.Version, r.Epoch, r.ExternalAddr
		if a.ext.IsUnspecified() {
			a.ext = netip.Addr{} // not connected: tells nothing about the address
		}
		return a, true
	case len(b) > 0 && b[0] == pcp.Version:
		r, err := pcp.ParseResponse(b)
		if err != nil || r.Op != pcp.OpAnnounce || r.Result != pcp.ResultSuccess {
			return a, false
		}
		a.version, a.epoch = pcp.Version, r.Epoch
		return a, true
	}
	return a, false
}

// startAnnouncements starts reading announcements into w.announce, over
// IPv4 and IPv6. A family whose socket cannot be opened is left out, once
// said in the log: the other, and the poll, go on.
func (w *watcher) startAnnouncements(ctx context.Context) {
	w.ann4 = w.startAnnouncementsOn(ctx, w.wo.Announcements, openAnnouncementSocket,
		"watch: not listening for NAT-PMP/PCP announcements over IPv4")
	w.ann6 = w.startAnnouncementsOn(ctx, w.wo.Announcements6, openAnnouncementSocket6,
		"watch: not listening for PCP announcements over IPv6")
}

// startAnnouncementsOn reads announcements from pc, or from a socket open
// opens when pc is nil, and says whether it does.
func (w *watcher) startAnnouncementsOn(ctx context.Context, pc net.PacketConn, open func(context.Context) (net.PacketConn, error), failed string) bool {
	if pc == nil {
		var err error
		if pc, err = open(ctx); err != nil {
			w.log.Info(failed, "err", err)
			return false
		}
		go func() { <-ctx.Done(); pc.Close() }()
	}
	go readParsedAnnouncements(ctx, pc, func(a announcement) {
		select {
		case w.announce <- a:
		case <-ctx.Done():
		}
	})
	return true
}

// openAnnouncementSocket opens a socket on 224.0.0.1:5350 joined to the
// group on every multicast interface that is up (loopback aside), where
// NAT-PMP and PCP routers announce restarts and address changes. Several
// listeners may share the port (SO_REUSEADDR, SO_REUSEPORT). It fails
// when no interface could join. The caller closes the socket.
func openAnnouncementSocket(ctx context.Context) (net.PacketConn, error) {
	lc := net.ListenConfig{Control: reuseAddr}
	// Bound to the group address, the socket receives the announcements
	// and not unicast packets to the port.
	pc, err := lc.ListenPacket(ctx, "udp4", announcementGroup.String())
	if err != nil {
		return nil, fmt.Errorf("listening on %s for NAT-PMP/PCP announcements: %w", announcementGroup, err)
	}
	p := ipv4.NewPacketConn(pc)
	group := &net.UDPAddr{IP: net.IP(announcementGroup.Addr().AsSlice())}
	ifs, _ := netroute.Interfaces() // up, multicast, IPv4, not loopback or point-to-point
	joined := 0
	for _, ifi := range ifs {
		if p.JoinGroup(&net.Interface{Index: ifi.Index, Name: ifi.Name, Flags: ifi.Flags}, group) == nil {
			joined++
		}
	}
	if joined == 0 {
		pc.Close()
		return nil, fmt.Errorf("no multicast interface could join %s to hear NAT-PMP/PCP announcements", announcementGroup.Addr())
	}
	return pc, nil
}

// readParsedAnnouncements calls fn with each announcement read from pc
// (parseAnnouncement), whoever sent it, until ctx ends or pc fails.
func readParsedAnnouncements(ctx context.Context, pc net.PacketConn, fn func(announcement)) {
	readAnnouncements(ctx, pc, func(b []byte, from netip.Addr) {
		if a, ok := parseAnnouncement(b, from); ok {
			fn(a)
		}
	})
}

// readAnnouncements calls fn with each packet read from pc and its source
// address until ctx ends or pc fails. It does not close pc; when ctx ends
// it sets a past read deadline on it to stop the read under way.
func readAnnouncements(ctx context.Context, pc net.PacketConn, fn func(b []byte, from netip.Addr)) {
	// A goroutine of our own, waited for, rather than context.AfterFunc:
	// nothing started here outlives the call.
	stopped := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		select {
		case <-ctx.Done():
			pc.SetReadDeadline(time.Unix(1, 0))
		case <-stopped:
		}
	})
	defer func() { close(stopped); wg.Wait() }()
	buf := make([]byte, 1100) // PCP's maximum message size
	for {
		n, src, err := pc.ReadFrom(buf)
		if err != nil || ctx.Err() != nil {
			return
		}
		ua, ok := src.(*net.UDPAddr)
		if !ok {
			continue
		}
		fn(buf[:n], ua.AddrPort().Addr().Unmap())
	}
}
