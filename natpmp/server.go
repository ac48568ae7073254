package natpmp

import (
	"context"
	"encoding/binary"
	"errors"
	"net/netip"
)

// A Handler owns a gateway's mapping table. HandlePacket calls it with
// requests already decoded and validated, and turn its answers into
// replies. client is the IPv4 source address of the request, which RFC 6886
// §3.3 makes the internal address of any mapping: a host cannot map ports
// for another. Methods may be called concurrently.
type Handler interface {
	// ExternalAddress returns the gateway's external IPv4 address, or a
	// failure code. Success with an invalid or unspecified address is sent
	// as NetworkFailure: the gateway has no external address to give.
	ExternalAddress(ctx context.Context, client netip.Addr) (netip.Addr, ResultCode)

	// Map creates, renews or deletes a mapping from an external port to
	// client:internalPort and returns the external port and lifetime (in
	// seconds) granted. A request for an internal port the client already
	// has mapped must return the existing external port, so that a
	// retransmitted request gets the same answer (RFC 6886 §3.3).
	//
	// lifetime 0 deletes the client's mapping for internalPort (the
	// suggested port is then meaningless); deleting a mapping that does not
	// exist succeeds. internalPort 0 with lifetime 0 deletes all the
	// client's mappings of proto. On deletion the reply carries external
	// port 0 and lifetime 0 whatever Map returns; on failure it carries
	// lifetime 0 and the external port Map returned (0 if none).
	Map(ctx context.Context, client netip.Addr, proto Protocol, internalPort, suggestedExternal uint16, lifetime uint32) (externalPort uint16, granted uint32, result ResultCode)
}

// HandlePacket answers one request packet req from client, on behalf of h,
// stamping the reply with epoch (the seconds since the gateway's mapping
// table started empty). It returns false when the packet must be dropped
// without a reply: when it is too short, or is itself a response.
//
// A packet whose version is not 0 gets the Unsupported Version reply, which
// is how a PCP client learns to fall back to NAT-PMP; a daemon that also
// serves PCP must hand version-2 packets to its PCP server before calling
// HandlePacket. A version-0 request with an unknown opcode is echoed back
// with the response bit and result UnsupportedOpcode (RFC 6886 §3.5); bytes
// 4-7 of the echo carry epoch, as they do in every response, because
// clients (libnatpmp, this package) read the epoch there.
func HandlePacket(ctx context.Context, req []byte, client netip.Addr, h Handler, epoch uint32) (resp []byte, ok bool) {
	r, err := ParseRequest(req)
	switch {
	case errors.Is(err, ErrUnsupportedVersion):
		// Opcode 128 as corrected by erratum 3618, not the 0 of the RFC's
		// figure.
		return AppendResponse(nil, Response{Op: OpExternalAddress, Result: UnsupportedVersion, Epoch: epoch}), true
	case errors.Is(err, ErrUnsupportedOpcode):
		return unsupportedOpcodeReply(req, epoch), true
	case err != nil:
		return nil, false
	}
	client = client.Unmap()
	out := Response{Op: r.Op, Epoch: epoch}
	switch r.Op {
	case OpExternalAddress:
		addr, rc := h.ExternalAddress(ctx, client)
		addr = addr.Unmap()
		if rc == Success && (!addr.Is4() || addr.IsUnspecified()) {
			rc = NetworkFailure
		}
		out.Result = rc
		if rc == Success {
			out.ExternalAddr = addr
		}
	case OpMapUDP, OpMapTCP:
		ext, granted, rc := h.Map(ctx, client, Protocol(r.Op), r.InternalPort, r.SuggestedExternalPort, r.Lifetime)
		out.Result = rc
		out.InternalPort = r.InternalPort // lets the client tell which request this answers
		switch {
		case rc != Success:
			out.ExternalPort = ext // RFC 6886 §3.4: lifetime undefined, sent as 0
		case r.Lifetime == 0:
			// RFC 6886 §3.4: a successful deletion answers port 0,
			// lifetime 0, so that a retransmission gets the same reply.
		default:
			out.ExternalPort = ext
			out.Lifetime = granted
		}
	}
	return AppendResponse(nil, out), true
}

// unsupportedOpcodeReply echoes req as the reply to an unknown opcode.
func unsupportedOpcodeReply(req []byte, epoch uint32) []byte {
	b := make([]byte, max(len(req), responseHeaderLen))
	copy(b, req)
	b[0] = Version
	b[1] |= opReply
	binary.BigEndian.PutUint16(b[2:], uint16(UnsupportedOpcode))
	binary.BigEndian.PutUint32(b[4:], epoch)
	return b
}
