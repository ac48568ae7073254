package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// Double NAT: chaining mappings to the router above (RFC 6970, RFC 7648).
//
// When the gateway's own external address is private or in carrier-grade
// NAT space, a mapping on this router alone is unreachable from the
// Internet: the router above drops the traffic. A Core with an Upstream
// makes, for each mapping it grants, the matching mapping on the router
// above (the "upstream half"), whose internal side is this router's
// external address and the local mapping's external port. It owns that
// half: its nonce, its renewals and its deletion. Package gateway/upstream
// implements Upstream over PCP, NAT-PMP and UPnP IGD clients; the Core
// itself speaks no protocol.
//
// The order of a chained add is what makes kill -9 neither lose nor leak
// an upstream mapping: the key is claimed locally, the intent (the half
// with its method and the PCP nonce chosen in advance) is journaled, the
// upstream request is sent, and only then is the local rule installed and
// the mapping committed with its granted half. A restart finds any intent
// that was never committed in the journal and deletes it upstream
// (Core.UpstreamOrphans), and renews every committed half.
//
// A half that must go but that the router above would not delete at once
// (it is down) is journaled as a pending upstream delete
// (Core.RecordUpstreamDelete) until the delete is done or the half's
// upstream lease is over, so that kill -9 while it waits does not leave it
// on the router above: the next start hands it out again with the
// orphans.

// HalfState says how far a chained mapping's upstream half got.
type HalfState uint8

const (
	// HalfActive: the upstream granted the half; the mapping is committed.
	HalfActive HalfState = iota
	// HalfPendingNew: the journal's intent record of a mapping not yet
	// committed; the upstream request may or may not have reached the
	// router above. Only ever seen in the store.
	HalfPendingNew
	// HalfPending: the intent of a half for a mapping that was already
	// committed without one. Only ever seen in the store.
	HalfPendingChain
)

// UpstreamHalf is a chained mapping's upstream half: the mapping on the
// router above that forwards Public to this router's external address at
// the local mapping's external port. The zero value means "not chained".
type UpstreamHalf struct {
	// Method is the protocol spoken to the router above: "pcp", "natpmp"
	// or "upnp".
	Method string
	// Public is where the Internet reaches the mapping: the upstream's
	// public address and the port it granted. Invalid in an intent.
	Public netip.AddrPort
	// Nonce is the PCP mapping nonce, chosen before the request so that a
	// half whose answer was lost can still be deleted.
	Nonce [12]byte
	// Granted and Expires bound the upstream's grant; renewals are due
	// at half of it. Expires is zero for a permanent upstream mapping.
	Granted, Expires time.Time
	State            HalfState
}

// Chained reports whether m has an upstream half.
func (m Mapping) Chained() bool { return m.Upstream != nil && m.Upstream.Method != "" }

// Half returns m's upstream half, the zero value when m is not chained.
func (m Mapping) Half() UpstreamHalf {
	if m.Upstream == nil {
		return UpstreamHalf{}
	}
	return *m.Upstream
}

// PublicPort returns the port the Internet reaches m on: the upstream
// half's when chained, else the external port.
func (m Mapping) PublicPort() uint16 {
	if m.Chained() && m.Upstream.Public.IsValid() {
		return m.Upstream.Public.Port()
	}
	return m.ExternalPort
}

// RenewAt is when the half should be renewed: half-way through its grant
// (RFC 6887 §11.2.1, RFC 6886 §3.3). Zero for a permanent grant.
func (h UpstreamHalf) RenewAt() time.Time {
	if h.Expires.IsZero() || h.Granted.IsZero() {
		return time.Time{}
	}
	return h.Granted.Add(h.Expires.Sub(h.Granted) / 2)
}

// Upstream makes and removes the upstream halves of chained mappings. The
// Core calls it with the mapping's key marked busy, outside its lock.
// Package gateway/upstream implements it.
type Upstream interface {
	// Prepare returns the half to journal as the intent of chaining m
	// (its Method and, for PCP, a fresh Nonce), or ok false when m is not
	// to be chained (no router above answered, upstream = "off", or the
	// allow-list excludes m's source).
	Prepare(m Mapping) (h UpstreamHalf, ok bool)
	// Map makes or refreshes h on the router above for m, whose local
	// external port is m.ExternalPort on this router's external address.
	// With exact the upstream must grant h.Public's port (or, for a new
	// half, m.ExternalPort) or fail with ErrUpstreamConflict; otherwise it
	// may grant another port. It returns the granted half, with Public,
	// Granted and Expires set. Errors wrap ErrUpstreamConflict,
	// ErrUpstreamRefused, ErrUpstreamExhausted or ErrUpstreamDown.
	Map(ctx context.Context, m Mapping, h UpstreamHalf, exact bool) (UpstreamHalf, error)
	// Unmap removes m's half from the router above. It tries at once
	// within ctx and, if that fails, keeps retrying in the background
	// until it succeeds or the half's upstream lease has ended: the Core
	// never waits for a dead upstream to forget a mapping.
	Unmap(ctx context.Context, m Mapping)
}

// Upstream errors: why the router above would not make the half. The
// adapters turn them into their protocol's codes, like the Core's own.
var (
	// ErrUpstreamConflict: the port asked for is held upstream by someone
	// else (UPnP 718, PCP CANNOT_PROVIDE_EXTERNAL).
	ErrUpstreamConflict = errors.New("the router above holds that port for someone else")
	// ErrUpstreamRefused: the router above refused the mapping (its
	// policy, its secure mode).
	ErrUpstreamRefused = errors.New("the router above refused the mapping")
	// ErrUpstreamExhausted: the router above has no port or quota left.
	ErrUpstreamExhausted = errors.New("the router above has no port left for this router")
	// ErrUpstreamDown: the router above did not answer, or failed.
	ErrUpstreamDown = errors.New("the router above is not answering")
)

// UpstreamError reports a refusal or failure of the router above. Its
// message names the router and what it answered; errors.Is matches one
// of the ErrUpstream sentinels and the protocol's own error.
type UpstreamError struct {
	Kind   error  // one of the ErrUpstream sentinels
	Server string // the router above: "100.64.0.1:5351 (PCP)"
	Err    error  // what it answered
}

func (e *UpstreamError) Error() string {
	return fmt.Sprintf("upstream %s: %v: %v", e.Server, e.Kind, e.Err)
}

// Unwrap makes errors.Is match Kind and the protocol's error.
func (e *UpstreamError) Unwrap() []error { return []error{e.Kind, e.Err} }

// maxUPnPAnyTries bounds the ports an AddAny by a UPnP client tries when
// the router above holds them: a UPnP client names its mapping by the port
// it was given, so the local and public ports must be the same.
const maxUPnPAnyTries = 16

// chain makes m's upstream half (into m.Upstream), between the claim of
// m's key and apply. For a mapping that already has a half, it reuses it,
// refreshing it upstream only when the new lease outlives the grant. It
// journals the intent of a new half first, and removes it when the
// upstream fails. exact asks for the same public port as the local one.
func (c *Core) chain(ctx context.Context, m *Mapping, prev Mapping, hadPrev, exact bool) error {
	if c.up == nil || !m.Enabled || m.ExternalAddr.IsValid() {
		// A pool address is the carrier's own: nothing above to chain to.
		m.Upstream = nil
		return nil
	}
	if hadPrev && prev.Chained() && prev.Upstream.State == HalfActive {
		m.Upstream = prev.Upstream
		if m.Permanent() || !m.Expires.After(prev.Upstream.Expires) || prev.Upstream.Expires.IsZero() {
			c.clampToHalf(m)
			return nil
		}
		// Not exact: the half exists, and if the router above lost it and
		// gave its port away meanwhile, it moves, as at a renewal
		// (Rechain); failing here would leave the mapping with a half
		// that no longer exists above (and an exact request whose grant
		// differs is given back, deleting the half).
		got, err := c.up.Map(ctx, *m, *prev.Upstream, false)
		if err != nil {
			return err
		}
		got.State = HalfActive
		m.Upstream = &got
		c.clampToHalf(m)
		return nil
	}
	h, ok := c.up.Prepare(*m)
	if !ok {
		m.Upstream = nil
		return nil
	}
	if c.store != nil {
		intent, ih := *m, h
		ih.State = HalfPendingNew
		if hadPrev {
			intent = prev
			ih.State = HalfPendingChain
		}
		intent.Upstream = &ih
		if err := c.store.Save([]Mapping{intent}, nil); err != nil {
			return fmt.Errorf("%w: recording the upstream intent: %w", ErrStore, err)
		}
	}
	h.State = HalfActive
	got, err := c.up.Map(ctx, *m, h, exact)
	if err != nil {
		c.dropIntent(m.Key(), prev, hadPrev)
		return err
	}
	got.State = HalfActive
	m.Upstream = &got
	c.clampToHalf(m)
	return nil
}

// dropIntent removes the journaled intent of a half that was not made.
func (c *Core) dropIntent(k Key, prev Mapping, hadPrev bool) {
	if c.store == nil {
		return
	}
	var err error
	if hadPrev {
		err = c.store.Save([]Mapping{prev}, nil)
	} else {
		err = c.store.Save(nil, []Key{k})
	}
	if err != nil {
		c.log.Error("could not clear the journaled upstream intent; the next start deletes it upstream", "key", k, "err", err)
	}
}

// clampToHalf keeps the lease a client is told within the upstream's
// grant: a client must not count on a mapping longer than the router
// above keeps it (RFC 7648). Permanent leases stay permanent: the
// gateway renews the half for as long as the mapping lives.
func (c *Core) clampToHalf(m *Mapping) {
	if m.Permanent() || m.Upstream == nil || m.Upstream.Expires.IsZero() {
		return
	}
	if m.Expires.After(m.Upstream.Expires) {
		m.Expires = m.Upstream.Expires
	}
}

// unchain removes the upstream halves of ms, which are being deleted or
// have expired, before their local removal: a crash in between leaves a
// local lease whose half the next start makes again, never a half that
// nobody deletes.
func (c *Core) unchain(ctx context.Context, ms []Mapping) {
	if c.up == nil {
		return
	}
	for _, m := range ms {
		if m.Chained() {
			c.up.Unmap(ctx, m)
		}
	}
}

// UpstreamDelete is an upstream half waiting to be deleted from the router
// above: Mapping is the mapping it belonged to, with the half (method, PCP
// nonce, public port) in Mapping.Upstream, which is all a delete needs.
// ID names its journal record (0: not journaled, the store cannot keep
// it).
type UpstreamDelete struct {
	ID      uint32
	Mapping Mapping
}

// UpstreamDeleteStore is implemented by a Store that can keep pending
// upstream deletes (FileStore, as a record type of its own). Without it
// they live in memory only.
type UpstreamDeleteStore interface {
	// LoadUpstreamDeletes returns the pending deletes.
	LoadUpstreamDeletes() ([]UpstreamDelete, error)
	// SaveUpstreamDeletes records new pending deletes and removes the
	// done ones, by ID, all or nothing.
	SaveUpstreamDeletes(put []UpstreamDelete, done []uint32) error
}

// UpstreamOrphans returns the halves the router above may hold that no
// mapping here forwards to, found at start: intents the journal held
// without a commit (the gateway stopped between asking the router above
// and recording its answer), halves of saved leases that were not restored
// (expired, or denied by the current policy), and the pending deletes an
// earlier run journaled. The Upstream must delete each and then call
// UpstreamDeleteDone. Each is returned once.
func (c *Core) UpstreamOrphans() []UpstreamDelete {
	c.mu.Lock()
	defer c.mu.Unlock()
	o := c.orphans
	c.orphans = nil
	return o
}

// RecordUpstreamDelete journals m's half as waiting to be deleted from the
// router above, so that a restart hands it out again (UpstreamOrphans)
// until UpstreamDeleteDone. A store that cannot keep it gives ID 0 and an
// error only when writing failed.
func (c *Core) RecordUpstreamDelete(m Mapping) (UpstreamDelete, error) {
	c.mu.Lock()
	d := UpstreamDelete{ID: c.newUpDelIDLocked(), Mapping: m}
	c.mu.Unlock()
	st, ok := c.store.(UpstreamDeleteStore)
	if !ok {
		return UpstreamDelete{Mapping: m}, nil
	}
	if err := st.SaveUpstreamDeletes([]UpstreamDelete{d}, nil); err != nil {
		c.mu.Lock()
		delete(c.upDels, d.ID)
		c.mu.Unlock()
		return UpstreamDelete{Mapping: m}, fmt.Errorf("%w: recording a pending upstream delete: %w", ErrStore, err)
	}
	return d, nil
}

// UpstreamDeleteDone removes d's journal record: the router above deleted
// the half, or its lease there is over.
func (c *Core) UpstreamDeleteDone(d UpstreamDelete) {
	if d.ID == 0 {
		return
	}
	c.mu.Lock()
	delete(c.upDels, d.ID)
	c.mu.Unlock()
	if st, ok := c.store.(UpstreamDeleteStore); ok {
		if err := st.SaveUpstreamDeletes(nil, []uint32{d.ID}); err != nil {
			c.log.Warn("could not record that an upstream delete is done; the next start tries it again", "mapping", d.Mapping, "err", err)
		}
	}
}

// newUpDelIDLocked returns an unused pending-delete ID, never 0.
func (c *Core) newUpDelIDLocked() uint32 {
	if c.upDels == nil {
		c.upDels = map[uint32]bool{}
	}
	for {
		c.upDelNext = (c.upDelNext + 1) % maxUpDelID
		if id := c.upDelNext; id != 0 && !c.upDels[id] {
			c.upDels[id] = true
			return id
		}
	}
}

// restoreUpstreamDeletes makes c.orphans: the pending deletes the store
// kept, and the halves of restore's dropped and uncommitted leases
// (fresh), which it journals as pending deletes before restore forgets
// their leases.
func (c *Core) restoreUpstreamDeletes(fresh []Mapping) error {
	if c.up == nil {
		fresh = nil // nothing would delete them; their leases end upstream
	}
	st, ok := c.store.(UpstreamDeleteStore)
	if !ok {
		for _, m := range fresh {
			c.orphans = append(c.orphans, UpstreamDelete{Mapping: m})
		}
		return nil
	}
	kept, err := st.LoadUpstreamDeletes()
	if err != nil {
		return fmt.Errorf("gateway: loading pending upstream deletes: %w", err)
	}
	c.mu.Lock()
	if c.upDels == nil {
		c.upDels = map[uint32]bool{}
	}
	for _, d := range kept {
		c.upDels[d.ID] = true
		c.upDelNext = max(c.upDelNext, d.ID)
	}
	var put []UpstreamDelete
	for _, m := range fresh {
		put = append(put, UpstreamDelete{ID: c.newUpDelIDLocked(), Mapping: m})
	}
	c.mu.Unlock()
	if err := st.SaveUpstreamDeletes(put, nil); err != nil {
		return fmt.Errorf("gateway: recording the upstream halves to delete: %w: %w", ErrStore, err)
	}
	c.orphans = append(kept, put...)
	return nil
}

// UnlessChained runs f with k's key held, as a delete of the upstream half
// of a mapping that was on k needs: unless the table holds a chained
// mapping on k by then. That mapping's half has the same internal port
// upstream and a router above that names mappings by it (NAT-PMP, UPnP,
// and miniupnpd's PCP, which replaces a mapping of the same internal port
// whatever its nonce) would delete it in its place; the old half was
// replaced when the new one was made. It reports whether f ran.
func (c *Core) UnlessChained(ctx context.Context, k Key, f func()) (bool, error) {
	pk := k.pack()
	c.mu.Lock()
	if err := c.waitIdleLocked(ctx, pk); err != nil {
		c.mu.Unlock()
		return false, err
	}
	if e := c.tab.lookup(pk); e != nil && e.m.Chained() {
		c.mu.Unlock()
		return false, nil
	}
	op := c.markBusyLocked(Requester{Source: SourceAdmin}, pk, netip.Addr{}, false, false)
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.releaseLocked(pk, op)
		c.mu.Unlock()
	}()
	f()
	return true, nil
}

// Rechain makes the upstream half of the mapping for k again, or for the
// first time: a renewal at half-life, a re-creation after the router
// above lost its state, or the chaining of a mapping made while no
// upstream answered. The half keeps its nonce and asks for its previous
// public port; if the router above grants another, the mapping's public
// port changes (the caller announces it). It returns the mapping as
// stored, and ErrNoSuchEntry when k is gone or not to be chained.
func (c *Core) Rechain(ctx context.Context, k Key) (Mapping, error) {
	if c.up == nil {
		return Mapping{}, fmt.Errorf("%w: no upstream configured", ErrNoSuchEntry)
	}
	pk := k.pack()
	c.mu.Lock()
	if err := c.waitIdleLocked(ctx, pk); err != nil {
		c.mu.Unlock()
		return Mapping{}, err
	}
	e := c.tab.lookup(pk)
	if e == nil || !e.m.Enabled {
		c.mu.Unlock()
		return Mapping{}, fmt.Errorf("%w: nothing to chain on %s", ErrNoSuchEntry, k)
	}
	prev := e.m
	op := c.markBusyLocked(Requester{Source: SourceAdmin}, pk, netip.Addr{}, false, false)
	c.mu.Unlock()

	m := prev
	var err error
	if prev.Chained() {
		var got UpstreamHalf
		got, err = c.up.Map(ctx, m, *prev.Upstream, false)
		if err == nil {
			got.State = HalfActive
			m.Upstream = &got
		}
	} else {
		err = c.chain(ctx, &m, prev, true, prev.Source == SourceUPnP)
	}
	if err == nil && m.Chained() && c.store != nil {
		if serr := c.store.Save([]Mapping{m}, nil); serr != nil {
			err = fmt.Errorf("%w: %w", ErrStore, serr)
		}
	}

	c.mu.Lock()
	if err == nil && m.Chained() {
		c.tab.put(m)
		if m.Half().Public != prev.Half().Public {
			c.events.publish(Event{Kind: EventUpdated, Mapping: m, Count: c.tab.ownLen()})
		}
	}
	c.releaseLocked(pk, op)
	c.rearmLocked()
	c.mu.Unlock()
	if err != nil {
		return prev, err
	}
	if !m.Chained() {
		return m, fmt.Errorf("%w: %s is not to be chained", ErrNoSuchEntry, k)
	}
	if prev.Chained() && prev.Half().Public != m.Half().Public {
		c.log.Warn("the router above gave this mapping another public port or address; clients are told",
			"mapping", m, "was", prev.Upstream.Public, "now", m.Upstream.Public)
	}
	return m, nil
}
