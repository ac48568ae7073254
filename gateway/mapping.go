package gateway

import (
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"time"
	"unicode/utf8"
)

// Source names the protocol through which a mapping was requested. Mappings
// from every source share one table, so a UPnP client and a NAT-PMP client
// cannot both claim the same external port.
type Source uint8

const (
	SourceUPnP Source = iota + 1
	SourceNATPMP
	SourcePCP
	// SourceAdmin is the operator (the admin page or static configuration).
	// It is exempt from secure mode, permission rules, quotas and
	// ListOwnOnly, but not from reserved ports, the table cap or argument
	// checks; and only SourceAdmin may change or delete what it created.
	SourceAdmin
)

// String returns the spelling used in logs and on the admin page.
func (s Source) String() string {
	switch s {
	case SourceUPnP:
		return "UPnP"
	case SourceNATPMP:
		return "NAT-PMP"
	case SourcePCP:
		return "PCP"
	case SourceAdmin:
		return "admin"
	}
	return fmt.Sprintf("source(%d)", uint8(s))
}

// Requester identifies who is asking: the address the request came from
// (the UDP source for NAT-PMP and PCP, the TCP peer for UPnP SOAP) and the
// protocol it used. Secure mode, quotas and ListOwnOnly are all decided on
// Addr; adapters must take it from the packet, never from the payload.
type Requester struct {
	Addr   netip.Addr
	Source Source
}

func (r Requester) admin() bool { return r.Source == SourceAdmin }

// String names the requester in logs: its address and protocol, or "the
// operator" for the admin page and other local administration, which has
// no client address.
func (r Requester) String() string {
	if !r.Addr.IsValid() {
		if r.admin() {
			return "the operator"
		}
		return r.Source.String()
	}
	return r.Addr.String() + " (" + r.Source.String() + ")"
}

// Key identifies a mapping: the table holds at most one per external
// address, protocol and external port, whatever the remote host.
type Key struct {
	Protocol     Protocol
	ExternalPort uint16
	// ExternalAddr is the address of the external address pool the
	// mapping is on (Config.ExternalPool); the zero Addr is the gateway's
	// own external address, where every mapping is without a pool.
	ExternalAddr netip.Addr
}

func (k Key) String() string {
	if k.ExternalAddr.IsValid() {
		return fmt.Sprintf("%s/%s:%d", k.Protocol, k.ExternalAddr, k.ExternalPort)
	}
	return fmt.Sprintf("%s/%d", k.Protocol, k.ExternalPort)
}

// pack turns k into the compact form the table indexes on: the pool
// address (IPv4; 0 for the gateway's own address) in bits 24-55, the
// protocol in bits 16-23, the port below. Bits 56-63 stay free for the
// journal's other live-set keys (pinLiveBase). The Core admits only IPv4
// pool addresses, so the address always fits.
func (k Key) pack() uint64 {
	var a uint64
	if k.ExternalAddr.Is4() {
		b := k.ExternalAddr.As4()
		a = uint64(b[0])<<24 | uint64(b[1])<<16 | uint64(b[2])<<8 | uint64(b[3])
	}
	return a<<24 | uint64(uint8(k.Protocol))<<16 | uint64(k.ExternalPort)
}

func unpackKey(u uint64) Key {
	k := Key{Protocol: Protocol(u >> 16), ExternalPort: uint16(u)}
	if a := uint32(u >> 24); a != 0 {
		k.ExternalAddr = netip.AddrFrom4([4]byte{byte(a >> 24), byte(a >> 16), byte(a >> 8), byte(a)})
	}
	return k
}

// MaxDescriptionLen bounds Mapping.Description in bytes. Longer descriptions
// are cut (at a UTF-8 boundary): no protocol gives the field a meaning that
// needs more, and the bound keeps a full table of 65,535 entries small.
const MaxDescriptionLen = 255

// Mapping is one port mapping: traffic for ExternalPort/Protocol on the
// gateway's external address (or on ExternalAddr, an address of the
// external address pool) is forwarded to InternalAddr:InternalPort.
type Mapping struct {
	// The small fields come first, packed into one word, so that a table
	// of a million mappings wastes no padding.
	Protocol Protocol
	Source   Source
	// Enabled mappings are installed in the backend; disabled ones (UPnP
	// NewEnabled=0) only hold their port. NAT-PMP and PCP adapters must set
	// it, as those protocols have no disabled mappings.
	Enabled      bool
	ExternalPort uint16
	InternalPort uint16
	// Nonce is the PCP mapping nonce. The core stores it; the PCP adapter
	// checks it on refresh and delete.
	Nonce [12]byte
	// ExternalAddr is the pool address the mapping is on, when the Core
	// has an external address pool (Config.ExternalPool) and gave the
	// mapping one of its addresses; the zero Addr means the gateway's own
	// external address (Core.ExternalAddr), as for every mapping without a
	// pool. The PCP adapter sets it from Core.PoolAddr; see
	// Config.ExternalPool.
	ExternalAddr netip.Addr
	InternalAddr netip.Addr
	// RemoteHost restricts the mapping to one remote peer; the zero Addr
	// means any.
	RemoteHost  netip.Addr
	Description string
	// Expires is when the lease ends; the zero Time means permanent.
	Expires time.Time
	// Owner is the client that asked for the mapping (Requester.Addr). The
	// Core sets it; secure mode compares requesters with it. Source is the
	// protocol it asked through.
	Owner netip.Addr
	// Created is when the mapping was first added. Updates keep it.
	Created time.Time
	// Upstream is the half of a chained mapping on the router above (see
	// Upstream); nil when the mapping is not chained. The Core sets it. It
	// is never changed in place: a new half is a new value, so Mappings
	// stay immutable (and a pointer keeps a full table of unchained
	// mappings small).
	Upstream *UpstreamHalf
}

// Key returns the mapping's table key.
func (m Mapping) Key() Key {
	return Key{Protocol: m.Protocol, ExternalPort: m.ExternalPort, ExternalAddr: m.ExternalAddr}
}

// Rule returns what a Backend installs for m.
func (m Mapping) Rule() Rule {
	return Rule{
		Protocol:     m.Protocol,
		ExternalPort: m.ExternalPort,
		ExternalAddr: m.ExternalAddr,
		InternalAddr: m.InternalAddr,
		InternalPort: m.InternalPort,
		RemoteHost:   m.RemoteHost,
	}
}

// Permanent reports whether m has no lease time.
func (m Mapping) Permanent() bool { return m.Expires.IsZero() }

// LeaseSeconds returns the lease time left at now in whole seconds, rounded
// up so that a live mapping never reports 0, which UPnP reads as
// "permanent". It returns 0 for permanent mappings and 1 for mappings whose
// lease has run out but that have not been removed yet.
func (m Mapping) LeaseSeconds(now time.Time) uint32 {
	if m.Permanent() {
		return 0
	}
	d := m.Expires.Sub(now)
	if d <= 0 {
		return 1
	}
	s := (d + time.Second - 1) / time.Second
	if s > math.MaxUint32 {
		return math.MaxUint32
	}
	return uint32(s)
}

// LogValue makes log lines show m as String does, formatted only when the
// line is actually written.
func (m Mapping) LogValue() slog.Value { return slog.StringValue(m.String()) }

func (m Mapping) String() string {
	s := fmt.Sprintf("%s -> %s (%s by %s)", m.Key(),
		netip.AddrPortFrom(m.InternalAddr, m.InternalPort), m.Source, m.Owner)
	if m.RemoteHost.IsValid() {
		s += " from " + m.RemoteHost.String()
	}
	if !m.Enabled {
		s += " disabled"
	}
	if m.Chained() && m.Upstream.Public.IsValid() {
		s += " via " + m.Upstream.Public.String() + " (" + m.Upstream.Method + " upstream)"
	}
	return s
}

// normalizeAddr makes addresses from different sources comparable: an
// IPv4-mapped IPv6 address (what a dual-stack socket reports) becomes plain
// IPv4, and the zone is dropped, since a gateway forwards to one LAN and a
// zone from a socket would otherwise make the same host look like two.
func normalizeAddr(a netip.Addr) netip.Addr {
	if !a.IsValid() {
		return a
	}
	return a.Unmap().WithZone("")
}

func (r Requester) normalize() Requester {
	r.Addr = normalizeAddr(r.Addr)
	return r
}

// normalize prepares m for the table: comparable addresses, times without
// monotonic readings (so that comparisons are wall-clock based everywhere,
// as they must be after a restore from disk), and a bounded description.
func (m Mapping) normalize() Mapping {
	m.InternalAddr = normalizeAddr(m.InternalAddr)
	m.ExternalAddr = normalizeAddr(m.ExternalAddr)
	m.RemoteHost = normalizeAddr(m.RemoteHost)
	m.Owner = normalizeAddr(m.Owner)
	m.Expires = m.Expires.Round(0)
	m.Created = m.Created.Round(0)
	if m.Upstream != nil {
		h := *m.Upstream
		h.Granted, h.Expires = h.Granted.Round(0), h.Expires.Round(0)
		m.Upstream = &h
	}
	m.Description = truncateUTF8(m.Description, MaxDescriptionLen)
	return m
}

func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
