package reach

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

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

// RouterFacts asks the gateway g what Diagnose needs around a check of
// proto ("tcp" or "udp") port: its external address, and its mapping of
// the external port. With extPort 0, the external port is that of the
// router's mapping to port on this host (fromTable is then true), else
// port itself; ext is the port to check. timeout bounds each request (the
// table gets twenty times as long, for a large one); 0 means only ctx
// does. The router is context, not a precondition: what it does not
// answer is left unknown in the Facts.
func RouterFacts(ctx context.Context, g portmap.Gateway, proto string, port, extPort uint16, timeout time.Duration) (f Facts, ext uint16, fromTable bool) {
	bounded := func(n time.Duration) (context.Context, context.CancelFunc) {
		if timeout <= 0 {
			return context.WithCancel(ctx)
		}
		return context.WithTimeout(ctx, n*timeout)
	}
	f.LocalAddr = g.LocalAddr()
	rctx, cancel := bounded(1)
	ip, err := g.ExternalIP(rctx)
	cancel()
	if err == nil && ip.IsValid() {
		f.ExternalIP = ip
	}
	rctx, cancel = bounded(20)
	ms, err := g.List(rctx, nil)
	cancel()
	// A partial table (err with mappings) can still show the mapping, but
	// not its absence.
	f.Listed, f.ListErr = err == nil, err
	want := portmap.Protocol(strings.ToUpper(proto))
	ext = extPort
	if ext == 0 {
		for _, m := range ms {
			if m.Protocol == want && m.InternalPort == port && m.RemoteHost == "" && sameAddr(m.InternalClient, f.LocalAddr) {
				ext, fromTable = m.ExternalPort, true
				break
			}
		}
	}
	if ext == 0 {
		ext = port
	}
	for _, m := range ms {
		if m.Protocol == want && m.ExternalPort == ext && m.RemoteHost == "" {
			f.Mapping = &m
			break
		}
	}
	return f, ext, fromTable
}

func sameAddr(s string, a netip.Addr) bool {
	b, err := netip.ParseAddr(s)
	return err == nil && a.IsValid() && b.Unmap() == a.Unmap()
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

// Report is a check and what explains it: the probe's Result and
// Diagnose's sentence, given what the router said. The web UI shows it
// (its String is the one line the page shows; the JSON form carries the
// rest).
type Report struct {
	Result
	// Diagnosis is Diagnose's sentence: why the check came out as it did,
	// and what to do.
	Diagnosis string
}

// String says in one line whether the port is reachable, and why not.
func (r Report) String() string {
	switch {
	case r.Verified:
		return fmt.Sprintf("reachable: %v/%s leads to port %d on this host (probe %s)", r.Address, strings.ToLower(r.Protocol), r.InternalPort, r.Probe)
	case r.Reachable:
		return "reachable, unverified: " + r.Diagnosis
	}
	return "not reachable: " + r.Diagnosis
}

// CheckGateway checks from outside that externalPort reaches internalPort
// on this host (Check), and explains the outcome with what the gateway g
// says about the port (RouterFacts, then Diagnose). externalPort 0 means
// the one of g's mapping to internalPort, else internalPort. timeout
// bounds each request to g.
func (c *Checker) CheckGateway(ctx context.Context, g portmap.Gateway, proto string, internalPort, externalPort uint16, timeout time.Duration) (Report, error) {
	f, ext, _ := RouterFacts(ctx, g, proto, internalPort, externalPort, timeout)
	res, err := c.Check(ctx, proto, internalPort, ext)
	if err != nil {
		return Report{}, err
	}
	return Report{Result: res, Diagnosis: Diagnose(res, f)}, nil
}
