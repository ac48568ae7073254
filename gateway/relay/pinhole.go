package relay

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sort"

	"github.com/portfwd/portfwd/gateway"
	"github.com/portfwd/portfwd/internal/netroute"
)

// IPv6 pinholes.
//
// A relay cannot open the router's firewall, so it serves a pinhole the
// only way a userspace program can: it listens on the router's external
// IPv6 addresses (Config.PinholeAddrs) at the pinhole's port and relays
// what arrives there to the LAN host's address and the same port, as it
// relays an IPv4 port mapping. Peers on the Internet reach the pinhole at
// the router's address, not at the LAN host's own (which the router's
// firewall, if any, still filters), and the LAN host sees the relay's
// connections, not the peers' addresses.
//
// One port is one pinhole: two pinholes of one protocol and port (two
// hosts, or one host with two remote filters) would need the same
// listener, and the second is refused with a *PinholeConflictError.

// pinhole is one relayed pinhole: a forward per listening address.
type pinhole struct {
	rule gateway.PinholeRule
	fwds []*forward
}

func (p *pinhole) stop(ctx context.Context) error {
	var errs []error
	for _, f := range p.fwds {
		errs = append(errs, f.stop(ctx))
	}
	return errors.Join(errs...)
}

// PinholeConflictError is returned by AddPinhole when the protocol and
// port are already relayed for another pinhole. (A port the gateway
// uses otherwise, a port mapping bound on an IPv6 address included, is a
// *PortInUseError.)
type PinholeConflictError struct {
	Protocol gateway.Protocol
	Port     uint16
	Holder   string // what holds the port
}

func (e *PinholeConflictError) Error() string {
	return fmt.Sprintf("port %d/%s is already relayed for %s: the relay backend listens on the router's address, where one port serves one pinhole; use the nft backend for pinholes that share a port", e.Port, e.Protocol, e.Holder)
}

// Is makes errors.Is match gateway.ErrPinholeSpace: no pinhole can be
// made there (UPnP 701 PinholeSpaceExhausted, PCP NO_RESOURCES).
func (e *PinholeConflictError) Is(target error) bool { return target == gateway.ErrPinholeSpace }

var _ gateway.PinholeBackend = (*Relay)(nil)

// AddPinhole implements gateway.PinholeBackend: it listens on every
// pinhole address at r's internal port and relays to r's internal
// address and port, admitting only r's remote host and port when set.
// Adding a pinhole already relayed is a renewal and changes nothing (the
// relay has no timeout of its own: it ends with the daemon). A pinhole
// on a port another pinhole relays is refused with a *PinholeConflictError,
// one the gateway uses otherwise with a *PortInUseError.
func (r *Relay) AddPinhole(ctx context.Context, rule gateway.PinholeRule) error {
	rule.Timeout = 0
	rule.InternalAddr = rule.InternalAddr.WithZone("")
	rule.RemoteHost = rule.RemoteHost.WithZone("")
	if rule.RemoteHost.IsUnspecified() {
		rule.RemoteHost = netip.Addr{}
	}
	if rule.Protocol != gateway.TCP && rule.Protocol != gateway.UDP {
		return fmt.Errorf("relay: pinhole %v: only TCP and UDP can be relayed", rule)
	}
	if rule.InternalPort == 0 {
		return fmt.Errorf("relay: pinhole %v: the port must be non-zero", rule)
	}
	if !rule.InternalAddr.Is6() || rule.InternalAddr.Is4In6() || rule.InternalAddr.IsUnspecified() {
		return fmt.Errorf("relay: pinhole %v: the internal address must be an IPv6 address", rule)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return errors.New("relay: closed")
	}
	k := key{rule.Protocol, rule.InternalPort}
	if p := r.pins[k]; p != nil {
		if p.rule.PinholeKey == rule.PinholeKey {
			return nil
		}
		return &PinholeConflictError{Protocol: rule.Protocol, Port: rule.InternalPort, Holder: "the pinhole " + p.rule.String()}
	}
	addrs := r.pinholeAddrs()
	for _, a := range addrs {
		if rule.InternalAddr == a || a.IsUnspecified() && netroute.IsLocalAddr(rule.InternalAddr) {
			return fmt.Errorf("relay: pinhole %v points at an address the relay listens on and would loop: the internal host must be another host", rule)
		}
	}
	fr := gateway.Rule{Protocol: rule.Protocol, ExternalPort: rule.InternalPort, InternalAddr: rule.InternalAddr,
		InternalPort: rule.InternalPort, RemoteHost: rule.RemoteHost}
	p := &pinhole{rule: rule}
	for _, a := range addrs {
		f, err := r.listen(ctx, a, fr, rule.RemotePort)
		if err != nil {
			p.stop(ctx)
			return fmt.Errorf("relay: pinhole %v: %w", rule, err)
		}
		p.fwds = append(p.fwds, f)
	}
	for _, f := range p.fwds {
		f.start()
	}
	r.pins[k] = p
	r.log.Info("relaying pinhole", "pinhole", rule.String(), "on", addrs)
	return nil
}

// DeletePinhole implements gateway.PinholeBackend: it closes the
// listeners of the pinhole with r's key and ends its flows, returning once
// they are gone (or ctx is done). Deleting a pinhole not relayed is not an
// error.
func (r *Relay) DeletePinhole(ctx context.Context, rule gateway.PinholeRule) error {
	r.mu.Lock()
	k := key{rule.Protocol, rule.InternalPort}
	p := r.pins[k]
	if p == nil || p.rule.PinholeKey != rule.PinholeKey {
		r.mu.Unlock()
		return nil
	}
	delete(r.pins, k)
	r.mu.Unlock()
	return p.stop(ctx)
}

// PinholePackets implements gateway.PinholeBackend: a relay counts no
// packets (counted is false).
func (r *Relay) PinholePackets(ctx context.Context, rule gateway.PinholeRule) (uint64, bool, error) {
	return 0, false, nil
}

// Pinholes returns the pinholes being relayed, sorted.
func (r *Relay) Pinholes() []gateway.PinholeRule {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]gateway.PinholeRule, 0, len(r.pins))
	for _, p := range r.pins {
		out = append(out, p.rule)
	}
	// sort.Slice, not slices.SortFunc: one sort routine in the router
	// build, not one more per element type (about 12 KB on mipsle).
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if c := a.InternalAddr.Compare(b.InternalAddr); c != 0 {
			return c < 0
		}
		if a.InternalPort != b.InternalPort {
			return a.InternalPort < b.InternalPort
		}
		return a.Protocol < b.Protocol
	})
	return out
}

// PinholeAddrs returns the addresses pinholes are listened on.
func (r *Relay) PinholeAddrs() []netip.Addr { return slices.Clone(r.pinholeAddrs()) }

func (r *Relay) pinholeAddrs() []netip.Addr {
	if len(r.cfg.PinholeAddrs) == 0 {
		return []netip.Addr{netip.IPv6Unspecified()}
	}
	return r.cfg.PinholeAddrs
}
