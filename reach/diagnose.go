package reach

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/portfwd/portfwd/portmap"
)

// Facts are what the router said, gathered around a check, for Diagnose.
// Leave unknown fields zero.
type Facts struct {
	// GatewayErr is why no gateway could be asked, if none was.
	GatewayErr error
	// ExternalIP is the router's external address as it reports it.
	ExternalIP netip.Addr
	// LocalAddr is this host's address towards the router: where a
	// mapping for this check should point.
	LocalAddr netip.Addr
	// Listed is true when the router's mapping table was read, so that
	// a nil Mapping means there is none.
	Listed bool
	// ListErr is why the table could not be read, e.g.
	// portmap.ErrNotSupported over NAT-PMP.
	ListErr error
	// Mapping is the router's mapping of the checked external port and
	// protocol, when listed and found.
	Mapping *portmap.Mapping
}

// Diagnose says why a check came out as it did, in a sentence that tells
// the user what to do. For a reachable result it is the result's own
// Reason. The causes are tried from the most certain (the router has no
// mapping) to the least (a firewall, inferred from dropped packets).
func Diagnose(r Result, f Facts) string {
	if r.Reachable {
		return r.Reason
	}
	key := fmt.Sprintf("%d/%s", r.ExternalPort, strings.ToUpper(r.Protocol))
	if f.Listed && f.Mapping == nil {
		return fmt.Sprintf("the router has no mapping for external port %s: add one with 'portfwd add %d --external %d --proto %s'",
			key, r.InternalPort, r.ExternalPort, r.Protocol)
	}
	if m := f.Mapping; m != nil {
		client, _ := netip.ParseAddr(m.InternalClient)
		switch {
		case f.LocalAddr.IsValid() && client.IsValid() && client.Unmap() != f.LocalAddr.Unmap():
			return fmt.Sprintf("the router forwards %s to %s, not to this host (%v): change it with 'portfwd edit %s --client %v'",
				key, netip.AddrPortFrom(client, m.InternalPort), f.LocalAddr, strings.ToLower(key), f.LocalAddr)
		case m.InternalPort != r.InternalPort:
			return fmt.Sprintf("the router forwards %s to port %d, not %d: change it with 'portfwd edit %s --internal %d'",
				key, m.InternalPort, r.InternalPort, strings.ToLower(key), r.InternalPort)
		case !m.Enabled:
			return fmt.Sprintf("the router's mapping for %s is disabled: enable it with 'portfwd edit %s --enabled=true'", key, strings.ToLower(key))
		}
	}
	if s := doubleNAT(r, f); s != "" {
		return s
	}
	unknown := ""
	switch {
	case f.GatewayErr != nil:
		unknown = fmt.Sprintf(" (no router could be asked whether it forwards the port: %v)", f.GatewayErr)
	case errors.Is(f.ListErr, portmap.ErrNotSupported):
		unknown = fmt.Sprintf(" (the router's protocol cannot list mappings, so whether it has one for this port is unknown: if you have not made one, run 'portfwd add %d --external %d --proto %s')",
			r.InternalPort, r.ExternalPort, r.Protocol)
	case f.ListErr != nil:
		unknown = fmt.Sprintf(" (the router's mappings could not be read: %v)", f.ListErr)
	}
	mapped := f.Mapping != nil
	switch r.Code {
	case CodeRefused:
		if mapped {
			return "the connection was refused although the router has a mapping for " + key +
				": this host's firewall rejects the port (allow it in ufw, firewalld or nftables), or the router does not apply its mapping"
		}
		return "the connection was refused: the router does not forward " + key + ", or a firewall rejects it" + unknown
	case CodeTimeout:
		if mapped {
			return "nothing came back, although the router has a mapping for " + key +
				": a firewall drops the probe, on this host (allow the port in ufw, firewalld or nftables) or on the router, or the router does not apply its mapping"
		}
		return "nothing came back: the router does not forward " + key + ", or a firewall drops it" + unknown
	case CodeMismatch:
		if r.Listener == ListenerTemporary {
			return "another program answered on " + key +
				" instead of this host: the router itself uses the port, or forwards it to another machine" + unknown
		}
	case CodeUnreachable:
		return "the probe server has no route to this network's address: " + r.Reason
	}
	return r.Reason + unknown
}

// doubleNAT explains a failure by a NAT in front of the router, or "".
func doubleNAT(r Result, f Facts) string {
	if !f.ExternalIP.IsValid() {
		return ""
	}
	ext := f.ExternalIP.Unmap()
	switch c := portmap.Classify(ext); c {
	case portmap.AddrPrivate, portmap.AddrCGNAT, portmap.AddrUnspecified, portmap.AddrLoopback, portmap.AddrLinkLocal, portmap.AddrReserved:
		return "not reachable because " + c.Warning()
	}
	if seen := r.Address.Addr(); seen.IsValid() && seen.Unmap() != ext {
		return fmt.Sprintf("the probe server saw this network at %v, but the router says its external address is %v: another NAT sits between the router and the Internet (double NAT or carrier-grade NAT) and does not forward the port; forward it on the outer router too, or ask the ISP for a public address",
			seen, ext)
	}
	return ""
}
