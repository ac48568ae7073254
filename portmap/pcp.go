package portmap

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"time"

	"github.com/portfwd/portfwd/natpmp"
	"github.com/portfwd/portfwd/pcp"
)

// PCP is the Port Control Protocol, RFC 6887.
const PCP Method = "pcp"

// pcpGateway is a gateway reached over PCP. PCP names each mapping by a
// nonce that refresh and delete must repeat, so the nonce of every mapping
// made is kept in the state directory (pcp.NonceStore): a later process can
// then delete it by external port.
type pcpGateway struct {
	server netip.AddrPort
	c      *pcp.Client
	local  netip.Addr
	store  *pcp.NonceStore
	epoch  uint32
	ext    netip.Addr
}

func probePCP(ctx context.Context, o *Options, server netip.AddrPort) (Gateway, error) {
	c := &pcp.Client{Gateway: server, Logger: o.Logger}
	epoch, err := c.Announce(ctx)
	if err != nil {
		return nil, fmt.Errorf("PCP at %s: %w", server, err)
	}
	g := &pcpGateway{server: server, c: c, local: localAddrFor(server.Addr()), epoch: epoch}
	if o.StateDir != "" {
		g.store = &pcp.NonceStore{Dir: filepath.Join(o.StateDir, "pcp-nonces")}
	}
	return g, nil
}

func (g *pcpGateway) Method() Method        { return PCP }
func (g *pcpGateway) Addr() string          { return g.server.String() }
func (g *pcpGateway) LocalAddr() netip.Addr { return g.local }

// ExternalIP: PCP has no request for the external address alone (it comes
// with each MAP). PCP servers on home routers also speak NAT-PMP on the same
// port, whose external-address request is asked instead.
func (g *pcpGateway) ExternalIP(ctx context.Context) (netip.Addr, error) {
	ea, err := (&natpmp.Client{Gateway: g.server, MaxTries: 3}).ExternalAddress(ctx)
	if err != nil {
		if g.ext.IsValid() {
			return g.ext, nil
		}
		return netip.Addr{}, fmt.Errorf("PCP has no external-address request and this router does not answer NAT-PMP's (%v): the address is known once a mapping is made: %w", err, ErrNotSupported)
	}
	g.ext = ea.Addr
	return ea.Addr, nil
}

func (g *pcpGateway) Info(ctx context.Context) (Info, error) {
	info := Info{Method: PCP, Server: g.server.String(), Epoch: g.epoch}
	if ip, err := g.ExternalIP(ctx); err == nil {
		info.ExternalIP = ip
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
	if r.InternalClient.IsValid() && g.local.IsValid() && r.InternalClient != g.local {
		return Mapping{}, fmt.Errorf("PCP maps ports to the host that asks (%s); routers refuse mappings for %s (THIRD_PARTY): run portfwd on that host, or use UPnP", g.local, r.InternalClient)
	}
	if r.RemoteHost != "" || r.Disabled {
		return Mapping{}, fmt.Errorf("PCP has no remote-host restriction or disabled mappings here: %w", ErrNotSupported)
	}
	ext := r.ExternalPort
	if ext == 0 {
		ext = r.InternalPort
	}
	lease := r.Lease
	if lease == 0 {
		lease = DefaultNATPMPLease
	}
	req := pcp.MapRequest{Protocol: pcpProto(r.Protocol), InternalPort: r.InternalPort, SuggestedExternalPort: ext,
		Lifetime: lease, PreferFailure: !r.Any}
	// Refreshing our own mapping must repeat its nonce (else NOT_AUTHORIZED).
	if g.store != nil {
		if sm, err := g.store.Load(g.server.Addr(), req.Protocol, r.InternalPort); err == nil {
			req.Nonce = sm.Nonce
		}
	}
	res, err := g.c.Map(ctx, req)
	if err != nil {
		return Mapping{}, refusedPCP(err)
	}
	if g.store != nil {
		if err := g.store.Save(res.Record(g.server.Addr(), time.Now())); err != nil {
			return Mapping{}, fmt.Errorf("PCP mapping made, but its nonce could not be saved (a later delete will be refused): %w", err)
		}
	}
	g.ext = res.ExternalAddr
	return Mapping{Protocol: r.Protocol, ExternalPort: res.ExternalPort, InternalClient: g.local.String(),
		InternalPort: res.InternalPort, Enabled: true, Description: r.Description, Lease: res.Lifetime,
		ExternalAddr: res.ExternalAddr, Method: PCP}, nil
}

// stored finds the nonce record of the mapping at key.
func (g *pcpGateway) stored(key Key) (pcp.StoredMapping, error) {
	if g.store == nil {
		return pcp.StoredMapping{}, errors.New("PCP deletes need the mapping's nonce, and no state directory is set")
	}
	all, err := g.store.List()
	if err != nil {
		return pcp.StoredMapping{}, err
	}
	for _, sm := range all {
		if sm.Gateway == g.server.Addr() && sm.Protocol == pcpProto(key.Protocol) && sm.ExternalPort == key.ExternalPort {
			return sm, nil
		}
	}
	return pcp.StoredMapping{}, fmt.Errorf("no PCP mapping of external port %s made from this host is remembered (PCP can delete only mappings whose nonce it kept)", key)
}

func (g *pcpGateway) Delete(ctx context.Context, key Key) error {
	sm, err := g.stored(key)
	if err != nil {
		return err
	}
	if err := g.c.Delete(ctx, sm.Protocol, sm.InternalPort, sm.Nonce); err != nil {
		return refusedPCP(err)
	}
	return g.store.Delete(sm.Gateway, sm.Protocol, sm.InternalPort)
}

func (g *pcpGateway) Edit(ctx context.Context, key Key, c Change) (Mapping, error) {
	sm, err := g.stored(key)
	if err != nil {
		return Mapping{}, err
	}
	old := Mapping{Protocol: key.Protocol, ExternalPort: sm.ExternalPort, InternalPort: sm.InternalPort,
		InternalClient: g.local.String(), Enabled: true, Lease: max(time.Until(sm.Expires).Round(time.Second), time.Minute), Method: PCP}
	return replaceMapping(ctx, g, key, old, c.apply(old))
}

func (g *pcpGateway) DeleteRange(ctx context.Context, proto Protocol, start, end uint16) (int, error) {
	if g.store == nil {
		return 0, nil
	}
	all, err := g.store.List()
	if err != nil {
		return 0, err
	}
	n := 0
	for _, sm := range all {
		if sm.Gateway == g.server.Addr() && sm.Protocol == pcpProto(proto) && sm.ExternalPort >= start && sm.ExternalPort <= end {
			if err := g.Delete(ctx, Key{Protocol: proto, ExternalPort: sm.ExternalPort}); err != nil {
				return n, err
			}
			n++
		}
	}
	return n, nil
}

func refusedPCP(err error) error {
	var re *pcp.ResultError
	if errors.As(err, &re) {
		return &RefusedError{Method: PCP, Code: int(re.Code), Text: re.Error(), Err: err}
	}
	return err
}
