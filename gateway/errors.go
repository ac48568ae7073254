package gateway

import (
	"context"
	"errors"
	"fmt"
)

// Errors returned by the Core. They are sentinels to test with errors.Is;
// the Core wraps them with the details of the request, so err.Error() is
// a sentence for logs and the admin page. The Core knows no protocol's
// codes: each protocol adapter (package gateway/daemon) turns these
// errors into its protocol's own.
var (
	// ErrConflict: the external port is held by another client. The error
	// is a *ConflictError naming the holder.
	ErrConflict = errors.New("external port already mapped to another client")
	// ErrNotAuthorized: secure mode, a permission rule, or ownership
	// forbids the request.
	ErrNotAuthorized = errors.New("not authorized")
	// ErrNoSuchEntry: no mapping has that protocol, external port and
	// remote host.
	ErrNoSuchEntry = errors.New("no such port mapping")
	// ErrNoneInRange: DeleteRange found nothing to delete in its range.
	ErrNoneInRange = errors.New("no port mapping in range")
	// ErrIndexOutOfRange: Index past the end of what the requester sees.
	ErrIndexOutOfRange = errors.New("port mapping index out of range")
	// ErrQuota: the requester already holds Policy.MaxPerClient mappings.
	ErrQuota = errors.New("per-client mapping quota reached")
	// ErrTableFull: the table holds Policy.MaxMappings mappings.
	ErrTableFull = errors.New("port mapping table full")
	// ErrNoPortsAvailable: AddAny found no free external port it may use.
	ErrNoPortsAvailable = errors.New("no free external port")
	// ErrReservedPort: the external port is used by the gateway itself.
	ErrReservedPort = errors.New("external port reserved by the gateway")
	// ErrWildcardExternalPort: external port 0 (IGD:1 "any port") in Add.
	ErrWildcardExternalPort = errors.New("wildcard external port not permitted")
	// ErrWildcardInternalPort: internal port 0.
	ErrWildcardInternalPort = errors.New("wildcard internal port not permitted")
	// ErrRemoteHostNotSupported: a specific remote host was asked for but
	// Policy.WildcardRemoteHostOnly is set.
	ErrRemoteHostNotSupported = errors.New("remote host must be the wildcard")
	// ErrInconsistentRange: a port range whose start is after its end.
	ErrInconsistentRange = errors.New("inconsistent port range")
	// ErrInvalidArgs: an argument no adapter should have let through
	// (unknown protocol, non-unicast internal address, lease in the past).
	ErrInvalidArgs = errors.New("invalid arguments")
	// ErrBackend: the data plane refused the change; the error is a
	// *BackendError.
	ErrBackend = errors.New("backend failed")
	// ErrStore: the lease store could not record the change, so the Core
	// did not make it.
	ErrStore = errors.New("lease store failed")
	// ErrClosed: the Core has been closed.
	ErrClosed = errors.New("gateway core closed")
)

// ConflictError reports that the requested external port is held by
// another client's mapping.
type ConflictError struct {
	Holder Mapping
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("%s/%d is already mapped to %s by another client; pick another external port or use AddAny",
		e.Holder.Protocol, e.Holder.ExternalPort, e.Holder.InternalAddr)
}

// Unwrap makes errors.Is(err, ErrConflict) true.
func (e *ConflictError) Unwrap() error { return ErrConflict }

// BackendError reports a failed Backend call.
type BackendError struct {
	Backend string // Backend.Name()
	Op      string // "add", "delete" or "flush"
	Rule    Rule
	Err     error
}

func (e *BackendError) Error() string {
	if e.Op == "flush" {
		return fmt.Sprintf("%s backend: flush: %v", e.Backend, e.Err)
	}
	return fmt.Sprintf("%s backend: %s %s: %v", e.Backend, e.Op, e.Rule, e.Err)
}

// Unwrap makes errors.Is match both ErrBackend and the backend's own error.
func (e *BackendError) Unwrap() []error { return []error{ErrBackend, e.Err} }

// ctxErr wraps a context error from a wait so that it says what was waited
// for; errors.Is still finds context.Canceled or DeadlineExceeded.
func ctxErr(err error, what string) error {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return fmt.Errorf("gateway: gave up waiting for %s: %w", what, err)
	}
	return err
}
