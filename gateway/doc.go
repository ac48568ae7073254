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
// # Errors
//
// Core methods return errors that wrap the sentinels below; adapters test
// them with errors.Is, or use UPnPCode, UPnPCodeV1, NATPMPResult and
// PCPResult, which implement this table. "-" means the protocol has no
// operation that can produce the error.
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
//	ErrBackend, ErrStore,      501 Action Failed                   3 network failure  7 NETWORK_FAILURE
//	ErrClosed, context errors
//
// For WANIPConnection:1 clients, which predate codes 728-733, UPnPCodeV1
// substitutes 501 for 728, 718 for 729, 714 for 730 and 402 for 732 and
// 733. The Core never produces these UPnP codes, by design:
//
//   - 715 WildCardNotPermittedInSrcIP: a wildcard remote host is always
//     accepted.
//   - 724 SamePortValuesRequired: external and internal ports may differ.
//   - 725 OnlyPermanentLeasesSupported: leases are supported; permanent
//     requests are clamped to Policy.MaxLease instead of refused.
//   - 727 ExternalPortOnlySupportsWildcard: specific external ports are
//     supported.
//
// NAT-PMP (RFC 6886) has no codes for conflicts or malformed arguments;
// its adapter uses AddAny, so conflicts and reserved ports become another
// port, and the rest is a refusal.
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
