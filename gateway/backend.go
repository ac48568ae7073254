package gateway

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
)

// Protocol is a transport protocol, numbered as in the IP header so that
// backends can use it directly (nftables matches on the L4 protocol number).
type Protocol uint8

const (
	TCP Protocol = 6
	UDP Protocol = 17
)

// String returns "TCP" or "UDP", the spelling UPnP uses on the wire.
func (p Protocol) String() string {
	switch p {
	case TCP:
		return "TCP"
	case UDP:
		return "UDP"
	}
	return fmt.Sprintf("proto(%d)", uint8(p))
}

// ParseProtocol accepts "TCP"/"UDP" in any case.
func ParseProtocol(s string) (Protocol, error) {
	switch strings.ToUpper(strings.TrimSpace(s)) {
	case "TCP":
		return TCP, nil
	case "UDP":
		return UDP, nil
	}
	return 0, fmt.Errorf("unknown protocol %q: want TCP or UDP", s)
}

// Rule is what a firewall backend installs for one active mapping: traffic
// arriving on the external side for ExternalPort/Protocol (from RemoteHost
// only, when it is valid) is forwarded to InternalAddr:InternalPort.
type Rule struct {
	Protocol     Protocol
	ExternalPort uint16
	// ExternalAddr is the external pool address the rule forwards from;
	// the zero Addr is the gateway's own external address (see
	// Mapping.ExternalAddr). Only backends that support an address pool
	// (PoolBackend) are given rules with one.
	ExternalAddr netip.Addr
	InternalAddr netip.Addr
	InternalPort uint16
	// RemoteHost restricts the rule to one source; the zero Addr means any.
	RemoteHost netip.Addr
}

// Key returns the table key the rule is installed for.
func (r Rule) Key() Key {
	return Key{Protocol: r.Protocol, ExternalPort: r.ExternalPort, ExternalAddr: r.ExternalAddr}
}

func (r Rule) String() string {
	s := fmt.Sprintf("%s %d -> %s", r.Protocol, r.ExternalPort, netip.AddrPortFrom(r.InternalAddr, r.InternalPort))
	if r.ExternalAddr.IsValid() {
		s = fmt.Sprintf("%s %s:%d -> %s", r.Protocol, r.ExternalAddr, r.ExternalPort, netip.AddrPortFrom(r.InternalAddr, r.InternalPort))
	}
	if r.RemoteHost.IsValid() {
		s += " from " + r.RemoteHost.String()
	}
	return s
}

// Backend applies mappings to the data plane. The core calls it with the
// table already updated and serializes calls for the same external port, so
// a Backend need not re-check conflicts. Implementations: package nft
// (Linux netfilter through netlink), package relay (a userspace TCP/UDP
// relay that needs no privileges), and Memory (records only, for tests).
type Backend interface {
	// Name identifies the backend in logs and status pages ("nft", "relay", "memory").
	Name() string
	// Add installs r. Adding a rule whose Protocol+ExternalPort is already
	// installed replaces it.
	Add(ctx context.Context, r Rule) error
	// Delete removes the rule for r.Protocol+r.ExternalPort. Deleting a rule
	// that is not installed is not an error.
	Delete(ctx context.Context, r Rule) error
	// Flush removes every rule this backend installed.
	Flush(ctx context.Context) error
	// Close releases resources. It does not remove installed rules (so that
	// a restart keeps traffic flowing); call Flush first for that.
	Close() error
}

// BatchDeleter may be implemented by a Backend that removes many rules
// faster together than one by one (the nft backend sends them in a few
// netlink messages). DeleteBatch removes every rule in rules, or reports
// an error, after which the Core falls back to Delete for each rule to
// learn which ones failed.
type BatchDeleter interface {
	DeleteBatch(ctx context.Context, rules []Rule) error
}

// PoolBackend is implemented by a Backend that forwards from the addresses
// of an external address pool (Config.ExternalPool) as well as from the
// gateway's own external address: it installs rules whose ExternalAddr is
// set, and keys them by address, protocol and port. The Core refuses a
// pool with a backend that is not one.
type PoolBackend interface {
	Backend
	// SupportsPool reports whether the backend was set up for pool
	// addresses (the nft backend, when given the pool).
	SupportsPool() bool
}

// BatchAdder may be implemented by a Backend that installs several rules
// faster together than one by one (the nft backend: one transaction). The
// Core uses it at start, to re-apply the restored leases the backend does
// not hold already, and for a commit group's additions. AddBatch installs
// every rule in rules, replacing what their keys held, or reports an error
// after installing none of them; the Core then falls back to Add for each
// rule to learn which ones fail (and, at start, parks those). The rules'
// keys are distinct.
type BatchAdder interface {
	AddBatch(ctx context.Context, rules []Rule) error
}
