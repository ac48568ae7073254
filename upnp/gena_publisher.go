package upnp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	http "github.com/portfwd/portfwd/internal/httpx"
)

// Defaults of PublisherConfig.
const (
	// UDA 1.1 §4.1.2: the granted duration SHOULD be at least 1800 s.
	// Granting more only lets forgotten subscriptions hold their slots
	// longer, so by default every subscription lasts exactly 1800 s.
	DefaultMinTimeout      = 1800 * time.Second
	DefaultMaxTimeout      = 1800 * time.Second
	DefaultMaxPerClient    = 8
	DefaultMaxSubscribers  = 128
	DefaultDeliveryTimeout = 5 * time.Second
)

// maxQueued bounds the events waiting for one subscriber. Past it, new
// changes are merged into the last queued event rather than dropped, so a
// slow subscriber still ends up with the latest value of every variable.
const maxQueued = 8

// PublisherConfig configures a Publisher. Only Services is required.
type PublisherConfig struct {
	// Services maps each event path (the path of an eventSubURL, such as
	// "/evt/IPConn") to a function returning the current values of that
	// service's evented state variables, sent as the initial event of every
	// new subscription. It is called without the Publisher's lock held, so
	// it may call Notify.
	Services map[string]func() []Arg

	// MinTimeout and MaxTimeout clamp the subscription duration a control
	// point asks for; a request without TIMEOUT, or with the UDA 1.0
	// "Second-infinite" that UDA 1.1 says to ignore, asks for 1800 s. Zero
	// means DefaultMinTimeout and DefaultMaxTimeout.
	MinTimeout, MaxTimeout time.Duration

	// MaxPerClient bounds the subscriptions of one source IP address and
	// MaxTotal those of the whole Publisher. Past MaxPerClient, SUBSCRIBE
	// gets 503 Service Unavailable, the 5xx UDA prescribes for a publisher
	// out of resources. At MaxTotal, a host holding fewer subscriptions
	// than the busiest one takes the busiest one's oldest subscription,
	// so that a few hosts cannot fill the table and lock the others out;
	// only when every host holds as many does SUBSCRIBE get 503. Zero
	// means DefaultMaxPerClient and DefaultMaxSubscribers.
	MaxPerClient, MaxTotal int

	// Moderation, when positive, coalesces the changes Notify reports for
	// one path within this window into a single event carrying the latest
	// value of each variable, sent when the window closes. This is the
	// moderation UDA asks for variables such as PortMappingNumberOfEntries
	// that can change many times a second. Zero sends every Notify at once.
	Moderation time.Duration

	// DeliveryTimeout bounds each NOTIFY request, per callback URL. Zero
	// means DefaultDeliveryTimeout.
	DeliveryTimeout time.Duration

	// Transport delivers NOTIFY requests. Nil means one plain HTTP/1.1
	// connection per request, with no proxy (notifyTransport), which keeps
	// net/http's client (its connection pool, proxies, HTTP/2, gzip) out
	// of a gateway-only build. Redirects are never followed: a redirect
	// would send events to a host the subscriber did not prove to be.
	Transport http.RoundTripper

	// Server is the SERVER header of SUBSCRIBE responses, "OS/version
	// UPnP/1.1 product/version". Empty means a portfwd default.
	Server string

	// Logger receives subscription and delivery events; nil discards them.
	Logger *slog.Logger
}

// Publisher is the device side of GENA eventing: an http.Handler answering
// SUBSCRIBE and UNSUBSCRIBE on one or more event paths, and the sender of
// the NOTIFY messages that tell subscribers about changes.
//
// Every subscriber has its own bounded queue and delivery goroutine, so one
// that is slow or unreachable never delays the others. A subscription whose
// event cannot be delivered to any of its callback URLs is dropped, as
// miniupnpd does: keeping it would mean retrying a dead control point until
// its subscription expires, and a live one finds out at its next renewal
// (412) and subscribes again, getting the full state in the initial event.
//
// Callback URLs must name the subscriber's own IP address (the source of
// the SUBSCRIBE), which closes CallStranger (CVE-2020-12695): without that
// check any host on the LAN could make the router send traffic to any
// address, on the WAN side too.
type Publisher struct {
	cfg    PublisherConfig
	log    *slog.Logger
	rt     http.RoundTripper
	ctx    context.Context // canceled by Close, aborting deliveries
	cancel context.CancelFunc
	wg     sync.WaitGroup // delivery goroutines
	mu     sync.Mutex
	closed bool
	subs   map[string]*subscription // by SID
	// subscribed counts the subscriptions ever made, to tell the oldest.
	subscribed uint64
	pending    map[string]*moderated // by path, while a window is open
	services   map[string]func() []Arg
}

// subscription is one subscriber's state. All fields but the immutable
// ones are guarded by Publisher.mu.
type subscription struct {
	sid       string     // immutable
	path      string     // immutable
	callbacks []*url.URL // immutable
	client    netip.Addr // immutable: source address of the SUBSCRIBE
	order     uint64     // immutable: subscriptions are numbered as they come
	expires   time.Time
	seq       uint32  // key of the next event
	queue     [][]Arg // events waiting for delivery, oldest first
	started   bool    // the initial event is queued; delivery may begin
	running   bool    // a delivery goroutine owns this subscription
	gone      bool    // removed: expired, canceled, failed or closed
}

// moderated is the coalesced change of one path during a moderation window.
type moderated struct {
	vars  []Arg
	timer *time.Timer
}

// NewPublisher returns a Publisher for cfg. The caller mounts it on the
// device's HTTP server for every path of cfg.Services and calls Close when
// done.
func NewPublisher(cfg PublisherConfig) *Publisher {
	if cfg.MinTimeout <= 0 {
		cfg.MinTimeout = DefaultMinTimeout
	}
	if cfg.MaxTimeout <= 0 {
		cfg.MaxTimeout = DefaultMaxTimeout
	}
	if cfg.MaxTimeout < cfg.MinTimeout {
		cfg.MaxTimeout = cfg.MinTimeout
	}
	if cfg.MaxPerClient <= 0 {
		cfg.MaxPerClient = DefaultMaxPerClient
	}
	if cfg.MaxTotal <= 0 {
		cfg.MaxTotal = DefaultMaxSubscribers
	}
	if cfg.DeliveryTimeout <= 0 {
		cfg.DeliveryTimeout = DefaultDeliveryTimeout
	}
	if cfg.Server == "" {
		cfg.Server = defaultUserAgent
	}
	p := &Publisher{
		cfg:      cfg,
		log:      cfg.Logger,
		subs:     make(map[string]*subscription),
		pending:  make(map[string]*moderated),
		services: make(map[string]func() []Arg, len(cfg.Services)),
	}
	for path, f := range cfg.Services {
		p.services[path] = f
	}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	p.rt = cfg.Transport
	if p.rt == nil {
		p.rt = notifyTransport{}
	}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	return p
}

// ServeHTTP answers SUBSCRIBE (new subscription or renewal) and UNSUBSCRIBE
// requests on the event paths of the config, with the status codes of UDA
// 1.1 §4.1: 200 on success; 400 when SID is combined with NT or CALLBACK;
// 412 for an unknown or expired SID, a missing one on UNSUBSCRIBE, or a
// missing or invalid NT or CALLBACK; 503 past the subscriber caps. Other
// methods get 405 and other paths 404.
func (p *Publisher) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := r.URL.Path
	initial, ok := p.services[path]
	if !ok {
		http.NotFound(w, r)
		return
	}
	switch r.Method {
	case "SUBSCRIBE":
		if header(r, "SID") != "" {
			p.renew(w, r, path)
		} else {
			p.subscribe(w, r, path, initial)
		}
	case "UNSUBSCRIBE":
		p.unsubscribe(w, r, path)
	default:
		w.Header().Set("Allow", "SUBSCRIBE, UNSUBSCRIBE")
		http.Error(w, "event URLs take SUBSCRIBE and UNSUBSCRIBE only", http.StatusMethodNotAllowed)
	}
}

// header returns the trimmed value of the request header k.
func header(r *http.Request, k string) string {
	return strings.TrimSpace(r.Header.Get(k))
}

func (p *Publisher) subscribe(w http.ResponseWriter, r *http.Request, path string, initial func() []Arg) {
	if nt := header(r, "NT"); !strings.EqualFold(nt, NTEvent) {
		p.refuse(w, r, http.StatusPreconditionFailed, "NT is not upnp:event", "nt", nt)
		return
	}
	callbacks, err := ParseCallback(r.Header.Get("CALLBACK"))
	if err != nil {
		p.refuse(w, r, http.StatusPreconditionFailed, err.Error())
		return
	}
	src, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		p.refuse(w, r, http.StatusPreconditionFailed, "source address unknown, so the callback cannot be checked")
		return
	}
	client := src.Addr().Unmap().WithZone("")
	for _, u := range callbacks {
		if err := checkCallbackHost(u, client); err != nil {
			// CallStranger: refuse the whole subscription, store nothing.
			p.log.Warn("upnp: event subscription with a callback to another host refused (CallStranger)", "from", r.RemoteAddr, "callback", u.String())
			p.refuse(w, r, http.StatusPreconditionFailed, err.Error())
			return
		}
	}
	timeout := p.grant(r)

	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		p.refuse(w, r, http.StatusServiceUnavailable, "publisher closed")
		return
	}
	now := time.Now()
	p.sweepLocked(now)
	perClient := 0
	held := map[netip.Addr]int{}
	for _, s := range p.subs {
		held[s.client]++
	}
	perClient = held[client]
	if perClient >= p.cfg.MaxPerClient {
		p.mu.Unlock()
		p.refuse(w, r, http.StatusServiceUnavailable, "too many subscriptions from this host", "client_total", perClient, "limit", p.cfg.MaxPerClient)
		return
	}
	if len(p.subs) >= p.cfg.MaxTotal {
		victim := p.evictionLocked(held, perClient)
		if victim == nil {
			p.mu.Unlock()
			p.refuse(w, r, http.StatusServiceUnavailable, "too many subscriptions", "total", len(p.subs))
			return
		}
		p.removeLocked(victim)
		p.log.Info("upnp: event subscription dropped to make room for another host's", "path", victim.path, "sid", victim.sid,
			"holder", victim.client, "held", held[victim.client], "newcomer", client)
	}
	p.subscribed++
	sub := &subscription{
		sid:       newSID(),
		path:      path,
		callbacks: callbacks,
		client:    client,
		order:     p.subscribed,
		expires:   now.Add(timeout),
	}
	p.subs[sub.sid] = sub
	p.mu.Unlock()

	// The state is read after the subscription is registered, so that a
	// change racing with it is either in the state or queued after it;
	// never lost.
	var vars []Arg
	if initial != nil {
		vars = initial()
	}
	p.writeGranted(w, sub.sid, timeout, now)
	p.log.Info("upnp: event subscription", "path", path, "sid", sub.sid, "callback", FormatCallback(callbacks...), "timeout", timeout)

	// UDA: the initial event follows the response. Flushing first makes the
	// 200 reach the wire before the NOTIFY can, so that a control point
	// learns its SID before it sees it in an event.
	_ = http.NewResponseController(w).Flush()
	p.mu.Lock()
	defer p.mu.Unlock()
	if sub.gone {
		return
	}
	sub.queue = append([][]Arg{cloneVars(vars)}, sub.queue...)
	sub.started = true
	p.kickLocked(sub)
}

// evictionLocked picks the subscription a newcomer holding perClient
// subscriptions may take when the table is full: the oldest of the host
// holding the most, if that host holds more than the newcomer will.
func (p *Publisher) evictionLocked(held map[netip.Addr]int, perClient int) *subscription {
	var busiest netip.Addr
	most := 0
	for a, n := range held {
		if n > most || n == most && a.Less(busiest) {
			busiest, most = a, n
		}
	}
	if most <= perClient+1 {
		return nil // every host holds about as many: the table is fairly full
	}
	var oldest *subscription
	for _, s := range p.subs {
		if s.client == busiest && (oldest == nil || s.order < oldest.order) {
			oldest = s
		}
	}
	return oldest
}

// checkCallbackHost enforces the CallStranger rule on one callback URL: its
// host must be an IP address literal equal to the subscriber's. DNS names
// are refused outright: resolving them would let a name point anywhere.
func checkCallbackHost(u *url.URL, client netip.Addr) error {
	a, err := netip.ParseAddr(u.Hostname())
	if err != nil {
		return fmt.Errorf("callback host %q is not an IP address", u.Hostname())
	}
	if a.Unmap().WithZone("") != client {
		return fmt.Errorf("callback host %s is not the subscriber's address %s", a, client)
	}
	return nil
}

// grant returns the duration granted to the TIMEOUT of r, clamped to the
// config. A missing, unparsable or infinite TIMEOUT asks for 1800 s.
func (p *Publisher) grant(r *http.Request) time.Duration {
	want := 1800 * time.Second
	if v := header(r, "TIMEOUT"); v != "" {
		if d, err := ParseTimeout(v); err == nil && d != TimeoutInfinite {
			want = d
		}
	}
	return min(max(want, p.cfg.MinTimeout), p.cfg.MaxTimeout)
}

func (p *Publisher) renew(w http.ResponseWriter, r *http.Request, path string) {
	if header(r, "NT") != "" || header(r, "CALLBACK") != "" {
		p.refuse(w, r, http.StatusBadRequest, "SID combined with NT or CALLBACK")
		return
	}
	sid, err := ParseSID(r.Header.Get("SID"))
	if err != nil {
		p.refuse(w, r, http.StatusPreconditionFailed, err.Error())
		return
	}
	timeout := p.grant(r)
	from := sourceAddr(r)
	p.mu.Lock()
	now := time.Now()
	p.sweepLocked(now)
	sub, ok := p.subs[sid]
	if !ok || sub.path != path {
		p.mu.Unlock()
		p.refuse(w, r, http.StatusPreconditionFailed, "unknown or expired SID", "sid", sid)
		return
	}
	if sub.client != from {
		// A subscription is its subscriber's: another host knowing the
		// SID learns nothing, and can neither keep it alive nor end it.
		p.mu.Unlock()
		p.refuse(w, r, http.StatusPreconditionFailed, "SID of another host's subscription", "sid", sid)
		return
	}
	sub.expires = now.Add(timeout)
	p.mu.Unlock()
	p.log.Debug("upnp: event subscription renewed", "path", path, "sid", sid, "timeout", timeout)
	p.writeGranted(w, sid, timeout, now)
}

func (p *Publisher) unsubscribe(w http.ResponseWriter, r *http.Request, path string) {
	raw := header(r, "SID")
	if raw == "" {
		p.refuse(w, r, http.StatusPreconditionFailed, "UNSUBSCRIBE without SID")
		return
	}
	if header(r, "NT") != "" || header(r, "CALLBACK") != "" {
		p.refuse(w, r, http.StatusBadRequest, "SID combined with NT or CALLBACK")
		return
	}
	sid, err := ParseSID(raw)
	if err != nil {
		p.refuse(w, r, http.StatusPreconditionFailed, err.Error())
		return
	}
	from := sourceAddr(r)
	p.mu.Lock()
	p.sweepLocked(time.Now())
	sub, ok := p.subs[sid]
	ok = ok && sub.path == path
	mine := ok && sub.client == from
	if mine {
		p.removeLocked(sub)
	}
	p.mu.Unlock()
	switch {
	case !ok:
		p.refuse(w, r, http.StatusPreconditionFailed, "unknown or expired SID", "sid", sid)
		return
	case !mine:
		p.refuse(w, r, http.StatusPreconditionFailed, "SID of another host's subscription", "sid", sid)
		return
	}
	p.log.Info("upnp: event subscription canceled", "path", path, "sid", sid)
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusOK)
}

// writeGranted answers a successful SUBSCRIBE. The header names are set in
// the upper case UDA shows, since some control points match them
// case-sensitively; their canonical twins, which a handler in front
// (Server) or net/http itself (Date) would add, are removed, so that each
// is sent once. Content-Length is explicit so that the flush that follows
// does not switch the response to chunked encoding.
func (p *Publisher) writeGranted(w http.ResponseWriter, sid string, timeout time.Duration, now time.Time) {
	h := w.Header()
	h["SID"] = []string{sid}
	h["TIMEOUT"] = []string{FormatTimeout(timeout)}
	h["DATE"] = []string{now.UTC().Format(http.TimeFormat)}
	h["Date"] = nil // suppresses net/http's own
	delete(h, "Server")
	h["SERVER"] = []string{p.cfg.Server}
	h["Content-Length"] = []string{"0"}
	w.WriteHeader(http.StatusOK)
}

// sourceAddr is the address a request came from, comparable with a
// subscription's client.
func sourceAddr(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap().WithZone("")
}

// refuse answers a request with an error status and logs why, at Info:
// refusals are routine (a control point renewing after our restart) and
// any host on the LAN can cause them.
func (p *Publisher) refuse(w http.ResponseWriter, r *http.Request, status int, why string, attrs ...any) {
	attrs = append([]any{"method", r.Method, "path", r.URL.Path, "from", r.RemoteAddr, "status", status, "reason", why}, attrs...)
	p.log.Info("upnp: event request refused", attrs...)
	http.Error(w, http.StatusText(status), status)
}

// Notify reports that the evented variables in changed took new values in
// the service at path, queueing an event for every subscriber of path (or,
// with Moderation, merging it into the event of the open window). It never
// blocks on the network. Notify on an unknown path, or after Close, does
// nothing.
func (p *Publisher) Notify(path string, changed []Arg) {
	if _, ok := p.services[path]; !ok || len(changed) == 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	if p.cfg.Moderation <= 0 {
		p.fanoutLocked(path, changed)
		return
	}
	m := p.pending[path]
	if m == nil {
		m = &moderated{}
		p.pending[path] = m
		m.timer = time.AfterFunc(p.cfg.Moderation, func() { p.flush(path, m) })
	}
	m.vars = mergeVars(m.vars, changed)
}

// flush sends the changes coalesced in a moderation window once it closes.
func (p *Publisher) flush(path string, m *moderated) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || p.pending[path] != m {
		return
	}
	delete(p.pending, path)
	p.fanoutLocked(path, m.vars)
}

// fanoutLocked queues an event carrying vars for every live subscriber of
// path.
func (p *Publisher) fanoutLocked(path string, vars []Arg) {
	p.sweepLocked(time.Now())
	for _, sub := range p.subs {
		if sub.path != path {
			continue
		}
		if len(sub.queue) < maxQueued {
			sub.queue = append(sub.queue, cloneVars(vars))
		} else {
			last := len(sub.queue) - 1
			sub.queue[last] = mergeVars(sub.queue[last], vars)
		}
		p.kickLocked(sub)
	}
}

// kickLocked starts the delivery goroutine of sub unless one is running or
// the initial event is not queued yet.
func (p *Publisher) kickLocked(sub *subscription) {
	if !sub.started || sub.running || sub.gone || p.closed || len(sub.queue) == 0 {
		return
	}
	sub.running = true
	p.wg.Add(1)
	go p.deliver(sub)
}

// deliver sends the queued events of sub one at a time, in order, until the
// queue is empty or a delivery fails.
func (p *Publisher) deliver(sub *subscription) {
	defer p.wg.Done()
	for {
		p.mu.Lock()
		if !sub.gone && !time.Now().Before(sub.expires) {
			p.removeLocked(sub)
			p.log.Info("upnp: event subscription expired", "path", sub.path, "sid", sub.sid)
		}
		if sub.gone || p.closed || len(sub.queue) == 0 {
			sub.running = false
			p.mu.Unlock()
			return
		}
		vars := sub.queue[0]
		sub.queue[0] = nil
		sub.queue = sub.queue[1:]
		seq := sub.seq
		sub.seq = NextSeq(seq)
		p.mu.Unlock()

		body := AppendPropertySet(make([]byte, 0, 256), vars)
		if err := p.send(sub, seq, body); err != nil {
			p.mu.Lock()
			if !sub.gone && !p.closed {
				p.removeLocked(sub)
				p.log.Warn("upnp: event delivery failed; subscription dropped", "path", sub.path, "sid", sub.sid, "seq", seq, "err", err)
			}
			sub.running = false
			p.mu.Unlock()
			return
		}
	}
}

// send delivers one event to the first callback URL of sub that accepts
// it, trying them in order as UDA requires.
func (p *Publisher) send(sub *subscription, seq uint32, body []byte) error {
	var errs []error
	for _, u := range sub.callbacks {
		err := p.post(u, sub.sid, seq, body)
		if err == nil {
			return nil
		}
		errs = append(errs, err)
		if p.ctx.Err() != nil {
			break
		}
	}
	return errors.Join(errs...)
}

func (p *Publisher) post(u *url.URL, sid string, seq uint32, body []byte) error {
	ctx, cancel := context.WithTimeout(p.ctx, p.cfg.DeliveryTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "NOTIFY", u.String(), bytes.NewReader(body))
	if err != nil {
		return err
	}
	h := req.Header
	h["CONTENT-TYPE"] = []string{`text/xml; charset="utf-8"`}
	h["NT"] = []string{NTEvent}
	h["NTS"] = []string{NTSPropChange}
	h["SID"] = []string{sid}
	h["SEQ"] = []string{strconv.FormatUint(uint64(seq), 10)}
	// The transport is called directly, not through an http.Client: no
	// redirect is followed, and a 3xx is a failure below.
	resp, err := p.rt.RoundTrip(req)
	if err != nil {
		return err
	}
	// Drain a little so the connection can be reused; a subscriber has
	// nothing to say in its body.
	_, _ = io.CopyN(io.Discard, resp.Body, 4<<10)
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("NOTIFY %s: %s", u, resp.Status)
	}
	return nil
}

// sweepLocked removes the subscriptions that expired by now.
func (p *Publisher) sweepLocked(now time.Time) {
	for _, sub := range p.subs {
		if !now.Before(sub.expires) {
			p.removeLocked(sub)
			p.log.Info("upnp: event subscription expired", "path", sub.path, "sid", sub.sid)
		}
	}
}

func (p *Publisher) removeLocked(sub *subscription) {
	delete(p.subs, sub.sid)
	sub.gone = true
	sub.queue = nil
}

// Subscribers returns how many unexpired subscriptions path has.
func (p *Publisher) Subscribers(path string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.sweepLocked(time.Now())
	n := 0
	for _, sub := range p.subs {
		if sub.path == path {
			n++
		}
	}
	return n
}

// Close forgets every subscription, aborts deliveries in flight and waits
// for the delivery goroutines to end. Afterwards SUBSCRIBE gets 503 and
// Notify does nothing. Subscribers are not told: UDA has no message for it,
// and they find out at their next renewal.
func (p *Publisher) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	p.cancel()
	for path, m := range p.pending {
		m.timer.Stop()
		delete(p.pending, path)
	}
	for _, sub := range p.subs {
		p.removeLocked(sub)
	}
	p.mu.Unlock()
	p.wg.Wait() // notifyTransport keeps no connection open
}

func cloneVars(vars []Arg) []Arg {
	return append([]Arg(nil), vars...)
}
