// Package daemon runs portfwd's router-side gateway, the equivalent of
// miniupnpd: it wires the mapping core (package gateway) to a firewall
// backend (nft, relay or memory), a lease store, and the protocol servers
// that LAN hosts talk to: UPnP IGD over HTTP (package igd) with SSDP
// discovery (package ssdp) and GENA eventing (package upnp), and NAT-PMP
// (package natpmp) and PCP (package pcp) on UDP 5351, served by package
// pmp; and an admin server (/metrics, /healthz, and the admin page of
// package gateway/admin).
//
// It is the router side only: it imports no client package (portmap,
// webui, reach). The protocol packages give it their server halves, and it
// gives each a thin adapter onto the core; the core (package gateway)
// knows no protocol.
//
// # Files
//
//	daemon.go      Daemon: New, Serve, Close; its state, grouped by concern
//	config.go      Config, its file format and checks; check.go: --check;
//	               miniupnpd.go: converting miniupnpd.conf; roles.go, policy.go
//	wan.go         the external side: the address (external.go), its changes
//	               (addrwatch*.go), the relay that follows it (relaybackend.go)
//	backend.go     opening the nft, relay or memory backend
//	upnpserve.go   the UPnP servers: HTTP listeners (lan.go: LAN-only), SSDP,
//	               GENA; upnp.go: the IGD adapter onto the core
//	pmp.go         UDP 5351 (package pmp) over natpmp.go and pcp.go, the
//	               NAT-PMP and PCP adapters
//	admin.go       the admin server; adminui.go: the admin page's backend
//	audit.go, refusals.go, metrics.go   what the daemon records of requests
//	instance.go    one gateway per state directory and nft table
//
// # Where requests are accepted
//
// Everything the daemon answers is for the LAN only, as IGDv2 and RFC 6886
// require:
//
//   - the UPnP HTTP server listens on the IPv4 addresses of the internal
//     interfaces, and drops a connection at once, without a byte, when its
//     peer is neither on one of the internal subnets nor an address of the
//     router itself (Linux accepts packets for any local address on any
//     interface, so a WAN neighbour could otherwise route to the LAN address);
//   - SSDP answers and announces on the internal interfaces only, judged by
//     the interface each search arrived on;
//   - NAT-PMP and PCP answer only requests that arrived on an internal
//     interface and are addressed to that interface's own address.
//
// # Protocol semantics
//
// The adapters in upnp.go, natpmp.go and pcp.go translate each protocol
// onto gateway.Core. UPnP: the requester is the TCP peer; IGDv2's lease 0
// arrives as 604800 s (the igd server converts it); NewEnabled=0 stores a
// mapping that holds its port without being installed in the backend; core
// errors become UPnP codes (IGDv1's when serving IGDv1; see Errors below).
// NAT-PMP: a mapping is identified by the requester and its internal port, so a repeated request returns the same external port;
// the suggested port is a hint (AddAny); lifetime 0 deletes, and internal
// port 0 with lifetime 0 deletes all of the requester's mappings of that
// protocol; the epoch is the time since the store's epoch origin, which
// only resets when the lease store is lost.
//
// PCP (RFC 6887) shares UDP 5351 with NAT-PMP (package pmp's Server
// dispatches on the version byte); its adapter (pcp.go) maps MAP requests
// onto the core with the request's nonce, which the core stores: a mapping
// can be refreshed or deleted only with the nonce that made it. PEER and THIRD_PARTY are not
// supported; a FILTER naming one remote host becomes the mapping's remote
// host.
//
// # Errors: the core's become each protocol's
//
// The core (package gateway) returns its own errors; each adapter maps
// them to its protocol's codes (upnpCode, upnpCodeV1, natpmpResult,
// pcpResult). "-" means the protocol has no operation that can produce
// the error.
//
//	error                      UPnP (IGD:2)                        NAT-PMP            PCP
//	ErrConflict                718 ConflictInMappingEntry          2 not authorized   11 CANNOT_PROVIDE_EXTERNAL
//	ErrNotAuthorized           606 Action not authorized           2 not authorized   2 NOT_AUTHORIZED
//	ErrNoSuchEntry             714 NoSuchEntryInArray              -                  - (delete of absent = success)
//	ErrNoneInRange             730 PortMappingNotFound             -                  -
//	ErrIndexOutOfRange         713 SpecifiedArrayIndexInvalid      -                  -
//	ErrQuota                   728 NoPortMapsAvailable             4 out of resources 10 USER_EX_QUOTA
//	ErrTableFull               728 NoPortMapsAvailable             4 out of resources 8 NO_RESOURCES
//	ErrNoPortsAvailable        728 NoPortMapsAvailable             4 out of resources 8 NO_RESOURCES
//	ErrReservedPort            729 ConflictWithOtherMechanisms     2 not authorized   11 CANNOT_PROVIDE_EXTERNAL
//	ErrWildcardExternalPort    716 WildCardNotPermittedInExtPort   -                  -
//	ErrWildcardInternalPort    732 WildCardNotPermittedInIntPort   2 not authorized   3 MALFORMED_REQUEST
//	ErrRemoteHostNotSupported  726 RemoteHostOnlySupportsWildcard  -                  5 UNSUPP_OPTION
//	ErrInconsistentRange       733 InconsistentParameters          -                  -
//	ErrInvalidArgs             402 Invalid Args                    2 not authorized   3 MALFORMED_REQUEST
//	ErrUpstreamConflict        718 ConflictInMappingEntry          2 not authorized   11 CANNOT_PROVIDE_EXTERNAL
//	ErrUpstreamRefused         606 Action not authorized           2 not authorized   2 NOT_AUTHORIZED
//	ErrUpstreamExhausted       728 NoPortMapsAvailable             4 out of resources 8 NO_RESOURCES
//	ErrBackend, ErrStore,      501 Action Failed                   3 network failure  7 NETWORK_FAILURE
//	ErrUpstreamDown, ErrClosed, context errors
//
// The ErrUpstream errors come from the router above, when mappings are
// chained to it (double NAT, package gateway/upstream): the table is RFC
// 6970's for UPnP. A chained mapping is answered with the router above's
// public address and port and a lease no longer than its grant.
//
// For WANIPConnection:1 clients, which predate codes 728-733, upnpCodeV1
// substitutes 501 for 728, 718 for 729, 714 for 730 and 402 for 732 and
// 733. NAT-PMP (RFC 6886) has no codes for conflicts or malformed
// arguments; its adapter uses AddAny, so conflicts and reserved ports
// become another port, and the rest is a refusal.
//
// IPv6 pinholes (pinhole.go in package gateway) have errors of their own
// too; the WANIPv6FirewallControl adapter (upnp6.go, firewallCode) and the
// PCP one (pcp6.go, pinholeResult) map them:
//
//	error                      WANIPv6FirewallControl:1            PCP over IPv6
//	ErrPinholesDisabled        703 InboundPinholeNotAllowed        2 NOT_AUTHORIZED
//	ErrNoPinholeBackend        501 Action Failed (and 703 in
//	                           GetFirewallStatus beforehand)       2 NOT_AUTHORIZED
//	ErrPinholeSpace            701 PinholeSpaceExhausted           8 NO_RESOURCES
//	ErrNoSuchPinhole           704 NoSuchEntry                     - (delete of absent = success)
//	ErrProtocolNotSupported    705 ProtocolNotSupported            9 UNSUPP_PROTOCOL
//	ErrWildcardInternalPort    706 InternalPortWildcardingNotAllowed 3 MALFORMED_REQUEST
//	ErrNotAuthorized           606 Action not authorized           2 NOT_AUTHORIZED
//	ErrInvalidArgs             402 Invalid Args                    3 MALFORMED_REQUEST
//	ErrBackend, ErrStore       501 Action Failed                   7 NETWORK_FAILURE
//
// The firewall service's own argument checks (702, 707, 708, 402 for
// malformed values) happen in package igd before the core is asked.
//
// # Changes: the external address and restarts
//
// On Linux a netlink subscription to the kernel's address events
// (addrwatch_linux.go) reports a change of an external interface's
// addresses as it happens: the address is read again at once (or asked
// from STUN again), and a relay bound to the interface moves to the new
// address (relaybackend.go). The periodic refresh stays as a safety net.
// A new external address is logged with what it means, sent to UPnP event
// subscribers, restarts PCP's epoch (RFC 6887 §8.5; NAT-PMP's epoch only
// restarts with lost leases), and is announced.
//
// Announcements (package pmp) go to 224.0.0.1:5350 on the internal
// interfaces only, at start and on each address change: a NAT-PMP external
// address response and a PCP unsolicited ANNOUNCE, 10 of each, at once and
// then after 250 ms, doubling (RFC 6886 §3.2.1); and the PCP ANNOUNCE to
// [ff02::1]:5350 over IPv6 on the same schedule, from each IPv6 address of
// the interface (pmp.Server.ServePCPIPv6).
//
// # Lifecycle
//
// New opens the store (restoring leases: the core re-checks them against the
// current policy and re-applies them to the backend), the backend and every
// socket, so that configuration and port problems show up before Serve.
// Serve runs until its context ends and then shuts down: SSDP byebye, the
// listeners closed, the core closed. Installed rules and stored leases are
// kept, so that a restart does not interrupt traffic, unless
// Config.FlushOnExit asks for the rules to be removed.
package daemon
