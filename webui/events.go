package webui

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/netip"
	"time"

	"github.com/portfwd/portfwd/internal/webpage"
	"github.com/portfwd/portfwd/internal/websec"
	"github.com/portfwd/portfwd/portmap"
)

// Server-sent events. Each browser tab holds one /api/events stream. On
// connecting it gets the current state as ordinary events, then every
// change: "discovery" (progress and outcome), "gateways" (the list and
// the selection), "mappings" (a gateway's table), "external" (its external
// address). While at least one stream is open, a poller re-reads the
// selected gateway every PollInterval (or on a Watcher's word) and pushes
// what changed; with no stream open, the router is left alone.

// subscriberBuffer is how many events may wait for a slow browser. A
// browser that falls further behind is disconnected; EventSource
// reconnects by itself and gets the current state afresh.
const subscriberBuffer = 32

// keepaliveInterval spaces comment lines that keep idle proxies and the
// browser from dropping a quiet stream.
const keepaliveInterval = 15 * time.Second

type event struct {
	name string
	data []byte
}

type subscriber struct {
	ch   chan event
	gone chan struct{} // closed when the server drops the subscriber
}

// broadcastLocked sends an event to every subscriber; s.mu is held, which
// orders events the same way for everyone.
func (s *Server) broadcastLocked(name string, v any) {
	if len(s.subs) == 0 {
		return
	}
	data, err := json.Marshal(v)
	if err != nil {
		s.logger().Error("cannot encode event", "event", name, "err", err)
		return
	}
	ev := event{name: name, data: data}
	for sub := range s.subs {
		select {
		case sub.ch <- ev:
		default:
			delete(s.subs, sub)
			close(sub.gone)
			s.logger().Debug("dropped a slow event stream")
		}
	}
	s.pollerNeededLocked()
}

// subscribe registers a stream and returns it with the events that give
// the current state, taken under the same lock so that nothing between the
// snapshot and the first event is lost or reordered. It returns nil once
// the server is closed.
func (s *Server) subscribe() (*subscriber, []event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, nil
	}
	sub := &subscriber{ch: make(chan event, subscriberBuffer), gone: make(chan struct{})}
	s.subs[sub] = struct{}{}
	var initial []event
	add := func(name string, v any) {
		if data, err := json.Marshal(v); err == nil {
			initial = append(initial, event{name, data})
		}
	}
	add("discovery", s.disc)
	add("gateways", s.gatewaysPayloadLocked())
	if g := s.selected; g != nil {
		add("external", s.externalPayloadLocked(g))
		if g.listed {
			add("mappings", s.mappingsPayloadLocked(g, time.Now()))
		}
	}
	s.pollerNeededLocked()
	return sub, initial
}

func (s *Server) unsubscribe(sub *subscriber) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.subs[sub]; ok {
		delete(s.subs, sub)
		close(sub.gone)
	}
	s.pollerNeededLocked()
}

// pollerNeededLocked starts the poller when the first stream opens and
// stops it when the last one closes; s.mu is held.
func (s *Server) pollerNeededLocked() {
	switch {
	case len(s.subs) > 0 && s.stopPolling == nil && !s.closed:
		ctx, cancel := context.WithCancel(s.ctx)
		s.stopPolling = cancel
		s.wg.Add(1)
		go s.poll(ctx)
	case len(s.subs) == 0 && s.stopPolling != nil:
		s.stopPolling()
		s.stopPolling = nil
	}
}

// kickPoller asks the poller to re-read the router now; it never blocks.
func (s *Server) kickPoller() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// handleEvents is GET /api/events.
func (s *Server) handleEvents(w http.ResponseWriter, r *http.Request) {
	s.ensureDiscovery()
	sub, initial := s.subscribe()
	if sub == nil {
		websec.WriteError(w, http.StatusServiceUnavailable, "portfwd ui is stopping")
		return
	}
	defer s.unsubscribe(sub)
	st, err := webpage.StartStream(w)
	if err != nil {
		return
	}
	for _, ev := range initial {
		if st.Send(ev.name, ev.data) != nil {
			return
		}
	}
	if st.Flush() != nil {
		return
	}
	ping := time.NewTicker(keepaliveInterval)
	defer ping.Stop()
	for {
		select {
		case ev := <-sub.ch:
			if st.Send(ev.name, ev.data) != nil {
				return
			}
			// Send what else is queued in the same flush.
			for more := true; more; {
				select {
				case ev := <-sub.ch:
					if st.Send(ev.name, ev.data) != nil {
						return
					}
				default:
					more = false
				}
			}
		case <-ping.C:
			if st.Keepalive() != nil {
				return
			}
		case <-sub.gone:
			return
		case <-r.Context().Done():
			return
		}
		if st.Flush() != nil {
			return
		}
	}
}

// poll re-reads the selected gateway while streams are open: every
// PollInterval, or when kicked (after a change made through the API, a
// new selection, or a Watcher's notice). It reads one thing at a time and
// waits the full interval after each read, so a slow router is never
// asked faster than it answers.
func (s *Server) poll(ctx context.Context) {
	defer s.wg.Done()
	var w *watch // the running watch, if any
	watchFailed := map[*gateway]bool{}
	endWatch := func() {
		if w != nil {
			w.stop()
			<-w.ended
			w = nil
		}
		s.setFollowing(nil)
	}
	defer endWatch()
	for {
		g := s.selectedGateway()
		if s.Watcher != nil && (w == nil || w.g != g) {
			endWatch()
			if g != nil && !watchFailed[g] {
				w = s.startWatch(ctx, g)
				s.setFollowing(g)
			}
		}
		if g != nil {
			s.refresh(ctx, g)
		}
		var tick <-chan time.Time
		var ended <-chan error
		if w == nil {
			tick = time.After(s.pollInterval())
		} else {
			ended = w.ended
		}
		select {
		case <-ctx.Done():
			return
		case <-s.kick:
		case <-tick:
		case err := <-ended:
			if ctx.Err() == nil {
				level := slog.LevelWarn
				if errors.Is(err, ErrNoRouterEvents) {
					level = slog.LevelInfo // a router without eventing: polling is the way
				}
				s.logger().Log(ctx, level, "watching the gateway failed; polling it instead", "gateway", w.g.gw.Addr(), "err", err)
				watchFailed[w.g] = true
			}
			w.ended <- err // endWatch reads it
			endWatch()
		}
	}
}

// setFollowing records the gateway whose events the poller follows (nil:
// none), and tells the pages when that changes.
func (s *Server) setFollowing(g *gateway) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.following == g {
		return
	}
	s.following = g
	s.broadcastLocked("gateways", s.gatewaysPayloadLocked())
}

// watch is a running Watcher.Watch call.
type watch struct {
	g     *gateway
	stop  context.CancelFunc
	ended chan error // receives Watch's result
}

func (s *Server) startWatch(ctx context.Context, g *gateway) *watch {
	wctx, cancel := context.WithCancel(ctx)
	w := &watch{g: g, stop: cancel, ended: make(chan error, 1)}
	go func() { w.ended <- s.Watcher.Watch(wctx, g.gw, s.kickPoller) }()
	return w
}

// refresh reads g's table and external address and pushes what changed.
func (s *Server) refresh(ctx context.Context, g *gateway) {
	s.mu.Lock()
	canList := !g.unsupported // NAT-PMP and PCP cannot list: asked once
	s.mu.Unlock()
	if canList {
		started := time.Now()
		lctx, cancel := context.WithTimeout(ctx, 10*s.timeout())
		ms, err := g.gw.List(lctx, nil)
		cancel()
		if ctx.Err() != nil {
			return
		}
		s.storeMappings(g, ms, err, started)
	}
	started := time.Now()
	ectx, cancel := context.WithTimeout(ctx, s.timeout())
	ip, err := g.gw.ExternalIP(ectx)
	cancel()
	if ctx.Err() != nil {
		return
	}
	s.storeExternal(g, ip, err, started)
}

// storeMappings caches a table read from g (ms, err as List gave them; the
// read started at started) and pushes it when it differs from the cached
// one. A failed read keeps the old table and says why it may be stale. A
// read that started before the cached one (a slow poll overtaken by an API
// call, or the reverse) is dropped, so that an old table never replaces a
// newer one; the newer one is returned.
func (s *Server) storeMappings(g *gateway, ms []portmap.Mapping, err error, started time.Time) mappingsJSON {
	sortMappings(ms)
	s.mu.Lock()
	defer s.mu.Unlock()
	if g.listed && started.Before(g.listedAt) {
		return s.mappingsPayloadLocked(g, time.Now())
	}
	g.listedAt = started
	unsupported := errors.Is(err, portmap.ErrNotSupported)
	errText := ""
	if err != nil && !unsupported {
		errText = s.sentence(err)
		if len(ms) > 0 {
			errText = "the list may be incomplete: " + errText
		}
	}
	changed := !g.listed || g.unsupported != unsupported || g.listErr != errText
	if err == nil || len(ms) > 0 || unsupported {
		if !sameTable(g.mappings, g.readAt, ms, started) {
			changed = true
		}
		g.mappings, g.readAt = ms, started
	}
	g.listed, g.unsupported, g.listErr = true, unsupported, errText
	p := s.mappingsPayloadLocked(g, time.Now())
	if changed {
		s.broadcastLocked("mappings", p)
	}
	return p
}

// storeExternal caches g's external address, read from a request that
// started at started, and pushes it when it changed. As with the table, an
// older read never replaces a newer one.
func (s *Server) storeExternal(g *gateway, ip netip.Addr, err error, started time.Time) externalJSON {
	s.mu.Lock()
	defer s.mu.Unlock()
	if g.extKnown && started.Before(g.extAt) {
		return s.externalPayloadLocked(g)
	}
	g.extAt = started
	errText := ""
	if err != nil {
		errText = s.sentence(err)
	}
	changed := !g.extKnown || g.extErr != errText || (err == nil && ip != g.ext)
	if err == nil {
		g.ext = ip
	}
	g.extKnown, g.extErr = true, errText
	p := s.externalPayloadLocked(g)
	if changed {
		s.broadcastLocked("external", p)
		// The gateway list shows the address too.
		s.broadcastLocked("gateways", s.gatewaysPayloadLocked())
	}
	return p
}

// leaseSlack is how far two readings of a lease may disagree before the
// mapping counts as renewed: routers count in whole seconds, and a read
// takes time.
const leaseSlack = 3 * time.Second

// sameTable reports whether table b, read at bt, is table a, read at at,
// apart from leases running down as they should.
func sameTable(a []portmap.Mapping, at time.Time, b []portmap.Mapping, bt time.Time) bool {
	if len(a) != len(b) {
		return false
	}
	old := make(map[portmap.Key]portmap.Mapping, len(a))
	for _, m := range a {
		old[m.Key()] = m
	}
	for _, m := range b {
		o, ok := old[m.Key()]
		if !ok || o.InternalClient != m.InternalClient || o.InternalPort != m.InternalPort ||
			o.Enabled != m.Enabled || o.Description != m.Description || o.Permanent != m.Permanent {
			return false
		}
		if !m.Permanent {
			d := at.Add(o.Lease).Sub(bt.Add(m.Lease))
			if d > leaseSlack || d < -leaseSlack {
				return false
			}
		}
	}
	return true
}
