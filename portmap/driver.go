package portmap

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/portfwd/portfwd/internal/epoch"
)

// driver is what the Keeper and the watcher need of a gateway beyond the
// Gateway interface. Each protocol implements it once (upnpGateway,
// natpmpGateway, pcpGateway), so that keeping a mapping and watching a
// router are written once, against this interface, with no switch on the
// protocol. A Gateway from outside this package gets genericDriver, which
// does what the Gateway interface allows and says what it cannot.
type driver interface {
	Gateway
	// host is the router's address: where its NAT-PMP/PCP announcements
	// come from. The zero Addr when unknown.
	host() netip.Addr
	// read takes a reading of the gateway: its external address, its
	// connection status, the clocks that show a restart, and, when list is
	// set and the protocol can list, its mapping table. It fails only when
	// the gateway does not answer; a refused request leaves that part of
	// the reading unknown.
	read(ctx context.Context, list bool) (reading, error)
	// lookup reads the mapping at key back from the router. It returns an
	// error wrapping errNoEntry when the router says there is none, and
	// errNoLookup when the protocol (or this router) cannot tell without
	// changing anything.
	lookup(ctx context.Context, key Key) (Mapping, error)
	// mapPort is Add, also returning the clocks the router's answer
	// carried.
	mapPort(ctx context.Context, r Request) (Mapping, []clock, error)
	// renew renews m, a mapping this host made through the driver from r,
	// asking for the external port m holds and no other (RFC 6886 §3.3,
	// RFC 6887 §11.2): a refusal is returned as such, and the caller
	// decides whether to fall back to another port.
	renew(ctx context.Context, m Mapping, r Request) (Mapping, []clock, error)
	// eventURL is the URL of the UPnP event subscription of the
	// connection service, or "" with the reason there is none.
	eventURL() (url, why string)
	// state is the store the gateway keeps its records in.
	state() *store
}

var (
	// errNoEntry: the router says it holds no mapping at the key.
	errNoEntry = errors.New("the router has no such mapping")
	// errNoLookup: the protocol cannot read a mapping back.
	errNoLookup = errors.New("this protocol cannot read a mapping back from the router")
)

// reading is one look at a gateway. The ok flags say which parts the
// gateway gave.
type reading struct {
	ext    netip.Addr
	extOK  bool
	status string
	clocks []clock
	list   []Mapping
	listed bool
	sent   time.Time // when the reading's first request went out: its clocks were read after
}

// clock is one reading of a router clock that shows restarts: a NAT-PMP
// epoch, a PCP epoch time, or a UPnP uptime, in seconds.
type clock struct {
	rule  epoch.Rule
	value uint32
}

// driverFor returns gw's driver: its own for this package's gateways, a
// generic one (which knows no restart clock, no events, and reads mappings
// back only by listing) for any other Gateway. o gives the generic driver
// its state store.
func driverFor(gw Gateway, o *Options) driver {
	if d, ok := gw.(driver); ok {
		return d
	}
	return &genericDriver{Gateway: gw, st: newStore(o.stateDir(), o.Logger)}
}

// genericDriver drives a Gateway implemented outside this package through
// the Gateway interface alone.
type genericDriver struct {
	Gateway
	st *store
}

func (g *genericDriver) host() netip.Addr { return netip.Addr{} }
func (g *genericDriver) state() *store    { return g.st }

func (g *genericDriver) eventURL() (string, string) {
	return "", fmt.Sprintf("%T is not one of portmap's gateways: no UPnP events, and no restart detection", g.Gateway)
}

func (g *genericDriver) read(ctx context.Context, list bool) (reading, error) {
	var r reading
	ip, err := g.ExternalIP(ctx)
	if err != nil && !isRefusal(err) {
		return r, err
	}
	r.ext, r.extOK = ip, err == nil
	if list {
		if l, err := g.List(ctx, nil); err == nil {
			r.list, r.listed = l, true
		}
	}
	return r, nil
}

func (g *genericDriver) lookup(ctx context.Context, key Key) (Mapping, error) {
	l, err := g.List(ctx, nil)
	if errors.Is(err, ErrNotSupported) {
		return Mapping{}, errNoLookup
	}
	if err != nil {
		return Mapping{}, err
	}
	for _, m := range l {
		if m.Key() == key {
			return m, nil
		}
	}
	return Mapping{}, fmt.Errorf("%s: %w", key, errNoEntry)
}

func (g *genericDriver) mapPort(ctx context.Context, r Request) (Mapping, []clock, error) {
	m, err := g.Add(ctx, r)
	return m, nil, err
}

func (g *genericDriver) renew(ctx context.Context, m Mapping, r Request) (Mapping, []clock, error) {
	r.ExternalPort, r.Any, r.Replace = m.ExternalPort, false, false
	nm, err := g.Add(ctx, r)
	return nm, nil, err
}

// restartDetector tells from the clocks of one router whether it
// restarted. It holds one tracker per kind of clock (internal/epoch, with
// each clock's own rule), and when one of them shows a restart it resets
// the others, so that their next reading, which shows the same restart,
// is a new baseline rather than a second restart. The keeper and the
// watcher each feed theirs with every clock they hear, so they always
// agree.
type restartDetector struct {
	host     netip.Addr
	trackers [3]epoch.Tracker // by epoch.Rule
}

// reset forgets every reading; host is the router followed from now on.
func (d *restartDetector) reset(host netip.Addr) {
	d.host = host
	for i := range d.trackers {
		d.trackers[i].Reset()
	}
}

// observe feeds the clocks of one reading, which the router took between
// sent (its request went out) and now (its answer came back), and returns
// why they show a restart, or "".
func (d *restartDetector) observe(clocks []clock, sent, now time.Time) string {
	for _, c := range clocks {
		t := &d.trackers[c.rule]
		t.Rule = c.rule
		prev := t.State()
		if !t.ObserveSpan(c.value, sent, now) {
			continue
		}
		for i := range d.trackers {
			if epoch.Rule(i) != c.rule {
				d.trackers[i].Reset()
			}
		}
		if c.rule == epoch.Uptime {
			return fmt.Sprintf("the router's uptime went back from %v to %v", time.Duration(prev.Value)*time.Second, time.Duration(c.value)*time.Second)
		}
		// Routers also start a new epoch when their external address
		// changes (miniupnpd does), since mappings on the old address
		// are gone too.
		if c.value >= prev.Value {
			return fmt.Sprintf("the router's %s jumped from %d to %d s, out of step with the %v that passed: it restarted, or dropped its mappings",
				c.rule, prev.Value, c.value, now.Sub(prev.At).Round(time.Second))
		}
		return fmt.Sprintf("the router's %s went back from %d to %d s: it restarted, or dropped its mappings", c.rule, prev.Value, c.value)
	}
	return ""
}
