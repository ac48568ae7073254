// Package upstream chains the gateway's mappings to the router above it,
// for double NAT and carrier-grade NAT (RFC 6970, UPnP IGD–PCP
// interworking; RFC 7648, PCP proxy). It implements gateway.Upstream with
// the client halves of packages pcp, natpmp and igd: for every mapping the
// gateway grants, it makes the matching mapping on the router above, whose
// internal side is this router's external address and the local mapping's
// external port, and owns it: its PCP nonce, its renewals at half-life,
// its re-creation when the router above restarts, and its deletion.
//
// The router above is looked for through the external interface only:
// PCP and NAT-PMP go to that interface's default gateway, from the
// interface's address; SSDP searches go out of that interface only, and
// only a description served by that gateway (or the configured URL) is
// used. On a CGNAT segment other subscribers could answer too.
//
// A Manager runs beside the daemon: Run discovers the router above and
// keeps probing it (with backoff while it is down), listens on the
// external interface for its restarts (PCP ANNOUNCE and NAT-PMP address
// announcements, UDP 5350), renews every half at half of its grant, makes
// again within a round trip what a restarted router above lost, deletes
// the halves a killed gateway left uncommitted, and keeps retrying the
// deletes a dead router above could not take.
package upstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/portfwd/portfwd/gateway"
	"github.com/portfwd/portfwd/igd"
	"github.com/portfwd/portfwd/internal/addrclass"
	"github.com/portfwd/portfwd/internal/netroute"
	"github.com/portfwd/portfwd/natpmp"
	"github.com/portfwd/portfwd/pcp"
	"github.com/portfwd/portfwd/upnp"
)

// Modes of Config.Mode.
const (
	ModeOff    = "off"
	ModeAuto   = "auto"
	ModePCP    = "pcp"
	ModeNATPMP = "natpmp"
	ModeUPnP   = "upnp"
)

// Defaults.
const (
	DefaultMaxLifetime   = 24 * time.Hour
	DefaultCheckInterval = 30 * time.Second
	// requestTimeout bounds one request to the router above made while a
	// client waits: PCP's and NAT-PMP's retransmissions fit in it.
	requestTimeout = 2 * time.Second
	// unmapTimeout bounds the delete tried at once; a failed one is
	// retried in the background.
	unmapTimeout = time.Second
	// minBackoff is the first retry of a router above that stopped
	// answering. It is short: miniupnpd sends its ANNOUNCE before its STUN
	// test (seconds, when an answer is late) and only then serves, so after
	// a restart it is asked again quickly until it answers.
	minBackoff = 100 * time.Millisecond
	maxBackoff = 30 * time.Second
	// parallel bounds the requests in flight when re-creating every half.
	parallel = 16
	// stickFor is how long a router above that stopped answering is
	// asked again in the protocol it spoke before the others are tried.
	stickFor = 30 * time.Second
)

// Config configures a Manager.
type Config struct {
	// Mode is "off", "auto", "pcp", "natpmp", "upnp", or the URL of the
	// router above's UPnP description. "auto" chains only when the
	// external address is private or CGNAT, trying PCP, NAT-PMP, then
	// UPnP, as Protocols allows.
	Mode string
	// Protocols is the allow-list of protocols the gateway may speak to
	// the router above, in order of preference; empty means all three.
	Protocols []string
	// Interface is the external interface; the router above is its
	// default gateway.
	Interface string
	// LocalAddr returns this router's external address (the upstream
	// mappings' internal address).
	LocalAddr func() netip.Addr
	// Gateway, if valid, is the router above instead of the default
	// gateway of Interface (tests, unusual routing).
	Gateway netip.Addr
	// MaxLifetime caps the lifetime asked upstream; 0 means
	// DefaultMaxLifetime.
	MaxLifetime time.Duration
	// CheckInterval is how often the router above is probed while up (for
	// a restart that no announcement told, and an address change); 0 means
	// DefaultCheckInterval.
	CheckInterval time.Duration
	// Description prefixes the upstream mappings' descriptions (UPnP).
	Description string
	// OnPublic is called with the router above's public address when it
	// is learned or changes, and with the zero Addr when chaining stops;
	// the daemon reports it to LAN clients and announces it.
	OnPublic func(netip.Addr)
	// OnChanged is called when mappings' public ports changed (a
	// restarted router above granted others), for announcements.
	OnChanged func()
	Logger    *slog.Logger
}

// Status is what the admin page and /metrics show of the router above.
type Status struct {
	Mode     string
	State    string // "off", "not needed", "searching", "up", "down"
	Method   string // "pcp", "natpmp", "upnp"
	Server   string
	Public   netip.Addr
	Since    time.Time
	LastErr  string
	NextTry  time.Time
	Chained  int // mappings with an upstream half
	Pending  int // deletes waiting for the router above
	Requests map[string]uint64
	// Recreated counts halves made again, by reason ("restart",
	// "renewal", "start").
	Recreated map[string]uint64
}

// Manager is the gateway.Upstream of the daemon. Create it with New, give
// it to gateway.Config.Upstream, Attach the Core, then Run it.
type Manager struct {
	cfg  Config
	log  *slog.Logger
	core *gateway.Core

	wake chan struct{}
	// methodsFor returns the protocols to try with the router above at
	// gw; tests replace it.
	methodsFor func(gw netip.Addr) []method
	// stickFor is stickFor; tests shorten it.
	stickFor time.Duration

	mu        sync.Mutex
	m         method // nil until discovered
	state     string
	public    netip.Addr
	since     time.Time
	lastErr   string
	nextTry   time.Time
	backoff   time.Duration
	recreate  string // a reason to re-make every half, "" when none
	checkSoon bool   // probe the router above at once (checkNow)
	bootID    int    // the router above's last BOOTID.UPNP.ORG, 0 if none seen
	resub     bool   // the router above restarted: subscribe to its events anew
	unmaps    []pendingUnmap
	requests  map[string]uint64
	recreated map[string]uint64
	// former is the protocol the router above spoke before it switched
	// (see Map), with whether it still answers; nil when none.
	former   *formerMethod
	formerMu sync.Mutex // held while former is checked
}

// formerMethod is a protocol the router above no longer is spoken to in.
type formerMethod struct {
	m       method
	checked time.Time
	alive   bool
}

// pendingUnmap is a half to delete from the router above that it did not
// take at once; d.Mapping holds the half, d.ID its journal record.
type pendingUnmap struct {
	d     gateway.UpstreamDelete
	until time.Time
	next  time.Time
	wait  time.Duration
}

// maxPending bounds the deletes kept waiting; past it the oldest is given
// up (its upstream lease ends it).
const maxPending = 4096

// New returns a Manager; it does nothing until Run.
func New(cfg Config) *Manager {
	if cfg.MaxLifetime <= 0 {
		cfg.MaxLifetime = DefaultMaxLifetime
	}
	if cfg.CheckInterval <= 0 {
		cfg.CheckInterval = DefaultCheckInterval
	}
	if cfg.Mode == "" {
		cfg.Mode = ModeAuto
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	st := "searching"
	if cfg.Mode == ModeOff {
		st = "off"
	}
	u := &Manager{cfg: cfg, log: cfg.Logger, wake: make(chan struct{}, 1), state: st,
		requests: map[string]uint64{}, recreated: map[string]uint64{}}
	u.methodsFor = u.candidates
	u.stickFor = stickFor
	return u
}

// ValidMode reports whether s is a valid Config.Mode, with the reason.
func ValidMode(s string) error {
	switch s {
	case "", ModeOff, ModeAuto, ModePCP, ModeNATPMP, ModeUPnP:
		return nil
	}
	if strings.HasPrefix(s, "http://") {
		return nil
	}
	return fmt.Errorf("upstream %q: want off, auto, pcp, natpmp, upnp or the http:// URL of the router above's UPnP description", s)
}

// Attach gives the Manager the Core whose mappings it chains.
func (u *Manager) Attach(c *gateway.Core) { u.core = c }

var _ gateway.Upstream = (*Manager)(nil)

// Prepare implements gateway.Upstream: a mapping is chained once a router
// above was found (even while it is down, so that the client is refused
// rather than given a mapping the Internet cannot reach).
func (u *Manager) Prepare(m gateway.Mapping) (gateway.UpstreamHalf, bool) {
	u.mu.Lock()
	meth := u.m
	u.mu.Unlock()
	if meth == nil {
		return gateway.UpstreamHalf{}, false
	}
	return gateway.UpstreamHalf{Method: meth.name(), Nonce: pcp.NewNonce()}, true
}

// Map implements gateway.Upstream.
func (u *Manager) Map(ctx context.Context, m gateway.Mapping, h gateway.UpstreamHalf, exact bool) (gateway.UpstreamHalf, error) {
	u.mu.Lock()
	meth, state := u.m, u.state
	u.mu.Unlock()
	// fresh: a half the router above does not hold yet (an intent).
	fresh := !h.Public.IsValid()
	if meth == nil || meth.name() != h.Method {
		// The half was made through another method (the router above
		// changed protocol): start again with this one.
		if meth == nil {
			return h, &gateway.UpstreamError{Kind: gateway.ErrUpstreamDown, Server: "none", Err: errors.New("no router above answers")}
		}
		if h.Method != "" && h.Public.IsValid() {
			// Its half may still be held above under the old protocol:
			// deleted first, in that protocol, while it still answers.
			// After the new half is made it could not be: a router
			// above with one mapping table (miniupnpd) would delete the
			// new one, which has the same internal port.
			u.unmapFormer(ctx, m)
		}
		// The nonce is kept (every half has one, whatever its protocol):
		// this new half is not journaled before it is asked for, and a
		// gateway killed before recording it asks again with the same
		// nonce, which a PCP server takes as the same mapping.
		nonce := h.Nonce
		if nonce == ([12]byte{}) {
			nonce = pcp.NewNonce()
		}
		h = gateway.UpstreamHalf{Method: meth.name(), Nonce: nonce, Public: h.Public}
		fresh = true
	}
	if state == "down" {
		u.mu.Lock()
		since := u.since
		u.mu.Unlock()
		return h, upErr(meth, gateway.ErrUpstreamDown, fmt.Errorf("no answer since %s; retrying with backoff", since.Format(time.TimeOnly)))
	}
	now := time.Now()
	life := u.cfg.MaxLifetime
	if !m.Permanent() {
		life = min(life, max(m.Expires.Sub(now), 2*time.Minute))
	}
	want := m.ExternalPort
	if h.Public.IsValid() {
		want = h.Public.Port()
	}
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	g, err := meth.mapHalf(ctx, halfRequest{proto: m.Protocol, internalPort: m.ExternalPort, want: want, exact: exact,
		lifetime: life, nonce: h.Nonce, description: u.description(m)})
	u.count("map", err)
	if err != nil {
		if errors.Is(err, gateway.ErrUpstreamDown) {
			u.setDown(err)
		}
		if fresh && !answered(err) {
			// No answer: the router above may have made the half and
			// lost only its reply. Nothing here will forward to it, so
			// it is deleted (journaled, retried) rather than left to
			// expire there; a PCP delete carries the nonce, and a delete
			// is skipped if a mapping here holds the port by then.
			lost := m
			lost.Upstream = &h
			u.queueUnmap(lost, now.Add(life))
		}
		return h, err
	}
	if g.lost {
		u.noticeRestart("epoch")
	}
	h.Public, h.Granted = g.public, now.Round(0)
	h.Expires = time.Time{}
	if g.lifetime > 0 {
		h.Expires = h.Granted.Add(g.lifetime)
	}
	return h, nil
}

func (u *Manager) description(m gateway.Mapping) string {
	d := u.cfg.Description
	if d == "" {
		d = "portfwd"
	}
	if host, err := os.Hostname(); err == nil {
		d += " " + host
	}
	return d + " " + m.Description
}

// Unmap implements gateway.Upstream. The Core calls it with m's key held,
// so the delete is tried at once; if the router above does not take it,
// it is journaled (Core.RecordUpstreamDelete) and retried with backoff,
// also after a restart, until done or until the half's upstream lease is
// over.
func (u *Manager) Unmap(ctx context.Context, m gateway.Mapping) {
	u.mu.Lock()
	meth, state := u.m, u.state
	u.mu.Unlock()
	if meth != nil && state == "up" && meth.name() == m.Upstream.Method {
		err := u.unmapNow(ctx, meth, m)
		if err == nil {
			return
		}
		u.log.Warn("could not delete a mapping on the router above; retrying in the background", "mapping", m, "err", err)
	}
	until := m.Upstream.Expires
	if until.IsZero() {
		until = time.Now().Add(u.cfg.MaxLifetime)
	}
	u.queueUnmap(m, until)
}

// formerRecheck is how long a former protocol's answering, or not, is
// trusted before it is asked again.
const formerRecheck = 30 * time.Second

// unmapFormer deletes m's half, made in a protocol the router above is no
// longer spoken to in, in that protocol, if the router above still
// answers it (asked once per formerRecheck, so that a switch from a dead
// protocol costs one probe, not one timeout per half). If it does not, the
// half is left: the new one asks for the same public port, which on a
// router above with one mapping table replaces it, and otherwise it ends
// with its lease there (at most MaxLifetime after its last renewal).
func (u *Manager) unmapFormer(ctx context.Context, m gateway.Mapping) {
	old := m.Upstream.Method
	f, ok := u.formerFor(ctx, old)
	if !ok {
		return
	}
	if err := u.unmapNow(ctx, f, m); err != nil {
		u.log.Warn("could not delete a half in the protocol it was made in before making it in the new one", "mapping", m, "old", old, "err", err)
		return
	}
	u.log.Info("deleted a half in the protocol it was made in; making it in the new one", "mapping", m, "old", old)
}

// formerFor returns the method for protocol name, which the router above
// is no longer spoken to in, and whether it still answers it.
func (u *Manager) formerFor(ctx context.Context, name string) (method, bool) {
	u.formerMu.Lock()
	defer u.formerMu.Unlock()
	f := u.former
	if f != nil && f.m.name() == name && time.Since(f.checked) <= formerRecheck {
		return f.m, f.alive
	}
	f = &formerMethod{checked: time.Now()}
	var err error
	if gw, gerr := u.gatewayAddr(); gerr == nil {
		for _, c := range u.methodsFor(gw) {
			if c.name() == name {
				f.m = c
			}
		}
	}
	if f.m != nil {
		pctx, cancel := context.WithTimeout(ctx, unmapTimeout)
		_, _, err = f.m.probe(pctx)
		cancel()
		f.alive = err == nil
	} else {
		f.m, err = &unnamed{n: name}, errors.New("not an allowed protocol any more")
	}
	if !f.alive {
		u.log.Warn("the router above no longer answers the protocol some halves were made in; they are made again in the new one, asking for the same public ports (a router above with one mapping table replaces them), or end with their leases there",
			"old", name, "err", err)
	}
	u.former = f
	return f.m, f.alive
}

// unnamed stands for a former protocol that may not be spoken (not
// allowed any more); it is never asked.
type unnamed struct{ n string }

func (x *unnamed) name() string   { return x.n }
func (x *unnamed) server() string { return "" }
func (x *unnamed) probe(context.Context) (netip.Addr, bool, error) {
	return netip.Addr{}, false, errors.New("not allowed")
}
func (x *unnamed) mapHalf(context.Context, halfRequest) (halfGrant, error) {
	return halfGrant{}, errors.New("not allowed")
}
func (x *unnamed) unmap(context.Context, gateway.Protocol, uint16, uint16, [12]byte) error {
	return errors.New("not allowed")
}

// unmapNow sends the delete of m's half.
func (u *Manager) unmapNow(ctx context.Context, meth method, m gateway.Mapping) error {
	ctx, cancel := context.WithTimeout(ctx, unmapTimeout)
	defer cancel()
	err := meth.unmap(ctx, m.Protocol, m.ExternalPort, m.Upstream.Public.Port(), m.Upstream.Nonce)
	u.count("unmap", err)
	return err
}

// queueUnmap journals m's half as a pending delete and queues it, to be
// tried until until.
func (u *Manager) queueUnmap(m gateway.Mapping, until time.Time) {
	d := gateway.UpstreamDelete{Mapping: m}
	if u.core != nil {
		var err error
		if d, err = u.core.RecordUpstreamDelete(m); err != nil {
			u.log.Error("could not journal a pending delete on the router above; it is retried, but lost if the gateway stops first", "mapping", m, "err", err)
		}
	}
	u.enqueue(pendingUnmap{d: d, until: until, next: time.Now().Add(minBackoff), wait: minBackoff})
}

// enqueue adds p to the pending deletes, giving up the oldest past
// maxPending.
func (u *Manager) enqueue(ps ...pendingUnmap) {
	u.mu.Lock()
	u.unmaps = append(u.unmaps, ps...)
	var over []pendingUnmap
	if n := len(u.unmaps) - maxPending; n > 0 {
		over = append([]pendingUnmap(nil), u.unmaps[:n]...)
		u.unmaps = append(u.unmaps[:0], u.unmaps[n:]...)
		clear(u.unmaps[len(u.unmaps) : len(u.unmaps)+n]) // what slices.Delete does: no stale references kept
	}
	u.mu.Unlock()
	for _, p := range over {
		u.log.Warn("too many deletes waiting for the router above; giving up the oldest (its lease there ends it)", "mapping", p.d.Mapping, "until", p.until)
		u.done(p)
	}
	u.poke()
}

// done forgets a pending delete's journal record.
func (u *Manager) done(p pendingUnmap) {
	if u.core != nil {
		u.core.UpstreamDeleteDone(p.d)
	}
}

// answered reports whether err carries the router above's answer (the
// request was refused, nothing made), as opposed to no answer at all or a
// grant it could not give back, after which the router above may hold the
// half.
func answered(err error) bool {
	var pe *pcp.ResultError
	var ne *natpmp.ResultError
	var ce *igd.ConflictError
	var ng *notGivenBackError
	switch {
	case errors.As(err, &ng):
		return false // the router above may still hold the other grant
	case errors.Is(err, errGivenBack):
		return true
	}
	return errors.As(err, &pe) || errors.As(err, &ne) || errors.As(err, &ce) || upnp.ErrorCode(err) != 0
}

func (u *Manager) count(op string, err error) {
	res := "ok"
	switch {
	case err == nil:
	case errors.Is(err, gateway.ErrUpstreamConflict):
		res = "conflict"
	case errors.Is(err, gateway.ErrUpstreamRefused):
		res = "refused"
	case errors.Is(err, gateway.ErrUpstreamExhausted):
		res = "exhausted"
	default:
		res = "failed"
	}
	u.mu.Lock()
	u.requests[op+"/"+res]++
	u.mu.Unlock()
}

func (u *Manager) poke() {
	select {
	case u.wake <- struct{}{}:
	default:
	}
}

// noticeRestart asks Run to make every half again at once.
func (u *Manager) noticeRestart(why string) {
	u.mu.Lock()
	if u.recreate == "" {
		u.recreate = why
	}
	if u.m == nil || u.state == "down" {
		u.nextTry = time.Time{} // it speaks again: try now, not at the end of the backoff
	}
	u.mu.Unlock()
	u.poke()
}

func (u *Manager) setDown(err error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.state != "down" {
		u.log.Warn("the router above stopped answering; new mappings are refused until it is back, existing ones are kept",
			"method", u.m.name(), "server", u.m.server(), "err", err)
		u.state, u.since, u.backoff = "down", time.Now(), minBackoff
		u.nextTry = time.Now().Add(u.backoff)
	}
	u.lastErr = err.Error()
	u.poke()
}

// Status returns the router above's status.
func (u *Manager) Status() Status {
	u.mu.Lock()
	defer u.mu.Unlock()
	s := Status{Mode: u.cfg.Mode, State: u.state, Public: u.public, Since: u.since, LastErr: u.lastErr,
		NextTry: u.nextTry, Pending: len(u.unmaps), Requests: maps(u.requests), Recreated: maps(u.recreated)}
	if u.m != nil {
		s.Method, s.Server = u.m.name(), u.m.server()
	}
	if u.core != nil {
		s.Chained = len(u.chained())
	}
	return s
}

func maps(m map[string]uint64) map[string]uint64 {
	out := make(map[string]uint64, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// Public returns the router above's public address while chaining is on,
// else the zero Addr.
func (u *Manager) Public() netip.Addr {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.m == nil {
		return netip.Addr{}
	}
	return u.public
}

// all returns every mapping of the table.
func (u *Manager) all() []gateway.Mapping {
	admin := gateway.Requester{Source: gateway.SourceAdmin}
	return append(u.core.List(admin, gateway.TCP, 0, math.MaxUint16, 0), u.core.List(admin, gateway.UDP, 0, math.MaxUint16, 0)...)
}

func (u *Manager) chained() []gateway.Mapping {
	var out []gateway.Mapping
	for _, m := range u.all() {
		if m.Chained() {
			out = append(out, m)
		}
	}
	return out
}

// gatewayAddr is the router above: Config.Gateway, or the default gateway
// of the external interface (main table).
func (u *Manager) gatewayAddr() (netip.Addr, error) {
	if u.cfg.Gateway.IsValid() {
		return u.cfg.Gateway, nil
	}
	data, err := os.ReadFile("/proc/net/route")
	if err != nil {
		return netip.Addr{}, fmt.Errorf("reading the routing table: %w", err)
	}
	routes, err := netroute.ParseProcNetRoute(data)
	if err != nil {
		return netip.Addr{}, err
	}
	// The routes through the interface (a loop, not slices.DeleteFunc:
	// one generic instantiation fewer in the router build).
	var through []netroute.Route
	for _, r := range routes {
		if r.Iface == u.cfg.Interface {
			through = append(through, r)
		}
	}
	routes = through
	gw, _, err := netroute.DefaultGatewayFrom(routes)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("no default route through the external interface %s: %w", u.cfg.Interface, err)
	}
	return gw, nil
}

// needed reports whether auto mode should chain: the external interface's
// address is private (RFC 1918) or carrier-grade NAT (RFC 6598), the
// addresses a router above hands out. Other classes (documentation,
// reserved) are no sign of a router above; an explicit mode chains
// whatever the address.
func (u *Manager) needed() bool {
	if u.cfg.Mode != ModeAuto {
		return true
	}
	a := u.cfg.LocalAddr()
	switch addrclass.Of(a) {
	case addrclass.Private, addrclass.CGNAT:
		return true
	}
	return false
}

func (u *Manager) allowed(p string) bool {
	return len(u.cfg.Protocols) == 0 || slices.Contains(u.cfg.Protocols, p)
}

// candidates are the methods to try, in order.
func (u *Manager) candidates(gw netip.Addr) []method {
	local := u.cfg.LocalAddr()
	var out []method
	add := func(name string, m func() method) {
		if u.allowed(name) {
			out = append(out, m())
		}
	}
	switch mode := u.cfg.Mode; {
	case mode == ModePCP:
		add(ModePCP, func() method { return newPCP(gw, local, u.cfg.Interface) })
	case mode == ModeNATPMP:
		add(ModeNATPMP, func() method { return newNATPMP(gw) })
	case mode == ModeUPnP:
		add(ModeUPnP, func() method { return newUPnP(gw, local, u.cfg.Interface, "", u.log) })
	case strings.HasPrefix(mode, "http://"):
		add(ModeUPnP, func() method { return newUPnP(gw, local, u.cfg.Interface, mode, u.log) })
	default:
		add(ModePCP, func() method { return newPCP(gw, local, u.cfg.Interface) })
		add(ModeNATPMP, func() method { return newNATPMP(gw) })
		add(ModeUPnP, func() method { return newUPnP(gw, local, u.cfg.Interface, "", u.log) })
	}
	return out
}

// discover finds a method the router above answers, with its public
// address.
func (u *Manager) discover(ctx context.Context) (method, netip.Addr, error) {
	gw, err := u.gatewayAddr()
	if err != nil {
		return nil, netip.Addr{}, err
	}
	var errs []error
	for _, m := range u.methodsFor(gw) {
		pctx, cancel := context.WithTimeout(ctx, requestTimeout)
		pub, _, err := m.probe(pctx)
		cancel()
		if err == nil {
			return m, pub, nil
		}
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		return nil, netip.Addr{}, errors.New("no protocol is allowed to the router above (upstream_protocols)")
	}
	return nil, netip.Addr{}, errors.Join(errs...)
}

// Run discovers the router above and keeps the halves until ctx ends.
func (u *Manager) Run(ctx context.Context) { u.run(ctx, true) }

// run is Run, with or without the announcement listener (tests).
func (u *Manager) run(ctx context.Context, listen bool) {
	if u.cfg.Mode == ModeOff || u.core == nil {
		return
	}
	if listen {
		go u.listenAnnouncements(ctx)
		go u.listenNotify(ctx)
		go u.watchEvents(ctx)
	}
	// The halves a killed gateway left (uncommitted intents, leases not
	// restored, journaled pending deletes): deleted upstream once it
	// answers, before every mapping's half is made again.
	orphans := u.core.UpstreamOrphans()
	if len(orphans) > 0 {
		now := time.Now()
		ps := make([]pendingUnmap, 0, len(orphans))
		for _, o := range orphans {
			until := o.Mapping.Upstream.Expires
			if until.IsZero() {
				until = now.Add(u.cfg.MaxLifetime)
			}
			ps = append(ps, pendingUnmap{d: o, until: until, next: now, wait: minBackoff})
		}
		u.enqueue(ps...)
	}
	timer := time.NewTimer(0)
	defer timer.Stop()
	nextCheck := time.Time{}
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-u.wake:
		}
		now := time.Now()
		u.mu.Lock()
		meth, state, nextTry := u.m, u.state, u.nextTry
		if u.checkSoon {
			u.checkSoon = false
			nextCheck = now
		}
		u.mu.Unlock()

		switch {
		case meth == nil || state == "down":
			if now.Before(nextTry) {
				break
			}
			if !u.needed() {
				u.setState("not needed", nil, netip.Addr{}, nil)
				nextTry = now.Add(u.cfg.CheckInterval)
				u.mu.Lock()
				u.nextTry = nextTry
				u.mu.Unlock()
				break
			}
			var (
				m   method
				pub netip.Addr
				err error
			)
			if meth != nil && now.Sub(u.Status().Since) < u.stickFor {
				// The router above that stopped answering is asked
				// again in the same protocol: a restarting miniupnpd
				// serves UPnP before PCP and NAT-PMP, and switching
				// protocols would make every half again under another
				// name, leaving the old ones to expire upstream.
				m = meth
				pctx, cancel := context.WithTimeout(ctx, requestTimeout)
				pub, _, err = m.probe(pctx)
				cancel()
			} else {
				m, pub, err = u.discover(ctx)
			}
			if err != nil {
				u.retryLater(meth, err)
				break
			}
			u.setState("up", m, pub, nil)
			if len(orphans) > 0 {
				u.log.Info("deleting the halves on the router above that no mapping here forwards to: asked for but never recorded as granted (the last run was killed meanwhile), of leases not restored, or deletes still pending",
					"count", len(orphans))
				u.retryUnmaps(ctx)
				orphans = nil
			}
			u.noticeRestart("start")
			nextCheck = now.Add(u.cfg.CheckInterval)
		case !now.Before(nextCheck):
			pctx, cancel := context.WithTimeout(ctx, requestTimeout)
			pub, lost, err := meth.probe(pctx)
			cancel()
			u.count("probe", err)
			if err != nil {
				u.setDown(err)
				break
			}
			if lost {
				u.noticeRestart("restart")
			}
			u.setState("up", meth, pub, nil)
			nextCheck = now.Add(u.cfg.CheckInterval)
		}
		u.work(ctx)
		timer.Reset(u.nextWake(nextCheck))
	}
}

// retryLater records a failed discovery or probe and schedules the next
// try with backoff.
func (u *Manager) retryLater(meth method, err error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.backoff == 0 {
		u.backoff = minBackoff
	} else {
		u.backoff = min(2*u.backoff, maxBackoff)
	}
	u.nextTry = time.Now().Add(u.backoff)
	if u.lastErr != err.Error() {
		u.log.Warn("no router above answers yet; mappings stay local (unreachable from the Internet through a double NAT) until one does",
			"interface", u.cfg.Interface, "retry_in", u.backoff, "err", err)
	}
	u.lastErr = err.Error()
	if meth == nil && u.state != "down" {
		u.state = "searching"
	}
}

// setState records a (re)discovered or re-probed router above.
func (u *Manager) setState(state string, m method, pub netip.Addr, err error) {
	u.mu.Lock()
	was, wasPub, wasM := u.state, u.public, u.m
	u.state, u.m, u.public = state, m, pub
	if was != state {
		u.since = time.Now()
	}
	u.backoff, u.nextTry = 0, time.Time{}
	if err == nil && state == "up" {
		u.lastErr = ""
	}
	u.mu.Unlock()
	if state == "up" && (was != "up" || wasM != m) {
		u.log.Info("chaining mappings to the router above", "method", m.name(), "server", m.server(), "public_address", pub,
			"interface", u.cfg.Interface)
	}
	if state == "up" && wasPub != pub {
		if wasPub.IsValid() {
			u.log.Warn("the router above's public address changed", "was", wasPub, "now", pub)
			u.noticeRestart("address")
		}
		if u.cfg.OnPublic != nil {
			u.cfg.OnPublic(pub)
		}
	}
	if state == "not needed" && wasPub.IsValid() && u.cfg.OnPublic != nil {
		u.cfg.OnPublic(netip.Addr{})
	}
}

// nextWake is how long Run sleeps: until the next renewal, pending
// delete, retry or check.
func (u *Manager) nextWake(nextCheck time.Time) time.Duration {
	now := time.Now()
	at := now.Add(u.cfg.CheckInterval)
	if !nextCheck.IsZero() {
		at = nextCheck
	}
	u.mu.Lock()
	if (u.m == nil || u.state == "down") && !u.nextTry.IsZero() && u.nextTry.Before(at) {
		at = u.nextTry
	}
	for _, p := range u.unmaps {
		if p.next.Before(at) {
			at = p.next
		}
	}
	up := u.m != nil && u.state == "up"
	u.mu.Unlock()
	if up {
		for _, m := range u.chained() {
			if r := m.Upstream.RenewAt(); !r.IsZero() && r.Before(at) {
				at = r
			}
		}
	}
	return max(at.Sub(now), 10*time.Millisecond)
}

// work renews what is due, re-makes everything after a restart, and
// retries pending deletes, while the router above is up.
func (u *Manager) work(ctx context.Context) {
	u.mu.Lock()
	up := u.m != nil && u.state == "up"
	why := u.recreate
	if up {
		u.recreate = ""
	}
	u.mu.Unlock()
	if !up {
		return
	}
	now := time.Now()
	var due []gateway.Mapping
	for _, m := range u.all() {
		switch {
		case !m.Enabled:
		case why != "":
			due = append(due, m) // every mapping: re-made, or chained for the first time
		case !m.Chained():
		case !m.Upstream.RenewAt().IsZero() && !now.Before(m.Upstream.RenewAt()):
			due = append(due, m)
		}
	}
	if len(due) > 0 {
		reason := why
		if reason == "" {
			reason = "renewal"
		}
		u.rechain(ctx, due, reason)
	}
	u.retryUnmaps(ctx)
}

// rechain makes the halves of ms again, parallel bounded, most recently
// made first.
func (u *Manager) rechain(ctx context.Context, ms []gateway.Mapping, reason string) {
	start := time.Now()
	sort.Slice(ms, func(i, j int) bool { return ms[i].Created.After(ms[j].Created) }) // not slices.SortFunc: one sort routine in the router build
	sem := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	var mu sync.Mutex
	changed, failed := 0, 0
	for _, m := range ms {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			got, err := u.core.Rechain(ctx, m.Key())
			mu.Lock()
			defer mu.Unlock()
			switch {
			case errors.Is(err, gateway.ErrNoSuchEntry):
			case err != nil:
				failed++
				u.log.Warn("could not make a mapping's half on the router above again", "mapping", m, "reason", reason, "err", err)
			default:
				if got.Half().Public != m.Half().Public {
					changed++
				}
			}
		}()
	}
	wg.Wait()
	u.mu.Lock()
	u.recreated[reason] += uint64(len(ms) - failed)
	u.mu.Unlock()
	lvl := slog.LevelDebug
	if reason != "renewal" {
		lvl = slog.LevelInfo
	}
	u.log.Log(ctx, lvl, "made the mappings' halves on the router above again", "reason", reason, "count", len(ms),
		"failed", failed, "public_changed", changed, "took", time.Since(start).Round(time.Microsecond))
	if changed > 0 && u.cfg.OnChanged != nil {
		u.cfg.OnChanged()
	}
}

// retryUnmaps sends the pending deletes that are due, each with its key
// held and only while no mapping here holds that port chained again
// (Core.UnlessChained); those whose upstream lease is over are dropped.
func (u *Manager) retryUnmaps(ctx context.Context) {
	u.mu.Lock()
	meth := u.m
	now := time.Now()
	var due, gone []pendingUnmap
	keep := u.unmaps[:0]
	for _, p := range u.unmaps {
		switch {
		case now.After(p.until):
			gone = append(gone, p) // its upstream lease is over: nothing left to delete
		case now.Before(p.next):
			keep = append(keep, p)
		default:
			due = append(due, p)
		}
	}
	u.unmaps = keep
	u.mu.Unlock()
	for _, p := range gone {
		u.done(p)
	}
	var again []pendingUnmap
	for _, p := range due {
		m := p.d.Mapping
		var err error
		ran, cerr := u.core.UnlessChained(ctx, m.Key(), func() {
			switch {
			case meth != nil && meth.name() == m.Upstream.Method:
				err = u.unmapNow(ctx, meth, m)
			case meth != nil:
				if f, ok := u.formerFor(ctx, m.Upstream.Method); ok {
					err = u.unmapNow(ctx, f, m)
				} else {
					err = errors.New("the router above no longer answers " + m.Upstream.Method)
				}
			default:
				err = errors.New("no router above answers")
			}
		})
		switch {
		case cerr != nil:
			err = cerr
		case !ran:
			u.log.Debug("a pending delete on the router above is dropped: a mapping here holds the port again, and its half replaced the old one",
				"mapping", m)
			u.done(p)
			continue
		case err == nil:
			u.log.Info("deleted a mapping on the router above after retrying", "mapping", m)
			u.done(p)
			continue
		}
		p.wait = min(2*p.wait, maxBackoff)
		p.next = time.Now().Add(p.wait)
		again = append(again, p)
	}
	if len(again) > 0 {
		u.mu.Lock()
		u.unmaps = append(u.unmaps, again...)
		u.mu.Unlock()
	}
}
