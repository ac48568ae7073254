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
	"github.com/portfwd/portfwd/internal/addrclass"
	"github.com/portfwd/portfwd/internal/netroute"
	"github.com/portfwd/portfwd/pcp"
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

	mu        sync.Mutex
	m         method // nil until discovered
	state     string
	public    netip.Addr
	since     time.Time
	lastErr   string
	nextTry   time.Time
	backoff   time.Duration
	recreate  string // a reason to re-make every half, "" when none
	unmaps    []pendingUnmap
	requests  map[string]uint64
	recreated map[string]uint64
}

type pendingUnmap struct {
	m     gateway.Mapping
	until time.Time
	next  time.Time
	wait  time.Duration
}

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
	if meth == nil || meth.name() != h.Method {
		// The half was made through another method (the router above
		// changed protocol): start again with this one.
		if meth == nil {
			return h, &gateway.UpstreamError{Kind: gateway.ErrUpstreamDown, Server: "none", Err: errors.New("no router above answers")}
		}
		h = gateway.UpstreamHalf{Method: meth.name(), Nonce: pcp.NewNonce(), Public: h.Public}
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

// Unmap implements gateway.Upstream.
func (u *Manager) Unmap(ctx context.Context, m gateway.Mapping) {
	u.mu.Lock()
	meth, state := u.m, u.state
	u.mu.Unlock()
	if meth != nil && state == "up" && meth.name() == m.Upstream.Method {
		ctx, cancel := context.WithTimeout(ctx, unmapTimeout)
		err := meth.unmap(ctx, m.Protocol, m.ExternalPort, m.Upstream.Public.Port(), m.Upstream.Nonce)
		cancel()
		u.count("unmap", err)
		if err == nil {
			return
		}
		u.log.Warn("could not delete a mapping on the router above; retrying in the background", "mapping", m, "err", err)
	}
	u.queueUnmap(m)
}

func (u *Manager) queueUnmap(m gateway.Mapping) {
	until := m.Upstream.Expires
	if until.IsZero() {
		until = time.Now().Add(u.cfg.MaxLifetime)
	}
	u.mu.Lock()
	u.unmaps = append(u.unmaps, pendingUnmap{m: m, until: until, next: time.Now().Add(minBackoff), wait: minBackoff})
	u.mu.Unlock()
	u.poke()
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
	routes = slices.DeleteFunc(routes, func(r netroute.Route) bool { return r.Iface != u.cfg.Interface })
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
	}
	// The intents a killed gateway left: deleted upstream once it answers.
	orphans := u.core.UpstreamOrphans()
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
			if meth != nil && now.Sub(u.Status().Since) < stickFor {
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
				u.log.Info("deleting the halves on the router above that the last run asked for but never recorded as granted (it was killed meanwhile)",
					"count", len(orphans))
			}
			for _, o := range orphans {
				u.Unmap(ctx, o)
			}
			orphans = nil
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

func (u *Manager) retryUnmaps(ctx context.Context) {
	u.mu.Lock()
	meth := u.m
	now := time.Now()
	var due []pendingUnmap
	keep := u.unmaps[:0]
	for _, p := range u.unmaps {
		switch {
		case now.After(p.until):
			// Its upstream lease is over: nothing left to delete.
		case now.Before(p.next):
			keep = append(keep, p)
		default:
			due = append(due, p)
		}
	}
	u.unmaps = keep
	u.mu.Unlock()
	for _, p := range due {
		var err error
		if meth != nil && meth.name() == p.m.Upstream.Method {
			cctx, cancel := context.WithTimeout(ctx, unmapTimeout)
			err = meth.unmap(cctx, p.m.Protocol, p.m.ExternalPort, p.m.Upstream.Public.Port(), p.m.Upstream.Nonce)
			cancel()
			u.count("unmap", err)
		} else {
			err = errors.New("the router above now speaks another protocol")
		}
		if err == nil {
			u.log.Info("deleted a mapping on the router above after retrying", "mapping", p.m)
			continue
		}
		p.wait = min(2*p.wait, maxBackoff)
		p.next = time.Now().Add(p.wait)
		u.mu.Lock()
		u.unmaps = append(u.unmaps, p)
		u.mu.Unlock()
	}
}
