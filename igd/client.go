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

// Client calls the actions of one WANIPConnection or WANPPPConnection
// service. Create it with NewClient from a ServiceRef, or fill the fields
// directly. A Client is safe for concurrent use if its SOAP client is.
type Client struct {
	// SOAP carries the calls; nil means a zero upnp.Client.
	SOAP *upnp.Client
	// ControlURL is the service's absolute control URL.
	ControlURL string
	// ServiceType is the service's URN, sent in SOAPAction and as the
	// action's namespace. Routers match it exactly, so it is the string from
	// their description, legacy domain and all.
	ServiceType string
	// Version is the service version; 2 enables the IGDv2 actions.
	Version int
	// CommonControlURL and CommonServiceType locate the
	// WANCommonInterfaceConfig service of the same WAN device, if any.
	CommonControlURL  string
	CommonServiceType string
	// MaxEntries caps how many entries ListPortMappings reads (and how many
	// indexes it tries), so that a router that never signals the end of its
	// table cannot keep it looping. Zero means 65536.
	MaxEntries int
	// Logger receives debug records about fallbacks; nil means
	// slog.Default().
	Logger *slog.Logger
}

// NewClient returns a Client for the service ref points at, calling through
// soap (nil means a zero upnp.Client).
func NewClient(ref ServiceRef, soap *upnp.Client) *Client {
	return &Client{
		SOAP:              soap,
		ControlURL:        ref.ControlURL,
		ServiceType:       ref.ServiceType,
		Version:           ref.Version,
		CommonControlURL:  ref.CommonControlURL,
		CommonServiceType: ref.CommonServiceType,
	}
}

// Protocol names as UPnP spells them on the wire.
const (
	TCP = "TCP"
	UDP = "UDP"
)

// PortMapping is one entry of a router's port mapping table.
type PortMapping struct {
	// RemoteHost restricts the mapping to one remote address; "" is any.
	RemoteHost   string
	ExternalPort uint16
	// Protocol is "TCP" or "UDP".
	Protocol       string
	InternalPort   uint16
	InternalClient string
	Enabled        bool
	Description    string
	// LeaseDuration is the lifetime asked for or, in a router's answer,
	// what remains of it; 0 means permanent. Whole seconds on the wire.
	LeaseDuration time.Duration
}

// Key identifies a mapping in a router's table: UPnP addresses entries by
// remote host, external port and protocol.
type Key struct {
	RemoteHost   string
	ExternalPort uint16
	Protocol     string
}

// Key returns m's key.
func (m PortMapping) Key() Key {
	return Key{RemoteHost: m.RemoteHost, ExternalPort: m.ExternalPort, Protocol: m.Protocol}
}

func (k Key) String() string {
	s := fmt.Sprintf("%d/%s", k.ExternalPort, k.Protocol)
	if k.RemoteHost != "" {
		s += " from " + k.RemoteHost
	}
	return s
}

// StatusInfo is the answer to GetStatusInfo.
type StatusInfo struct {
	// ConnectionStatus is "Connected", "Disconnected", "Connecting",
	// "Unconfigured", ... as the router spells it.
	ConnectionStatus    string
	LastConnectionError string
	// Uptime is how long the connection has been up; 0 when the router did
	// not say.
	Uptime time.Duration
}

// LinkProperties is the answer to WANCommonInterfaceConfig's
// GetCommonLinkProperties.
type LinkProperties struct {
	// AccessType is "DSL", "POTS", "Cable", "Ethernet", ...
	AccessType string
	// UpBps and DownBps are the physical link's maximum bit rates; 0 when
	// the router did not say.
	UpBps, DownBps uint64
	// Status is the physical link status: "Up", "Down", "Initializing",
	// "Unavailable".
	Status string
}

func (c *Client) soap() *upnp.Client {
	if c.SOAP != nil {
		return c.SOAP
	}
	return &upnp.Client{}
}

func (c *Client) logger() *slog.Logger {
	if c.Logger != nil {
		return c.Logger
	}
	return slog.Default()
}

// call sends one SOAP action, and logs the exchange at debug level: the
// request with its arguments, then the answer or the failure, with the
// time it took.
func (c *Client) call(ctx context.Context, action string, args upnp.Args) (upnp.Args, error) {
	return c.callAt(ctx, c.ControlURL, c.ServiceType, action, args)
}

// callAt is call for a service at another control URL.
func (c *Client) callAt(ctx context.Context, controlURL, serviceType, action string, args upnp.Args) (upnp.Args, error) {
	log := c.logger()
	log.Debug("igd: SOAP request", "action", action, "url", controlURL, "args", argsText(args))
	start := time.Now()
	out, err := c.soap().Call(ctx, controlURL, serviceType, action, args)
	if err != nil {
		log.Debug("igd: SOAP failed", "action", action, "took", time.Since(start).Round(time.Microsecond), "err", err)
		return nil, err
	}
	log.Debug("igd: SOAP response", "action", action, "took", time.Since(start).Round(time.Microsecond), "args", argsText(out))
	return out, nil
}

// argsText is a SOAP action's arguments on one line: Name=value,
// separated by spaces, with values quoted when they need it.
func argsText(args upnp.Args) string {
	var b strings.Builder
	for i, a := range args {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(a.Name)
		b.WriteByte('=')
		if a.Value == "" || strings.ContainsAny(a.Value, " \t\"=") {
			b.WriteString(strconv.Quote(a.Value))
		} else {
			b.WriteString(a.Value)
		}
	}
	return b.String()
}

func (c *Client) requireV2(action string) error {
	if c.Version < 2 {
		return fmt.Errorf("igd: %s needs version 2 of the service, %s is version %d: %w",
			action, c.ServiceType, c.Version, ErrNotSupported)
	}
	return nil
}

// GetExternalIPAddress returns the router's external IPv4 address. An
// empty or unparsable answer is an error; "0.0.0.0", which routers give
// while their WAN link is down, is returned as is for the caller to warn
// about.
func (c *Client) GetExternalIPAddress(ctx context.Context) (netip.Addr, error) {
	out, err := c.call(ctx, "GetExternalIPAddress", nil)
	if err != nil {
		return netip.Addr{}, err
	}
	s := strings.TrimSpace(argValue(out, "NewExternalIPAddress"))
	if s == "" {
		return netip.Addr{}, errors.New("igd: GetExternalIPAddress: the router returned no address; it may not be connected to the internet yet")
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("igd: GetExternalIPAddress: the router returned %q, which is not an IP address", s)
	}
	return a.Unmap(), nil
}

// GetStatusInfo returns the WAN connection's status. A missing or
// unparsable uptime is left at 0 rather than failing the call.
func (c *Client) GetStatusInfo(ctx context.Context) (StatusInfo, error) {
	out, err := c.call(ctx, "GetStatusInfo", nil)
	if err != nil {
		return StatusInfo{}, err
	}
	st := StatusInfo{
		ConnectionStatus:    strings.TrimSpace(argValue(out, "NewConnectionStatus")),
		LastConnectionError: strings.TrimSpace(argValue(out, "NewLastConnectionError")),
	}
	if up, err := parseSeconds(argValue(out, "NewUptime")); err == nil {
		st.Uptime = up
	}
	return st, nil
}

// GetConnectionTypeInfo returns the connection type ("IP_Routed",
// "IP_Bridged", ...) and the comma-separated list of possible ones.
func (c *Client) GetConnectionTypeInfo(ctx context.Context) (connType, possible string, err error) {
	out, err := c.call(ctx, "GetConnectionTypeInfo", nil)
	if err != nil {
		return "", "", err
	}
	return strings.TrimSpace(argValue(out, "NewConnectionType")),
		strings.TrimSpace(argValue(out, "NewPossibleConnectionTypes")), nil
}

// GetNATRSIPStatus reports whether the router offers RSIP and whether it
// does NAT. The misspelling NewNATEEnabled, found in the wild, is accepted.
func (c *Client) GetNATRSIPStatus(ctx context.Context) (rsip, nat bool, err error) {
	out, err := c.call(ctx, "GetNATRSIPStatus", nil)
	if err != nil {
		return false, false, err
	}
	natS, ok := argGet(out, "NewNATEnabled")
	if !ok {
		natS, ok = argGet(out, "NewNATEEnabled")
	}
	if !ok {
		return false, false, errors.New("igd: GetNATRSIPStatus: the router's answer has no NewNATEnabled")
	}
	if nat, err = parseBool(natS); err != nil {
		return false, false, fmt.Errorf("igd: GetNATRSIPStatus: NewNATEnabled: %w", err)
	}
	if s, ok := argGet(out, "NewRSIPAvailable"); ok && strings.TrimSpace(s) != "" {
		if rsip, err = parseBool(s); err != nil {
			return false, false, fmt.Errorf("igd: GetNATRSIPStatus: NewRSIPAvailable: %w", err)
		}
	}
	return rsip, nat, nil
}

// mappingArgs are AddPortMapping's and AddAnyPortMapping's arguments, in
// the order of the service description: some routers read them by
// position.
func mappingArgs(m PortMapping) (upnp.Args, error) {
	proto := normProto(m.Protocol)
	if proto != TCP && proto != UDP {
		return nil, fmt.Errorf("igd: protocol %q: use TCP or UDP", m.Protocol)
	}
	if m.InternalClient == "" {
		return nil, errors.New("igd: no internal client: give the LAN address to forward to")
	}
	if m.LeaseDuration < 0 {
		return nil, fmt.Errorf("igd: negative lease duration %v", m.LeaseDuration)
	}
	return upnp.Args{
		{Name: "NewRemoteHost", Value: m.RemoteHost},
		{Name: "NewExternalPort", Value: strconv.Itoa(int(m.ExternalPort))},
		{Name: "NewProtocol", Value: proto},
		{Name: "NewInternalPort", Value: strconv.Itoa(int(m.InternalPort))},
		{Name: "NewInternalClient", Value: m.InternalClient},
		{Name: "NewEnabled", Value: formatBool(m.Enabled)},
		{Name: "NewPortMappingDescription", Value: m.Description},
		{Name: "NewLeaseDuration", Value: formatSeconds(m.LeaseDuration)},
	}, nil
}

// AddPortMapping asks for m as given. It is the raw action: see AddMapping
// for the version that copes with routers' refusals.
func (c *Client) AddPortMapping(ctx context.Context, m PortMapping) error {
	args, err := mappingArgs(m)
	if err != nil {
		return err
	}
	_, err = c.call(ctx, "AddPortMapping", args)
	return err
}

// AddAnyPortMapping (IGDv2) asks for m, letting the router choose another
// external port if m.ExternalPort is taken, and returns the port reserved.
// On a version 1 service it returns an error wrapping ErrNotSupported.
func (c *Client) AddAnyPortMapping(ctx context.Context, m PortMapping) (reserved uint16, err error) {
	if err := c.requireV2("AddAnyPortMapping"); err != nil {
		return 0, err
	}
	args, err := mappingArgs(m)
	if err != nil {
		return 0, err
	}
	return callFor(ctx, c.call, "AddAnyPortMapping", args, "NewReservedPort", parsePort)
}

// callFor calls action with args through call and reads its out argument
// name with parse: the shape of every action that answers one value, on
// either service. A value that does not parse is an error that names the
// action and the argument.
func callFor[T any](ctx context.Context, call func(context.Context, string, upnp.Args) (upnp.Args, error),
	action string, args upnp.Args, name string, parse func(string) (T, error)) (T, error) {
	var zero T
	out, err := call(ctx, action, args)
	if err != nil {
		return zero, err
	}
	v, err := parse(argValue(out, name))
	if err != nil {
		return zero, fmt.Errorf("igd: %s: %s: %w", action, name, err)
	}
	return v, nil
}

func keyArgs(remoteHost string, externalPort uint16, proto string) upnp.Args {
	return upnp.Args{
		{Name: "NewRemoteHost", Value: remoteHost},
		{Name: "NewExternalPort", Value: strconv.Itoa(int(externalPort))},
		{Name: "NewProtocol", Value: normProto(proto)},
	}
}

// DeletePortMapping removes the mapping with the given key.
func (c *Client) DeletePortMapping(ctx context.Context, remoteHost string, externalPort uint16, proto string) error {
	_, err := c.call(ctx, "DeletePortMapping", keyArgs(remoteHost, externalPort, proto))
	return err
}

// DeletePortMappingRange (IGDv2) removes the mappings of proto whose
// external port is in [start, end]. With manage false the router removes
// only this host's mappings; with manage true, every mapping it lets this
// host manage. On a version 1 service it returns an error wrapping
// ErrNotSupported.
func (c *Client) DeletePortMappingRange(ctx context.Context, start, end uint16, proto string, manage bool) error {
	if err := c.requireV2("DeletePortMappingRange"); err != nil {
		return err
	}
	_, err := c.call(ctx, "DeletePortMappingRange", upnp.Args{
		{Name: "NewStartPort", Value: strconv.Itoa(int(start))},
		{Name: "NewEndPort", Value: strconv.Itoa(int(end))},
		{Name: "NewProtocol", Value: normProto(proto)},
		{Name: "NewManage", Value: formatBool(manage)},
	})
	return err
}

// GetGenericPortMappingEntry returns the entry at index (from 0) of the
// router's table. Past the end, routers answer 713
// (SpecifiedArrayIndexInvalid) or, some, 402 or 714.
func (c *Client) GetGenericPortMappingEntry(ctx context.Context, index int) (PortMapping, error) {
	if index < 0 {
		return PortMapping{}, fmt.Errorf("igd: negative mapping index %d", index)
	}
	out, err := c.call(ctx, "GetGenericPortMappingEntry", upnp.Args{
		{Name: "NewPortMappingIndex", Value: strconv.Itoa(index)},
	})
	if err != nil {
		return PortMapping{}, err
	}
	m, err := decodeEntry(out, nil)
	if err != nil {
		return PortMapping{}, fmt.Errorf("igd: GetGenericPortMappingEntry %d: %w", index, err)
	}
	return m, nil
}

// GetSpecificPortMappingEntry returns the mapping with the given key, or
// the router's 714 (NoSuchEntryInArray) fault. The key fields of the result
// are those asked for, since the answer does not repeat them.
func (c *Client) GetSpecificPortMappingEntry(ctx context.Context, remoteHost string, externalPort uint16, proto string) (PortMapping, error) {
	out, err := c.call(ctx, "GetSpecificPortMappingEntry", keyArgs(remoteHost, externalPort, proto))
	if err != nil {
		return PortMapping{}, err
	}
	key := Key{RemoteHost: remoteHost, ExternalPort: externalPort, Protocol: normProto(proto)}
	m, err := decodeEntry(out, &key)
	if err != nil {
		return PortMapping{}, fmt.Errorf("igd: GetSpecificPortMappingEntry %v: %w", key, err)
	}
	return m, nil
}

// GetListOfPortMappings (IGDv2) returns up to max mappings of proto whose
// external port is in [start, end] (max 0 lets the router choose its own
// limit). With manage true it asks for every host's mappings, not only this
// host's. The router's 730 (PortMappingNotFound), its way of saying the
// range is empty, is returned as an empty list. On a version 1 service it
// returns an error wrapping ErrNotSupported.
func (c *Client) GetListOfPortMappings(ctx context.Context, start, end uint16, proto string, manage bool, max int) ([]PortMapping, error) {
	if err := c.requireV2("GetListOfPortMappings"); err != nil {
		return nil, err
	}
	if max < 0 || max > 65535 {
		return nil, fmt.Errorf("igd: GetListOfPortMappings: max %d out of range 0-65535", max)
	}
	out, err := c.call(ctx, "GetListOfPortMappings", upnp.Args{
		{Name: "NewStartPort", Value: strconv.Itoa(int(start))},
		{Name: "NewEndPort", Value: strconv.Itoa(int(end))},
		{Name: "NewProtocol", Value: normProto(proto)},
		{Name: "NewManage", Value: formatBool(manage)},
		{Name: "NewNumberOfPorts", Value: strconv.Itoa(max)},
	})
	if upnp.ErrorCode(err) == CodePortMappingNotFound {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	list, err := ParsePortMappingList([]byte(argValue(out, "NewPortListing")))
	if err != nil {
		return nil, fmt.Errorf("igd: GetListOfPortMappings: %w", err)
	}
	return list, nil
}

// GetCommonLinkProperties calls WANCommonInterfaceConfig's action of that
// name at commonControlURL, or at c.CommonControlURL when it is "". It
// returns an error wrapping ErrNotSupported when neither is set. Missing or
// unparsable bit rates are left at 0.
func (c *Client) GetCommonLinkProperties(ctx context.Context, commonControlURL string) (LinkProperties, error) {
	if commonControlURL == "" {
		commonControlURL = c.CommonControlURL
	}
	if commonControlURL == "" {
		return LinkProperties{}, fmt.Errorf("igd: the router describes no WANCommonInterfaceConfig service: %w", ErrNotSupported)
	}
	st := c.CommonServiceType
	if st == "" {
		st = URNWANCommonInterfaceConfig1
	}
	out, err := c.callAt(ctx, commonControlURL, st, "GetCommonLinkProperties", nil)
	if err != nil {
		return LinkProperties{}, err
	}
	lp := LinkProperties{
		AccessType: strings.TrimSpace(argValue(out, "NewWANAccessType")),
		Status:     strings.TrimSpace(argValue(out, "NewPhysicalLinkStatus")),
	}
	lp.UpBps, _ = strconv.ParseUint(strings.TrimSpace(argValue(out, "NewLayer1UpstreamMaxBitRate")), 10, 64)
	lp.DownBps, _ = strconv.ParseUint(strings.TrimSpace(argValue(out, "NewLayer1DownstreamMaxBitRate")), 10, 64)
	return lp, nil
}

// decodeEntry decodes the out arguments of GetGenericPortMappingEntry or,
// when key is non-nil, of GetSpecificPortMappingEntry (whose answer lacks
// the key fields).
func decodeEntry(out upnp.Args, key *Key) (PortMapping, error) {
	m := PortMapping{
		InternalClient: strings.TrimSpace(argValue(out, "NewInternalClient")),
		Description:    strings.TrimSpace(argValue(out, "NewPortMappingDescription")),
		Enabled:        true,
	}
	var err error
	if key != nil {
		m.RemoteHost, m.ExternalPort, m.Protocol = key.RemoteHost, key.ExternalPort, key.Protocol
	} else {
		m.RemoteHost = strings.TrimSpace(argValue(out, "NewRemoteHost"))
		m.Protocol = normProto(argValue(out, "NewProtocol"))
		if m.ExternalPort, err = parsePort(argValue(out, "NewExternalPort")); err != nil {
			return m, fmt.Errorf("NewExternalPort: %w", err)
		}
	}
	if m.InternalPort, err = parseOptionalPort(argValue(out, "NewInternalPort")); err != nil {
		return m, fmt.Errorf("NewInternalPort: %w", err)
	}
	// A missing NewEnabled is read as enabled: the entry is in the table.
	if s := strings.TrimSpace(argValue(out, "NewEnabled")); s != "" {
		if m.Enabled, err = parseBool(s); err != nil {
			return m, fmt.Errorf("NewEnabled: %w", err)
		}
	}
	if m.LeaseDuration, err = parseSeconds(argValue(out, "NewLeaseDuration")); err != nil {
		return m, fmt.Errorf("NewLeaseDuration: %w", err)
	}
	return m, nil
}

// argGet looks an argument up by its exact name and then, because a few
// routers change the case of names, ignoring case.
func argGet(args upnp.Args, name string) (string, bool) {
	if v, ok := args.Get(name); ok {
		return v, true
	}
	for _, a := range args {
		if strings.EqualFold(a.Name, name) {
			return a.Value, true
		}
	}
	return "", false
}

func argValue(args upnp.Args, name string) string {
	v, _ := argGet(args, name)
	return v
}

// normProto upper-cases a protocol name: routers answer "tcp" as often as
// "TCP", and some only accept the latter.
func normProto(p string) string { return strings.ToUpper(strings.TrimSpace(p)) }

// parseBool reads a UPnP boolean leniently: 1/0, true/false, yes/no (the
// spec's forms), in any case and with surrounding whitespace.
func parseBool(s string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "1", "true", "yes":
		return true, nil
	case "0", "false", "no":
		return false, nil
	}
	return false, fmt.Errorf("%q is not a boolean", s)
}

func formatBool(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// parsePort reads a required port number.
func parsePort(s string) (uint16, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, errors.New("missing port number")
	}
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil {
		return 0, fmt.Errorf("%q is not a port number", s)
	}
	return uint16(n), nil
}

// parseOptionalPort reads a port number that may be absent (0).
func parseOptionalPort(s string) (uint16, error) {
	if strings.TrimSpace(s) == "" {
		return 0, nil
	}
	return parsePort(s)
}

// parseSeconds reads a ui4 number of seconds; empty means 0.
func parseSeconds(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, nil
	}
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("%q is not a number of seconds", s)
	}
	return time.Duration(n) * time.Second, nil
}

// formatSeconds writes d in whole seconds, rounding a fraction up so that a
// short non-zero lease does not become 0 (permanent).
func formatSeconds(d time.Duration) string {
	if d <= 0 {
		return "0"
	}
	s := (d + time.Second - 1) / time.Second
	if s > 1<<32-1 {
		s = 1<<32 - 1
	}
	return strconv.FormatInt(int64(s), 10)
}
