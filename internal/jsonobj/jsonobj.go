// Package jsonobj reads a JSON object of scalar fields, as the gateway
// writes them one per line (its audit trail, its instance lock), into
// typed values, without encoding/json's decoder.
//
// It exists for the size of the router build (portfwd-gateway): the
// gateway needs encoding/json's encoder (log/slog's JSON handler, the
// admin page's API), but its reflection-driven decoder is 40 KB more of a
// router's flash for two structures of strings, numbers and times.
//
// Parse accepts what RFC 8259 allows: any whitespace, string escapes
// (\uXXXX and surrogate pairs included), numbers, true, false, null, and
// nested objects or arrays, which it checks and skips (a field a later
// version may add). Keys match exactly; of a key given twice, the last
// value counts, as with encoding/json.
package jsonobj

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"time"
	"unicode/utf16"
	"unicode/utf8"
)

// Object is a parsed object's scalar fields by key.
type Object map[string]Value

// Value is a scalar: a string (unescaped), or a number, true, false or
// null as written.
type Value struct {
	IsString bool
	Text     string
}

// maxDepth bounds the nesting Parse skips.
const maxDepth = 64

// Parse reads one JSON object from b, with nothing but whitespace after it.
func Parse(b []byte) (Object, error) {
	p := parser{b: b}
	p.space()
	if !p.eat('{') {
		return nil, p.errorf("want an object")
	}
	o := Object{}
	p.space()
	if !p.eat('}') {
		for {
			p.space()
			key, err := p.str()
			if err != nil {
				return nil, err
			}
			p.space()
			if !p.eat(':') {
				return nil, p.errorf("want ':' after a key")
			}
			p.space()
			v, scalar, err := p.value(0)
			if err != nil {
				return nil, err
			}
			if scalar {
				o[key] = v
			} else {
				delete(o, key)
			}
			p.space()
			if p.eat('}') {
				break
			}
			if !p.eat(',') {
				return nil, p.errorf("want ',' or '}'")
			}
		}
	}
	p.space()
	if p.i != len(p.b) {
		return nil, p.errorf("data after the object")
	}
	return o, nil
}

type parser struct {
	b []byte
	i int
}

func (p *parser) errorf(format string, args ...any) error {
	return fmt.Errorf("jsonobj: offset %d: %s", p.i, fmt.Sprintf(format, args...))
}

func (p *parser) space() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

func (p *parser) eat(c byte) bool {
	if p.i < len(p.b) && p.b[p.i] == c {
		p.i++
		return true
	}
	return false
}

// value reads a value; scalar is false for an object or array (skipped).
func (p *parser) value(depth int) (v Value, scalar bool, err error) {
	if p.i >= len(p.b) {
		return v, false, p.errorf("want a value")
	}
	switch c := p.b[p.i]; {
	case c == '"':
		s, err := p.str()
		return Value{IsString: true, Text: s}, true, err
	case c == '{' || c == '[':
		return v, false, p.skip(depth + 1)
	case c == 't' || c == 'f' || c == 'n':
		for _, lit := range []string{"true", "false", "null"} {
			if len(p.b)-p.i >= len(lit) && string(p.b[p.i:p.i+len(lit)]) == lit {
				p.i += len(lit)
				return Value{Text: lit}, true, nil
			}
		}
		return v, false, p.errorf("bad literal")
	default:
		return p.number()
	}
}

// number reads an RFC 8259 number.
func (p *parser) number() (Value, bool, error) {
	start := p.i
	p.eat('-')
	digits := func() int {
		n := 0
		for p.i < len(p.b) && '0' <= p.b[p.i] && p.b[p.i] <= '9' {
			p.i++
			n++
		}
		return n
	}
	if p.eat('0') {
		// no more integer digits
	} else if digits() == 0 {
		return Value{}, false, p.errorf("want a value")
	}
	if p.eat('.') && digits() == 0 {
		return Value{}, false, p.errorf("want a digit after '.'")
	}
	if p.eat('e') || p.eat('E') {
		if !p.eat('+') {
			p.eat('-')
		}
		if digits() == 0 {
			return Value{}, false, p.errorf("want an exponent")
		}
	}
	return Value{Text: string(p.b[start:p.i])}, true, nil
}

// skip checks and skips an object or array.
func (p *parser) skip(depth int) error {
	if depth > maxDepth {
		return p.errorf("nested too deep")
	}
	closing := byte('}')
	if p.b[p.i] == '[' {
		closing = ']'
	}
	p.i++
	p.space()
	if p.eat(closing) {
		return nil
	}
	for {
		p.space()
		if closing == '}' {
			if _, err := p.str(); err != nil {
				return err
			}
			p.space()
			if !p.eat(':') {
				return p.errorf("want ':' after a key")
			}
			p.space()
		}
		if _, _, err := p.value(depth); err != nil {
			return err
		}
		p.space()
		if p.eat(closing) {
			return nil
		}
		if !p.eat(',') {
			return p.errorf("want ',' or %q", closing)
		}
	}
}

// str reads a string, unescaped. Invalid UTF-8 becomes U+FFFD, as with
// encoding/json.
func (p *parser) str() (string, error) {
	if !p.eat('"') {
		return "", p.errorf("want a string")
	}
	var out []byte
	for {
		if p.i >= len(p.b) {
			return "", p.errorf("unterminated string")
		}
		c := p.b[p.i]
		switch {
		case c == '"':
			p.i++
			return string(out), nil
		case c < 0x20:
			return "", p.errorf("control character in a string")
		case c == '\\':
			if p.i+1 >= len(p.b) {
				return "", p.errorf("unterminated string")
			}
			e := p.b[p.i+1]
			p.i += 2
			switch e {
			case '"', '\\', '/':
				out = append(out, e)
			case 'b':
				out = append(out, '\b')
			case 'f':
				out = append(out, '\f')
			case 'n':
				out = append(out, '\n')
			case 'r':
				out = append(out, '\r')
			case 't':
				out = append(out, '\t')
			case 'u':
				r, ok := p.hex4()
				if !ok {
					return "", p.errorf("bad \\u escape")
				}
				if utf16.IsSurrogate(r) {
					// A pair makes one rune; a lone half is U+FFFD.
					r2 := rune(-1)
					if p.i+1 < len(p.b) && p.b[p.i] == '\\' && p.b[p.i+1] == 'u' {
						save := p.i
						p.i += 2
						if x, ok := p.hex4(); ok {
							r2 = x
						}
						if utf16.DecodeRune(r, r2) == utf8.RuneError {
							p.i = save // not a pair: read the second on its own
							r2 = -1
						}
					}
					if r2 < 0 {
						r = utf8.RuneError
					} else {
						r = utf16.DecodeRune(r, r2)
					}
				}
				out = utf8.AppendRune(out, r)
			default:
				return "", p.errorf("bad escape \\%c", e)
			}
		case c < utf8.RuneSelf:
			out = append(out, c)
			p.i++
		default:
			r, size := utf8.DecodeRune(p.b[p.i:])
			out = utf8.AppendRune(out, r) // U+FFFD for invalid bytes
			p.i += size
		}
	}
}

func (p *parser) hex4() (rune, bool) {
	if len(p.b)-p.i < 4 {
		return 0, false
	}
	var r rune
	for _, c := range p.b[p.i : p.i+4] {
		r <<= 4
		switch {
		case '0' <= c && c <= '9':
			r |= rune(c - '0')
		case 'a' <= c && c <= 'f':
			r |= rune(c - 'a' + 10)
		case 'A' <= c && c <= 'F':
			r |= rune(c - 'A' + 10)
		default:
			return 0, false
		}
	}
	p.i += 4
	return r, true
}

// ErrType is wrapped by the getters' errors for a value of the wrong
// JSON type.
var ErrType = errors.New("wrong JSON type")

// String sets *dst to the string at key; absent or null leaves it.
func (o Object) String(key string, dst *string) error {
	v, ok := o[key]
	if !ok || !v.IsString && v.Text == "null" {
		return nil
	}
	if !v.IsString {
		return fmt.Errorf("jsonobj: %s: %w: want a string", key, ErrType)
	}
	*dst = v.Text
	return nil
}

// Uint sets *dst to the unsigned integer of at most bits bits at key;
// absent or null leaves it.
func (o Object) Uint(key string, bits int, dst *uint64) error {
	v, ok := o[key]
	if !ok || !v.IsString && v.Text == "null" {
		return nil
	}
	if v.IsString {
		return fmt.Errorf("jsonobj: %s: %w: want a number", key, ErrType)
	}
	n, err := strconv.ParseUint(v.Text, 10, bits)
	if err != nil {
		return fmt.Errorf("jsonobj: %s: %w", key, err)
	}
	*dst = n
	return nil
}

// Int sets *dst to the signed integer at key; absent or null leaves it.
func (o Object) Int(key string, dst *int64) error {
	v, ok := o[key]
	if !ok || !v.IsString && v.Text == "null" {
		return nil
	}
	if v.IsString {
		return fmt.Errorf("jsonobj: %s: %w: want a number", key, ErrType)
	}
	n, err := strconv.ParseInt(v.Text, 10, 64)
	if err != nil {
		return fmt.Errorf("jsonobj: %s: %w", key, err)
	}
	*dst = n
	return nil
}

// Time sets *dst to the RFC 3339 time at key (as time.Time encodes);
// absent or null leaves it.
func (o Object) Time(key string, dst *time.Time) error {
	v, ok := o[key]
	if !ok || !v.IsString && v.Text == "null" {
		return nil
	}
	if !v.IsString {
		return fmt.Errorf("jsonobj: %s: %w: want a string", key, ErrType)
	}
	t, err := time.Parse(time.RFC3339, v.Text)
	if err != nil {
		return fmt.Errorf("jsonobj: %s: %w", key, err)
	}
	*dst = t
	return nil
}

// Addr sets *dst to the IP address at key (as netip.Addr encodes: ""
// for the zero Addr); absent or null leaves it.
func (o Object) Addr(key string, dst *netip.Addr) error {
	return o.parsed(key, func(s string) error {
		a, err := netip.ParseAddr(s)
		if err == nil {
			*dst = a
		}
		return err
	}, func() { *dst = netip.Addr{} })
}

// AddrPort sets *dst to the address and port at key (as netip.AddrPort
// encodes: "" for the zero AddrPort); absent or null leaves it.
func (o Object) AddrPort(key string, dst *netip.AddrPort) error {
	return o.parsed(key, func(s string) error {
		a, err := netip.ParseAddrPort(s)
		if err == nil {
			*dst = a
		}
		return err
	}, func() { *dst = netip.AddrPort{} })
}

// parsed hands the string at key to parse, or calls zero for "" (how a
// zero value encodes); absent or null calls neither.
func (o Object) parsed(key string, parse func(string) error, zero func()) error {
	var s string
	if err := o.String(key, &s); err != nil {
		return err
	}
	if _, ok := o[key]; !ok || s == "" {
		if ok && o[key].IsString {
			zero()
		}
		return nil
	}
	if err := parse(s); err != nil {
		return fmt.Errorf("jsonobj: %s: %w", key, err)
	}
	return nil
}
