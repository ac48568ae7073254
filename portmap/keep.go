package portmap

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"
)

// KeepConfig says which port to keep open.
type KeepConfig struct {
	// Options configure discovery (and re-discovery after the gateway goes
	// away).
	Options Options
	// Request is the mapping to keep. Its Lease is the lifetime asked for
	// at each renewal (default 1 h: short enough that a crashed keeper's
	// mapping does not linger, long enough to be cheap).
	Request Request
	// CheckInterval is how often the mapping is verified on the gateway
	// (default 30 s): the external address is read, and on UPnP the entry
	// itself, so a router reboot, a lost mapping or a new address is seen
	// within this interval even without announcements.
	CheckInterval time.Duration
	// NoAnnouncements disables listening for NAT-PMP/PCP announcements on
	// 224.0.0.1:5350, which routers send when they restart or their
	// address changes; with them a restart is noticed at once.
	NoAnnouncements bool

	// after, when set, replaces time.After for the Keeper's renewal and
	// check timers: tests drive the schedule with it, without waiting.
	after func(time.Duration) <-chan time.Time
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
	EventFailed         EventKind = "failed"          // the gateway refused the mapping; retried later
	EventDeleted        EventKind = "deleted"         // Close removed the mapping
)

// Event is a change in the state of a kept mapping.
type Event struct {
	Kind    EventKind `json:"event"`
	Time    time.Time `json:"time"`
	Mapping Mapping   `json:"mapping"`
	// Reason explains Lost, GatewayGone and Failed events.
	Reason string `json:"reason,omitempty"`
	// Previous is the old external address of an AddressChanged event.
	Previous netip.Addr `json:"previous,omitzero"`
}

// Keeper keeps one mapping open: it renews the lease at half its life,
// re-creates the mapping when the router loses it (reboot, epoch going
// back, an announcement, a missing entry), follows external-address
// changes, re-discovers a gateway that went away (falling back across
// protocols), and deletes the mapping on Close. It never blocks its caller:
// all work happens on its own goroutine and is reported as Events.
type Keeper struct {
	cfg    KeepConfig
	events chan Event
	wake   chan struct{}
	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex
	gw      Gateway
	current Mapping
	mapped  bool
	dropped int
}

// Keep starts keeping the mapping and returns at once. Events arrive on
// Events(); the first is Mapped (or GatewayGone/Failed when it cannot be
// made yet: the Keeper keeps trying).
func Keep(ctx context.Context, cfg KeepConfig) *Keeper {
	if cfg.CheckInterval <= 0 {
		cfg.CheckInterval = 30 * time.Second
	}
	if cfg.Request.Lease == 0 {
		cfg.Request.Lease = time.Hour
	}
	ctx, cancel := context.WithCancel(ctx)
	k := &Keeper{cfg: cfg, events: make(chan Event, 64), wake: make(chan struct{}, 1), cancel: cancel, done: make(chan struct{})}
	go k.run(ctx)
	return k
}

// Events delivers what happens to the mapping. It is closed after Close.
// A slow reader loses the oldest events, never blocks the Keeper.
func (k *Keeper) Events() <-chan Event { return k.events }

// Mapping returns the current mapping, and false while there is none.
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
// ctx. The Events channel is closed afterwards.
func (k *Keeper) Close(ctx context.Context) error {
	k.cancel()
	<-k.done
	k.mu.Lock()
	gw, m, mapped := k.gw, k.current, k.mapped
	k.mapped = false
	k.mu.Unlock()
	var err error
	if gw != nil && mapped {
		if err = gw.Delete(ctx, m.Key()); err == nil {
			k.emit(Event{Kind: EventDeleted, Mapping: m})
		}
	}
	close(k.events)
	return err
}

func (k *Keeper) emit(e Event) {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	for {
		select {
		case k.events <- e:
			return
		default:
		}
		// Full: drop the oldest so that the newest state is always there.
		select {
		case <-k.events:
			k.mu.Lock()
			k.dropped++
			k.mu.Unlock()
		default:
		}
	}
}

// backoff grows from 500 ms to 30 s between attempts while nothing works.
func backoff(n int) time.Duration {
	d := 500 * time.Millisecond << min(n, 6)
	return min(d, 30*time.Second)
}

func (k *Keeper) run(ctx context.Context) {
	defer close(k.done)
	var (
		gw        Gateway
		failures  int
		wasGone   bool
		lostCause string
		renew     <-chan time.Time
		everMade  bool
	)
	// The check timer is re-armed after each check, so a slow check never
	// queues another behind it.
	check := k.after(k.cfg.CheckInterval)
	if !k.cfg.NoAnnouncements {
		go k.listenAnnouncements(ctx)
	}
	setState := func(g Gateway, m Mapping, mapped bool) {
		k.mu.Lock()
		k.gw, k.current, k.mapped = g, m, mapped
		k.mu.Unlock()
	}
	for {
		if gw == nil {
			dctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			gws, err := Discover(dctx, k.cfg.Options)
			cancel()
			if ctx.Err() != nil {
				return
			}
			if err != nil {
				if !wasGone {
					k.emit(Event{Kind: EventGatewayGone, Reason: err.Error()})
					wasGone = true
				}
				if !k.sleep(ctx, backoff(failures)) {
					return
				}
				failures++
				continue
			}
			gw = gws[0]
			if wasGone && everMade {
				k.emit(Event{Kind: EventGatewayBack, Reason: fmt.Sprintf("%s gateway at %s", gw.Method(), gw.Addr())})
			}
			wasGone = false
		}
		if _, mapped := k.Mapping(); !mapped {
			actx, cancel := context.WithTimeout(ctx, 5*time.Second)
			m, err := gw.Add(actx, k.cfg.Request)
			cancel()
			if ctx.Err() != nil {
				return
			}
			if err != nil {
				var re *RefusedError
				if errors.As(err, &re) {
					k.emit(Event{Kind: EventFailed, Reason: err.Error()})
				} else {
					// Unreachable: find a gateway again (maybe by another protocol).
					k.emit(Event{Kind: EventGatewayGone, Reason: err.Error()})
					wasGone, gw = true, nil
				}
				if !k.sleep(ctx, backoff(failures)) {
					return
				}
				failures++
				continue
			}
			failures = 0
			setState(gw, m, true)
			kind := EventMapped
			if everMade {
				kind = EventRecreated
			}
			everMade = true
			k.emit(Event{Kind: kind, Mapping: m, Reason: lostCause})
			lostCause = ""
			renew = k.renewTimer(m)
		}
		select {
		case <-ctx.Done():
			return
		case <-renew:
			m, _ := k.Mapping()
			actx, cancel := context.WithTimeout(ctx, 5*time.Second)
			nm, err := gw.Add(actx, k.cfg.Request)
			cancel()
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				k.emit(Event{Kind: EventLost, Mapping: m, Reason: "renewal failed: " + err.Error()})
				lostCause = "renewal failed"
				setState(gw, m, false)
				gw = nil // re-discover: the gateway may have changed
				continue
			}
			setState(gw, nm, true)
			k.emit(Event{Kind: EventRenewed, Mapping: nm})
			renew = k.renewTimer(nm)
		case <-check:
			gw = k.verify(ctx, gw, &lostCause, &wasGone)
			check = k.after(k.cfg.CheckInterval)
		case <-k.wake:
			gw = k.verify(ctx, gw, &lostCause, &wasGone)
		}
	}
}

// after is time.After, or the test's replacement.
func (k *Keeper) after(d time.Duration) <-chan time.Time {
	if k.cfg.after != nil {
		return k.cfg.after(d)
	}
	return time.After(d)
}

func (k *Keeper) renewTimer(m Mapping) <-chan time.Time {
	if m.Permanent || m.Lease <= 0 {
		return nil // a permanent mapping needs no renewal, only checks
	}
	return k.after(max(m.Lease/2, time.Second))
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
// new external addresses. It returns the gateway to keep using (nil: find
// one again).
func (k *Keeper) verify(ctx context.Context, gw Gateway, lostCause *string, wasGone *bool) Gateway {
	m, mapped := k.Mapping()
	if !mapped {
		return gw
	}
	cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	st, err := verifyOn(cctx, gw, m)
	if ctx.Err() != nil {
		return gw
	}
	if err != nil {
		k.emit(Event{Kind: EventGatewayGone, Mapping: m, Reason: err.Error()})
		*wasGone = true
		*lostCause = "gateway came back"
		k.mu.Lock()
		k.mapped = false
		k.mu.Unlock()
		return nil
	}
	if st.ext.IsValid() && m.ExternalAddr.IsValid() && st.ext != m.ExternalAddr {
		prev := m.ExternalAddr
		m.ExternalAddr = st.ext
		k.mu.Lock()
		k.current = m
		k.mu.Unlock()
		k.emit(Event{Kind: EventAddressChanged, Mapping: m, Previous: prev})
	}
	if st.lost != "" {
		k.emit(Event{Kind: EventLost, Mapping: m, Reason: st.lost})
		*lostCause = st.lost
		k.mu.Lock()
		k.mapped = false
		k.mu.Unlock()
	}
	return gw
}

type verifyState struct {
	ext  netip.Addr
	lost string // why the mapping is gone; "" when it is there
}

// verifyOn reads the gateway's view of m: its external address, and
// whether the mapping survived (UPnP: the entry is read back; NAT-PMP: the
// epoch tells whether the router lost its table).
func verifyOn(ctx context.Context, gw Gateway, m Mapping) (verifyState, error) {
	var st verifyState
	switch g := gw.(type) {
	case *natpmpGateway:
		ea, err := g.c.ExternalAddress(ctx)
		if err != nil {
			if isRefusal(refusedPMP(err)) {
				return st, nil // it answers, with an error: it is there
			}
			return st, err
		}
		st.ext = ea.Addr
		if g.c.LostState() {
			g.c.ClearLostState()
			st.lost = "the router restarted (its NAT-PMP epoch went back) and lost its mappings"
		}
		return st, nil
	case *pcpGateway:
		if _, err := g.c.Announce(ctx); err != nil && !isRefusal(refusedPCP(err)) {
			return st, err
		}
		if g.c.LostState() {
			g.c.ClearLostState()
			st.lost = "the router restarted (its PCP epoch went back) and lost its mappings"
		}
		st.ext, _ = g.ExternalIP(ctx)
		return st, nil
	case *upnpGateway:
		ip, err := g.ExternalIP(ctx)
		if err != nil && !isRefusal(err) {
			return st, err
		}
		st.ext = ip
		pm, err := g.c.GetSpecificPortMappingEntry(ctx, m.RemoteHost, m.ExternalPort, string(m.Protocol))
		switch {
		case err == nil && (pm.InternalClient != m.InternalClient || pm.InternalPort != m.InternalPort):
			st.lost = fmt.Sprintf("the router now maps port %d/%s to %s:%d", m.ExternalPort, m.Protocol, pm.InternalClient, pm.InternalPort)
		case err != nil && isRefusal(refused(err)):
			st.lost = "the mapping is no longer on the router (it restarted, or someone deleted it)"
		case err != nil:
			return st, err
		}
		return st, nil
	}
	ip, err := gw.ExternalIP(ctx)
	st.ext = ip
	return st, err
}

func isRefusal(err error) bool {
	var re *RefusedError
	return errors.As(err, &re)
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
		gw := k.gw
		k.mu.Unlock()
		// Another router's news is not ours; before the first mapping any
		// announcement is worth a look (the Keeper is still searching).
		if gw == nil || routerHost(gw) == from.Unmap() {
			k.Check()
		}
	})
}
