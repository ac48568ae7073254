package igd

import (
	"context"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/portfwd/portfwd/upnp"
)

// Paths the server serves. The names follow miniupnpd's, which control
// points have met for twenty years.
const (
	DescriptionPath = "/rootDesc.xml"

	WANIPConnectionSCPDPath    = "/WANIPCn.xml"
	WANIPConnectionControlPath = "/ctl/IPConn"
	WANIPConnectionEventPath   = "/evt/IPConn"

	WANCommonInterfaceConfigSCPDPath    = "/WANCfg.xml"
	WANCommonInterfaceConfigControlPath = "/ctl/CmnIfCfg"
	WANCommonInterfaceConfigEventPath   = "/evt/CmnIfCfg"

	Layer3ForwardingSCPDPath    = "/L3F.xml"
	Layer3ForwardingControlPath = "/ctl/L3F"
	Layer3ForwardingEventPath   = "/evt/L3F"
)

// Service IDs, as the IGD device templates name the first instance of each
// service.
const (
	ServiceIDWANIPConnection          = "urn:upnp-org:serviceId:WANIPConn1"
	ServiceIDWANCommonInterfaceConfig = "urn:upnp-org:serviceId:WANCommonIFC1"
	ServiceIDLayer3Forwarding         = "urn:upnp-org:serviceId:L3Forwarding1"
)

// URNLayer3Forwarding1 is the IGDv1 service through which a control point
// finds the default WAN connection.
const URNLayer3Forwarding1 = "urn:schemas-upnp-org:service:Layer3Forwarding:1"

// serviceDef is one service the server can offer.
type serviceDef struct {
	name    string // the service type's name: "WANIPConnection"
	version int    // the service type's version
	id      string
	// scpdPath, controlPath and eventPath are where it is served.
	scpdPath, controlPath, eventPath string
	// minIGD and maxIGD are the IGD versions that include it.
	minIGD, maxIGD int
	scpd           string // a string, not []byte: read-only data, not 21 KB of the data segment
	actions        []actionDef
	// evented lists the state variables the SCPD marks sendEvents="yes".
	evented []string
}

// actionDef is one action of a service and its handler.
type actionDef struct {
	name string
	fn   func(s *Server, ctx context.Context, c *call) (upnp.Args, error)
}

// serviceType returns d's URN.
func (d *serviceDef) serviceType() string {
	return "urn:schemas-upnp-org:service:" + d.name + ":" + strconv.Itoa(d.version)
}

// accepts reports whether a request's SOAPAction service type addresses
// d. Any version is accepted: control points written for version 1 send
// ":1" to a version 2 service, which must stay compatible, and the answer
// echoes their namespace. Which actions exist is d's own version's choice.
func (d *serviceDef) accepts(serviceType string) bool {
	domain, typ, _, ok := ParseServiceType(serviceType)
	return ok && igdDomain(domain) && strings.EqualFold(typ, d.name)
}

// action returns the action called name (compared exactly, as UPnP names
// are), or nil.
func (d *serviceDef) action(name string) *actionDef {
	for i := range d.actions {
		if d.actions[i].name == name {
			return &d.actions[i]
		}
	}
	return nil
}

// The actions of WANIPConnection:1, all the required ones. The optional
// ones (RequestTermination, the auto-disconnect timers) are answered 401,
// as they are absent from the SCPD.
var ipConnActionsV1 = []actionDef{
	{"SetConnectionType", (*Server).setConnectionType},
	{"GetConnectionTypeInfo", (*Server).getConnectionTypeInfo},
	{"RequestConnection", (*Server).requestConnection},
	{"ForceTermination", (*Server).forceTermination},
	{"GetStatusInfo", (*Server).getStatusInfo},
	{"GetNATRSIPStatus", (*Server).getNATRSIPStatus},
	{"GetGenericPortMappingEntry", (*Server).getGenericPortMappingEntry},
	{"GetSpecificPortMappingEntry", (*Server).getSpecificPortMappingEntry},
	{"AddPortMapping", (*Server).addPortMapping},
	{"DeletePortMapping", (*Server).deletePortMapping},
	{"GetExternalIPAddress", (*Server).getExternalIPAddress},
}

// The actions of WANIPConnection:2: version 1's and three more.
var ipConnActionsV2 = append(append([]actionDef(nil), ipConnActionsV1...),
	actionDef{"AddAnyPortMapping", (*Server).addAnyPortMapping},
	actionDef{"DeletePortMappingRange", (*Server).deletePortMappingRange},
	actionDef{"GetListOfPortMappings", (*Server).getListOfPortMappings},
)

// The actions of WANCommonInterfaceConfig:1 that a router can answer
// truthfully, as miniupnpd offers them: the required
// GetCommonLinkProperties and the traffic counters.
var commonActions = []actionDef{
	{"GetCommonLinkProperties", (*Server).getCommonLinkProperties},
	{"GetTotalBytesSent", (*Server).getTotalBytesSent},
	{"GetTotalBytesReceived", (*Server).getTotalBytesReceived},
	{"GetTotalPacketsSent", (*Server).getTotalPacketsSent},
	{"GetTotalPacketsReceived", (*Server).getTotalPacketsReceived},
}

var l3fActions = []actionDef{
	{"SetDefaultConnectionService", (*Server).setDefaultConnectionService},
	{"GetDefaultConnectionService", (*Server).getDefaultConnectionService},
}

// serviceDefs lists every service in description order; NewServer keeps
// those of its IGD version. It is never modified.
var serviceDefs = []serviceDef{
	{
		name: "Layer3Forwarding", version: 1, id: ServiceIDLayer3Forwarding,
		scpdPath: Layer3ForwardingSCPDPath, controlPath: Layer3ForwardingControlPath, eventPath: Layer3ForwardingEventPath,
		minIGD: 1, maxIGD: 1, scpd: scpdLayer3Forwarding, actions: l3fActions,
		evented: []string{"DefaultConnectionService"},
	},
	{
		name: "WANCommonInterfaceConfig", version: 1, id: ServiceIDWANCommonInterfaceConfig,
		scpdPath: WANCommonInterfaceConfigSCPDPath, controlPath: WANCommonInterfaceConfigControlPath, eventPath: WANCommonInterfaceConfigEventPath,
		minIGD: 1, maxIGD: 2, scpd: scpdWANCommonInterfaceConfig, actions: commonActions,
		evented: []string{"PhysicalLinkStatus"},
	},
	{
		name: "WANIPConnection", version: 1, id: ServiceIDWANIPConnection,
		scpdPath: WANIPConnectionSCPDPath, controlPath: WANIPConnectionControlPath, eventPath: WANIPConnectionEventPath,
		minIGD: 1, maxIGD: 1, scpd: scpdWANIPConnection1, actions: ipConnActionsV1,
		evented: []string{"PossibleConnectionTypes", "ConnectionStatus", "ExternalIPAddress", "PortMappingNumberOfEntries"},
	},
	{
		name: "WANIPConnection", version: 2, id: ServiceIDWANIPConnection,
		scpdPath: WANIPConnectionSCPDPath, controlPath: WANIPConnectionControlPath, eventPath: WANIPConnectionEventPath,
		minIGD: 2, maxIGD: 2, scpd: scpdWANIPConnection2, actions: ipConnActionsV2,
		evented: []string{"PossibleConnectionTypes", "ConnectionStatus", "ExternalIPAddress", "PortMappingNumberOfEntries", "SystemUpdateID"},
	},
}

// call is one action invocation: its in arguments and who sent it.
type call struct {
	client  netip.Addr
	args    upnp.Args
	version int
}

// arg returns the argument called name. Names are matched exactly and
// then, as a few control points change their case, ignoring case.
func (c *call) arg(name string) (string, bool) {
	return argGet(c.args, name)
}

// required returns the argument called name, or 402 when it is absent.
func (c *call) required(name string) (string, error) {
	v, ok := c.arg(name)
	if !ok {
		return "", fault(CodeInvalidArgs)
	}
	return v, nil
}

// ui2 reads a required ui2 argument.
func (c *call) ui2(name string) (uint16, error) {
	v, err := c.required(name)
	if err != nil {
		return 0, err
	}
	n, perr := strconv.ParseUint(strings.TrimSpace(v), 10, 16)
	if perr != nil {
		return 0, fault(CodeInvalidArgs)
	}
	return uint16(n), nil
}

// boolean reads a boolean argument; an absent one is def.
func (c *call) boolean(name string, def bool) (bool, error) {
	v, ok := c.arg(name)
	if !ok {
		return def, nil
	}
	b, err := parseBool(v)
	if err != nil {
		return false, fault(CodeInvalidArgs)
	}
	return b, nil
}

// protocol reads NewProtocol, upper-cased since control points send "tcp"
// too. An empty value is TCP, as miniupnpd reads it: js-libp2p's
// nat-port-mapper (Helia, IPFS in the browser) sends DeletePortMapping
// with an empty NewProtocol and expects its TCP mapping gone. Anything but
// TCP and UDP is out of the allowed value list: 601 on version 2, which
// says so, and 402 on version 1, which predates it. An absent argument is
// 402, as miniupnpd answers.
func (c *call) protocol() (string, error) {
	v, err := c.required("NewProtocol")
	if err != nil {
		return "", err
	}
	if strings.TrimSpace(v) == "" {
		return TCP, nil
	}
	switch p := normProto(v); p {
	case TCP, UDP:
		return p, nil
	}
	if c.version >= 2 {
		return "", fault(codeArgumentValueOutOfRange)
	}
	return "", fault(CodeInvalidArgs)
}

// remoteHost reads NewRemoteHost: "" (and "*", which miniupnpd also takes
// for the wildcard) is any host, else it must be an IPv4 address. Host
// names, which version 2 allows, are refused with 402: the gateway does
// not resolve names on a LAN client's say-so. An absent argument is the
// wildcard; several control points leave it out.
func (c *call) remoteHost() (string, error) {
	v, _ := c.arg("NewRemoteHost")
	v = strings.TrimSpace(v)
	if v == "" || v == "*" {
		return "", nil
	}
	a, err := netip.ParseAddr(v)
	if err != nil || !a.Is4() {
		return "", fault(CodeInvalidArgs)
	}
	return a.String(), nil
}

// internalClient reads NewInternalClient. Absent or empty, it is the
// requester itself, as miniupnpd reads it (miniupnp issue 236): control
// points that leave it out mean "this host", and in secure mode it could
// be nothing else. 0.0.0.0 is a wildcard, which the spec forbids: 715 on
// version 2, whose table says so, and 402 on version 1. It must otherwise
// be an IPv4 address; host names are refused as for remoteHost.
func (c *call) internalClient() (string, error) {
	v, _ := c.arg("NewInternalClient")
	v = strings.TrimSpace(v)
	if v == "" && c.client.Is4() {
		return c.client.String(), nil
	}
	a, perr := netip.ParseAddr(v)
	if v == "" || (perr == nil && a.Is4() && a.IsUnspecified()) {
		if c.version >= 2 {
			return "", fault(CodeWildCardNotPermittedInSrcIP)
		}
		return "", fault(CodeInvalidArgs)
	}
	if perr != nil || !a.Is4() {
		return "", fault(CodeInvalidArgs)
	}
	return a.String(), nil
}

// maxLeaseV2 is WANIPConnection:2's longest lease, one week.
const maxLeaseV2 = 604800 * time.Second

// lease reads NewLeaseDuration (absent is 0). On version 2, 0 (permanent)
// becomes 604800 seconds, as the spec requires, and longer leases are
// shortened to it, as miniupnpd does, rather than refused: the control
// point reads the lease granted back, and has to renew anyway.
func (c *call) lease() (time.Duration, error) {
	v, ok := c.arg("NewLeaseDuration")
	var n uint64
	if ok && strings.TrimSpace(v) != "" {
		var err error
		if n, err = strconv.ParseUint(strings.TrimSpace(v), 10, 32); err != nil {
			return 0, fault(CodeInvalidArgs)
		}
	}
	d := time.Duration(n) * time.Second
	if c.version >= 2 && (d == 0 || d > maxLeaseV2) {
		d = maxLeaseV2
	}
	return d, nil
}

// description reads NewPortMappingDescription (absent is "") and cleans
// it, since other control points and the daemon's web UI will display it:
// bytes that are not UTF-8 become U+FFFD, line breaks and tabs become
// spaces, other control characters and the Unicode bidirectional controls
// (which can make a label read backwards in a UI) are removed, and the
// result is trimmed and cut to max bytes at a character boundary.
func (c *call) description(max int) string {
	v, _ := c.arg("NewPortMappingDescription")
	return cleanDescription(v, max)
}

func cleanDescription(v string, max int) string {
	v = strings.ToValidUTF8(v, "\uFFFD")
	v = strings.Map(func(r rune) rune {
		switch {
		case r == '\t' || r == '\n' || r == '\r':
			return ' '
		case r < 0x20 || (r >= 0x7f && r < 0xa0):
			return -1
		case r == '\u200e' || r == '\u200f' || (r >= '\u202a' && r <= '\u202e') || (r >= '\u2066' && r <= '\u2069'):
			return -1
		}
		return r
	}, v)
	v = strings.TrimSpace(v)
	if len(v) > max {
		n := max
		for n > 0 && !utf8.RuneStart(v[n]) {
			n--
		}
		v = strings.TrimSpace(v[:n])
	}
	return v
}

// mapping reads the in arguments of AddPortMapping and AddAnyPortMapping.
// anyPort allows an external port of 0 (AddAnyPortMapping: no preference).
// Faults are checked in the spec's argument order, so a request with
// several faults gets the first argument's.
func (c *call) mapping(anyPort bool, maxDescription int) (PortMapping, error) {
	var m PortMapping
	var err error
	if m.RemoteHost, err = c.remoteHost(); err != nil {
		return m, err
	}
	if m.ExternalPort, err = c.ui2("NewExternalPort"); err != nil {
		return m, err
	}
	if m.ExternalPort == 0 && !anyPort {
		// Version 1 calls 0 a wildcard: every port not otherwise mapped.
		// That is a DMZ, which no control point should open, and 716
		// exists in both versions for gateways that refuse it.
		return m, fault(CodeWildCardNotPermittedInExtPort)
	}
	if m.Protocol, err = c.protocol(); err != nil {
		return m, err
	}
	if m.InternalPort, err = c.ui2("NewInternalPort"); err != nil {
		return m, err
	}
	if m.InternalPort == 0 {
		if c.version >= 2 {
			return m, fault(CodeWildCardNotPermittedInIntPort)
		}
		return m, fault(CodeInvalidArgs)
	}
	if m.InternalClient, err = c.internalClient(); err != nil {
		return m, err
	}
	if m.Enabled, err = c.boolean("NewEnabled", true); err != nil {
		return m, err
	}
	m.Description = c.description(maxDescription)
	if m.LeaseDuration, err = c.lease(); err != nil {
		return m, err
	}
	return m, nil
}

// key reads the arguments that name one mapping. An external port of 0
// names no mapping this server can hold: 402, as miniupnpd answers.
func (c *call) key() (remoteHost string, port uint16, proto string, err error) {
	if remoteHost, err = c.remoteHost(); err != nil {
		return
	}
	if port, err = c.ui2("NewExternalPort"); err != nil {
		return
	}
	if port == 0 {
		return "", 0, "", fault(CodeInvalidArgs)
	}
	proto, err = c.protocol()
	return
}

// portRange reads the arguments of DeletePortMappingRange and
// GetListOfPortMappings. A start above the end is 733.
func (c *call) portRange() (start, end uint16, proto string, manage bool, err error) {
	if start, err = c.ui2("NewStartPort"); err != nil {
		return
	}
	if end, err = c.ui2("NewEndPort"); err != nil {
		return
	}
	if proto, err = c.protocol(); err != nil {
		return
	}
	if manage, err = c.boolean("NewManage", false); err != nil {
		return
	}
	if start > end {
		err = fault(CodeInconsistentParameters)
	}
	return
}

// ui4 formats n as a ui4, saturating.
func ui4(n uint64) string {
	return strconv.FormatUint(min(n, math.MaxUint32), 10)
}

// seconds formats d in whole seconds as a ui4, rounding a fraction up so
// that a lease about to end does not read as 0, permanent.
func seconds(d time.Duration) string {
	if d <= 0 {
		return "0"
	}
	return ui4(uint64((d + time.Second - 1) / time.Second))
}

func (s *Server) setConnectionType(_ context.Context, c *call) (upnp.Args, error) {
	v, err := c.required("NewConnectionType")
	if err != nil {
		return nil, err
	}
	switch strings.TrimSpace(v) {
	case "IP_Routed":
		return nil, nil // what it already is
	case "Unconfigured", "IP_Bridged":
		// Valid values this gateway cannot switch to. Version 2 has a
		// code for it; version 1 does not.
		if c.version >= 2 {
			return nil, fault(codeReadOnly)
		}
		return nil, fault(CodeActionFailed)
	}
	return nil, fault(codeArgumentValueOutOfRange)
}

func (s *Server) getConnectionTypeInfo(context.Context, *call) (upnp.Args, error) {
	return upnp.Args{
		{Name: "NewConnectionType", Value: "IP_Routed"},
		{Name: "NewPossibleConnectionTypes", Value: "IP_Routed"},
	}, nil
}

func (s *Server) requestConnection(ctx context.Context, c *call) (upnp.Args, error) {
	return nil, s.svc.RequestConnection(ctx, c.client)
}

func (s *Server) forceTermination(ctx context.Context, c *call) (upnp.Args, error) {
	return nil, s.svc.ForceTermination(ctx, c.client)
}

// connectionStatus reads the Service's status with the defaults the
// Service documentation promises.
func (s *Server) connectionStatus(ctx context.Context) (status, uptime, lastError string) {
	st, up, last := s.svc.ConnectionStatus(ctx)
	if st == "" {
		st = "Unconfigured"
	}
	if last == "" {
		last = "ERROR_NONE"
	}
	return st, ui4(uint64(max(up, 0) / time.Second)), last
}

func (s *Server) getStatusInfo(ctx context.Context, _ *call) (upnp.Args, error) {
	status, uptime, last := s.connectionStatus(ctx)
	return upnp.Args{
		{Name: "NewConnectionStatus", Value: status},
		{Name: "NewLastConnectionError", Value: last},
		{Name: "NewUptime", Value: uptime},
	}, nil
}

func (s *Server) getNATRSIPStatus(context.Context, *call) (upnp.Args, error) {
	return upnp.Args{
		{Name: "NewRSIPAvailable", Value: "0"},
		{Name: "NewNATEnabled", Value: "1"},
	}, nil
}

// externalIP reads the Service's address as the spec formats it: dotted
// IPv4, or "" when there is none.
func (s *Server) externalIP(ctx context.Context) (string, error) {
	a, err := s.svc.ExternalIPAddress(ctx)
	if err != nil {
		return "", err
	}
	a = a.Unmap()
	if !a.Is4() || a.IsUnspecified() {
		return "", nil
	}
	return a.String(), nil
}

func (s *Server) getExternalIPAddress(ctx context.Context, _ *call) (upnp.Args, error) {
	ip, err := s.externalIP(ctx)
	if err != nil {
		return nil, err
	}
	return upnp.Args{{Name: "NewExternalIPAddress", Value: ip}}, nil
}

func (s *Server) getGenericPortMappingEntry(ctx context.Context, c *call) (upnp.Args, error) {
	// An index sent as an empty element is the first entry: the question
	// only reads the table, and the control points that send it walk the
	// table from the start. (miniupnpd answers it 402.)
	var i uint16
	if v, ok := c.arg("NewPortMappingIndex"); !ok || strings.TrimSpace(v) != "" {
		var err error
		if i, err = c.ui2("NewPortMappingIndex"); err != nil {
			return nil, err
		}
	}
	m, err := s.svc.GetGenericPortMappingEntry(ctx, c.client, int(i))
	if err != nil {
		return nil, err
	}
	return upnp.Args{
		{Name: "NewRemoteHost", Value: m.RemoteHost},
		{Name: "NewExternalPort", Value: strconv.Itoa(int(m.ExternalPort))},
		{Name: "NewProtocol", Value: m.Protocol},
		{Name: "NewInternalPort", Value: strconv.Itoa(int(m.InternalPort))},
		{Name: "NewInternalClient", Value: m.InternalClient},
		{Name: "NewEnabled", Value: formatBool(m.Enabled)},
		{Name: "NewPortMappingDescription", Value: m.Description},
		{Name: "NewLeaseDuration", Value: seconds(m.LeaseDuration)},
	}, nil
}

func (s *Server) getSpecificPortMappingEntry(ctx context.Context, c *call) (upnp.Args, error) {
	host, port, proto, err := c.key()
	if err != nil {
		return nil, err
	}
	m, err := s.svc.GetSpecificPortMappingEntry(ctx, c.client, host, port, proto)
	if err != nil {
		return nil, err
	}
	return upnp.Args{
		{Name: "NewInternalPort", Value: strconv.Itoa(int(m.InternalPort))},
		{Name: "NewInternalClient", Value: m.InternalClient},
		{Name: "NewEnabled", Value: formatBool(m.Enabled)},
		{Name: "NewPortMappingDescription", Value: m.Description},
		{Name: "NewLeaseDuration", Value: seconds(m.LeaseDuration)},
	}, nil
}

func (s *Server) addPortMapping(ctx context.Context, c *call) (upnp.Args, error) {
	m, err := c.mapping(false, s.maxDescription)
	if err != nil {
		return nil, err
	}
	return nil, s.svc.AddPortMapping(ctx, c.client, m)
}

func (s *Server) addAnyPortMapping(ctx context.Context, c *call) (upnp.Args, error) {
	m, err := c.mapping(true, s.maxDescription)
	if err != nil {
		return nil, err
	}
	port, err := s.svc.AddAnyPortMapping(ctx, c.client, m)
	if err != nil {
		return nil, err
	}
	return upnp.Args{{Name: "NewReservedPort", Value: strconv.Itoa(int(port))}}, nil
}

func (s *Server) deletePortMapping(ctx context.Context, c *call) (upnp.Args, error) {
	host, port, proto, err := c.key()
	if err != nil {
		return nil, err
	}
	return nil, s.svc.DeletePortMapping(ctx, c.client, host, port, proto)
}

func (s *Server) deletePortMappingRange(ctx context.Context, c *call) (upnp.Args, error) {
	start, end, proto, manage, err := c.portRange()
	if err != nil {
		return nil, err
	}
	return nil, s.svc.DeletePortMappingRange(ctx, c.client, start, end, proto, manage)
}

func (s *Server) getListOfPortMappings(ctx context.Context, c *call) (upnp.Args, error) {
	start, end, proto, manage, err := c.portRange()
	if err != nil {
		return nil, err
	}
	n, err := c.ui2("NewNumberOfPorts")
	if err != nil {
		return nil, err
	}
	list, err := s.svc.GetListOfPortMappings(ctx, c.client, start, end, proto, manage, int(n))
	if err != nil {
		return nil, err
	}
	if n > 0 && len(list) > int(n) {
		list = list[:n]
	}
	if len(list) == 0 {
		return nil, fault(CodePortMappingNotFound)
	}
	return upnp.Args{{Name: "NewPortListing", Value: string(AppendPortMappingList(nil, list))}}, nil
}

func (s *Server) getCommonLinkProperties(ctx context.Context, _ *call) (upnp.Args, error) {
	lp, _ := s.svc.LinkProperties(ctx)
	access, status := lp.AccessType, lp.Status
	if access == "" {
		access = "Ethernet"
	}
	if status == "" {
		status = "Unavailable"
	}
	return upnp.Args{
		{Name: "NewWANAccessType", Value: access},
		{Name: "NewLayer1UpstreamMaxBitRate", Value: ui4(lp.UpBps)},
		{Name: "NewLayer1DownstreamMaxBitRate", Value: ui4(lp.DownBps)},
		{Name: "NewPhysicalLinkStatus", Value: status},
	}, nil
}

// counter formats a traffic counter as the wrapping ui4 the spec defines.
func counter(n uint64) string { return strconv.FormatUint(n&math.MaxUint32, 10) }

func (s *Server) getTotalBytesSent(ctx context.Context, _ *call) (upnp.Args, error) {
	_, n := s.svc.LinkProperties(ctx)
	return upnp.Args{{Name: "NewTotalBytesSent", Value: counter(n.BytesSent)}}, nil
}

func (s *Server) getTotalBytesReceived(ctx context.Context, _ *call) (upnp.Args, error) {
	_, n := s.svc.LinkProperties(ctx)
	return upnp.Args{{Name: "NewTotalBytesReceived", Value: counter(n.BytesReceived)}}, nil
}

func (s *Server) getTotalPacketsSent(ctx context.Context, _ *call) (upnp.Args, error) {
	_, n := s.svc.LinkProperties(ctx)
	return upnp.Args{{Name: "NewTotalPacketsSent", Value: counter(n.PacketsSent)}}, nil
}

func (s *Server) getTotalPacketsReceived(ctx context.Context, _ *call) (upnp.Args, error) {
	_, n := s.svc.LinkProperties(ctx)
	return upnp.Args{{Name: "NewTotalPacketsReceived", Value: counter(n.PacketsReceived)}}, nil
}

// defaultConnectionService is Layer3Forwarding's name for the one
// WANIPConnection: "<UDN of its device>:WANConnectionDevice:1,<serviceId>".
func (s *Server) defaultConnectionService() string {
	return s.dev.wcdUDN + ":WANConnectionDevice:1," + s.connectionID()
}

// connectionID is the service ID of the WAN connection service:
// ServiceIDWANIPConnection, or the one a Layout gave it.
func (s *Server) connectionID() string {
	for i := range s.services {
		if n := s.services[i].name; n == "WANIPConnection" || n == "WANPPPConnection" {
			return s.services[i].id
		}
	}
	return ServiceIDWANIPConnection
}

func (s *Server) getDefaultConnectionService(context.Context, *call) (upnp.Args, error) {
	return upnp.Args{{Name: "NewDefaultConnectionService", Value: s.defaultConnectionService()}}, nil
}

// setDefaultConnectionService accepts the one connection service there is
// and refuses any other, with the codes Layer3Forwarding defines.
func (s *Server) setDefaultConnectionService(_ context.Context, c *call) (upnp.Args, error) {
	v, err := c.required("NewDefaultConnectionService")
	if err != nil {
		return nil, err
	}
	dev, id, ok := strings.Cut(strings.TrimSpace(v), ",")
	if !ok {
		return nil, fault(CodeInvalidArgs)
	}
	if !strings.HasPrefix(strings.ToLower(strings.TrimSpace(dev)), s.dev.wcdUDN) {
		return nil, fault(codeInvalidDeviceUUID)
	}
	if strings.TrimSpace(id) != s.connectionID() {
		return nil, fault(codeInvalidServiceID)
	}
	return nil, nil
}

// queryStateVariable answers UDA's QueryStateVariable for the variables
// of d that have a current value, and 404 (Invalid Var) for the others:
// the per-mapping argument variables, and the table variables when the
// Service does not implement TableInfo.
func (s *Server) queryStateVariable(ctx context.Context, d *serviceDef, args upnp.Args) (upnp.Args, error) {
	name, ok := argGet(args, "varName")
	if !ok {
		return nil, fault(CodeInvalidArgs)
	}
	name = strings.TrimSpace(name)
	v, ok, err := s.stateVariable(ctx, d, name)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fault(codeInvalidVar)
	}
	return upnp.Args{{Name: "return", Value: v}}, nil
}

func (s *Server) stateVariable(ctx context.Context, d *serviceDef, name string) (string, bool, error) {
	switch d.name {
	case "WANIPConnection":
		switch name {
		case "ConnectionType", "PossibleConnectionTypes":
			return "IP_Routed", true, nil
		case "ConnectionStatus", "Uptime", "LastConnectionError":
			status, uptime, last := s.connectionStatus(ctx)
			return map[string]string{"ConnectionStatus": status, "Uptime": uptime, "LastConnectionError": last}[name], true, nil
		case "RSIPAvailable":
			return "0", true, nil
		case "NATEnabled":
			return "1", true, nil
		case "ExternalIPAddress":
			ip, err := s.externalIP(ctx)
			return ip, err == nil, err
		case "PortMappingNumberOfEntries":
			if ti, ok := s.svc.(TableInfo); ok {
				return strconv.Itoa(min(max(ti.PortMappingNumberOfEntries(ctx), 0), math.MaxUint16)), true, nil
			}
		case "SystemUpdateID":
			if ti, ok := s.svc.(TableInfo); ok && d.version >= 2 {
				return strconv.FormatUint(uint64(ti.SystemUpdateID(ctx)), 10), true, nil
			}
		}
	case "WANCommonInterfaceConfig":
		var out upnp.Args
		switch name {
		case "WANAccessType", "Layer1UpstreamMaxBitRate", "Layer1DownstreamMaxBitRate", "PhysicalLinkStatus":
			out, _ = s.getCommonLinkProperties(ctx, nil)
		case "TotalBytesSent":
			out, _ = s.getTotalBytesSent(ctx, nil)
		case "TotalBytesReceived":
			out, _ = s.getTotalBytesReceived(ctx, nil)
		case "TotalPacketsSent":
			out, _ = s.getTotalPacketsSent(ctx, nil)
		case "TotalPacketsReceived":
			out, _ = s.getTotalPacketsReceived(ctx, nil)
		}
		if v, ok := out.Get("New" + name); ok {
			return v, true, nil
		}
	case firewallServiceDef.name:
		enabled, allowed := s.fw.FirewallStatus(ctx)
		switch name {
		case "FirewallEnabled":
			return boolArg(enabled), true, nil
		case "InboundPinholeAllowed":
			return boolArg(allowed), true, nil
		}
	case "Layer3Forwarding":
		if name == "DefaultConnectionService" {
			return s.defaultConnectionService(), true, nil
		}
	}
	return "", false, nil
}

// EventedVariables returns the current values of the evented state
// variables of the service whose event path is eventPath (as Paths lists
// it), in SCPD order: what a GENA publisher sends as a subscription's
// initial event. Variables without a value are left out: the table's when
// the Service does not implement TableInfo, and ExternalIPAddress when the
// Service fails to read it. It returns nil for a path that is not an event
// path of this server.
func (s *Server) EventedVariables(ctx context.Context, eventPath string) []upnp.Arg {
	for i := range s.services {
		d := &s.services[i]
		if d.eventPath != eventPath {
			continue
		}
		out := []upnp.Arg{}
		for _, name := range d.evented {
			if v, ok, err := s.stateVariable(ctx, d, name); ok && err == nil {
				out = append(out, upnp.Arg{Name: name, Value: v})
			}
		}
		return out
	}
	return nil
}
