package portmap

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/portfwd/portfwd/igd"
)

// KeepConfig says which port to keep open.
type KeepConfig struct {
	// Options configure discovery (and re-discovery after the gateway goes
	// away), and name the state directory where the Keeper records the
	// mapping it holds.
	Options Options
	// Gateway, when set, is the gateway to keep the mapping on, instead
	// of the one discovery finds first. When it stops answering, discovery
	// (with Options) finds one again. A Gateway from outside this package
	// is kept through the Gateway interface alone: no restart detection
	// and no announcements.
	Gateway Gateway
	// Request is the mapping to keep. Its Lease is the lifetime asked for
	// at each renewal (default 1 h: short enough that a crashed keeper's
	// mapping does not linger, long enough to be cheap). With Any, the
	// router may choose the external port the first time; renewals then
	// ask for the port granted, and another only when that one is refused.
	Request Request
	// CheckInterval is how often the mapping is verified on the gateway
	// (default 30 s): the external address and the router's restart clock
	// are read, and on UPnP the entry itself, so a router reboot, a lost
	// mapping or a new address is seen within this interval even without
	// announcements. NAT-PMP and PCP cannot read a mapping back: there the
	// check asks for the mapping again (one packet), which brings back one
	// deleted behind the Keeper's back.
	CheckInterval time.Duration
	// NoAnnouncements disables listening for NAT-PMP/PCP announcements on
	// 224.0.0.1:5350, which routers send when they restart or their
	// address changes; with them a restart is noticed at once.
	NoAnnouncements bool
}

// EventKind says what happened to a kept mapping.
type EventKind string

const (
	EventMapped         EventKind = "mapped"          // the mapping was made
	EventRenewed        EventKind = "renewed"         // its lease was renewed
	EventLost           EventKind = "lost"            // it disappeared (router restart, deleted by someone)
	EventRecreated      EventKind = "recreated"       // it was made again after a loss or a new gateway
	EventAddressChanged EventKind = "address-changed" // the gateway's external address changed
	EventGatewayGone    EventKind = "gateway-gone"    // the gateway stopped answering
	EventGatewayBack    EventKind = "gateway-back"    // a gateway answers again
	// EventFailed: the gateway refused for a reason that may pass (its
	// Internet link is down, it has no free slots): retried with backoff.
	EventFailed EventKind = "failed"
	// EventError: the Keeper gave up, because the gateway (or portfwd, to
	// keep another mapping whole) refused for good: 606 not authorized,
	// 718 a port held by another host, NOT_AUTHORIZED, UNSUPP_*, a mapping
	// in the way. Reason says why; Done is closed and Err returns the
	// error. The Keeper still holds a mapping it made earlier, if any,
	// until Close deletes it.
	EventError EventKind = "error"
	// EventDeleted: Close removed the mapping.
	EventDeleted EventKind = "deleted"
	// EventLeftoverDeleted: a mapping left on the gateway by a Keeper
	// whose process ended without deleting it (a crash, kill -9) was
	// deleted; Mapping is that mapping.
	EventLeftoverDeleted EventKind = "leftover-deleted"
)

// Event is a change in the state of a kept mapping. Its Mapping is as the
// gateway granted it (see Mapping).
type Event struct {
	Kind    EventKind `json:"event"`
	Time    time.Time `json:"time"`
	Mapping Mapping   `json:"mapping"`
	// Reason explains Lost, GatewayGone, Failed, Error and Recreated
	// events.
	Reason string `json:"reason,omitempty"`
	// Previous is the old external address of an AddressChanged event.
	Previous netip.Addr `json:"previous,omitzero"`
}

// Keeper keeps one mapping open: it renews the lease at half its life,
// asking for the port it was granted; re-creates the mapping when the
// router loses it (a restart seen in its epoch or uptime, an announcement,
// a missing entry); follows external-address changes; re-discovers a
// gateway that went away (falling back across protocols); retries refusals
// that may pass, with backoff, and gives up on those that will not; and
// deletes the mapping on Close. It records the mapping it holds in the
// state directory, so that a Keeper that starts after one crashed deletes
// what that one left. It never blocks its caller: the work happens on its
// own goroutines and is reported as Events.
type Keeper struct {
	cfg    KeepConfig
	self   *Process
	events chan Event
	wake   chan struct{}
	cancel context.CancelFunc
	done   chan struct{} // closed when run returns
	wg     sync.WaitGroup

	stopOnce sync.Once
	stopErr  error

	mu      sync.Mutex
	drv     driver
	current Mapping
	mapped  bool
	err     error
	dropped int
}

// Keep starts keeping the mapping and returns at once. Events arrive on
// Events(); the first is Mapped, or GatewayGone/Failed while it cannot be
// made yet (the Keeper keeps trying), or Error when it never can be.
func Keep(ctx context.Context, cfg KeepConfig) *Keeper {
	if cfg.CheckInterval <= 0 {
		cfg.CheckInterval = 30 * time.Second
	}
	if cfg.Request.Lease == 0 {
		cfg.Request.Lease = time.Hour
	}
	ctx, cancel := context.WithCancel(ctx)
	k := &Keeper{cfg: cfg, self: thisProcess(), events: make(chan Event, 64), wake: make(chan struct{}, 1),
		cancel: cancel, done: make(chan struct{})}
	k.wg.Go(func() { k.run(ctx) })
	return k
}

// Events delivers what happens to the mapping. It is closed by Close and
// Release. A slow reader loses the oldest events, never blocks the Keeper.
func (k *Keeper) Events() <-chan Event { return k.events }

// Done is closed when the Keeper stops: when it gives up (see Err), or
// after Close or Release.
func (k *Keeper) Done() <-chan struct{} { return k.done }

// Err returns why the Keeper gave up (an EventError), or nil when it did
// not. The error is a *RefusedError when the
// gateway or portfwd refused the mapping.
func (k *Keeper) Err() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.err
}

// Mapping returns the current mapping, as the gateway granted it, and
// false while there is none.
func (k *Keeper) Mapping() (Mapping, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.current, k.mapped
}

// Check asks the Keeper to verify the mapping now (as an announcement does).
func (k *Keeper) Check() {
	select {
	case k.wake <- struct{}{}:
	default:
	}
}

// Close stops keeping the mapping and deletes it from the gateway, within
// ctx. It waits for every goroutine the Keeper started, then closes the
// Events channel. Calling it again, or after Release, does nothing and
// returns the first call's result.
func (k *Keeper) Close(ctx context.Context) error {
	k.stopOnce.Do(func() {
		k.stop()
		k.mu.Lock()
		drv, m, mapped := k.drv, k.current, k.mapped
		k.mapped = false
		k.mu.Unlock()
		if drv != nil && mapped {
			err := drv.Delete(ctx, m.Key())
			var re *RefusedError
			if errors.As(err, &re) && re.Method == UPnP && re.Code == igd.CodeNoSuchEntryInArray {
				err = nil // gone already
			}
			if err == nil {
				k.emit(Event{Kind: EventDeleted, Mapping: m})
				drv.state().drop(drv.Method(), drv.Addr(), m.Key())
			}
			k.stopErr = err
		}
		close(k.events)
	})
	return k.stopErr
}

// Release stops keeping the mapping and leaves it on the gateway until its
// lease ends (a program handing the port over, or one that stops renewing
// without closing the port at once). It waits for every goroutine the
// Keeper started and closes the Events channel; it returns the mapping
// left, and false when there is none. Calling it again, or after Close,
// does nothing.
func (k *Keeper) Release() (Mapping, bool) {
	var m Mapping
	var mapped bool
	k.stopOnce.Do(func() {
		k.stop()
		k.mu.Lock()
		drv := k.drv
		m, mapped = k.current, k.mapped
		k.mapped = false
		k.mu.Unlock()
		if drv != nil && mapped {
			// The record stays, no longer held by a Keeper: a later
			// process can still delete the mapping by its external port,
			// and no later Keeper takes it for a leftover.
			drv.state().update(func(d *stateData) error {
				if i := findRecord(d.Mappings, drv.Method(), drv.Addr(), m.Key()); i >= 0 {
					d.Mappings[i].Keeper = nil
				}
				return nil
			})
		}
		close(k.events)
	})
	return m, mapped
}

// stop ends the Keeper's goroutines and waits for them.
func (k *Keeper) stop() {
	k.cancel()
	k.wg.Wait()
}

func (k *Keeper) emit(e Event) {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	if n := sendNewest(k.events, e); n > 0 {
		k.mu.Lock()
		k.dropped += n
		k.mu.Unlock()
	}
}

// sendNewest queues v on ch without ever blocking: while ch is full, the
// oldest queued value is dropped to make room, so that a slow reader
// always finds the newest state (the Keeper's and the watcher's events
// carry it whole). It returns how many values it dropped.
func sendNewest[T any](ch chan T, v T) (dropped int) {
	for {
		select {
		case ch <- v:
			return dropped
		default:
		}
		select {
		case <-ch:
			dropped++
		default:
		}
	}
}

// backoff grows from 500 ms to 30 s between attempts while nothing works.
func backoff(n int) time.Duration {
	d := 500 * time.Millisecond << min(n, 6)
	return min(d, 30*time.Second)
}

// keepState is the run loop's own state.
type keepState struct {
	drv       driver
	det       restartDetector
	failures  int
	wasGone   bool
	lostCause string
	everMade  bool
	granted   uint16          // the external port granted last; 0 before the first mapping
	cleaned   map[string]bool // gateways whose leftovers were looked at
}

func (k *Keeper) run(ctx context.Context) {
	defer close(k.done)
	s := &keepState{cleaned: map[string]bool{}}
	if k.cfg.Gateway != nil {
		s.drv = driverFor(k.cfg.Gateway, &k.cfg.Options)
	}
	// The check timer is re-armed after each check, so a slow check never
	// queues another behind it.
	check := time.After(k.cfg.CheckInterval)
	if !k.cfg.NoAnnouncements {
		k.wg.Go(func() { k.listenAnnouncements(ctx) })
	}
	var renew <-chan time.Time
	for {
		if s.drv == nil {
			if !k.discover(ctx, s) {
				return
			}
			continue
		}
		if h := s.drv.host(); h != s.det.host {
			s.det.reset(h)
		}
		if !s.cleaned[string(s.drv.Method())+s.drv.Addr()] {
			s.cleaned[string(s.drv.Method())+s.drv.Addr()] = true
			k.deleteLeftovers(ctx, s.drv)
		}
		if _, mapped := k.Mapping(); !mapped {
			switch k.makeMapping(ctx, s) {
			case stepRetry:
				if !k.sleep(ctx, backoff(s.failures)) {
					return
				}
				s.failures++
				continue
			case stepStop:
				return
			}
			m, _ := k.Mapping()
			renew = k.renewTimer(m)
		}
		select {
		case <-ctx.Done():
			return
		case <-renew:
			var stop bool
			renew, stop = k.renewMapping(ctx, s)
			if stop {
				return
			}
		case <-check:
			k.verify(ctx, s)
			check = time.After(k.cfg.CheckInterval)
		case <-k.wake:
			k.verify(ctx, s)
		}
	}
}

// discover finds a gateway for s; it returns false when ctx ended.
func (k *Keeper) discover(ctx context.Context, s *keepState) bool {
	dctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	gws, err := Discover(dctx, k.cfg.Options)
	cancel()
	if ctx.Err() != nil {
		return false
	}
	if err != nil {
		if !s.wasGone {
			k.emit(Event{Kind: EventGatewayGone, Reason: err.Error()})
			s.wasGone = true
		}
		if !k.sleep(ctx, backoff(s.failures)) {
			return false
		}
		s.failures++
		return true
	}
	s.drv = driverFor(gws[0], &k.cfg.Options)
	if s.wasGone && s.everMade {
		k.emit(Event{Kind: EventGatewayBack, Reason: fmt.Sprintf("%s gateway at %s", s.drv.Method(), s.drv.Addr())})
	}
	s.wasGone = false
	return true
}

type step int

const (
	stepOK    step = iota
	stepRetry      // wait (backoff) and try again
	stepStop       // given up, or ctx ended
)

// makeMapping makes the mapping: the port granted before, if any (RFC 6886
// §3.3 and RFC 6887 §11.2 ask a client to get its old port back), and any
// other only when that one is refused and the request allows any.
func (k *Keeper) makeMapping(ctx context.Context, s *keepState) step {
	req := k.cfg.Request
	if s.granted != 0 {
		req.ExternalPort, req.Any = s.granted, false
	}
	// The request runs to its end even when the Keeper is stopped
	// meanwhile: a router that made the mapping must have it recorded, so
	// that Close deletes it rather than leaving it behind.
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	sent := time.Now()
	m, clocks, err := s.drv.mapPort(actx, req)
	var re *RefusedError
	if err != nil && s.granted != 0 && k.cfg.Request.Any && errors.As(err, &re) && !re.Transient() && ctx.Err() == nil {
		m, clocks, err = s.drv.mapPort(actx, k.cfg.Request)
	}
	if err != nil {
		if ctx.Err() != nil {
			return stepStop
		}
		return k.failed(s, err, "")
	}
	s.failures = 0
	s.det.observe(clocks, sent, time.Now())
	m.addNote(k.record(s.drv, m))
	k.setState(s.drv, m, true)
	kind, reason := EventMapped, s.lostCause
	if s.everMade {
		kind = EventRecreated
		if s.granted != 0 && m.ExternalPort != s.granted {
			reason = joinReasons(reason, fmt.Sprintf("port %d was no longer to be had; the router gave %d", s.granted, m.ExternalPort))
		}
	}
	s.everMade = true
	s.granted = m.ExternalPort
	k.emit(Event{Kind: kind, Mapping: m, Reason: reason})
	s.lostCause = ""
	return stepOK
}

func joinReasons(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}

// failed handles a failure to make or renew the mapping: a refusal that
// may pass is retried, one that will not ends the Keeper, and anything
// else means the gateway is unreachable: find one again.
func (k *Keeper) failed(s *keepState, err error, what string) step {
	var re *RefusedError
	switch {
	case errors.As(err, &re) && re.Transient():
		k.emit(Event{Kind: EventFailed, Reason: what + err.Error()})
		return stepRetry
	case errors.As(err, &re), errors.Is(err, ErrNotSupported):
		k.giveUp(err, what)
		return stepStop
	}
	m, _ := k.Mapping()
	k.emit(Event{Kind: EventGatewayGone, Mapping: m, Reason: what + err.Error()})
	s.wasGone, s.drv = true, nil
	return stepRetry
}

// giveUp ends the Keeper on a permanent refusal.
func (k *Keeper) giveUp(err error, what string) {
	m, _ := k.Mapping()
	k.mu.Lock()
	k.err = err
	k.mu.Unlock()
	k.emit(Event{Kind: EventError, Mapping: m, Reason: what + err.Error()})
}

// renewMapping renews the mapping for the port it holds. It returns the
// next renewal timer, and true when the Keeper gave up.
func (k *Keeper) renewMapping(ctx context.Context, s *keepState) (<-chan time.Time, bool) {
	m, _ := k.Mapping()
	// As in makeMapping, a renewal in flight is seen to its end, so that
	// a mapping it moved to another port is the one Close deletes.
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	sent := time.Now()
	nm, clocks, err := s.drv.renew(actx, m, k.cfg.Request)
	cancel()
	if err != nil && ctx.Err() != nil {
		return nil, true
	}
	if err != nil {
		var re *RefusedError
		switch {
		case errors.As(err, &re) && re.Transient():
			// The lease still runs: try again well before it ends.
			k.emit(Event{Kind: EventFailed, Mapping: m, Reason: "renewal refused: " + err.Error()})
			s.failures++
			return time.After(min(backoff(s.failures), max(m.Lease/4, time.Second))), false
		case errors.As(err, &re) && k.cfg.Request.Any:
			// Our port is refused; the request allows another, which the
			// next round asks for.
			k.emit(Event{Kind: EventLost, Mapping: m, Reason: "renewal refused: " + err.Error()})
			s.lostCause = "renewal refused"
			k.setState(s.drv, m, false)
			return nil, false
		case errors.As(err, &re), errors.Is(err, ErrNotSupported):
			k.giveUp(err, "renewal refused: ")
			return nil, true
		}
		k.emit(Event{Kind: EventLost, Mapping: m, Reason: "renewal failed: " + err.Error()})
		s.lostCause = "renewal failed"
		k.setState(s.drv, m, false)
		s.drv = nil // re-discover: the gateway may have changed
		return nil, false
	}
	s.failures = 0
	s.det.observe(clocks, sent, time.Now())
	nm.addNote(k.record(s.drv, nm))
	k.setState(s.drv, nm, true)
	if nm.ExternalPort != m.ExternalPort {
		k.emit(Event{Kind: EventRecreated, Mapping: nm, Reason: fmt.Sprintf("port %d was no longer to be had; the router gave %d", m.ExternalPort, nm.ExternalPort)})
	} else {
		k.emit(Event{Kind: EventRenewed, Mapping: nm})
	}
	s.granted = nm.ExternalPort
	return k.renewTimer(nm), false
}

func (k *Keeper) setState(d driver, m Mapping, mapped bool) {
	k.mu.Lock()
	k.drv, k.current, k.mapped = d, m, mapped
	k.mu.Unlock()
}

// record notes in the state store that this Keeper holds m.
func (k *Keeper) record(d driver, m Mapping) string {
	rec := Record{Method: d.Method(), Gateway: d.Addr(), Protocol: m.Protocol, ExternalPort: m.ExternalPort,
		InternalClient: m.InternalClient, InternalPort: m.InternalPort, Description: m.Description,
		ExternalAddr: m.ExternalAddr, Made: time.Now(), Keeper: k.self}
	if !m.Permanent {
		rec.Expires = time.Now().Add(m.Lease)
	}
	return rememberIn(d.state(), rec)
}

// deleteLeftovers deletes the mappings that Keepers whose process is gone
// left on d's gateway, as recorded in the state store.
func (k *Keeper) deleteLeftovers(ctx context.Context, d driver) {
	recs, err := d.state().records(d.Method(), d.Addr(), func(r Record) bool { return r.Keeper != nil && !r.Keeper.Alive() })
	if err != nil || len(recs) == 0 {
		return
	}
	for _, r := range recs {
		m := recordMapping(r, d.LocalAddr())
		cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		cur, lerr := d.lookup(cctx, r.Key())
		var err error
		switch {
		case errors.Is(lerr, errNoEntry):
			// Gone already: only the record is left.
		case lerr == nil && (!sameAddr(cur.InternalClient, m.InternalClient) || cur.InternalPort != r.InternalPort):
			// Someone else's now: not ours to delete.
		case lerr == nil || errors.Is(lerr, errNoLookup):
			err = d.Delete(cctx, r.Key())
			if err == nil {
				k.emit(Event{Kind: EventLeftoverDeleted, Mapping: m, Reason: fmt.Sprintf(
					"left on the router by portfwd keep (process %d), which ended without deleting it", r.Keeper.PID)})
			}
		default:
			err = lerr
		}
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err != nil && !isRefusal(err) {
			continue // unreachable: try again at the next start
		}
		d.state().drop(d.Method(), d.Addr(), r.Key())
	}
}

func (k *Keeper) renewTimer(m Mapping) <-chan time.Time {
	if m.Permanent || m.Lease <= 0 {
		return nil // a permanent mapping needs no renewal, only checks
	}
	return time.After(max(m.Lease/2, time.Second))
}

func (k *Keeper) sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	case <-k.wake:
		return true
	}
}

// verify checks the gateway still has the mapping, and notices restarts and
// new external addresses.
func (k *Keeper) verify(ctx context.Context, s *keepState) {
	m, mapped := k.Mapping()
	if !mapped || s.drv == nil {
		return
	}
	cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	gone := func(err error) {
		k.emit(Event{Kind: EventGatewayGone, Mapping: m, Reason: err.Error()})
		s.wasGone = true
		s.lostCause = "gateway came back"
		k.setState(s.drv, m, false)
		s.drv = nil
	}
	sent := time.Now()
	rd, err := s.drv.read(cctx, false)
	if ctx.Err() != nil {
		return
	}
	if err != nil {
		gone(err)
		return
	}
	restart := s.det.observe(rd.clocks, sent, time.Now())
	if rd.extOK && rd.ext.IsValid() && !rd.ext.IsUnspecified() && m.ExternalAddr.IsValid() && rd.ext != m.ExternalAddr {
		prev := m.ExternalAddr
		m.ExternalAddr = rd.ext
		k.setState(s.drv, m, true)
		k.emit(Event{Kind: EventAddressChanged, Mapping: m, Previous: prev})
	}
	lost := ""
	cur, err := s.drv.lookup(cctx, m.Key())
	switch {
	case err == nil && (!sameAddr(cur.InternalClient, m.InternalClient) || cur.InternalPort != m.InternalPort):
		lost = fmt.Sprintf("the router now maps port %d/%s to %s:%d", m.ExternalPort, m.Protocol, cur.InternalClient, cur.InternalPort)
	case err == nil:
		// Still there, restart or not (miniupnpd keeps its leases across
		// a restart).
	case errors.Is(err, errNoEntry):
		lost = "the mapping is no longer on the router (it restarted, or someone deleted it)"
	case errors.Is(err, errNoLookup) && restart != "":
		// The protocol cannot read the mapping back: a restart means it
		// is gone (RFC 6886 §3.7, RFC 6887 §8.5).
		lost = restart
	case errors.Is(err, errNoLookup):
		// Nor can it tell a mapping deleted behind our back: ask for it
		// again, which renews it if it is there and makes it again if not
		// (one packet; the same nonce on PCP).
		k.refresh(cctx, s, m)
	default:
		if ctx.Err() == nil {
			gone(err)
		}
		return
	}
	if lost != "" {
		k.emit(Event{Kind: EventLost, Mapping: m, Reason: lost})
		s.lostCause = lost
		k.setState(s.drv, m, false)
	}
}

// refresh renews m at a check, on a protocol that cannot read it back. A
// failure is left to the next renewal, which handles it.
func (k *Keeper) refresh(ctx context.Context, s *keepState, m Mapping) {
	sent := time.Now()
	nm, clocks, err := s.drv.renew(ctx, m, k.cfg.Request)
	if err != nil {
		return
	}
	why := s.det.observe(clocks, sent, time.Now())
	nm.addNote(k.record(s.drv, nm))
	k.setState(s.drv, nm, true)
	if why != "" || nm.ExternalPort != m.ExternalPort {
		k.emit(Event{Kind: EventRecreated, Mapping: nm, Reason: joinReasons(why, "made again at the check")})
		return
	}
	k.emit(Event{Kind: EventRenewed, Mapping: nm})
}

// listenAnnouncements wakes the Keeper whenever its router sends a NAT-PMP
// or PCP announcement on 224.0.0.1:5350 (RFC 6886 §3.2.1, RFC 6887
// §14.1.3): routers send them when they restart or change address. The
// socket only listens; failure to open it (port taken, no multicast) just
// leaves the periodic checks.
func (k *Keeper) listenAnnouncements(ctx context.Context) {
	pc, err := openAnnouncementSocket(ctx)
	if err != nil {
		return
	}
	defer pc.Close()
	readAnnouncements(ctx, pc, func(b []byte, from netip.Addr) {
		if _, ok := parseAnnouncement(b, from); !ok {
			return
		}
		k.mu.Lock()
		d := k.drv
		k.mu.Unlock()
		// Another router's news is not ours; before the first mapping any
		// announcement is worth a look (the Keeper is still searching).
		if d == nil || d.host() == from.Unmap() {
			k.Check()
		}
	})
}
