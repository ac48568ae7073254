package gateway

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// PortRange is an inclusive range of ports. The zero value is port 0 only.
type PortRange struct {
	Min, Max uint16
}

// Contains reports whether p is in r.
func (r PortRange) Contains(p uint16) bool { return r.Min <= p && p <= r.Max }

// String returns "N" for a single port and "N-M" otherwise, the syntax
// ParsePortRange reads.
func (r PortRange) String() string {
	if r.Min == r.Max {
		return strconv.Itoa(int(r.Min))
	}
	return fmt.Sprintf("%d-%d", r.Min, r.Max)
}

// ParsePortRange reads "N" or "N-M" with 0 <= N <= M <= 65535.
func ParsePortRange(s string) (PortRange, error) {
	lo, hi, isRange := strings.Cut(s, "-")
	min, err := parsePort(lo)
	if err != nil {
		return PortRange{}, fmt.Errorf("port range %q: %w", s, err)
	}
	max := min
	if isRange {
		if max, err = parsePort(hi); err != nil {
			return PortRange{}, fmt.Errorf("port range %q: %w", s, err)
		}
	}
	if min > max {
		return PortRange{}, fmt.Errorf("port range %q: start is after end; write the lower port first", s)
	}
	return PortRange{Min: min, Max: max}, nil
}

func parsePort(s string) (uint16, error) {
	// ParseUint alone would accept "+1" or "0x1" forms under other bases;
	// insist on plain decimal digits.
	if s == "" || len(s) > 5 || strings.TrimLeft(s, "0123456789") != "" {
		return 0, fmt.Errorf("%q is not a port number (0-65535)", s)
	}
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil {
		return 0, fmt.Errorf("%q is not a port number (0-65535)", s)
	}
	return uint16(n), nil
}

// PermRule is one permission rule, in the spirit of miniupnpd's
// "allow|deny ext_ports client_prefix int_ports" lines: it matches a
// request whose external port is in External, whose internal client is in
// Client and whose internal port is in Internal.
type PermRule struct {
	Allow    bool
	External PortRange
	// Client is compared with the mapping's internal address. An IPv4
	// prefix never matches an IPv6 client and vice versa.
	Client   netip.Prefix
	Internal PortRange
}

// Match reports whether the rule applies to a mapping of external port ext
// to client:internal.
func (r PermRule) Match(ext uint16, client netip.Addr, internal uint16) bool {
	return r.External.Contains(ext) && r.Internal.Contains(internal) && r.Client.Contains(client)
}

// String returns the rule in the syntax ParsePermRule reads.
func (r PermRule) String() string {
	verb := "deny"
	if r.Allow {
		verb = "allow"
	}
	return fmt.Sprintf("%s %s %s %s", verb, r.External, r.Client, r.Internal)
}

// ParsePermRule reads a rule such as
//
//	allow 1024-65535 192.168.0.0/24 1024-65535
//	deny 0-65535 0.0.0.0/0 0-65535
//
// The client may be a prefix (address/bits), an IPv4 address with a dotted
// netmask (192.168.0.0/255.255.255.0, as older miniupnpd configurations
// write it), or a bare address meaning that host only. Host bits below the
// prefix length are cleared.
func ParsePermRule(s string) (PermRule, error) {
	f := strings.Fields(s)
	if len(f) != 4 {
		return PermRule{}, fmt.Errorf("permission rule %q: want 4 fields, \"allow|deny ext_ports client int_ports\"", s)
	}
	var r PermRule
	switch strings.ToLower(f[0]) {
	case "allow":
		r.Allow = true
	case "deny":
	default:
		return PermRule{}, fmt.Errorf("permission rule %q: first word must be allow or deny", s)
	}
	var err error
	if r.External, err = ParsePortRange(f[1]); err != nil {
		return PermRule{}, fmt.Errorf("permission rule %q: external %w", s, err)
	}
	if r.Client, err = parseClient(f[2]); err != nil {
		return PermRule{}, fmt.Errorf("permission rule %q: %w", s, err)
	}
	if r.Internal, err = ParsePortRange(f[3]); err != nil {
		return PermRule{}, fmt.Errorf("permission rule %q: internal %w", s, err)
	}
	return r, nil
}

func parseClient(s string) (netip.Prefix, error) {
	addrPart, maskPart, hasMask := strings.Cut(s, "/")
	a, err := netip.ParseAddr(addrPart)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("client %q is not an IP address or prefix", s)
	}
	a = a.Unmap()
	if !hasMask {
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	var bits int
	if strings.Contains(maskPart, ".") {
		m, err := netip.ParseAddr(maskPart)
		if err != nil || !m.Is4() || !a.Is4() {
			return netip.Prefix{}, fmt.Errorf("client %q: netmask %q is not a dotted IPv4 netmask", s, maskPart)
		}
		if bits, err = maskBits(m.As4()); err != nil {
			return netip.Prefix{}, fmt.Errorf("client %q: %w", s, err)
		}
	} else {
		n, err := strconv.Atoi(maskPart)
		if err != nil || n < 0 || n > a.BitLen() || strings.TrimLeft(maskPart, "0123456789") != "" {
			return netip.Prefix{}, fmt.Errorf("client %q: prefix length must be 0-%d", s, a.BitLen())
		}
		bits = n
	}
	return netip.PrefixFrom(a, bits).Masked(), nil
}

// maskBits converts a contiguous netmask such as 255.255.255.0 to 24.
func maskBits(m [4]byte) (int, error) {
	v := uint32(m[0])<<24 | uint32(m[1])<<16 | uint32(m[2])<<8 | uint32(m[3])
	bits := 0
	for v&(1<<31) != 0 {
		bits++
		v <<= 1
	}
	if v != 0 {
		return 0, errors.New("netmask is not contiguous ones then zeros")
	}
	return bits, nil
}

// PortSpec names external ports on one protocol, or on both when Protocol
// is 0.
type PortSpec struct {
	Protocol Protocol
	Ports    PortRange
}

// Policy decides which mappings clients may create. The zero value allows
// everything except that secure mode is on: a client may map ports only to
// itself and change or delete only its own mappings.
type Policy struct {
	// Rules are tried in order and the first whose ports and client match
	// decides. When there are rules and none matches, the request is
	// denied; with no rules at all, every request is allowed.
	Rules []PermRule

	// InsecureMode turns secure mode off (miniupnpd's secure_mode=no):
	// clients may then map ports to other hosts and change or delete any
	// mapping that is not the administrator's. Secure mode is the default
	// because without it any LAN host can expose any other host.
	InsecureMode bool

	// MaxPerClient caps the mappings one requester may hold; 0 means no
	// cap. It bounds what a single misbehaving host can take.
	MaxPerClient int
	// MaxMappings caps the whole table; 0 means no cap beyond the port
	// space (65,535 per protocol).
	MaxMappings int

	// Reserved external ports can never be mapped, not even by the
	// administrator: typically the gateway's own services reachable from
	// outside (its SSH or web port), which a mapping would otherwise
	// shadow.
	Reserved []PortSpec

	// MinLease and MaxLease clamp lease times; 0 means no bound. With
	// MaxLease set, a request for a permanent mapping gets MaxLease, as
	// IGD:2 prescribes, so that abandoned mappings always end.
	MinLease, MaxLease time.Duration

	// ListOwnOnly makes Index and List show a requester only the mappings
	// it owns (the administrator still sees all), so that one LAN host
	// cannot survey the others. Get is not filtered: it answers about a
	// port the client names, which Add's conflict answer would reveal
	// anyway.
	ListOwnOnly bool

	// AllowDisableExternal lets clients use the actions that take the
	// external connection down (UPnP ForceTermination, RequestTermination,
	// SetEnabledForInternet false). Off by default: any LAN host could
	// otherwise cut the whole network off. The UPnP adapter asks
	// Core.MayDisableExternal.
	AllowDisableExternal bool

	// ShowDummyRule makes Index answer index 0 of an empty view with a
	// disabled placeholder entry (external port 0) instead of
	// ErrIndexOutOfRange, for control points that probe index 0 to decide
	// whether the gateway supports port mapping at all.
	ShowDummyRule bool

	// WildcardRemoteHostOnly rejects mappings restricted to a remote host,
	// for backends that cannot filter on the source address.
	WildcardRemoteHostOnly bool

	// DisablePinholes forbids IPv6 pinholes (UPnP InboundPinholeAllowed
	// false: the pinhole actions answer 703; PCP MAP over IPv6 is
	// refused NOT_AUTHORIZED).
	DisablePinholes bool
	// MaxPinholes caps the pinhole table; 0 means DefaultMaxPinholes.
	MaxPinholes int
	// MaxPinholesPerClient caps the pinholes one LAN host holds, whichever
	// of its addresses asked (Config.HostAddrs / SameHostNow; without
	// them, one requesting address); 0 means MaxPerClient.
	MaxPinholesPerClient int
	// MinPinholeLease and MaxPinholeLease narrow the spec's 1..86400 s
	// pinhole leases; 0 means the spec's bound.
	MinPinholeLease, MaxPinholeLease time.Duration
}

// Validate reports configuration mistakes in p.
func (p Policy) Validate() error {
	var errs []error
	if p.MaxPerClient < 0 {
		errs = append(errs, fmt.Errorf("MaxPerClient %d is negative; use 0 for no limit", p.MaxPerClient))
	}
	if p.MaxMappings < 0 {
		errs = append(errs, fmt.Errorf("MaxMappings %d is negative; use 0 for no limit", p.MaxMappings))
	}
	if p.MinLease < 0 || p.MaxLease < 0 {
		errs = append(errs, fmt.Errorf("lease bounds must not be negative (MinLease %v, MaxLease %v)", p.MinLease, p.MaxLease))
	}
	if p.MaxPinholes < 0 || p.MaxPinholesPerClient < 0 {
		errs = append(errs, fmt.Errorf("pinhole caps must not be negative (MaxPinholes %d, MaxPinholesPerClient %d)", p.MaxPinholes, p.MaxPinholesPerClient))
	}
	if p.MinPinholeLease < 0 || p.MaxPinholeLease < 0 || p.MinPinholeLease > MaxPinholeLease {
		errs = append(errs, fmt.Errorf("pinhole lease bounds must be within 0-86400 s (MinPinholeLease %v, MaxPinholeLease %v)", p.MinPinholeLease, p.MaxPinholeLease))
	}
	if p.MinPinholeLease > 0 && p.MaxPinholeLease > 0 && p.MinPinholeLease > p.MaxPinholeLease {
		errs = append(errs, fmt.Errorf("MinPinholeLease %v is longer than MaxPinholeLease %v", p.MinPinholeLease, p.MaxPinholeLease))
	}
	if p.MinLease > 0 && p.MaxLease > 0 && p.MinLease > p.MaxLease {
		errs = append(errs, fmt.Errorf("MinLease %v is longer than MaxLease %v", p.MinLease, p.MaxLease))
	}
	for i, r := range p.Rules {
		if r.External.Min > r.External.Max || r.Internal.Min > r.Internal.Max {
			errs = append(errs, fmt.Errorf("rule %d (%s): a port range starts after it ends", i+1, r))
		}
		if !r.Client.IsValid() {
			errs = append(errs, fmt.Errorf("rule %d: client prefix is missing; use 0.0.0.0/0 or ::/0 for any client", i+1))
		}
	}
	for i, s := range p.Reserved {
		if s.Protocol != 0 && s.Protocol != TCP && s.Protocol != UDP {
			errs = append(errs, fmt.Errorf("reserved entry %d: protocol %v; use TCP, UDP or 0 for both", i+1, s.Protocol))
		}
		if s.Ports.Min > s.Ports.Max {
			errs = append(errs, fmt.Errorf("reserved entry %d: port range %d-%d starts after it ends", i+1, s.Ports.Min, s.Ports.Max))
		}
	}
	return errors.Join(errs...)
}

// Permit reports whether the permission rules allow mapping external port
// ext to client:internal. It does not look at secure mode, reserved ports
// or quotas.
func (p Policy) Permit(ext uint16, client netip.Addr, internal uint16) bool {
	if len(p.Rules) == 0 {
		return true
	}
	client = normalizeAddr(client)
	for _, r := range p.Rules {
		if r.Match(ext, client, internal) {
			return r.Allow
		}
	}
	return false
}

// compiledPolicy is a Policy with lookups made O(1) for the hot paths.
type compiledPolicy struct {
	Policy
	// reserved holds the reserved ports of TCP ([0]) and UDP ([1]).
	reserved [2]PortSet
}

func compilePolicy(p Policy) (*compiledPolicy, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	c := &compiledPolicy{Policy: p}
	c.Rules = append([]PermRule(nil), p.Rules...)
	c.Reserved = append([]PortSpec(nil), p.Reserved...)
	for i := range c.Rules {
		c.Rules[i].Client = c.Rules[i].Client.Masked()
	}
	for _, s := range p.Reserved {
		for _, idx := range protoIndexes(s.Protocol) {
			for port := int(s.Ports.Min); port <= int(s.Ports.Max); port++ {
				c.reserved[idx].Add(uint16(port))
			}
		}
	}
	return c, nil
}

func protoIndexes(p Protocol) []int {
	switch p {
	case TCP:
		return []int{0}
	case UDP:
		return []int{1}
	}
	return []int{0, 1}
}

func (c *compiledPolicy) isReserved(p Protocol, port uint16) bool {
	return c.reserved[protoIndex(p)].Contains(port)
}

// externalFilter returns the rules that can apply to client:internal, in
// order, so that AddAny can test many external ports without re-matching
// the client each time.
func (c *compiledPolicy) externalFilter(client netip.Addr, internal uint16) extFilter {
	if len(c.Rules) == 0 {
		return extFilter{all: true}
	}
	var f extFilter
	for _, r := range c.Rules {
		if r.Internal.Contains(internal) && r.Client.Contains(client) {
			f.rules = append(f.rules, r)
		}
	}
	return f
}

type extFilter struct {
	all   bool
	rules []PermRule
}

func (f extFilter) permit(ext uint16) bool {
	if f.all {
		return true
	}
	for _, r := range f.rules {
		if r.External.Contains(ext) {
			return r.Allow
		}
	}
	return false
}

// clampLease applies MinLease and MaxLease to a requested expiry.
func (c *compiledPolicy) clampLease(now, expires time.Time) (time.Time, error) {
	if expires.IsZero() {
		if c.MaxLease > 0 {
			return now.Add(c.MaxLease), nil
		}
		return time.Time{}, nil
	}
	d := expires.Sub(now)
	if d <= 0 {
		return time.Time{}, fmt.Errorf("%w: lease ended at %s, before the request was handled; request a positive lease time", ErrInvalidArgs, expires.Format(time.RFC3339))
	}
	if c.MinLease > 0 && d < c.MinLease {
		d = c.MinLease
	}
	if c.MaxLease > 0 && d > c.MaxLease {
		d = c.MaxLease
	}
	return now.Add(d), nil
}
