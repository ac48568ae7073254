package gateway

import (
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

// IPv6 pinholes.
//
// On IPv6 there is no NAT: a LAN host's address is itself public, and the
// router only filters. A pinhole lets inbound traffic from RemoteHost
// (any when zero) and RemotePort (any when 0) reach InternalAddr at
// InternalPort for Protocol until its lease ends. UPnP's
// WANIPv6FirewallControl:1 and PCP MAP over IPv6 both make pinholes.
//
// Pinholes live in a table of their own beside the port mappings: they
// have no external port to conflict on, their key is the spec's 5-tuple,
// and the gateway names each with a 16-bit unique ID (UPnP's UniqueID).
// IDs come from a counter that only moves forward (wrapping at 65535,
// skipping 0 and live IDs) and is persisted with the pinholes, so that an
// ID a client remembers from before a restart never names another host's
// pinhole, which miniupnpd, restarting its counter at 1, gets wrong.
//
// Changes to pinholes are serialized (one at a time, backend and store
// calls included): pinholes are few and their changes rare next to the
// port table's, and the simplicity makes the invariants easy to see.

// Pinhole lease bounds of WANIPv6FirewallControl:1 (A_ARG_TYPE_LeaseTime
// allowedValueRange 1..86400).
const (
	MinPinholeLease = time.Second
	MaxPinholeLease = 86400 * time.Second
)

// DefaultMaxPinholes caps the pinhole table when Policy.MaxPinholes is 0:
// the ID space is 16 bits.
const DefaultMaxPinholes = 65535

// Errors of the pinhole methods (beside ErrNotAuthorized, ErrInvalidArgs, ErrWildcardInternalPort, ErrBackend and ErrStore).
var (
	// ErrPinholesDisabled: the policy forbids inbound pinholes
	// (Policy.DisablePinholes); UPnP 703 InboundPinholeNotAllowed.
	ErrPinholesDisabled = errors.New("inbound pinholes are not allowed by the gateway's policy")
	// ErrPinholeSpace: the pinhole table or the requester's share of it is
	// full; UPnP 701 PinholeSpaceExhausted.
	ErrPinholeSpace = errors.New("no room for another pinhole")
	// ErrProtocolNotSupported: a pinhole for a protocol other than TCP or
	// UDP; UPnP 705 ProtocolNotSupported.
	ErrProtocolNotSupported = errors.New("pinholes are for TCP and UDP only")
	// ErrNoPinholeBackend: the backend cannot open pinholes; UPnP 501.
	ErrNoPinholeBackend = errors.New("the backend cannot open IPv6 pinholes")
	// ErrNoSuchPinhole: no pinhole has that ID; UPnP 704 NoSuchEntry.
	ErrNoSuchPinhole = errors.New("no such pinhole")
)

// Pinhole is one IPv6 firewall pinhole.
type Pinhole struct {
	// ID is the gateway's unique ID for the pinhole (1..65535).
	ID           uint16
	Protocol     Protocol
	InternalAddr netip.Addr
	InternalPort uint16
	// RemoteHost and RemotePort restrict the pinhole to one peer; zero
	// means any.
	RemoteHost  netip.Addr
	RemotePort  uint16
	Description string
	// Expires is when the lease ends; pinholes always have one.
	Expires time.Time
	// Owner is the address the request came from (Requester.Addr).
	Owner  netip.Addr
	Source Source
	// Nonce is the PCP mapping nonce, checked by the PCP adapter.
	Nonce   [12]byte
	Created time.Time
}

// PinholeKey is the spec's 5-tuple: AddPinhole with the key of an existing
// pinhole renews it and answers its ID.
type PinholeKey struct {
	Protocol     Protocol
	InternalAddr netip.Addr
	InternalPort uint16
	RemoteHost   netip.Addr
	RemotePort   uint16
}

// Key returns p's 5-tuple.
func (p Pinhole) Key() PinholeKey {
	return PinholeKey{p.Protocol, p.InternalAddr, p.InternalPort, p.RemoteHost, p.RemotePort}
}

// Rule returns what a PinholeBackend installs for p, with a timeout of
// its lease left at now plus grace (see PinholeRule.Timeout).
func (p Pinhole) Rule(now time.Time) PinholeRule {
	r := PinholeRule{PinholeKey: p.Key()}
	if !p.Expires.IsZero() {
		r.Timeout = p.Expires.Sub(now) + pinholeTimeoutGrace
	}
	return r
}

// LeaseSeconds returns the lease left at now in whole seconds, at least 1.
func (p Pinhole) LeaseSeconds(now time.Time) uint32 {
	return Mapping{Expires: p.Expires}.LeaseSeconds(now)
}

func (p Pinhole) String() string {
	s := fmt.Sprintf("pinhole %d: %s %s", p.ID, p.Protocol, netip.AddrPortFrom(p.InternalAddr, p.InternalPort))
	if p.RemoteHost.IsValid() || p.RemotePort != 0 {
		s += " from " + remoteString(p.RemoteHost, p.RemotePort)
	}
	return s + fmt.Sprintf(" (%s by %s)", p.Source, p.Owner)
}

// LogValue makes log lines show p as String does.
func (p Pinhole) LogValue() slog.Value { return slog.StringValue(p.String()) }

func remoteString(a netip.Addr, port uint16) string {
	h := "any"
	if a.IsValid() {
		h = a.String()
	}
	if port == 0 {
		return h
	}
	if a.IsValid() {
		return netip.AddrPortFrom(a, port).String()
	}
	return fmt.Sprintf("%s:%d", h, port)
}

// pinholeTimeoutGrace is added to a backend element's own timeout: the
// Core's expiry removes the pinhole first, and the kernel's timeout only
// closes it if the daemon is gone.
const pinholeTimeoutGrace = 2 * time.Second

// PinholeRule is what a PinholeBackend installs for a pinhole.
type PinholeRule struct {
	PinholeKey
	// Timeout, when positive, asks the backend to close the pinhole by
	// itself after that long, should the daemon not be there to (the nft
	// backend's element timeout). The Core removes it before then.
	Timeout time.Duration
}

func (r PinholeRule) String() string {
	s := fmt.Sprintf("%s %s", r.Protocol, netip.AddrPortFrom(r.InternalAddr, r.InternalPort))
	if r.RemoteHost.IsValid() || r.RemotePort != 0 {
		s += " from " + remoteString(r.RemoteHost, r.RemotePort)
	}
	return s
}

// PinholeBackend is implemented by a Backend that can open IPv6 pinholes:
// in the router's firewall (nft, Memory), or by relaying the pinhole's
// port from the router's own IPv6 addresses to the LAN host (relay).
type PinholeBackend interface {
	// AddPinhole installs r, replacing an installed rule with the same
	// key (a new timeout). It must not open a window in which traffic
	// for a pinhole already installed is dropped.
	AddPinhole(ctx context.Context, r PinholeRule) error
	// DeletePinhole removes the rule with r's key; removing one that is
	// not installed is not an error.
	DeletePinhole(ctx context.Context, r PinholeRule) error
	// PinholePackets returns how many packets went through the rule with
	// r's key; counted is false when the backend cannot count.
	PinholePackets(ctx context.Context, r PinholeRule) (packets uint64, counted bool, err error)
}

// PinholeLister is implemented by a PinholeBackend that can list what it
// installed, so that a restart reconciles instead of flushing.
type PinholeLister interface {
	InstalledPinholes(ctx context.Context) ([]PinholeRule, error)
}

// PinholeStore is implemented by a Store that can keep pinholes too
// (FileStore). Without it pinholes live in memory only.
type PinholeStore interface {
	// LoadPinholes returns the saved pinholes and the next ID to try.
	LoadPinholes() ([]Pinhole, uint16, error)
	// SavePinholes records one change as Store.Save does: each pinhole in
	// put is inserted or replaces the one with its ID, each ID in del is
	// removed, and the ID counter becomes next.
	SavePinholes(put []Pinhole, del []uint16, next uint16) error
}

// pinTable is the Core's pinhole table.
type pinTable struct {
	// ops serializes changes: backend, store and table, in that order.
	ops sync.Mutex

	mu    sync.Mutex
	byID  map[uint16]*Pinhole
	byKey map[PinholeKey]uint16
	next  uint16
	timer Timer
	// parked are saved pinholes the backend refused at start.
	parked []Pinhole
	// subs are told of every change (SubscribePinholes).
	subs map[int]func()
	nsub int
}

// SubscribePinholes calls changed after every change to the pinhole table
// (added, renewed, closed, expired) until cancel is called. changed is
// called synchronously, after the change; it must not block or call the
// Core's pinhole methods.
func (c *Core) SubscribePinholes(changed func()) (cancel func()) {
	t := c.pins
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.subs == nil {
		t.subs = map[int]func(){}
	}
	t.nsub++
	id := t.nsub
	t.subs[id] = changed
	return func() {
		t.mu.Lock()
		defer t.mu.Unlock()
		delete(t.subs, id)
	}
}

// notifyPins tells the subscribers of a change.
func (c *Core) notifyPins() {
	t := c.pins
	t.mu.Lock()
	fs := make([]func(), 0, len(t.subs))
	for _, f := range t.subs {
		fs = append(fs, f)
	}
	t.mu.Unlock()
	for _, f := range fs {
		f()
	}
}

func newPinTable() *pinTable {
	return &pinTable{byID: map[uint16]*Pinhole{}, byKey: map[PinholeKey]uint16{}, next: 1}
}

// pinBackend returns the backend's pinhole side, or ErrNoPinholeBackend.
func (c *Core) pinBackend() (PinholeBackend, error) {
	if pb, ok := c.backend.(PinholeBackend); ok {
		return pb, nil
	}
	return nil, fmt.Errorf("%w (%s); use the nft or relay backend, or the memory backend in tests", ErrNoPinholeBackend, c.backend.Name())
}

// PinholesSupported reports whether the backend can open pinholes.
func (c *Core) PinholesSupported() bool {
	_, err := c.pinBackend()
	return err == nil
}

// PinholesAllowed reports whether the policy lets clients open pinholes
// (UPnP's InboundPinholeAllowed).
func (c *Core) PinholesAllowed() bool { return !c.pol.DisablePinholes && c.PinholesSupported() }

// validPinholeTarget reports why a, as a pinhole's internal address, is
// refused, or nil.
func (c *Core) validPinholeTarget(a netip.Addr) error {
	switch {
	case !a.IsValid() || a.IsUnspecified():
		return fmt.Errorf("%w: a pinhole needs an internal client address", ErrInvalidArgs)
	case a.Is4() || a.Is4In6():
		return fmt.Errorf("%w: internal client %s is not an IPv6 address; IPv4 uses port mappings", ErrInvalidArgs, a)
	case a.Zone() != "":
		return fmt.Errorf("%w: internal client %s has a zone", ErrInvalidArgs, a)
	case a.IsLoopback(), a.IsMulticast(), a.IsLinkLocalUnicast(), a.IsInterfaceLocalMulticast():
		return fmt.Errorf("%w: internal client %s is not a unicast address reachable from outside", ErrInvalidArgs, a)
	}
	if c.ownAddr != nil && c.ownAddr(a) {
		return fmt.Errorf("%w: %s is one of the gateway's own addresses, which pinholes may not open", ErrNotAuthorized, a)
	}
	return nil
}

// mayTarget decides secure mode for pinholes: a client may open pinholes
// only to its own addresses, any of them (a host with a stable and
// temporary addresses, or a ULA beside a global one, is one host). The
// daemon's Config.SameHost tells (from the neighbour table); without it
// only the requester's own address is its own.
func (c *Core) mayTarget(req Requester, target netip.Addr) bool {
	if req.admin() || c.pol.InsecureMode {
		return true
	}
	if req.Addr == target {
		return true
	}
	return c.sameHost != nil && c.sameHost(req.Addr, target)
}

// mayChangePinhole reports whether req may renew, read or delete p (never
// under t.mu: the daemon's answer reads the kernel's neighbour table): the
// operator, anyone in insecure mode (except the operator's own), its owner,
// and a client of the same host as the owner or as the pinhole's target
// (so that a host whose source address rotated keeps control of its
// pinholes, which miniupnpd gets wrong).
func (c *Core) mayChangePinhole(req Requester, p *Pinhole) bool {
	if req.admin() {
		return true
	}
	if p.Source == SourceAdmin {
		return false
	}
	if c.pol.InsecureMode || req.Addr == p.Owner || req.Addr == p.InternalAddr {
		return true
	}
	// What is known now, without waiting for neighbour discovery: the
	// owner made the pinhole, so its host is in the neighbour table.
	return c.sameHostNow != nil && (c.sameHostNow(req.Addr, p.InternalAddr) || c.sameHostNow(req.Addr, p.Owner))
}

// pinholePermitted applies the permission rules to a pinhole to
// client:port, as a mapping of external port = internal port. When no
// rule names an IPv6 prefix, IPv6 rules are absent: pinholes are then
// allowed to ports 1024-65535 only, as WANIPv6FirewallControl recommends
// for unauthenticated control points.
func (c *Core) pinholePermitted(req Requester, client netip.Addr, port uint16) bool {
	if req.admin() {
		return true
	}
	for _, r := range c.pol.Rules {
		if r.Client.Addr().Is6() {
			return c.pol.Permit(port, client, port)
		}
	}
	return port >= 1024
}

// clampPinholeLease bounds a requested lease to the policy's and the
// spec's 1..86400 s.
func (c *Core) clampPinholeLease(d time.Duration) time.Duration {
	lo, hi := MinPinholeLease, MaxPinholeLease
	if c.pol.MinPinholeLease > lo {
		lo = c.pol.MinPinholeLease
	}
	if c.pol.MaxPinholeLease > 0 && c.pol.MaxPinholeLease < hi {
		hi = c.pol.MaxPinholeLease
	}
	return min(max(d, lo), hi)
}

// AddPinhole opens a pinhole for p's 5-tuple with a lease of lease
// (clamped to the policy's bounds within 1..86400 s), or renews the one
// that tuple already has, keeping its ID, as WANIPv6FirewallControl
// requires. It returns the pinhole as held.
//
// Checks, in this order: pinholes allowed (ErrPinholesDisabled), the
// backend can (ErrNoPinholeBackend), protocol TCP or UDP
// (ErrProtocolNotSupported), internal port not 0
// (ErrWildcardInternalPort), the internal address a global or unique-local
// IPv6 unicast address (ErrInvalidArgs) that is not the gateway's own
// (ErrNotAuthorized), the remote host IPv6 or zero (ErrInvalidArgs),
// secure mode and permission rules (ErrNotAuthorized), room
// (ErrPinholeSpace).
func (c *Core) AddPinhole(ctx context.Context, req Requester, p Pinhole, lease time.Duration) (Pinhole, error) {
	req = req.normalize()
	if c.pol.DisablePinholes && !req.admin() {
		return Pinhole{}, ErrPinholesDisabled
	}
	pb, err := c.pinBackend()
	if err != nil {
		return Pinhole{}, err
	}
	if p.Protocol != TCP && p.Protocol != UDP {
		return Pinhole{}, fmt.Errorf("%w (protocol %d)", ErrProtocolNotSupported, p.Protocol)
	}
	if p.InternalPort == 0 {
		return Pinhole{}, ErrWildcardInternalPort
	}
	p.InternalAddr = p.InternalAddr.WithZone("")
	if err := c.validPinholeTarget(p.InternalAddr); err != nil {
		return Pinhole{}, err
	}
	if p.RemoteHost.IsValid() {
		p.RemoteHost = p.RemoteHost.WithZone("")
		if !p.RemoteHost.Is6() || p.RemoteHost.Is4In6() || p.RemoteHost.IsUnspecified() || p.RemoteHost.IsMulticast() {
			return Pinhole{}, fmt.Errorf("%w: remote host %s is not an IPv6 unicast address", ErrInvalidArgs, p.RemoteHost)
		}
	}
	if lease <= 0 {
		return Pinhole{}, fmt.Errorf("%w: a pinhole needs a lease of 1 to 86400 seconds", ErrInvalidArgs)
	}
	if !c.mayTarget(req, p.InternalAddr) {
		return Pinhole{}, fmt.Errorf("%w: secure mode: %s may open pinholes only to its own addresses, not to %s", ErrNotAuthorized, req.Addr, p.InternalAddr)
	}
	if !c.pinholePermitted(req, p.InternalAddr, p.InternalPort) {
		return Pinhole{}, fmt.Errorf("%w: the permission rules do not allow a pinhole to %s", ErrNotAuthorized, netip.AddrPortFrom(p.InternalAddr, p.InternalPort))
	}
	granted := c.clampPinholeLease(lease)
	if granted != lease {
		c.log.Info("pinhole lease clamped", "asked", lease, "granted", granted, "client", req)
	}
	p.Description = truncateUTF8(p.Description, MaxDescriptionLen)

	t := c.pins
	t.ops.Lock()
	defer t.ops.Unlock()
	if err := c.closedErr(); err != nil {
		return Pinhole{}, err
	}
	now := c.now()
	// t.ops is held: the table changes only under it, so what is read
	// here stays true until this change is made.
	t.mu.Lock()
	var held *Pinhole
	if id, ok := t.byKey[p.Key()]; ok {
		cp := *t.byID[id]
		held = &cp
	}
	t.mu.Unlock()
	if held != nil && !c.mayChangePinhole(req, held) {
		return Pinhole{}, fmt.Errorf("%w: %s belongs to another client", ErrNotAuthorized, held)
	}
	var host map[netip.Addr]bool
	if held == nil {
		host = c.hostOf(req)
	}
	t.mu.Lock()
	next := t.next
	if held == nil {
		if err := c.pinRoomLocked(req, host); err != nil {
			t.mu.Unlock()
			return Pinhole{}, err
		}
		id, ok := t.allocLocked()
		if !ok {
			t.mu.Unlock()
			return Pinhole{}, fmt.Errorf("%w: all 65535 pinhole IDs are in use", ErrPinholeSpace)
		}
		p.ID, next = id, id+1
		if next == 0 {
			next = 1
		}
		p.Owner, p.Source, p.Created = req.Addr, req.Source, now
	} else {
		keep := *held
		keep.Description = p.Description
		if p.Nonce != ([12]byte{}) {
			keep.Nonce = p.Nonce
		}
		p = keep
	}
	p.Expires = now.Add(granted)
	t.mu.Unlock()

	if err := pb.AddPinhole(ctx, p.Rule(now)); err != nil {
		return Pinhole{}, &BackendError{Backend: c.backend.Name(), Op: "add pinhole", Err: err}
	}
	if err := c.savePins([]Pinhole{p}, nil, next); err != nil {
		if held == nil {
			c.undoPinhole(pb, p)
		} else {
			c.restorePinhole(pb, *held)
		}
		return Pinhole{}, err
	}
	t.mu.Lock()
	t.putLocked(p)
	t.next = next
	c.rearmPinsLocked()
	t.mu.Unlock()
	ev := AuditAdded
	if held != nil {
		ev = AuditRenewed
	}
	c.auditPinhole(now, ev, req, p, "")
	c.notifyPins()
	if held == nil {
		c.log.Info("pinhole opened", "pinhole", p, "lease", granted)
	}
	return p, nil
}

func (c *Core) undoPinhole(pb PinholeBackend, p Pinhole) {
	ctx, cancel := context.WithTimeout(context.Background(), backgroundTimeout)
	defer cancel()
	if err := pb.DeletePinhole(ctx, p.Rule(c.now())); err != nil {
		c.log.Error("could not undo a pinhole the store did not record; it stays open until its backend timeout", "pinhole", p, "err", err)
	}
}

func (c *Core) restorePinhole(pb PinholeBackend, p Pinhole) {
	ctx, cancel := context.WithTimeout(context.Background(), backgroundTimeout)
	defer cancel()
	if err := pb.AddPinhole(ctx, p.Rule(c.now())); err != nil {
		c.log.Error("could not restore a pinhole's previous lease after the store failed", "pinhole", p, "err", err)
	}
}

func (c *Core) closedErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrClosed
	}
	return nil
}

// pinRoomLocked checks the table cap and the share of the requester's
// host, whose addresses are host (hostOf).
func (c *Core) pinRoomLocked(req Requester, host map[netip.Addr]bool) error {
	t := c.pins
	limit := c.pol.MaxPinholes
	if limit <= 0 || limit > DefaultMaxPinholes {
		limit = DefaultMaxPinholes
	}
	if len(t.byID) >= limit {
		return fmt.Errorf("%w: the table holds its maximum of %d pinholes", ErrPinholeSpace, limit)
	}
	per := c.pinholesPerHost()
	if req.admin() || per <= 0 {
		return nil
	}
	// By host, not by address: a host with temporary (privacy) addresses
	// would otherwise have a share for each.
	n := 0
	for _, p := range t.byID {
		if p.Owner == req.Addr || host[p.Owner] {
			n++
		}
	}
	if n >= per {
		return fmt.Errorf("%w: the host of %s already holds %d pinholes, its maximum", ErrPinholeSpace, req.Addr, n)
	}
	return nil
}

func (c *Core) pinholesPerHost() int {
	if c.pol.MaxPinholesPerClient > 0 {
		return c.pol.MaxPinholesPerClient
	}
	return c.pol.MaxPerClient
}

// hostOf returns the addresses of req's host that own pinholes, for its
// quota: the same host identity secure mode uses (Config.HostAddrs, else
// Config.SameHostNow asked once for each other owner), falling back to
// the requesting address alone. It reads the neighbour table, so it runs
// under t.ops (the table cannot change) but not t.mu.
func (c *Core) hostOf(req Requester) map[netip.Addr]bool {
	host := map[netip.Addr]bool{req.Addr: true}
	if req.admin() || c.pinholesPerHost() <= 0 || !req.Addr.Is6() || req.Addr.Is4In6() {
		return host
	}
	if c.hostAddrs != nil {
		for _, a := range c.hostAddrs(req.Addr) {
			host[a] = true
		}
		return host
	}
	if c.sameHostNow == nil {
		return host
	}
	t := c.pins
	t.mu.Lock()
	owners := map[netip.Addr]bool{}
	for _, p := range t.byID {
		if p.Owner != req.Addr {
			owners[p.Owner] = true
		}
	}
	t.mu.Unlock()
	for o := range owners {
		if c.sameHostNow(req.Addr, o) {
			host[o] = true
		}
	}
	return host
}

// allocLocked returns the next free ID from the counter.
func (t *pinTable) allocLocked() (uint16, bool) {
	id := t.next
	for range 65535 {
		if id == 0 {
			id = 1
		}
		if _, taken := t.byID[id]; !taken {
			return id, true
		}
		id++
	}
	return 0, false
}

func (t *pinTable) putLocked(p Pinhole) {
	if old, ok := t.byID[p.ID]; ok {
		delete(t.byKey, old.Key())
	}
	cp := p
	t.byID[p.ID] = &cp
	t.byKey[p.Key()] = p.ID
}

func (t *pinTable) removeLocked(id uint16) {
	if p, ok := t.byID[id]; ok {
		delete(t.byKey, p.Key())
		delete(t.byID, id)
	}
}

func (c *Core) savePins(put []Pinhole, del []uint16, next uint16) error {
	ps, ok := c.store.(PinholeStore)
	if !ok {
		return nil
	}
	if err := ps.SavePinholes(put, del, next); err != nil {
		return fmt.Errorf("%w: %w", ErrStore, err)
	}
	return nil
}

// lookupPinhole returns a copy of pinhole id if req may see or change it.
func (c *Core) lookupPinhole(req Requester, id uint16) (Pinhole, error) {
	t := c.pins
	t.mu.Lock()
	p, ok := t.byID[id]
	var cp Pinhole
	if ok {
		cp = *p
	}
	t.mu.Unlock()
	if !ok {
		return Pinhole{}, fmt.Errorf("%w: no pinhole has ID %d (it expired, was closed, or never existed)", ErrNoSuchPinhole, id)
	}
	if !c.mayChangePinhole(req, &cp) {
		return Pinhole{}, fmt.Errorf("%w: pinhole %d belongs to another client", ErrNotAuthorized, id)
	}
	return cp, nil
}

// UpdatePinhole sets pinhole id's lease to lease from now (clamped as in
// AddPinhole): UPnP UpdatePinhole, which may shorten it too.
func (c *Core) UpdatePinhole(ctx context.Context, req Requester, id uint16, lease time.Duration) (Pinhole, error) {
	req = req.normalize()
	if c.pol.DisablePinholes && !req.admin() {
		return Pinhole{}, ErrPinholesDisabled
	}
	pb, err := c.pinBackend()
	if err != nil {
		return Pinhole{}, err
	}
	if lease <= 0 {
		return Pinhole{}, fmt.Errorf("%w: a pinhole needs a lease of 1 to 86400 seconds", ErrInvalidArgs)
	}
	t := c.pins
	t.ops.Lock()
	defer t.ops.Unlock()
	if err := c.closedErr(); err != nil {
		return Pinhole{}, err
	}
	held, err := c.lookupPinhole(req, id)
	if err != nil {
		return Pinhole{}, err
	}
	now := c.now()
	p := held
	p.Expires = now.Add(c.clampPinholeLease(lease))
	if err := pb.AddPinhole(ctx, p.Rule(now)); err != nil {
		return Pinhole{}, &BackendError{Backend: c.backend.Name(), Op: "update pinhole", Err: err}
	}
	t.mu.Lock()
	next := t.next
	t.mu.Unlock()
	if err := c.savePins([]Pinhole{p}, nil, next); err != nil {
		c.restorePinhole(pb, held)
		return Pinhole{}, err
	}
	t.mu.Lock()
	t.putLocked(p)
	c.rearmPinsLocked()
	t.mu.Unlock()
	c.auditPinhole(now, AuditRenewed, req, p, "")
	c.notifyPins()
	return p, nil
}

// DeletePinhole closes pinhole id.
func (c *Core) DeletePinhole(ctx context.Context, req Requester, id uint16) error {
	req = req.normalize()
	if c.pol.DisablePinholes && !req.admin() {
		return ErrPinholesDisabled
	}
	pb, err := c.pinBackend()
	if err != nil {
		return err
	}
	t := c.pins
	t.ops.Lock()
	defer t.ops.Unlock()
	if err := c.closedErr(); err != nil {
		return err
	}
	p, err := c.lookupPinhole(req, id)
	if err != nil {
		return err
	}
	return c.removePinhole(ctx, pb, req, p, AuditDeleted)
}

// removePinhole closes p; the caller holds t.ops.
func (c *Core) removePinhole(ctx context.Context, pb PinholeBackend, req Requester, p Pinhole, ev AuditEvent) error {
	t := c.pins
	now := c.now()
	if err := pb.DeletePinhole(ctx, p.Rule(now)); err != nil {
		return &BackendError{Backend: c.backend.Name(), Op: "delete pinhole", Err: err}
	}
	t.mu.Lock()
	next := t.next
	t.mu.Unlock()
	if err := c.savePins(nil, []uint16{p.ID}, next); err != nil {
		c.restorePinhole(pb, p)
		return err
	}
	t.mu.Lock()
	t.removeLocked(p.ID)
	t.mu.Unlock()
	c.auditPinhole(now, ev, req, p, "")
	c.notifyPins()
	if ev == AuditExpired {
		c.log.Info("pinhole expired", "pinhole", p)
	} else {
		c.log.Info("pinhole closed", "pinhole", p, "by", req)
	}
	return nil
}

// PinholePackets returns how many packets went through pinhole id;
// counted is false when the backend cannot count.
func (c *Core) PinholePackets(ctx context.Context, req Requester, id uint16) (packets uint64, counted bool, err error) {
	req = req.normalize()
	if c.pol.DisablePinholes && !req.admin() {
		return 0, false, ErrPinholesDisabled
	}
	pb, err := c.pinBackend()
	if err != nil {
		return 0, false, err
	}
	p, err := c.lookupPinhole(req, id)
	if err != nil {
		return 0, false, err
	}
	n, counted, err := pb.PinholePackets(ctx, p.Rule(c.now()))
	if err != nil {
		return 0, false, &BackendError{Backend: c.backend.Name(), Op: "count pinhole", Err: err}
	}
	return n, counted, nil
}

// Pinhole returns pinhole id as req may see it.
func (c *Core) Pinhole(req Requester, id uint16) (Pinhole, error) {
	return c.lookupPinhole(req.normalize(), id)
}

// FindPinhole returns the pinhole with key k, for PCP, which names
// pinholes by their tuple.
func (c *Core) FindPinhole(k PinholeKey) (Pinhole, bool) {
	t := c.pins
	t.mu.Lock()
	defer t.mu.Unlock()
	id, ok := t.byKey[k]
	if !ok {
		return Pinhole{}, false
	}
	return *t.byID[id], true
}

// Pinholes returns every pinhole, by ID.
func (c *Core) Pinholes() []Pinhole {
	t := c.pins
	t.mu.Lock()
	out := make([]Pinhole, 0, len(t.byID))
	for _, p := range t.byID {
		out = append(out, *p)
	}
	t.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID }) // not slices.SortFunc: see CompareRules
	return out
}

// PinholeCount returns the number of pinholes.
func (c *Core) PinholeCount() int {
	t := c.pins
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.byID)
}

// ParkedPinholes returns the saved pinholes the backend refused at start.
func (c *Core) ParkedPinholes() []Pinhole {
	t := c.pins
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Clone(t.parked)
}

// rearmPinsLocked points the pinhole timer at the earliest lease end.
// A scan: the table is small, and changes are rare next to reads.
func (c *Core) rearmPinsLocked() {
	t := c.pins
	var at time.Time
	for _, p := range t.byID {
		if at.IsZero() || p.Expires.Before(at) {
			at = p.Expires
		}
	}
	if at.IsZero() {
		if t.timer != nil {
			t.timer.Stop()
		}
		return
	}
	d := min(max(at.Sub(c.clock.Now()), 0), maxTimerSleep)
	if t.timer == nil {
		t.timer = c.clock.AfterFunc(d, c.expirePins)
	} else {
		t.timer.Reset(d)
	}
}

// expirePins closes the pinholes whose lease ended.
func (c *Core) expirePins() {
	t := c.pins
	t.ops.Lock()
	defer t.ops.Unlock()
	if c.closedErr() != nil {
		return
	}
	now := c.now()
	t.mu.Lock()
	var due []Pinhole
	for _, p := range t.byID {
		if !p.Expires.After(now) {
			due = append(due, *p)
		}
	}
	t.mu.Unlock()
	pb, err := c.pinBackend()
	failed := false
	if err == nil {
		for _, p := range due {
			ctx, cancel := context.WithTimeout(context.Background(), backgroundTimeout)
			if err := c.removePinhole(ctx, pb, Requester{Source: SourceAdmin}, p, AuditExpired); err != nil {
				c.log.Error("could not close an expired pinhole; retrying", "pinhole", p, "err", err)
				failed = true
			}
			cancel()
		}
	}
	t.mu.Lock()
	if failed && t.timer != nil {
		t.timer.Reset(expiryRetry)
	} else {
		c.rearmPinsLocked()
	}
	t.mu.Unlock()
}

func (c *Core) auditPinhole(now time.Time, ev AuditEvent, req Requester, p Pinhole, reason string) {
	r := NewPinholeAuditRecord(now, ev, req, p)
	r.Reason = reason
	if ev == AuditExpired || ev == AuditDropped || ev == AuditParked {
		r.Via, r.Client = p.Source.String(), p.Owner
	}
	c.audit(r)
}

// NewPinholeAuditRecord fills an audit record about pinhole p.
func NewPinholeAuditRecord(now time.Time, ev AuditEvent, req Requester, p Pinhole) AuditRecord {
	r := AuditRecord{
		Time: now, Event: ev, Via: req.Source.String(), Client: req.Addr, Family: "ipv6",
		PinholeID: p.ID, RemoteHost: p.RemoteHost, RemotePort: p.RemotePort,
		Description: p.Description, Result: "ok",
	}
	if p.Protocol != 0 {
		r.Protocol = p.Protocol.String()
	}
	if p.InternalAddr.IsValid() {
		r.Internal = netip.AddrPortFrom(p.InternalAddr, p.InternalPort)
	}
	if ev == AuditAdded || ev == AuditRenewed {
		r.LeaseSeconds = p.LeaseSeconds(now)
	}
	return r
}

// restorePins loads the saved pinholes, drops the expired and those the
// policy now refuses, and makes the backend hold the rest: reconciled
// without a flush when it can list (PinholeLister), a pinhole it refuses
// parked. Called by New.
func (c *Core) restorePins(ctx context.Context) error {
	t := c.pins
	ps, ok := c.store.(PinholeStore)
	var saved []Pinhole
	if ok {
		var err error
		if saved, t.next, err = ps.LoadPinholes(); err != nil {
			return fmt.Errorf("gateway: loading saved pinholes: %w", err)
		}
		if t.next == 0 {
			t.next = 1
		}
	}
	pb, err := c.pinBackend()
	if err != nil {
		if len(saved) > 0 {
			c.log.Warn("saved IPv6 pinholes are not restored: the backend cannot open pinholes; they stay saved for a backend that can",
				"backend", c.backend.Name(), "pinholes", len(saved))
		}
		return nil
	}
	sort.Slice(saved, func(i, j int) bool { return saved[i].ID < saved[j].ID })
	now := c.now()
	var drop []uint16
	keep := saved[:0]
	for _, p := range saved {
		p.Expires, p.Created = p.Expires.Round(0), p.Created.Round(0)
		reason := ""
		switch {
		case !p.Expires.After(now):
			reason = "its lease ended while the gateway was down"
		case c.validPinholeTarget(p.InternalAddr) != nil:
			reason = c.validPinholeTarget(p.InternalAddr).Error()
		case p.Source != SourceAdmin && c.pol.DisablePinholes:
			reason = "the policy no longer allows pinholes"
		case !c.pinholePermitted(Requester{Addr: p.Owner, Source: p.Source}, p.InternalAddr, p.InternalPort):
			reason = "the permission rules no longer allow it"
		}
		if _, dup := t.byKey[p.Key()]; dup && reason == "" {
			reason = "another saved pinhole has the same tuple"
		}
		if reason != "" {
			drop = append(drop, p.ID)
			c.auditPinhole(now, AuditDropped, Requester{Source: SourceAdmin}, p, reason)
			c.log.Info("saved pinhole not restored", "pinhole", p, "reason", reason)
			continue
		}
		if max := now.Add(c.clampPinholeLease(p.Expires.Sub(now))); p.Expires.After(max) {
			p.Expires = max
		}
		keep = append(keep, p)
		t.putLocked(p)
	}
	if len(drop) > 0 {
		if err := c.savePins(nil, drop, t.next); err != nil {
			c.log.Warn("could not forget dropped pinholes in the store; they will be dropped again next start", "err", err)
		}
	}
	// Reconcile: remove what is installed but not kept, (re)add the kept.
	if pl, ok := pb.(PinholeLister); ok {
		installed, err := pl.InstalledPinholes(ctx)
		if err != nil {
			c.log.Warn("could not list installed pinholes; stray ones stay until removed by hand", "err", err)
		}
		for _, r := range installed {
			if _, ok := t.byKey[r.PinholeKey]; !ok {
				if err := pb.DeletePinhole(ctx, r); err != nil {
					c.log.Warn("could not remove a stray pinhole", "rule", r, "err", err)
				}
			}
		}
	}
	for _, p := range keep {
		if err := pb.AddPinhole(ctx, p.Rule(now)); err != nil {
			t.removeLocked(p.ID)
			t.parked = append(t.parked, p)
			c.auditPinhole(now, AuditParked, Requester{Source: SourceAdmin}, p, err.Error())
			c.log.Warn("the backend refused a saved pinhole; it stays saved but is not served", "pinhole", p, "err", err)
		}
	}
	if n := len(t.byID); n > 0 {
		c.log.Info("restored IPv6 pinholes", "count", n)
	}
	return nil
}

// closePins stops the pinhole timer and, with flush, closes every pinhole.
func (c *Core) closePins(ctx context.Context, flush bool) error {
	t := c.pins
	t.ops.Lock()
	defer t.ops.Unlock()
	t.mu.Lock()
	if t.timer != nil {
		t.timer.Stop()
	}
	var all []Pinhole
	if flush {
		for _, p := range t.byID {
			all = append(all, *p)
		}
	}
	t.mu.Unlock()
	if len(all) == 0 {
		return nil
	}
	pb, err := c.pinBackend()
	if err != nil {
		return nil
	}
	var errs []error
	var ids []uint16
	now := c.now()
	for _, p := range all {
		if err := pb.DeletePinhole(ctx, p.Rule(now)); err != nil {
			errs = append(errs, &BackendError{Backend: c.backend.Name(), Op: "delete pinhole", Err: err})
			continue
		}
		ids = append(ids, p.ID)
		c.auditPinhole(now, AuditDeleted, Requester{Source: SourceAdmin}, p, "the gateway stopped with flush on exit")
	}
	t.mu.Lock()
	for _, id := range ids {
		t.removeLocked(id)
	}
	next := t.next
	t.mu.Unlock()
	if err := c.savePins(nil, ids, next); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
