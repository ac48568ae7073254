package main

import (
	"encoding/json"
	"net/netip"
	"strings"
	"time"

	"github.com/portfwd/portfwd/portmap"
)

// The JSON that --json prints, schema 1, documented in README.md. The
// types here are the CLI's own, apart from the library's, so that the
// schema changes only on purpose. Its rules:
//   - every top-level object has "schema": 1; keep and watch print one
//     object per line, each with it;
//   - field names and enumerated values are snake_case;
//   - every field is always present: a value not known or that does not
//     apply is "" (text), 0 (number), false, [] (list) or null (time,
//     object);
//   - the gateway's external address is "external_ip", with
//     "external_ip_class" (addrClass) and "warning" beside it where a
//     gateway is described;
//   - a failure prints {"schema": 1, "error": {"code", "message", "exit"}};
//     a command that fails after part of its work prints its usual object
//     with that "error" member in it.

// schemaVersion is the version of the JSON schema; see above.
const schemaVersion = 1

// jsonMapping is a mapping.
type jsonMapping struct {
	Protocol       portmap.Protocol `json:"protocol"`
	ExternalPort   uint16           `json:"external_port"`
	InternalClient string           `json:"internal_client"`
	InternalPort   uint16           `json:"internal_port"`
	Enabled        bool             `json:"enabled"`
	Description    string           `json:"description"`
	RemoteHost     string           `json:"remote_host"`
	Permanent      bool             `json:"permanent"`
	LeaseSeconds   int64            `json:"lease_seconds"`
	ExternalIP     string           `json:"external_ip"`
	Method         portmap.Method   `json:"method"`
	ReadBack       bool             `json:"read_back"`
	Note           string           `json:"note"`
	// Family is "ipv4" for a port mapping, "ipv6" for a pinhole (no
	// translation: external_ip:external_port is the host's own address
	// and port); ID is the pinhole's (UPnP UniqueID, or pcp-…), and
	// RemotePort the remote port it is restricted to (0: any).
	Family     string `json:"family"`
	ID         string `json:"id"`
	RemotePort uint16 `json:"remote_port"`
}

func toJSON(m portmap.Mapping) jsonMapping {
	family := m.Family
	if family == "" {
		family = portmap.IPv4
	}
	return jsonMapping{Family: string(family), ID: m.ID, RemotePort: m.RemotePort, Protocol: m.Protocol, ExternalPort: m.ExternalPort, InternalClient: m.InternalClient,
		InternalPort: m.InternalPort, Enabled: m.Enabled, Description: m.Description, RemoteHost: m.RemoteHost,
		Permanent: m.Permanent, LeaseSeconds: int64(m.Lease / time.Second), ExternalIP: addrString(m.ExternalAddr),
		Method: m.Method, ReadBack: m.ReadBack, Note: m.Note}
}

func toJSONs(ms []portmap.Mapping) []jsonMapping {
	out := make([]jsonMapping, len(ms))
	for i, m := range ms {
		out[i] = toJSON(m)
	}
	return out
}

// jsonExternalIP is a gateway's external address, what kind it is, and
// the warning that goes with that kind.
type jsonExternalIP struct {
	ExternalIP string `json:"external_ip"`
	Class      string `json:"external_ip_class"`
	Warning    string `json:"warning"`
}

// externalIP describes a: all "" when it is not known.
func externalIP(a netip.Addr) jsonExternalIP {
	if !a.IsValid() {
		return jsonExternalIP{}
	}
	c := portmap.Classify(a)
	return jsonExternalIP{ExternalIP: a.String(), Class: addrClass(c), Warning: c.Warning()}
}

// addrClass is the schema's name of an address class: public, private,
// cgnat, loopback, link_local, unspecified, documentation or reserved.
func addrClass(c portmap.AddrClass) string {
	switch c {
	case portmap.AddrPublic:
		return "public"
	case portmap.AddrUnspecified:
		return "unspecified"
	case portmap.AddrPrivate:
		return "private"
	case portmap.AddrCGNAT:
		return "cgnat"
	case portmap.AddrLoopback:
		return "loopback"
	case portmap.AddrLinkLocal:
		return "link_local"
	case portmap.AddrDocumentation:
		return "documentation"
	}
	return "reserved"
}

func addrString(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

// snake writes an event name of the library ("address-changed") as the
// schema does ("address_changed").
func snake(s string) string { return strings.ReplaceAll(s, "-", "_") }

// jsonGateway is a gateway as discover lists it.
type jsonGateway struct {
	Method      portmap.Method `json:"method"`
	Gateway     string         `json:"gateway"`
	Location    string         `json:"location"`
	ServiceType string         `json:"service_type"`
	Status      string         `json:"status"`
	Connected   bool           `json:"connected"`
	Problem     string         `json:"problem"`
	jsonExternalIP
}

// jsonInfo is info's object.
type jsonInfo struct {
	Schema           int            `json:"schema"`
	Method           portmap.Method `json:"method"`
	Gateway          string         `json:"gateway"`
	FriendlyName     string         `json:"friendly_name"`
	Manufacturer     string         `json:"manufacturer"`
	ManufacturerURL  string         `json:"manufacturer_url"`
	ModelName        string         `json:"model_name"`
	ModelNumber      string         `json:"model_number"`
	ModelDescription string         `json:"model_description"`
	SerialNumber     string         `json:"serial_number"`
	UDN              string         `json:"udn"`
	PresentationURL  string         `json:"presentation_url"`
	Location         string         `json:"location"`
	ControlURL       string         `json:"control_url"`
	ServiceType      string         `json:"service_type"`
	Services         []string       `json:"services"`
	Status           string         `json:"status"`
	Connected        bool           `json:"connected"`
	Problem          string         `json:"problem"`
	UptimeSeconds    int64          `json:"uptime_seconds"`
	ConnectionType   string         `json:"connection_type"`
	LinkType         string         `json:"link_type"`
	LinkStatus       string         `json:"link_status"`
	UpstreamBps      uint64         `json:"upstream_bps"`
	DownstreamBps    uint64         `json:"downstream_bps"`
	Server           string         `json:"server"`
	Epoch            uint32         `json:"epoch"`
	jsonExternalIP
}

func toJSONInfo(g portmap.Gateway, i portmap.Info) jsonInfo {
	services := i.Services
	if services == nil {
		services = []string{}
	}
	ext := netip.Addr{}
	if i.ExternalIP.IsValid() && !i.ExternalIP.IsUnspecified() {
		ext = i.ExternalIP
	}
	return jsonInfo{Schema: schemaVersion, Method: i.Method, Gateway: g.Addr(), FriendlyName: i.FriendlyName,
		Manufacturer: i.Manufacturer, ManufacturerURL: i.ManufacturerURL, ModelName: i.ModelName,
		ModelNumber: i.ModelNumber, ModelDescription: i.ModelDescription, SerialNumber: i.SerialNumber,
		UDN: i.UDN, PresentationURL: i.PresentationURL, Location: i.Location, ControlURL: i.ControlURL,
		ServiceType: i.ServiceType, Services: services, Status: i.ConnectionStatus, Connected: i.Connected,
		Problem: i.Problem, UptimeSeconds: int64(i.Uptime / time.Second), ConnectionType: i.ConnectionType,
		LinkType: i.LinkType, LinkStatus: i.LinkStatus, UpstreamBps: i.UpstreamBps, DownstreamBps: i.DownstreamBps,
		Server: i.Server, Epoch: i.Epoch, jsonExternalIP: externalIP(ext)}
}

// jsonKey is a mapping deleted: its key, and where it led when that is
// known (delete --range reads the table; a single delete does not).
type jsonKey struct {
	Protocol       portmap.Protocol `json:"protocol"`
	ExternalPort   uint16           `json:"external_port"`
	RemoteHost     string           `json:"remote_host"`
	InternalClient string           `json:"internal_client"`
	InternalPort   uint16           `json:"internal_port"`
	Description    string           `json:"description"`
	// Family is "ipv4" (a port mapping) or "ipv6" (a pinhole, whose ID
	// is set).
	Family string `json:"family"`
	ID     string `json:"id"`
}

// MarshalJSON writes k with Family "ipv4" when unset.
func (k jsonKey) MarshalJSON() ([]byte, error) {
	type plain jsonKey
	if k.Family == "" {
		k.Family = string(portmap.IPv4)
	}
	return json.Marshal(plain(k))
}

// jsonRecord is a record of the state directory, as forget lists it.
type jsonRecord struct {
	Method         portmap.Method   `json:"method"`
	Gateway        string           `json:"gateway"`
	Protocol       portmap.Protocol `json:"protocol"`
	ExternalPort   uint16           `json:"external_port"`
	InternalClient string           `json:"internal_client"`
	InternalPort   uint16           `json:"internal_port"`
	Description    string           `json:"description"`
	ExternalIP     string           `json:"external_ip"`
	Nonce          string           `json:"nonce"`
	Made           *time.Time       `json:"made"`
	Expires        *time.Time       `json:"expires"`
	Keeper         *portmap.Process `json:"keeper"`
	Why            string           `json:"why"`
}

func toJSONRecord(f portmap.Forgotten) jsonRecord {
	r := jsonRecord{Method: f.Method, Gateway: f.Gateway, Protocol: f.Protocol, ExternalPort: f.ExternalPort,
		InternalClient: f.InternalClient, InternalPort: f.InternalPort, Description: f.Description,
		ExternalIP: addrString(f.ExternalAddr), Keeper: f.Keeper, Why: f.Why}
	if f.Nonce != ([12]byte{}) {
		r.Nonce = f.Nonce.String()
	}
	if !f.Made.IsZero() {
		r.Made = &f.Made
	}
	if !f.Expires.IsZero() {
		r.Expires = &f.Expires
	}
	return r
}

// jsonKeepEvent is one line of keep --json.
type jsonKeepEvent struct {
	Schema     int         `json:"schema"`
	Event      string      `json:"event"`
	Time       time.Time   `json:"time"`
	Mapping    jsonMapping `json:"mapping"`
	Reason     string      `json:"reason"`
	PreviousIP string      `json:"previous_external_ip"`
}

// jsonWatchEvent is one line of watch --json.
type jsonWatchEvent struct {
	Schema         int            `json:"schema"`
	Event          string         `json:"event"`
	Time           time.Time      `json:"time"`
	Gateway        string         `json:"gateway"`
	Method         portmap.Method `json:"method"`
	ExternalIP     string         `json:"external_ip"`
	PreviousIP     string         `json:"previous_external_ip"`
	Count          int            `json:"count"`
	PreviousCount  int            `json:"previous_count"`
	Added          []jsonMapping  `json:"added"`
	Removed        []jsonMapping  `json:"removed"`
	Status         string         `json:"status"`
	PreviousStatus string         `json:"previous_status"`
	Reason         string         `json:"reason"`
	Via            string         `json:"via"`
}

func toJSONWatchEvent(ev portmap.WatchEvent) jsonWatchEvent {
	return jsonWatchEvent{Schema: schemaVersion, Event: snake(string(ev.Kind)), Time: ev.Time, Gateway: ev.Gateway,
		Method: ev.Method, ExternalIP: addrString(ev.ExternalAddr), PreviousIP: addrString(ev.Previous),
		Count: ev.Count, PreviousCount: ev.PreviousCount, Added: toJSONs(ev.Added), Removed: toJSONs(ev.Removed),
		Status: ev.Status, PreviousStatus: ev.PreviousStatus, Reason: ev.Reason, Via: snake(string(ev.Via))}
}
