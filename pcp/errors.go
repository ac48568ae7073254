package pcp

import (
	"errors"
	"fmt"
	"time"
)

// ResultError is a server's refusal of a request: a response whose result
// code is not SUCCESS. Retrieve it with errors.As to branch on Code; its
// message is written for the person running the program.
type ResultError struct {
	// Op is the opcode of the request that failed.
	Op   Opcode
	Code ResultCode
	// Lifetime is how long the server says the same request will keep
	// failing (RFC 6887 §7.2): do not retry it sooner. 0 means the server
	// did not say; miniupnpd 2.3 sends 0 for every long lifetime error.
	Lifetime time.Duration
	// Version is the protocol version of the response. With
	// ResultUnsuppVersion it is the highest version the server speaks:
	// 0 is a NAT-PMP-only gateway, 1 a PCP draft implementation.
	Version uint8
}

func (e *ResultError) Error() string {
	return fmt.Sprintf("pcp: %s: %s (%s, result %d)", e.Op, e.advice(), e.Code, uint8(e.Code))
}

// Transient reports whether retrying later may succeed: the error is of the
// short lifetime kind (see ResultCode.ShortLifetime).
func (e *ResultError) Transient() bool { return e.Code.ShortLifetime() }

// advice says what the code means for the user and what they can do.
func (e *ResultError) advice() string {
	switch e.Code {
	case ResultUnsuppVersion:
		switch e.Version {
		case natpmpVersion:
			return "the router speaks NAT-PMP but not PCP; use NAT-PMP with it"
		case 1:
			return "the router speaks only a pre-standard draft of PCP (version 1); use NAT-PMP or UPnP with it, or update its firmware"
		}
		return fmt.Sprintf("the router does not speak PCP version %d (it answered with version %d); use NAT-PMP or UPnP with it", Version, e.Version)
	case ResultNotAuthorized:
		return "the router refused: PCP is disabled for this host, the port is not allowed, or the mapping belongs to another client " +
			"(a refresh or delete must carry the nonce of the request that made the mapping); allow this host and port in the router's settings, " +
			"or delete with the mapping's own nonce"
	case ResultMalformedRequest:
		return "the router could not parse the request; this is a bug in this program or in the router, please report it"
	case ResultUnsuppOpcode:
		return "the router does not support this kind of request"
	case ResultUnsuppOption:
		return "the router does not support (or does not permit) an option the request needs, such as FILTER or THIRD_PARTY; retry without it"
	case ResultMalformedOption:
		return "the router rejected an option of the request as malformed; this is a bug in this program or in the router, please report it"
	case ResultNetworkFailure:
		return "the router has no working Internet connection (no external address yet?); check its WAN side and try again"
	case ResultNoResources:
		return "the router cannot create more mappings right now; remove unused mappings or try again later"
	case ResultUnsuppProtocol:
		return "the router cannot map this transport protocol; use TCP or UDP"
	case ResultUserExQuota:
		return "this host already has as many mappings as the router allows; remove some and try again"
	case ResultCannotProvideExternal:
		return "the router cannot give the requested external port or address (taken, or not allowed), and the request asked not to get another one; " +
			"suggest another port, or allow any"
	case ResultAddressMismatch:
		return "the PCP server sees this request coming from another address than the one in it: there is another NAT between this host and the router; " +
			"a mapping on this router would not reach this host. Map the port on the outer router too, or put the inner router in bridge mode " +
			"(if the client address was set by hand, check it)"
	case ResultExcessiveRemotePeers:
		return "the router cannot install that many FILTER options for one mapping; send fewer"
	case ResultSuccess:
		return "success reported as an error (this is a bug in the caller)"
	}
	return "the router failed the request with a result code PCP does not define"
}

// Errors the client returns besides *ResultError. They are returned wrapped
// in a message naming the request and the gateway; test for them with
// errors.Is.
var (
	// ErrNoResponse: every attempt timed out. The gateway most likely does
	// not run PCP, or a firewall drops UDP port 5351.
	ErrNoResponse = errors.New("no reply from the gateway; it probably does not support PCP (enable it in the router, or try NAT-PMP or UPnP)")
	// ErrNotSupported: the gateway answered with ICMP port unreachable:
	// nothing listens on its PCP port.
	ErrNotSupported = errors.New("the gateway does not run PCP (its port 5351 is closed); enable PCP in the router, or try UPnP")
	// ErrMismatchedReply: the server answered with a success that does not
	// fit the request (no external port for a mapping of a port, say).
	ErrMismatchedReply = errors.New("the router's reply does not fit the request; try again, and report the router model if it persists")
)
