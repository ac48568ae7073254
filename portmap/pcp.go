package portmap

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/portfwd/portfwd/internal/epoch"
	"github.com/portfwd/portfwd/natpmp"
	"github.com/portfwd/portfwd/pcp"
)

// PCP is the Port Control Protocol, RFC 6887.
const PCP Method = "pcp"

// pcpGateway is a gateway reached over PCP. PCP names each mapping by a
// nonce that refresh and delete must repeat (RFC 6887 §11.3), so the nonce
// of every mapping made is kept in the state store: a later process can
// then delete it by external port. It is safe for concurrent use: the pcp
// and natpmp clients are, and its own fields are under mu.
type pcpGateway struct {
	server netip.AddrPort
	c      *pcp.Client
	// pmp asks the external address: PCP has no request for it alone, and
	// PCP servers on home routers speak NAT-PMP on the same port.
	pmp   *natpmp.Client
	local netip.Addr
	st    *store

	mu     sync.Mutex
	epoch  uint32
	ext    netip.Addr
	nonces map[Key]madeNonce // of the mappings this value made, should the store fail
}

// madeNonce is the nonce and internal port of a mapping made.
type madeNonce struct {
	internal uint16
	nonce    pcp.Nonce
}

func probePCP(ctx context.Context, o *Options, st *store, server netip.AddrPort) (*pcpGateway, int, error) {
	c := &pcp.Client{Gateway: server, Logger: o.Logger}
	e, err := c.Announce(ctx)
	if err != nil {
		return nil, 0, fmt.Errorf("PCP at %s: %w", server, err)
	}
	g := &pcpGateway{server: server, c: c, pmp: &natpmp.Client{Gateway: server, MaxTries: 3, Logger: o.Logger},
		local: localAddrFor(server.Addr()), st: st, epoch: e, nonces: map[Key]madeNonce{}}
	return g, healthConnected, nil
}

func (g *pcpGateway) Method() Method        { return PCP }
func (g *pcpGateway) Addr() string          { return g.server.String() }
func (g *pcpGateway) LocalAddr() netip.Addr { return g.local }
func (g *pcpGateway) host() netip.Addr      { return g.server.Addr().Unmap() }
func (g *pcpGateway) state() *store         { return g.st }

func (g *pcpGateway) eventURL() (string, string) { return "", "PCP has no UPnP events" }

func (g *pcpGateway) lookup(context.Context, Key) (Mapping, error) { return Mapping{}, errNoLookup }

// ExternalIP: PCP has no request for the external address alone (it comes
// with each MAP), so NAT-PMP's is asked, on the same port. A router that
// does not answer it gives the address of the last mapping made, if any.
func (g *pcpGateway) ExternalIP(ctx context.Context) (netip.Addr, error) {
	ip, _, err := g.externalIP(ctx)
	return ip, err
}

func (g *pcpGateway) externalIP(ctx context.Context) (netip.Addr, []clock, error) {
	ea, err := g.pmp.ExternalAddress(ctx)
	if err != nil {
		if ip := g.extAddr(); ip.IsValid() {
			return ip, nil, nil
		}
		return netip.Addr{}, nil, fmt.Errorf("PCP has no external-address request and this router does not answer NAT-PMP's (%v): the address is known once a mapping is made: %w", err, ErrNotSupported)
	}
	g.mu.Lock()
	g.ext = ea.Addr
	g.mu.Unlock()
	return ea.Addr, []clock{{rule: epoch.NATPMP, value: ea.Epoch}}, nil
}

func (g *pcpGateway) extAddr() netip.Addr {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.ext
}

func (g *pcpGateway) Info(ctx context.Context) (Info, error) {
	g.mu.Lock()
	info := Info{Method: PCP, Server: g.server.String(), Epoch: g.epoch}
	g.mu.Unlock()
	ip, err := g.ExternalIP(ctx)
	switch {
	case err == nil:
		info.ExternalIP, info.Connected = ip, !ip.IsUnspecified()
	case ctx.Err() != nil:
		return info, ctx.Err()
	default:
		info.Problem = err.Error()
	}
	return info, nil
}

func (g *pcpGateway) List(ctx context.Context, _ func(int)) ([]Mapping, error) {
	return nil, fmt.Errorf("PCP has no way to list a router's mappings (use --protocol upnp if the router also speaks UPnP): %w", ErrNotSupported)
}

func pcpProto(p Protocol) pcp.Protocol {
	if p == UDP {
		return pcp.UDP
	}
	return pcp.TCP
}

func (g *pcpGateway) Add(ctx context.Context, r Request) (Mapping, error) {
	m, _, err := g.mapPort(ctx, r)
	return m, err
}

func (g *pcpGateway) mapPort(ctx context.Context, r Request) (Mapping, []clock, error) {
	if err := checkOwnHost(PCP, g.local, r); err != nil {
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
	key := Key{Protocol: r.Protocol, ExternalPort: ext}
	recs, in, unchecked, err := rememberedInTheWay(g, r, ext)
	if err != nil {
		return Mapping{}, nil, err
	}
	for _, x := range in {
		if err := g.Delete(ctx, x.Key()); err != nil {
			return Mapping{}, nil, fmt.Errorf("replacing the mapping at %s: %w", x.Key(), err)
		}
	}
	req := pcp.MapRequest{Protocol: pcpProto(r.Protocol), InternalPort: r.InternalPort, SuggestedExternalPort: ext,
		Lifetime: lease, PreferFailure: !r.Any}
	// A mapping this host already has at this port is refreshed with its
	// own nonce; any other nonce would be refused NOT_AUTHORIZED.
	if i := findRecord(recs, PCP, g.Addr(), key); i >= 0 && recs[i].InternalPort == r.InternalPort {
		req.Nonce = recs[i].Nonce
	} else if n, ok := g.memNonce(key); ok && n.internal == r.InternalPort {
		req.Nonce = n.nonce
	}
	res, err := g.c.Map(ctx, req)
	if err != nil {
		return Mapping{}, nil, refusedPCP(err)
	}
	clocks := []clock{{rule: epoch.PCP, value: res.Epoch}}
	if res.ExternalPort != ext && !r.Any {
		// The server ignored PREFER_FAILURE: take it back.
		_ = g.c.Delete(ctx, res.Protocol, res.InternalPort, res.Nonce)
		return Mapping{}, clocks, &RefusedError{Method: PCP, Text: fmt.Sprintf(
			"the router cannot give external port %d/%s (it offered %d instead); use --any to accept another port", ext, r.Protocol, res.ExternalPort)}
	}
	m := g.made(r, res, lease)
	m.addNote(unchecked)
	return m, clocks, nil
}

// made records the mapping the server granted (res, for r) and returns it.
func (g *pcpGateway) made(r Request, res pcp.MapResult, asked time.Duration) Mapping {
	g.mu.Lock()
	g.ext, g.epoch = res.ExternalAddr, res.Epoch
	g.nonces[Key{Protocol: r.Protocol, ExternalPort: res.ExternalPort}] = madeNonce{res.InternalPort, res.Nonce}
	g.mu.Unlock()
	out := Mapping{Protocol: r.Protocol, ExternalPort: res.ExternalPort, InternalClient: g.local.String(),
		InternalPort: res.InternalPort, Enabled: true, Description: r.Description, Lease: res.Lifetime,
		ExternalAddr: res.ExternalAddr, Method: PCP}
	out.addNote(leaseNote(asked, res.Lifetime, false))
	out.addNote(rememberIn(g.st, Record{Method: PCP, Gateway: g.Addr(), Protocol: r.Protocol,
		ExternalPort: res.ExternalPort, InternalClient: out.InternalClient, InternalPort: res.InternalPort,
		Description: r.Description, ExternalAddr: res.ExternalAddr, Nonce: res.Nonce, Made: time.Now(),
		Expires: time.Now().Add(res.Lifetime)}))
	return out
}

func (g *pcpGateway) memNonce(key Key) (madeNonce, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	n, ok := g.nonces[Key{Protocol: key.Protocol, ExternalPort: key.ExternalPort}]
	return n, ok
}

// renew refreshes m with its own nonce, suggesting the external port and
// address it holds (RFC 6887 §11.2.1), and PREFER_FAILURE unless r allows
// another port.
func (g *pcpGateway) renew(ctx context.Context, m Mapping, r Request) (Mapping, []clock, error) {
	lease := r.Lease
	if lease == 0 {
		lease = DefaultNATPMPLease
	}
	rec, err := g.remembered(m.Key())
	if err != nil {
		return Mapping{}, nil, err
	}
	nonce := rec.Nonce
	res, err := g.c.Map(ctx, pcp.MapRequest{Protocol: pcpProto(m.Protocol), InternalPort: m.InternalPort,
		SuggestedExternalPort: m.ExternalPort, SuggestedExternalAddr: m.ExternalAddr, Lifetime: lease,
		Nonce: nonce, PreferFailure: !r.Any})
	if err != nil {
		return Mapping{}, nil, refusedPCP(err)
	}
	clocks := []clock{{rule: epoch.PCP, value: res.Epoch}}
	if res.ExternalPort != m.ExternalPort && !r.Any {
		_ = g.c.Delete(ctx, res.Protocol, res.InternalPort, res.Nonce)
		g.st.drop(PCP, g.Addr(), m.Key())
		return Mapping{}, clocks, &RefusedError{Method: PCP, Text: fmt.Sprintf(
			"the router no longer gives external port %d/%s (it offered %d instead)", m.ExternalPort, m.Protocol, res.ExternalPort)}
	}
	if res.ExternalPort != m.ExternalPort {
		g.st.drop(PCP, g.Addr(), m.Key())
		g.mu.Lock()
		delete(g.nonces, m.Key())
		g.mu.Unlock()
	}
	r.Description = m.Description
	return g.made(r, res, lease), clocks, nil
}

// remembered finds the record of the mapping at key: in the store, or,
// should the store have failed, among the mappings this value made.
func (g *pcpGateway) remembered(key Key) (Record, error) {
	recs, err := g.st.records(PCP, g.Addr(), func(r Record) bool { return r.Key() == key })
	if err == nil && len(recs) > 0 && !recs[0].Nonce.IsZero() {
		return recs[0], nil
	}
	if n, ok := g.memNonce(key); ok {
		return Record{Method: PCP, Gateway: g.Addr(), Protocol: key.Protocol, ExternalPort: key.ExternalPort, InternalPort: n.internal, Nonce: n.nonce}, nil
	}
	if err != nil {
		return Record{}, err
	}
	return Record{}, fmt.Errorf("no PCP mapping of external port %s made from this host is remembered (PCP can delete or change only mappings whose nonce it kept)", key)
}

func (g *pcpGateway) Delete(ctx context.Context, key Key) error {
	rec, err := g.remembered(key)
	if err != nil {
		return err
	}
	if err := g.c.Delete(ctx, pcpProto(key.Protocol), rec.InternalPort, rec.Nonce); err != nil {
		return refusedPCP(err)
	}
	g.mu.Lock()
	delete(g.nonces, Key{Protocol: key.Protocol, ExternalPort: key.ExternalPort})
	g.mu.Unlock()
	return g.st.drop(PCP, g.Addr(), key)
}

func (g *pcpGateway) Edit(ctx context.Context, key Key, c Change) (Mapping, error) {
	sm, err := g.remembered(key)
	if err != nil {
		return Mapping{}, err
	}
	old := Mapping{Protocol: key.Protocol, ExternalPort: sm.ExternalPort, InternalPort: sm.InternalPort, Description: sm.Description,
		InternalClient: g.local.String(), Enabled: true, Lease: max(time.Until(sm.Expires).Round(time.Second), time.Minute), Method: PCP}
	m := c.apply(old)
	if !m.Enabled {
		return Mapping{}, fmt.Errorf("PCP has no disabled mappings; delete it instead: %w", ErrNotSupported)
	}
	return replaceMapping(ctx, g, key, old, m, c.Replace)
}

func (g *pcpGateway) DeleteRange(ctx context.Context, proto Protocol, start, end uint16) ([]Mapping, error) {
	return deleteRemembered(ctx, g, proto, start, end)
}

func (g *pcpGateway) read(ctx context.Context, _ bool) (reading, error) {
	var r reading
	e, err := g.c.Announce(ctx)
	if err != nil && !isRefusal(refusedPCP(err)) {
		return r, err
	}
	if err == nil {
		g.mu.Lock()
		g.epoch = e
		g.mu.Unlock()
		r.clocks = append(r.clocks, clock{rule: epoch.PCP, value: e})
	}
	if ip, clocks, err := g.externalIP(ctx); err == nil {
		r.ext, r.extOK = ip, true
		r.clocks = append(r.clocks, clocks...)
	}
	return r, nil
}

func refusedPCP(err error) error {
	var re *pcp.ResultError
	if errors.As(err, &re) {
		// The refusal is a sentence for the user: without the package's
		// prefix, which the error chain (Err) keeps.
		return &RefusedError{Method: PCP, Code: int(re.Code), Text: strings.TrimPrefix(re.Error(), "pcp: "), Err: err}
	}
	return err
}
