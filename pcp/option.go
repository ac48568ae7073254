package pcp

import (
	"encoding/binary"
	"fmt"
	"math"
	"net/netip"
)

// OptionCode identifies a PCP option. Codes below 128 are mandatory to
// process: a server that does not support one must fail the request with
// UNSUPP_OPTION. Codes from 128 up are optional: a server that does not
// know one ignores it (RFC 6887 §7.3).
type OptionCode uint8

// Options defined by RFC 6887 §13.
const (
	// OptionThirdParty makes a MAP or PEER request for another internal
	// host than the sender. Data: that host's address (16 bytes).
	OptionThirdParty OptionCode = 1
	// OptionPreferFailure asks a MAP request to fail with
	// CANNOT_PROVIDE_EXTERNAL rather than map another external port or
	// address than the suggested ones. No data.
	OptionPreferFailure OptionCode = 2
	// OptionFilter limits which remote peers may use a MAP mapping. Data:
	// reserved, prefix length, remote port, remote address (20 bytes).
	OptionFilter OptionCode = 3
)

// Option data lengths (RFC 6887 §13).
const (
	thirdPartyLen    = 16
	preferFailureLen = 0
	filterLen        = 20
)

// Mandatory reports whether a server must fail a request carrying an option
// with code c that it does not support, rather than ignore the option.
func (c OptionCode) Mandatory() bool { return c < 128 }

func (c OptionCode) String() string {
	switch c {
	case OptionThirdParty:
		return "THIRD_PARTY"
	case OptionPreferFailure:
		return "PREFER_FAILURE"
	case OptionFilter:
		return "FILTER"
	}
	return fmt.Sprintf("option %d", uint8(c))
}

// Option is a PCP option as it travels: its code and its data, without the
// padding that aligns the next option to 4 bytes. ThirdPartyOption,
// PreferFailureOption and FilterOption build the options RFC 6887 defines;
// the methods ThirdParty and Filter read them.
type Option struct {
	Code OptionCode
	Data []byte
}

// ThirdPartyOption returns a THIRD_PARTY option naming internal, the host a
// MAP or PEER request is made for. RFC 6887 §13.1 forbids naming the
// sender's own address (servers answer MALFORMED_REQUEST).
func ThirdPartyOption(internal netip.Addr) Option {
	return Option{Code: OptionThirdParty, Data: appendAddr(nil, internal, internal)}
}

// PreferFailureOption returns a PREFER_FAILURE option (RFC 6887 §13.2).
func PreferFailureOption() Option { return Option{Code: OptionPreferFailure, Data: []byte{}} }

// FilterOption returns a FILTER option for f (RFC 6887 §13.3).
// An IPv4-mapped IPv6 prefix of 96 bits or more is sent as the IPv4 prefix
// it stands for; the zero Filter is sent as ::/0, "no filter".
func FilterOption(f Filter) Option {
	addr, bits := f.Prefix.Addr(), max(f.Prefix.Bits(), 0)
	if addr.Is4In6() && bits >= 96 {
		addr, bits = addr.Unmap(), bits-96
	}
	b := make([]byte, 0, filterLen)
	b = append(b, 0, byte(bits))
	b = binary.BigEndian.AppendUint16(b, f.Port)
	b = appendAddr(b, addr, addr)
	return Option{Code: OptionFilter, Data: b}
}

// ThirdParty returns the internal address of a THIRD_PARTY option.
func (o Option) ThirdParty() (netip.Addr, error) {
	if o.Code != OptionThirdParty || len(o.Data) != thirdPartyLen {
		return netip.Addr{}, fmt.Errorf("%w: %s with %d bytes of data is not a THIRD_PARTY option of %d", ErrMalformedOption, o.Code, len(o.Data), thirdPartyLen)
	}
	return readAddr(o.Data), nil
}

// Filter is the content of a FILTER option: only remote peers in Prefix, and
// from Port unless it is 0, may send through the mapping. A MAP request may
// carry several; one with a zero-length prefix means "no filter" and
// removes those installed before (RFC 6887 §13.3).
type Filter struct {
	// Prefix is the remote peer's address and how many of its leading bits
	// count: at most 32 for IPv4, 128 for IPv6. IPv4 prefixes count bits of
	// the IPv4 address, not of its IPv4-mapped IPv6 form. The address is
	// kept as sent; it is not masked.
	Prefix netip.Prefix
	// Port is the remote peer's port; 0 means any.
	Port uint16
}

// Filter returns the content of a FILTER option. It fails with
// ErrMalformedOption if o is not one, or if its prefix length is longer
// than the address.
func (o Option) Filter() (Filter, error) {
	if o.Code != OptionFilter || len(o.Data) != filterLen {
		return Filter{}, fmt.Errorf("%w: %s with %d bytes of data is not a FILTER option of %d", ErrMalformedOption, o.Code, len(o.Data), filterLen)
	}
	bits := int(o.Data[1])
	addr := readAddr(o.Data[4:])
	if bits > addr.BitLen() {
		return Filter{}, fmt.Errorf("%w: FILTER prefix length %d for %v, which has %d bits", ErrMalformedOption, bits, addr, addr.BitLen())
	}
	return Filter{
		Prefix: netip.PrefixFrom(addr, bits),
		Port:   binary.BigEndian.Uint16(o.Data[2:]),
	}, nil
}

// appendOptions appends opts, each padded to a multiple of 4 bytes.
func appendOptions(dst []byte, opts []Option) ([]byte, error) {
	for _, o := range opts {
		if len(o.Data) > math.MaxUint16 {
			return dst, fmt.Errorf("%w: %s has %d bytes of data, the length field holds %d", ErrTooLong, o.Code, len(o.Data), math.MaxUint16)
		}
		dst = append(dst, byte(o.Code), 0)
		dst = binary.BigEndian.AppendUint16(dst, uint16(len(o.Data)))
		dst = append(dst, o.Data...)
		dst = append(dst, make([]byte, pad4(len(o.Data)))...)
	}
	return dst, nil
}

// pad4 is the number of zero bytes that follow n bytes of option data.
func pad4(n int) int { return (4 - n%4) % 4 }

// parseOptions splits b into options, checking only their framing: every
// option's header and data, with its padding, must fit in b.
func parseOptions(b []byte) ([]Option, error) {
	var opts []Option
	for off := 0; off < len(b); {
		if len(b)-off < optionHeaderLen {
			return nil, fmt.Errorf("%w: %d stray bytes after the last option", ErrMalformedOption, len(b)-off)
		}
		code := OptionCode(b[off])
		n := int(binary.BigEndian.Uint16(b[off+2:]))
		off += optionHeaderLen
		if n+pad4(n) > len(b)-off {
			return nil, fmt.Errorf("%w: %s says %d bytes of data, %d remain", ErrMalformedOption, code, n, len(b)-off)
		}
		opts = append(opts, Option{Code: code, Data: append([]byte{}, b[off:off+n]...)})
		off += n + pad4(n)
	}
	return opts, nil
}

// checkRequestOptions applies the rules of RFC 6887 §13 for the options it
// defines: their length, how often they may appear, and the opcodes they
// are valid for.
func checkRequestOptions(op Opcode, opts []Option) error {
	var seen [OptionFilter + 1]int
	for _, o := range opts {
		var err error
		switch o.Code {
		case OptionThirdParty:
			_, err = o.ThirdParty()
			if err == nil && op != OpMap && op != OpPeer {
				err = fmt.Errorf("%w: THIRD_PARTY is valid with MAP and PEER only", ErrMalformedOption)
			}
		case OptionPreferFailure:
			if len(o.Data) != preferFailureLen {
				err = fmt.Errorf("%w: PREFER_FAILURE with %d bytes of data, it has none", ErrMalformedOption, len(o.Data))
			} else if op != OpMap {
				err = fmt.Errorf("%w: PREFER_FAILURE is valid with MAP only", ErrMalformedOption)
			}
		case OptionFilter:
			_, err = o.Filter()
			if err == nil && op != OpMap {
				err = fmt.Errorf("%w: FILTER is valid with MAP only", ErrMalformedOption)
			}
		default:
			continue
		}
		if err != nil {
			return err
		}
		seen[o.Code]++
		// FILTER may repeat as often as fits in a message.
		if o.Code != OptionFilter && seen[o.Code] > 1 {
			return fmt.Errorf("%w: %s appears more than once", ErrMalformedOption, o.Code)
		}
	}
	return nil
}
