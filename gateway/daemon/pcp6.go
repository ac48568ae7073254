package daemon

import (
	"context"
	"errors"
	"net/netip"
	"time"

	"github.com/portfwd/portfwd/gateway"
	"github.com/portfwd/portfwd/pcp"
)

// PCP over IPv6: a MAP from an IPv6 client is a firewall pinhole (RFC 6887
// §11 on a device that only filters), not a port mapping. The assigned
// external address and port are the client's own address and internal
// port, whatever was suggested, as miniupnpd answers. The pinhole belongs
// to the nonce that made it: a refresh or delete with another nonce is
// NOT_AUTHORIZED (miniupnpd checked it on delete only before 2.3.8). A
// FILTER naming one remote host (/128, any or one port) restricts the
// pinhole to that peer; other filters are UNSUPP_OPTION, never ignored
// (miniupnpd ignores FILTER for IPv6 pinholes). PEER is not supported for
// IPv6 (nor IPv4): UNSUPP_OPCODE.

// isIPv6Client reports whether a PCP request came over IPv6.
func isIPv6Client(a netip.Addr) bool { return a.Is6() && !a.Is4In6() }

// mapPinhole answers a MAP from an IPv6 client.
func (h *pcpHandler) mapPinhole(ctx context.Context, mc pcp.MapContext) (pcp.MapGrant, pcp.ResultCode) {
	req := gateway.Requester{Addr: mc.Client, Source: gateway.SourcePCP}
	target := mc.InternalAddr()
	remote, remotePort, ok := pinholeFilter(mc.Filters)
	if !ok {
		return pcp.MapGrant{}, pcp.ResultUnsuppOption
	}
	if mc.Lifetime == 0 {
		return h.deletePinhole(ctx, mc, req, target, remote, remotePort)
	}
	proto, ok := protocolOf(mc.Protocol)
	if !ok {
		return pcp.MapGrant{}, pcp.ResultUnsuppProtocol
	}
	if mc.InternalPort == 0 {
		// "All ports" of a host: no pinhole that wide.
		return pcp.MapGrant{}, pcp.ResultNotAuthorized
	}
	p := gateway.Pinhole{Protocol: proto, InternalAddr: target, InternalPort: mc.InternalPort,
		RemoteHost: remote, RemotePort: remotePort, Description: pcpDescription, Nonce: mc.Nonce}
	if held, ok := h.core.FindPinhole(p.Key()); ok && held.Source == gateway.SourcePCP && held.Nonce != mc.Nonce {
		return pcp.MapGrant{}, pcp.ResultNotAuthorized // another application's pinhole
	}
	got, err := h.core.AddPinhole(ctx, req, p, time.Duration(mc.Lifetime)*time.Second)
	if err != nil {
		return pcp.MapGrant{}, h.pinholeResult(err)
	}
	// A pinhole is reached at the host's own address, except through the
	// relay, which listens on the router's: the answer says where.
	at := got.InternalAddr
	if h.pinholeAddr != nil {
		if a := h.pinholeAddr(); a.IsValid() {
			at = a
		}
	}
	return pcp.MapGrant{ExternalAddr: at, ExternalPort: got.InternalPort, Lifetime: got.LeaseSeconds(h.core.Now())}, pcp.ResultSuccess
}

// deletePinhole closes the client's pinhole of the port (with internal
// port 0, all its PCP pinholes with the request's nonce). Deleting what
// does not exist succeeds (RFC 6887 §15).
func (h *pcpHandler) deletePinhole(ctx context.Context, mc pcp.MapContext, req gateway.Requester, target, remote netip.Addr, remotePort uint16) (pcp.MapGrant, pcp.ResultCode) {
	var protos []gateway.Protocol
	if p, ok := protocolOf(mc.Protocol); ok {
		protos = []gateway.Protocol{p}
	} else if mc.Protocol == pcp.AllProtocols {
		protos = []gateway.Protocol{gateway.TCP, gateway.UDP}
	} else {
		return pcp.MapGrant{}, pcp.ResultUnsuppProtocol
	}
	var victims []gateway.Pinhole
	if mc.InternalPort == 0 {
		for _, p := range h.core.Pinholes() {
			if p.InternalAddr == target && p.Source == gateway.SourcePCP && p.Nonce == mc.Nonce {
				victims = append(victims, p)
			}
		}
	} else {
		for _, proto := range protos {
			k := gateway.PinholeKey{Protocol: proto, InternalAddr: target, InternalPort: mc.InternalPort, RemoteHost: remote, RemotePort: remotePort}
			if p, ok := h.core.FindPinhole(k); ok {
				if p.Source == gateway.SourcePCP && p.Nonce != mc.Nonce {
					return pcp.MapGrant{}, pcp.ResultNotAuthorized
				}
				victims = append(victims, p)
			}
		}
	}
	for _, p := range victims {
		if err := h.core.DeletePinhole(ctx, req, p.ID); err != nil && !errors.Is(err, gateway.ErrNoSuchPinhole) {
			return pcp.MapGrant{}, h.pinholeResult(err)
		}
	}
	return pcp.MapGrant{ExternalAddr: target, ExternalPort: mc.InternalPort}, pcp.ResultSuccess
}

// pinholeFilter reads the FILTER options a pinhole can apply: none, or one
// naming a single IPv6 host (/128), with any port or one.
func pinholeFilter(filters []pcp.Filter) (netip.Addr, uint16, bool) {
	switch len(filters) {
	case 0:
		return netip.Addr{}, 0, true
	case 1:
		f := filters[0]
		a := f.Prefix.Addr()
		if isIPv6Client(a) && f.Prefix.Bits() == 128 {
			return a.WithZone(""), f.Port, true
		}
	}
	return netip.Addr{}, 0, false
}

// pinholeResult is the PCP result for a core pinhole error.
func (h *pcpHandler) pinholeResult(err error) pcp.ResultCode {
	h.metrics.countErr(err)
	switch {
	case errors.Is(err, gateway.ErrPinholesDisabled), errors.Is(err, gateway.ErrNoPinholeBackend),
		errors.Is(err, gateway.ErrNotAuthorized):
		return pcp.ResultNotAuthorized
	case errors.Is(err, gateway.ErrPinholeSpace):
		return pcp.ResultNoResources
	case errors.Is(err, gateway.ErrProtocolNotSupported):
		return pcp.ResultUnsuppProtocol
	case errors.Is(err, gateway.ErrInvalidArgs), errors.Is(err, gateway.ErrWildcardInternalPort):
		return pcp.ResultMalformedRequest
	}
	return pcp.ResultNetworkFailure
}
