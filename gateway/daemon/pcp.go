package daemon

import (
	"context"
	"errors"
	"math"
	"net/netip"
	"time"

	"github.com/portfwd/portfwd/gateway"
	"github.com/portfwd/portfwd/pcp"
)

// pcpHandler is the pcp.Handler of the daemon: it translates PCP (RFC
// 6887) MAP requests onto gateway.Core. Like NAT-PMP, PCP identifies a
// mapping by its internal address, protocol and port; unlike NAT-PMP, a
// mapping belongs to the nonce that made it, which the core stores.
//
// What it supports of PCP: MAP for TCP and UDP, PREFER_FAILURE, and a
// FILTER naming one remote host (any port), which becomes the mapping's
// remote host. Other filters, other protocols, PEER and THIRD_PARTY are
// refused with the codes RFC 6887 gives for what a server does not do.
type pcpHandler struct{ pmpAdapter }

var _ pcp.Handler = (*pcpHandler)(nil)

// pcpDescription labels mappings made over PCP in lists.
const pcpDescription = "PCP"

func (h *pcpHandler) Map(ctx context.Context, mc pcp.MapContext) (g pcp.MapGrant, rc pcp.ResultCode) {
	defer answerPanic(h.pmpAdapter, "pcp", "map", mc.Client, &rc, pcp.ResultNetworkFailure)
	action := "map"
	switch {
	case isIPv6Client(mc.Client):
		action = "pinhole"
		if mc.Lifetime == 0 {
			action = "delete pinhole"
		}
		g, rc = h.mapPinhole(ctx, mc)
	case mc.Lifetime == 0:
		action = "delete"
		g, rc = h.delete(ctx, mc)
	default:
		g, rc = h.add(ctx, mc)
	}
	h.metrics.request("pcp", action, int(rc))
	if rc != pcp.ResultSuccess {
		if n, ok := ctx.Value(pmpNoteKey{}).(*pmpNote); ok && !n.noted {
			notePMP(ctx, action, mappingOfPCP(mc), nil)
		}
	}
	return g, rc
}

// mappingOfPCP is what a MAP request asks for, for the audit trail.
func mappingOfPCP(mc pcp.MapContext) gateway.Mapping {
	m := gateway.Mapping{ExternalPort: mc.SuggestedExternalPort, InternalAddr: mc.InternalAddr(),
		InternalPort: mc.InternalPort, Description: pcpDescription}
	if p, ok := protocolOf(mc.Protocol); ok {
		m.Protocol = p
	}
	if r, ok := remoteHostOf(mc.Filters); ok {
		m.RemoteHost = r
	}
	return m
}

// Peer is not supported: the gateway creates outbound flows' mappings
// itself, and PCP PEER is optional (RFC 6887 section 12).
func (h *pcpHandler) Peer(_ context.Context, pc pcp.PeerContext) (pcp.MapGrant, pcp.ResultCode) {
	h.metrics.request("pcp", "peer", int(pcp.ResultUnsuppOpcode))
	return pcp.MapGrant{}, pcp.ResultUnsuppOpcode
}

// protocolOf maps a PCP protocol to the core's; the core maps TCP and UDP
// only.
func protocolOf(p pcp.Protocol) (gateway.Protocol, bool) {
	switch p {
	case pcp.TCP:
		return gateway.TCP, true
	case pcp.UDP:
		return gateway.UDP, true
	}
	return 0, false
}

// result turns a core error into a PCP result code, counting the errors
// that are the gateway's own.
func (h *pcpHandler) result(err error) pcp.ResultCode {
	h.metrics.countErr(err)
	return pcpResult(err)
}

func (h *pcpHandler) add(ctx context.Context, mc pcp.MapContext) (pcp.MapGrant, pcp.ResultCode) {
	if h.ext.refusing() != nil {
		return pcp.MapGrant{}, pcp.ResultNetworkFailure
	}
	extAddr := h.ext.Get()
	if !extAddr.IsValid() {
		return pcp.MapGrant{}, pcp.ResultNetworkFailure
	}
	proto, ok := protocolOf(mc.Protocol)
	if !ok {
		return pcp.MapGrant{}, pcp.ResultUnsuppProtocol
	}
	remote, ok := remoteHostOf(mc.Filters)
	if !ok {
		return pcp.MapGrant{}, pcp.ResultUnsuppOption
	}
	client := mc.InternalAddr()
	held, hasHeld := h.core.FindByInternal(client, proto, mc.InternalPort)
	// With an external address pool, the subscriber's paired address
	// (or the one its mapping already has); without, the gateway's own.
	poolAddr := h.core.PoolAddr(client)
	if hasHeld {
		poolAddr = held.ExternalAddr
	}
	if poolAddr.IsValid() {
		extAddr = poolAddr
	}
	if s := mc.SuggestedExternalAddr.Unmap(); mc.PreferFailure && s.IsValid() && !s.IsUnspecified() && s != extAddr {
		return pcp.MapGrant{}, pcp.ResultCannotProvideExternal
	}
	req := gateway.Requester{Addr: mc.Client, Source: gateway.SourcePCP}
	m := gateway.Mapping{
		Protocol:     proto,
		ExternalPort: mc.SuggestedExternalPort,
		InternalAddr: client,
		InternalPort: mc.InternalPort,
		RemoteHost:   remote,
		Enabled:      true,
		Description:  pcpDescription,
		Nonce:        mc.Nonce,
		ExternalAddr: poolAddr,
	}
	if hasHeld {
		if held.Source == gateway.SourcePCP && held.Nonce != mc.Nonce {
			return pcp.MapGrant{}, pcp.ResultNotAuthorized // another application's mapping
		}
		// A refresh keeps the port granted (and a mapping the host made
		// over UPnP or NAT-PMP becomes this client's, nonce and all).
		m.ExternalPort = held.ExternalPort
		if held.Description != "" && held.Source != gateway.SourcePCP {
			m.Description = held.Description
		}
	}
	m.Expires = h.core.Now().Add(time.Duration(mc.Lifetime) * time.Second)
	var got gateway.Mapping
	var err error
	if mc.PreferFailure && m.ExternalPort != 0 {
		got, err = h.core.Add(ctx, req, m)
	} else {
		got, err = h.core.AddAny(ctx, req, m)
	}
	if err != nil {
		notePMP(ctx, "map", m, err)
		return pcp.MapGrant{}, h.result(err)
	}
	if got.Chained() && got.Upstream.Public.IsValid() {
		// Reached on the router above's address and port.
		extAddr = got.Upstream.Public.Addr()
	}
	return pcp.MapGrant{ExternalPort: got.PublicPort(), ExternalAddr: extAddr, Lifetime: got.LeaseSeconds(h.core.Now())}, pcp.ResultSuccess
}

// remoteHostOf reads the FILTER options the core can apply: none (any
// remote host), or one naming a single host with any port.
func remoteHostOf(filters []pcp.Filter) (netip.Addr, bool) {
	switch len(filters) {
	case 0:
		return netip.Addr{}, true
	case 1:
		f := filters[0]
		a := f.Prefix.Addr()
		full := f.Prefix.Bits() == a.BitLen() || (a.Is4In6() && f.Prefix.Bits() == 32)
		if f.Port == 0 && full {
			return a.Unmap(), true
		}
	}
	return netip.Addr{}, false
}

// delete removes the client's mapping of the internal port, or with
// internal port 0 all its mappings of the protocol (both, for
// AllProtocols) that carry the request's nonce. Deleting what does not
// exist succeeds (RFC 6887 section 15).
func (h *pcpHandler) delete(ctx context.Context, mc pcp.MapContext) (pcp.MapGrant, pcp.ResultCode) {
	client := mc.InternalAddr()
	req := gateway.Requester{Addr: mc.Client, Source: gateway.SourcePCP}
	var protos []gateway.Protocol
	if p, ok := protocolOf(mc.Protocol); ok {
		protos = []gateway.Protocol{p}
	} else if mc.Protocol == pcp.AllProtocols {
		protos = []gateway.Protocol{gateway.TCP, gateway.UDP}
	} else {
		return pcp.MapGrant{}, pcp.ResultUnsuppProtocol
	}
	if mc.InternalPort == 0 {
		for _, p := range protos {
			for _, m := range h.core.MappingsTo(client, p) {
				if m.InternalAddr != client || m.Source != gateway.SourcePCP || m.Nonce != mc.Nonce {
					continue
				}
				if err := h.core.DeleteAt(ctx, req, m.Key(), m.RemoteHost); err != nil && !errors.Is(err, gateway.ErrNoSuchEntry) {
					return pcp.MapGrant{}, h.result(err)
				}
			}
		}
		return pcp.MapGrant{}, pcp.ResultSuccess
	}
	held, ok := h.core.FindByInternal(client, protos[0], mc.InternalPort)
	if !ok {
		return pcp.MapGrant{}, pcp.ResultSuccess
	}
	if held.Source == gateway.SourcePCP && held.Nonce != mc.Nonce {
		return pcp.MapGrant{}, pcp.ResultNotAuthorized
	}
	err := h.core.DeleteAt(ctx, req, held.Key(), held.RemoteHost)
	if err != nil && !errors.Is(err, gateway.ErrNoSuchEntry) {
		return pcp.MapGrant{}, h.result(err)
	}
	extAddr := h.ext.Get()
	if held.ExternalAddr.IsValid() {
		extAddr = held.ExternalAddr
	}
	return pcp.MapGrant{ExternalPort: held.PublicPort(), ExternalAddr: extAddr}, pcp.ResultSuccess
}

// pcpOptions are the PCP server's lifetime bounds, from the policy's lease
// bounds (0, no bound, becomes the widest PCP can express).
func pcpOptions(p PolicyConfig) pcp.ServerOptions {
	secs := func(d Duration, none uint32) uint32 {
		s := time.Duration(d) / time.Second
		switch {
		case s <= 0:
			return none
		case s > math.MaxUint32:
			return math.MaxUint32
		}
		return uint32(s)
	}
	return pcp.ServerOptions{MinLifetime: secs(p.MinLease, 1), MaxLifetime: secs(p.MaxLease, math.MaxUint32)}
}

// pcpResult returns the PCP result code for a core error. ErrConflict and
// ErrReservedPort only reach a PCP client that set PREFER_FAILURE (without
// it the adapter uses AddAny), hence CANNOT_PROVIDE_EXTERNAL. A delete of
// a mapping that does not exist is a success in PCP (RFC 6887 §15); the
// adapter answers it before asking for a code.
func pcpResult(err error) pcp.ResultCode {
	switch {
	case err == nil:
		return pcp.ResultSuccess
	case errors.Is(err, gateway.ErrQuota):
		return pcp.ResultUserExQuota
	case errors.Is(err, gateway.ErrTableFull), errors.Is(err, gateway.ErrNoPortsAvailable), errors.Is(err, gateway.ErrUpstreamExhausted):
		return pcp.ResultNoResources
	case errors.Is(err, gateway.ErrConflict), errors.Is(err, gateway.ErrReservedPort), errors.Is(err, gateway.ErrUpstreamConflict):
		return pcp.ResultCannotProvideExternal
	case errors.Is(err, gateway.ErrNotAuthorized), errors.Is(err, gateway.ErrUpstreamRefused):
		return pcp.ResultNotAuthorized
	case errors.Is(err, gateway.ErrRemoteHostNotSupported):
		return pcp.ResultUnsuppOption
	case errors.Is(err, gateway.ErrInvalidArgs), errors.Is(err, gateway.ErrWildcardInternalPort),
		errors.Is(err, gateway.ErrWildcardExternalPort), errors.Is(err, gateway.ErrInconsistentRange):
		return pcp.ResultMalformedRequest
	}
	return pcp.ResultNetworkFailure
}
