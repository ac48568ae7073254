// Package portmap is portfwd's unified port-mapping client: it finds the
// gateway by every protocol at once (UPnP IGD over SSDP, NAT-PMP, later PCP),
// and gives one Gateway interface for reading its details and external
// address and for listing, adding, editing and deleting mappings, whatever
// protocol the router speaks.
//
// Discovery races the protocols and returns as soon as one usable gateway
// answers (or, with Options.Wait, collects every gateway until the context
// ends); nothing here waits a fixed window. Every call takes a context, and
// long work reports progress through a callback, so a caller is never
// blocked by a slow router.
package portmap

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"
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
type Mapping struct {
	Protocol       Protocol      `json:"protocol"`
	ExternalPort   uint16        `json:"external_port"`
	InternalClient string        `json:"internal_client"`
	InternalPort   uint16        `json:"internal_port"`
	Enabled        bool          `json:"enabled"`
	Description    string        `json:"description"`
	RemoteHost     string        `json:"remote_host"`
	Lease          time.Duration `json:"-"`
	// Permanent is true when the mapping has no lease (UPnP lease 0).
	Permanent bool `json:"permanent"`
	// ExternalAddr is the gateway's external address, when known.
	ExternalAddr netip.Addr `json:"external_addr,omitzero"`
	Method       Method     `json:"method"`
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

// Request describes a mapping to create.
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
	// protocol's recommended lifetime (2 h) on NAT-PMP.
	Lease       time.Duration
	Description string
	// Enabled defaults to true; set Disabled to add a disabled UPnP entry.
	Disabled bool
	// Any lets the gateway pick another external port when the wanted one
	// is taken (AddAnyPortMapping on IGDv2, a suggested port on NAT-PMP).
	Any bool
	// RemoteHost restricts the mapping to one remote address (UPnP only).
	RemoteHost string
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
}

// Gateway is a router reached through one protocol.
type Gateway interface {
	// Method is the protocol used.
	Method() Method
	// Addr is a short identifier: the control URL for UPnP, host:port for NAT-PMP.
	Addr() string
	// ExternalIP returns the gateway's external address.
	ExternalIP(ctx context.Context) (netip.Addr, error)
	// Info returns the device details the protocol can give.
	Info(ctx context.Context) (Info, error)
	// List returns the gateway's mappings; progress, when non-nil, is called
	// with the number read so far. A protocol that cannot list returns
	// ErrNotSupported.
	List(ctx context.Context, progress func(n int)) ([]Mapping, error)
	// Add creates a mapping and returns it as the gateway granted it.
	Add(ctx context.Context, r Request) (Mapping, error)
	// Edit changes the mapping at key, atomically from the caller's view:
	// it reads the current entry, applies c, and if the new mapping cannot
	// be made, restores the old one.
	Edit(ctx context.Context, key Key, c Change) (Mapping, error)
	// Delete removes the mapping at key.
	Delete(ctx context.Context, key Key) error
	// DeleteRange removes every mapping of proto whose external port is in
	// [start, end] and returns how many were removed when the protocol says.
	DeleteRange(ctx context.Context, proto Protocol, start, end uint16) (int, error)
	// LocalAddr is this host's address on the interface that reaches the gateway.
	LocalAddr() netip.Addr
}

// ErrNotSupported is returned for an operation the gateway's protocol has no
// way to do (listing over NAT-PMP, remote-host restrictions, ...).
var ErrNotSupported = errors.New("not supported by this protocol")

// ErrNoGateway is returned by Discover when nothing answered.
var ErrNoGateway = errors.New("no gateway found")

// RefusedError is a gateway's refusal of a request, with the protocol's own
// code (UPnP error code or NAT-PMP result code) and a sentence for the user.
type RefusedError struct {
	Method Method
	Code   int
	// Text is what the user should read: what happened and what to do.
	Text string
	Err  error
}

func (e *RefusedError) Error() string { return e.Text }
func (e *RefusedError) Unwrap() error { return e.Err }
