package main

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

// exitCode prints err for the user and picks the process exit code. The
// user reads one sentence (see sentence); -v adds the whole error chain.
// Under --json the error is also printed on stdout as
// {"schema": 1, "error": {"code", "message", "exit"}}, unless the command
// already printed its output with the error inside (reported).
func exitCode(e *env, err error) int {
	if err == nil || errors.Is(err, errHelpShown) {
		return exitOK
	}
	code := classify(err)
	msg := sentence(err)
	fmt.Fprintf(e.stderr, "portfwd: %s\n", msg)
	if e.verbose && err.Error() != msg {
		fmt.Fprintf(e.stderr, "portfwd: the whole error: %v\n", err)
	}
	var r reported
	if e.json && !errors.As(err, &r) {
		printJSON(e.stdout, struct {
			Schema int       `json:"schema"`
			Error  jsonError `json:"error"`
		}{schemaVersion, newJSONError(err)})
	}
	return code
}

// reported marks an error that the command's JSON output already carries
// (a partial result with its "error"), so that it is not printed twice.
type reported struct{ err error }

func (r reported) Error() string { return r.err.Error() }
func (r reported) Unwrap() error { return r.err }

// jsonError is the "error" object of schema 1.
type jsonError struct {
	// Code is the exit code's name: usage, no_gateway, refused, failure,
	// unreachable.
	Code    string `json:"code"`
	Message string `json:"message"`
	Exit    int    `json:"exit"`
}

func newJSONError(err error) jsonError {
	exit := classify(err)
	return jsonError{Code: exitName(exit), Message: sentence(err), Exit: exit}
}

// jsonErrorOf is the "error" of a partial result: nil when err is nil.
func jsonErrorOf(err error) *jsonError {
	if err == nil {
		return nil
	}
	j := newJSONError(err)
	return &j
}

// exitName is the name of an exit code in JSON errors.
func exitName(code int) string {
	switch code {
	case exitUsage:
		return "usage"
	case exitNoGateway:
		return "no_gateway"
	case exitRefused:
		return "refused"
	case exitUnreachable:
		return "unreachable"
	}
	return "failure"
}

// classify maps an error to the documented exit code.
func classify(err error) int {
	var ue usageError
	var re *portmap.RefusedError
	var ec interface{ ExitCode() int }
	switch {
	case errors.As(err, &ue):
		return exitUsage
	case errors.Is(err, portmap.ErrNoGateway):
		return exitNoGateway
	case errors.As(err, &re):
		return exitRefused
	case errors.As(err, &ec):
		return ec.ExitCode()
	}
	return exitFailure
}

// sentence is what the user reads for err: one sentence, not the chain
// of every layer the error went through. The sentences portfwd writes
// for the user (usage errors, refusals, unreachable ports) stand as they
// are. Any other chain is cut to its first layer, which says what was
// being done, and its last, which says what went wrong, in words
// ("connection refused", "no answer in time"). An error that joins
// several (discovery's probes, check's probe servers) lists each in that
// form, after what they were for.
func sentence(err error) string {
	var ue usageError
	if errors.As(err, &ue) {
		return ue.msg
	}
	if parts, all := joined(err); all != nil {
		return joinedSentence(err, parts, all)
	}
	if errors.Is(err, portmap.ErrNoGateway) {
		return trimPackage(err.Error())
	}
	return shorten(err)
}

// joinedSentence is "<what was tried>: <each failure>: <why>; ...",
// and for discovery "no gateway found (tried ...): ...", without the
// list of ways tried when every one failed (each names itself).
func joinedSentence(err error, parts []error, all error) string {
	head := trimPackage(strings.TrimSuffix(err.Error(), ": "+all.Error()))
	if tried, ok := strings.CutPrefix(head, portmap.ErrNoGateway.Error()+" (tried "); ok && len(parts) >= topLevelItems(tried) {
		head = portmap.ErrNoGateway.Error()
	}
	var out []string
	for _, p := range parts {
		out = append(out, shorten(p))
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
func shorten(err error) string {
	ls, last := layers(err)
	cause := causeText(last, ls[len(ls)-1])
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
func causeText(err error, text string) string {
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
		return "no answer in time (--timeout)"
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
