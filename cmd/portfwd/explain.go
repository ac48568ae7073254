package main

import (
	"errors"
	"fmt"

	"github.com/portfwd/portfwd/internal/explain"
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

// sentence is what the user reads for err (explain.Sentence); a usage
// error is its own sentence.
func sentence(err error) string {
	var ue usageError
	if errors.As(err, &ue) {
		return ue.msg
	}
	return explain.Sentence(err, " (--timeout)")
}
