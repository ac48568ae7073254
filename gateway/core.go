package gateway

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sort"
	"sync"
	"time"
)

const (
	// maxTimerSleep caps how long the expiry timer sleeps. Timers run on
	// the monotonic clock but leases end at wall-clock times (they must,
	// to survive a restart); on a router without a real-time clock the
	// wall clock jumps when NTP first syncs, and the cap bounds how late
	// expiry notices.
	maxTimerSleep = time.Minute
	// expiryRetry is how long expiry waits before retrying after the
	// backend failed to remove a rule, so that a broken backend is not
	// hammered in a loop.
	expiryRetry = 30 * time.Second
	// backgroundTimeout bounds backend calls that no caller's context
	// covers: expiry, and undoing a change after a failure.
	backgroundTimeout = 10 * time.Second
	// maxDeleteRounds bounds how often a bulk delete goes back for keys
	// that were busy with another operation on its first pass.
	maxDeleteRounds = 8
	// maxProbes bounds the ports one AddAny asks Config.PortInUse about:
	// a run of ports the router serves itself is skipped, but a request
	// never holds the table for long.
	maxProbes = 256
	// deleteChunk bounds the mappings a bulk delete takes from the table
	// at a time, so that the table lock and the keys it marks busy are
	// released between chunks: other clients are served while a host
	// deletes thousands of mappings.
	deleteChunk = 512
	// expiryChunk bounds the mappings expiry takes from the table at a
	// time, for the same reason.
	expiryChunk = 512
	// restoreBatch bounds the rules given to a BatchAdder at a time when
	// the restored leases are re-applied at start.
	restoreBatch = 512
)

// Config configures a Core.
type Config struct {
	// Backend applies mappings to the data plane. Required.
	Backend Backend
	// Store persists leases across restarts; nil keeps them in memory only.
	Store Store
	// Clock is the time source; nil means SystemClock.
	Clock Clock
	// Policy decides what clients may map.
	Policy Policy
	// ExternalAddr reports the gateway's current external address, for
	// the adapters (Core.ExternalAddr). May be nil.
	ExternalAddr func() netip.Addr
	// Logger receives operational logs; nil discards them.
	Logger *slog.Logger
	// PortInUse, if set, reports whether the router itself serves port of
	// protocol p on its external side (a socket listening on the external
	// address or on every address). A new mapping never takes such a port,
	// or a client could take over the router's own service (its SSH or web
	// port) from the Internet: Add fails with ErrReservedPort (UPnP 729
	// ConflictWithOtherMechanisms, as miniupnpd answers) and AddAny moves
	// on to another port. It is asked for each port about to be given to a
	// new mapping, under the table lock, so it must be quick (a bind probe
	// is a few microseconds); ports of the table are never asked about.
	PortInUse func(p Protocol, port uint16) bool
	// Audit, if set, is told of every change to the table (added,
	// renewed, changed, deleted, expired) and, at start, of every saved
	// lease dropped or parked, synchronously, after the change is made.
	// Refusals are not the Core's to record: the protocol adapters know
	// what the client was answered. It must not call the Core.
	Audit func(AuditRecord)
	// Upstream, if set, chains mappings to the router above (double NAT,
	// see Upstream): each mapping it agrees to chain is made there too
	// before it is granted here, and removed there when it ends here.
	Upstream Upstream
	// SameHost, if set, reports whether two IPv6 addresses belong to the
	// same LAN host (the daemon asks the kernel's neighbour table: the
	// same link-layer address on the same internal interface). Secure
	// mode lets a client open pinholes to any address of its own host, so
	// that a host with stable, temporary and unique-local addresses works
	// whichever one it sends from. Nil: only the requester's own address.
	SameHost func(requester, target netip.Addr) bool
	// SameHostNow is SameHost from what is known at once, never waiting
	// (no neighbour discovery): ownership checks use it, so that a client
	// naming another host's pinhole cannot make every pinhole change wait.
	// Nil: SameHost.
	SameHostNow func(requester, target netip.Addr) bool
	// HostAddrs, if set, returns the other addresses of a's LAN host known
	// at once (the daemon reads the neighbour table once: the addresses
	// with a's link-layer address on a's internal interface), for the
	// per-host pinhole quota. Nil: SameHostNow is asked for each owner.
	HostAddrs func(a netip.Addr) []netip.Addr
	// OwnAddr, if set, reports whether a is one of the gateway's own
	// addresses, to which no pinhole may be opened.
	OwnAddr func(a netip.Addr) bool
	// ExternalPool, for a carrier-grade gateway, lists the IPv4 external
	// addresses PCP mappings are spread over, so that the table holds far
	// more than the 129,024 mappings one address has ports for. Each
	// subscriber (the requester's address) is paired with one address of
	// the pool (RFC 4787 REQ-2, RFC 7857 "paired" pooling), which all its
	// PCP mappings use: see PoolAddr. The gateway's own external address
	// may be one of them; mappings there are keyed with the zero Addr, as
	// every mapping is without a pool, so they share its ports with
	// NAT-PMP and UPnP, which keep using that address only. Empty: no
	// pool, and no mapping has an ExternalAddr. The backend must be a
	// PoolBackend that supports it.
	ExternalPool []netip.Addr
	// ApplyInBackground makes New return, and the Core serve, as soon as
	// the saved leases are back in the table, and re-apply them to the
	// backend afterwards, restoreBatch at a time, while requests are
	// served: a restart with a million leases serves in seconds instead
	// of waiting for the data plane (the nft backend takes several
	// seconds for a million elements). The table stays authoritative: a
	// request for a lease not yet re-applied changes it as it would any
	// other (the Backend contract makes adding an installed rule and
	// deleting a missing one harmless), and the re-application holds each
	// batch's keys busy, as any operation does, so that it never re-adds
	// what a request has just removed. Until it is done, restored leases
	// may be listed before they forward. Core.Applied reports when it is
	// done; Parked is final from then.
	ApplyInBackground bool
}

// Core is the mapping table with its policy, lease expiry, persistence and
// backend, shared by every protocol adapter. Adapters never call the
// Backend or Store themselves: every change goes through the Core, which
// checks it, applies it to the backend, records it in the store and only
// then makes it visible.
//
// Concurrency: one mutex guards the table. Backend and store calls happen
// outside it, so a slow backend does not stall readers; operations on the
// same key are serialized by marking the key busy for the duration, and
// other operations on that key wait. A change becomes visible in the table
// only after the backend and store accepted it; on failure the table is
// left as it was.
type Core struct {
	backend Backend
	store   Store
	clock   Clock
	pol     *compiledPolicy
	extAddr func() netip.Addr
	log     *slog.Logger
	events  *dispatcher
	auditf  func(AuditRecord)
	// inUse is Config.PortInUse.
	inUse func(Protocol, uint16) bool
	// parked are saved leases the backend refused at start.
	parked []Mapping
	// up is Config.Upstream; orphans are the uncommitted upstream intents
	// found at start (UpstreamOrphans).
	up      Upstream
	orphans []UpstreamDelete
	// upDels holds the IDs of journaled pending upstream deletes;
	// upDelNext is the last one given.
	upDels    map[uint32]bool
	upDelNext uint32
	// pins is the IPv6 pinhole table (pinhole.go).
	pins        *pinTable
	sameHost    func(requester, target netip.Addr) bool
	sameHostNow func(requester, target netip.Addr) bool
	hostAddrs   func(a netip.Addr) []netip.Addr
	ownAddr     func(netip.Addr) bool
	// pool is Config.ExternalPool, and poolSet the same as a set.
	pool    []netip.Addr
	poolSet map[netip.Addr]bool
	// applied is closed once the restored leases are in the backend
	// (Applied). With background (Config.ApplyInBackground), New leaves
	// reapplyWork to runReapply.
	applied     chan struct{}
	background  bool
	reapplyWork *restoreWork

	mu         sync.Mutex
	tab        *table
	busy       map[uint64]*inflight
	pendingNew int                // busy operations that will add an entry
	pendingBy  map[netip.Addr]int // the same, per owner, for quotas
	timer      Timer
	timerAt    int64 // deadline the timer is armed for (Unix ns); 0 when not armed
	retryAfter time.Time
	expiring   bool // expire is running
	closed     bool
}

// inflight marks a key as busy with an operation, and holds what that
// operation has reserved against the cap and quotas until it ends.
type inflight struct {
	done chan struct{}
	// internal is where an add's mapping forwards to (the zero AddrPort
	// for other operations): AddAny for another internal endpoint need
	// not wait for it (claimAnyLocked).
	internal netip.AddrPort
	newSlot  bool       // counts toward MaxMappings
	quota    bool       // counts toward owner's MaxPerClient
	owner    netip.Addr // valid when quota is set
	finished bool
}

// New builds a Core and restores the leases in cfg.Store.
//
// Restoring drops leases that have expired and re-checks every other one
// against the current policy, dropping those it now denies (a rule was
// tightened, a port reserved or taken by one of the router's own
// services, a quota lowered; oldest leases are kept first) and clamping
// lease times to the current MaxLease.
//
// The backend is then made to hold exactly the restored mappings, so
// that the data plane matches the table whatever happened before (a crash
// between a backend call and a store write, or a previous run's rules
// left installed by Close without flush). It is never flushed first: a
// backend that can list its rules (RuleLister) is reconciled, adding and
// replacing what differs and only then removing what is left over, so
// that forwarding carries on across the restart; another backend is
// flushed, which costs nothing (the relay starts empty in every process).
// A mapping the backend refuses is parked: it stays in the store, for
// the next start, but not in the table, with a warning, and the others
// are served (see Parked).
func New(ctx context.Context, cfg Config) (*Core, error) {
	if cfg.Backend == nil {
		return nil, errors.New("gateway: Config.Backend is nil; pass a backend (nft, relay, or NewMemory for tests)")
	}
	pol, err := compilePolicy(cfg.Policy)
	if err != nil {
		return nil, fmt.Errorf("gateway: invalid policy: %w", err)
	}
	c := &Core{
		backend:     cfg.Backend,
		store:       cfg.Store,
		clock:       cfg.Clock,
		pol:         pol,
		extAddr:     cfg.ExternalAddr,
		log:         cfg.Logger,
		tab:         newTable(),
		busy:        make(map[uint64]*inflight),
		pendingBy:   make(map[netip.Addr]int),
		auditf:      cfg.Audit,
		inUse:       cfg.PortInUse,
		up:          cfg.Upstream,
		pins:        newPinTable(),
		sameHost:    cfg.SameHost,
		sameHostNow: cfg.SameHostNow,
		hostAddrs:   cfg.HostAddrs,
		ownAddr:     cfg.OwnAddr,
		applied:     make(chan struct{}),
		background:  cfg.ApplyInBackground,
	}
	if c.clock == nil {
		c.clock = SystemClock{}
	}
	if c.sameHostNow == nil {
		c.sameHostNow = c.sameHost
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if err := c.setPool(cfg.ExternalPool); err != nil {
		return nil, err
	}
	if err := c.restore(ctx); err != nil {
		return nil, err
	}
	if err := c.restorePins(ctx); err != nil {
		return nil, err
	}
	c.events = newDispatcher(maxQueuedEvents)
	c.mu.Lock()
	c.rearmLocked()
	c.mu.Unlock()
	if w := c.reapplyWork; w != nil {
		c.reapplyWork = nil
		go c.runReapply(w)
	} else {
		close(c.applied)
	}
	return c, nil
}

func (c *Core) restore(ctx context.Context) error {
	// A store that hands its leases over one at a time (EachLoader) puts
	// them straight into the table, unsorted. That is right as long as no
	// quota or cap has to choose among them; the first lease one refuses
	// sends the restore back to the start, the whole list, oldest first.
	if el, ok := c.store.(EachLoader); ok {
		done, err := c.restoreLeases(ctx, el)
		if done || err != nil {
			return err
		}
	}
	_, err := c.restoreLeases(ctx, nil)
	return err
}

// restoreLeases restores the saved leases: from el, one at a time, or,
// with a nil el, sorted oldest first from Store.Load. With el it gives up
// (done false, the table as it was) at the first lease that a quota or
// the table cap refuses.
func (c *Core) restoreLeases(ctx context.Context, el EachLoader) (done bool, err error) {
	var saved []Mapping
	if c.store != nil && el == nil {
		var err error
		if saved, err = c.store.Load(); err != nil {
			return false, fmt.Errorf("gateway: loading saved leases: %w", err)
		}
	}
	for i := range saved {
		saved[i] = saved[i].normalize()
	}
	// Oldest first, so that when a lowered quota or cap cannot keep them
	// all, the mappings that have been working longest survive.
	sort.Slice(saved, func(i, j int) bool { // keys are unique: no need for a stable sort
		a, b := saved[i], saved[j]
		return cmp.Or(a.Created.Compare(b.Created), cmp.Compare(a.Key().pack(), b.Key().pack())) < 0
	})

	c.tab.grow(len(saved))
	if el != nil {
		c.tab.grow(el.Leases())
	}
	now := c.now()
	restoring := Requester{Source: SourceAdmin}
	var drop []Key
	var rewrite []Mapping
	var dropped []AuditRecord // recorded once the restore is done
	// orphans are the halves of saved leases that the router above may
	// hold and that no restored mapping will forward to: deleted there.
	var orphans []Mapping
	orphan := func(m Mapping) {
		if h := m.Half(); m.Chained() && (h.State != HalfActive || h.Expires.IsZero() || h.Expires.After(now)) {
			orphans = append(orphans, m)
		}
	}
	expired, denied, loaded := 0, 0, len(saved)
	full := false
	restoreOne := func(m Mapping) {
		if full {
			return
		}
		switch m.Half().State {
		case HalfPendingNew:
			// An intent never committed: the client was never answered.
			// The half may exist upstream; the Upstream deletes it.
			orphan(m)
			drop = append(drop, m.Key())
			return
		case HalfPendingChain:
			orphan(m)
			m.Upstream = nil
			rewrite = append(rewrite, m)
		}
		if !m.Permanent() && !m.Expires.After(now) {
			// Its half may outlive it upstream (a half is asked for at
			// least two minutes).
			orphan(m)
			drop = append(drop, m.Key())
			expired++
			return
		}
		req := Requester{Addr: m.Owner, Source: m.Source}
		orig := m.Expires
		err := c.admit(req, &m, now, false)
		if err == nil {
			err = c.checkPort(req, &m, m.ExternalPort, true)
		}
		if err == nil && c.tab.lookup(m.Key().pack()) != nil {
			err = fmt.Errorf("%w: duplicate saved lease for %s", ErrConflict, m.Key())
		}
		if err == nil {
			err = c.checkRoomLocked(req, m.Owner, true)
			if err != nil && el != nil {
				full = true // a choice to make: start again, oldest first
				return
			}
		}
		if err != nil {
			c.log.Warn("dropping saved lease the current policy denies", "mapping", m, "err", err)
			orphan(m)
			drop = append(drop, m.Key())
			denied++
			r := NewAuditRecord(now, AuditDropped, restoring, m)
			r.Result, r.Reason = "not restored", err.Error()
			dropped = append(dropped, r)
			return
		}
		if !orig.IsZero() && m.Expires.After(orig) {
			m.Expires = orig // MinLease applies to requests; a restore never extends a lease
		}
		if !m.Expires.Equal(orig) {
			rewrite = append(rewrite, m)
		}
		c.tab.insertNew(m) // not there: checked above
	}
	if el != nil {
		if err := el.LoadEach(func(m Mapping) { loaded++; restoreOne(m.normalize()) }); err != nil {
			return false, fmt.Errorf("gateway: loading saved leases: %w", err)
		}
		if full {
			c.tab = c.emptyTable()
			return false, nil
		}
	}
	for _, m := range saved {
		restoreOne(m)
	}
	saved = nil
	for _, r := range dropped {
		c.audit(r)
	}

	work, err := c.listRestored(ctx)
	if err != nil {
		return false, err
	}
	parked := 0
	if c.background {
		c.reapplyWork = work // New starts it once the Core serves
	} else if parked, err = c.reapply(ctx, work); err != nil {
		return false, err
	}
	// The halves to delete are journaled before their leases are
	// forgotten: a crash in between leaves both, and two deletes.
	if err := c.restoreUpstreamDeletes(orphans); err != nil {
		return false, err
	}
	if c.store != nil && (len(drop) > 0 || len(rewrite) > 0) {
		// Parked leases are left in the store as they were.
		var keep []Mapping
		for _, m := range rewrite {
			if c.tab.lookup(m.Key().pack()) != nil {
				keep = append(keep, m)
			}
		}
		if err := c.store.Save(keep, drop); err != nil {
			return false, fmt.Errorf("gateway: recording restored leases: %w: %w", ErrStore, err)
		}
	}
	if loaded > 0 && c.background {
		c.log.Info("restored leases; re-applying them to the backend while serving", "restored", c.tab.len(), "expired", expired, "denied", denied,
			"to_apply", c.tab.unapplied, "backend", c.backend.Name())
	} else if loaded > 0 {
		c.log.Info("restored leases", "restored", c.tab.len(), "expired", expired, "denied", denied,
			"parked", parked, "backend", c.backend.Name())
	}
	return true, nil
}

// RuleLister is implemented by backends that can report the rules they
// hold, including those an earlier run left installed. New reconciles
// such a backend with the restored table instead of flushing it.
type RuleLister interface {
	InstalledRules(ctx context.Context) ([]Rule, error)
}

// restoreWork is what re-applying the restored table to the backend
// takes besides the table's entries marked unapplied: the rules
// installed before the restart that no lease has now.
type restoreWork struct {
	stray []Rule
}

// listRestored finds what the backend must be told so that it holds
// exactly the table's enabled mappings (see New), and marks those entries
// unapplied: a backend that can list its rules (RuleLister) is compared
// with the table, another one is flushed.
func (c *Core) listRestored(ctx context.Context) (*restoreWork, error) {
	installed := map[uint64]Rule{}
	lister, canList := c.backend.(RuleLister)
	if canList {
		rules, err := lister.InstalledRules(ctx)
		if err != nil {
			return nil, fmt.Errorf("gateway: reading the rules installed before the restart: %w",
				&BackendError{Backend: c.backend.Name(), Op: "list", Err: err})
		}
		for _, r := range rules {
			installed[r.Key().pack()] = r
		}
	} else if err := c.backend.Flush(ctx); err != nil {
		return nil, fmt.Errorf("gateway: clearing rules left from an earlier run: %w",
			&BackendError{Backend: c.backend.Name(), Op: "flush", Err: err})
	}
	w := &restoreWork{}
	for i := 0; i < c.tab.len(); i++ {
		e := c.tab.at(i)
		if !e.m.Enabled {
			continue
		}
		if len(installed) > 0 {
			k := e.m.Key().pack()
			r, ok := installed[k]
			delete(installed, k) // identical, or Add replaces it
			if ok && r == e.m.Rule() {
				continue // forwarding already, untouched across the restart
			}
		}
		e.unapplied = true
		c.tab.unapplied++
	}
	// What is left was installed before the restart and is no lease now
	// (expired, denied or never recorded): it must not forward.
	for _, r := range installed {
		w.stray = append(w.stray, r)
	}
	return w, nil
}

// reapply makes the backend hold the table's entries marked unapplied,
// restoreBatch at a time, parking those it refuses, then removes w's
// stray rules, and returns how many it parked. It walks the table by
// slot, again from the start while entries are left (a removal moves the
// last entry into the hole). Each batch's keys are held busy while the
// backend works, as any operation holds its key, so that it runs as well
// before the Core serves as while it serves (Config.ApplyInBackground): a
// request waits for the batch that holds its key, a key busy with a
// request is left for a later pass, and an entry a request changed is
// applied as the request left it.
func (c *Core) reapply(ctx context.Context, w *restoreWork) (int, error) {
	parked := 0
	next := 0 // the slot the walk goes on from
	for {
		p, more, err := c.reapplyBatch(ctx, &next)
		parked += p
		if err != nil {
			return parked, err
		}
		if !more {
			break
		}
	}
	for rules := w.stray; len(rules) > 0; {
		n := min(len(rules), restoreBatch)
		if err := c.removeStray(ctx, rules[:n]); err != nil {
			return parked, err
		}
		rules = rules[n:]
	}
	return parked, nil
}

// reapplyBatch re-applies up to restoreBatch unapplied entries from slot
// *next on, and parks those the backend refuses. It reports whether
// entries are left.
func (c *Core) reapplyBatch(ctx context.Context, next *int) (parked int, more bool, err error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return 0, false, ErrClosed
	}
	if c.tab.unapplied == 0 {
		c.mu.Unlock()
		return 0, false, nil
	}
	// One operation holds the whole batch.
	op := &inflight{done: make(chan struct{})}
	ms := make([]Mapping, 0, restoreBatch)
	var busyKey uint64
	busySeen := false
	for scanned := 0; len(ms) < restoreBatch && scanned < c.tab.len(); scanned++ {
		if *next >= c.tab.len() {
			*next = 0
		}
		e := c.tab.at(*next)
		*next++
		if !e.unapplied {
			continue
		}
		k := e.m.Key().pack()
		if c.isBusyLocked(k) {
			busyKey, busySeen = k, true
			continue // a later pass takes it, as the request leaves it
		}
		e.unapplied = false
		c.tab.unapplied--
		if !e.m.Enabled {
			continue // disabled by a request, which told the backend
		}
		ms = append(ms, e.m)
		c.busy[k] = op
	}
	switch {
	case len(ms) == 0 && busySeen:
		// Only keys busy with requests are left: wait for one.
		err := c.waitIdleLocked(ctx, busyKey)
		c.mu.Unlock()
		return 0, true, err
	case len(ms) == 0 && c.tab.unapplied > 0:
		// A whole pass found none left (ms never filled): the count is
		// wrong. Never spin on it.
		c.log.Error("restored leases counted as not applied are not in the table", "count", c.tab.unapplied)
		c.tab.unapplied = 0
	}
	c.mu.Unlock()

	park, err := c.addRestored(ctx, ms)

	c.mu.Lock()
	for _, m := range park {
		c.tab.remove(m.Key().pack())
	}
	c.parked = append(c.parked, park...)
	for _, m := range ms {
		delete(c.busy, m.Key().pack())
	}
	op.finished = true
	close(op.done)
	if c.events != nil { // serving: the batch may have held the earliest lease
		c.rearmLocked()
	}
	more = c.tab.unapplied > 0
	c.mu.Unlock()
	for _, m := range park {
		r := NewAuditRecord(c.now(), AuditParked, Requester{Source: SourceAdmin}, m)
		r.Result, r.Reason = "not restored", "the "+c.backend.Name()+" backend refused it at start"
		c.audit(r)
	}
	return len(park), more, err
}

// addRestored installs the rules of ms, in one BatchAdder call when the
// backend has it, and returns the mappings the backend refuses.
func (c *Core) addRestored(ctx context.Context, ms []Mapping) (park []Mapping, err error) {
	if len(ms) == 0 {
		return nil, nil
	}
	if batcher, ok := c.backend.(BatchAdder); ok {
		rules := make([]Rule, len(ms))
		for i := range ms {
			rules[i] = ms[i].Rule()
		}
		if batcher.AddBatch(ctx, rules) == nil {
			return nil, nil
		}
		// Learn which ones it refuses.
	}
	for _, m := range ms {
		if err := c.backend.Add(ctx, m.Rule()); err != nil {
			if ctx.Err() != nil {
				return park, fmt.Errorf("gateway: re-applying saved leases: %w", ctx.Err())
			}
			berr := &BackendError{Backend: c.backend.Name(), Op: "add", Rule: m.Rule(), Err: err}
			c.log.Warn("the backend refused a saved lease; it is parked (kept in the state directory for the next start, not served now)",
				"mapping", m, "err", berr)
			park = append(park, m)
		}
	}
	return park, nil
}

// removeStray deletes rules installed before the restart that no lease
// holds, except where a request has made a mapping since (its Add
// replaced the rule).
func (c *Core) removeStray(ctx context.Context, rules []Rule) error {
	c.mu.Lock()
	var ops []*inflight
	var del []Rule
	for _, r := range rules {
		k := r.Key().pack()
		if err := c.waitIdleLocked(ctx, k); err != nil {
			c.mu.Unlock()
			return err
		}
		if c.tab.lookup(k) != nil {
			continue
		}
		del = append(del, r)
		ops = append(ops, c.markBusyLocked(Requester{Source: SourceAdmin}, k, netip.Addr{}, false, false))
	}
	c.mu.Unlock()
	var err error
	for _, r := range del {
		if derr := c.backend.Delete(ctx, r); derr != nil {
			err = fmt.Errorf("gateway: removing a rule left from an earlier run: %w",
				&BackendError{Backend: c.backend.Name(), Op: "delete", Rule: r, Err: derr})
			break
		}
	}
	c.mu.Lock()
	for i, r := range del {
		c.releaseLocked(r.Key().pack(), ops[i])
	}
	c.mu.Unlock()
	return err
}

// runReapply is reapply after New has returned (Config.ApplyInBackground).
// A backend that fails is logged, not fatal: the leases it did not take
// stay in the table, forwarding nothing, until a request or the next
// start applies them.
func (c *Core) runReapply(w *restoreWork) {
	defer close(c.applied)
	start := time.Now()
	parked, err := c.reapply(context.Background(), w)
	switch {
	case errors.Is(err, ErrClosed):
		c.log.Info("stopped re-applying restored leases: the gateway is closing")
	case err != nil:
		c.log.Error("could not re-apply every restored lease to the backend; those left forward nothing until they are renewed or the gateway restarts",
			"backend", c.backend.Name(), "err", err)
	default:
		c.log.Info("restored leases are in the backend", "parked", parked,
			"strays_removed", len(w.stray), "took", time.Since(start).Round(time.Millisecond), "backend", c.backend.Name())
	}
}

// Applied returns a channel that is closed once the restored leases are
// in the backend: at once, unless Config.ApplyInBackground had New return
// before that.
func (c *Core) Applied() <-chan struct{} { return c.applied }

// Parked returns the saved leases that the backend refused at start: they
// are kept in the store, to be tried again at the next start, but they
// are not in the table and forward nothing.
func (c *Core) Parked() []Mapping {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.parked)
}

// now returns the current time without a monotonic reading; see
// Mapping.normalize.
func (c *Core) now() time.Time { return c.clock.Now().Round(0) }

// Now returns the Core's current time. Adapters compute Mapping.Expires
// from it (Now().Add(lease)) so that fake clocks in tests stay coherent.
func (c *Core) Now() time.Time { return c.now() }

// ExternalAddr returns the gateway's external address as reported by
// Config.ExternalAddr, or the zero Addr when it is unknown.
func (c *Core) ExternalAddr() netip.Addr {
	if c.extAddr == nil {
		return netip.Addr{}
	}
	return c.extAddr()
}

// Policy returns the policy the Core enforces.
func (c *Core) Policy() Policy {
	p := c.pol.Policy
	p.Rules = slices.Clone(p.Rules)
	p.Reserved = slices.Clone(p.Reserved)
	return p
}

// BackendName returns the backend's name, for status pages.
func (c *Core) BackendName() string { return c.backend.Name() }

// MayDisableExternal reports whether req may take the external connection
// down (UPnP ForceTermination and friends); see Policy.AllowDisableExternal.
func (c *Core) MayDisableExternal(req Requester) error {
	if req.admin() || c.pol.AllowDisableExternal {
		return nil
	}
	return fmt.Errorf("%w: clients may not disable the external connection (AllowDisableExternal is off)", ErrNotAuthorized)
}

// Add creates or updates the mapping for m's protocol and external port,
// with UPnP AddPortMapping semantics: if the port is free the mapping is
// created; if the same client already holds it (same internal address,
// and in secure mode the same owner), the mapping is updated in place,
// which is also how a lease is refreshed; if another client holds it, Add
// fails with a *ConflictError.
//
// The Core fills in Owner, Source and Created; Expires is clamped by the
// policy, and the returned Mapping is what was stored. If the backend or
// store fails, the table is unchanged.
func (c *Core) Add(ctx context.Context, req Requester, m Mapping) (Mapping, error) {
	return c.add(ctx, req, m, false)
}

// AddAny is Add with a free external port chosen by the gateway, for UPnP
// AddAnyPortMapping and the NAT-PMP and PCP "suggested port". The search
// starts at m.ExternalPort (or m.InternalPort when that is 0) and moves
// upward, wrapping around; a search that starts at an unprivileged port
// never wraps into 1-1023, since an application asking for a high port
// should not be handed a well-known one. Ports that are reserved, denied
// by the permission rules, or held by anyone are skipped, except that the
// requested port itself is reused when it is this client's mapping of the
// same internal port (a refresh). When no port qualifies the error is
// ErrNotAuthorized if the rules allow none at all, ErrNoPortsAvailable
// otherwise.
func (c *Core) AddAny(ctx context.Context, req Requester, m Mapping) (Mapping, error) {
	return c.add(ctx, req, m, true)
}

func (c *Core) add(ctx context.Context, req Requester, m Mapping, anyPort bool) (Mapping, error) {
	if err := ctx.Err(); err != nil {
		return Mapping{}, err
	}
	req = req.normalize()
	m = m.normalize()
	now := c.now()
	m.Owner, m.Source, m.Created = req.Addr, req.Source, now
	if m.ExternalAddr.IsValid() && m.ExternalAddr == c.ExternalAddr() {
		m.ExternalAddr = netip.Addr{} // the gateway's own address, shared with NAT-PMP and UPnP
	}
	if err := c.admit(req, &m, now, anyPort); err != nil {
		c.log.Debug("port mapping refused", "mapping", m, "err", err)
		return Mapping{}, err
	}
	var (
		op      *inflight
		prev    Mapping
		hadPrev bool
		err     error
	)
	// A UPnP client names its mapping by the port it was given, so its
	// chained mapping needs the same port here and upstream: an AddAny
	// moves on to the next port the router above holds too.
	exact := !anyPort || req.Source == SourceUPnP
	tries := 1
	if anyPort && exact && c.up != nil {
		tries = maxUPnPAnyTries
	}
	for try := 0; ; try++ {
		c.mu.Lock()
		if anyPort {
			op, prev, hadPrev, err = c.claimAnyLocked(ctx, req, &m)
		} else {
			op, prev, hadPrev, err = c.claimLocked(ctx, req, &m)
		}
		if op != nil {
			op.internal = netip.AddrPortFrom(m.InternalAddr, m.InternalPort)
		}
		c.mu.Unlock()
		if err != nil {
			c.log.Debug("port mapping refused", "mapping", m, "err", err)
			return Mapping{}, err
		}
		if c.up != nil {
			resume := pauseGroup(ctx) // the router above may take its time
			err = c.chain(ctx, &m, prev, hadPrev, exact)
			resume()
		} else {
			err = c.chain(ctx, &m, prev, hadPrev, exact)
		}
		if err == nil || !errors.Is(err, ErrUpstreamConflict) || try+1 >= tries || hadPrev || m.ExternalPort == 65535 {
			break
		}
		c.mu.Lock()
		c.releaseLocked(m.Key().pack(), op)
		c.mu.Unlock()
		m.ExternalPort++
	}
	if err == nil {
		err = c.apply(ctx, prev, hadPrev, m)
		if err != nil && m.Chained() && m.Upstream != prev.Upstream {
			uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), backgroundTimeout)
			c.up.Unmap(uctx, m)
			cancel()
			c.dropIntent(m.Key(), prev, hadPrev)
		}
	}
	if err == nil && hadPrev && prev.Chained() && !m.Chained() {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), backgroundTimeout)
		c.up.Unmap(uctx, prev) // disabled, or no longer chained
		cancel()
	}

	c.mu.Lock()
	k := m.Key().pack()
	if err == nil {
		c.tab.put(m)
		kind := EventAdded
		if hadPrev {
			kind = EventUpdated
		}
		c.events.publish(Event{Kind: kind, Mapping: m, Count: c.tab.ownLen()})
	}
	c.releaseLocked(k, op)
	c.rearmLocked()
	c.mu.Unlock()

	if err != nil {
		c.log.Warn("port mapping not added", "mapping", m, "err", err)
		return Mapping{}, err
	}
	// The log calls are guarded: their arguments (the mapping boxed, the
	// lease) cost allocations on every request even when the level is off.
	switch {
	case !hadPrev:
		if c.log.Enabled(ctx, slog.LevelInfo) {
			c.log.Info("port mapping added", "mapping", m, "lease_s", m.LeaseSeconds(now))
		}
		c.audit(NewAuditRecord(now, AuditAdded, req, m))
	case prev.Rule() != m.Rule() || prev.Enabled != m.Enabled:
		if c.log.Enabled(ctx, slog.LevelInfo) {
			c.log.Info("port mapping changed", "mapping", m, "was", prev)
		}
		r := NewAuditRecord(now, AuditChanged, req, m)
		r.Reason = "was " + prev.String()
		c.audit(r)
	default:
		if c.log.Enabled(ctx, slog.LevelDebug) {
			c.log.Debug("port mapping refreshed", "mapping", m, "lease_s", m.LeaseSeconds(now))
		}
		c.audit(NewAuditRecord(now, AuditRenewed, req, m))
	}
	return m, nil
}

// admit checks everything about a request that does not depend on the
// external port or on the table, and clamps its lease.
func (c *Core) admit(req Requester, m *Mapping, now time.Time, anyPort bool) error {
	if m.Protocol != TCP && m.Protocol != UDP {
		return fmt.Errorf("%w: protocol %v is not supported; use TCP or UDP", ErrInvalidArgs, m.Protocol)
	}
	a := m.InternalAddr
	if !a.IsValid() || a.IsUnspecified() || a.IsMulticast() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
		return fmt.Errorf("%w: internal client %v is not a unicast address; give the address of the host to forward to", ErrInvalidArgs, a)
	}
	if m.InternalPort == 0 {
		return fmt.Errorf("%w: give the internal port to forward to", ErrWildcardInternalPort)
	}
	if m.ExternalPort == 0 && !anyPort {
		return fmt.Errorf("%w: give an external port, or use AddAnyPortMapping to let the gateway pick one", ErrWildcardExternalPort)
	}
	if m.RemoteHost.IsValid() && m.RemoteHost.Is4() != a.Is4() {
		return fmt.Errorf("%w: remote host %v and internal client %v are not of the same address family; a mapping forwards one family", ErrInvalidArgs, m.RemoteHost, a)
	}
	if m.RemoteHost.IsValid() && c.pol.WildcardRemoteHostOnly {
		return fmt.Errorf("%w: this gateway cannot restrict a mapping to remote host %v; leave the remote host empty", ErrRemoteHostNotSupported, m.RemoteHost)
	}
	if a := m.ExternalAddr; a.IsValid() && !c.poolSet[a] {
		return fmt.Errorf("%w: external address %v is not in the gateway's external address pool", ErrInvalidArgs, a)
	}
	if m.ExternalAddr.IsValid() && m.RemoteHost.IsValid() {
		return fmt.Errorf("%w: a mapping on external pool address %v cannot be restricted to remote host %v; leave the remote host empty", ErrRemoteHostNotSupported, m.ExternalAddr, m.RemoteHost)
	}
	exp, err := c.pol.clampLease(now, m.Expires)
	if err != nil {
		return err
	}
	m.Expires = exp
	if req.admin() {
		return nil
	}
	if !req.Addr.IsValid() {
		return fmt.Errorf("%w: the request has no source address", ErrNotAuthorized)
	}
	if !c.pol.InsecureMode && a != req.Addr {
		return fmt.Errorf("%w: secure mode: %v may map ports only to itself, not to %v", ErrNotAuthorized, req.Addr, a)
	}
	if a.IsLoopback() && !req.Addr.IsLoopback() {
		return fmt.Errorf("%w: only the gateway itself may map ports to its loopback address %v", ErrNotAuthorized, a)
	}
	return nil
}

// checkPort checks what depends on the external port: reserved ports, the
// router's own services (with probe, for a port about to be given to a new
// mapping) and the permission rules.
func (c *Core) checkPort(req Requester, m *Mapping, port uint16, probe bool) error {
	if c.pol.isReserved(m.Protocol, port) {
		return fmt.Errorf("%w: %s port %d is used by the gateway itself; choose another external port", ErrReservedPort, m.Protocol, port)
	}
	if probe && c.routerServes(m.Protocol, port) {
		return fmt.Errorf("%w: the router itself serves %s port %d on its external side; choose another external port", ErrReservedPort, m.Protocol, port)
	}
	if !req.admin() && !c.pol.Permit(port, m.InternalAddr, m.InternalPort) {
		return fmt.Errorf("%w: no permission rule allows mapping %s port %d to %v", ErrNotAuthorized,
			m.Protocol, port, netip.AddrPortFrom(m.InternalAddr, m.InternalPort))
	}
	return nil
}

// routerServes asks Config.PortInUse.
func (c *Core) routerServes(p Protocol, port uint16) bool {
	return c.inUse != nil && c.inUse(p, port)
}

// checkRoomLocked checks the table cap (for a new entry) and owner's quota.
func (c *Core) checkRoomLocked(req Requester, owner netip.Addr, newSlot bool) error {
	if newSlot && c.pol.MaxMappings > 0 && c.tab.len()+c.pendingNew >= c.pol.MaxMappings {
		return fmt.Errorf("%w: the gateway holds its maximum of %d mappings; remove unused ones or raise the limit", ErrTableFull, c.pol.MaxMappings)
	}
	if !req.admin() && c.pol.MaxPerClient > 0 && c.tab.ownerLen(owner)+c.pendingBy[owner] >= c.pol.MaxPerClient {
		return fmt.Errorf("%w: %v already holds %d mappings; remove unused ones or raise the per-client limit", ErrQuota, owner, c.pol.MaxPerClient)
	}
	return nil
}

// sameClient reports whether req asking for want may update held in
// place. The spec's notion is "same internal client"; secure mode also
// requires the same owner, and only the administrator may touch what the
// administrator made. (In secure mode admit already forces
// want.InternalAddr == req.Addr, and every non-admin mapping has Owner ==
// InternalAddr, so the owner check only restates that; it is kept so the
// rule does not silently depend on restore having dropped mappings made
// with secure mode off.)
func (c *Core) sameClient(req Requester, held, want Mapping) bool {
	switch {
	case req.admin():
		return true
	case held.Source == SourceAdmin:
		return false
	case held.InternalAddr != want.InternalAddr:
		return false
	}
	return c.pol.InsecureMode || held.Owner == req.Addr
}

// sameMapping reports whether an exact Add of want may update held, the
// mapping at its external port. UPnP's AddPortMapping updates whatever
// the same client holds there (the spec's overwrite rule). NAT-PMP and PCP
// name a mapping by its internal address, port and protocol (RFC 6886
// §3.3, RFC 6887 §11.1): a request for another internal port is another
// mapping, so it must not take over the port of one the host already
// holds (a PCP MAP with PREFER_FAILURE is then refused, as the port is
// taken), whichever protocol made that one.
func (c *Core) sameMapping(held, want Mapping) bool {
	if want.Source != SourceNATPMP && want.Source != SourcePCP {
		return true
	}
	return held.InternalPort == want.InternalPort
}

// mayModify reports whether req may delete held.
func (c *Core) mayModify(req Requester, held Mapping) bool {
	switch {
	case req.admin():
		return true
	case held.Source == SourceAdmin:
		return false
	case c.pol.InsecureMode:
		return true
	}
	return held.Owner == req.Addr || held.InternalAddr == req.Addr
}

// waitIdleLocked waits until no operation holds k. It is called and
// returns with c.mu held, but releases it while waiting.
func (c *Core) waitIdleLocked(ctx context.Context, k uint64) error {
	for {
		if c.closed {
			return ErrClosed
		}
		op, ok := c.busy[k]
		if !ok {
			return nil
		}
		c.mu.Unlock()
		// Another member of this request's commit group may hold k,
		// waiting for the group: stop counting as running meanwhile.
		resume := pauseGroup(ctx)
		select {
		case <-op.done:
			resume()
			c.mu.Lock()
		case <-ctx.Done():
			resume()
			c.mu.Lock()
			return ctxErr(ctx.Err(), "another operation on "+unpackKey(k).String())
		}
	}
}

func (c *Core) isBusyLocked(k uint64) bool {
	_, ok := c.busy[k]
	return ok
}

// claimLocked checks an Add for m's key against the table and marks the
// key busy.
func (c *Core) claimLocked(ctx context.Context, req Requester, m *Mapping) (*inflight, Mapping, bool, error) {
	k := m.Key().pack()
	if err := c.waitIdleLocked(ctx, k); err != nil {
		return nil, Mapping{}, false, err
	}
	e := c.tab.lookup(k)
	// A port of the table is not probed: the relay backend itself listens
	// on the ports it maps.
	if err := c.checkPort(req, m, m.ExternalPort, e == nil); err != nil {
		return nil, Mapping{}, false, err
	}
	if e != nil {
		if !c.sameClient(req, e.m, *m) || !c.sameMapping(e.m, *m) {
			return nil, Mapping{}, false, &ConflictError{Holder: e.m}
		}
		op, err := c.claimUpdateLocked(req, k, e.m, m)
		return op, e.m, true, err
	}
	if err := c.checkRoomLocked(req, m.Owner, true); err != nil {
		return nil, Mapping{}, false, err
	}
	return c.markBusyLocked(req, k, m.Owner, true, true), Mapping{}, false, nil
}

func (c *Core) claimUpdateLocked(req Requester, k uint64, held Mapping, m *Mapping) (*inflight, error) {
	m.Created = held.Created
	ownerChanges := held.Owner != m.Owner
	if ownerChanges {
		if err := c.checkRoomLocked(req, m.Owner, false); err != nil {
			return nil, err
		}
	}
	return c.markBusyLocked(req, k, m.Owner, false, ownerChanges), nil
}

// claimAnyLocked picks the external port for AddAny and marks it busy.
func (c *Core) claimAnyLocked(ctx context.Context, req Requester, m *Mapping) (*inflight, Mapping, bool, error) {
	start := m.ExternalPort
	if start == 0 {
		start = m.InternalPort
	}
	k := Key{Protocol: m.Protocol, ExternalPort: start, ExternalAddr: m.ExternalAddr}.pack()
	// The start port matters only when it holds, or is about to hold,
	// this client's mapping of the same internal endpoint (a refresh):
	// an add for another endpoint in progress there is skipped like any
	// busy port, without waiting for it. Clients that suggest the same
	// port then do not queue behind each other, and requests read together
	// commit together (group.go).
	own := netip.AddrPortFrom(m.InternalAddr, m.InternalPort)
	held := c.tab.lookup(k)
	heldOwn := held != nil && netip.AddrPortFrom(held.m.InternalAddr, held.m.InternalPort) == own
	if op, busy := c.busy[k]; !busy || !op.internal.IsValid() || op.internal == own || heldOwn {
		if err := c.waitIdleLocked(ctx, k); err != nil {
			return nil, Mapping{}, false, err
		}
	}
	if e := c.tab.lookup(k); e != nil && e.m.InternalAddr == m.InternalAddr && e.m.InternalPort == m.InternalPort &&
		c.sameClient(req, e.m, *m) && c.checkPort(req, m, start, false) == nil {
		m.ExternalPort = start
		op, err := c.claimUpdateLocked(req, k, e.m, m)
		return op, e.m, true, err
	}
	if err := c.checkRoomLocked(req, m.Owner, true); err != nil {
		return nil, Mapping{}, false, err
	}

	filter := c.pol.externalFilter(m.InternalAddr, m.InternalPort)
	low := uint16(1)
	if start >= 1024 {
		low = 1024
	}
	pi := protoIndex(m.Protocol)
	used, reserved := c.tab.usedPorts(m.ExternalAddr, m.Protocol, true), &c.pol.reserved[pi]
	// search returns the first port in [from, to] that is not reserved,
	// permitted, and (with free) not taken, skipping whole words of ports
	// that do not qualify.
	search := func(from, to int, free bool) (uint16, bool) {
		for p := from; p <= to; {
			w := p / 64
			taken := reserved[w]
			if free {
				taken |= used[w]
			}
			if taken == ^uint64(0) {
				p = (w + 1) * 64
				continue
			}
			if taken&(1<<(p%64)) == 0 {
				port := uint16(p)
				if (req.admin() || filter.permit(port)) &&
					(!free || !c.isBusyLocked(Key{Protocol: m.Protocol, ExternalPort: port, ExternalAddr: m.ExternalAddr}.pack())) {
					return port, true
				}
			}
			p++
		}
		return 0, false
	}
	// pick searches [from, to] for a free port the router does not serve
	// itself, probing at most maxProbes candidates.
	probes := 0
	pick := func(from, to int) (uint16, bool) {
		for from <= to && probes < maxProbes {
			port, ok := search(from, to, true)
			if !ok {
				return 0, false
			}
			if !c.routerServes(m.Protocol, port) {
				return port, true
			}
			probes++
			from = int(port) + 1
		}
		return 0, false
	}
	port, found := pick(int(start), 65535)
	if !found && low < start {
		port, found = pick(int(low), int(start)-1)
	}
	if found {
		m.ExternalPort = port
		return c.markBusyLocked(req, m.Key().pack(), m.Owner, true, true), Mapping{}, false, nil
	}
	// Nothing free: say whether it is the rules or the crowd.
	_, permitted := search(int(low), 65535, false)
	switch {
	case !permitted:
		return nil, Mapping{}, false, fmt.Errorf("%w: no permission rule lets %s traffic be forwarded to %v on any free external port",
			ErrNotAuthorized, m.Protocol, netip.AddrPortFrom(m.InternalAddr, m.InternalPort))
	}
	return nil, Mapping{}, false, fmt.Errorf("%w: every %s port this client may use is taken; remove unused mappings", ErrNoPortsAvailable, m.Protocol)
}

func (c *Core) markBusyLocked(req Requester, k uint64, owner netip.Addr, newSlot, quota bool) *inflight {
	op := &inflight{done: make(chan struct{}), newSlot: newSlot}
	if newSlot {
		c.pendingNew++
	}
	if quota && !req.admin() {
		op.quota, op.owner = true, owner
		c.pendingBy[owner]++
	}
	c.busy[k] = op
	return op
}

// releaseLocked ends op on k, returning what it reserved and waking
// operations waiting for k. The caller re-arms the expiry timer.
func (c *Core) releaseLocked(k uint64, op *inflight) {
	if op.finished {
		return
	}
	op.finished = true
	if op.newSlot {
		c.pendingNew--
	}
	if op.quota {
		if c.pendingBy[op.owner]--; c.pendingBy[op.owner] == 0 {
			delete(c.pendingBy, op.owner)
		}
	}
	delete(c.busy, k)
	close(op.done)
}

// apply makes the backend and the store reflect m (replacing prev when
// hadPrev). On failure it undoes what it did, so the caller can leave the
// table unchanged. Under a CommitGroup (group.go) the change is applied
// together with the group's others.
func (c *Core) apply(ctx context.Context, prev Mapping, hadPrev bool, m Mapping) error {
	if g := groupOf(ctx); groupCommit && g != nil {
		return g.submit(c, &groupChange{prev: prev, hadPrev: hadPrev, m: m})
	}
	return c.applyAlone(ctx, prev, hadPrev, m)
}

// applyAlone is apply outside any group.
func (c *Core) applyAlone(ctx context.Context, prev Mapping, hadPrev bool, m Mapping) error {
	added, deleted, err := c.applyBackend(ctx, prev, hadPrev, m)
	if err != nil {
		return err
	}
	if c.store == nil {
		return nil
	}
	if serr := c.store.Save([]Mapping{m}, nil); serr != nil {
		return c.undoBackend(ctx, prev, hadPrev, m, added, deleted, serr)
	}
	return nil
}

// applyBackend is apply's backend part: it reports whether it added m's
// rule or deleted prev's.
func (c *Core) applyBackend(ctx context.Context, prev Mapping, hadPrev bool, m Mapping) (added, deleted bool, err error) {
	oldOn := hadPrev && prev.Enabled
	switch {
	case needsAdd(prev, hadPrev, m):
		if err := c.backend.Add(ctx, m.Rule()); err != nil {
			return false, false, &BackendError{Backend: c.backend.Name(), Op: "add", Rule: m.Rule(), Err: err}
		}
		return true, false, nil
	case !m.Enabled && oldOn:
		if err := c.backend.Delete(ctx, prev.Rule()); err != nil {
			return false, false, &BackendError{Backend: c.backend.Name(), Op: "delete", Rule: prev.Rule(), Err: err}
		}
		return false, true, nil
	}
	return false, false, nil
}

// undoBackend undoes what applyBackend did after the store failed with
// serr, and returns the error the caller reports.
func (c *Core) undoBackend(ctx context.Context, prev Mapping, hadPrev bool, m Mapping, added, deleted bool, serr error) error {
	// Undo the backend change, with a context the caller cannot have
	// cancelled already: leaving it would forward traffic the table does
	// not know about.
	uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), backgroundTimeout)
	defer cancel()
	oldOn := hadPrev && prev.Enabled
	var uerr error
	switch {
	case added && oldOn:
		uerr = c.backend.Add(uctx, prev.Rule())
	case added:
		uerr = c.backend.Delete(uctx, m.Rule())
	case deleted:
		uerr = c.backend.Add(uctx, prev.Rule())
	}
	if uerr != nil {
		c.log.Error("could not undo backend change after store failure; the data plane disagrees with the table until restart",
			"mapping", m, "err", uerr)
	}
	return fmt.Errorf("%w: %w", ErrStore, serr)
}

// Delete removes the mapping for proto and extPort. A valid remoteHost
// must equal the mapping's; the zero Addr matches any. In secure mode a
// client may delete only mappings it owns or that point at itself.
func (c *Core) Delete(ctx context.Context, req Requester, proto Protocol, extPort uint16, remoteHost netip.Addr) error {
	return c.DeleteAt(ctx, req, Key{Protocol: proto, ExternalPort: extPort}, remoteHost)
}

// DeleteAt is Delete for the mapping with key, which names an external
// pool address too (Mapping.Key of a mapping from FindByInternal, say).
func (c *Core) DeleteAt(ctx context.Context, req Requester, key Key, remoteHost netip.Addr) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	req = req.normalize()
	remoteHost = normalizeAddr(remoteHost)
	key.ExternalAddr = normalizeAddr(key.ExternalAddr)
	k := key.pack()

	c.mu.Lock()
	if err := c.waitIdleLocked(ctx, k); err != nil {
		c.mu.Unlock()
		return err
	}
	e := c.tab.lookup(k)
	if e == nil || (remoteHost.IsValid() && remoteHost != e.m.RemoteHost) {
		c.mu.Unlock()
		return fmt.Errorf("%w: nothing is mapped on %s", ErrNoSuchEntry, key)
	}
	m := e.m
	if !c.mayModify(req, m) {
		c.mu.Unlock()
		return fmt.Errorf("%w: %s belongs to %v; a client may delete only its own mappings", ErrNotAuthorized, key, m.Owner)
	}
	op := c.markBusyLocked(req, k, netip.Addr{}, false, false)
	c.mu.Unlock()

	c.unchain(ctx, []Mapping{m})
	var removed bool
	var err error
	if g := groupOf(ctx); groupCommit && g != nil {
		err = g.submit(c, &groupChange{del: true, m: m})
		removed = err == nil
	} else {
		var ok []bool
		ok, err = c.removeBatch(ctx, []Mapping{m}, false)
		removed = ok[0]
	}

	c.mu.Lock()
	if removed {
		c.tab.remove(k)
		c.events.publish(Event{Kind: EventDeleted, Mapping: m, Count: c.tab.ownLen()})
	}
	c.releaseLocked(k, op)
	c.rearmLocked()
	c.mu.Unlock()
	if err != nil {
		c.log.Warn("port mapping not deleted", "mapping", m, "err", err)
		return err
	}
	if c.log.Enabled(ctx, slog.LevelInfo) {
		c.log.Info("port mapping deleted", "mapping", m, "by", req.String())
	}
	c.audit(NewAuditRecord(c.now(), AuditDeleted, req, m))
	return nil
}

// removeBatch records the removal of ms in the store, then removes their
// rules from the backend, and reports which succeeded. The store goes
// first so that a crash in between leaves a stray rule (which New
// flushes) rather than a lease that would be resurrected. Mappings the
// backend could not remove are put back in the store, except when
// expiring, since an expired lease is dropped on restore anyway.
func (c *Core) removeBatch(ctx context.Context, ms []Mapping, expiring bool) ([]bool, error) {
	ok := make([]bool, len(ms))
	if len(ms) == 0 {
		return ok, nil
	}
	if c.store != nil {
		keys := make([]Key, len(ms))
		for i, m := range ms {
			keys[i] = m.Key()
		}
		if err := c.store.Save(nil, keys); err != nil {
			if !expiring {
				return ok, fmt.Errorf("%w: %w", ErrStore, err)
			}
			c.log.Error("could not record expired leases; they will be dropped at the next start", "err", err)
		}
	}
	return c.removeFromBackend(ctx, ms, expiring)
}

// removeFromBackend is removeBatch after the store write: it removes the
// rules of ms and puts those it could not remove back in the store.
func (c *Core) removeFromBackend(ctx context.Context, ms []Mapping, expiring bool) ([]bool, error) {
	ok := make([]bool, len(ms))
	var errs []error
	var failed []Mapping
	if bd, isBatch := c.backend.(BatchDeleter); isBatch && len(ms) > 1 {
		var rules []Rule
		for _, m := range ms {
			if m.Enabled {
				rules = append(rules, m.Rule())
			}
		}
		if err := bd.DeleteBatch(ctx, rules); err == nil {
			for i := range ok {
				ok[i] = true
			}
			return ok, nil
		}
		// Learn which ones failed, one by one.
	}
	for i, m := range ms {
		if m.Enabled {
			if err := c.backend.Delete(ctx, m.Rule()); err != nil {
				errs = append(errs, &BackendError{Backend: c.backend.Name(), Op: "delete", Rule: m.Rule(), Err: err})
				failed = append(failed, m)
				continue
			}
		}
		ok[i] = true
	}
	if len(failed) > 0 && c.store != nil && !expiring {
		if err := c.store.Save(failed, nil); err != nil {
			c.log.Error("could not restore leases in the store after backend failure; they will be missing after restart",
				"count", len(failed), "err", err)
		}
	}
	return ok, errors.Join(errs...)
}

// DeleteRange deletes proto mappings with external ports in [start, end]
// (UPnP IGD:2 DeletePortMappingRange). With manage set, a requester
// allowed to manage others' mappings (the administrator, or anyone when
// secure mode is off) deletes every mapping in the range; otherwise only
// its own. It returns ErrNoneInRange when the range holds nothing, and
// ErrNotAuthorized when it holds only mappings the requester may not
// delete.
func (c *Core) DeleteRange(ctx context.Context, req Requester, proto Protocol, start, end uint16, manage bool) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if start > end {
		return 0, fmt.Errorf("%w: start port %d is after end port %d", ErrInconsistentRange, start, end)
	}
	req = req.normalize()
	all := manage && (req.admin() || c.pol.InsecureMode)
	allowed := func(m Mapping) bool {
		if !all && m.Owner != req.Addr {
			return false
		}
		return c.mayModify(req, m)
	}
	n, denied, err := c.deleteWhere(ctx, req, c.rangeCandidates(proto, start, end), allowed)
	switch {
	case err != nil:
		return n, err
	case n == 0 && denied > 0:
		return 0, fmt.Errorf("%w: the %d mappings in %s %d-%d belong to other clients", ErrNotAuthorized, denied, proto, start, end)
	case n == 0:
		return 0, fmt.Errorf("%w: %s %d-%d", ErrNoneInRange, proto, start, end)
	}
	return n, nil
}

// DeleteAllFor deletes every proto mapping that forwards to req.Addr,
// whoever made it (NAT-PMP's request with internal port 0 and lifetime 0,
// which a host sends on getting a new address, to clear what a previous
// holder of the address left behind). Finding nothing is not an error.
// Mappings made by the administrator are kept, and reported with
// ErrNotAuthorized after the others are deleted, as RFC 6886 asks. It
// visits the mappings to req.Addr only (an index), in chunks, so that
// other clients are served while it runs.
func (c *Core) DeleteAllFor(ctx context.Context, req Requester, proto Protocol) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	req = req.normalize()
	if !req.Addr.IsValid() {
		return 0, fmt.Errorf("%w: the request has no source address", ErrNotAuthorized)
	}
	candidates := func(yield func(uint64, *tableEntry) bool) {
		for e := range c.tab.internalEntries(req.Addr) {
			if e.m.Protocol == proto {
				if !yield(e.m.Key().pack(), e) {
					return
				}
			}
		}
	}
	n, denied, err := c.deleteWhere(ctx, req, candidates, func(m Mapping) bool { return c.mayModify(req, m) })
	if err == nil && denied > 0 {
		err = fmt.Errorf("%w: %d %s mappings to %v were set up by the administrator and were kept", ErrNotAuthorized, denied, proto, req.Addr)
	}
	return n, err
}

// rangeCandidates iterates the entries of proto in [start, end], by port
// when the range is smaller than the table and by entry otherwise.
func (c *Core) rangeCandidates(proto Protocol, start, end uint16) func(func(uint64, *tableEntry) bool) {
	return func(yield func(uint64, *tableEntry) bool) {
		if int(end)-int(start)+1 <= c.tab.len() {
			for p := int(start); p <= int(end); p++ {
				k := Key{Protocol: proto, ExternalPort: uint16(p)}.pack()
				if e := c.tab.lookup(k); e != nil && !yield(k, e) {
					return
				}
			}
			return
		}
		for i := 0; i < c.tab.len(); i++ {
			e := c.tab.at(i)
			if e.m.Protocol == proto && e.m.ExternalPort >= start && e.m.ExternalPort <= end && !e.m.ExternalAddr.IsValid() {
				if !yield(e.m.Key().pack(), e) {
					return
				}
			}
		}
	}
}

// deleteWhere deletes the candidate entries that allowed accepts, as one
// store write. Keys busy with another operation are revisited after that
// operation ends, a bounded number of times. It returns how many were
// deleted and how many were refused by allowed.
func (c *Core) deleteWhere(ctx context.Context, req Requester, candidates func(func(uint64, *tableEntry) bool), allowed func(Mapping) bool) (int, int, error) {
	deleted := 0
	refused := make(map[uint64]struct{})
	for round := 0; round < maxDeleteRounds; round++ {
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return deleted, len(refused), ErrClosed
		}
		var batch []Mapping
		var wait chan struct{}
		more := false
		for k, e := range candidates {
			if op, ok := c.busy[k]; ok {
				wait = op.done
				continue
			}
			if !allowed(e.m) {
				refused[k] = struct{}{}
				continue
			}
			if len(batch) == deleteChunk {
				more = true
				break
			}
			batch = append(batch, e.m)
		}
		ops := make([]*inflight, len(batch))
		for i, m := range batch {
			ops[i] = c.markBusyLocked(req, m.Key().pack(), netip.Addr{}, false, false)
		}
		c.mu.Unlock()

		c.unchain(ctx, batch)
		ok, err := c.removeBatch(ctx, batch, false)

		c.mu.Lock()
		for i, m := range batch {
			k := m.Key().pack()
			if ok[i] {
				c.tab.remove(k)
				deleted++
				c.events.publish(Event{Kind: EventDeleted, Mapping: m, Count: c.tab.ownLen()})
			}
			c.releaseLocked(k, ops[i])
		}
		c.rearmLocked()
		c.mu.Unlock()
		now := c.now()
		for i, m := range batch {
			if ok[i] {
				if c.log.Enabled(ctx, slog.LevelInfo) {
					c.log.Info("port mapping deleted", "mapping", m, "by", req.String())
				}
				c.audit(NewAuditRecord(now, AuditDeleted, req, m))
			}
		}
		if err != nil {
			return deleted, len(refused), err
		}
		if more {
			round-- // a full chunk is progress, not a wait for busy keys
			continue
		}
		if wait == nil {
			break
		}
		resume := pauseGroup(ctx)
		select {
		case <-wait:
			resume()
		case <-ctx.Done():
			resume()
			return deleted, len(refused), ctxErr(ctx.Err(), "other operations on the mappings to delete")
		}
	}
	return deleted, len(refused), nil
}

// Get returns the mapping for proto and extPort. A valid remoteHost must
// equal the mapping's; the zero Addr matches any.
func (c *Core) Get(req Requester, proto Protocol, extPort uint16, remoteHost netip.Addr) (Mapping, error) {
	remoteHost = normalizeAddr(remoteHost)
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.tab.lookup(Key{Protocol: proto, ExternalPort: extPort}.pack())
	if e == nil || (remoteHost.IsValid() && remoteHost != e.m.RemoteHost) {
		return Mapping{}, fmt.Errorf("%w: nothing is mapped on %s/%d", ErrNoSuchEntry, proto, extPort)
	}
	return e.m, nil
}

// visibleAll reports whether req sees the whole table in Index and List.
func (c *Core) visibleAll(req Requester) bool { return !c.pol.ListOwnOnly || req.admin() }

// Index returns the i-th mapping req can see (UPnP
// GetGenericPortMappingEntry): the whole table, or with ListOwnOnly the
// requester's own mappings, of the gateway's own external address only.
// Mappings on an external pool address are not counted: UPnP names a
// mapping by protocol and port on the address GetExternalIPAddress
// reports, and a pool mapping listed there would be taken for (and
// deleted as) the own address's mapping of that port. The order is stable while the table does not
// change; a deletion moves the last entry into the deleted one's place.
func (c *Core) Index(req Requester, i int) (Mapping, error) {
	req = req.normalize()
	c.mu.Lock()
	defer c.mu.Unlock()
	var e *tableEntry
	n := 0
	switch {
	case c.visibleAll(req):
		n = c.tab.ownLen()
		if i >= 0 && i < n {
			e = c.tab.ownAt(i)
		}
	case c.tab.pooled:
		// The requester's own mappings on the gateway's own address:
		// a scan of its keys, which its quota bounds.
		for oe := range c.tab.ownerEntries(req.Addr) {
			if !oe.m.ExternalAddr.IsValid() {
				if n == i {
					e = oe
				}
				n++
			}
		}
	default:
		n = c.tab.ownerLen(req.Addr)
		e = c.tab.ownerAt(req.Addr, i)
	}
	if e != nil {
		return e.m, nil
	}
	if n == 0 && i == 0 && c.pol.ShowDummyRule {
		return Mapping{Protocol: TCP, InternalAddr: req.Addr, Description: "no port mappings", Owner: req.Addr, Source: req.Source}, nil
	}
	return Mapping{}, fmt.Errorf("%w: index %d, %d entries", ErrIndexOutOfRange, i, n)
}

// List returns up to max (all when max <= 0) of the proto mappings req can
// see with external ports in [start, end] of the gateway's own address
// (not those on external pool addresses), sorted by external port (UPnP
// IGD:2 GetListOfPortMappings). Visibility is the same as Index's.
func (c *Core) List(req Requester, proto Protocol, start, end uint16, max int) []Mapping {
	if start > end {
		return nil
	}
	req = req.normalize()
	var out []Mapping
	sorted := false
	c.mu.Lock()
	switch {
	case !c.visibleAll(req):
		for e := range c.tab.ownerEntries(req.Addr) {
			if e.m.Protocol == proto && e.m.ExternalPort >= start && e.m.ExternalPort <= end && !e.m.ExternalAddr.IsValid() {
				out = append(out, e.m)
			}
		}
	case int(end)-int(start)+1 <= c.tab.len():
		for p := int(start); p <= int(end) && (max <= 0 || len(out) < max); p++ {
			if e := c.tab.lookup(Key{Protocol: proto, ExternalPort: uint16(p)}.pack()); e != nil {
				out = append(out, e.m)
			}
		}
		sorted = true
	default:
		for i := 0; i < c.tab.len(); i++ {
			if m := c.tab.at(i).m; m.Protocol == proto && m.ExternalPort >= start && m.ExternalPort <= end && !m.ExternalAddr.IsValid() {
				out = append(out, m)
			}
		}
	}
	c.mu.Unlock()
	if !sorted {
		sort.Slice(out, func(i, j int) bool { return out[i].ExternalPort < out[j].ExternalPort })
	}
	if max > 0 && len(out) > max {
		out = out[:max]
	}
	return out
}

// MappingsTo returns the proto mappings forwarding to addr, on any
// external address, in no particular order (PCP's delete of every mapping
// of a host and nonce).
func (c *Core) MappingsTo(addr netip.Addr, proto Protocol) []Mapping {
	addr = normalizeAddr(addr)
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []Mapping
	for e := range c.tab.internalEntries(addr) {
		if e.m.Protocol == proto {
			out = append(out, e.m)
		}
	}
	return out
}

// FindByInternal returns owner's proto mapping to its own internalPort, for
// NAT-PMP and PCP, which identify a mapping by its internal side (a repeat
// request must get the same external port back). When several match, one
// made by NAT-PMP or PCP wins over one made by UPnP, then the lowest
// external port. The search covers owner's own mappings only.
func (c *Core) FindByInternal(owner netip.Addr, proto Protocol, internalPort uint16) (Mapping, bool) {
	owner = normalizeAddr(owner)
	c.mu.Lock()
	defer c.mu.Unlock()
	var best Mapping
	found := false
	for k := range c.tab.forwardingTo(owner, proto, internalPort) {
		m := c.tab.lookup(k).m
		if m.Owner != owner {
			continue
		}
		if !found || better(m, best) {
			best, found = m, true
		}
	}
	return best, found
}

func better(a, b Mapping) bool {
	ap, bp := a.Source != SourceUPnP, b.Source != SourceUPnP
	if ap != bp {
		return ap
	}
	return a.ExternalPort < b.ExternalPort
}

// Len returns the number of mappings in the table, on every external
// address.
func (c *Core) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.tab.len()
}

// OwnAddrLen returns the number of mappings on the gateway's own external
// address, the ones UPnP sees (PortMappingNumberOfEntries; see Index):
// Len without those on external pool addresses.
func (c *Core) OwnAddrLen() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.tab.ownLen()
}

// All returns every mapping in the table, on every external address, in
// no particular order: the operator's view (the admin page).
func (c *Core) All() []Mapping {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]Mapping, c.tab.len())
	for i := range out {
		out[i] = c.tab.at(i).m
	}
	return out
}

// Range calls f for every mapping in the table, on every external
// address, until f returns false. It holds the Core's lock: f must be
// quick and must not call the Core (metrics count with it, without
// copying a carrier's million mappings).
func (c *Core) Range(f func(m *Mapping) bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := 0; i < c.tab.len(); i++ {
		if !f(&c.tab.at(i).m) {
			return
		}
	}
}

// Subscribe calls f for every change to the table, in commit order, on a
// goroutine of the Core's; f may call the Core's methods but not Close.
// A slow f delays later events, and beyond a bound events are dropped and
// counted in Event.Missed. After cancel returns f is not called again,
// except that a call already under way finishes.
func (c *Core) Subscribe(f func(Event)) (cancel func()) {
	return c.events.subscribe(f)
}

// expire removes the mappings whose leases have ended. It runs on the
// expiry timer.
// expire removes the mappings whose leases have ended, expiryChunk at a
// time: the table is released between chunks, so that requests are served
// while a hundred thousand leases end at one moment. One expire runs at a
// time; the timer firing meanwhile finds it running and leaves the work
// to it.
func (c *Core) expire() {
	c.mu.Lock()
	if c.closed || c.expiring {
		c.mu.Unlock()
		return
	}
	c.expiring = true
	c.mu.Unlock()
	for c.expireChunk() {
	}
	c.mu.Lock()
	c.expiring = false
	c.timerAt = 0 // a timer that fired while this ran armed nothing
	c.rearmLocked()
	c.mu.Unlock()
}

// expireChunk removes up to expiryChunk mappings whose leases have ended
// and reports whether there may be more.
func (c *Core) expireChunk() bool {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return false
	}
	c.timerAt = 0
	now := c.now()
	if now.Before(c.retryAfter) {
		c.mu.Unlock()
		return false
	}
	keys := c.tab.due(now.UnixNano(), c.isBusyLocked, expiryChunk)
	if len(keys) == 0 {
		c.mu.Unlock()
		return false
	}
	// One operation holds the whole chunk: requests for its keys wait
	// for it.
	op := &inflight{done: make(chan struct{})}
	batch := make([]Mapping, len(keys))
	for i, k := range keys {
		batch[i] = c.tab.lookup(k).m
		c.busy[k] = op
	}
	c.mu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), backgroundTimeout)
	c.unchain(ctx, batch)
	ok, err := c.removeBatch(ctx, batch, true)
	cancel()

	c.mu.Lock()
	failed := 0
	for i, m := range batch {
		k := m.Key().pack()
		if ok[i] {
			c.tab.remove(k)
			c.events.publish(Event{Kind: EventExpired, Mapping: m, Count: c.tab.ownLen()})
		} else {
			failed++
		}
		delete(c.busy, k)
	}
	op.finished = true
	close(op.done)
	if failed > 0 {
		c.retryAfter = now.Add(expiryRetry)
	} else {
		c.retryAfter = time.Time{}
	}
	c.mu.Unlock()

	logged := c.log.Enabled(context.Background(), slog.LevelInfo)
	for i, m := range batch {
		if !ok[i] {
			continue
		}
		if logged {
			c.log.Info("port mapping expired", "mapping", m)
		}
		if c.auditf != nil {
			r := NewAuditRecord(now, AuditExpired, Requester{Source: SourceAdmin}, m)
			r.Via = m.Source.String()
			r.Client = m.Owner
			c.audit(r)
		}
	}
	if err != nil {
		c.log.Error("could not remove expired mappings; they stay in the table and forward traffic until a retry succeeds",
			"failed", failed, "retry_in", expiryRetry, "err", err)
	}
	return failed == 0 && len(keys) == expiryChunk
}

// rearmLocked points the single expiry timer at the earliest lease end
// among keys not busy (a busy key's operation re-arms when it ends). The
// timer is only ever moved earlier here; when it fires early because the
// earliest lease was refreshed or deleted, expire finds nothing due and
// re-arms for the next one. That keeps adds and refreshes from resetting
// the timer every time.
func (c *Core) rearmLocked() {
	if c.closed {
		return
	}
	at, ok := c.tab.earliest(c.isBusyLocked)
	if !ok {
		return
	}
	now := c.clock.Now().UnixNano()
	if !c.retryAfter.IsZero() {
		at = max(at, c.retryAfter.UnixNano())
	}
	deadline := min(at, now+int64(maxTimerSleep))
	if c.timerAt != 0 && c.timerAt <= deadline {
		return
	}
	d := time.Duration(max(deadline-now, 0))
	if c.timer == nil {
		c.timer = c.clock.AfterFunc(d, c.expire)
	} else {
		c.timer.Reset(d)
	}
	c.timerAt = deadline
}

// Close stops the Core. It waits for operations under way (honouring ctx)
// and rejects new ones with ErrClosed. With flush, every mapping is
// removed from the backend (Backend.Flush) and from the store, for a
// shutdown after which the leases should not come back; without flush the
// rules stay installed and the leases stay stored, so that a restart (an
// upgrade, say) keeps traffic flowing and New restores them.
//
// Close closes neither the Backend nor the Store; their owner does.
func (c *Core) Close(ctx context.Context, flush bool) error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	if c.timer != nil {
		c.timer.Stop()
	}
	// Re-applying restored leases stops at its next batch.
	c.mu.Unlock()
	select {
	case <-c.applied:
	case <-ctx.Done():
		c.events.close(ctx)
		return ctxErr(ctx.Err(), "the restored leases' re-application to stop before closing")
	}
	c.mu.Lock()
	for len(c.busy) > 0 {
		var op *inflight
		for _, o := range c.busy {
			op = o
			break
		}
		c.mu.Unlock()
		select {
		case <-op.done:
		case <-ctx.Done():
			c.events.close(ctx)
			return ctxErr(ctx.Err(), "operations under way to finish before closing")
		}
		c.mu.Lock()
	}
	var all []Mapping
	if flush {
		all = make([]Mapping, c.tab.len())
		for i := range all {
			all[i] = c.tab.at(i).m
		}
		c.tab = c.emptyTable()
	}
	c.mu.Unlock()

	var errs []error
	if err := c.closePins(ctx, flush); err != nil {
		errs = append(errs, err)
	}
	if flush {
		c.unchain(ctx, all)
		if err := c.backend.Flush(ctx); err != nil {
			errs = append(errs, &BackendError{Backend: c.backend.Name(), Op: "flush", Err: err})
		}
		if c.store != nil && len(all) > 0 {
			keys := make([]Key, len(all))
			for i, m := range all {
				keys[i] = m.Key()
			}
			if err := c.store.Save(nil, keys); err != nil {
				errs = append(errs, fmt.Errorf("%w: %w", ErrStore, err))
			}
		}
		now := c.now()
		for i, m := range all {
			c.events.publish(Event{Kind: EventDeleted, Mapping: m, Count: len(all) - i - 1})
			r := NewAuditRecord(now, AuditDeleted, Requester{Source: SourceAdmin}, m)
			r.Reason = "the gateway stopped with flush on exit"
			c.audit(r)
		}
		c.log.Info("removed all port mappings on close", "count", len(all))
	}
	if err := c.events.close(ctx); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// setPool checks and records the external address pool.
func (c *Core) setPool(pool []netip.Addr) error {
	if len(pool) == 0 {
		return nil
	}
	if pb, ok := c.backend.(PoolBackend); !ok || !pb.SupportsPool() {
		return fmt.Errorf("gateway: the %s backend cannot forward from an external address pool; use the nft backend (given the pool) or no pool", c.backend.Name())
	}
	c.poolSet = make(map[netip.Addr]bool, len(pool))
	for _, a := range pool {
		a = normalizeAddr(a)
		if !a.Is4() || a.IsUnspecified() || a.IsMulticast() || a.IsLoopback() {
			return fmt.Errorf("gateway: external address pool: %v is not a unicast IPv4 address", a)
		}
		if c.poolSet[a] {
			return fmt.Errorf("gateway: external address pool: %v is listed twice", a)
		}
		c.poolSet[a] = true
		c.pool = append(c.pool, a)
	}
	c.tab.pooled = len(c.pool) > 0
	return nil
}

// emptyTable returns a new, empty table for the Core's pool.
func (c *Core) emptyTable() *table {
	t := newTable()
	t.pooled = len(c.pool) > 0
	return t
}

// ExternalPool returns the external address pool (Config.ExternalPool).
func (c *Core) ExternalPool() []netip.Addr { return slices.Clone(c.pool) }

// PoolAddr returns the external address paired with subscriber, for its
// new PCP and NAT-PMP mappings (and NAT-PMP's answer to "what is my
// external address"): the address of the mappings it already holds over
// PCP or NAT-PMP when that is still in the pool, and otherwise the one a hash of its
// address picks, so that the pairing survives restarts and needs no state
// (RFC 4787 REQ-2 "paired" address pooling: a subscriber is seen from
// outside on one address). It returns the zero Addr, meaning the
// gateway's own external address, when there is no pool or the pairing
// falls on that address.
func (c *Core) PoolAddr(subscriber netip.Addr) netip.Addr {
	if len(c.pool) == 0 {
		return netip.Addr{}
	}
	subscriber = normalizeAddr(subscriber)
	own := c.ExternalAddr()
	c.mu.Lock()
	var a netip.Addr
	held := false
	if o := c.tab.owners[subscriber]; o != nil {
		for _, k := range o.keys[:min(len(o.keys), 4)] {
			if m := c.tab.lookup(k).m; m.Source == SourcePCP || m.Source == SourceNATPMP {
				a, held = m.ExternalAddr, true
				break
			}
		}
	}
	c.mu.Unlock()
	switch {
	case held && a.IsValid() && c.poolSet[a]:
		return a
	case held && !a.IsValid() && c.poolSet[own]:
		return netip.Addr{}
	}
	a = c.pool[poolSlot(subscriber, len(c.pool))]
	if a == own {
		return netip.Addr{}
	}
	return a
}

// poolSlot picks subscriber's index in a pool of n addresses: a
// multiplicative hash of the address (its last 32 bits), which spreads
// consecutive subscriber addresses evenly.
func poolSlot(subscriber netip.Addr, n int) int {
	b := subscriber.As16()
	x := uint32(b[12])<<24 | uint32(b[13])<<16 | uint32(b[14])<<8 | uint32(b[15])
	for _, v := range b[:12] {
		x = x*31 + uint32(v)
	}
	h := x * 0x9E3779B1
	return int(uint64(h) * uint64(n) >> 32)
}
