package netroute

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
)

// Interface is a network interface with its IPv4 addresses.
type Interface struct {
	Name  string
	Index int
	Flags net.Flags
	// Addrs are the interface's IPv4 addresses with their subnets.
	Addrs []netip.Prefix
}

// Interfaces lists the interfaces that are up, able to send multicast, and
// have at least one IPv4 address, leaving out loopback and point-to-point
// links (VPN tunnels, PPP), which have no LAN of routers behind them: the
// interfaces on which SSDP discovery and NAT-PMP announcements make sense.
func Interfaces() ([]Interface, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("netroute: cannot list network interfaces: %w", err)
	}
	var out []Interface
	for _, ifi := range ifs {
		if !usableForMulticast(ifi.Flags) {
			continue
		}
		addrs, err := ifi.Addrs()
		if err != nil {
			return nil, fmt.Errorf("netroute: cannot list the addresses of %s: %w", ifi.Name, err)
		}
		if p := ipv4Prefixes(addrs); len(p) > 0 {
			out = append(out, Interface{Name: ifi.Name, Index: ifi.Index, Flags: ifi.Flags, Addrs: p})
		}
	}
	return out, nil
}

// InterfaceAddrs returns the IPv4 addresses of the named interface.
func InterfaceAddrs(name string) ([]netip.Prefix, error) {
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return nil, fmt.Errorf("netroute: no interface %q: %w", name, err)
	}
	addrs, err := ifi.Addrs()
	if err != nil {
		return nil, fmt.Errorf("netroute: cannot list the addresses of %s: %w", name, err)
	}
	return ipv4Prefixes(addrs), nil
}

// IsLocalAddr reports whether a is an address of one of this host's
// interfaces (in the caller's network namespace). An error listing the
// interfaces reads as "not local".
func IsLocalAddr(a netip.Addr) bool {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return false
	}
	a = a.Unmap()
	for _, ia := range addrs {
		if p, err := netip.ParsePrefix(ia.String()); err == nil && p.Addr().Unmap() == a {
			return true
		}
	}
	return false
}

// ErrNotOnLink means no interface has a subnet containing the address.
var ErrNotOnLink = errors.New("netroute: the address is not on any of this host's IPv4 subnets")

// LocalAddrFor returns this host's IPv4 address on the subnet that contains
// gw, and the interface carrying it: the address a router on that subnet
// sees requests come from, and the one PCP and UPnP requests must name.
func LocalAddrFor(gw netip.Addr) (netip.Addr, Interface, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return netip.Addr{}, Interface{}, fmt.Errorf("netroute: cannot list network interfaces: %w", err)
	}
	var cands []Interface
	for _, ifi := range ifs {
		if ifi.Flags&net.FlagUp == 0 {
			continue
		}
		addrs, err := ifi.Addrs()
		if err != nil {
			continue // an interface that vanished meanwhile
		}
		cands = append(cands, Interface{Name: ifi.Name, Index: ifi.Index, Flags: ifi.Flags, Addrs: ipv4Prefixes(addrs)})
	}
	return localAddrIn(cands, gw)
}

// localAddrIn picks, among ifs, the address whose subnet contains gw; with
// overlapping subnets the most specific wins.
func localAddrIn(ifs []Interface, gw netip.Addr) (netip.Addr, Interface, error) {
	gw = gw.Unmap()
	var (
		best    netip.Prefix
		bestIfi Interface
	)
	for _, ifi := range ifs {
		for _, p := range ifi.Addrs {
			if p.Contains(gw) && p.Addr() != gw && (!best.IsValid() || p.Bits() > best.Bits()) {
				best, bestIfi = p, ifi
			}
		}
	}
	if !best.IsValid() {
		return netip.Addr{}, Interface{}, fmt.Errorf("%w: %v", ErrNotOnLink, gw)
	}
	return best.Addr(), bestIfi, nil
}

func usableForMulticast(f net.Flags) bool {
	return f&net.FlagUp != 0 && f&net.FlagMulticast != 0 && f&net.FlagLoopback == 0 && f&net.FlagPointToPoint == 0
}

// ipv4Prefixes keeps the IPv4 addresses of addrs, as address/prefix pairs.
func ipv4Prefixes(addrs []net.Addr) []netip.Prefix {
	var out []netip.Prefix
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		ip, ok := netip.AddrFromSlice(ipn.IP)
		if !ok {
			continue
		}
		ip = ip.Unmap()
		if !ip.Is4() {
			continue
		}
		ones, size := ipn.Mask.Size()
		if size == 128 && ones >= 96 {
			ones -= 96 // a 16-byte mask on a 4-in-6 address
		} else if size != 32 {
			continue
		}
		out = append(out, netip.PrefixFrom(ip, ones))
	}
	return out
}
