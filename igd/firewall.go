package igd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/portfwd/portfwd/upnp"
)

// WANIPv6FirewallControl:1 (UPnP IGD:2) opens pinholes: inbound IPv6
// firewall rules to a LAN host's own address. There is no NAT on IPv6, so a
// pinhole has no external port; the router names each pinhole by a 16-bit
// UniqueID it chooses, and has no action to list pinholes or read one
// back: a client must remember what it opened.

// ServiceWANIPv6FirewallControl is the service type of IGD:2's IPv6
// firewall control.
const ServiceWANIPv6FirewallControl = "urn:schemas-upnp-org:service:WANIPv6FirewallControl:1"

// IANA protocol numbers, as WANIPv6FirewallControl carries them (it takes
// a number, not "TCP").
const (
	ProtoTCP     uint16 = 6
	ProtoUDP     uint16 = 17
	ProtoUDPLite uint16 = 136
	// ProtoAny is the spec's wildcard; AddPinhole refuses it (707).
	ProtoAny uint16 = 65535
)

// Lease bounds of a pinhole: the spec's allowedValueRange of
// A_ARG_TYPE_LeaseTime, 1 to 86400 seconds.
const (
	MinPinholeLease = time.Second
	MaxPinholeLease = 86400 * time.Second
)

// FirewallCode is a WANIPv6FirewallControl error code. Each is an error
// whose message is one sentence for the user, so that
// errors.Is(err, igd.NoSuchEntry) tests what a router answered.
type FirewallCode int

// The service's own error codes, 701 to 709 (606, 402 and 501 are the
// generic ones above).
const (
	// PinholeSpaceExhausted: the router has no room for another pinhole.
	PinholeSpaceExhausted FirewallCode = 701
	// FirewallDisabled: the router's IPv6 firewall is off, so inbound IPv6
	// is not filtered and a pinhole is meaningless.
	FirewallDisabled FirewallCode = 702
	// InboundPinholeNotAllowed: the firewall is on and its policy forbids
	// inbound pinholes.
	InboundPinholeNotAllowed FirewallCode = 703
	// NoSuchEntry: no pinhole has that UniqueID (it expired, was deleted,
	// or the router restarted).
	NoSuchEntry FirewallCode = 704
	// ProtocolNotSupported: the firewall cannot filter that protocol.
	ProtocolNotSupported FirewallCode = 705
	// InternalPortWildcardingNotAllowed: the internal port may not be 0.
	InternalPortWildcardingNotAllowed FirewallCode = 706
	// ProtocolWildcardingNotAllowed: the protocol may not be the wildcard
	// 65535.
	ProtocolWildcardingNotAllowed FirewallCode = 707
	// WildCardNotPermittedInSrcIP: the internal client (the inbound
	// packets' destination) may not be empty or a wildcard.
	WildCardNotPermittedInSrcIP FirewallCode = 708
	// NoTrafficReceived: CheckPinholeWorking cannot tell yet, because no
	// packet has gone through the pinhole. miniupnpd before 2.3.4 calls it
	// NoPacketSent, and answers it always.
	NoTrafficReceived FirewallCode = 709
)

var firewallCodes = map[FirewallCode][2]string{
	PinholeSpaceExhausted:             {"PinholeSpaceExhausted", "the router has no room for another pinhole; close pinholes you no longer need"},
	FirewallDisabled:                  {"FirewallDisabled", "the router's IPv6 firewall is off, so inbound IPv6 is not filtered and no pinhole is needed"},
	InboundPinholeNotAllowed:          {"InboundPinholeNotAllowed", "the router's IPv6 firewall forbids inbound pinholes; allow them in its settings"},
	NoSuchEntry:                       {"NoSuchEntry", "the router has no pinhole with that ID; it expired, was closed, or the router restarted"},
	ProtocolNotSupported:              {"ProtocolNotSupported", "the router's IPv6 firewall cannot open pinholes for that protocol; use TCP or UDP"},
	InternalPortWildcardingNotAllowed: {"InternalPortWildcardingNotAllowed", "a pinhole needs a specific port, not 0"},
	ProtocolWildcardingNotAllowed:     {"ProtocolWildcardingNotAllowed", "a pinhole needs a specific protocol; choose TCP or UDP"},
	WildCardNotPermittedInSrcIP:       {"WildCardNotPermittedInSrcIP", "a pinhole needs the internal host's IPv6 address, not a wildcard"},
	NoTrafficReceived:                 {"NoTrafficReceived", "no packet has gone through the pinhole yet, so the router cannot tell whether it works"},
}

// Name is the code's name in the spec, or "" for an unknown code.
func (c FirewallCode) Name() string { return firewallCodes[c][0] }

func (c FirewallCode) Error() string {
	if s, ok := firewallCodes[c]; ok {
		return s[1]
	}
	return fmt.Sprintf("UPnP error %d", int(c))
}

// FirewallError is a fault a WANIPv6FirewallControl action answered. It
// wraps the router's *upnp.Error and, for codes 701-709, the FirewallCode.
type FirewallError struct {
	Action string
	Code   int
	Fault  *upnp.Error
}

func (e *FirewallError) Error() string {
	head := fmt.Sprintf("the router answered %s with UPnP error %d", e.Action, e.Code)
	if n := CodeName(e.Code); n != "" {
		head += " (" + n + ")"
	}
	if e.Code == CodeActionNotAuthorized {
		// miniupnpd's secure mode, and the spec's advice for
		// unauthenticated control points.
		return head + ": routers open a pinhole only to the address the request comes from, and often only for ports 1024 and up"
	}
	if advice := codeAdvice(e.Code); advice != "" {
		return head + ": " + strings.TrimSuffix(lowerFirst(advice), ".")
	}
	return head
}

func (e *FirewallError) Unwrap() []error {
	errs := []error{e.Fault}
	if _, ok := firewallCodes[FirewallCode(e.Code)]; ok {
		errs = append(errs, FirewallCode(e.Code))
	}
	return errs
}

func lowerFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToLower(s[:1]) + s[1:]
}

// Pinhole is the 5-tuple of an inbound IPv6 firewall rule: traffic from
// RemoteHost:RemotePort (zero values: any) to InternalClient:InternalPort
// over Protocol.
type Pinhole struct {
	RemoteHost     netip.Addr // invalid: any remote host
	RemotePort     uint16     // 0: any remote port
	InternalClient netip.Addr
	InternalPort   uint16
	Protocol       uint16 // IANA number: ProtoTCP, ProtoUDP
	// Lease is AddPinhole's LeaseTime, 1 s to 86400 s.
	Lease time.Duration
}

func (p Pinhole) String() string {
	remote := "any"
	if p.RemoteHost.IsValid() || p.RemotePort != 0 {
		h := "*"
		if p.RemoteHost.IsValid() {
			h = p.RemoteHost.String()
		}
		remote = "[" + h + "]:" + strconv.Itoa(int(p.RemotePort))
	}
	return fmt.Sprintf("[%v]:%d/%s from %s", p.InternalClient, p.InternalPort, ProtoName(p.Protocol), remote)
}

// ProtoName names an IANA protocol number ("TCP", "UDP", "UDPLite", or
// the number).
func ProtoName(p uint16) string {
	switch p {
	case ProtoTCP:
		return "TCP"
	case ProtoUDP:
		return "UDP"
	case ProtoUDPLite:
		return "UDPLite"
	}
	return strconv.Itoa(int(p))
}

// FirewallClient calls the actions of one WANIPv6FirewallControl:1
// service.
//
// Talk to it over IPv6, from the address the pinhole is for: routers
// check that InternalClient is the SOAP request's source (miniupnpd
// answers 606 otherwise, and always over IPv4, whose source
// ::ffff:a.b.c.d can never match). Give SOAP an HTTP client whose dialer
// binds that address; portmap does.
type FirewallClient struct {
	SOAP        *upnp.Client
	ControlURL  string
	ServiceType string // ServiceWANIPv6FirewallControl when empty
	Logger      *slog.Logger
}

func (c *FirewallClient) call(ctx context.Context, action string, args upnp.Args) (upnp.Args, error) {
	st := c.ServiceType
	if st == "" {
		st = ServiceWANIPv6FirewallControl
	}
	cl := &Client{SOAP: c.SOAP, ControlURL: c.ControlURL, ServiceType: st, Logger: c.Logger}
	out, err := cl.call(ctx, action, args)
	if err != nil {
		var ue *upnp.Error
		if errors.As(err, &ue) {
			return nil, &FirewallError{Action: action, Code: ue.Code, Fault: ue}
		}
		return nil, fmt.Errorf("igd: %s: %w", action, err)
	}
	return out, nil
}

// FirewallStatus is GetFirewallStatus: whether the router filters inbound
// IPv6 at all, and whether it lets control points open pinholes.
func (c *FirewallClient) FirewallStatus(ctx context.Context) (enabled, pinholesAllowed bool, err error) {
	out, err := c.call(ctx, "GetFirewallStatus", nil)
	if err != nil {
		return false, false, err
	}
	return ParseFirewallStatus(out)
}

// ParseFirewallStatus reads GetFirewallStatus's answer.
func ParseFirewallStatus(out upnp.Args) (enabled, pinholesAllowed bool, err error) {
	if enabled, err = parseBool(argValue(out, "FirewallEnabled")); err != nil {
		return false, false, fmt.Errorf("igd: GetFirewallStatus: FirewallEnabled: %w", err)
	}
	if pinholesAllowed, err = parseBool(argValue(out, "InboundPinholeAllowed")); err != nil {
		return false, false, fmt.Errorf("igd: GetFirewallStatus: InboundPinholeAllowed: %w", err)
	}
	return enabled, pinholesAllowed, nil
}

// PinholeArgs are the arguments of AddPinhole (with lease) or
// GetOutboundPinholeTimeout (withLease false), in SCPD order. Addresses are
// in RFC 5952 form, the spelling miniupnpd 2.3.1 compares as a string with
// the sender's (it refuses "2001:DB8::2" from 2001:db8::2 with 606); an
// invalid RemoteHost is the wildcard "".
func PinholeArgs(p Pinhole, withLease bool) (upnp.Args, error) {
	if !p.InternalClient.IsValid() {
		return nil, fmt.Errorf("igd: a pinhole needs the internal client's IPv6 address: %w", WildCardNotPermittedInSrcIP)
	}
	if !p.InternalClient.Is6() || p.InternalClient.Is4In6() {
		return nil, fmt.Errorf("igd: pinhole internal client %v is not an IPv6 address", p.InternalClient)
	}
	if p.RemoteHost.IsValid() && (!p.RemoteHost.Is6() || p.RemoteHost.Is4In6()) {
		return nil, fmt.Errorf("igd: pinhole remote host %v is not an IPv6 address", p.RemoteHost)
	}
	if p.InternalPort == 0 {
		return nil, fmt.Errorf("igd: %w", InternalPortWildcardingNotAllowed)
	}
	if p.Protocol == ProtoAny || p.Protocol == 0 {
		return nil, fmt.Errorf("igd: %w", ProtocolWildcardingNotAllowed)
	}
	remote := ""
	if p.RemoteHost.IsValid() {
		remote = p.RemoteHost.WithZone("").String()
	}
	args := upnp.Args{
		{Name: "RemoteHost", Value: remote},
		{Name: "RemotePort", Value: strconv.Itoa(int(p.RemotePort))},
		{Name: "InternalClient", Value: p.InternalClient.WithZone("").String()},
		{Name: "InternalPort", Value: strconv.Itoa(int(p.InternalPort))},
		{Name: "Protocol", Value: strconv.Itoa(int(p.Protocol))},
	}
	if withLease {
		if p.Lease < MinPinholeLease || p.Lease > MaxPinholeLease {
			return nil, fmt.Errorf("igd: pinhole lease %v is outside the spec's 1s..24h", p.Lease)
		}
		args = append(args, upnp.Arg{Name: "LeaseTime", Value: formatSeconds(p.Lease)})
	}
	return args, nil
}

// ParseUniqueID reads a UniqueID (ui2) as routers write it.
func ParseUniqueID(s string) (uint16, error) {
	n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 16)
	if err != nil {
		return 0, fmt.Errorf("%q is not a number 0-65535", s)
	}
	return uint16(n), nil
}

// ParseUI4 reads an unsigned 32-bit value (PinholePackets,
// OutboundPinholeTimeout).
func ParseUI4(s string) (uint32, error) {
	n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 32)
	if err != nil {
		return 0, fmt.Errorf("%q is not a number 0-4294967295", s)
	}
	return uint32(n), nil
}

// AddPinhole opens a pinhole and returns the router's UniqueID for it. The
// spec makes it idempotent: the same 5-tuple again extends the existing
// pinhole's lease and returns its ID, which makes it the robust refresh
// after a router restart.
func (c *FirewallClient) AddPinhole(ctx context.Context, p Pinhole) (uint16, error) {
	args, err := PinholeArgs(p, true)
	if err != nil {
		return 0, err
	}
	return callFor(ctx, c.call, "AddPinhole", args, "UniqueID", ParseUniqueID)
}

// UpdatePinhole sets the remaining lease of pinhole id to lease (it does
// not add to it).
func (c *FirewallClient) UpdatePinhole(ctx context.Context, id uint16, lease time.Duration) error {
	if lease < MinPinholeLease || lease > MaxPinholeLease {
		return fmt.Errorf("igd: pinhole lease %v is outside the spec's 1s..24h", lease)
	}
	_, err := c.call(ctx, "UpdatePinhole", append(idArgs(id), upnp.Arg{Name: "NewLeaseTime", Value: formatSeconds(lease)}))
	return err
}

// DeletePinhole closes pinhole id.
func (c *FirewallClient) DeletePinhole(ctx context.Context, id uint16) error {
	_, err := c.call(ctx, "DeletePinhole", idArgs(id))
	return err
}

// PinholePackets is GetPinholePackets: how many packets went through
// pinhole id. miniupnpd's nftables backend has no counters and answers 0
// for any ID, existing or not.
func (c *FirewallClient) PinholePackets(ctx context.Context, id uint16) (uint32, error) {
	return callFor(ctx, c.call, "GetPinholePackets", idArgs(id), "PinholePackets", ParseUI4)
}

// idArgs are the arguments of the actions that name a pinhole by its ID.
func idArgs(id uint16) upnp.Args { return upnp.Args{{Name: "UniqueID", Value: strconv.Itoa(int(id))}} }

// CheckPinholeWorking asks whether traffic has gone through pinhole id.
// The answer 709 (NoTrafficReceived) is not a failure: it returns false
// and a nil error, since it means "not proven yet". miniupnpd's nftables
// backend always answers 709.
func (c *FirewallClient) CheckPinholeWorking(ctx context.Context, id uint16) (bool, error) {
	ok, err := callFor(ctx, c.call, "CheckPinholeWorking", idArgs(id), "IsWorking", parseBool)
	if errors.Is(err, NoTrafficReceived) {
		return false, nil
	}
	return ok, err
}

// OutboundPinholeTimeout is GetOutboundPinholeTimeout: how long the
// firewall keeps an idle outbound flow of that tuple open, so that an
// application can size its keep-alives. miniupnpd answers 501 always (it
// is a TODO in its source).
func (c *FirewallClient) OutboundPinholeTimeout(ctx context.Context, p Pinhole) (time.Duration, error) {
	args, err := PinholeArgs(p, false)
	if err != nil {
		return 0, err
	}
	n, err := callFor(ctx, c.call, "GetOutboundPinholeTimeout", args, "OutboundPinholeTimeout", ParseUI4)
	return time.Duration(n) * time.Second, err
}

// PinholeGone reports whether err, from UpdatePinhole, means the pinhole
// should be added again rather than given up on: 704, or what miniupnpd
// answers for an ID it does not have (402 in 2.3.1, 501 later, since its
// nftables lookup "finds" any ID), or 606 (after a router restart the ID
// may belong to another host's pinhole). AddPinhole with the same tuple is
// safe either way: the spec makes it return the existing pinhole.
func PinholeGone(err error) bool {
	switch upnp.ErrorCode(err) {
	case int(NoSuchEntry), CodeInvalidArgs, CodeActionFailed, CodeActionNotAuthorized:
		return true
	}
	return false
}
