// Package explain turns the errors of portfwd's client side into what a
// user reads: one sentence that says what was being done and what went
// wrong, in words, never the chain of every layer nor Go's names for
// things. The CLI (cmd/portfwd) and the web UI (package webui) both use
// it, so that a failure reads the same in both.
package explain

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"

	"github.com/portfwd/portfwd/portmap"
)

// Sentence is what the user reads for err: one sentence, not the chain
// of every layer the error went through. The sentences portfwd writes
// for the user (refusals, unreachable ports) stand as they are. Any other chain is cut to its first layer, which says what was
// being done, and its last, which says what went wrong, in words
// ("connection refused", "no answer in time"). An error that joins
// several (discovery's probes, check's probe servers) lists each in that
// form, after what they were for.
//
// timeoutHint follows "no answer in time" and names the setting that
// bounds the wait: " (--timeout)" in the CLI, "" where there is none.
func Sentence(err error, timeoutHint string) string {
	if parts, all := joined(err); all != nil {
		return joinedSentence(err, parts, all, timeoutHint)
	}
	if errors.Is(err, portmap.ErrNoGateway) {
		return trimPackage(err.Error())
	}
	return shorten(err, timeoutHint)
}

// joinedSentence is "<what was tried>: <each failure>: <why>; ...",
// and for discovery "no gateway found (tried ...): ...", without the
// list of ways tried when every one failed (each names itself).
func joinedSentence(err error, parts []error, all error, timeoutHint string) string {
	head := trimPackage(strings.TrimSuffix(err.Error(), ": "+all.Error()))
	if tried, ok := strings.CutPrefix(head, portmap.ErrNoGateway.Error()+" (tried "); ok && len(parts) >= topLevelItems(tried) {
		head = portmap.ErrNoGateway.Error()
	}
	var out []string
	for _, p := range parts {
		out = append(out, shorten(p, timeoutHint))
	}
	return head + ": " + strings.Join(out, "; ")
}

// topLevelItems counts the comma-separated items of s, not counting
// commas inside brackets.
func topLevelItems(s string) int {
	n, depth := 1, 0
	for _, r := range s {
		switch r {
		case '[', '(':
			depth++
		case ']', ')':
			depth--
		case ',':
			if depth == 0 {
				n++
			}
		}
	}
	return n
}

// joined returns the errors of the errors.Join inside err (discovery's
// failed probes), and that joined error; nil when there is none.
func joined(err error) ([]error, error) {
	multi, ok := err.(interface{ Unwrap() []error })
	if !ok {
		if inner := errors.Unwrap(err); inner != nil {
			return joined(inner)
		}
		return nil, nil
	}
	for _, e := range multi.Unwrap() {
		if m, ok := e.(interface{ Unwrap() []error }); ok {
			return m.Unwrap(), e
		}
	}
	return nil, nil
}

// shorten is err's first layer and its cause.
func shorten(err error, timeoutHint string) string {
	ls, last := layers(err)
	cause := causeText(last, ls[len(ls)-1], timeoutHint)
	switch {
	case len(ls) == 1:
		return cause
	case last == portmap.ErrNotSupported:
		// A bare marker ("not supported by this protocol"), which the
		// layer above it has already put in words.
		return ls[len(ls)-2]
	}
	return ls[0] + ": " + cause
}

// layers lists what each error of err's chain adds to the message,
// outermost first, without Go package prefixes ("upnp: "), and returns
// the innermost error. It stops at an error whose message is a sentence
// of its own (a refusal), at one that does not end with the message of
// the error it wraps, and at one that wraps several.
func layers(err error) ([]string, error) {
	var out []string
	for {
		if re, ok := err.(*portmap.RefusedError); ok {
			return append(out, re.Text), err
		}
		inner := errors.Unwrap(err)
		msg := err.Error()
		if inner == nil || !strings.HasSuffix(msg, ": "+inner.Error()) {
			return append(out, trimPackage(msg)), err
		}
		if own := trimPackage(strings.TrimSuffix(msg, ": "+inner.Error())); own != "" {
			out = append(out, own)
		}
		err = inner
	}
}

// causeText says in words what err, the innermost error, means; text is
// its message as layers left it.
func causeText(err error, text, timeoutHint string) string {
	var dns *net.DNSError
	var timeout interface{ Timeout() bool }
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case errors.Is(err, syscall.EHOSTUNREACH):
		return "host unreachable"
	case errors.Is(err, syscall.ENETUNREACH):
		return "network unreachable"
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded),
		errors.As(err, &timeout) && timeout.Timeout():
		return "no answer in time" + timeoutHint
	case errors.Is(err, context.Canceled):
		return "interrupted"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "the connection closed before the answer"
	case errors.As(err, &dns):
		return fmt.Sprintf("cannot resolve %s", dns.Name)
	}
	return text
}

// trimPackage removes the prefixes the project's packages put on their
// errors ("upnp: ").
func trimPackage(s string) string {
	for again := true; again; {
		again = false
		for _, p := range []string{"upnp: ", "igd: ", "ssdp: ", "natpmp: ", "pcp: ", "portmap: ", "reach: "} {
			if t, ok := strings.CutPrefix(s, p); ok {
				s, again = t, true
			}
		}
	}
	return s
}
