package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/portfwd/portfwd/gateway"
	"github.com/portfwd/portfwd/igd"
	"github.com/portfwd/portfwd/upnp"
)

// firewallService is the igd.FirewallService of the daemon: UPnP
// WANIPv6FirewallControl:1 onto the core's pinhole table. The igd server
// has validated the arguments (IPv6 literals, ports, protocol numbers,
// leases of 1..86400 s) and passes the TCP peer as client.
type firewallService struct {
	core *gateway.Core
	// filtering is FirewallEnabled: the router filters inbound IPv6
	// (ipv6.firewall).
	filtering bool
	metrics   *metrics
}

var _ igd.FirewallService = (*firewallService)(nil)

func (s *firewallService) requester(client netip.Addr) gateway.Requester {
	return gateway.Requester{Addr: client, Source: gateway.SourceUPnP}
}

// FirewallStatus: enabled as configured; pinholes allowed when the policy
// allows them and the backend can open them.
func (s *firewallService) FirewallStatus(context.Context) (bool, bool) {
	return s.filtering, s.core.PinholesAllowed()
}

// fault turns a core error into the WANIPv6FirewallControl fault.
func (s *firewallService) fault(err error) error {
	if err == nil {
		return nil
	}
	if s.metrics != nil {
		s.metrics.countErr(err)
	}
	code := firewallCode(err)
	return fmt.Errorf("%w: %w", &upnp.Error{Code: code}, err)
}

// firewallCode is the table in docs/gateway.md ("IPv6 pinholes").
func firewallCode(err error) int {
	switch {
	case errors.Is(err, gateway.ErrPinholesDisabled):
		return 703 // InboundPinholeNotAllowed
	case errors.Is(err, gateway.ErrPinholeSpace):
		return 701 // PinholeSpaceExhausted
	case errors.Is(err, gateway.ErrNoSuchPinhole):
		return 704 // NoSuchEntry
	case errors.Is(err, gateway.ErrProtocolNotSupported):
		return 705 // ProtocolNotSupported
	case errors.Is(err, gateway.ErrWildcardInternalPort):
		return 706 // InternalPortWildcardingNotAllowed
	case errors.Is(err, gateway.ErrNotAuthorized):
		return igd.CodeActionNotAuthorized
	case errors.Is(err, gateway.ErrInvalidArgs):
		return igd.CodeInvalidArgs
	}
	return igd.CodeActionFailed
}

func (s *firewallService) AddPinhole(ctx context.Context, client netip.Addr, p igd.Pinhole) (uint16, error) {
	got, err := s.core.AddPinhole(ctx, s.requester(client), gateway.Pinhole{
		Protocol:     gateway.Protocol(p.Protocol),
		InternalAddr: p.InternalClient,
		InternalPort: p.InternalPort,
		RemoteHost:   p.RemoteHost,
		RemotePort:   p.RemotePort,
		Description:  "UPnP pinhole",
	}, p.Lease)
	if err != nil {
		return 0, s.fault(err)
	}
	return got.ID, nil
}

func (s *firewallService) UpdatePinhole(ctx context.Context, client netip.Addr, id uint16, lease time.Duration) error {
	_, err := s.core.UpdatePinhole(ctx, s.requester(client), id, lease)
	return s.fault(err)
}

func (s *firewallService) DeletePinhole(ctx context.Context, client netip.Addr, id uint16) error {
	return s.fault(s.core.DeletePinhole(ctx, s.requester(client), id))
}

func (s *firewallService) PinholePackets(ctx context.Context, client netip.Addr, id uint16) (uint64, bool, error) {
	n, counted, err := s.core.PinholePackets(ctx, s.requester(client), id)
	return n, counted, s.fault(err)
}

// OutboundPinholeTimeout is the kernel's conntrack idle timeout for the
// protocol: how long an outbound flow stays open without traffic, which is
// what an application sizes its keep-alives by. miniupnpd answers 501
// (not implemented).
func (s *firewallService) OutboundPinholeTimeout(_ context.Context, _ netip.Addr, p igd.Pinhole) (time.Duration, error) {
	switch p.Protocol {
	case 6:
		return conntrackTimeout("nf_conntrack_tcp_timeout_established", 432000), nil
	case 17:
		return conntrackTimeout("nf_conntrack_udp_timeout", 30), nil
	}
	return 0, fmt.Errorf("%w: the firewall keeps outbound flows of TCP and UDP only",
		&upnp.Error{Code: 705})
}

// conntrackTimeout reads a netfilter timeout sysctl of this network
// namespace, or returns the kernel's default when it cannot.
func conntrackTimeout(name string, def int) time.Duration {
	b, err := os.ReadFile("/proc/sys/net/netfilter/" + name)
	if err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && n > 0 {
			return time.Duration(n) * time.Second
		}
	}
	return time.Duration(def) * time.Second
}

// sameLANHost is the core's Config.SameHost: two IPv6 addresses with the
// same link-layer address on the same internal interface (neigh.go).
func (d *Daemon) sameLANHost(requester, target netip.Addr) bool {
	return sameHost(d.internalIndexes(), requester, target, true)
}

// sameLANHostNow is sameLANHost without waiting for neighbour discovery:
// the core's Config.SameHostNow, for ownership checks.
func (d *Daemon) sameLANHostNow(requester, target netip.Addr) bool {
	return sameHost(d.internalIndexes(), requester, target, false)
}

// lanHostAddrs is the core's Config.HostAddrs: the other addresses of a's
// host in the neighbour table, for the per-host pinhole quota.
func (d *Daemon) lanHostAddrs(a netip.Addr) []netip.Addr {
	return hostAddrs(d.internalIndexes(), a)
}

func (d *Daemon) internalIndexes() map[int]bool {
	idx := map[int]bool{}
	for _, name := range d.cfg.Interfaces.Internal {
		if ifi, err := net.InterfaceByName(name); err == nil {
			idx[ifi.Index] = true
		}
	}
	return idx
}

// ipv6AddrsOf returns the global and unique-local IPv6 addresses of
// interface name: where the UPnP HTTP server listens for IPv6 control
// points (link-local addresses would need a zone in every URL).
func ipv6AddrsOf(name string) []netip.Addr {
	var out []netip.Addr
	for _, p := range ipv6IfPrefixes(name) {
		if a := p.Addr(); a.IsGlobalUnicast() && !a.IsLinkLocalUnicast() {
			out = append(out, a)
		}
	}
	return out
}

// ipv6PrefixesOf returns the on-link IPv6 prefixes of interface name
// (link-local included), for lanPeers.
func ipv6PrefixesOf(name string) []netip.Prefix {
	out := ipv6IfPrefixes(name)
	for i, p := range out {
		out[i] = p.Masked()
	}
	return out
}

// ipv6IfPrefixes returns the IPv6 addresses of interface name with their
// prefix lengths, as the kernel lists them; none when it is gone.
func ipv6IfPrefixes(name string) []netip.Prefix {
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return nil
	}
	addrs, err := ifi.Addrs()
	if err != nil {
		return nil
	}
	var out []netip.Prefix
	for _, ia := range addrs {
		if p, err := netip.ParsePrefix(ia.String()); err == nil && p.Addr().Is6() && !p.Addr().Is4In6() {
			out = append(out, p)
		}
	}
	return out
}

// hasIPv6LAN reports whether the UPnP server listens on an IPv6 address of
// an internal interface, which SSDP over IPv6 then advertises.
func (d *Daemon) hasIPv6LAN() bool {
	for _, h := range d.upnpSide.http {
		if h.addr.Addr().Is6() {
			return true
		}
	}
	return false
}
