package natpmp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
)

// Well-known NAT-PMP ports (RFC 6886 §3.1 and §3.2.1).
const (
	// ServerPort is where a gateway listens for requests.
	ServerPort = 5351
	// ClientPort is where clients listen for the gateway's multicast
	// address announcements.
	ClientPort = 5350
)

// Version is the only NAT-PMP version; PCP (RFC 6887) uses 2 on the same port.
const Version = 0

// pcpVersion is the version byte of Port Control Protocol packets, which
// share port 5351 with NAT-PMP.
const pcpVersion = 2

// opReply is the bit a server sets in the opcode of every response.
const opReply = 0x80

// Packet sizes, in bytes.
const (
	headerLen              = 2  // version + opcode: the whole external address request
	responseHeaderLen      = 8  // version, opcode, result code, seconds since start of epoch
	mapRequestLen          = 12 // header, reserved, internal port, suggested port, lifetime
	externalAddressRespLen = 12 // response header + IPv4 address
	mapResponseLen         = 16 // response header + internal port, external port, lifetime
)

// Protocol is the transport protocol of a mapping. Its values are the
// opcodes of the matching mapping request, so Opcode(p) is that request.
type Protocol uint8

// Protocols NAT-PMP can map.
const (
	UDP Protocol = 1
	TCP Protocol = 2
)

func (p Protocol) String() string {
	switch p {
	case UDP:
		return "UDP"
	case TCP:
		return "TCP"
	}
	return fmt.Sprintf("protocol(%d)", uint8(p))
}

// Opcode is a NAT-PMP request opcode. Responses carry 128 + the opcode of the
// request they answer; the codec adds and strips that bit, so Request.Op and
// Response.Op both hold the request's opcode.
type Opcode uint8

// Opcodes defined by RFC 6886.
const (
	OpExternalAddress Opcode = 0
	OpMapUDP          Opcode = 1
	OpMapTCP          Opcode = 2
)

func (o Opcode) String() string {
	switch o {
	case OpExternalAddress:
		return "external address"
	case OpMapUDP:
		return "map UDP"
	case OpMapTCP:
		return "map TCP"
	}
	return fmt.Sprintf("opcode %d", uint8(o))
}

// isMap reports whether o is one of the two mapping opcodes.
func (o Opcode) isMap() bool { return o == OpMapUDP || o == OpMapTCP }

// ResultCode is the status a gateway returns with every response.
type ResultCode uint16

// Result codes defined by RFC 6886 §3.5. Clients must treat any other value
// as a fatal error of the request.
const (
	Success            ResultCode = 0
	UnsupportedVersion ResultCode = 1
	// NotAuthorized means the gateway supports mapping but refuses it, for
	// instance because the user has turned the feature off.
	NotAuthorized ResultCode = 2
	// NetworkFailure means the gateway itself has no working external
	// connection, for instance no DHCP lease yet.
	NetworkFailure ResultCode = 3
	// OutOfResources means the gateway cannot create more mappings now.
	OutOfResources    ResultCode = 4
	UnsupportedOpcode ResultCode = 5
)

func (c ResultCode) String() string {
	switch c {
	case Success:
		return "success"
	case UnsupportedVersion:
		return "unsupported version"
	case NotAuthorized:
		return "not authorized"
	case NetworkFailure:
		return "network failure"
	case OutOfResources:
		return "out of resources"
	case UnsupportedOpcode:
		return "unsupported opcode"
	}
	return fmt.Sprintf("result %d", uint16(c))
}

// Errors returned by the parsers. They are wrapped with details; test for
// them with errors.Is.
var (
	// ErrShortPacket: the packet is shorter than its opcode requires. A
	// server drops such requests without answering.
	ErrShortPacket = errors.New("natpmp: packet too short")
	// ErrUnsupportedVersion: the version byte is not 0. A server must
	// still answer, with result UnsupportedVersion.
	ErrUnsupportedVersion = errors.New("natpmp: unsupported version")
	// ErrUnsupportedOpcode: a version-0 request with an opcode this package
	// does not know. A server answers with result UnsupportedOpcode.
	ErrUnsupportedOpcode = errors.New("natpmp: unsupported opcode")
	// ErrNotRequest: the opcode has the response bit set. A server
	// ignores such packets (RFC 6886 §3.5), which also stops two servers
	// from answering each other forever.
	ErrNotRequest = errors.New("natpmp: packet is a response, not a request")
	// ErrNotResponse: the opcode lacks the response bit.
	ErrNotResponse = errors.New("natpmp: packet is a request, not a response")
)

// Request is a client request.
type Request struct {
	Op Opcode
	// InternalPort is the port on the client that the mapping forwards to.
	// With Lifetime 0 it names the mapping to delete; 0 with Lifetime 0
	// deletes all the client's mappings of that protocol.
	InternalPort uint16
	// SuggestedExternalPort is the external port the client would like; 0
	// lets the gateway choose. Renewals send the port previously granted.
	SuggestedExternalPort uint16
	// Lifetime is the requested lifetime in seconds; 0 deletes.
	Lifetime uint32
}

// AppendRequest appends the wire form of r to dst. An external address
// request is 2 bytes and a mapping request 12; any other opcode is written
// as the bare 2-byte header, which is all a server can interpret of it.
func AppendRequest(dst []byte, r Request) []byte {
	dst = append(dst, Version, byte(r.Op))
	if !r.Op.isMap() {
		return dst
	}
	dst = append(dst, 0, 0) // reserved, must be zero on transmission
	dst = binary.BigEndian.AppendUint16(dst, r.InternalPort)
	dst = binary.BigEndian.AppendUint16(dst, r.SuggestedExternalPort)
	return binary.BigEndian.AppendUint32(dst, r.Lifetime)
}

// ParseRequest decodes a request as a server receives it. Its errors tell a
// server what to do: ErrShortPacket and ErrNotRequest mean drop the packet;
// ErrUnsupportedVersion and ErrUnsupportedOpcode mean answer with that result
// code (the returned Request then holds the opcode that was sent). The
// reserved field and any bytes after the request are ignored.
func ParseRequest(b []byte) (Request, error) {
	if len(b) < headerLen {
		return Request{}, fmt.Errorf("%w: %d bytes, every request has at least %d", ErrShortPacket, len(b), headerLen)
	}
	if b[1]&opReply != 0 {
		return Request{}, fmt.Errorf("%w: opcode %d", ErrNotRequest, b[1])
	}
	r := Request{Op: Opcode(b[1])}
	if b[0] != Version {
		return r, fmt.Errorf("%w: %d", ErrUnsupportedVersion, b[0])
	}
	switch {
	case r.Op == OpExternalAddress:
		return r, nil
	case r.Op.isMap():
		if len(b) < mapRequestLen {
			return Request{}, fmt.Errorf("%w: %d bytes, a %s request has %d", ErrShortPacket, len(b), r.Op, mapRequestLen)
		}
		r.InternalPort = binary.BigEndian.Uint16(b[4:])
		r.SuggestedExternalPort = binary.BigEndian.Uint16(b[6:])
		r.Lifetime = binary.BigEndian.Uint32(b[8:])
		return r, nil
	}
	return r, fmt.Errorf("%w: %d", ErrUnsupportedOpcode, uint8(r.Op))
}

// Response is a gateway's reply.
type Response struct {
	// Op is the opcode of the request this answers (without the response bit).
	Op     Opcode
	Result ResultCode
	// Epoch is the gateway's seconds since start of epoch: the time since
	// it last started with an empty mapping table.
	Epoch uint32
	// ExternalAddr is the gateway's external IPv4 address, in a successful
	// external address response only; otherwise it is the zero Addr (RFC
	// 6886 §3.2: the field is undefined on error).
	ExternalAddr netip.Addr
	// InternalPort, ExternalPort and Lifetime are set in mapping responses.
	// Error responses carry the request's InternalPort so the client can
	// tell which request failed (RFC 6886 §3.5).
	InternalPort, ExternalPort uint16
	Lifetime                   uint32
}

// AppendResponse appends the wire form of r to dst: 12 bytes for an external
// address response, 16 for a mapping response, and the 8-byte common header
// for an UnsupportedVersion reply or an opcode the package does not know.
// An ExternalAddr that is not IPv4 (or IPv4-mapped IPv6) is sent as 0.0.0.0.
func AppendResponse(dst []byte, r Response) []byte {
	dst = append(dst, Version, byte(r.Op)|opReply)
	dst = binary.BigEndian.AppendUint16(dst, uint16(r.Result))
	dst = binary.BigEndian.AppendUint32(dst, r.Epoch)
	if r.Result == UnsupportedVersion {
		// RFC 6886 §3.5: the reply is the common header only.
		return dst
	}
	switch {
	case r.Op == OpExternalAddress:
		var a [4]byte
		if ext := r.ExternalAddr.Unmap(); ext.Is4() {
			a = ext.As4()
		}
		dst = append(dst, a[:]...)
	case r.Op.isMap():
		dst = binary.BigEndian.AppendUint16(dst, r.InternalPort)
		dst = binary.BigEndian.AppendUint16(dst, r.ExternalPort)
		dst = binary.BigEndian.AppendUint32(dst, r.Lifetime)
	}
	return dst
}

// ParseResponse decodes a gateway's reply. It does not treat a non-zero
// result code as an error: the caller checks Response.Result. A successful
// reply must be complete; an error reply needs only the 8-byte common header,
// because the Unsupported Version reply is that long and some gateways cut
// other error replies short too. Trailing bytes are ignored.
//
// Quirk: RFC 6886 §3.5 showed the Unsupported Version reply with opcode 0
// instead of 128 (erratum 3618), and some servers send it that way, so a
// reply with opcode below 128 is accepted when its result code is
// UnsupportedVersion; any other such packet is a request (ErrNotResponse).
func ParseResponse(b []byte) (Response, error) {
	if len(b) < responseHeaderLen {
		return Response{}, fmt.Errorf("%w: %d bytes, every response has at least %d", ErrShortPacket, len(b), responseHeaderLen)
	}
	if b[0] != Version {
		return Response{}, fmt.Errorf("%w: %d", ErrUnsupportedVersion, b[0])
	}
	r := Response{
		Op:     Opcode(b[1] &^ opReply),
		Result: ResultCode(binary.BigEndian.Uint16(b[2:])),
		Epoch:  binary.BigEndian.Uint32(b[4:]),
	}
	if b[1]&opReply == 0 && r.Result != UnsupportedVersion {
		return Response{}, fmt.Errorf("%w: opcode %d", ErrNotResponse, b[1])
	}
	if r.Result == UnsupportedVersion {
		// Nothing after the header is defined for this reply.
		return r, nil
	}
	switch {
	case r.Op == OpExternalAddress:
		if len(b) < externalAddressRespLen {
			if r.Result != Success {
				return r, nil
			}
			return Response{}, fmt.Errorf("%w: %d bytes, an external address response has %d", ErrShortPacket, len(b), externalAddressRespLen)
		}
		if r.Result == Success {
			r.ExternalAddr = netip.AddrFrom4([4]byte(b[8:12]))
		}
	case r.Op.isMap():
		if len(b) < mapResponseLen {
			if r.Result != Success {
				return r, nil
			}
			return Response{}, fmt.Errorf("%w: %d bytes, a %s response has %d", ErrShortPacket, len(b), r.Op, mapResponseLen)
		}
		r.InternalPort = binary.BigEndian.Uint16(b[8:])
		r.ExternalPort = binary.BigEndian.Uint16(b[10:])
		r.Lifetime = binary.BigEndian.Uint32(b[12:])
	}
	return r, nil
}
