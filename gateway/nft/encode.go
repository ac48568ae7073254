package nft

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/portfwd/portfwd/gateway"
)

// Map element layout. nftables concatenations pad every field to a 4-byte
// register, so "inet_proto . inet_service" is 8 bytes: the protocol number
// in byte 0, the port in network order in bytes 4-5, zeros elsewhere. The
// kernel compares keys as raw bytes, so the padding must be zero.
const (
	keyLen    = 8  // inet_proto . inet_service
	srcKeyLen = 12 // ipv4_addr . inet_proto . inet_service
	dataLen   = 8  // ipv4_addr . inet_service
)

// portKey identifies an installed rule: the Backend contract allows one rule
// per external address, protocol and external port.
type portKey struct {
	proto gateway.Protocol
	port  uint16
	addr  [4]byte // the external pool address; zero for the gateway's own
}

// target is the rest of an installed rule: where it forwards to, and its
// remote host (zero for any). The backend forwards IPv4 only.
type target struct {
	internal, remote [4]byte
	port             uint16
}

func targetOf(r gateway.Rule) target {
	t := target{internal: r.InternalAddr.Unmap().As4(), port: r.InternalPort}
	if r.RemoteHost.IsValid() {
		t.remote = r.RemoteHost.Unmap().As4()
	}
	return t
}

// rule puts k and t back together.
func (k portKey) rule(t target) gateway.Rule {
	r := gateway.Rule{Protocol: k.proto, ExternalPort: k.port, InternalAddr: netip.AddrFrom4(t.internal), InternalPort: t.port}
	if k.addr != ([4]byte{}) {
		r.ExternalAddr = netip.AddrFrom4(k.addr)
	}
	if t.remote != ([4]byte{}) {
		r.RemoteHost = netip.AddrFrom4(t.remote)
	}
	return r
}

func keyOf(r gateway.Rule) portKey {
	k := portKey{proto: r.Protocol, port: r.ExternalPort}
	if r.ExternalAddr.Is4() {
		k.addr = r.ExternalAddr.As4()
	}
	return k
}

// normalize validates r for this backend and returns it with IPv4-mapped
// IPv6 addresses unmapped, so that equal rules compare equal.
func normalize(r gateway.Rule) (gateway.Rule, error) {
	if r.Protocol != gateway.TCP && r.Protocol != gateway.UDP {
		return r, fmt.Errorf("nft: rule %v: protocol %v is not supported: only TCP and UDP can be forwarded", r, r.Protocol)
	}
	if r.ExternalPort == 0 || r.InternalPort == 0 {
		return r, fmt.Errorf("nft: rule %v: ports must be non-zero", r)
	}
	r.InternalAddr = r.InternalAddr.Unmap()
	if !r.InternalAddr.Is4() {
		return r, fmt.Errorf("nft: rule %v: internal address must be IPv4: this backend forwards with IPv4 DNAT", r)
	}
	if r.ExternalAddr.IsValid() {
		r.ExternalAddr = r.ExternalAddr.Unmap()
		if !r.ExternalAddr.Is4() {
			return r, fmt.Errorf("nft: rule %v: external pool address must be IPv4", r)
		}
		if r.RemoteHost.IsValid() && !r.RemoteHost.IsUnspecified() {
			return r, fmt.Errorf("nft: rule %v: a mapping on an external pool address cannot be restricted to a remote host", r)
		}
		r.RemoteHost = netip.Addr{}
	}
	if r.RemoteHost.IsValid() {
		r.RemoteHost = r.RemoteHost.Unmap()
		if !r.RemoteHost.Is4() {
			return r, fmt.Errorf("nft: rule %v: remote host must be IPv4 (or unset)", r)
		}
		if r.RemoteHost.IsUnspecified() {
			// 0.0.0.0 is how some clients spell "any host".
			r.RemoteHost = netip.Addr{}
		}
	}
	return r, nil
}

// encodeKey returns the fwd4 key of r: protocol . external port.
func encodeKey(r gateway.Rule) []byte {
	k := make([]byte, keyLen)
	k[0] = byte(r.Protocol)
	binary.BigEndian.PutUint16(k[4:], r.ExternalPort)
	return k
}

// encodeSrcKey returns the fwd4src key of r: remote host . protocol .
// external port. r.RemoteHost must be IPv4.
func encodeSrcKey(r gateway.Rule) []byte {
	k := make([]byte, srcKeyLen)
	a := r.RemoteHost.As4()
	copy(k, a[:])
	copy(k[4:], encodeKey(r))
	return k
}

// encodePoolKey returns the fwd4pool key of r: external pool address .
// protocol . external port. r.ExternalAddr must be IPv4.
func encodePoolKey(r gateway.Rule) []byte {
	k := make([]byte, srcKeyLen)
	a := r.ExternalAddr.As4()
	copy(k, a[:])
	copy(k[4:], encodeKey(r))
	return k
}

// encodeData returns the value both maps hold for r: internal address .
// internal port. r.InternalAddr must be IPv4.
func encodeData(r gateway.Rule) []byte {
	d := make([]byte, dataLen)
	a := r.InternalAddr.As4()
	copy(d, a[:])
	binary.BigEndian.PutUint16(d[4:], r.InternalPort)
	return d
}

var errBadElement = errors.New("malformed map element")

// decodeElement is the inverse of the encoders: it parses a key of fwd4 or
// fwd4src (told apart by length) and its data back into a Rule.
func decodeElement(key, data []byte) (gateway.Rule, error) {
	return decodeElementOf(key, data, false)
}

// decodeElementOf is decodeElement, for fwd4pool when pool is set: its
// 12-byte keys start with the external address, not the remote host.
func decodeElementOf(key, data []byte, pool bool) (gateway.Rule, error) {
	var r gateway.Rule
	switch len(key) {
	case srcKeyLen:
		if pool {
			r.ExternalAddr = netip.AddrFrom4([4]byte(key[:4]))
		} else {
			r.RemoteHost = netip.AddrFrom4([4]byte(key[:4]))
		}
		key = key[4:]
	case keyLen:
	default:
		return r, fmt.Errorf("%w: key of %d bytes", errBadElement, len(key))
	}
	if len(data) != dataLen {
		return r, fmt.Errorf("%w: data of %d bytes", errBadElement, len(data))
	}
	r.Protocol = gateway.Protocol(key[0])
	if r.Protocol != gateway.TCP && r.Protocol != gateway.UDP {
		return r, fmt.Errorf("%w: protocol %d", errBadElement, key[0])
	}
	r.ExternalPort = binary.BigEndian.Uint16(key[4:])
	r.InternalAddr = netip.AddrFrom4([4]byte(data[:4]))
	r.InternalPort = binary.BigEndian.Uint16(data[4:])
	return r, nil
}

// ifnameSize is IFNAMSIZ: interface names are at most 15 bytes plus NUL.
const ifnameSize = 16

// ifnameMatch returns the bytes an nftables cmp compares against the
// 16-byte iifname/oifname register: the NUL-padded name for an exact
// match, or the bare prefix (no NUL) for a name ending in "*", which is how
// nft itself encodes wildcards.
func ifnameMatch(name string) ([]byte, error) {
	if prefix, ok := strings.CutSuffix(name, "*"); ok {
		if prefix == "" || strings.Contains(prefix, "*") || len(prefix) >= ifnameSize {
			return nil, fmt.Errorf("interface pattern %q: want a name or a non-empty prefix followed by *", name)
		}
		return []byte(prefix), nil
	}
	if name == "" || len(name) >= ifnameSize || strings.ContainsAny(name, "*/ \x00") {
		return nil, fmt.Errorf("interface name %q is not valid: Linux names are 1 to 15 bytes", name)
	}
	b := make([]byte, ifnameSize)
	copy(b, name)
	return b, nil
}
