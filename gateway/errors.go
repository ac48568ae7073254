package gateway

import (
	"context"
	"errors"
	"fmt"
)

// Errors returned by the Core. They are sentinels to test with errors.Is;
// the Core wraps them with the details of the request, so err.Error() is
// a sentence for logs and the admin page. See the package documentation
// for the protocol codes each one becomes.
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

// UPnP error codes (UPnP IGD:2 WANIPConnection, and the UPnP Device
// Architecture for 402, 501 and 606).
const (
	UPnPInvalidArgs                      = 402
	UPnPActionFailed                     = 501
	UPnPNotAuthorized                    = 606
	UPnPSpecifiedArrayIndexInvalid       = 713
	UPnPNoSuchEntryInArray               = 714
	UPnPWildCardNotPermittedInSrcIP      = 715
	UPnPWildCardNotPermittedInExtPort    = 716
	UPnPConflictInMappingEntry           = 718
	UPnPSamePortValuesRequired           = 724
	UPnPOnlyPermanentLeasesSupported     = 725
	UPnPRemoteHostOnlySupportsWildcard   = 726
	UPnPExternalPortOnlySupportsWildcard = 727
	UPnPNoPortMapsAvailable              = 728
	UPnPConflictWithOtherMechanisms      = 729
	UPnPPortMappingNotFound              = 730
	UPnPWildCardNotPermittedInIntPort    = 732
	UPnPInconsistentParameters           = 733
)

// UPnPCode returns the WANIPConnection:2 error code for err, 0 for nil.
// Errors the table does not list (backend, store, cancellation) are 501
// Action Failed.
func UPnPCode(err error) int {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, ErrConflict):
		return UPnPConflictInMappingEntry
	case errors.Is(err, ErrNotAuthorized):
		return UPnPNotAuthorized
	case errors.Is(err, ErrNoSuchEntry):
		return UPnPNoSuchEntryInArray
	case errors.Is(err, ErrNoneInRange):
		return UPnPPortMappingNotFound
	case errors.Is(err, ErrIndexOutOfRange):
		return UPnPSpecifiedArrayIndexInvalid
	case errors.Is(err, ErrQuota), errors.Is(err, ErrTableFull), errors.Is(err, ErrNoPortsAvailable):
		return UPnPNoPortMapsAvailable
	case errors.Is(err, ErrReservedPort):
		return UPnPConflictWithOtherMechanisms
	case errors.Is(err, ErrWildcardExternalPort):
		return UPnPWildCardNotPermittedInExtPort
	case errors.Is(err, ErrWildcardInternalPort):
		return UPnPWildCardNotPermittedInIntPort
	case errors.Is(err, ErrRemoteHostNotSupported):
		return UPnPRemoteHostOnlySupportsWildcard
	case errors.Is(err, ErrInconsistentRange):
		return UPnPInconsistentParameters
	case errors.Is(err, ErrInvalidArgs):
		return UPnPInvalidArgs
	}
	return UPnPActionFailed
}

// UPnPCodeV1 is UPnPCode for WANIPConnection:1 clients, which predate codes
// 728-733: each is replaced by the nearest IGD:1 code.
func UPnPCodeV1(err error) int {
	switch c := UPnPCode(err); c {
	case UPnPNoPortMapsAvailable:
		return UPnPActionFailed
	case UPnPConflictWithOtherMechanisms:
		return UPnPConflictInMappingEntry
	case UPnPPortMappingNotFound:
		return UPnPNoSuchEntryInArray
	case UPnPWildCardNotPermittedInIntPort, UPnPInconsistentParameters:
		return UPnPInvalidArgs
	default:
		return c
	}
}

// NAT-PMP result codes (RFC 6886 section 3.5).
const (
	NATPMPSuccess            = 0
	NATPMPUnsupportedVersion = 1
	NATPMPNotAuthorized      = 2
	NATPMPNetworkFailure     = 3
	NATPMPOutOfResources     = 4
	NATPMPUnsupportedOpcode  = 5
)

// NATPMPResult returns the NAT-PMP result code for err. NAT-PMP has no
// "conflict" or "bad argument" code: the NAT-PMP adapter uses AddAny, so
// conflicts and reserved ports are answered with another port rather than
// an error, and what is left is a refusal (2). Failures the client can only
// retry (backend, store) are 3.
func NATPMPResult(err error) uint16 {
	switch {
	case err == nil:
		return NATPMPSuccess
	case errors.Is(err, ErrQuota), errors.Is(err, ErrTableFull), errors.Is(err, ErrNoPortsAvailable):
		return NATPMPOutOfResources
	case errors.Is(err, ErrNotAuthorized), errors.Is(err, ErrConflict), errors.Is(err, ErrReservedPort),
		errors.Is(err, ErrInvalidArgs), errors.Is(err, ErrWildcardInternalPort),
		errors.Is(err, ErrWildcardExternalPort), errors.Is(err, ErrRemoteHostNotSupported):
		return NATPMPNotAuthorized
	}
	return NATPMPNetworkFailure
}

// PCP result codes (RFC 6887 section 7.4).
const (
	PCPSuccess               = 0
	PCPUnsuppVersion         = 1
	PCPNotAuthorized         = 2
	PCPMalformedRequest      = 3
	PCPUnsuppOpcode          = 4
	PCPUnsuppOption          = 5
	PCPMalformedOption       = 6
	PCPNetworkFailure        = 7
	PCPNoResources           = 8
	PCPUnsuppProtocol        = 9
	PCPUserExQuota           = 10
	PCPCannotProvideExternal = 11
	PCPAddressMismatch       = 12
	PCPExcessiveRemotePeers  = 13
)

// PCPResult returns the PCP result code for err. ErrConflict and
// ErrReservedPort only reach a PCP client that set PREFER_FAILURE (without
// it the adapter uses AddAny), hence CANNOT_PROVIDE_EXTERNAL. A delete of a
// mapping that does not exist is a success in PCP (RFC 6887 section 15);
// the adapter answers it before asking for a code.
func PCPResult(err error) uint8 {
	switch {
	case err == nil:
		return PCPSuccess
	case errors.Is(err, ErrQuota):
		return PCPUserExQuota
	case errors.Is(err, ErrTableFull), errors.Is(err, ErrNoPortsAvailable):
		return PCPNoResources
	case errors.Is(err, ErrConflict), errors.Is(err, ErrReservedPort):
		return PCPCannotProvideExternal
	case errors.Is(err, ErrNotAuthorized):
		return PCPNotAuthorized
	case errors.Is(err, ErrRemoteHostNotSupported):
		return PCPUnsuppOption
	case errors.Is(err, ErrInvalidArgs), errors.Is(err, ErrWildcardInternalPort),
		errors.Is(err, ErrWildcardExternalPort), errors.Is(err, ErrInconsistentRange):
		return PCPMalformedRequest
	}
	return PCPNetworkFailure
}

// ctxErr wraps a context error from a wait so that it says what was waited
// for; errors.Is still finds context.Canceled or DeadlineExceeded.
func ctxErr(err error, what string) error {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return fmt.Errorf("gateway: gave up waiting for %s: %w", what, err)
	}
	return err
}
