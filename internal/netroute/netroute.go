// Package netroute reads this host's IPv4 routing table and interfaces to
// find the default gateway, which is where NAT-PMP and PCP requests go, and
// the interfaces LAN discovery can use. It only reads kernel state; it never
// sends a packet.
//
// The default gateway comes from /proc/net/route, so DefaultGateway works on
// Linux only; elsewhere it returns an error asking for the gateway address
// to be given explicitly. The parser, ParseProcNetRoute, is a pure function
// and works everywhere.
package netroute

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"net/netip"
	"strconv"
	"strings"
)

// procNetRoute is where Linux publishes the IPv4 main routing table.
const procNetRoute = "/proc/net/route"

// Route flags, from linux/route.h.
const (
	FlagUp      = 0x0001 // RTF_UP: the route is usable
	FlagGateway = 0x0002 // RTF_GATEWAY: the destination is reached through Gateway
	FlagHost    = 0x0004 // RTF_HOST: a host route
	FlagReject  = 0x0200 // RTF_REJECT: packets to the destination are refused
)

// Route is one line of /proc/net/route.
type Route struct {
	// Iface is the name of the interface the route leaves through.
	Iface string
	// Dst is the destination network; 0.0.0.0/0 for a default route.
	Dst netip.Prefix
	// Gateway is the next hop, 0.0.0.0 for a directly connected network.
	Gateway netip.Addr
	Flags   uint16
	Metric  uint32
	MTU     uint32
}

// IsDefault reports whether r is a usable default route through a gateway.
func (r Route) IsDefault() bool {
	return r.Dst.Bits() == 0 &&
		r.Flags&FlagUp != 0 && r.Flags&FlagGateway != 0 && r.Flags&FlagReject == 0 &&
		r.Gateway.Is4() && !r.Gateway.IsUnspecified()
}

// ErrNoDefaultRoute means the routing table has no IPv4 default route.
var ErrNoDefaultRoute = errors.New("netroute: this host has no IPv4 default route (is it connected to a network?); give the gateway address explicitly")

// ParseProcNetRoute parses the contents of Linux's /proc/net/route. The
// kernel prints each address as the hexadecimal value of its in-memory,
// network-order bytes read as a native integer, so the result depends on
// this machine's byte order, as the file does.
func ParseProcNetRoute(data []byte) ([]Route, error) {
	return parseProcNetRoute(data, binary.NativeEndian)
}

// procNetRouteColumns are the columns this parser needs, as named in the
// file's header line.
var procNetRouteColumns = []string{"Iface", "Destination", "Gateway", "Flags", "Metric", "Mask", "MTU"}

func parseProcNetRoute(data []byte, order binary.ByteOrder) ([]Route, error) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	if !sc.Scan() {
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("netroute: reading route table: %w", err)
		}
		return nil, errors.New("netroute: route table is empty; expected a header line")
	}
	// Find columns by name rather than position, in case a kernel adds or
	// reorders them.
	col := map[string]int{}
	for i, name := range strings.Fields(sc.Text()) {
		col[name] = i
	}
	for _, name := range procNetRouteColumns {
		if _, ok := col[name]; !ok {
			return nil, fmt.Errorf("netroute: route table header %q has no %s column", sc.Text(), name)
		}
	}
	var routes []Route
	for line := 2; sc.Scan(); line++ {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		r, err := parseRouteLine(f, col, order)
		if err != nil {
			return nil, fmt.Errorf("netroute: route table line %d %q: %w", line, sc.Text(), err)
		}
		routes = append(routes, r)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("netroute: reading route table: %w", err)
	}
	return routes, nil
}

func parseRouteLine(f []string, col map[string]int, order binary.ByteOrder) (Route, error) {
	field := func(name string) (string, error) {
		i := col[name]
		if i >= len(f) {
			return "", fmt.Errorf("no %s field", name)
		}
		return f[i], nil
	}
	addr := func(name string) (netip.Addr, error) {
		s, err := field(name)
		if err != nil {
			return netip.Addr{}, err
		}
		v, err := strconv.ParseUint(s, 16, 32)
		if err != nil || len(s) != 8 {
			return netip.Addr{}, fmt.Errorf("%s %q is not 8 hex digits", name, s)
		}
		var b [4]byte
		order.PutUint32(b[:], uint32(v))
		return netip.AddrFrom4(b), nil
	}
	num := func(name string, base, size int) (uint64, error) {
		s, err := field(name)
		if err != nil {
			return 0, err
		}
		v, err := strconv.ParseUint(s, base, size)
		if err != nil {
			return 0, fmt.Errorf("%s %q: %w", name, s, err)
		}
		return v, nil
	}

	var r Route
	var err error
	if r.Iface, err = field("Iface"); err != nil {
		return Route{}, err
	}
	dst, err := addr("Destination")
	if err != nil {
		return Route{}, err
	}
	mask, err := addr("Mask")
	if err != nil {
		return Route{}, err
	}
	m := binary.BigEndian.Uint32(mask.AsSlice())
	ones := bits.LeadingZeros32(^m)
	if m<<ones != 0 {
		return Route{}, fmt.Errorf("mask %v is not contiguous", mask)
	}
	if r.Dst, err = dst.Prefix(ones); err != nil {
		return Route{}, err
	}
	if r.Gateway, err = addr("Gateway"); err != nil {
		return Route{}, err
	}
	flags, err := num("Flags", 16, 16)
	if err != nil {
		return Route{}, err
	}
	r.Flags = uint16(flags)
	metric, err := num("Metric", 10, 32)
	if err != nil {
		return Route{}, err
	}
	r.Metric = uint32(metric)
	mtu, err := num("MTU", 10, 32)
	if err != nil {
		return Route{}, err
	}
	r.MTU = uint32(mtu)
	return r, nil
}

// DefaultGatewayFrom picks the default gateway from routes: the usable
// default route with the lowest metric, the first listed on a tie (the
// order in which the kernel would use them).
func DefaultGatewayFrom(routes []Route) (gw netip.Addr, ifname string, err error) {
	var best *Route
	for i := range routes {
		r := &routes[i]
		if r.IsDefault() && (best == nil || r.Metric < best.Metric) {
			best = r
		}
	}
	if best == nil {
		return netip.Addr{}, "", ErrNoDefaultRoute
	}
	return best.Gateway, best.Iface, nil
}
