package ssdp

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"

	"golang.org/x/net/ipv6"
)

// SSDP over IPv6 (UDA 1.1 Annex A): the groups are ff02::c (link-local
// scope) and ff05::c (site-local), on port 1900. A search is sent on each
// interface separately (IPV6_MULTICAST_IF), since on a host with several
// interfaces the first ff00::/8 route would otherwise take every search;
// devices answer by unicast to the searcher's address and port.
const (
	LinkLocalGroup6 = "ff02::c"
	SiteLocalGroup6 = "ff05::c"
)

// Family selects the address families Search uses.
type Family int

const (
	// BothFamilies searches over IPv4 and IPv6 (the zero value).
	BothFamilies Family = iota
	// IPv4Only searches 239.255.255.250 only.
	IPv4Only
	// IPv6Only searches ff02::c and ff05::c only.
	IPv6Only
)

func (f Family) v4() bool { return f != IPv6Only }
func (f Family) v6() bool { return f != IPv4Only }

// searchHost6 is the HOST header of a search to an IPv6 group: the bracketed
// literal, upper case as miniupnpd writes it (UDA's examples do too).
func searchHost6(group string) string {
	if group == SiteLocalGroup6 {
		return "[FF05::C]:1900"
	}
	return "[FF02::C]:1900"
}

// multicastInterfaces6 resolves names, or picks every up, multicast-capable,
// non-loopback interface with an IPv6 address (link-local is enough) when
// names is empty. A named interface without IPv6 is skipped silently: IPv4
// may still serve it.
func multicastInterfaces6(names []string) ([]*net.Interface, error) {
	var cands []*net.Interface
	if len(names) > 0 {
		for _, n := range names {
			ifi, err := net.InterfaceByName(n)
			if err != nil {
				return nil, fmt.Errorf("ssdp: interface %q: %w", n, err)
			}
			cands = append(cands, ifi)
		}
	} else {
		ifis, err := net.Interfaces()
		if err != nil {
			return nil, fmt.Errorf("ssdp: listing interfaces: %w", err)
		}
		for i := range ifis {
			f := ifis[i].Flags
			if f&net.FlagUp == 0 || f&net.FlagMulticast == 0 || f&net.FlagLoopback != 0 {
				continue
			}
			cands = append(cands, &ifis[i])
		}
	}
	var out []*net.Interface
	for _, ifi := range cands {
		if ifi.Flags&net.FlagUp != 0 && hasIPv6(ifi) {
			out = append(out, ifi)
		}
	}
	return out, nil
}

func hasIPv6(ifi *net.Interface) bool {
	addrs, err := ifi.Addrs()
	if err != nil {
		return false
	}
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() == nil && len(ipn.IP) == net.IPv6len {
			return true
		}
	}
	return false
}

// hasGlobalIPv6 reports whether ifi has an IPv6 address of more than
// link-local scope, from which a search to ff05::c can leave.
func hasGlobalIPv6(ifi *net.Interface) bool {
	addrs, err := ifi.Addrs()
	if err != nil {
		return false
	}
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() == nil {
			if ip, ok := netip.AddrFromSlice(ipn.IP); ok && !ip.IsLinkLocalUnicast() && !ip.IsLoopback() {
				return true
			}
		}
	}
	return false
}

// openSearchConns6 opens one IPv6 socket per interface, [::]:0 with the
// interface as its multicast interface, searching ff02::c (from the
// link-local address, as UDA requires) and, where the interface has a
// global or ULA address, ff05::c. Interfaces that cannot be used are
// logged and skipped.
func openSearchConns6(ctx context.Context, names []string, log *slog.Logger) ([]*searchConn, []error) {
	ifis, err := multicastInterfaces6(names)
	if err != nil {
		return nil, []error{err}
	}
	var conns []*searchConn
	var errs []error
	for _, ifi := range ifis {
		var lc net.ListenConfig
		pc, err := lc.ListenPacket(ctx, "udp6", net.JoinHostPort("::", "0"))
		if err != nil {
			errs = append(errs, fmt.Errorf("ssdp: opening an IPv6 socket for %q: %w", ifi.Name, err))
			continue
		}
		p := ipv6.NewPacketConn(pc)
		// Loopback off, as over IPv4: this host's own search must not
		// reach a responder running here as if from the LAN.
		err = p.SetMulticastInterface(ifi)
		if err == nil {
			err = p.SetMulticastHopLimit(multicastTTL)
		}
		if err == nil {
			err = p.SetMulticastLoopback(false)
		}
		if err != nil {
			pc.Close()
			log.Warn("ssdp: cannot search over IPv6 on interface", "interface", ifi.Name, "err", err)
			errs = append(errs, fmt.Errorf("ssdp: setting up IPv6 multicast on %q: %w", ifi.Name, err))
			continue
		}
		dsts := []*searchDst{{
			addr: &net.UDPAddr{IP: net.ParseIP(LinkLocalGroup6), Port: DefaultPort, Zone: ifi.Name},
			host: searchHost6(LinkLocalGroup6),
		}}
		if hasGlobalIPv6(ifi) {
			dsts = append(dsts, &searchDst{
				addr: &net.UDPAddr{IP: net.ParseIP(SiteLocalGroup6), Port: DefaultPort, Zone: ifi.Name},
				host: searchHost6(SiteLocalGroup6),
			})
		}
		conns = append(conns, &searchConn{pc: pc, iface: ifi.Name, dsts: dsts})
	}
	return conns, errs
}
