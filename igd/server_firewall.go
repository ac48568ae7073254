package igd

import (
	"context"
	"errors"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/portfwd/portfwd/upnp"
)

// The gateway side of WANIPv6FirewallControl:1 (IGD:2), the service
// through which control points open IPv6 pinholes. It sits in the
// WANConnectionDevice beside WANIPConnection:2, and only on IGDv2: an
// IGDv1 description has no place for it (miniupnpd's force_igd_desc_v1
// drops it the same way), so an IGDv1 gateway offers IPv6 pinholes over
// PCP only.

// Where the firewall control service is served, and its ID, as miniupnpd
// names them.
const (
	WANIPv6FirewallControlSCPDPath    = "/WANIP6FC.xml"
	WANIPv6FirewallControlControlPath = "/ctl/IP6FCtl"
	WANIPv6FirewallControlEventPath   = "/evt/IP6FCtl"

	ServiceIDWANIPv6FirewallControl = "urn:upnp-org:serviceId:WANIPv6Firewall1"
)

// The error codes of WANIPv6FirewallControl:1 (FirewallCode). They
// reuse numbers WANIPConnection gives other names (704 is
// ConnectionSetupFailed there), so the server names them by service.
const (
	codePinholeSpaceExhausted             = int(PinholeSpaceExhausted)
	codeFirewallDisabled                  = int(FirewallDisabled)
	codeInboundPinholeNotAllowed          = int(InboundPinholeNotAllowed)
	codeNoSuchEntry                       = int(NoSuchEntry)
	codeProtocolNotSupported              = int(ProtocolNotSupported)
	codeInternalPortWildcardingNotAllowed = int(InternalPortWildcardingNotAllowed)
	codeProtocolWildcardingNotAllowed     = int(ProtocolWildcardingNotAllowed)
	codeWildCardNotPermittedInSrcIP6      = int(WildCardNotPermittedInSrcIP)
	codeNoTrafficReceived                 = int(NoTrafficReceived)
)

// firewallFaultText is the errorDescription of a code of the service: its
// name in the spec for 701-709, UDA's for the generic ones.
func firewallFaultText(code int) string {
	if n := FirewallCode(code).Name(); n != "" {
		return n
	}
	return faultText(code)
}

func fwFault(code int) error {
	return &upnp.Error{Code: code, Description: firewallFaultText(code)}
}

// FirewallService answers the WANIPv6FirewallControl:1 actions; see
// ServerConfig.FirewallControl. client is the TCP peer, as for Service.
//
// The server hands it a Pinhole it validated: RemoteHost the zero Addr
// (any) or an IPv6 address; RemotePort 0 for any; InternalClient an IPv6
// address, not v4-mapped, without zone (whether it is the client's own,
// the gateway's, link-local... is the service's to decide); InternalPort
// not 0 and Protocol 6 or 17 in AddPinhole (in GetOutboundPinholeTimeout
// any port, and any protocol but 65535); Lease 1s to 86400s in
// AddPinhole, 0 in GetOutboundPinholeTimeout.
// Errors carry their UPnP code as an *upnp.Error, as for Service; the
// codes of this service (701 to 709) are described by their names here.
type FirewallService interface {
	// FirewallStatus reports whether the gateway filters inbound IPv6
	// (false: every pinhole action answers 702, since everything is open
	// already) and whether clients may open pinholes (false: 703).
	FirewallStatus(ctx context.Context) (enabled, inboundPinholeAllowed bool)
	// OutboundPinholeTimeout returns how long the firewall keeps an idle
	// outbound flow of p's kind.
	OutboundPinholeTimeout(ctx context.Context, client netip.Addr, p Pinhole) (time.Duration, error)
	// AddPinhole opens p for p.Lease (1s to 86400s), or renews the
	// pinhole with p's 5-tuple, and returns its unique ID.
	AddPinhole(ctx context.Context, client netip.Addr, p Pinhole) (id uint16, err error)
	// UpdatePinhole sets pinhole id's lease (1s to 86400s).
	UpdatePinhole(ctx context.Context, client netip.Addr, id uint16, lease time.Duration) error
	// DeletePinhole closes pinhole id.
	DeletePinhole(ctx context.Context, client netip.Addr, id uint16) error
	// PinholePackets returns how many packets went through pinhole id;
	// counted is false when the firewall cannot count them, which
	// CheckPinholeWorking then answers 709.
	PinholePackets(ctx context.Context, client netip.Addr, id uint16) (packets uint64, counted bool, err error)
}

// The actions of WANIPv6FirewallControl:1, all of them, required and
// optional, in the SCPD's order.
var firewallActions = []actionDef{
	{"GetFirewallStatus", (*Server).getFirewallStatus},
	{"GetOutboundPinholeTimeout", (*Server).getOutboundPinholeTimeout},
	{"AddPinhole", (*Server).addPinhole},
	{"UpdatePinhole", (*Server).updatePinhole},
	{"DeletePinhole", (*Server).deletePinhole},
	{"GetPinholePackets", (*Server).getPinholePackets},
	{"CheckPinholeWorking", (*Server).checkPinholeWorking},
}

var firewallServiceDef = serviceDef{
	name: "WANIPv6FirewallControl", version: 1, id: ServiceIDWANIPv6FirewallControl,
	scpdPath: WANIPv6FirewallControlSCPDPath, controlPath: WANIPv6FirewallControlControlPath, eventPath: WANIPv6FirewallControlEventPath,
	minIGD: 2, maxIGD: 2, scpd: scpdWANIPv6FirewallControl1, actions: firewallActions,
	evented: []string{"FirewallEnabled", "InboundPinholeAllowed"},
}

// Protocol numbers of the service.
const (
	protoWildcard = ProtoAny
	protoTCP      = ProtoTCP
	protoUDP      = ProtoUDP
)

// status answers 702 or 703 when the firewall state forbids pinhole
// actions, as miniupnpd's and Orange's servers check first.
func (s *Server) fwStatus(ctx context.Context, inbound bool) error {
	enabled, allowed := s.fw.FirewallStatus(ctx)
	if !enabled {
		return fwFault(codeFirewallDisabled)
	}
	if inbound && !allowed {
		return fwFault(codeInboundPinholeNotAllowed)
	}
	return nil
}

func (s *Server) getFirewallStatus(ctx context.Context, _ *call) (upnp.Args, error) {
	enabled, allowed := s.fw.FirewallStatus(ctx)
	return upnp.Args{
		{Name: "FirewallEnabled", Value: boolArg(enabled)},
		{Name: "InboundPinholeAllowed", Value: boolArg(allowed)},
	}, nil
}

func boolArg(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// fwUI2 reads a required ui2 argument of the service, decimal digits only.
func (c *call) fwUI2(name string) (uint16, error) {
	v, err := c.required(name)
	if err != nil {
		return 0, err
	}
	n, ok := decimal(v, 0xffff)
	if !ok {
		return 0, fwFault(CodeInvalidArgs)
	}
	return uint16(n), nil
}

// decimal reads v (spaces trimmed) as a decimal number up to max: no sign,
// no base prefix, no empty string.
func decimal(v string, max uint64) (uint64, bool) {
	v = strings.TrimSpace(v)
	if v == "" || len(v) > 20 || strings.TrimLeft(v, "0123456789") != "" {
		return 0, false
	}
	n, err := strconv.ParseUint(v, 10, 64)
	return n, err == nil && n <= max
}

// ipv6Arg reads an IPv6 literal: canonical or not, upper case or not, but
// no zone, no IPv4 (dotted or v4-mapped) and no host name, which the
// gateway does not resolve on a LAN host's say-so (miniupnpd does).
func ipv6Arg(v string) (netip.Addr, bool) {
	v = strings.TrimSpace(v)
	v = strings.TrimSuffix(strings.TrimPrefix(v, "["), "]")
	a, err := netip.ParseAddr(v)
	if err != nil || !a.Is6() || a.Is4In6() || a.Zone() != "" {
		return netip.Addr{}, false
	}
	return a, true
}

// pinholeArgs reads the 5-tuple, in the order of the checks documented in
// docs/gateway.md (the codes a request with two faults gets are not
// something clients depend on, but they are fixed and tested):
// RemoteHost (402), RemotePort (402), InternalClient ("" or "*": 708;
// not an IPv6 literal: 402), InternalPort (402; 0: 706 when forAdd),
// Protocol (402; 65535: 707; other than 6 or 17: 705 when forAdd). An
// absent argument is 402, except RemoteHost, which is the wildcard.
func (c *call) pinholeArgs(forAdd bool) (Pinhole, error) {
	var p Pinhole
	rh, _ := c.arg("RemoteHost")
	if rh = strings.TrimSpace(rh); rh != "" && rh != "*" {
		a, ok := ipv6Arg(rh)
		if !ok {
			return p, fwFault(CodeInvalidArgs)
		}
		if !a.IsUnspecified() { // "::" is read as the wildcard too
			p.RemoteHost = a
		}
	}
	var err error
	if p.RemotePort, err = c.fwUI2("RemotePort"); err != nil {
		return p, err
	}
	ic, err := c.required("InternalClient")
	if err != nil {
		return p, err
	}
	if ic = strings.TrimSpace(ic); ic == "" || ic == "*" {
		return p, fwFault(codeWildCardNotPermittedInSrcIP6)
	}
	a, ok := ipv6Arg(ic)
	if !ok {
		return p, fwFault(CodeInvalidArgs)
	}
	if a.IsUnspecified() {
		return p, fwFault(codeWildCardNotPermittedInSrcIP6)
	}
	p.InternalClient = a
	if p.InternalPort, err = c.fwUI2("InternalPort"); err != nil {
		return p, err
	}
	if forAdd && p.InternalPort == 0 {
		return p, fwFault(codeInternalPortWildcardingNotAllowed)
	}
	if p.Protocol, err = c.fwUI2("Protocol"); err != nil {
		return p, err
	}
	if p.Protocol == protoWildcard {
		return p, fwFault(codeProtocolWildcardingNotAllowed)
	}
	if forAdd && p.Protocol != protoTCP && p.Protocol != protoUDP {
		return p, fwFault(codeProtocolNotSupported)
	}
	return p, nil
}

// leaseArg reads a lease of 1 to 86400 seconds; anything else is 402.
func (c *call) leaseArg(name string) (time.Duration, error) {
	v, err := c.required(name)
	if err != nil {
		return 0, err
	}
	n, ok := decimal(v, 86400)
	if !ok || n == 0 {
		return 0, fwFault(CodeInvalidArgs)
	}
	return time.Duration(n) * time.Second, nil
}

// uniqueID reads UniqueID: a ui2. ID 0 is never given out, so it is
// answered 704 like any unknown ID, by the service.
func (c *call) uniqueID() (uint16, error) { return c.fwUI2("UniqueID") }

func (s *Server) getOutboundPinholeTimeout(ctx context.Context, c *call) (upnp.Args, error) {
	if err := s.fwStatus(ctx, false); err != nil {
		return nil, err
	}
	p, err := c.pinholeArgs(false)
	if err != nil {
		return nil, err
	}
	d, err := s.fw.OutboundPinholeTimeout(ctx, c.client, p)
	if err != nil {
		return nil, err
	}
	return upnp.Args{{Name: "OutboundPinholeTimeout", Value: seconds(d)}}, nil
}

func (s *Server) addPinhole(ctx context.Context, c *call) (upnp.Args, error) {
	if err := s.fwStatus(ctx, true); err != nil {
		return nil, err
	}
	p, err := c.pinholeArgs(true)
	if err != nil {
		return nil, err
	}
	if p.Lease, err = c.leaseArg("LeaseTime"); err != nil {
		return nil, err
	}
	id, err := s.fw.AddPinhole(ctx, c.client, p)
	if err != nil {
		return nil, err
	}
	return upnp.Args{{Name: "UniqueID", Value: strconv.Itoa(int(id))}}, nil
}

func (s *Server) updatePinhole(ctx context.Context, c *call) (upnp.Args, error) {
	if err := s.fwStatus(ctx, true); err != nil {
		return nil, err
	}
	id, err := c.uniqueID()
	if err != nil {
		return nil, err
	}
	lease, err := c.leaseArg("NewLeaseTime")
	if err != nil {
		return nil, err
	}
	return nil, s.fw.UpdatePinhole(ctx, c.client, id, lease)
}

func (s *Server) deletePinhole(ctx context.Context, c *call) (upnp.Args, error) {
	if err := s.fwStatus(ctx, true); err != nil {
		return nil, err
	}
	id, err := c.uniqueID()
	if err != nil {
		return nil, err
	}
	return nil, s.fw.DeletePinhole(ctx, c.client, id)
}

func (s *Server) getPinholePackets(ctx context.Context, c *call) (upnp.Args, error) {
	if err := s.fwStatus(ctx, true); err != nil {
		return nil, err
	}
	id, err := c.uniqueID()
	if err != nil {
		return nil, err
	}
	n, _, err := s.fw.PinholePackets(ctx, c.client, id)
	if err != nil {
		return nil, err
	}
	return upnp.Args{{Name: "PinholePackets", Value: ui4(n)}}, nil
}

// checkPinholeWorking answers IsWorking 1 once packets went through, and
// 709 NoTrafficReceived before that or when the firewall cannot count:
// the spec's "cannot tell yet", never a false 0.
func (s *Server) checkPinholeWorking(ctx context.Context, c *call) (upnp.Args, error) {
	if err := s.fwStatus(ctx, true); err != nil {
		return nil, err
	}
	id, err := c.uniqueID()
	if err != nil {
		return nil, err
	}
	n, counted, err := s.fw.PinholePackets(ctx, c.client, id)
	if err != nil {
		return nil, err
	}
	if !counted || n == 0 {
		return nil, fwFault(codeNoTrafficReceived)
	}
	return upnp.Args{{Name: "IsWorking", Value: "1"}}, nil
}

// firewallFaultFor is faultFor for this service: the same rules, with the
// service's own descriptions of 701 to 709.
func (s *Server) firewallFaultFor(action string, client netip.Addr, err error) (int, string) {
	var ue *upnp.Error
	if errors.As(err, &ue) && ue.Code >= 400 && ue.Code < 900 {
		s.log.Debug("igd: SOAP action refused", "action", action, "client", client, "code", ue.Code, "err", err)
		return ue.Code, firewallFaultText(ue.Code)
	}
	return s.faultFor(action, client, err)
}

const scpdWANIPv6FirewallControl1 = scpdHead + `<actionList>
<action><name>GetFirewallStatus</name><argumentList>
<argument><name>FirewallEnabled</name><direction>out</direction><relatedStateVariable>FirewallEnabled</relatedStateVariable></argument>
<argument><name>InboundPinholeAllowed</name><direction>out</direction><relatedStateVariable>InboundPinholeAllowed</relatedStateVariable></argument>
</argumentList></action>
<action><name>GetOutboundPinholeTimeout</name><argumentList>
<argument><name>RemoteHost</name><direction>in</direction><relatedStateVariable>A_ARG_TYPE_IPv6Address</relatedStateVariable></argument>
<argument><name>RemotePort</name><direction>in</direction><relatedStateVariable>A_ARG_TYPE_Port</relatedStateVariable></argument>
<argument><name>InternalClient</name><direction>in</direction><relatedStateVariable>A_ARG_TYPE_IPv6Address</relatedStateVariable></argument>
<argument><name>InternalPort</name><direction>in</direction><relatedStateVariable>A_ARG_TYPE_Port</relatedStateVariable></argument>
<argument><name>Protocol</name><direction>in</direction><relatedStateVariable>A_ARG_TYPE_Protocol</relatedStateVariable></argument>
<argument><name>OutboundPinholeTimeout</name><direction>out</direction><relatedStateVariable>A_ARG_TYPE_OutboundPinholeTimeout</relatedStateVariable></argument>
</argumentList></action>
<action><name>AddPinhole</name><argumentList>
<argument><name>RemoteHost</name><direction>in</direction><relatedStateVariable>A_ARG_TYPE_IPv6Address</relatedStateVariable></argument>
<argument><name>RemotePort</name><direction>in</direction><relatedStateVariable>A_ARG_TYPE_Port</relatedStateVariable></argument>
<argument><name>InternalClient</name><direction>in</direction><relatedStateVariable>A_ARG_TYPE_IPv6Address</relatedStateVariable></argument>
<argument><name>InternalPort</name><direction>in</direction><relatedStateVariable>A_ARG_TYPE_Port</relatedStateVariable></argument>
<argument><name>Protocol</name><direction>in</direction><relatedStateVariable>A_ARG_TYPE_Protocol</relatedStateVariable></argument>
<argument><name>LeaseTime</name><direction>in</direction><relatedStateVariable>A_ARG_TYPE_LeaseTime</relatedStateVariable></argument>
<argument><name>UniqueID</name><direction>out</direction><relatedStateVariable>A_ARG_TYPE_UniqueID</relatedStateVariable></argument>
</argumentList></action>
<action><name>UpdatePinhole</name><argumentList>
<argument><name>UniqueID</name><direction>in</direction><relatedStateVariable>A_ARG_TYPE_UniqueID</relatedStateVariable></argument>
<argument><name>NewLeaseTime</name><direction>in</direction><relatedStateVariable>A_ARG_TYPE_LeaseTime</relatedStateVariable></argument>
</argumentList></action>
<action><name>DeletePinhole</name><argumentList>
<argument><name>UniqueID</name><direction>in</direction><relatedStateVariable>A_ARG_TYPE_UniqueID</relatedStateVariable></argument>
</argumentList></action>
<action><name>GetPinholePackets</name><argumentList>
<argument><name>UniqueID</name><direction>in</direction><relatedStateVariable>A_ARG_TYPE_UniqueID</relatedStateVariable></argument>
<argument><name>PinholePackets</name><direction>out</direction><relatedStateVariable>A_ARG_TYPE_PinholePackets</relatedStateVariable></argument>
</argumentList></action>
<action><name>CheckPinholeWorking</name><argumentList>
<argument><name>UniqueID</name><direction>in</direction><relatedStateVariable>A_ARG_TYPE_UniqueID</relatedStateVariable></argument>
<argument><name>IsWorking</name><direction>out</direction><relatedStateVariable>A_ARG_TYPE_Boolean</relatedStateVariable></argument>
</argumentList></action>
</actionList>
<serviceStateTable>
<stateVariable sendEvents="yes"><name>FirewallEnabled</name><dataType>boolean</dataType></stateVariable>
<stateVariable sendEvents="yes"><name>InboundPinholeAllowed</name><dataType>boolean</dataType></stateVariable>
<stateVariable sendEvents="no"><name>A_ARG_TYPE_OutboundPinholeTimeout</name><dataType>ui4</dataType></stateVariable>
<stateVariable sendEvents="no"><name>A_ARG_TYPE_IPv6Address</name><dataType>string</dataType></stateVariable>
<stateVariable sendEvents="no"><name>A_ARG_TYPE_Port</name><dataType>ui2</dataType></stateVariable>
<stateVariable sendEvents="no"><name>A_ARG_TYPE_Protocol</name><dataType>ui2</dataType></stateVariable>
<stateVariable sendEvents="no"><name>A_ARG_TYPE_LeaseTime</name><dataType>ui4</dataType><allowedValueRange>
<minimum>1</minimum><maximum>86400</maximum>
</allowedValueRange></stateVariable>
<stateVariable sendEvents="no"><name>A_ARG_TYPE_UniqueID</name><dataType>ui2</dataType></stateVariable>
<stateVariable sendEvents="no"><name>A_ARG_TYPE_PinholePackets</name><dataType>ui4</dataType></stateVariable>
<stateVariable sendEvents="no"><name>A_ARG_TYPE_Boolean</name><dataType>boolean</dataType></stateVariable>
</serviceStateTable>
</scpd>
`
