package pcp

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
)

// Well-known PCP ports (RFC 6887 §19.1). They are NAT-PMP's ports: a
// gateway serves both protocols on one socket and tells them apart by the
// first byte of each packet (see IsPCP).
const (
	// ServerPort is where a PCP server listens for requests.
	ServerPort = 5351
	// ClientPort is where clients listen for multicast ANNOUNCE responses
	// a server sends after it restarts. This package's client does not
	// listen there.
	ClientPort = 5350
)

// Version is the protocol version of RFC 6887. Version 1 was used by
// drafts only; version 0 is NAT-PMP.
const Version = 2

// natpmpVersion is the version byte of NAT-PMP packets, which share port
// 5351 with PCP.
const natpmpVersion = 0

// MaxPacketLen is the largest PCP message, request or response (RFC 6887
// §7): a server rejects longer requests, and an encoder refuses to build
// them.
const MaxPacketLen = 1100

// opResponse is the R bit: set in the opcode byte of every response.
const opResponse = 0x80

// Wire sizes, in bytes.
const (
	headerLen       = 24 // the common request and response headers
	mapPayloadLen   = 36 // nonce, protocol, reserved, ports, external address
	peerPayloadLen  = 56 // the MAP fields, remote port, reserved, remote address
	optionHeaderLen = 4  // code, reserved, length
	nonceLen        = 12
)

// Opcode is a PCP operation. Responses carry the request's opcode with the R
// bit set; the codec adds and strips that bit, so Request.Op and Response.Op
// both hold the bare 7-bit opcode.
type Opcode uint8

// Opcodes defined by RFC 6887 §19.2.
const (
	// OpAnnounce asks for nothing: its answer carries only the server's
	// epoch, which makes it a cheap "is there a PCP server?" probe (§14.1).
	OpAnnounce Opcode = 0
	// OpMap creates, refreshes or deletes an inbound mapping (§11).
	OpMap Opcode = 1
	// OpPeer creates or refreshes the mapping of an outbound flow to one
	// remote peer, mainly to learn and extend its lifetime (§12).
	OpPeer Opcode = 2
)

func (o Opcode) String() string {
	switch o {
	case OpAnnounce:
		return "ANNOUNCE"
	case OpMap:
		return "MAP"
	case OpPeer:
		return "PEER"
	}
	return fmt.Sprintf("opcode %d", uint8(o))
}

// known reports whether o is an opcode this package can encode and decode.
func (o Opcode) known() bool { return o <= OpPeer }

// payloadLen is the size of o's opcode-specific data.
func (o Opcode) payloadLen() int {
	switch o {
	case OpMap:
		return mapPayloadLen
	case OpPeer:
		return peerPayloadLen
	}
	return 0
}

// Protocol is the transport protocol of a mapping: an IANA protocol number,
// as in the IP header.
type Protocol uint8

// Protocols this package has names for; any other IANA number may be sent.
const (
	// AllProtocols, with internal port 0, means every protocol and port
	// of the internal address; a server may well refuse it.
	AllProtocols Protocol = 0
	TCP          Protocol = 6
	UDP          Protocol = 17
)

func (p Protocol) String() string {
	switch p {
	case AllProtocols:
		return "all protocols"
	case TCP:
		return "TCP"
	case UDP:
		return "UDP"
	}
	return fmt.Sprintf("protocol %d", uint8(p))
}

// ResultCode is the status a server returns in every response (RFC 6887
// §7.4).
type ResultCode uint8

// Result codes defined by RFC 6887 §7.4. A server reports with the Lifetime
// of an error response how long the same request will keep failing: a long
// time for the errors a retry cannot fix, briefly for the others (see
// ShortLifetime).
const (
	ResultSuccess ResultCode = 0
	// ResultUnsuppVersion: the server does not speak the request's version.
	// The response carries the highest version it does.
	ResultUnsuppVersion ResultCode = 1
	// ResultNotAuthorized: the server refuses by policy. It is also the
	// answer to a refresh or delete whose nonce does not match the
	// mapping's (§11.3): only the client that made a mapping may change it.
	ResultNotAuthorized    ResultCode = 2
	ResultMalformedRequest ResultCode = 3
	ResultUnsuppOpcode     ResultCode = 4
	// ResultUnsuppOption: a mandatory-to-process option the server does
	// not support (or, for THIRD_PARTY, does not permit).
	ResultUnsuppOption    ResultCode = 5
	ResultMalformedOption ResultCode = 6
	// ResultNetworkFailure: the server has no working external side, for
	// instance no external address yet.
	ResultNetworkFailure ResultCode = 7
	// ResultNoResources: the server cannot create the mapping now (table
	// full, memory short).
	ResultNoResources ResultCode = 8
	// ResultUnsuppProtocol: the server cannot map this transport protocol.
	ResultUnsuppProtocol ResultCode = 9
	// ResultUserExQuota: this client has as many mappings as it may have.
	ResultUserExQuota ResultCode = 10
	// ResultCannotProvideExternal: the suggested external port or address
	// is not available, and the request asked for nothing else
	// (PREFER_FAILURE, or a PEER request).
	ResultCannotProvideExternal ResultCode = 11
	// ResultAddressMismatch: the request came from another address than
	// the client address written in it: a NAT sits between the client and
	// the server.
	ResultAddressMismatch ResultCode = 12
	// ResultExcessiveRemotePeers: the server cannot install that many
	// FILTER options for one mapping.
	ResultExcessiveRemotePeers ResultCode = 13
)

// String returns the RFC's name of the code, such as NOT_AUTHORIZED: the
// name to search for in a router's documentation or logs.
func (c ResultCode) String() string {
	switch c {
	case ResultSuccess:
		return "SUCCESS"
	case ResultUnsuppVersion:
		return "UNSUPP_VERSION"
	case ResultNotAuthorized:
		return "NOT_AUTHORIZED"
	case ResultMalformedRequest:
		return "MALFORMED_REQUEST"
	case ResultUnsuppOpcode:
		return "UNSUPP_OPCODE"
	case ResultUnsuppOption:
		return "UNSUPP_OPTION"
	case ResultMalformedOption:
		return "MALFORMED_OPTION"
	case ResultNetworkFailure:
		return "NETWORK_FAILURE"
	case ResultNoResources:
		return "NO_RESOURCES"
	case ResultUnsuppProtocol:
		return "UNSUPP_PROTOCOL"
	case ResultUserExQuota:
		return "USER_EX_QUOTA"
	case ResultCannotProvideExternal:
		return "CANNOT_PROVIDE_EXTERNAL"
	case ResultAddressMismatch:
		return "ADDRESS_MISMATCH"
	case ResultExcessiveRemotePeers:
		return "EXCESSIVE_REMOTE_PEERS"
	}
	return fmt.Sprintf("result %d", uint8(c))
}

// ShortLifetime reports whether c is one of the errors RFC 6887 §7.4 calls
// short lifetime: conditions of the moment (no external address yet, table
// full, quota used up, port taken) that a retry may soon get past. Every
// other error is long lifetime: the same request will fail again. The
// server's Lifetime field says how long exactly; RFC 6887 leaves the
// lifetime of CANNOT_PROVIDE_EXTERNAL to the reason of the failure, and
// this package treats it as short, since ports get freed.
func (c ResultCode) ShortLifetime() bool {
	switch c {
	case ResultNetworkFailure, ResultNoResources, ResultUserExQuota, ResultCannotProvideExternal:
		return true
	}
	return false
}

// Nonce is a mapping nonce: 96 random bits that name a mapping's owner.
// A server only lets a refresh or delete change a mapping when it carries
// the nonce that created it (RFC 6887 §11.3), so a client that wants to
// delete its mapping later, from another process even, must keep it
// (portmap's state store does).
type Nonce [12]byte

// NewNonce returns a random nonce, from crypto/rand: it is a capability, so
// other hosts must not be able to guess it.
func NewNonce() Nonce {
	var n Nonce
	rand.Read(n[:]) // never fails (crypto/rand, Go 1.24+)
	return n
}

// IsZero reports whether n is all zeros, which Client methods take to mean
// "choose one". (Zero is a legal nonce on the wire, RFC 6887 §11.1, but one
// nobody picks on purpose.)
func (n Nonce) IsZero() bool { return n == Nonce{} }

// String returns n in hexadecimal.
func (n Nonce) String() string { return hex.EncodeToString(n[:]) }

// MarshalText encodes n in hexadecimal.
func (n Nonce) MarshalText() ([]byte, error) { return []byte(n.String()), nil }

// UnmarshalText decodes the hexadecimal form of a nonce.
func (n *Nonce) UnmarshalText(b []byte) error {
	var v Nonce
	if hex.DecodedLen(len(b)) != nonceLen {
		return fmt.Errorf("pcp: nonce %q: want %d hexadecimal digits", b, 2*nonceLen)
	}
	if _, err := hex.Decode(v[:], b); err != nil {
		return fmt.Errorf("pcp: nonce %q: %w", b, err)
	}
	*n = v
	return nil
}

// MapPayload is the opcode-specific data of MAP requests and responses
// (RFC 6887 §11.1). The same fields carry the client's suggestion in a
// request and the server's assignment in a response.
type MapPayload struct {
	Nonce    Nonce
	Protocol Protocol
	// InternalPort is the port on the internal host the mapping forwards
	// to. 0 means all ports: legal with AllProtocols, or in a delete.
	InternalPort uint16
	// ExternalPort is the suggested external port in a request (0: no
	// preference) and the assigned one in a response.
	ExternalPort uint16
	// ExternalAddr is the suggested external address in a request and the
	// assigned one in a response. The unspecified address (0.0.0.0 or ::)
	// means no preference; the zero Addr is sent as the unspecified address
	// of the client address's family.
	ExternalAddr netip.Addr
}

// PeerPayload is the opcode-specific data of PEER requests and responses
// (RFC 6887 §12.1): the MAP fields, plus the remote peer of the flow.
type PeerPayload struct {
	MapPayload
	RemotePort uint16
	RemoteAddr netip.Addr
}

// Request is a PCP request.
type Request struct {
	Op Opcode
	// Lifetime is the requested lifetime in seconds; 0 deletes a MAP
	// mapping. ANNOUNCE requests carry 0.
	Lifetime uint32
	// ClientAddr is the source address of the packet as the client sends
	// it; the server compares it with the source it sees to detect a NAT
	// in between (ResultAddressMismatch). IPv4 addresses travel as
	// IPv4-mapped IPv6 and are decoded back to plain IPv4.
	ClientAddr netip.Addr
	// Map is the payload of an OpMap request, Peer that of an OpPeer
	// request; each is ignored for other opcodes.
	Map  *MapPayload
	Peer *PeerPayload
	// Options follow the payload in order.
	Options []Option
}

// Response is a PCP response.
type Response struct {
	Op     Opcode
	Result ResultCode
	// Lifetime is the granted lifetime of the mapping in a success, and
	// how long the same request will keep failing in an error (seconds).
	Lifetime uint32
	// Epoch is the server's epoch time: the seconds since it last started
	// with an empty mapping table (RFC 6887 §8.5).
	Epoch uint32
	// Map or Peer hold the payload of MAP or PEER responses. An error
	// response may stop after the common header; then both are nil.
	Map  *MapPayload
	Peer *PeerPayload
	// Options follow the payload. Clients ignore those they do not know.
	Options []Option
}

// Errors returned by the parsers and encoders. They are wrapped with
// details; test for them with errors.Is. For a server, each says what to do
// with a request (see HandlePacket).
var (
	// ErrShortPacket: a request under 2 bytes, which a server drops, or a
	// response shorter than the common header.
	ErrShortPacket = errors.New("pcp: packet too short")
	// ErrNotRequest: the R bit is set. A server drops such packets, which
	// also stops two servers from answering each other forever.
	ErrNotRequest = errors.New("pcp: packet is a response, not a request")
	// ErrNotResponse: a reply without the R bit.
	ErrNotResponse = errors.New("pcp: packet is a request, not a response")
	// ErrUnsupportedVersion: the version byte is not 2. A server answers
	// UNSUPP_VERSION, with version 2 in the reply (RFC 6887 §9).
	ErrUnsupportedVersion = errors.New("pcp: unsupported version")
	// ErrMalformedRequest: a request of the wrong size (under 24 bytes,
	// over 1100, not a multiple of 4) or cut short inside its payload. A
	// server answers MALFORMED_REQUEST.
	ErrMalformedRequest = errors.New("pcp: malformed request")
	// ErrUnsupportedOpcode: an opcode other than ANNOUNCE, MAP and PEER.
	// A server answers UNSUPP_OPCODE.
	ErrUnsupportedOpcode = errors.New("pcp: unsupported opcode")
	// ErrMalformedOption: an option cut short, of the wrong length for its
	// code, repeated where it may appear once, or sent with an opcode it
	// is not valid for. A server answers MALFORMED_OPTION.
	ErrMalformedOption = errors.New("pcp: malformed option")
	// ErrMalformedResponse: a response that cannot be decoded.
	ErrMalformedResponse = errors.New("pcp: malformed response")
	// ErrTooLong: the encoder would produce a message over MaxPacketLen,
	// or an option whose data does not fit its 16-bit length field.
	ErrTooLong = errors.New("pcp: message too long")
)

// appendAddr appends a as the 128-bit address field: IPv4 as IPv4-mapped
// IPv6, and the invalid (zero) Addr as the all-zeros address of family
// like's, or as :: if like is not IPv4 either.
func appendAddr(dst []byte, a, like netip.Addr) []byte {
	if !a.IsValid() {
		if like.Unmap().Is4() {
			a = netip.IPv4Unspecified()
		} else {
			a = netip.IPv6Unspecified()
		}
	}
	b := a.As16() // IPv4 comes out IPv4-mapped
	return append(dst, b[:]...)
}

// readAddr decodes a 128-bit address field, unmapping IPv4.
func readAddr(b []byte) netip.Addr {
	return netip.AddrFrom16([16]byte(b[:16])).Unmap()
}

// appendMapPayload appends the MAP fields, with family hint like for an
// unset external address.
func appendMapPayload(dst []byte, m *MapPayload, like netip.Addr) []byte {
	dst = append(dst, m.Nonce[:]...)
	dst = append(dst, byte(m.Protocol), 0, 0, 0)
	dst = binary.BigEndian.AppendUint16(dst, m.InternalPort)
	dst = binary.BigEndian.AppendUint16(dst, m.ExternalPort)
	return appendAddr(dst, m.ExternalAddr, like)
}

func readMapPayload(b []byte) MapPayload {
	return MapPayload{
		Nonce:        Nonce(b[:nonceLen]),
		Protocol:     Protocol(b[12]),
		InternalPort: binary.BigEndian.Uint16(b[16:]),
		ExternalPort: binary.BigEndian.Uint16(b[18:]),
		ExternalAddr: readAddr(b[20:]),
	}
}

func appendPeerPayload(dst []byte, p *PeerPayload, like netip.Addr) []byte {
	dst = appendMapPayload(dst, &p.MapPayload, like)
	dst = binary.BigEndian.AppendUint16(dst, p.RemotePort)
	dst = append(dst, 0, 0)
	return appendAddr(dst, p.RemoteAddr, like)
}

func readPeerPayload(b []byte) PeerPayload {
	return PeerPayload{
		MapPayload: readMapPayload(b),
		RemotePort: binary.BigEndian.Uint16(b[36:]),
		RemoteAddr: readAddr(b[40:]),
	}
}

// AppendRequest appends the wire form of r to dst. Reserved fields are
// written as zero, options padded to 4 bytes. A MAP or PEER request needs
// its payload (r.Map or r.Peer); an opcode this package does not know is
// written as the bare header and options. It fails with ErrTooLong rather
// than produce a request a server would reject as over MaxPacketLen.
func AppendRequest(dst []byte, r Request) ([]byte, error) {
	start := len(dst)
	dst = append(dst, Version, byte(r.Op)&^opResponse, 0, 0)
	dst = binary.BigEndian.AppendUint32(dst, r.Lifetime)
	dst = appendAddr(dst, r.ClientAddr, netip.Addr{})
	switch r.Op {
	case OpMap:
		if r.Map == nil {
			return dst[:start], errors.New("pcp: MAP request without a MapPayload")
		}
		dst = appendMapPayload(dst, r.Map, r.ClientAddr)
	case OpPeer:
		if r.Peer == nil {
			return dst[:start], errors.New("pcp: PEER request without a PeerPayload")
		}
		dst = appendPeerPayload(dst, r.Peer, r.ClientAddr)
	}
	dst, err := appendOptions(dst, r.Options)
	if err != nil {
		return dst[:start], err
	}
	if n := len(dst) - start; n > MaxPacketLen {
		return dst[:start], fmt.Errorf("%w: a %s request of %d bytes (limit %d); send fewer options", ErrTooLong, r.Op, n, MaxPacketLen)
	}
	return dst, nil
}

// ParseRequest decodes a request as a server receives it. Its errors tell a
// server what to do (HandlePacket does it): drop the packet on
// ErrShortPacket and ErrNotRequest; otherwise answer with the matching
// result code: UNSUPP_VERSION, MALFORMED_REQUEST, UNSUPP_OPCODE or
// MALFORMED_OPTION.
//
// Options are checked as far as the codec can: known options must have
// their length, appear no more often than allowed and only with opcodes
// they are valid for (RFC 6887 §13). Unknown options are returned as they
// are; whether one is mandatory to process is the server's affair.
// Reserved fields and padding are ignored.
func ParseRequest(b []byte) (Request, error) {
	if len(b) < 2 {
		return Request{}, fmt.Errorf("%w: %d bytes", ErrShortPacket, len(b))
	}
	if b[1]&opResponse != 0 {
		return Request{}, fmt.Errorf("%w: opcode byte %#x", ErrNotRequest, b[1])
	}
	r := Request{Op: Opcode(b[1])}
	if b[0] != Version {
		return r, fmt.Errorf("%w: %d", ErrUnsupportedVersion, b[0])
	}
	switch {
	case len(b) < headerLen:
		return r, fmt.Errorf("%w: %d bytes, shorter than the %d-byte header", ErrMalformedRequest, len(b), headerLen)
	case len(b) > MaxPacketLen:
		return r, fmt.Errorf("%w: %d bytes, more than %d", ErrMalformedRequest, len(b), MaxPacketLen)
	case len(b)%4 != 0:
		return r, fmt.Errorf("%w: %d bytes, not a multiple of 4", ErrMalformedRequest, len(b))
	}
	if !r.Op.known() {
		return r, fmt.Errorf("%w: %d", ErrUnsupportedOpcode, uint8(r.Op))
	}
	r.Lifetime = binary.BigEndian.Uint32(b[4:])
	r.ClientAddr = readAddr(b[8:])
	rest := b[headerLen:]
	if n := r.Op.payloadLen(); len(rest) < n {
		return r, fmt.Errorf("%w: %d bytes, a %s request has at least %d", ErrMalformedRequest, len(b), r.Op, headerLen+n)
	}
	switch r.Op {
	case OpMap:
		m := readMapPayload(rest)
		r.Map = &m
	case OpPeer:
		p := readPeerPayload(rest)
		r.Peer = &p
	}
	opts, err := parseOptions(rest[r.Op.payloadLen():])
	if err == nil {
		err = checkRequestOptions(r.Op, opts)
	}
	if err != nil {
		return r, fmt.Errorf("%s request: %w", r.Op, err)
	}
	r.Options = opts
	return r, nil
}

// AppendResponse appends the wire form of r to dst. A successful MAP or
// PEER response needs its payload; an error response may go without, and
// is then the bare header (servers normally echo the request instead, see
// HandlePacket). An unset assigned address is sent as ::.
func AppendResponse(dst []byte, r Response) ([]byte, error) {
	start := len(dst)
	dst = append(dst, Version, byte(r.Op)|opResponse, 0, byte(r.Result))
	dst = binary.BigEndian.AppendUint32(dst, r.Lifetime)
	dst = binary.BigEndian.AppendUint32(dst, r.Epoch)
	dst = append(dst, make([]byte, 12)...) // reserved
	switch {
	case r.Op == OpMap && r.Map != nil:
		dst = appendMapPayload(dst, r.Map, netip.Addr{})
	case r.Op == OpPeer && r.Peer != nil:
		dst = appendPeerPayload(dst, r.Peer, netip.Addr{})
	case r.Op.payloadLen() > 0 && r.Result == ResultSuccess:
		return dst[:start], fmt.Errorf("pcp: successful %s response without its payload", r.Op)
	case r.Op.payloadLen() > 0:
		// An error reply cut after the header carries no options either:
		// they would be read as the payload.
		return dst, nil
	}
	dst, err := appendOptions(dst, r.Options)
	if err != nil {
		return dst[:start], err
	}
	if n := len(dst) - start; n > MaxPacketLen {
		return dst[:start], fmt.Errorf("%w: a %s response of %d bytes (limit %d)", ErrTooLong, r.Op, n, MaxPacketLen)
	}
	return dst, nil
}

// ParseResponse decodes a server's reply. It does not treat an error result
// as a failure: the caller checks Response.Result.
//
// It is lenient where servers differ and a client loses nothing: an error
// response may stop after the 24-byte header (Map and Peer are then nil),
// and if the options of an error response cannot be decoded (a server
// echoing a request it found malformed) they are dropped. A success must
// be complete. Options are not checked beyond their framing: RFC 6887 §7.3
// has clients ignore the options they do not understand. Reserved fields
// are ignored, and so is whatever follows the header of a response to an
// opcode this package does not know.
func ParseResponse(b []byte) (Response, error) {
	if len(b) < 4 {
		return Response{}, fmt.Errorf("%w: %d bytes", ErrShortPacket, len(b))
	}
	if b[0] != Version {
		return Response{}, fmt.Errorf("%w: %d", ErrUnsupportedVersion, b[0])
	}
	if b[1]&opResponse == 0 {
		return Response{}, fmt.Errorf("%w: opcode byte %#x", ErrNotResponse, b[1])
	}
	if len(b) < headerLen {
		return Response{}, fmt.Errorf("%w: %d bytes, the header alone has %d", ErrShortPacket, len(b), headerLen)
	}
	if len(b) > MaxPacketLen {
		return Response{}, fmt.Errorf("%w: %d bytes, more than %d", ErrMalformedResponse, len(b), MaxPacketLen)
	}
	r := Response{
		Op:       Opcode(b[1] &^ opResponse),
		Result:   ResultCode(b[3]),
		Lifetime: binary.BigEndian.Uint32(b[4:]),
		Epoch:    binary.BigEndian.Uint32(b[8:]),
	}
	if !r.Op.known() {
		return r, nil
	}
	rest := b[headerLen:]
	n := r.Op.payloadLen()
	if len(rest) < n {
		if r.Result != ResultSuccess {
			return r, nil // cut short; nothing a client needs is lost
		}
		return Response{}, fmt.Errorf("%w: successful %s response of %d bytes, needs %d", ErrMalformedResponse, r.Op, len(b), headerLen+n)
	}
	switch r.Op {
	case OpMap:
		m := readMapPayload(rest)
		r.Map = &m
	case OpPeer:
		p := readPeerPayload(rest)
		r.Peer = &p
	}
	opts, err := parseOptions(rest[n:])
	if err != nil {
		if r.Result == ResultSuccess {
			return Response{}, fmt.Errorf("%w: %w", ErrMalformedResponse, err)
		}
		opts = nil
	}
	r.Options = opts
	return r, nil
}
