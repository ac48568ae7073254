package daemon

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/portfwd/portfwd/gateway"
)

// ownPorts are the ports the gateway itself serves: no mapping may take
// one, or a LAN client could shadow the gateway's own service from the
// WAN side. They are reserved on top of policy.reserved, whatever it says.
// (Ports other programs on the router listen on are kept off by the
// core's ListeningPorts check, see listeners_linux.go.)
func (c *Config) ownPorts() []gateway.PortSpec {
	var out []gateway.PortSpec
	add := func(p gateway.Protocol, port int) {
		if port > 0 && port <= 65535 {
			out = append(out, gateway.PortSpec{Protocol: p, Ports: gateway.PortRange{Min: uint16(port), Max: uint16(port)}})
		}
	}
	if c.UPnP.Enabled {
		add(gateway.TCP, c.UPnP.HTTPPort)
		if c.UPnP.SSDP {
			add(gateway.UDP, 1900)
		}
	}
	if c.NATPMP.Enabled {
		add(gateway.UDP, c.NATPMP.Port)
	}
	if ap, err := netip.ParseAddrPort(c.Admin.Address); err == nil {
		add(gateway.TCP, int(ap.Port()))
	}
	return out
}

// effectivePolicy is the core's policy: the configured one, with the
// gateway's own ports reserved.
func (c *Config) effectivePolicy() (gateway.Policy, error) {
	p, err := c.Policy.Policy()
	if err != nil {
		return p, err
	}
	p.Reserved = append(p.Reserved, c.ownPorts()...)
	p.DisablePinholes = !c.IPv6.Pinholes
	p.MaxPinholes = c.IPv6.MaxPinholes
	p.MaxPinholesPerClient = c.IPv6.MaxPerClient
	p.MinPinholeLease = time.Duration(c.IPv6.MinLease)
	p.MaxPinholeLease = time.Duration(c.IPv6.MaxLease)
	if err := p.Validate(); err != nil {
		return p, fmt.Errorf("ipv6: %w", err)
	}
	return p, nil
}

// PolicySummary says, one sentence a line, which policy is in force: what
// --check prints, the log says at start and the admin page shows.
func (c *Config) PolicySummary() []string {
	p := c.Policy
	var out []string
	if p.SecureMode {
		out = append(out, "secure mode: a client may map ports only to itself, and change or delete only its own mappings")
	} else {
		out = append(out, "secure mode is OFF: any LAN client may map ports to any other host and delete any client's mappings")
	}
	switch {
	case slices.Equal(p.Rules, DefaultRules):
		out = append(out, "ports: external and internal ports 1024-65535 only (the default rules, as miniupnpd and LuCI ship them); ports below 1024 need an allow rule")
	case len(p.Rules) == 0:
		out = append(out, "ports: no permission rules, so any port may be mapped (set policy.rules to restrict them)")
	default:
		out = append(out, "ports: rules in order, first match decides, no match denies: "+strings.Join(p.Rules, "; "))
	}
	var own []string
	for _, s := range c.ownPorts() {
		own = append(own, s.Protocol.String()+" "+s.Ports.String())
	}
	never := "never mapped: any port the router itself listens on from outside"
	if len(own) > 0 {
		never += ", the gateway's own ports (" + strings.Join(own, ", ") + ")"
	}
	if len(p.Reserved) > 0 {
		never += ", and the reserved " + strings.Join(p.Reserved, ", ")
	}
	out = append(out, never)
	perClient, total := "no limit per client", "no limit in all"
	if p.MaxPerClient > 0 {
		perClient = "at most " + strconv.Itoa(p.MaxPerClient) + " mappings per client"
	}
	if p.MaxMappings > 0 {
		total = strconv.Itoa(p.MaxMappings) + " in all"
	}
	out = append(out, "quotas: "+perClient+", "+total)
	lease := func(d Duration) string {
		if d <= 0 {
			return "unbounded"
		}
		return d.String()
	}
	leases := fmt.Sprintf("leases: from %s to %s", lease(p.MinLease), lease(p.MaxLease))
	if p.MaxLease > 0 {
		leases += "; a request for a permanent mapping gets " + lease(p.MaxLease)
	}
	out = append(out, leases)
	if p.ListOwnOnly {
		out = append(out, "listings show each client only its own mappings")
	}
	out = append(out, c.pinholeSummary())
	return out
}

// pinholeSummary is PolicySummary's line about IPv6 pinholes.
func (c *Config) pinholeSummary() string {
	if !c.IPv6.Pinholes {
		return "IPv6 pinholes: not allowed (ipv6.pinholes = false)"
	}
	who := "a client may open them only to its own host's addresses (any of them)"
	if !c.Policy.SecureMode {
		who = "any client may open them to any LAN address (secure mode is off)"
	}
	ports := "ports 1024-65535 (no IPv6 permission rule)"
	for _, line := range c.Policy.Rules {
		if r, err := gateway.ParsePermRule(line); err == nil && r.Client.Addr().Is6() {
			ports = "ports as the IPv6 permission rules say"
			break
		}
	}
	lo, hi := time.Second, gateway.MaxPinholeLease
	if d := time.Duration(c.IPv6.MinLease); d > lo {
		lo = d
	}
	if d := time.Duration(c.IPv6.MaxLease); d > 0 && d < hi {
		hi = d
	}
	return fmt.Sprintf("IPv6 pinholes: %s; %s; leases from %s to %s", who, ports, Duration(lo), Duration(hi))
}
