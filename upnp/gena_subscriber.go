package upnp

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"time"

	http "github.com/portfwd/portfwd/internal/httpx"

	"github.com/portfwd/portfwd/internal/httpserve"
	"github.com/portfwd/portfwd/internal/version"
)

// Event is one event message a Subscription received.
type Event struct {
	// EventURL is the event subscription URL given to Subscribe, telling
	// apart the services of a handler shared between subscriptions.
	EventURL string
	// SID is the subscription identifier the device assigned.
	SID string
	// Seq is the event key: 0 for the initial event, then 1, 2, ...
	Seq uint32
	// Vars are the evented variables the message carries, in order.
	Vars Args
	// Initial is set for the initial event (Seq 0), which carries every
	// evented variable of the service rather than only changed ones.
	Initial bool
	// Resync is set when events may have been lost before this one: its
	// SEQ is not the one expected (a gap, or a return to 0 because the
	// device restarted), the subscription had to be made anew after the
	// device forgot it, or the handler fell behind and an event was
	// dropped. A handler keeping state should read it afresh (by SOAP, or
	// from the next initial event).
	Resync bool
	// Forgotten is set on the first event delivered after the device
	// answered a renewal with 412 and the subscription was made anew: the
	// device no longer knew it, which is what a restart does. It does not
	// depend on an event of the old subscription having arrived first (a
	// device that restarts right after subscribing may never send one).
	Forgotten bool
}

// RestartEvidence tells from ev, an event of a subscription whose SID was
// last seen as sid ("" before the first event), whether the device
// restarted: the Subscriber had to subscribe anew because the device no
// longer knew the subscription (ev.Forgotten, or another SID than the one
// last seen), which is what a restart does to it, or
// the initial event came again on a known subscription (UDA sequence
// numbers wrap to 1, never to 0). It returns the SID to remember and why
// the device restarted, "" when nothing says it did.
func RestartEvidence(sid string, ev Event) (string, string) {
	switch {
	case ev.Forgotten:
		return ev.SID, "the router forgot our event subscription, as it does when it restarts"
	case sid == "":
		return ev.SID, ""
	case ev.SID != sid:
		return ev.SID, "the router forgot our event subscription, as it does when it restarts"
	case ev.Initial:
		return sid, "the router's event sequence started again at 0: it restarted"
	}
	return sid, ""
}

// Subscriber is the control-point side of GENA eventing. It runs one HTTP
// server for the NOTIFY callbacks of all its subscriptions, started on the
// first Subscribe, and keeps every subscription alive by renewing it at half
// its granted duration, subscribing anew when the device has forgotten it.
//
// Set the fields before the first Subscribe and do not change them after.
// Callback requests are handled strictly: a NOTIFY for an unknown
// subscription or SID gets 412, one with a malformed body 400, and bodies
// are limited to MaxEventBody bytes.
type Subscriber struct {
	// Client sends SUBSCRIBE and UNSUBSCRIBE; nil means a private client
	// that uses no proxy.
	Client *http.Client

	// Listener, when set, is where callbacks are served; the Subscriber
	// takes it over and closes it in Close. Otherwise Listen is the address
	// to listen on (such as "10.77.0.2:0"); empty means CallbackHost with a
	// port the system chooses.
	Listener net.Listener
	Listen   string

	// CallbackHost is the local address the device can reach us on,
	// normally the source address of the route to the device. Devices
	// that check for CallStranger (CVE-2020-12695), such as miniupnpd and
	// portfwd's own Publisher, refuse a callback on any other address.
	// When unset, the listener's address is used if it is not a wildcard.
	CallbackHost netip.Addr

	// UserAgent is sent as USER-AGENT; empty means a portfwd default of
	// the UDA form "OS/version UPnP/1.1 product/version".
	UserAgent string

	// Logger receives renewals, resubscriptions and refused callbacks; nil
	// discards them.
	Logger *slog.Logger

	mu       sync.Mutex
	srv      *httpserve.Server
	callback string // "host:port" of callback URLs, once started
	subs     map[string]*Subscription
	closed   bool
}

// Timing of a Subscription's upkeep.
const (
	// subscriberRequestTimeout bounds each SUBSCRIBE or UNSUBSCRIBE when
	// the context has no earlier deadline. UDA gives a device 30 s.
	subscriberRequestTimeout = 10 * time.Second
	// notifyWait bounds how long a NOTIFY that arrives while its SUBSCRIBE
	// is still unanswered waits for the SID. The device sends the initial
	// event right after its response, so it can overtake it.
	notifyWait = 5 * time.Second
	// eventBacklog is how many events may wait for a slow handler before
	// some are dropped (and the next one flagged Resync).
	eventBacklog = 32
	// minRenew keeps a device granting absurdly short durations from
	// making us renew in a busy loop.
	minRenew = 100 * time.Millisecond
)

// errForgotten marks a 412 answer to a renewal: the device does not know
// the SID (it restarted, or dropped us after a failed delivery).
var errForgotten = errors.New("upnp: device does not know the subscription (412 Precondition Failed)")

// Subscription is one live event subscription; Close ends it.
type Subscription struct {
	s         *Subscriber
	eventURL  string
	callback  *url.URL
	requested time.Duration
	handler   func(Event)
	log       *slog.Logger
	ctx       context.Context // canceled by Close
	cancel    context.CancelFunc
	events    chan Event
	done      chan struct{} // closed when the upkeep goroutine ends

	mu       sync.Mutex
	sid      string        // "" while a SUBSCRIBE is unanswered
	ready    chan struct{} // closed when no SUBSCRIBE is in flight
	pending  bool          // ready is open
	granted  time.Duration // duration the device granted
	infinite bool          // the device granted "infinite"
	expires  time.Time     // when the device forgets us without renewal
	seen     bool          // an event for sid was accepted
	last     uint32        // its SEQ
	resync   bool          // the next event must carry Resync
	forgot   bool          // the next event must carry Forgotten
	closed   bool
}

// Subscribe subscribes to the events of the service whose eventSubURL
// (resolved) is eventURL, asking for timeout (zero means 1800 s), and calls
// handler with each event, in order, on a goroutine of the subscription's
// own. The handler should return quickly; events that pile up behind it are
// dropped and the next one is flagged Resync. ctx bounds the SUBSCRIBE
// request only; the subscription lives until Close.
func (s *Subscriber) Subscribe(ctx context.Context, eventURL string, timeout time.Duration, handler func(Event)) (*Subscription, error) {
	if handler == nil {
		return nil, errors.New("upnp: Subscribe needs a handler")
	}
	u, err := url.Parse(eventURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("upnp: event URL %q is not an absolute http URL; resolve eventSubURL against the description first", eventURL)
	}
	if timeout <= 0 {
		timeout = 1800 * time.Second
	}
	host, err := s.start()
	if err != nil {
		return nil, err
	}
	token := rand.Text()
	sub := &Subscription{
		s:         s,
		eventURL:  eventURL,
		callback:  &url.URL{Scheme: "http", Host: host, Path: "/" + token},
		requested: timeout,
		handler:   handler,
		log:       s.logger(),
		events:    make(chan Event, eventBacklog),
		done:      make(chan struct{}),
		ready:     make(chan struct{}),
		pending:   true,
	}
	sub.ctx, sub.cancel = context.WithCancel(context.Background())
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		sub.cancel()
		return nil, errors.New("upnp: Subscribe on a closed Subscriber")
	}
	s.subs[token] = sub
	s.mu.Unlock()
	if err := sub.subscribe(ctx, false, false); err != nil {
		s.forget(token)
		sub.cancel()
		return nil, err
	}
	go sub.dispatch()
	go sub.upkeep()
	return sub, nil
}

func (s *Subscriber) logger() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.New(slog.DiscardHandler)
}

func (s *Subscriber) forget(token string) {
	s.mu.Lock()
	delete(s.subs, token)
	s.mu.Unlock()
}

// start starts the callback server unless it runs, returning the
// "host:port" callback URLs use.
func (s *Subscriber) start() (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return "", errors.New("upnp: Subscribe on a closed Subscriber")
	}
	if s.srv != nil {
		return s.callback, nil
	}
	if s.CallbackHost.IsValid() && s.CallbackHost.IsUnspecified() {
		return "", fmt.Errorf("upnp: callback host %s is a wildcard; set Subscriber.CallbackHost to the local address of the route to the device", s.CallbackHost)
	}
	ln := s.Listener
	if ln == nil {
		addr := s.Listen
		if addr == "" {
			if !s.CallbackHost.IsValid() {
				return "", errors.New("upnp: Subscriber has neither CallbackHost nor Listen; set CallbackHost to the local address of the route to the device")
			}
			addr = netip.AddrPortFrom(s.CallbackHost, 0).String()
		}
		var err error
		if ln, err = net.Listen("tcp", addr); err != nil {
			return "", fmt.Errorf("upnp: listening for event callbacks on %s: %w", addr, err)
		}
	}
	tcp, ok := ln.Addr().(*net.TCPAddr)
	if !ok {
		ln.Close()
		return "", fmt.Errorf("upnp: event callback listener on %s is not TCP", ln.Addr())
	}
	host := s.CallbackHost
	if !host.IsValid() {
		a, _ := netip.AddrFromSlice(tcp.IP)
		host = a.Unmap()
		if !host.IsValid() || host.IsUnspecified() {
			ln.Close()
			return "", fmt.Errorf("upnp: event callbacks listen on the wildcard %s; set Subscriber.CallbackHost to the local address of the route to the device", tcp)
		}
	}
	log := s.logger()
	// httpserve, not net/http's Server: the router build chains to a
	// router above with this subscriber, and net/http's Server links the
	// TLS stack (see internal/httpserve).
	s.srv = &httpserve.Server{
		Handler:           http.HandlerFunc(s.serveNotify),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      notifyWait + 10*time.Second,
		IdleTimeout:       time.Minute,
		MaxHeaderBytes:    16 << 10,
		Logger:            log,
	}
	s.callback = netip.AddrPortFrom(host, uint16(tcp.Port)).String()
	if s.subs == nil {
		s.subs = make(map[string]*Subscription)
	}
	srv := s.srv
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, httpserve.ErrServerClosed) {
			log.Error("upnp: event callback server stopped", "addr", ln.Addr(), "err", err)
		}
	}()
	log.Debug("upnp: event callback server started", "addr", ln.Addr(), "callback", s.callback)
	return s.callback, nil
}

// serveNotify handles one NOTIFY with the status codes of UDA 1.1 §4.3.2:
// 400 for missing NT, NTS or SEQ or a bad body, 412 for a wrong NT or NTS
// or a missing or unknown SID.
func (s *Subscriber) serveNotify(w http.ResponseWriter, r *http.Request) {
	if r.Method != "NOTIFY" {
		w.Header().Set("Allow", "NOTIFY")
		http.Error(w, "event callbacks take NOTIFY only", http.StatusMethodNotAllowed)
		return
	}
	log := s.logger()
	refuse := func(status int, why string) {
		log.Info("upnp: event message refused", "from", r.RemoteAddr, "path", r.URL.Path, "status", status, "reason", why)
		http.Error(w, http.StatusText(status), status)
	}
	s.mu.Lock()
	sub := s.subs[strings.TrimPrefix(r.URL.Path, "/")]
	s.mu.Unlock()
	if sub == nil {
		refuse(http.StatusPreconditionFailed, "no such subscription")
		return
	}
	nt, nts := header(r, "NT"), header(r, "NTS")
	if nt == "" || nts == "" {
		refuse(http.StatusBadRequest, "NT or NTS missing")
		return
	}
	if !strings.EqualFold(nt, NTEvent) || !strings.EqualFold(nts, NTSPropChange) {
		refuse(http.StatusPreconditionFailed, "NT or NTS is not upnp:event / upnp:propchange")
		return
	}
	sid, err := ParseSID(r.Header.Get("SID"))
	if err != nil {
		refuse(http.StatusPreconditionFailed, err.Error())
		return
	}
	seq, err := ParseSeq(r.Header.Get("SEQ"))
	if err != nil {
		refuse(http.StatusBadRequest, err.Error())
		return
	}
	if r.ContentLength > MaxEventBody {
		refuse(http.StatusRequestEntityTooLarge, "body too large")
		return
	}
	body, err := ReadLimited(r.Body, MaxEventBody)
	if errors.Is(err, ErrBodyTooLarge) {
		refuse(http.StatusRequestEntityTooLarge, "body too large")
		return
	}
	if err != nil {
		refuse(http.StatusBadRequest, err.Error())
		return
	}
	vars, perr := ParsePropertySet(body)
	if !sub.waitReady(r.Context()) {
		refuse(http.StatusPreconditionFailed, "subscription not established")
		return
	}
	if status, why := sub.admit(sid, seq, vars, perr); status != http.StatusOK {
		refuse(status, why)
		return
	}
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusOK)
}

// waitReady waits until no SUBSCRIBE of sub is unanswered, so that an
// initial event overtaking the response finds its SID known. It reports
// false if the wait was cut short.
func (sub *Subscription) waitReady(ctx context.Context) bool {
	sub.mu.Lock()
	ready := sub.ready
	sub.mu.Unlock()
	t := time.NewTimer(notifyWait)
	defer t.Stop()
	select {
	case <-ready:
		return true
	case <-t.C:
	case <-ctx.Done():
	case <-sub.ctx.Done():
	}
	return false
}

// admit checks an event against the subscription's SID and SEQ and queues
// it for the handler, returning the HTTP status to answer with.
func (sub *Subscription) admit(sid string, seq uint32, vars []Arg, perr error) (int, string) {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	if sub.closed || sid != sub.sid {
		return http.StatusPreconditionFailed, "unknown SID " + sid
	}
	if perr != nil {
		return http.StatusBadRequest, perr.Error()
	}
	var want uint32
	if sub.seen {
		want = NextSeq(sub.last)
	}
	ev := Event{
		EventURL:  sub.eventURL,
		SID:       sid,
		Seq:       seq,
		Vars:      vars,
		Initial:   seq == 0,
		Resync:    sub.resync || seq != want,
		Forgotten: sub.forgot,
	}
	if seq != want {
		sub.log.Info("upnp: event sequence broken", "url", sub.eventURL, "sid", sid, "want", want, "got", seq)
	}
	sub.seen, sub.last, sub.resync, sub.forgot = true, seq, false, false
	select {
	case sub.events <- ev:
	default:
		sub.resync, sub.forgot = true, ev.Forgotten
		sub.log.Warn("upnp: event handler too slow; event dropped", "url", sub.eventURL, "sid", sid, "seq", seq)
	}
	return http.StatusOK, ""
}

// dispatch calls the handler with each queued event until Close.
func (sub *Subscription) dispatch() {
	for {
		select {
		case <-sub.ctx.Done():
			return
		case ev := <-sub.events:
			if sub.ctx.Err() != nil {
				return
			}
			sub.handler(ev)
		}
	}
}

// upkeep renews the subscription at half its granted duration until Close,
// subscribing anew when the device has forgotten it or it expired while the
// device was unreachable.
func (sub *Subscription) upkeep() {
	defer close(sub.done)
	t := time.NewTimer(sub.renewIn())
	defer t.Stop()
	for {
		select {
		case <-sub.ctx.Done():
			return
		case <-t.C:
		}
		t.Reset(sub.refresh())
	}
}

// renewIn returns when to renew next: half the granted duration.
func (sub *Subscription) renewIn() time.Duration {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	return max(sub.granted/2, minRenew)
}

// retryIn returns when to try again after a failure: often enough to make
// it before expiry, rarely enough not to hammer a device that is down.
func (sub *Subscription) retryIn() time.Duration {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	return min(max(sub.granted/4, time.Second), 30*time.Second)
}

// refresh renews (or re-makes) the subscription once and returns the delay
// until the next attempt.
func (sub *Subscription) refresh() time.Duration {
	sub.mu.Lock()
	expired := !sub.infinite && !time.Now().Before(sub.expires)
	sub.mu.Unlock()
	var err error
	forgotten := false
	if !expired {
		err = sub.renew(sub.ctx)
		if err == nil {
			return sub.renewIn()
		}
		if !errors.Is(err, errForgotten) {
			if sub.ctx.Err() == nil {
				sub.log.Warn("upnp: event subscription renewal failed; will retry", "url", sub.eventURL, "err", err)
			}
			return sub.retryIn()
		}
		sub.log.Info("upnp: device forgot the event subscription; subscribing again", "url", sub.eventURL)
		forgotten = true
	}
	if err := sub.subscribe(sub.ctx, true, forgotten); err != nil {
		if sub.ctx.Err() == nil {
			sub.log.Warn("upnp: event resubscription failed; will retry", "url", sub.eventURL, "err", err)
		}
		return sub.retryIn()
	}
	return sub.renewIn()
}

// request sends one SUBSCRIBE or UNSUBSCRIBE with the headers in hdr, set
// in the upper case UDA shows.
func (sub *Subscription) request(ctx context.Context, method string, hdr map[string]string) (*http.Response, error) {
	ctx, cancel := context.WithTimeout(ctx, subscriberRequestTimeout)
	req, err := http.NewRequestWithContext(ctx, method, sub.eventURL, nil)
	if err != nil {
		cancel()
		return nil, err
	}
	for k, v := range hdr {
		req.Header[k] = []string{v}
	}
	ua := sub.s.UserAgent
	if ua == "" {
		ua = defaultUserAgent
	}
	req.Header["User-Agent"] = []string{ua}
	resp, err := do(sub.s.Client, req)
	if err != nil {
		cancel()
		return nil, err
	}
	// Nothing useful is in the body; reading it lets the connection be
	// reused.
	_, _ = ReadLimited(resp.Body, 4<<10)
	resp.Body.Close()
	cancel()
	return resp, nil
}

// defaultUserAgent follows the UDA 1.1 USER-AGENT (and SERVER) form; the
// OS version is not known portably, so "1" stands in for it.
const defaultUserAgent = version.Server

// subscribe sends a new SUBSCRIBE (with CALLBACK and NT) and records the
// SID and duration granted. again marks a resubscription, whose first
// event must carry Resync since changes made meanwhile were missed;
// forgotten, one after the device answered a renewal with 412, whose first
// event must carry Forgotten too.
func (sub *Subscription) subscribe(ctx context.Context, again, forgotten bool) error {
	sub.mu.Lock()
	if !sub.pending {
		sub.ready = make(chan struct{})
		sub.pending = true
	}
	ready := sub.ready
	sub.sid = ""
	sub.mu.Unlock()
	defer func() {
		sub.mu.Lock()
		sub.pending = false
		sub.mu.Unlock()
		close(ready)
	}()

	resp, err := sub.request(ctx, "SUBSCRIBE", map[string]string{
		"CALLBACK": FormatCallback(sub.callback),
		"NT":       NTEvent,
		"TIMEOUT":  FormatTimeout(sub.requested),
	})
	if err != nil {
		return fmt.Errorf("upnp: SUBSCRIBE %s: %w", sub.eventURL, err)
	}
	switch {
	case resp.StatusCode == http.StatusPreconditionFailed:
		return fmt.Errorf("upnp: SUBSCRIBE %s: the device refused callback %s (412 Precondition Failed); it must be an address of ours the device sees requests come from: set Subscriber.CallbackHost to the local address of the route to the device", sub.eventURL, sub.callback)
	case resp.StatusCode/100 == 5:
		return fmt.Errorf("upnp: SUBSCRIBE %s: %s; the device may be out of subscriptions, try again later", sub.eventURL, resp.Status)
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("upnp: SUBSCRIBE %s: %s; the device may not support eventing", sub.eventURL, resp.Status)
	}
	sid, err := ParseSID(resp.Header.Get("SID"))
	if err != nil {
		return fmt.Errorf("upnp: SUBSCRIBE %s: device answered without a usable SID: %w", sub.eventURL, err)
	}
	granted, infinite := sub.grantedBy(resp)
	sub.mu.Lock()
	sub.sid = sid
	sub.granted, sub.infinite = granted, infinite
	sub.expires = time.Now().Add(granted)
	sub.seen = false
	if again {
		sub.resync = true
	}
	if forgotten {
		sub.forgot = true
	}
	sub.mu.Unlock()
	sub.log.Info("upnp: subscribed to events", "url", sub.eventURL, "sid", sid, "timeout", granted, "callback", sub.callback)
	return nil
}

// renew sends a renewal SUBSCRIBE (SID only) and records the new duration.
func (sub *Subscription) renew(ctx context.Context) error {
	sub.mu.Lock()
	sid := sub.sid
	sub.mu.Unlock()
	resp, err := sub.request(ctx, "SUBSCRIBE", map[string]string{
		"SID":     sid,
		"TIMEOUT": FormatTimeout(sub.requested),
	})
	if err != nil {
		return fmt.Errorf("upnp: renewing subscription at %s: %w", sub.eventURL, err)
	}
	if resp.StatusCode == http.StatusPreconditionFailed {
		return errForgotten
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("upnp: renewing subscription at %s: %s", sub.eventURL, resp.Status)
	}
	if got, err := ParseSID(resp.Header.Get("SID")); err == nil && got != sid {
		// UDA says the SID stays; believe the events, which carry ours.
		sub.log.Warn("upnp: device changed the SID on renewal; ignoring", "url", sub.eventURL, "sid", sid, "new", got)
	}
	granted, infinite := sub.grantedBy(resp)
	sub.mu.Lock()
	sub.granted, sub.infinite = granted, infinite
	sub.expires = time.Now().Add(granted)
	sub.mu.Unlock()
	sub.log.Debug("upnp: event subscription renewed", "url", sub.eventURL, "sid", sid, "timeout", granted)
	return nil
}

// grantedBy returns the duration a SUBSCRIBE response grants. "infinite"
// (UDA 1.0) is honoured but renewals still happen at the requested pace,
// since they are how a device restart is noticed. A missing or broken
// TIMEOUT is taken as the requested duration capped at five minutes:
// renewing early costs little, renewing late loses events.
func (sub *Subscription) grantedBy(resp *http.Response) (time.Duration, bool) {
	d, err := ParseTimeout(resp.Header.Get("TIMEOUT"))
	switch {
	case err == nil && d == TimeoutInfinite:
		return sub.requested, true
	case err != nil || d == 0:
		sub.log.Warn("upnp: SUBSCRIBE response without a usable TIMEOUT; renewing early", "url", sub.eventURL, "timeout", resp.Header.Get("TIMEOUT"))
		return min(sub.requested, 5*time.Minute), false
	}
	return d, false
}

// SID returns the subscription identifier the device assigned, which
// changes when the subscription is made anew, or "" while it is being made.
func (sub *Subscription) SID() string {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	return sub.sid
}

// Timeout returns the duration the device granted at the last SUBSCRIBE.
func (sub *Subscription) Timeout() time.Duration {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	return sub.granted
}

// Close cancels the subscription with UNSUBSCRIBE and stops its renewals.
// After Close returns the handler is not called again, except that a call
// already under way finishes. A device that no longer knew the subscription
// (412) is not an error. Close does not wait for a handler call under way,
// so the handler itself may call it. Close is idempotent.
func (sub *Subscription) Close(ctx context.Context) error {
	sub.mu.Lock()
	if sub.closed {
		sub.mu.Unlock()
		return nil
	}
	sub.closed = true
	sub.mu.Unlock()
	sub.cancel()
	<-sub.done
	sub.s.forget(strings.TrimPrefix(sub.callback.Path, "/"))
	sub.mu.Lock()
	sid := sub.sid
	sub.mu.Unlock()
	if sid == "" {
		return nil
	}
	resp, err := sub.request(ctx, "UNSUBSCRIBE", map[string]string{"SID": sid})
	if err != nil {
		return fmt.Errorf("upnp: UNSUBSCRIBE %s: %w; the device forgets the subscription when it expires", sub.eventURL, err)
	}
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusPreconditionFailed {
		return fmt.Errorf("upnp: UNSUBSCRIBE %s: %s; the device forgets the subscription when it expires", sub.eventURL, resp.Status)
	}
	return nil
}

// Close cancels every subscription (see Subscription.Close) and stops the
// callback server. ctx bounds the UNSUBSCRIBE requests and the wait for
// callbacks in progress.
func (s *Subscriber) Close(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	subs := make([]*Subscription, 0, len(s.subs))
	for _, sub := range s.subs {
		subs = append(subs, sub)
	}
	srv := s.srv
	s.mu.Unlock()
	var errs []error
	for _, sub := range subs {
		errs = append(errs, sub.Close(ctx))
	}
	if srv != nil {
		if err := srv.Shutdown(ctx); err != nil {
			srv.Close()
			errs = append(errs, fmt.Errorf("upnp: stopping event callback server: %w", err))
		}
	} else if s.Listener != nil {
		s.Listener.Close()
	}
	return errors.Join(errs...)
}
