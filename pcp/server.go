package pcp

import (
	"context"
	"encoding/binary"
	"errors"
	"net/netip"
)

// MapContext is a validated MAP request, as a Handler receives it.
type MapContext struct {
	// Client is the source address of the request packet, which
	// HandlePacket has checked against the client address written in it.
	Client   netip.Addr
	Protocol Protocol
	// InternalPort is the port to forward to; 0 with AllProtocols means
	// every port (RFC 6887 ignores the port of an AllProtocols request,
	// and so does HandlePacket: it passes 0).
	InternalPort          uint16
	SuggestedExternalPort uint16
	// SuggestedExternalAddr is the unspecified address when the client has
	// no preference.
	SuggestedExternalAddr netip.Addr
	// Lifetime is the requested lifetime in seconds, already brought
	// within ServerOptions' bounds; 0 deletes.
	Lifetime uint32
	Nonce    Nonce
	// PreferFailure forbids assigning another external port (or address,
	// if one was suggested) than the suggested one: fail with
	// ResultCannotProvideExternal instead.
	PreferFailure bool
	// Filters are the FILTER options, in order. A handler that cannot
	// apply them must fail with ResultUnsuppOption, never ignore them:
	// the client asked for a port open to those peers only.
	Filters []Filter
	// ThirdParty is the internal host named by a THIRD_PARTY option
	// (only when ServerOptions.AllowThirdParty), or the zero Addr.
	ThirdParty netip.Addr
}

// InternalAddr is the host the mapping forwards to: ThirdParty if set,
// else Client.
func (m MapContext) InternalAddr() netip.Addr {
	if m.ThirdParty.IsValid() {
		return m.ThirdParty
	}
	return m.Client
}

// PeerContext is a validated PEER request: the outbound flow from the
// internal address and port to the remote peer. PreferFailure and Filters
// are never set (RFC 6887 allows those options with MAP only).
type PeerContext struct {
	MapContext
	RemotePort uint16
	RemoteAddr netip.Addr
}

// MapGrant is a Handler's answer to a MAP or PEER request.
type MapGrant struct {
	// ExternalPort and ExternalAddr are the assigned external port and
	// address. A success that creates or refreshes a mapping must set
	// both (the address is the router's external address); HandlePacket
	// turns an unset address into NETWORK_FAILURE and an unset port into
	// NO_RESOURCES, as the client could do nothing with them. In a
	// deletion they may stay zero: the reply then echoes the request.
	ExternalPort uint16
	ExternalAddr netip.Addr
	// Lifetime is the granted lifetime in seconds; 0 means as requested
	// (within ServerOptions' bounds). With a failure, a non-zero Lifetime
	// replaces the error lifetime ServerOptions gives that result code.
	Lifetime uint32
}

// A Handler owns a gateway's mapping table, and its firewall. HandlePacket
// calls it with requests already decoded and validated, and turns its
// answers into responses. Methods may be called concurrently.
//
// The Handler keeps the nonce of every mapping and enforces it (RFC 6887
// §11.3): a MAP or PEER request for an existing mapping of the same
// internal address, protocol and internal port with another nonce must
// fail with ResultNotAuthorized, whether it refreshes or deletes. Only the
// table knows which mappings exist, so HandlePacket cannot.
type Handler interface {
	// Map creates, refreshes (same internal address, protocol, port and
	// nonce) or, with Lifetime 0, deletes a mapping. A refresh should keep
	// the external port, so that a retransmitted request gets the same
	// answer. Deleting a mapping that does not exist succeeds.
	// InternalPort 0 with Lifetime 0 deletes all the internal address's
	// mappings of the protocol that carry the nonce.
	Map(ctx context.Context, req MapContext) (MapGrant, ResultCode)
	// Peer creates or extends the mapping of an outbound flow and reports
	// it. A handler without PEER support returns ResultUnsuppOpcode.
	Peer(ctx context.Context, req PeerContext) (MapGrant, ResultCode)
}

// Server defaults. The lifetime bounds are miniupnpd's; the error
// lifetimes follow RFC 6887 §7.4's examples (a short lifetime error is
// worth retrying in 30 seconds, a long one in 30 minutes).
const (
	DefaultMinLifetime        = 120
	DefaultMaxLifetime        = 86400
	DefaultShortErrorLifetime = 30
	DefaultLongErrorLifetime  = 1800
)

// ServerOptions tune HandlePacket. The zero value gives the defaults.
type ServerOptions struct {
	// AllowThirdParty lets clients map ports for other hosts with the
	// THIRD_PARTY option. Off, such requests fail with UNSUPP_OPTION, as
	// from a server without the option: RFC 6887 §13.1 recommends that a
	// home router not permit it, and miniupnpd answers the same.
	AllowThirdParty bool
	// MinLifetime and MaxLifetime bound the lifetime passed to the Handler
	// (seconds): shorter requests are raised to MinLifetime, longer ones
	// cut to MaxLifetime. 0 means DefaultMinLifetime, DefaultMaxLifetime.
	MinLifetime, MaxLifetime uint32
	// ShortErrorLifetime and LongErrorLifetime are the Lifetime of error
	// responses, for short and long lifetime errors (see
	// ResultCode.ShortLifetime). 0 means the defaults.
	ShortErrorLifetime, LongErrorLifetime uint32
}

func (o ServerOptions) minLifetime() uint32 { return cmpOr(o.MinLifetime, DefaultMinLifetime) }
func (o ServerOptions) maxLifetime() uint32 {
	return max(cmpOr(o.MaxLifetime, DefaultMaxLifetime), o.minLifetime())
}

// clamp brings a non-zero requested lifetime within the bounds.
func (o ServerOptions) clamp(lifetime uint32) uint32 {
	return min(max(lifetime, o.minLifetime()), o.maxLifetime())
}

// errorLifetime is the Lifetime of an error response with code c.
func (o ServerOptions) errorLifetime(c ResultCode) uint32 {
	if c.ShortLifetime() {
		return cmpOr(o.ShortErrorLifetime, DefaultShortErrorLifetime)
	}
	return cmpOr(o.LongErrorLifetime, DefaultLongErrorLifetime)
}

func cmpOr(v, def uint32) uint32 {
	if v == 0 {
		return def
	}
	return v
}

// IsPCP reports whether a packet that arrived on port 5351 is for the PCP
// server rather than the NAT-PMP one: its first byte, the version, is not
// NAT-PMP's 0. The server of the port (package pmp) dispatches on it. Versions other than 2 go to PCP too, which answers them with its
// UNSUPP_VERSION naming version 2 (RFC 6887 §9). An empty packet is
// neither's.
func IsPCP(pkt []byte) bool { return len(pkt) > 0 && pkt[0] != natpmpVersion }

// HandlePacket answers one request packet req from src on behalf of h,
// stamping the response with epoch (the seconds since the gateway's
// mapping table started empty). It returns false when the packet must be
// dropped without an answer: shorter than 2 bytes, or a response itself
// (RFC 6887 §8.3).
//
// It does what RFC 6887 leaves to the protocol, in this order, answering
// the first failure:
//   - a version other than 2: UNSUPP_VERSION, in a version 2 response;
//   - a size under 24 bytes, over 1100, or not a multiple of 4, a payload
//     cut short: MALFORMED_REQUEST; an opcode other than ANNOUNCE, MAP,
//     PEER: UNSUPP_OPCODE; an option cut short, of the wrong length,
//     repeated or with the wrong opcode: MALFORMED_OPTION (see
//     ParseRequest);
//   - a client address in the request that is not src: ADDRESS_MISMATCH;
//   - an unknown mandatory option, or THIRD_PARTY when not allowed:
//     UNSUPP_OPTION (unknown optional options are ignored, and left out
//     of the response); THIRD_PARTY naming src itself: MALFORMED_REQUEST;
//     a FILTER naming a peer of the other address family than the
//     internal host: MALFORMED_OPTION; PREFER_FAILURE with nothing
//     suggested: MALFORMED_OPTION;
//   - then it brings the lifetime within opts' bounds and calls h.
//
// Error responses are the request echoed (up to 1100 bytes, padded to 4)
// with the response header written over it, as RFC 6887 §7.3 requires, and
// an error lifetime from opts. Success responses carry the request's
// nonce, protocol and internal port with the granted external port and
// address, and the options that were processed (THIRD_PARTY,
// PREFER_FAILURE, FILTER). ANNOUNCE is answered here with the epoch alone.
//
// PEER requests cannot delete (RFC 6887 §12): a requested lifetime of 0 is
// raised to the minimum like any short one. HandlePacket also holds h to
// PREFER_FAILURE: a success with another port than the one suggested is
// sent as CANNOT_PROVIDE_EXTERNAL.
func HandlePacket(ctx context.Context, req []byte, src netip.Addr, h Handler, epoch uint32, opts ServerOptions) ([]byte, bool) {
	src = src.Unmap().WithZone("")
	if !src.IsValid() {
		return nil, false
	}
	fail := func(code ResultCode, parsed bool) ([]byte, bool) {
		return errorResponse(req, code, opts.errorLifetime(code), epoch, parsed), true
	}
	r, err := ParseRequest(req)
	switch {
	case errors.Is(err, ErrShortPacket), errors.Is(err, ErrNotRequest):
		return nil, false
	case errors.Is(err, ErrUnsupportedVersion):
		return fail(ResultUnsuppVersion, false)
	case errors.Is(err, ErrUnsupportedOpcode):
		return fail(ResultUnsuppOpcode, false)
	case errors.Is(err, ErrMalformedOption):
		return fail(ResultMalformedOption, false)
	case err != nil:
		return fail(ResultMalformedRequest, false)
	}
	if r.ClientAddr != src {
		return fail(ResultAddressMismatch, true)
	}

	// Sort the options: those processed go to the handler and back into
	// the response; unknown optional ones are dropped.
	var (
		processed     []Option
		thirdParty    netip.Addr
		preferFailure bool
		filters       []Filter
	)
	for _, o := range r.Options {
		switch o.Code {
		case OptionThirdParty:
			thirdParty, _ = o.ThirdParty() // checked by ParseRequest
		case OptionPreferFailure:
			preferFailure = true
		case OptionFilter:
			f, _ := o.Filter() // checked by ParseRequest
			filters = append(filters, f)
		default:
			if o.Code.Mandatory() {
				return fail(ResultUnsuppOption, true)
			}
			continue
		}
		processed = append(processed, o)
	}
	if thirdParty.IsValid() {
		if !opts.AllowThirdParty {
			return fail(ResultUnsuppOption, true)
		}
		// RFC 6887 §13.1: naming oneself would make the request fail on
		// servers without the option, for nothing.
		if thirdParty == src {
			return fail(ResultMalformedRequest, true)
		}
	}

	// A FILTER naming a peer of the other address family than the
	// internal host (an IPv6 peer on an IPv4 mapping) can never match:
	// the option is malformed for this request, whatever the server
	// supports.
	internal := src
	if thirdParty.IsValid() {
		internal = thirdParty
	}
	for _, f := range filters {
		if f.Prefix.Bits() > 0 && f.Prefix.Addr().Unmap().Is4() != internal.Is4() {
			return fail(ResultMalformedOption, true)
		}
	}

	var payload *MapPayload
	switch r.Op {
	case OpAnnounce:
		resp, _ := AppendResponse(nil, Response{Op: OpAnnounce, Result: ResultSuccess, Epoch: epoch})
		return resp, true
	case OpMap:
		payload = r.Map
	case OpPeer:
		payload = &r.Peer.MapPayload
	}
	mc := MapContext{
		Client:                src,
		Protocol:              payload.Protocol,
		InternalPort:          payload.InternalPort,
		SuggestedExternalPort: payload.ExternalPort,
		SuggestedExternalAddr: payload.ExternalAddr,
		Nonce:                 payload.Nonce,
		PreferFailure:         preferFailure,
		Filters:               filters,
		ThirdParty:            thirdParty,
	}
	if mc.Protocol == AllProtocols {
		mc.InternalPort = 0 // "MUST be ignored on reception" (RFC 6887 §11.1)
	}
	deleting := r.Op == OpMap && r.Lifetime == 0
	if !deleting {
		mc.Lifetime = opts.clamp(r.Lifetime)
	}
	if preferFailure && mc.SuggestedExternalPort == 0 && mc.SuggestedExternalAddr.IsUnspecified() {
		// Nothing suggested, so nothing to prefer: miniupnpd answers
		// this, and it tells the client its request is pointless.
		return fail(ResultMalformedOption, true)
	}

	var grant MapGrant
	var rc ResultCode
	if r.Op == OpMap {
		grant, rc = h.Map(ctx, mc)
	} else {
		grant, rc = h.Peer(ctx, PeerContext{MapContext: mc, RemotePort: r.Peer.RemotePort, RemoteAddr: r.Peer.RemoteAddr})
	}
	if rc == ResultSuccess && !deleting {
		rc = checkGrant(mc, grant)
	}
	if rc != ResultSuccess {
		lifetime := grant.Lifetime
		if lifetime == 0 {
			lifetime = opts.errorLifetime(rc)
		}
		return errorResponse(req, rc, lifetime, epoch, true), true
	}

	out := Response{Op: r.Op, Result: ResultSuccess, Epoch: epoch, Options: processed}
	assigned := *payload
	switch {
	case deleting:
		// The mapping is gone: lifetime 0, and the external port and
		// address it had if the handler says, else the request's.
		if grant.ExternalPort != 0 {
			assigned.ExternalPort = grant.ExternalPort
		}
		if grant.ExternalAddr.IsValid() {
			assigned.ExternalAddr = grant.ExternalAddr
		}
	default:
		assigned.ExternalPort = grant.ExternalPort
		assigned.ExternalAddr = grant.ExternalAddr.Unmap()
		out.Lifetime = cmpOr(grant.Lifetime, mc.Lifetime)
	}
	if r.Op == OpMap {
		out.Map = &assigned
	} else {
		out.Peer = &PeerPayload{MapPayload: assigned, RemotePort: r.Peer.RemotePort, RemoteAddr: r.Peer.RemoteAddr}
	}
	resp, err := AppendResponse(nil, out)
	if err != nil {
		// Cannot happen: the response is no longer than the request.
		return fail(ResultNoResources, true)
	}
	return resp, true
}

// checkGrant holds a successful grant to what the client can use and to
// what it asked for.
func checkGrant(mc MapContext, g MapGrant) ResultCode {
	switch {
	case !g.ExternalAddr.IsValid() || g.ExternalAddr.IsUnspecified():
		return ResultNetworkFailure
	case g.ExternalPort == 0 && mc.InternalPort != 0:
		return ResultNoResources
	case mc.PreferFailure && mc.SuggestedExternalPort != 0 && g.ExternalPort != mc.SuggestedExternalPort,
		mc.PreferFailure && !mc.SuggestedExternalAddr.IsUnspecified() && g.ExternalAddr.Unmap() != mc.SuggestedExternalAddr:
		return ResultCannotProvideExternal
	}
	return ResultSuccess
}

// errorResponse is the answer to a request that failed with code: a copy
// of the request (RFC 6887 §7.3), at most MaxPacketLen and at least a
// header long, padded to a multiple of 4, with the response header written
// over it. parsed says whether the request could be decoded; if it could
// not, the reserved 96 bits keep the last 96 bits of the client address,
// as RFC 6887 §7.2 asks, else they are zero.
func errorResponse(req []byte, code ResultCode, lifetime, epoch uint32, parsed bool) []byte {
	n := min(len(req), MaxPacketLen)
	b := make([]byte, max(headerLen, (n+3)&^3))
	copy(b, req[:n])
	b[0] = Version // the only one this server speaks, also for UNSUPP_VERSION
	b[1] = req[1] | opResponse
	b[2] = 0
	b[3] = byte(code)
	binary.BigEndian.PutUint32(b[4:], lifetime)
	binary.BigEndian.PutUint32(b[8:], epoch)
	if parsed {
		clear(b[12:headerLen])
	}
	return b
}
