// Package gateway is the core of the router-side daemon: the port mapping
// table that UPnP IGD, NAT-PMP and PCP clients all share, the policy that
// decides what they may map, lease expiry, persistence across restarts,
// and the Backend that applies mappings to the data plane.
//
// The protocol servers are thin adapters onto Core: they decode a request,
// call one Core method with a Requester (the packet's source address and
// the protocol), and encode the result or translate the error. They never
// call the Backend or the Store; the Core checks each change against the
// Policy, applies it to the Backend, records it in the Store, and only
// then shows it in the table, undoing what it did if a step fails.
//
// # Semantics shared by all protocols
//
// The table holds at most one mapping per protocol and external port. Add
// follows UPnP AddPortMapping: the same client asking again for the same
// port updates (and so refreshes) its mapping, another client gets
// ErrConflict. AddAny picks a free port, as UPnP AddAnyPortMapping and
// the NAT-PMP and PCP suggested port need. FindByInternal serves NAT-PMP
// and PCP, which identify a mapping by its internal side.
//
// Leases end at Mapping.Expires. A single timer, aimed at the earliest
// expiry kept in a heap, removes mappings as their leases end; tests drive
// it with clocktest.Fake.
//
// # IPv6 pinholes
//
// On IPv6 the gateway does not translate, it filters: a pinhole lets
// traffic reach a LAN host's own address and port. Pinholes live in a
// table of their own (pinhole.go), keyed by the 5-tuple of
// WANIPv6FirewallControl:1 (protocol, internal address and port, remote
// host and port) and named by a 16-bit unique ID from a persisted
// counter. AddPinhole renews the pinhole of an existing tuple, keeping
// its ID; leases are 1..86400 s. Secure mode admits any address of the
// requester's own host (Config.SameHost). A Backend that can open them
// implements PinholeBackend (nft, relay, Memory); a Store that can keep them,
// PinholeStore (FileStore).
//
// # Errors
//
// Core methods return errors that wrap the sentinels of errors.go (and
// *ConflictError, *BackendError); callers test them with errors.Is. The
// core speaks no protocol: each protocol adapter turns these errors into
// its protocol's codes (the table is in package gateway/daemon's
// documentation). The Core never makes UPnP's 715, 724, 725 or 727, by
// design: a wildcard remote host is always accepted, external and internal
// ports may differ, permanent leases are clamped to Policy.MaxLease rather
// than refused, and specific external ports are supported.
//
// # Persistence
//
// FileStore keeps leases in an append-only journal with compaction: a
// change costs one small write, a kill -9 at any point loses no
// acknowledged lease, and damage anywhere in the file (a torn last
// record, a flipped bit, garbage appended) costs only the records it
// touches, with the damaged file kept aside. It also keeps the device
// UUID and the NAT-PMP epoch origin. On start, New drops expired leases,
// re-checks the rest against the current policy, and reconciles the
// backend with what is left without flushing it first; a lease the
// backend refuses is parked rather than failing the start.
//
// # Safety
//
// Two indexes keep every request's cost independent of how many mappings
// a host holds (by internal address, and by internal address, protocol
// and port), a port bitmap makes AddAny skip taken ports by the word, and
// bulk deletes go in chunks that release the table between them.
// Config.PortInUse keeps clients off the router's own services, and
// Config.Audit receives the audit trail.
package gateway
