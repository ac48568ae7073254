package portmap

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/portfwd/portfwd/natpmp"
)

// DefaultNATPMPLease is the lifetime asked for when a Request has none:
// RFC 6886 recommends 7200 s.
const DefaultNATPMPLease = 2 * time.Hour

// natpmpGateway is a gateway reached over NAT-PMP (RFC 6886).
type natpmpGateway struct {
	server netip.AddrPort
	c      *natpmp.Client
	local  netip.Addr
	state  *stateFile
	ext    natpmp.ExternalAddress
}

func probeNATPMP(ctx context.Context, o *Options, server netip.AddrPort) (Gateway, error) {
	c := &natpmp.Client{Gateway: server, Logger: o.Logger}
	ea, err := c.ExternalAddress(ctx)
	if err != nil {
		return nil, fmt.Errorf("NAT-PMP at %s: %w", server, err)
	}
	return &natpmpGateway{server: server, c: c, local: localAddrFor(server.Addr()), state: newStateFile(o.StateDir), ext: ea}, nil
}

func (g *natpmpGateway) Method() Method        { return NATPMP }
func (g *natpmpGateway) Addr() string          { return g.server.String() }
func (g *natpmpGateway) LocalAddr() netip.Addr { return g.local }

func (g *natpmpGateway) ExternalIP(ctx context.Context) (netip.Addr, error) {
	ea, err := g.c.ExternalAddress(ctx)
	if err != nil {
		return netip.Addr{}, refusedPMP(err)
	}
	g.ext = ea
	return ea.Addr, nil
}

func (g *natpmpGateway) Info(ctx context.Context) (Info, error) {
	ea, err := g.c.ExternalAddress(ctx)
	if err != nil {
		return Info{Method: NATPMP, Server: g.server.String()}, refusedPMP(err)
	}
	g.ext = ea
	return Info{Method: NATPMP, Server: g.server.String(), Epoch: ea.Epoch, ExternalIP: ea.Addr}, nil
}

// List is not possible: NAT-PMP has no operation that reads the table.
func (g *natpmpGateway) List(ctx context.Context, _ func(int)) ([]Mapping, error) {
	return nil, fmt.Errorf("NAT-PMP has no way to list a router's mappings (use --protocol upnp if the router also speaks UPnP): %w", ErrNotSupported)
}

func pmpProto(p Protocol) natpmp.Protocol {
	if p == UDP {
		return natpmp.UDP
	}
	return natpmp.TCP
}

func (g *natpmpGateway) Add(ctx context.Context, r Request) (Mapping, error) {
	if r.InternalClient.IsValid() && g.local.IsValid() && r.InternalClient != g.local {
		return Mapping{}, fmt.Errorf("NAT-PMP can only map ports to the host that asks (%s), not to %s: run portfwd on that host, or use UPnP", g.local, r.InternalClient)
	}
	if r.RemoteHost != "" {
		return Mapping{}, fmt.Errorf("NAT-PMP cannot restrict a mapping to one remote host: %w", ErrNotSupported)
	}
	if r.Disabled {
		return Mapping{}, fmt.Errorf("NAT-PMP has no disabled mappings: %w", ErrNotSupported)
	}
	ext := r.ExternalPort
	if ext == 0 {
		ext = r.InternalPort
	}
	lease := r.Lease
	if lease == 0 {
		lease = DefaultNATPMPLease
	}
	m, err := g.c.Map(ctx, pmpProto(r.Protocol), r.InternalPort, ext, lease)
	if err != nil {
		return Mapping{}, refusedPMP(err)
	}
	if m.ExternalPort != ext && !r.Any {
		// The router picked another port: undo, since the caller asked for
		// this one exactly.
		_ = g.c.Unmap(ctx, pmpProto(r.Protocol), r.InternalPort)
		return Mapping{}, &RefusedError{Method: NATPMP, Text: fmt.Sprintf(
			"the router cannot give external port %d/%s (it offered %d instead); use --any to accept another port", ext, r.Protocol, m.ExternalPort)}
	}
	out := Mapping{
		Protocol: r.Protocol, ExternalPort: m.ExternalPort, InternalClient: g.local.String(),
		InternalPort: m.InternalPort, Enabled: true, Description: r.Description, Lease: m.Lifetime,
		ExternalAddr: g.ext.Addr, Method: NATPMP,
	}
	err = g.state.update(func(recs []stateRecord) []stateRecord {
		recs = dropRecord(recs, g.Addr(), r.Protocol, m.ExternalPort)
		return append(recs, stateRecord{Method: NATPMP, Server: g.Addr(), Protocol: r.Protocol,
			ExternalPort: m.ExternalPort, InternalPort: m.InternalPort, Description: r.Description,
			Expires: time.Now().Add(m.Lifetime)})
	})
	return out, err
}

func dropRecord(recs []stateRecord, server string, p Protocol, ext uint16) []stateRecord {
	out := recs[:0]
	for _, x := range recs {
		if !(x.Server == server && x.Protocol == p && x.ExternalPort == ext) {
			out = append(out, x)
		}
	}
	return out
}

// internalPortFor finds the internal port of a mapping this host made at
// key. NAT-PMP deletes by internal port, so without a record we assume the
// common case of equal ports.
func (g *natpmpGateway) internalPortFor(key Key) (uint16, stateRecord, bool) {
	if recs := g.state.find(g.Addr(), key.Protocol, key.ExternalPort, key.ExternalPort); len(recs) > 0 {
		return recs[0].InternalPort, recs[0], true
	}
	return key.ExternalPort, stateRecord{}, false
}

func (g *natpmpGateway) Delete(ctx context.Context, key Key) error {
	internal, _, _ := g.internalPortFor(key)
	if err := g.c.Unmap(ctx, pmpProto(key.Protocol), internal); err != nil {
		return refusedPMP(err)
	}
	return g.state.update(func(recs []stateRecord) []stateRecord {
		return dropRecord(recs, g.Addr(), key.Protocol, key.ExternalPort)
	})
}

func (g *natpmpGateway) Edit(ctx context.Context, key Key, c Change) (Mapping, error) {
	internal, rec, _ := g.internalPortFor(key)
	old := Mapping{Protocol: key.Protocol, ExternalPort: key.ExternalPort, InternalPort: internal,
		InternalClient: g.local.String(), Enabled: true, Description: rec.Description, Method: NATPMP,
		Lease: DefaultNATPMPLease}
	if !rec.Expires.IsZero() {
		old.Lease = time.Until(rec.Expires).Round(time.Second)
	}
	m := c.apply(old)
	if !m.Enabled {
		return Mapping{}, fmt.Errorf("NAT-PMP has no disabled mappings; delete it instead: %w", ErrNotSupported)
	}
	return replaceMapping(ctx, g, key, old, m)
}

// replaceMapping edits a mapping on a protocol that has no edit (NAT-PMP,
// PCP): it deletes the old mapping and makes the new one, and puts the old
// one back if the new one cannot be made.
func replaceMapping(ctx context.Context, g Gateway, key Key, old, m Mapping) (Mapping, error) {
	if err := g.Delete(ctx, key); err != nil {
		return Mapping{}, err
	}
	request := func(x Mapping) Request {
		client, _ := netip.ParseAddr(x.InternalClient)
		return Request{Protocol: x.Protocol, InternalPort: x.InternalPort, ExternalPort: x.ExternalPort,
			InternalClient: client, Lease: x.Lease, Description: x.Description}
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
func (g *natpmpGateway) DeleteRange(ctx context.Context, proto Protocol, start, end uint16) (int, error) {
	n := 0
	for _, r := range g.state.find(g.Addr(), proto, start, end) {
		if err := g.Delete(ctx, Key{Protocol: proto, ExternalPort: r.ExternalPort}); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

func refusedPMP(err error) error {
	var re *natpmp.ResultError
	if errors.As(err, &re) {
		return &RefusedError{Method: NATPMP, Code: int(re.Code), Text: re.Error(), Err: err}
	}
	return err
}
