package reach

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// Path is the probe server's endpoint.
const Path = "/v1/check"

const (
	// MaxRequestBytes bounds the body of a check request; a real one is
	// under 100 bytes.
	MaxRequestBytes = 1 << 10
	// MaxConnectTimeout bounds how long a probe server tries to reach a
	// client (and, for UDP, to hear its reply).
	MaxConnectTimeout = 5 * time.Second
	// AnswerTimeout is how long a TCP peer, once connected, has to answer the
	// probe line.
	AnswerTimeout = 2 * time.Second
	// maxResponseBytes bounds what the client reads of a probe's answer.
	maxResponseBytes = 16 << 10
)

// Protocols a check can use.
const (
	TCP = "tcp"
	UDP = "udp"
)

// Codes a probe server reports in CheckResponse.Code when the token did not
// come back.
const (
	CodeRefused     = "refused"     // TCP reset or ICMP port unreachable
	CodeTimeout     = "timeout"     // nothing came back in time: packets dropped
	CodeMismatch    = "mismatch"    // something answered, but not with the token
	CodeUnreachable = "unreachable" // ICMP host or network unreachable
	CodeError       = "error"       // anything else
)

// lineMagic starts both lines of the exchange; the version lets a later
// protocol change it without old listeners answering by mistake.
const lineMagic = "portfwd-reach/1 "

const tokenLen = 32 // hex digits of a 128-bit token

// CheckRequest is the body of POST /v1/check. It names no host on purpose:
// the server probes the address the request came from.
type CheckRequest struct {
	Protocol string `json:"protocol"` // "tcp" or "udp"
	Port     uint16 `json:"port"`     // the external port to reach
	Token    string `json:"token"`    // 32 lowercase hex digits
}

// CheckResponse is the probe server's answer to a check it ran.
type CheckResponse struct {
	Protocol string `json:"protocol,omitempty"`
	// Address is what the server tried to reach: the requester's address
	// and the requested port.
	Address string `json:"address,omitempty"`
	// Reachable means the probe line came back: the forward leads to the
	// program that asked.
	Reachable bool `json:"reachable"`
	// Answered means a TCP connection was accepted or a datagram came back,
	// token or not.
	Answered bool `json:"answered"`
	// Code is one of the Code constants when Reachable is false.
	Code string `json:"code,omitempty"`
	// Error says what happened, for people. On a status other than 200 it
	// is the only field set.
	Error     string  `json:"error,omitempty"`
	RTTMillis float64 `json:"rtt_ms"`
}

// NewToken returns a fresh random token: 128 bits in lowercase hex.
func NewToken() (string, error) {
	var b [tokenLen / 2]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("reach: making a random token: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// validToken reports whether s is a token as NewToken makes them. Only
// lowercase is accepted, so the probe line has exactly one spelling.
func validToken(s string) bool {
	if len(s) != tokenLen {
		return false
	}
	for i := range len(s) {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// probeLine is what the probe server sends.
func probeLine(token string) []byte {
	return []byte(lineMagic + "probe " + token + "\n")
}

// replyLine is what the client's listener answers to probeLine. It differs
// from the probe so that an echo service, which repeats anything, is not
// taken for portfwd's listener.
func replyLine(token string) []byte {
	return []byte(lineMagic + "reply " + token + "\n")
}

// decodeRequest parses and validates a check request body. Unknown fields
// are ignored, whatever they say: nothing in a request chooses the host.
func decodeRequest(b []byte) (CheckRequest, error) {
	var r CheckRequest
	d := json.NewDecoder(bytes.NewReader(b))
	if err := d.Decode(&r); err != nil {
		return r, fmt.Errorf("the body is not a check request: %w", err)
	}
	if d.More() {
		return r, errors.New("the body holds more than one JSON value")
	}
	return r, r.validate()
}

func (r CheckRequest) validate() error {
	if r.Protocol != TCP && r.Protocol != UDP {
		return fmt.Errorf("protocol must be %q or %q, not %q", TCP, UDP, r.Protocol)
	}
	if r.Port == 0 {
		return errors.New("port must be 1-65535")
	}
	if !validToken(r.Token) {
		return fmt.Errorf("token must be %d lowercase hex digits", tokenLen)
	}
	return nil
}

// decodeResponse parses and checks a probe server's 200 answer.
func decodeResponse(b []byte) (CheckResponse, netip.AddrPort, error) {
	var r CheckResponse
	if err := json.Unmarshal(b, &r); err != nil {
		return r, netip.AddrPort{}, fmt.Errorf("the answer is not a check response: %w", err)
	}
	ap, err := netip.ParseAddrPort(r.Address)
	if err != nil {
		return r, netip.AddrPort{}, fmt.Errorf("the answer's address %q: %w", r.Address, err)
	}
	if r.Reachable && !r.Answered {
		return r, ap, errors.New("the answer says reachable but not answered")
	}
	if !r.Reachable && r.Code == "" {
		return r, ap, errors.New("the answer says not reachable without a code")
	}
	if r.RTTMillis < 0 {
		return r, ap, fmt.Errorf("the answer's round-trip time %v is negative", r.RTTMillis)
	}
	return r, netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
}
