// Package portmap is portfwd's unified port-mapping client: it finds the
// gateway by every protocol at once (UPnP IGD over SSDP, NAT-PMP, PCP),
// and gives one Gateway interface for reading its details and external
// address and for listing, adding, editing and deleting mappings, whatever
// protocol the router speaks.
//
// Discovery races the protocols and returns as soon as one usable gateway
// answers (or, with Options.Wait, collects every gateway until the context
// ends); nothing here waits a fixed window. Every call takes a context, and
// long work reports progress through a callback, so a caller is never
// blocked by a slow router.
//
// Watch reports every change on a gateway as it happens. Besides UPnP
// events (GENA) and a poll, it listens for the announcements routers
// multicast when they restart or their external address changes: NAT-PMP
// and PCP ones on 224.0.0.1:5350 (RFC 6886 §3.2.1, RFC 6887 §14.1.3) and
// PCP ones over IPv6 on [ff02::1]:5350, heard only from the watched
// router: over IPv4 from its address; over IPv6 (a dual-stack router
// announces from an IPv6 address of its own) from the address it is
// watched at when that is IPv6, from the link-local address the router's
// MAC address makes (EUI-64), or from this host's IPv6 default router on
// the router's link. Keep listens on 224.0.0.1:5350, PinholeKeeper on
// [ff02::1]:5350.
//
// IPv6 pinholes (inbound firewall rules to this host's own address, over
// UPnP's WANIPv6FirewallControl or PCP) go through FindPinholer and its
// Pinholer: a pinhole is a Mapping with Family IPv6 and an ID (pinhole.go).
package portmap

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/portfwd/portfwd/natpmp"
	"github.com/portfwd/portfwd/pcp"
)

// Method is the protocol used to talk to a gateway.
type Method string

const (
	UPnP   Method = "upnp"
	NATPMP Method = "natpmp"
)

// Protocol is a transport protocol of a mapping: "TCP" or "UDP", spelled as
// UPnP spells it.
type Protocol string

const (
	TCP Protocol = "TCP"
	UDP Protocol = "UDP"
)

// ParseProtocol accepts tcp/udp in any case.
func ParseProtocol(s string) (Protocol, error) {
	switch strings.ToUpper(strings.TrimSpace(s)) {
	case "TCP":
		return TCP, nil
	case "UDP":
		return UDP, nil
	}
	return "", fmt.Errorf("unknown protocol %q: use tcp or udp", s)
}

// Mapping is one port mapping on a gateway.
//
// Which fields are the router's and which are the caller's: a Mapping from
// List is the router's table as it reports it. A Mapping from Add or Edit
// is the mapping as the router granted it, never merely as it was asked
// for: on UPnP it is read back from the router after the change
// (GetSpecificPortMappingEntry; ReadBack is then true); on NAT-PMP and PCP
// it comes from the router's answer, which carries the external port, the
// internal port and the lease granted, while the fields these protocols do
// not carry are as requested (Description; InternalClient is this host,
// the only one they map to; Enabled is true, as they have no disabled
// mappings). When the router granted something other than what was asked
// (a lease, a description), Note says so.
type Mapping struct {
	// Protocol and ExternalPort are the key the router holds the mapping
	// under. The external port is the one granted, which differs from the
	// one asked for when Request.Any let the router choose.
	Protocol     Protocol `json:"protocol"`
	ExternalPort uint16   `json:"external_port"`
	// InternalClient and InternalPort are where the router forwards to, as
	// it holds them (UPnP, read back; NAT-PMP/PCP: this host, and the
	// internal port of the router's answer).
	InternalClient string `json:"internal_client"`
	InternalPort   uint16 `json:"internal_port"`
	// Enabled is the router's (UPnP); always true on NAT-PMP and PCP.
	Enabled bool `json:"enabled"`
	// Description is the router's (UPnP; some routers shorten it). NAT-PMP
	// and PCP carry none: there it is the one requested, remembered in the
	// state directory only.
	Description string `json:"description"`
	// RemoteHost is the remote address the mapping is restricted to, as
	// the router holds it (UPnP); "" for any.
	RemoteHost string `json:"remote_host"`
	// Lease is the lease granted, or what remains of it when read from the
	// router's table; the router decides it (miniupnpd's IGDv2 turns a
	// permanent request into 604800 s, NAT-PMP/PCP routers clamp it).
	Lease time.Duration `json:"-"`
	// Permanent is true when the router holds the mapping with no lease
	// (UPnP lease 0), as granted, not as asked.
	Permanent bool `json:"permanent"`
	// ExternalAddr is the gateway's external address as last read from
	// it, when known.
	ExternalAddr netip.Addr `json:"external_addr,omitzero"`
	Method       Method     `json:"method"`
	// ReadBack is true when the fields above were read back from the
	// router after Add or Edit. It is false for NAT-PMP and PCP (see
	// above) and for a UPnP router that would not answer the read-back,
	// whose fields are then as requested except the external port.
	ReadBack bool `json:"read_back"`
	// Note is what the router granted differently from what was asked
	// for, or what to know about the client's records of the mapping: one
	// sentence or several, joined by "; ". Nothing in it is a failure: a
	// field the router ignored is an error (*IgnoredError), not a note.
	Note string `json:"note,omitempty"`
	// Family is IPv4 for a port mapping and IPv6 for a pinhole: an inbound
	// IPv6 firewall rule, with no translation, so that ExternalAddr and
	// ExternalPort are InternalClient and InternalPort. Empty means IPv4.
	Family Family `json:"family,omitempty"`
	// ID is a pinhole's identifier: the router's UniqueID (UPnP), or
	// "pcp-" and the start of its nonce (PCP). Empty for port mappings.
	ID string `json:"id,omitempty"`
	// RemotePort restricts a pinhole to one remote port; 0 is any.
	RemotePort uint16 `json:"remote_port,omitempty"`
}

// addNote appends sentences to m's Note.
func (m *Mapping) addNote(notes ...string) {
	for _, n := range notes {
		if n == "" {
			continue
		}
		if m.Note != "" {
			m.Note += "; "
		}
		m.Note += n
	}
}

// Key identifies a mapping on a gateway.
type Key struct {
	Protocol     Protocol
	ExternalPort uint16
	RemoteHost   string
}

func (k Key) String() string { return fmt.Sprintf("%d/%s", k.ExternalPort, k.Protocol) }

// Key returns the mapping's key.
func (m Mapping) Key() Key {
	return Key{Protocol: m.Protocol, ExternalPort: m.ExternalPort, RemoteHost: m.RemoteHost}
}

// Request describes a mapping to create: what is asked for. What the
// router granted comes back as a Mapping, which may differ (another port
// with Any, another lease); see Mapping.
type Request struct {
	Protocol Protocol
	// InternalPort is the port on InternalClient that traffic goes to.
	InternalPort uint16
	// ExternalPort is the port wanted on the gateway; 0 means the same as
	// InternalPort.
	ExternalPort uint16
	// InternalClient is the LAN address to forward to; the zero Addr means
	// this host's address on the interface that reaches the gateway.
	InternalClient netip.Addr
	// Lease is the lifetime asked for; 0 means permanent on UPnP and the
	// protocol's recommended lifetime (2 h) on NAT-PMP and PCP. The router
	// decides what it grants: Mapping.Lease.
	Lease       time.Duration
	Description string
	// Enabled defaults to true; set Disabled to add a disabled UPnP entry.
	Disabled bool
	// Any lets the gateway pick another external port when the wanted one
	// is taken (AddAnyPortMapping on IGDv2, a suggested port on NAT-PMP).
	Any bool
	// RemoteHost restricts the mapping to one remote address (UPnP only).
	RemoteHost string
	// Replace lets Add replace a mapping that already holds the external
	// port (or, on NAT-PMP and PCP, that this host already has for the
	// internal port). Without it Add never replaces anything: it refuses
	// with a *RefusedError wrapping an *ExistsError that names the mapping
	// found, except when that mapping is the very one asked for (same
	// client, internal port, description and state), which Add renews.
	// With Any, a taken port makes Add look for another one instead.
	Replace bool
}

// Change lists the fields of a mapping to change; nil fields keep their
// current value.
type Change struct {
	ExternalPort   *uint16
	InternalPort   *uint16
	InternalClient *netip.Addr
	Description    *string
	Lease          *time.Duration
	Enabled        *bool
	// Replace lets an edit that moves the mapping to another external port
	// replace a mapping already there; without it the edit is refused with
	// an *ExistsError naming that mapping, and nothing changes.
	Replace bool
}

// apply returns m with c applied.
func (c Change) apply(m Mapping) Mapping {
	if c.ExternalPort != nil {
		m.ExternalPort = *c.ExternalPort
	}
	if c.InternalPort != nil {
		m.InternalPort = *c.InternalPort
	}
	if c.InternalClient != nil {
		m.InternalClient = c.InternalClient.String()
	}
	if c.Description != nil {
		m.Description = *c.Description
	}
	if c.Lease != nil {
		m.Lease = *c.Lease
		m.Permanent = *c.Lease == 0
	}
	if c.Enabled != nil {
		m.Enabled = *c.Enabled
	}
	return m
}

// Info is what a gateway tells about itself. Fields a protocol does not
// provide are left empty.
type Info struct {
	Method           Method   `json:"method"`
	FriendlyName     string   `json:"friendly_name,omitempty"`
	Manufacturer     string   `json:"manufacturer,omitempty"`
	ManufacturerURL  string   `json:"manufacturer_url,omitempty"`
	ModelName        string   `json:"model_name,omitempty"`
	ModelNumber      string   `json:"model_number,omitempty"`
	ModelDescription string   `json:"model_description,omitempty"`
	SerialNumber     string   `json:"serial_number,omitempty"`
	UDN              string   `json:"udn,omitempty"`
	PresentationURL  string   `json:"presentation_url,omitempty"`
	Location         string   `json:"location,omitempty"`
	ControlURL       string   `json:"control_url,omitempty"`
	ServiceType      string   `json:"service_type,omitempty"`
	Services         []string `json:"services,omitempty"`
	// ConnectionStatus is UPnP's GetStatusInfo answer ("Connected", ...).
	ConnectionStatus string        `json:"connection_status,omitempty"`
	Uptime           time.Duration `json:"-"`
	UptimeSeconds    int64         `json:"uptime_seconds,omitempty"`
	ConnectionType   string        `json:"connection_type,omitempty"`
	LinkType         string        `json:"link_type,omitempty"`
	LinkStatus       string        `json:"link_status,omitempty"`
	UpstreamBps      uint64        `json:"upstream_bps,omitempty"`
	DownstreamBps    uint64        `json:"downstream_bps,omitempty"`
	// Server is the NAT-PMP server address.
	Server string `json:"server,omitempty"`
	// Epoch is NAT-PMP's seconds-since-start-of-epoch.
	Epoch      uint32     `json:"epoch,omitempty"`
	ExternalIP netip.Addr `json:"external_ip,omitzero"`
	// Connected is true when the gateway reported an external address
	// (not 0.0.0.0) and, if it reports one, the connection status
	// "Connected".
	Connected bool `json:"connected"`
	// Problem says why it is not connected, or which request failed and
	// what the router answered; "" when all is well. Optional actions
	// (GetStatusInfo, GetConnectionTypeInfo, WANCommonInterfaceConfig)
	// that fail leave their fields empty and are no problem.
	Problem string `json:"problem,omitempty"`
}

// Gateway is a router reached through one protocol.
//
// The gateways Discover returns are safe for concurrent use: any of their
// methods may be called from several goroutines at once (a web UI adding a
// mapping while it reads the external address, say). Each request is
// carried out whole; a NAT-PMP gateway sends one request at a time, as RFC
// 6886 asks, and queues the others.
type Gateway interface {
	// Method is the protocol used.
	Method() Method
	// Addr is a short identifier: the control URL for UPnP, host:port for
	// NAT-PMP and PCP.
	Addr() string
	// ExternalIP returns the gateway's external address.
	ExternalIP(ctx context.Context) (netip.Addr, error)
	// Info returns the device details the protocol can give. It fails
	// only when the context ends: what the gateway would not tell is left
	// empty, and Info.Problem says what failed.
	Info(ctx context.Context) (Info, error)
	// List returns the gateway's mappings; progress, when non-nil, is called
	// with the number read so far. A protocol that cannot list returns
	// ErrNotSupported.
	List(ctx context.Context, progress func(n int)) ([]Mapping, error)
	// Add creates a mapping and returns it as the gateway granted it (see
	// Mapping). It never replaces another mapping unless r.Replace is set
	// (see Request.Replace).
	Add(ctx context.Context, r Request) (Mapping, error)
	// Edit changes the mapping at key, atomically from the caller's view:
	// it reads the current entry, applies c, and if the new mapping cannot
	// be made, restores the old one. It returns the new mapping as the
	// gateway granted it.
	Edit(ctx context.Context, key Key, c Change) (Mapping, error)
	// Delete removes the mapping at key.
	Delete(ctx context.Context, key Key) error
	// DeleteRange removes every mapping of proto whose external port is in
	// [start, end] and returns those really removed: read from the router
	// before and after where it can list (UPnP), from this host's records
	// otherwise (NAT-PMP, PCP). An error may come with the ones removed
	// before it.
	DeleteRange(ctx context.Context, proto Protocol, start, end uint16) ([]Mapping, error)
	// LocalAddr is this host's address on the interface that reaches the gateway.
	LocalAddr() netip.Addr
}

// ErrNotSupported is returned for an operation the gateway's protocol has no
// way to do (listing over NAT-PMP, remote-host restrictions, ...).
var ErrNotSupported = errors.New("not supported by this protocol")

// ErrNoGateway is returned by Discover when nothing answered.
var ErrNoGateway = errors.New("no gateway found")

// RefusedError is a refusal of a request: the gateway's, with the
// protocol's own code (UPnP error code, NAT-PMP or PCP result code), or
// portfwd's own (Code 0) when carrying the request out would have replaced
// an existing mapping (Err wraps an *ExistsError) or the router ignored
// part of it (Err wraps an *IgnoredError). Text is a sentence for the user.
type RefusedError struct {
	Method Method
	Code   int
	// Text is what the user should read: what happened and what to do.
	Text string
	Err  error
}

func (e *RefusedError) Error() string { return e.Text }
func (e *RefusedError) Unwrap() error { return e.Err }

// Transient reports whether the same request may succeed later without
// anything changing on this side: the router is short of resources or its
// WAN link is down (UPnP 501 ActionFailed, 728 NoPortMapsAvailable; NAT-PMP
// network failure and out of resources; PCP's short-lifetime errors).
// Every other refusal is permanent: asking again gets the same answer
// (606 not authorized, 718 a port held by another host, NAT-PMP refused,
// PCP NOT_AUTHORIZED or UNSUPP_*, and portfwd's own refusals).
func (e *RefusedError) Transient() bool {
	switch e.Method {
	case UPnP:
		// 701: no room for another IPv6 pinhole, for now.
		return e.Code == 501 || e.Code == 728 || e.Code == 701
	case NATPMP:
		return e.Code == int(natpmp.NetworkFailure) || e.Code == int(natpmp.OutOfResources)
	case PCP:
		var re *pcp.ResultError
		if errors.As(e.Err, &re) {
			return re.Transient()
		}
	}
	return false
}

// ExistsError is portfwd's refusal to replace a mapping that already
// holds the external port asked for (or, on NAT-PMP and PCP, the internal
// port: those protocols keep one mapping per internal port). It comes
// wrapped in a *RefusedError.
type ExistsError struct {
	// Key is the mapping asked for.
	Key Key
	// Existing is the mapping found, as the router (UPnP) or this host's
	// records (NAT-PMP, PCP) have it.
	Existing Mapping
	// KeptBy is the process keeping Existing open, when a Keeper does.
	KeptBy *Process
}

func (e *ExistsError) Error() string {
	x := e.Existing
	s := fmt.Sprintf("port %d/%s is already mapped to %s", x.ExternalPort, x.Protocol,
		net.JoinHostPort(x.InternalClient, strconv.Itoa(int(x.InternalPort))))
	if x.Description != "" {
		s += fmt.Sprintf(" (%q)", x.Description)
	}
	if e.KeptBy != nil {
		s += fmt.Sprintf(", kept open by portfwd keep (process %d)", e.KeptBy.PID)
	}
	if x.ExternalPort != e.Key.ExternalPort {
		s = fmt.Sprintf("internal port %d/%s is already mapped, at external port %d/%s to %s", x.InternalPort, x.Protocol,
			x.ExternalPort, x.Protocol, net.JoinHostPort(x.InternalClient, strconv.Itoa(int(x.InternalPort))))
		if x.Description != "" {
			s += fmt.Sprintf(" (%q)", x.Description)
		}
		s += fmt.Sprintf("; %s keeps one mapping per internal port", x.Method.Name())
	}
	return s
}

// IgnoredError reports that the router accepted a change but did not make
// it: reading the mapping back shows a field other than the one asked for.
// Mapping is the mapping as the router holds it now. It comes wrapped in a
// *RefusedError.
type IgnoredError struct {
	Mapping Mapping
	// Field is the field ignored ("enabled", "internal client", ...), with
	// the value asked for and the value the router holds.
	Field, Asked, Got string
}

func (e *IgnoredError) Error() string {
	return fmt.Sprintf("the router accepted %s=%s for port %d/%s but holds %s=%s", e.Field, e.Asked,
		e.Mapping.ExternalPort, e.Mapping.Protocol, e.Field, e.Got)
}

// Name is the method's name as users know it: "UPnP", "NAT-PMP", "PCP".
func (m Method) Name() string {
	switch m {
	case UPnP:
		return "UPnP"
	case NATPMP:
		return "NAT-PMP"
	case PCP:
		return "PCP"
	}
	return string(m)
}
