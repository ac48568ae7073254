package portmap

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
)

// HostAddr6 is one IPv6 address of this host, with what the kernel says of
// it (Linux; elsewhere the flags are unknown and false).
type HostAddr6 struct {
	Addr  netip.Addr
	Iface string
	// Temporary is a privacy address (RFC 8981): it is deprecated after
	// about a day and removed within a week, and a pinhole made for it
	// breaks silently then.
	Temporary bool
	// Deprecated addresses (preferred lifetime over) are still valid but
	// no longer chosen for new connections.
	Deprecated bool
	// Tentative addresses are still in duplicate address detection: bind
	// fails on them. DADFailed ones are unusable.
	Tentative, DADFailed bool
	// FlagsKnown is true when the flags above come from the kernel.
	FlagsKnown bool
}

// pinholeCandidate reports whether a is an address a pinhole can be for:
// unicast, of global scope (ULA allowed), usable now.
func (a HostAddr6) pinholeCandidate() bool {
	ip := a.Addr
	return ip.Is6() && !ip.Is4In6() && ip.IsGlobalUnicast() && !ip.IsLinkLocalUnicast() &&
		!a.Tentative && !a.DADFailed
}

// isULA reports whether a is a unique local address (fc00::/7), which is
// not reachable from the Internet.
func isULA(a netip.Addr) bool { return a.Is6() && a.As16()[0]&0xfe == 0xfc }

// ChooseAddr6 picks the address a pinhole is for by default: a stable
// global address, preferably on the interface iface (the one towards the
// gateway; "" for any). Temporary (privacy) addresses are skipped, since a
// pinhole for one breaks when it rotates; deprecated ones and ULAs come
// last. It returns the address and one sentence saying why it was chosen.
func ChooseAddr6(addrs []HostAddr6, iface string) (HostAddr6, string, error) {
	var cands []HostAddr6
	for _, a := range addrs {
		if a.pinholeCandidate() {
			cands = append(cands, a)
		}
	}
	if len(cands) == 0 {
		return HostAddr6{}, "", errors.New("this host has no global IPv6 address, so there is nothing to open a pinhole to; check that IPv6 is enabled on the LAN (router advertisements, DHCPv6)")
	}
	rank := func(a HostAddr6) int {
		r := 0
		if isULA(a.Addr) {
			r += 8
		}
		if a.Temporary {
			r += 4
		}
		if a.Deprecated {
			r += 2
		}
		if iface != "" && a.Iface != iface {
			r++
		}
		return r
	}
	// Stable sort: among equals the kernel's order (the oldest first).
	slices.SortStableFunc(cands, func(a, b HostAddr6) int { return rank(a) - rank(b) })
	best := cands[0]
	why := fmt.Sprintf("the stable global address %v of %s", best.Addr, best.Iface)
	switch {
	case isULA(best.Addr):
		why = fmt.Sprintf("%v of %s, a unique local address (no global one): not reachable from the Internet", best.Addr, best.Iface)
	case best.Temporary:
		why = fmt.Sprintf("the temporary address %v of %s (no stable one): the pinhole breaks when it rotates", best.Addr, best.Iface)
	case best.Deprecated:
		why = fmt.Sprintf("the deprecated address %v of %s (no preferred one)", best.Addr, best.Iface)
	case !best.FlagsKnown:
		why = fmt.Sprintf("the global address %v of %s (whether it is temporary is unknown here)", best.Addr, best.Iface)
	}
	if n := countTemporary(addrs); n > 0 && !best.Temporary {
		why += fmt.Sprintf("; %d temporary address(es) skipped, pass --client to choose one", n)
	}
	return best, why, nil
}

func countTemporary(addrs []HostAddr6) int {
	n := 0
	for _, a := range addrs {
		if a.Temporary && a.pinholeCandidate() {
			n++
		}
	}
	return n
}

// OwnAddr6 checks that a is one of this host's addresses, which a pinhole
// must be for: routers open a pinhole only to the address the request
// comes from (miniupnpd: 606; PCP: ADDRESS_MISMATCH).
func OwnAddr6(addrs []HostAddr6, a netip.Addr) (HostAddr6, error) {
	for _, h := range addrs {
		if h.Addr == a.WithZone("") {
			if h.Tentative || h.DADFailed {
				return HostAddr6{}, fmt.Errorf("%v is still in duplicate address detection (or failed it); wait a moment, or choose another address", a)
			}
			return h, nil
		}
	}
	return HostAddr6{}, fmt.Errorf("%v is not an address of this host: a router opens a pinhole only to the address the request comes from; run the command on that host", a)
}

// interfaceAddrs6 is the portable fallback: addresses without flags.
func interfaceAddrs6() ([]HostAddr6, error) {
	ifis, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	var out []HostAddr6
	for _, ifi := range ifis {
		if ifi.Flags&net.FlagUp == 0 {
			continue
		}
		addrs, err := ifi.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			ipn, ok := a.(*net.IPNet)
			if !ok || ipn.IP.To4() != nil {
				continue
			}
			ip, ok := netip.AddrFromSlice(ipn.IP)
			if !ok {
				continue
			}
			out = append(out, HostAddr6{Addr: ip, Iface: ifi.Name})
		}
	}
	return out, nil
}
