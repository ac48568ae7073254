package upnp

// GENA eventing (UPnP Device Architecture 1.1 §4): the property set carried
// by every NOTIFY and the header values both sides exchange. Everything here
// is a pure function over bytes or strings; Publisher and Subscriber (in
// gena_publisher.go and gena_subscriber.go) hold the state.

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"math"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Header values fixed by UDA for event messages and subscriptions.
const (
	// NTEvent is the NT header of a SUBSCRIBE and of every NOTIFY.
	NTEvent = "upnp:event"
	// NTSPropChange is the NTS header of every NOTIFY.
	NTSPropChange = "upnp:propchange"

	eventNS = "urn:schemas-upnp-org:event-1-0"
)

// MaxEventBody bounds the property set either side reads. An IGD event is
// a few hundred bytes; the largest events in practice, UPnP AV LastChange
// documents, are tens of KiB.
const MaxEventBody = 256 << 10

// maxEventVars bounds the variables of one property set. No standard
// service has more than a few dozen evented variables; a peer that sends
// more is broken or hostile.
const maxEventVars = 256

// AppendPropertySet appends the body of an event message announcing vars:
// an XML declaration and an <e:propertyset> holding one <e:property> per
// variable, in order. Values are XML-escaped; names are written as they are
// and must be XML names without a colon, as every UPnP state variable name
// is.
func AppendPropertySet(dst []byte, vars []Arg) []byte {
	dst = append(dst, `<?xml version="1.0"?>`+"\r\n"+`<e:propertyset xmlns:e="`+eventNS+`">`...)
	for _, v := range vars {
		dst = append(dst, "<e:property><"...)
		dst = append(dst, v.Name...)
		dst = append(dst, '>')
		dst = appendEscaped(dst, v.Value)
		dst = append(dst, "</"...)
		dst = append(dst, v.Name...)
		dst = append(dst, "></e:property>"...)
	}
	return append(dst, "</e:propertyset>\r\n"...)
}

// ParsePropertySet decodes the body of an event message into its variables,
// in document order, each value being the variable's text with surrounding
// whitespace trimmed.
//
// Namespace prefixes and the namespace itself are ignored (UDA lets the
// publisher choose the prefix, and some stacks declare none); only the local
// names propertyset and property matter. A <property> holding several
// variables, which UDA does not allow but some stacks send, yields all of
// them. Markup nested inside a variable is skipped: values that are XML
// documents (LastChange) arrive escaped, as text. Character sets are handled
// as for descriptions. Bodies over MaxEventBody bytes, with more than a few
// hundred variables, or declaring DTD entities are refused.
func ParsePropertySet(data []byte) ([]Arg, error) {
	if len(data) > MaxEventBody {
		return nil, fmt.Errorf("upnp: event body of %d bytes: %w", len(data), ErrBodyTooLarge)
	}
	d := newDecoder(data)
	var (
		vars     []Arg
		depth    int
		root     bool // the root element was a propertyset
		property bool // inside a <property> at depth 2
		cur      = -1 // index in vars of the variable being read
		val      strings.Builder
	)
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("upnp: malformed event property set: %w", err)
		}
		switch t := tok.(type) {
		case xml.Directive:
			if hasEntityDecl(t) {
				return nil, errors.New("upnp: event property set declares DTD entities; refusing it")
			}
		case xml.StartElement:
			depth++
			switch depth {
			case 1:
				if !strings.EqualFold(t.Name.Local, "propertyset") {
					return nil, fmt.Errorf("upnp: event body is a <%s>, not a <propertyset>", t.Name.Local)
				}
				root = true
			case 2:
				property = strings.EqualFold(t.Name.Local, "property")
			case 3:
				if !property {
					break
				}
				if len(vars) == maxEventVars {
					return nil, fmt.Errorf("upnp: event property set has more than %d variables", maxEventVars)
				}
				vars = append(vars, Arg{Name: t.Name.Local})
				cur = len(vars) - 1
				val.Reset()
			}
		case xml.EndElement:
			if depth == 3 && cur >= 0 {
				vars[cur].Value = strings.TrimSpace(val.String())
				cur = -1
			}
			if depth == 2 {
				property = false
			}
			depth--
		case xml.CharData:
			if cur >= 0 && depth == 3 {
				val.Write(t)
			}
		}
		if root && depth == 0 {
			// The property set is complete; trailing bytes are not ours.
			break
		}
	}
	if !root {
		return nil, errors.New("upnp: event body holds no <propertyset>")
	}
	if depth != 0 {
		return nil, errors.New("upnp: event property set is truncated")
	}
	return vars, nil
}

// TimeoutInfinite is what ParseTimeout returns for "Second-infinite" and
// what FormatTimeout turns into it. UDA 1.1 forbids both sides from using
// it, but UDA 1.0 devices and control points still send it.
const TimeoutInfinite time.Duration = -1

// ParseTimeout parses a TIMEOUT header value, "Second-" followed by a
// number of seconds or "infinite". Case, surrounding whitespace and leading
// zeros are tolerated. Durations past 2^32-1 seconds are refused: no peer
// means them, and they would overflow a time.Duration's useful range.
func ParseTimeout(v string) (time.Duration, error) {
	s := strings.TrimSpace(v)
	const prefix = "second-"
	if len(s) < len(prefix) || !strings.EqualFold(s[:len(prefix)], prefix) {
		return 0, fmt.Errorf("upnp: TIMEOUT %q does not start with Second-", v)
	}
	s = s[len(prefix):]
	if strings.EqualFold(s, "infinite") {
		return TimeoutInfinite, nil
	}
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("upnp: TIMEOUT %q is not a number of seconds", v)
	}
	return time.Duration(n) * time.Second, nil
}

// FormatTimeout formats d as a TIMEOUT header value: "Second-infinite" for
// a negative d, else the number of whole seconds, rounded up so that a
// granted duration is never understated.
func FormatTimeout(d time.Duration) string {
	if d < 0 {
		return "Second-infinite"
	}
	secs := (d + time.Second - 1) / time.Second
	return "Second-" + strconv.FormatInt(int64(secs), 10)
}

// maxSIDLen bounds a subscription identifier: "uuid:" and a UUID are 41
// bytes; some stacks append a suffix, none approach this.
const maxSIDLen = 128

// ParseSID parses a SID header value: "uuid:" followed by an identifier the
// publisher chose. The prefix is matched without regard to case; the value
// is returned trimmed and otherwise unchanged, since SIDs are compared
// exactly. Whitespace, control characters and non-ASCII are refused.
func ParseSID(v string) (string, error) {
	s := strings.TrimSpace(v)
	if len(s) <= len("uuid:") || !strings.EqualFold(s[:len("uuid:")], "uuid:") {
		return "", fmt.Errorf("upnp: SID %q is not of the form uuid:identifier", v)
	}
	if len(s) > maxSIDLen {
		return "", fmt.Errorf("upnp: SID of %d bytes is too long", len(s))
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f {
			return "", fmt.Errorf("upnp: SID %q holds a character other than printable ASCII", v)
		}
	}
	return s, nil
}

// newSID returns a fresh subscription identifier: "uuid:" and a random
// (version 4) UUID. Random rather than sequential so that a SID cannot be
// guessed to cancel or renew someone else's subscription.
func newSID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails: see crypto/rand.Read
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	var out [5 + 36]byte
	copy(out[:], "uuid:")
	hex.Encode(out[5:13], b[0:4])
	out[13] = '-'
	hex.Encode(out[14:18], b[4:6])
	out[18] = '-'
	hex.Encode(out[19:23], b[6:8])
	out[23] = '-'
	hex.Encode(out[24:28], b[8:10])
	out[28] = '-'
	hex.Encode(out[29:41], b[10:16])
	return string(out[:])
}

// ParseSeq parses a SEQ header value, the event key: a decimal 32-bit
// unsigned integer. Leading zeros, which UDA says some implementations
// send, are ignored.
func ParseSeq(v string) (uint32, error) {
	n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 32)
	if err != nil {
		return 0, fmt.Errorf("upnp: SEQ %q is not a 32-bit unsigned number", v)
	}
	return uint32(n), nil
}

// NextSeq returns the event key that follows seq. Key 0 belongs to the
// initial event alone, so after 4294967295 comes 1.
func NextSeq(seq uint32) uint32 {
	if seq == math.MaxUint32 {
		return 1
	}
	return seq + 1
}

// maxCallbacks bounds the delivery URLs of one CALLBACK header. UDA sets no
// limit; control points send one, multi-homed ones one per interface.
const maxCallbacks = 8

// ParseCallback parses a CALLBACK header value: one or more delivery URLs,
// each in angle brackets, optionally separated by whitespace. Every URL must
// be an absolute http URL with a host and no user information; anything
// else, including text outside the brackets, makes the whole value invalid,
// as UDA requires a publisher to refuse it (412 Precondition Failed).
func ParseCallback(v string) ([]*url.URL, error) {
	s := strings.TrimSpace(v)
	if s == "" {
		return nil, errors.New("upnp: CALLBACK is empty")
	}
	var urls []*url.URL
	for s != "" {
		if s[0] != '<' {
			return nil, fmt.Errorf("upnp: CALLBACK %q has text outside angle brackets", v)
		}
		end := strings.IndexByte(s, '>')
		if end < 0 {
			return nil, fmt.Errorf("upnp: CALLBACK %q has an unclosed angle bracket", v)
		}
		if len(urls) == maxCallbacks {
			return nil, fmt.Errorf("upnp: CALLBACK lists more than %d URLs", maxCallbacks)
		}
		raw := strings.TrimSpace(s[1:end])
		u, err := url.Parse(raw)
		if err != nil {
			return nil, fmt.Errorf("upnp: CALLBACK URL %q: %w", raw, err)
		}
		if u.Scheme != "http" || u.Host == "" || u.Opaque != "" {
			return nil, fmt.Errorf("upnp: CALLBACK URL %q is not an absolute http URL", raw)
		}
		if u.User != nil {
			return nil, fmt.Errorf("upnp: CALLBACK URL %q carries user information", raw)
		}
		// net/url accepts escapes in an IPv6 zone that it cannot write
		// back; such a host is no use to anyone.
		for _, c := range []byte(u.Hostname()) {
			if c <= ' ' || c >= 0x7f {
				return nil, fmt.Errorf("upnp: CALLBACK URL %q has a host that is not printable ASCII", raw)
			}
		}
		if _, err := url.Parse(u.String()); err != nil {
			return nil, fmt.Errorf("upnp: CALLBACK URL %q cannot be written back: %w", raw, err)
		}
		urls = append(urls, u)
		s = strings.TrimLeft(s[end+1:], " \t")
	}
	return urls, nil
}

// FormatCallback formats delivery URLs as a CALLBACK header value.
func FormatCallback(urls ...*url.URL) string {
	var b strings.Builder
	for _, u := range urls {
		b.WriteByte('<')
		b.WriteString(u.String())
		b.WriteByte('>')
	}
	return b.String()
}

// mergeVars returns dst with each variable of src set: a variable already
// in dst takes its new value in place, others are appended. Coalescing
// events this way keeps, for every variable, the latest value, which is all
// a subscriber can use.
func mergeVars(dst, src []Arg) []Arg {
outer:
	for _, v := range src {
		for i := range dst {
			if dst[i].Name == v.Name {
				dst[i].Value = v.Value
				continue outer
			}
		}
		dst = append(dst, v)
	}
	return dst
}
