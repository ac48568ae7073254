package portmap

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/portfwd/portfwd/internal/epoch"
	"github.com/portfwd/portfwd/natpmp"
)

// DefaultNATPMPLease is the lifetime asked for when a Request has none:
// RFC 6886 recommends 7200 s.
const DefaultNATPMPLease = 2 * time.Hour

// natpmpGateway is a gateway reached over NAT-PMP (RFC 6886). NAT-PMP
// cannot list or read back a mapping, and deletes by internal port, so the
// mappings made are kept in the state store: a later process finds the
// internal port of an external one there. It is safe for concurrent use:
// the natpmp.Client is (it sends one request at a time), the store is, and
// the address it remembers is under mu.
type natpmpGateway struct {
	server netip.AddrPort
	c      *natpmp.Client
	local  netip.Addr
	st     *store

	mu  sync.Mutex
	ext natpmp.ExternalAddress
}

// probeNATPMP asks the server for its external address. A server that
// answers with a refusal (no connection, say: result 3) is kept, ranked
// below the working ones; one that does not answer is an error.
func probeNATPMP(ctx context.Context, o *Options, st *store, server netip.AddrPort) (*natpmpGateway, int, error) {
	c := &natpmp.Client{Gateway: server, Logger: o.Logger}
	g := &natpmpGateway{server: server, c: c, local: localAddrFor(server.Addr()), st: st}
	ea, err := c.ExternalAddress(ctx)
	switch {
	case err == nil:
		g.ext = ea
		return g, healthConnected, nil
	case errors.Is(err, natpmp.ErrNoExternalAddress):
		return g, healthNotConnected, nil
	case isRefusal(refusedPMP(err)):
		return g, healthFailing, nil
	}
	return nil, 0, fmt.Errorf("NAT-PMP at %s: %w", server, err)
}

func (g *natpmpGateway) Method() Method        { return NATPMP }
func (g *natpmpGateway) Addr() string          { return g.server.String() }
func (g *natpmpGateway) LocalAddr() netip.Addr { return g.local }
func (g *natpmpGateway) host() netip.Addr      { return g.server.Addr().Unmap() }
func (g *natpmpGateway) state() *store         { return g.st }

func (g *natpmpGateway) eventURL() (string, string) { return "", "NAT-PMP has no UPnP events" }

func (g *natpmpGateway) ExternalIP(ctx context.Context) (netip.Addr, error) {
	ea, err := g.c.ExternalAddress(ctx)
	if err != nil {
		return netip.Addr{}, refusedPMP(err)
	}
	g.setExt(ea)
	return ea.Addr, nil
}

func (g *natpmpGateway) setExt(ea natpmp.ExternalAddress) {
	g.mu.Lock()
	g.ext = ea
	g.mu.Unlock()
}

func (g *natpmpGateway) extAddr() netip.Addr {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.ext.Addr
}

func (g *natpmpGateway) Info(ctx context.Context) (Info, error) {
	info := Info{Method: NATPMP, Server: g.server.String()}
	ea, err := g.c.ExternalAddress(ctx)
	switch {
	case err == nil:
		g.setExt(ea)
		info.Epoch, info.ExternalIP, info.Connected = ea.Epoch, ea.Addr, true
	case ctx.Err() != nil:
		return info, ctx.Err()
	case errors.Is(err, natpmp.ErrNoExternalAddress):
		info.ExternalIP = netip.IPv4Unspecified()
		info.Problem = "the router reports no external address (0.0.0.0): its Internet connection is down or not set up yet"
	default:
		info.Problem = "the external address request failed: " + refusedPMP(err).Error()
	}
	return info, nil
}

// List is not possible: NAT-PMP has no operation that reads the table.
func (g *natpmpGateway) List(ctx context.Context, _ func(int)) ([]Mapping, error) {
	return nil, fmt.Errorf("NAT-PMP has no way to list a router's mappings (use --protocol upnp if the router also speaks UPnP): %w", ErrNotSupported)
}

func (g *natpmpGateway) lookup(context.Context, Key) (Mapping, error) { return Mapping{}, errNoLookup }

func pmpProto(p Protocol) natpmp.Protocol {
	if p == UDP {
		return natpmp.UDP
	}
	return natpmp.TCP
}

// checkOwnHost refuses what NAT-PMP and PCP cannot do.
func checkOwnHost(method Method, local netip.Addr, r Request) error {
	if r.InternalClient.IsValid() && local.IsValid() && r.InternalClient.Unmap() != local {
		return &RefusedError{Method: method, Text: fmt.Sprintf("%s can only map ports to the host that asks (%s), not to %s: run portfwd on that host, or use UPnP",
			method.Name(), local, r.InternalClient)}
	}
	if r.RemoteHost != "" {
		return fmt.Errorf("%s cannot restrict a mapping to one remote host: %w", method.Name(), ErrNotSupported)
	}
	if r.Disabled {
		return fmt.Errorf("%s has no disabled mappings: %w", method.Name(), ErrNotSupported)
	}
	return nil
}

func (g *natpmpGateway) Add(ctx context.Context, r Request) (Mapping, error) {
	m, _, err := g.mapPort(ctx, r)
	return m, err
}

// conflicts returns what this host's records hold in the way of a mapping
// of internal port internal at external port ext: the record at ext if it
// maps another internal port, and the records of the same internal port
// at other external ports (NAT-PMP and PCP keep one mapping per internal
// port: deleting one deletes the others on miniupnpd, which also makes a
// second one when asked).
func conflicts(recs []Record, p Protocol, internal, ext uint16) []Record {
	var out []Record
	for _, x := range recs {
		if x.Protocol != p {
			continue
		}
		if (x.ExternalPort == ext && x.InternalPort != internal) || (x.ExternalPort != ext && x.InternalPort == internal) {
			out = append(out, x)
		}
	}
	return out
}

// rememberedInTheWay looks, in this host's records of d's gateway, for the
// mappings that asking for r at external port ext would replace: they are
// returned, to be deleted first, with r.Replace, and refused otherwise,
// as is a port a running Keeper holds. Records that cannot be read leave
// the request unchecked, which the returned note says: the router can
// still be asked. It also returns every record read.
func rememberedInTheWay(d driver, r Request, ext uint16) (recs, in []Record, unchecked string, err error) {
	key := Key{Protocol: r.Protocol, ExternalPort: ext}
	recs, rerr := d.state().records(d.Method(), d.Addr(), nil)
	if rerr != nil {
		unchecked = fmt.Sprintf("this host's records could not be read (%v): whether another of its mappings was in the way was not checked", rerr)
	}
	in = conflicts(recs, r.Protocol, r.InternalPort, ext)
	if r.Replace {
		return recs, in, unchecked, nil
	}
	if kept := keptBy(d.state(), d.Method(), d.Addr(), key); kept != nil {
		cur := Mapping{Protocol: key.Protocol, ExternalPort: ext, Method: d.Method()}
		if i := findRecord(recs, d.Method(), d.Addr(), key); i >= 0 {
			cur = recordMapping(recs[i], d.LocalAddr())
		}
		return recs, nil, unchecked, existsError(d.Method(), key, cur, kept)
	}
	if len(in) > 0 {
		return recs, nil, unchecked, existsError(d.Method(), key, recordMapping(in[0], d.LocalAddr()), nil)
	}
	return recs, in, unchecked, nil
}

// recordMapping is the Mapping a record describes.
func recordMapping(x Record, local netip.Addr) Mapping {
	client := x.InternalClient
	if client == "" && local.IsValid() {
		client = local.String()
	}
	m := Mapping{Protocol: x.Protocol, ExternalPort: x.ExternalPort, InternalClient: client, InternalPort: x.InternalPort,
		Enabled: true, Description: x.Description, ExternalAddr: x.ExternalAddr, Method: x.Method, Permanent: x.Expires.IsZero()}
	if !x.Expires.IsZero() {
		m.Lease = max(time.Until(x.Expires).Round(time.Second), 0)
	}
	return m
}

func (g *natpmpGateway) mapPort(ctx context.Context, r Request) (Mapping, []clock, error) {
	if err := checkOwnHost(NATPMP, g.local, r); err != nil {
		return Mapping{}, nil, err
	}
	ext := r.ExternalPort
	if ext == 0 {
		ext = r.InternalPort
	}
	lease := r.Lease
	if lease == 0 {
		lease = DefaultNATPMPLease
	}
	_, in, unchecked, err := rememberedInTheWay(g, r, ext)
	if err != nil {
		return Mapping{}, nil, err
	}
	for _, x := range in {
		// Replace: delete what is in the way, by its internal port.
		if err := g.c.Unmap(ctx, pmpProto(x.Protocol), x.InternalPort); err != nil {
			return Mapping{}, nil, fmt.Errorf("replacing the mapping at %s: %w", x.Key(), refusedPMP(err))
		}
		g.st.drop(NATPMP, g.Addr(), x.Key())
	}
	m, err := g.c.Map(ctx, pmpProto(r.Protocol), r.InternalPort, ext, lease)
	if err != nil {
		return Mapping{}, nil, refusedPMP(err)
	}
	clocks := []clock{{rule: epoch.NATPMP, value: m.Epoch}}
	if m.ExternalPort != ext && !r.Any {
		// The router picked another port: undo, since the caller asked for
		// this one exactly. No other mapping of this host has the internal
		// port (see conflicts), so the unmap takes only this one.
		_ = g.c.Unmap(ctx, pmpProto(r.Protocol), r.InternalPort)
		return Mapping{}, clocks, &RefusedError{Method: NATPMP, Text: fmt.Sprintf(
			"the router cannot give external port %d/%s (it offered %d instead); use --any to accept another port", ext, r.Protocol, m.ExternalPort)}
	}
	out := g.granted(r, m, lease)
	out.addNote(unchecked, g.remember(out, m.Lifetime, nil))
	return out, clocks, nil
}

// granted is the Mapping of the router's answer m to r.
func (g *natpmpGateway) granted(r Request, m natpmp.Mapping, asked time.Duration) Mapping {
	out := Mapping{
		Protocol: r.Protocol, ExternalPort: m.ExternalPort, InternalClient: g.local.String(),
		InternalPort: m.InternalPort, Enabled: true, Description: r.Description, Lease: m.Lifetime,
		ExternalAddr: g.extAddr(), Method: NATPMP,
	}
	out.addNote(leaseNote(asked, m.Lifetime, false))
	return out
}

// remember records a mapping made, for a later process: its internal port
// (and a PCP nonce) by its external port. It never fails the request: the
// router made the mapping, so a record that cannot be written is a note.
func (g *natpmpGateway) remember(m Mapping, lifetime time.Duration, keeper *Process) string {
	return rememberIn(g.st, Record{Method: m.Method, Gateway: g.Addr(), Protocol: m.Protocol, ExternalPort: m.ExternalPort,
		InternalClient: m.InternalClient, InternalPort: m.InternalPort, Description: m.Description,
		ExternalAddr: m.ExternalAddr, Made: time.Now(), Expires: time.Now().Add(lifetime), Keeper: keeper})
}

// rememberIn puts rec in st, keeping the Keeper of a record already there
// when rec names none, and returns a note for the caller's Mapping.
func rememberIn(st *store, rec Record) string {
	warn, err := st.update(func(d *stateData) error {
		if i := findRecord(d.Mappings, rec.Method, rec.Gateway, rec.Key()); i >= 0 {
			if rec.Keeper == nil {
				rec.Keeper = d.Mappings[i].Keeper
			}
			if rec.Nonce.IsZero() {
				rec.Nonce = d.Mappings[i].Nonce
			}
			d.Mappings[i] = rec
		} else {
			d.Mappings = append(d.Mappings, rec)
		}
		return nil
	})
	var m Mapping
	if warn != "" {
		m.addNote("the state file " + warn)
	}
	if err != nil {
		m.addNote(fmt.Sprintf("the mapping was made, but could not be remembered in the state directory (%v): "+
			"only this process can delete it; otherwise it ends with its lease", err))
	}
	return m.Note
}

func (g *natpmpGateway) renew(ctx context.Context, m Mapping, r Request) (Mapping, []clock, error) {
	lease := r.Lease
	if lease == 0 {
		lease = DefaultNATPMPLease
	}
	nm, err := g.c.Map(ctx, pmpProto(m.Protocol), m.InternalPort, m.ExternalPort, lease)
	if err != nil {
		return Mapping{}, nil, refusedPMP(err)
	}
	clocks := []clock{{rule: epoch.NATPMP, value: nm.Epoch}}
	if nm.ExternalPort != m.ExternalPort && !r.Any {
		_ = g.c.Unmap(ctx, pmpProto(m.Protocol), m.InternalPort)
		g.st.drop(NATPMP, g.Addr(), m.Key())
		return Mapping{}, clocks, &RefusedError{Method: NATPMP, Text: fmt.Sprintf(
			"the router no longer gives external port %d/%s (it offered %d instead)", m.ExternalPort, m.Protocol, nm.ExternalPort)}
	}
	r.Description = m.Description
	out := g.granted(r, nm, lease)
	if nm.ExternalPort != m.ExternalPort {
		g.st.drop(NATPMP, g.Addr(), m.Key())
	}
	out.addNote(g.remember(out, nm.Lifetime, nil))
	return out, clocks, nil
}

// internalPortFor finds the internal port of a mapping this host made at
// key. NAT-PMP deletes by internal port. Without a record, the common case
// of equal ports is assumed, unless a record shows that internal port in
// use by another mapping of this host, which the guess would delete.
func (g *natpmpGateway) internalPortFor(key Key) (uint16, Record, error) {
	recs, err := g.st.records(NATPMP, g.Addr(), func(r Record) bool { return r.Protocol == key.Protocol })
	if err != nil {
		return 0, Record{}, err
	}
	if i := slices.IndexFunc(recs, func(r Record) bool { return r.ExternalPort == key.ExternalPort }); i >= 0 {
		return recs[i].InternalPort, recs[i], nil
	}
	if i := slices.IndexFunc(recs, func(r Record) bool { return r.InternalPort == key.ExternalPort }); i >= 0 {
		return 0, Record{}, fmt.Errorf("no NAT-PMP mapping at external port %s made from this host is remembered, and guessing its internal port (%d) "+
			"would delete this host's mapping at external port %d: NAT-PMP deletes by internal port", key, key.ExternalPort, recs[i].ExternalPort)
	}
	return key.ExternalPort, Record{}, nil
}

func (g *natpmpGateway) Delete(ctx context.Context, key Key) error {
	internal, _, err := g.internalPortFor(key)
	if err != nil {
		return err
	}
	if err := g.c.Unmap(ctx, pmpProto(key.Protocol), internal); err != nil {
		return refusedPMP(err)
	}
	return g.st.drop(NATPMP, g.Addr(), key)
}

func (g *natpmpGateway) Edit(ctx context.Context, key Key, c Change) (Mapping, error) {
	internal, rec, err := g.internalPortFor(key)
	if err != nil {
		return Mapping{}, err
	}
	old := Mapping{Protocol: key.Protocol, ExternalPort: key.ExternalPort, InternalPort: internal,
		InternalClient: g.local.String(), Enabled: true, Description: rec.Description, Method: NATPMP,
		Lease: DefaultNATPMPLease}
	if !rec.Expires.IsZero() {
		old.Lease = max(time.Until(rec.Expires).Round(time.Second), time.Minute)
	}
	m := c.apply(old)
	if !m.Enabled {
		return Mapping{}, fmt.Errorf("NAT-PMP has no disabled mappings; delete it instead: %w", ErrNotSupported)
	}
	return replaceMapping(ctx, g, key, old, m, c.Replace)
}

// replaceMapping edits a mapping on a protocol that has no edit (NAT-PMP,
// PCP): it checks that the new one replaces nothing else (unless replace),
// deletes the old mapping and makes the new one, and puts the old one back
// if the new one cannot be made.
func replaceMapping(ctx context.Context, g driver, key Key, old, m Mapping, replace bool) (Mapping, error) {
	recs, err := g.state().records(g.Method(), g.Addr(), nil)
	if err != nil {
		return Mapping{}, err
	}
	var others []Record
	for _, x := range recs {
		if x.Key() != key {
			others = append(others, x)
		}
	}
	nk := Key{Protocol: m.Protocol, ExternalPort: m.ExternalPort}
	if in := conflicts(others, m.Protocol, m.InternalPort, m.ExternalPort); len(in) > 0 && !replace {
		return Mapping{}, existsError(g.Method(), nk, recordMapping(in[0], g.LocalAddr()), nil)
	}
	if i := findRecord(others, g.Method(), g.Addr(), nk); i >= 0 && !replace {
		return Mapping{}, existsError(g.Method(), nk, recordMapping(others[i], g.LocalAddr()), nil)
	}
	if err := g.Delete(ctx, key); err != nil {
		return Mapping{}, err
	}
	request := func(x Mapping) Request {
		client, _ := netip.ParseAddr(x.InternalClient)
		return Request{Protocol: x.Protocol, InternalPort: x.InternalPort, ExternalPort: x.ExternalPort,
			InternalClient: client, Lease: x.Lease, Description: x.Description, Replace: replace}
	}
	made, err := g.Add(ctx, request(m))
	if err != nil {
		if _, rerr := g.Add(ctx, request(old)); rerr != nil {
			return Mapping{}, fmt.Errorf("%w; restoring the old mapping failed too: %v", err, rerr)
		}
		return Mapping{}, fmt.Errorf("%w (the old mapping was restored)", err)
	}
	return made, nil
}

// DeleteRange deletes the mappings this host made in the range, as
// remembered in the state directory: NAT-PMP cannot enumerate the rest.
func (g *natpmpGateway) DeleteRange(ctx context.Context, proto Protocol, start, end uint16) ([]Mapping, error) {
	return deleteRemembered(ctx, g, proto, start, end)
}

// deleteRemembered deletes the remembered mappings of g in the range and
// returns those deleted.
func deleteRemembered(ctx context.Context, g driver, proto Protocol, start, end uint16) ([]Mapping, error) {
	recs, err := g.state().records(g.Method(), g.Addr(), func(r Record) bool {
		return r.Protocol == proto && r.ExternalPort >= start && r.ExternalPort <= end
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(recs, func(a, b Record) int { return int(a.ExternalPort) - int(b.ExternalPort) })
	var out []Mapping
	for _, r := range recs {
		if err := g.Delete(ctx, r.Key()); err != nil {
			return out, err
		}
		out = append(out, recordMapping(r, g.LocalAddr()))
	}
	return out, nil
}

func (g *natpmpGateway) read(ctx context.Context, _ bool) (reading, error) {
	var r reading
	ea, err := g.c.ExternalAddress(ctx)
	switch {
	case err == nil:
		g.setExt(ea)
		r.ext, r.extOK = ea.Addr, true
		r.clocks = []clock{{rule: epoch.NATPMP, value: ea.Epoch}}
	case errors.Is(err, natpmp.ErrNoExternalAddress):
		// It answers, with no address: not connected.
		r.ext, r.extOK = netip.IPv4Unspecified(), true
	case isRefusal(refusedPMP(err)):
	default:
		return r, err
	}
	return r, nil
}

func refusedPMP(err error) error {
	var re *natpmp.ResultError
	if errors.As(err, &re) {
		// The refusal is a sentence for the user: without the package's
		// prefix, which the error chain (Err) keeps.
		return &RefusedError{Method: NATPMP, Code: int(re.Code), Text: strings.TrimPrefix(re.Error(), "natpmp: "), Err: err}
	}
	return err
}
