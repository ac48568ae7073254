package portmap

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/portfwd/portfwd/igd"
	"github.com/portfwd/portfwd/pcp"
	"github.com/portfwd/portfwd/upnp"
)

// PinholeKeeper keeps one IPv6 pinhole open: it opens it, renews it at
// half its lease (UpdatePinhole, or a PCP MAP with the same nonce), opens
// it again when the router lost it, retries failures that may pass with
// backoff, gives up on refusals that will not (the firewall off, pinholes
// forbidden, not authorised), and closes it on Close. It reports through
// the same Events as a Keeper, whose Mapping has Family IPv6.
//
// Neither protocol can read a pinhole back, and miniupnpd's
// GetPinholePackets answers 0 for any ID, so the check that the router
// still holds it is the renewal itself: it is sent every check interval
// (when shorter than half the lease), one request, and a pinhole the
// router lost (a restart, someone deleting it) is opened again then. A
// PCP ANNOUNCE the gateway multicasts over IPv6 to [ff02::1]:5350 (it
// restarted) triggers that renewal at once.
type PinholeKeeper struct {
	p      *Pinholer
	req    PinholeRequest
	check  time.Duration
	events chan Event
	cancel context.CancelFunc
	done   chan struct{}

	mu  sync.Mutex
	cur Mapping
	err error
}

// KeepPinhole starts keeping the pinhole r on p, until Close or ctx ends,
// renewing it at half its lease or every check interval, whichever comes
// first (0: half the lease only).
func KeepPinhole(ctx context.Context, p *Pinholer, r PinholeRequest, check time.Duration) *PinholeKeeper {
	ctx, cancel := context.WithCancel(ctx)
	k := &PinholeKeeper{p: p, req: r, check: check, events: make(chan Event, 16), cancel: cancel, done: make(chan struct{})}
	go k.run(ctx)
	return k
}

// Events delivers what happens, and is closed once Close has returned or
// the keeper gave up.
func (k *PinholeKeeper) Events() <-chan Event { return k.events }

// Done is closed when the keeper stops.
func (k *PinholeKeeper) Done() <-chan struct{} { return k.done }

// Err is why the keeper gave up, or nil.
func (k *PinholeKeeper) Err() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.err
}

func (k *PinholeKeeper) emit(kind EventKind, m Mapping, reason string) {
	k.events <- Event{Kind: kind, Time: time.Now(), Mapping: m, Reason: reason}
}

// permanentPinholeError reports a refusal that retrying will not change.
func permanentPinholeError(err error) bool {
	return errors.Is(err, igd.FirewallDisabled) || errors.Is(err, igd.InboundPinholeNotAllowed) ||
		errors.Is(err, igd.ProtocolNotSupported) || errors.Is(err, igd.InternalPortWildcardingNotAllowed) ||
		errors.Is(err, igd.ProtocolWildcardingNotAllowed) || errors.Is(err, igd.WildCardNotPermittedInSrcIP) ||
		pcpCode(err) == pcp.ResultNotAuthorized || pcpCode(err) == pcp.ResultAddressMismatch ||
		pcpCode(err) == pcp.ResultUnsuppOpcode
}

func pcpCode(err error) pcp.ResultCode {
	var re *pcp.ResultError
	if errors.As(err, &re) {
		return re.Code
	}
	return pcp.ResultSuccess
}

func (k *PinholeKeeper) run(ctx context.Context) {
	defer close(k.done)
	var wg sync.WaitGroup
	defer wg.Wait()
	lctx, stopListening := context.WithCancel(ctx)
	defer stopListening()
	announced := make(chan struct{}, 1)
	wg.Go(func() { k.listenAnnouncements6(lctx, announced) })
	backoff := time.Second
	var m Mapping
	for m.ID == "" {
		var err error
		m, err = k.p.Open(ctx, k.req)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return
		}
		if permanentPinholeError(err) || upnp.ErrorCode(err) == igd.CodeActionNotAuthorized || isLocalRefusal(err) {
			k.fail(err)
			return
		}
		k.emit(EventFailed, Mapping{Family: IPv6, Protocol: k.req.Protocol, InternalPort: k.req.Port}, explainPinhole(err))
		if !sleepCtx(ctx, backoff) {
			return
		}
		backoff = min(2*backoff, time.Minute)
	}
	k.set(m)
	k.emit(EventMapped, m, "")
	lease := m.Lease
	// Renewals at half the lease are reported; those made early as a
	// check, only when they found something (a loss, a failure).
	nextReport := time.Now().Add(lease / 2)
	for {
		wait := max(lease/2, time.Second)
		if k.check > 0 && k.check < wait {
			wait = k.check
		}
		why := ""
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		case <-announced:
			t.Stop()
			why = "the gateway announced a restart (PCP ANNOUNCE over IPv6): renewed at once"
		}
		nm, recreated, err := k.p.Renew(ctx, k.current(), k.req.Lease)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil && permanentPinholeError(err):
			k.fail(err)
			return
		case err != nil:
			k.emit(EventFailed, k.current(), explainPinhole(err))
			lease = min(max(lease/2, 2*time.Second), time.Minute) // retry sooner
			continue
		case recreated:
			k.set(nm)
			reason := nm.Note
			if why != "" && reason != "" {
				reason = joinReasons(why, reason)
			} else if why != "" {
				reason = why
			}
			k.emit(EventRecreated, nm, reason)
			nextReport = time.Now().Add(nm.Lease / 2)
		case why != "":
			// PCP cannot tell a refresh from a re-creation: the MAP
			// makes the pinhole again if the restart lost it.
			k.set(nm)
			k.emit(EventRenewed, nm, why)
			nextReport = time.Now().Add(nm.Lease / 2)
		default:
			k.set(nm)
			if !time.Now().Before(nextReport) {
				k.emit(EventRenewed, nm, "")
				nextReport = time.Now().Add(nm.Lease / 2)
			}
		}
		lease = nm.Lease
	}
}

// isLocalRefusal reports errors found before anything was sent (no such
// address on this host, bad arguments).
func isLocalRefusal(err error) bool {
	var fe *igd.FirewallError
	var re *pcp.ResultError
	return !errors.As(err, &fe) && !errors.As(err, &re) && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, pcp.ErrNoResponse)
}

func explainPinhole(err error) string { return igd.Explain(err) }

func (k *PinholeKeeper) fail(err error) {
	k.mu.Lock()
	k.err = err
	k.mu.Unlock()
	k.emit(EventError, k.current(), explainPinhole(err))
}

func (k *PinholeKeeper) set(m Mapping) {
	k.mu.Lock()
	k.cur = m
	k.mu.Unlock()
}

func (k *PinholeKeeper) current() Mapping {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.cur
}

// Close stops renewing, closes the pinhole (within ctx) and closes Events.
func (k *PinholeKeeper) Close(ctx context.Context) error {
	k.cancel()
	<-k.done
	defer close(k.events)
	m := k.current()
	if m.ID == "" {
		return nil
	}
	if _, err := k.p.Close(ctx, m.ID); err != nil {
		return err
	}
	k.emit(EventDeleted, m, "")
	return nil
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
