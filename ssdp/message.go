package ssdp

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// SSDP request methods.
const (
	MethodSearch = "M-SEARCH"
	MethodNotify = "NOTIFY"
)

// Values of the NTS header of a NOTIFY.
const (
	NTSAlive  = "ssdp:alive"
	NTSByeBye = "ssdp:byebye"
	NTSUpdate = "ssdp:update"
)

// ErrNotSSDP is wrapped by every error ParseMessage returns: the datagram is
// not an SSDP message at all, as opposed to a well-formed message the caller
// has no use for.
var ErrNotSSDP = errors.New("not an SSDP message")

// Message is one SSDP datagram: an HTTP-over-UDP request (M-SEARCH or NOTIFY)
// or a response to an M-SEARCH.
type Message struct {
	// Method is "M-SEARCH" or "NOTIFY" for a request and "" for a response.
	Method string
	// Target is the request-URI of a request ("*" in every SSDP request).
	Target string
	// StatusCode and Reason are set for a response only.
	StatusCode int
	Reason     string
	// Header maps upper-cased header names to their values with the
	// surrounding blanks removed. When a name is repeated the first value
	// is kept: no SSDP header is a list spread over several lines.
	Header map[string]string
}

// Get returns the value of the header named key, in any case, or "".
func (m *Message) Get(key string) string {
	return m.Header[strings.ToUpper(key)]
}

// ParseMessage parses one SSDP datagram. It accepts what real peers send:
// blank lines or spaces before the start line, CRLF or bare LF line ends, no
// blank line after the last header, header names in any case and indented
// header lines. Anything after the blank line that ends the header is
// ignored (SSDP messages have no body). Obsolete line folding is not
// supported: no known peer folds, and an indented line is read as a header
// of its own.
//
// It rejects, with an error wrapping ErrNotSSDP, a datagram whose start line
// is neither an HTTP/1.x request nor an HTTP/1.x status line, a header line
// without a colon or with a blank or odd name, and control characters (other
// than tab) anywhere in the header: that is the mark of binary garbage, and
// letting them through would let a value carry a line break into a message
// built from it.
func ParseMessage(b []byte) (Message, error) {
	var m Message
	b = bytes.TrimLeft(b, " \t\r\n")
	if len(b) == 0 {
		return m, fmt.Errorf("%w: empty datagram", ErrNotSSDP)
	}
	line, rest := nextLine(b)
	if err := checkLine(line); err != nil {
		return m, fmt.Errorf("%w: start line: %v", ErrNotSSDP, err)
	}
	if err := m.parseStartLine(strings.TrimSpace(string(line))); err != nil {
		return m, err
	}
	m.Header = make(map[string]string)
	for len(rest) > 0 {
		line, rest = nextLine(rest)
		if len(bytes.TrimSpace(line)) == 0 {
			break // end of the header; SSDP has no body
		}
		if err := checkLine(line); err != nil {
			return m, fmt.Errorf("%w: header line %q: %v", ErrNotSSDP, truncate(line), err)
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			return m, fmt.Errorf("%w: header line %q has no colon", ErrNotSSDP, truncate(line))
		}
		key := strings.ToUpper(string(bytes.TrimSpace(name)))
		if !isToken(key) {
			return m, fmt.Errorf("%w: header line %q has an invalid name", ErrNotSSDP, truncate(line))
		}
		if _, dup := m.Header[key]; !dup {
			m.Header[key] = string(bytes.Trim(value, " \t"))
		}
	}
	return m, nil
}

func (m *Message) parseStartLine(s string) error {
	if strings.HasPrefix(s, "HTTP/") {
		// Status line: HTTP/1.1 200 OK (the reason may be missing).
		proto, rest, _ := strings.Cut(s, " ")
		if !validProto(proto) {
			return fmt.Errorf("%w: status line %q: unsupported protocol version", ErrNotSSDP, truncate([]byte(s)))
		}
		rest = strings.TrimLeft(rest, " ")
		code, reason, _ := strings.Cut(rest, " ")
		n, err := strconv.Atoi(code)
		if len(code) != 3 || err != nil || n < 100 {
			return fmt.Errorf("%w: status line %q: bad status code", ErrNotSSDP, truncate([]byte(s)))
		}
		m.StatusCode, m.Reason = n, strings.TrimSpace(reason)
		return nil
	}
	// Request line: M-SEARCH * HTTP/1.1
	f := strings.Fields(s)
	if len(f) != 3 || !isMethod(f[0]) || !validProto(f[2]) {
		return fmt.Errorf("%w: start line %q is neither a request nor a status line", ErrNotSSDP, truncate([]byte(s)))
	}
	m.Method, m.Target = f[0], f[1]
	return nil
}

// nextLine splits b after the first LF and strips the line's CR.
func nextLine(b []byte) (line, rest []byte) {
	line, rest, _ = bytes.Cut(b, []byte("\n"))
	return bytes.TrimSuffix(line, []byte("\r")), rest
}

// checkLine rejects control characters other than tab.
func checkLine(line []byte) error {
	for _, c := range line {
		if (c < 0x20 && c != '\t') || c == 0x7f {
			return fmt.Errorf("control character %#02x", c)
		}
	}
	return nil
}

// validProto accepts HTTP/1.0 and HTTP/1.1 (and any HTTP/1.x): some stacks
// answer with 1.0.
func validProto(p string) bool {
	rest, ok := strings.CutPrefix(p, "HTTP/1.")
	if !ok || rest == "" {
		return false
	}
	for _, c := range rest {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// isMethod accepts the upper-case letters and hyphens of M-SEARCH, NOTIFY and
// their GENA-style siblings; anything else is not SSDP.
func isMethod(s string) bool {
	for _, c := range s {
		if (c < 'A' || c > 'Z') && c != '-' {
			return false
		}
	}
	return s != ""
}

// isToken reports whether s is an HTTP token (RFC 9110 §5.6.2).
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

func truncate(b []byte) string {
	const max = 64
	if len(b) > max {
		return string(b[:max]) + "..."
	}
	return string(b)
}

// appendHeader appends "NAME: value\r\n". Control characters are dropped from
// the value so that a caller's string can never end the line early and smuggle
// a header or a second message into the datagram.
func appendHeader(dst []byte, name, value string) []byte {
	dst = append(dst, name...)
	dst = append(dst, ':', ' ')
	for i := 0; i < len(value); i++ {
		if c := value[i]; (c >= 0x20 && c != 0x7f) || c == '\t' {
			dst = append(dst, c)
		}
	}
	return append(dst, '\r', '\n')
}
