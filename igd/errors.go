package igd

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/portfwd/portfwd/upnp"
)

// UPnP error codes returned by WANIPConnection and WANPPPConnection services,
// as numbered by UPnP Device Architecture (4xx, 5xx, 6xx) and the
// WANIPConnection v1 and v2 service templates (7xx). A fault carrying one of
// them arrives as an *upnp.Error; read its code with upnp.ErrorCode.
const (
	// CodeInvalidAction: the service has no action of that name. An IGDv1
	// service answers it to the v2-only actions.
	CodeInvalidAction = 401
	// CodeInvalidArgs: an argument is missing, malformed or out of range.
	// Several routers also use it for an index past the end of the mapping
	// table, and for lease durations they do not support.
	CodeInvalidArgs = 402
	// CodeActionFailed: the action failed for a reason the device does not
	// name. Some routers answer it at the end of the mapping table.
	CodeActionFailed = 501
	// CodeOptionalActionNotImplemented: the device chose not to implement
	// an optional action.
	CodeOptionalActionNotImplemented = 602
	// CodeActionNotAuthorized: the control point may not perform the action,
	// typically on a mapping owned by another host or while the router's
	// UPnP "allow changes" setting is off.
	CodeActionNotAuthorized = 606
	// CodeSpecifiedArrayIndexInvalid: GetGenericPortMappingEntry was given an
	// index past the end of the table; it marks the end of a listing.
	CodeSpecifiedArrayIndexInvalid = 713
	// CodeNoSuchEntryInArray: no mapping exists for the given remote host,
	// external port and protocol.
	CodeNoSuchEntryInArray = 714
	// CodeWildCardNotPermittedInSrcIP: the remote host may not be a
	// wildcard (empty) on this router.
	CodeWildCardNotPermittedInSrcIP = 715
	// CodeWildCardNotPermittedInExtPort: the external port may not be a
	// wildcard (0).
	CodeWildCardNotPermittedInExtPort = 716
	// CodeConflictInMappingEntry: the external port is already mapped, to
	// another internal client.
	CodeConflictInMappingEntry = 718
	// CodeSamePortValuesRequired: the router only maps an external port to
	// the same internal port.
	CodeSamePortValuesRequired = 724
	// CodeOnlyPermanentLeasesSupported: the router only accepts a lease
	// duration of 0 (permanent).
	CodeOnlyPermanentLeasesSupported = 725
	// CodeRemoteHostOnlySupportsWildcard: the router cannot restrict a
	// mapping to one remote host; the remote host must be empty.
	CodeRemoteHostOnlySupportsWildcard = 726
	// CodeExternalPortOnlySupportsWildcard: the router only accepts a
	// wildcard (0) external port.
	CodeExternalPortOnlySupportsWildcard = 727
	// CodeNoPortMapsAvailable: the router has no free ports or table slots
	// left (IGDv2).
	CodeNoPortMapsAvailable = 728
	// CodeConflictWithOtherMechanisms: the port is in use by something else
	// on the router, such as a static forward or its own services (IGDv2).
	CodeConflictWithOtherMechanisms = 729
	// CodePortMappingNotFound: no mapping exists in the requested port range
	// (IGDv2 GetListOfPortMappings, DeletePortMappingRange).
	CodePortMappingNotFound = 730
	// CodeWildCardNotPermittedInIntPort: the internal port may not be a
	// wildcard (0) (IGDv2).
	CodeWildCardNotPermittedInIntPort = 732
	// CodeInconsistentParameters: the arguments contradict each other, such
	// as a start port above the end port (IGDv2).
	CodeInconsistentParameters = 733
)

// CodeName returns the name the UPnP specifications give code, such as
// "ConflictInMappingEntry", or "" for a code they do not define.
func CodeName(code int) string {
	switch code {
	case CodeInvalidAction:
		return "InvalidAction"
	case CodeInvalidArgs:
		return "InvalidArgs"
	case CodeActionFailed:
		return "ActionFailed"
	case CodeOptionalActionNotImplemented:
		return "OptionalActionNotImplemented"
	case CodeActionNotAuthorized:
		return "ActionNotAuthorized"
	case CodeSpecifiedArrayIndexInvalid:
		return "SpecifiedArrayIndexInvalid"
	case CodeNoSuchEntryInArray:
		return "NoSuchEntryInArray"
	case CodeWildCardNotPermittedInSrcIP:
		return "WildCardNotPermittedInSrcIP"
	case CodeWildCardNotPermittedInExtPort:
		return "WildCardNotPermittedInExtPort"
	case CodeConflictInMappingEntry:
		return "ConflictInMappingEntry"
	case CodeSamePortValuesRequired:
		return "SamePortValuesRequired"
	case CodeOnlyPermanentLeasesSupported:
		return "OnlyPermanentLeasesSupported"
	case CodeRemoteHostOnlySupportsWildcard:
		return "RemoteHostOnlySupportsWildcard"
	case CodeExternalPortOnlySupportsWildcard:
		return "ExternalPortOnlySupportsWildcard"
	case CodeNoPortMapsAvailable:
		return "NoPortMapsAvailable"
	case CodeConflictWithOtherMechanisms:
		return "ConflictWithOtherMechanisms"
	case CodePortMappingNotFound:
		return "PortMappingNotFound"
	case CodeWildCardNotPermittedInIntPort:
		return "WildCardNotPermittedInIntPort"
	case CodeInconsistentParameters:
		return "InconsistentParameters"
	}
	return FirewallCode(code).Name()
}

// codeAdvice is the sentence Explain gives for a UPnP error code: what the
// router meant, then what the user can do about it.
func codeAdvice(code int) string {
	switch code {
	case CodeInvalidAction:
		return "The router does not support this operation (its UPnP service has no such action)."
	case CodeInvalidArgs:
		return "The router rejected the request's arguments; check the ports (1-65535), the internal address (an IPv4 address on your LAN) and try a lease of 0 (permanent)."
	case CodeActionFailed:
		return "The router failed to carry out the request without saying why; try again, and if it persists check the router's UPnP page or restart it."
	case CodeOptionalActionNotImplemented:
		return "The router does not implement this optional operation."
	case CodeActionNotAuthorized:
		return "The router refused permission; enable \"allow UPnP changes\" (or similar) in its admin page, and note that many routers only let a computer change its own mappings."
	case CodeSpecifiedArrayIndexInvalid:
		return "The router has no mapping at that position in its table."
	case CodeNoSuchEntryInArray:
		return "The router has no such mapping; list the mappings to see what exists."
	case CodeWildCardNotPermittedInSrcIP:
		return "The router requires a specific remote host; give one."
	case CodeWildCardNotPermittedInExtPort:
		return "The router requires a specific external port; give one instead of 0."
	case CodeConflictInMappingEntry:
		return "The external port is already mapped to another computer; choose another external port, or delete the existing mapping first."
	case CodeSamePortValuesRequired:
		return "The router only maps a port to the same port number; use the same external and internal port."
	case CodeOnlyPermanentLeasesSupported:
		return "The router only accepts permanent mappings; use a lease of 0 and delete the mapping when you no longer need it."
	case CodeRemoteHostOnlySupportsWildcard:
		return "The router cannot restrict a mapping to one remote host; leave the remote host empty."
	case CodeExternalPortOnlySupportsWildcard:
		return "The router chooses the external port itself; ask for any port."
	case CodeNoPortMapsAvailable:
		return "The router has no free mapping slots or ports left; delete mappings you no longer need."
	case CodeConflictWithOtherMechanisms:
		return "The port is used by something else on the router (a static forward, its own remote administration, ...); choose another external port or change that setting."
	case CodePortMappingNotFound:
		return "The router has no mapping in that port range."
	case CodeWildCardNotPermittedInIntPort:
		return "The router requires a specific internal port; give one instead of 0."
	case CodeInconsistentParameters:
		return "The router found the arguments inconsistent; check that the start port is not above the end port."
	}
	if f, ok := firewallCodes[FirewallCode(code)]; ok {
		return capitalize(f[1]) + "."
	}
	return ""
}

// ErrNotSupported is returned for an operation that the selected service
// does not define: the IGDv2-only actions on a version 1 service, or
// GetCommonLinkProperties when the device has no WANCommonInterfaceConfig.
var ErrNotSupported = errors.New("igd: operation not supported by this router's UPnP service")

// ConflictError reports that AddPortMapping failed with 718
// (ConflictInMappingEntry) and names the mapping that holds the port, when
// the router would tell.
type ConflictError struct {
	// Wanted is the mapping that was asked for.
	Wanted PortMapping
	// Holder is the entry that holds the external port; valid when
	// HolderKnown.
	Holder      PortMapping
	HolderKnown bool
	// Free is true when the router, asked who holds the port
	// (GetSpecificPortMappingEntry), said nobody (714): the 718 was about
	// something else than a mapping in the way. miniupnpd in secure mode
	// answers 718 to a host that asks for a mapping to another host.
	Free bool
	// Err is the router's fault.
	Err error
}

func (e *ConflictError) Error() string {
	port := fmt.Sprintf("%d/%s", e.Wanted.ExternalPort, e.Wanted.Protocol)
	if e.Free {
		return fmt.Sprintf("the router answered %d (ConflictInMappingEntry) for port %s, although no mapping holds that port", CodeConflictInMappingEntry, port)
	}
	if !e.HolderKnown {
		return fmt.Sprintf("the router answered %d: port %s is already mapped to another client", CodeConflictInMappingEntry, port)
	}
	s := fmt.Sprintf("the router answered %d: port %s is already mapped to %s", CodeConflictInMappingEntry, port,
		net.JoinHostPort(e.Holder.InternalClient, fmt.Sprint(e.Holder.InternalPort)))
	if e.Holder.Description != "" {
		s += fmt.Sprintf(" (%q)", e.Holder.Description)
	}
	return s
}

func (e *ConflictError) Unwrap() error { return e.Err }

// PartialError is returned with the entries read so far when a listing
// stopped for a reason other than reaching the end of the router's table:
// a network error, the context ending, a router that repeats itself, or
// the safety cap on the number of entries.
type PartialError struct {
	// Got is the number of entries returned alongside the error.
	Got int
	// Reason says why the listing stopped, for the user.
	Reason string
	// Err is the underlying error, if any.
	Err error
}

func (e *PartialError) Error() string {
	s := fmt.Sprintf("igd: listing incomplete after %d entries: %s", e.Got, e.Reason)
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *PartialError) Unwrap() error { return e.Err }

// EditError reports that EditMapping could not make the new mapping, and
// whether the old one was put back.
type EditError struct {
	// Old is the mapping that was being edited.
	Old PortMapping
	// Err is why the new mapping could not be made.
	Err error
	// Restored is true when the old mapping is in place again (or was
	// never removed). When false, RestoreErr says why it could not be put
	// back.
	Restored   bool
	RestoreErr error
}

func (e *EditError) Error() string {
	key := fmt.Sprintf("%d/%s", e.Old.ExternalPort, e.Old.Protocol)
	if e.Restored {
		return fmt.Sprintf("igd: could not change mapping %s (the old mapping is unchanged): %v", key, e.Err)
	}
	return fmt.Sprintf("igd: could not change mapping %s: %v; putting the old mapping back also failed, so it is gone: %v",
		key, e.Err, e.RestoreErr)
}

func (e *EditError) Unwrap() error { return e.Err }

// Explain returns a sentence for the user about err: what the router said
// and what to do about it. It knows the UPnP error codes above, the error
// types of this package, timeouts and refused connections; for anything
// else it returns err's own message.
func Explain(err error) string {
	if err == nil {
		return ""
	}
	// EditError first: it wraps the other kinds.
	var ee *EditError
	if errors.As(err, &ee) {
		inner := Explain(ee.Err)
		if ee.Restored {
			return inner + " The old mapping was kept."
		}
		why := "unknown error"
		if ee.RestoreErr != nil {
			why = ee.RestoreErr.Error()
		}
		return inner + " The old mapping could not be put back (" + why + "); add it again by hand."
	}
	var ce *ConflictError
	if errors.As(err, &ce) {
		msg := capitalize(ce.Error()) + ". "
		if ce.Free {
			return msg + "Routers answer so when they only let a host map ports to itself (UPnP \"secure mode\"), or when the port is used by the router itself; map the port from the host it should lead to, or choose another external port."
		}
		if ce.HolderKnown {
			return msg + "Choose another external port, or delete that mapping first if it is no longer needed."
		}
		return msg + codeAdvice(CodeConflictInMappingEntry)
	}
	var pe *PartialError
	if errors.As(err, &pe) {
		return fmt.Sprintf("Only %d mappings could be read (%s); the list shown may be incomplete. Try again, or check the router's own UPnP page.", pe.Got, pe.Reason)
	}
	if errors.Is(err, ErrNotSupported) {
		return "The router's UPnP service does not offer this operation (it may only speak IGD version 1)."
	}
	var fe *FirewallError
	if errors.As(err, &fe) {
		return capitalize(fe.Error()) + "."
	}
	var ue *upnp.Error
	if errors.As(err, &ue) {
		name := CodeName(ue.Code)
		if name == "" {
			name = ue.Description
		}
		head := fmt.Sprintf("The router answered %s with UPnP error %d", ue.Action, ue.Code)
		if name != "" {
			head += " (" + name + ")"
		}
		if advice := codeAdvice(ue.Code); advice != "" {
			return head + ". " + advice
		}
		return head + "."
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "The router did not answer in time; check that it is reachable and that UPnP is still enabled, then try again."
	}
	if errors.Is(err, context.Canceled) {
		return "The operation was cancelled."
	}
	var oe *net.OpError
	if errors.As(err, &oe) {
		why := oe.Op
		if oe.Err != nil {
			why = oe.Err.Error()
		}
		return "Could not reach the router's UPnP control URL (" + why + "); UPnP may have been turned off, or the router restarted. Run discovery again."
	}
	return capitalize(err.Error()) + "."
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
