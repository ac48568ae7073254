// Package stun implements the part of STUN that a NAT test lab needs: the
// message codec of RFC 5389 (which reads RFC 3489 "classic STUN" messages as
// well), the address attributes, CHANGE-REQUEST, and a Binding responder that
// answers from two addresses and two ports.
//
// The responder exists because miniupnpd, the reference IGD daemon the lab
// runs, refuses to forward ports when its WAN address is private or reserved
// (TEST-NET included) unless a STUN server tells it the address is reachable.
// miniupnpd decides that with the four requests of the RFC 3489 NAT test:
// plain, change port, change IP, change both. A server that cannot answer all
// four makes it classify the NAT as restrictive and disable forwarding, so
// Server answers each request from the socket the CHANGE-REQUEST asks for.
//
// The codec is a set of pure functions over bytes: Parse and Message.Append
// never touch the network, so they are tested and fuzzed in isolation.
// There is no client beyond what tests need: portfwd itself does not speak
// STUN.
package stun

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
)

// MagicCookie is the fixed value RFC 5389 puts in the first four bytes of the
// transaction ID. A message without it is a classic RFC 3489 message, which
// has no XOR-MAPPED-ADDRESS.
const MagicCookie uint32 = 0x2112A442

// headerLen is the size of the fixed STUN header: type, length, and the
// 16-byte transaction ID (magic cookie included).
const headerLen = 20

// Type is a STUN message type: method and class, bit-interleaved as in
// RFC 5389 section 6. Only the Binding method is used here.
type Type uint16

// Binding message types.
const (
	BindingRequest Type = 0x0001
	BindingSuccess Type = 0x0101
	BindingError   Type = 0x0111
)

func (t Type) String() string {
	switch t {
	case BindingRequest:
		return "Binding request"
	case BindingSuccess:
		return "Binding success response"
	case BindingError:
		return "Binding error response"
	}
	return fmt.Sprintf("STUN message type 0x%04x", uint16(t))
}

// AttrType is a STUN attribute type. Types below 0x8000 are
// comprehension-required: a server must refuse a request carrying one it does
// not know (RFC 5389 section 7.3.1).
type AttrType uint16

// Attribute types used by the RFC 3489 NAT test and its RFC 5389/5780
// successors.
const (
	AttrMappedAddress     AttrType = 0x0001 // RFC 3489, RFC 5389
	AttrChangeRequest     AttrType = 0x0003 // RFC 3489, RFC 5780
	AttrSourceAddress     AttrType = 0x0004 // RFC 3489; RESPONSE-ORIGIN in RFC 5780
	AttrChangedAddress    AttrType = 0x0005 // RFC 3489; OTHER-ADDRESS in RFC 5780
	AttrErrorCode         AttrType = 0x0009
	AttrUnknownAttributes AttrType = 0x000A
	AttrXORMappedAddress  AttrType = 0x0020 // RFC 5389
	AttrSoftware          AttrType = 0x8022
	AttrFingerprint       AttrType = 0x8028
	AttrResponseOrigin    AttrType = 0x802b // RFC 5780
	AttrOtherAddress      AttrType = 0x802c // RFC 5780
)

// Attr is one attribute: its type and value, without the padding.
type Attr struct {
	Type  AttrType
	Value []byte
}

// Message is a decoded STUN message.
type Message struct {
	Type Type
	// ID is the transaction ID as RFC 3489 defines it: 16 bytes. In an
	// RFC 5389 message the first four are the magic cookie and the other
	// twelve the transaction ID proper; XOR-MAPPED-ADDRESS of an IPv6 address
	// uses all sixteen.
	ID    [16]byte
	Attrs []Attr
}

// Errors returned by Parse and the attribute decoders.
var (
	ErrTruncated = errors.New("stun: message truncated")
	ErrNotSTUN   = errors.New("stun: not a STUN message")
	ErrNoAttr    = errors.New("stun: attribute not present")
)

// HasCookie reports whether m carries the RFC 5389 magic cookie.
func (m *Message) HasCookie() bool {
	return binary.BigEndian.Uint32(m.ID[:4]) == MagicCookie
}

// Get returns the value of the first attribute of type t.
func (m *Message) Get(t AttrType) ([]byte, bool) {
	for _, a := range m.Attrs {
		if a.Type == t {
			return a.Value, true
		}
	}
	return nil, false
}

// Add appends an attribute and returns m, so construction can chain.
func (m *Message) Add(t AttrType, value []byte) *Message {
	m.Attrs = append(m.Attrs, Attr{Type: t, Value: value})
	return m
}

// Parse decodes one STUN message. It checks the header (the two top bits of
// the type must be zero and the length a multiple of four that fits b) and
// that every attribute fits the message; bytes after the declared length are
// ignored, as a datagram may carry padding. Attribute values are copied, so
// b may be reused.
func Parse(b []byte) (*Message, error) {
	if len(b) < headerLen {
		return nil, ErrTruncated
	}
	typ := binary.BigEndian.Uint16(b[0:2])
	n := int(binary.BigEndian.Uint16(b[2:4]))
	if typ&0xC000 != 0 || n%4 != 0 {
		return nil, ErrNotSTUN
	}
	if len(b) < headerLen+n {
		return nil, fmt.Errorf("%w: header says %d bytes of attributes, datagram has %d", ErrTruncated, n, len(b)-headerLen)
	}
	m := &Message{Type: Type(typ)}
	copy(m.ID[:], b[4:headerLen])
	body := b[headerLen : headerLen+n]
	for len(body) > 0 {
		if len(body) < 4 {
			return nil, fmt.Errorf("%w: attribute header", ErrTruncated)
		}
		at := AttrType(binary.BigEndian.Uint16(body[0:2]))
		al := int(binary.BigEndian.Uint16(body[2:4]))
		padded := (al + 3) &^ 3
		if len(body) < 4+padded {
			return nil, fmt.Errorf("%w: attribute 0x%04x of %d bytes", ErrTruncated, uint16(at), al)
		}
		m.Attrs = append(m.Attrs, Attr{Type: at, Value: append([]byte(nil), body[4:4+al]...)})
		body = body[4+padded:]
	}
	return m, nil
}

// Append encodes m onto b and returns the extended slice. Values are padded
// to four bytes with zeros. It panics if an attribute is longer than 65535
// bytes, which no valid message has.
func (m *Message) Append(b []byte) []byte {
	start := len(b)
	b = binary.BigEndian.AppendUint16(b, uint16(m.Type))
	b = append(b, 0, 0) // length, filled in below
	b = append(b, m.ID[:]...)
	for _, a := range m.Attrs {
		if len(a.Value) > 0xFFFF {
			panic(fmt.Sprintf("stun: attribute 0x%04x too long (%d bytes)", uint16(a.Type), len(a.Value)))
		}
		b = binary.BigEndian.AppendUint16(b, uint16(a.Type))
		b = binary.BigEndian.AppendUint16(b, uint16(len(a.Value)))
		b = append(b, a.Value...)
		for len(b)%4 != start%4 {
			b = append(b, 0)
		}
	}
	binary.BigEndian.PutUint16(b[start+2:], uint16(len(b)-start-headerLen))
	return b
}

// Address families of the address attributes.
const (
	familyIPv4 = 0x01
	familyIPv6 = 0x02
)

// EncodeAddress returns the value of a MAPPED-ADDRESS style attribute
// (MAPPED-ADDRESS, SOURCE-ADDRESS, CHANGED-ADDRESS, RESPONSE-ORIGIN,
// OTHER-ADDRESS). An IPv4-mapped IPv6 address is encoded as IPv4.
func EncodeAddress(ap netip.AddrPort) []byte {
	ip := ap.Addr().Unmap()
	v := []byte{0, familyIPv4}
	if ip.Is6() {
		v[1] = familyIPv6
	}
	v = binary.BigEndian.AppendUint16(v, ap.Port())
	return append(v, ip.AsSlice()...)
}

// DecodeAddress parses the value of a MAPPED-ADDRESS style attribute.
func DecodeAddress(v []byte) (netip.AddrPort, error) {
	if len(v) < 4 {
		return netip.AddrPort{}, fmt.Errorf("%w: address attribute of %d bytes", ErrTruncated, len(v))
	}
	port := binary.BigEndian.Uint16(v[2:4])
	var ip netip.Addr
	switch {
	case v[1] == familyIPv4 && len(v) == 8:
		ip = netip.AddrFrom4([4]byte(v[4:8]))
	case v[1] == familyIPv6 && len(v) == 20:
		ip = netip.AddrFrom16([16]byte(v[4:20]))
	default:
		return netip.AddrPort{}, fmt.Errorf("stun: address attribute with family %d and %d bytes", v[1], len(v))
	}
	return netip.AddrPortFrom(ip, port), nil
}

// xorAddress turns an address attribute value into its XOR-MAPPED-ADDRESS
// form and back. The port and an IPv4 address are XOR-ed with the magic
// cookie, an IPv6 address with cookie and transaction ID (RFC 5389 section
// 15.2); with the cookie in ID[0:4], that is the ID byte for byte.
func xorAddress(v []byte, id [16]byte) {
	v[2] ^= id[0]
	v[3] ^= id[1]
	for i := 4; i < len(v); i++ {
		v[i] ^= id[i-4]
	}
}

// EncodeXORAddress returns the value of an XOR-MAPPED-ADDRESS attribute for a
// message with transaction ID id (magic cookie included).
func EncodeXORAddress(ap netip.AddrPort, id [16]byte) []byte {
	v := EncodeAddress(ap)
	xorAddress(v, id)
	return v
}

// DecodeXORAddress parses the value of an XOR-MAPPED-ADDRESS attribute of a
// message with transaction ID id.
func DecodeXORAddress(v []byte, id [16]byte) (netip.AddrPort, error) {
	if len(v) != 8 && len(v) != 20 {
		// Let DecodeAddress name the problem; there is nothing to un-XOR.
		return DecodeAddress(v)
	}
	c := append([]byte(nil), v...)
	xorAddress(c, id)
	return DecodeAddress(c)
}

// MappedAddress returns the client's address as the server saw it:
// XOR-MAPPED-ADDRESS when present (NATs that rewrite addresses in payloads
// miss it), else MAPPED-ADDRESS.
func (m *Message) MappedAddress() (netip.AddrPort, error) {
	if v, ok := m.Get(AttrXORMappedAddress); ok {
		return DecodeXORAddress(v, m.ID)
	}
	if v, ok := m.Get(AttrMappedAddress); ok {
		return DecodeAddress(v)
	}
	return netip.AddrPort{}, fmt.Errorf("%w: no MAPPED-ADDRESS or XOR-MAPPED-ADDRESS", ErrNoAttr)
}

// Change is the flags word of a CHANGE-REQUEST attribute.
type Change uint32

// CHANGE-REQUEST flags (RFC 3489 section 11.2.4).
const (
	ChangePort Change = 0x2
	ChangeIP   Change = 0x4
)

// EncodeChange returns the value of a CHANGE-REQUEST attribute.
func EncodeChange(c Change) []byte { return binary.BigEndian.AppendUint32(nil, uint32(c)) }

// ChangeRequest returns the CHANGE-REQUEST flags of m, zero when the
// attribute is absent.
func (m *Message) ChangeRequest() (Change, error) {
	v, ok := m.Get(AttrChangeRequest)
	if !ok {
		return 0, nil
	}
	if len(v) != 4 {
		return 0, fmt.Errorf("stun: CHANGE-REQUEST of %d bytes, want 4", len(v))
	}
	return Change(binary.BigEndian.Uint32(v)), nil
}

// EncodeErrorCode returns the value of an ERROR-CODE attribute
// (RFC 5389 section 15.6): code 300-699 and a reason phrase.
func EncodeErrorCode(code int, reason string) []byte {
	return append([]byte{0, 0, byte(code / 100), byte(code % 100)}, reason...)
}

// ErrorCode returns the code and reason phrase of m's ERROR-CODE attribute.
func (m *Message) ErrorCode() (int, string, error) {
	v, ok := m.Get(AttrErrorCode)
	if !ok {
		return 0, "", fmt.Errorf("%w: no ERROR-CODE", ErrNoAttr)
	}
	if len(v) < 4 {
		return 0, "", fmt.Errorf("%w: ERROR-CODE of %d bytes", ErrTruncated, len(v))
	}
	return int(v[2]&0x7)*100 + int(v[3]), string(v[4:]), nil
}

// NewBindingRequest returns an RFC 5389 Binding request with transaction ID
// tid, carrying CHANGE-REQUEST when change is not zero.
func NewBindingRequest(tid [12]byte, change Change) *Message {
	m := &Message{Type: BindingRequest}
	binary.BigEndian.PutUint32(m.ID[:4], MagicCookie)
	copy(m.ID[4:], tid[:])
	if change != 0 {
		m.Add(AttrChangeRequest, EncodeChange(change))
	}
	return m
}
