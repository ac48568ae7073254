package natpmp

import (
	"errors"
	"fmt"
)

// ResultError is a gateway's refusal of a request: a reply whose result code
// is not Success. Retrieve it with errors.As to branch on Code; its message
// is written for the person running the program.
type ResultError struct {
	// Op is the opcode of the request that failed.
	Op   Opcode
	Code ResultCode
}

func (e *ResultError) Error() string {
	return fmt.Sprintf("natpmp: %s: %s (result %d)", e.Op, e.advice(), uint16(e.Code))
}

// advice says what the code means for the user and what they can do.
func (e *ResultError) advice() string {
	switch e.Code {
	case UnsupportedVersion:
		return "the router does not speak NAT-PMP version 0; it may only support PCP or UPnP, try those"
	case NotAuthorized:
		return "the router refused: NAT-PMP is disabled or this host is not allowed to map ports; enable NAT-PMP in the router's settings or allow this host"
	case NetworkFailure:
		return "the router has no external address yet (not connected?); check its Internet connection and try again"
	case OutOfResources:
		return "the router cannot create more mappings right now; remove unused mappings or try again later"
	case UnsupportedOpcode:
		return "the router does not support this request"
	case Success:
		return "success reported as an error (this is a bug in the caller)"
	}
	return "the router failed the request with a result code NAT-PMP does not define"
}

// Errors the client returns besides *ResultError. They are returned wrapped
// in a message naming the request and the gateway; test for them with
// errors.Is.
var (
	// ErrNoResponse: every attempt timed out. The gateway most likely does
	// not run NAT-PMP, or a firewall drops UDP port 5351.
	ErrNoResponse = errors.New("no reply from the gateway; it probably does not support NAT-PMP (enable it in the router, or try UPnP or PCP)")
	// ErrNotSupported: the gateway answered with ICMP port unreachable,
	// so nothing listens on its NAT-PMP port (RFC 6886 §3.1 and §3.8).
	ErrNotSupported = errors.New("the gateway does not run NAT-PMP (its NAT-PMP port is closed); enable it in the router, or try UPnP or PCP")
	// ErrNoExternalAddress: the gateway answered success with external
	// address 0.0.0.0, which routers do while they are not connected.
	ErrNoExternalAddress = errors.New("the router reports external address 0.0.0.0: it is not connected to the Internet yet; check its WAN connection")
)
