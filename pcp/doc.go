// Package pcp implements the Port Control Protocol (PCP, RFC 6887): the wire
// codec, a client that asks a router for port mappings, and the
// request-handling half of a server that a gateway daemon plugs its
// mapping table into.
//
// PCP is NAT-PMP's successor and shares its UDP port, 5351; packets of the
// two are told apart by their first byte, the version: 0 for NAT-PMP, 2 for
// PCP (IsPCP). Unlike NAT-PMP it speaks IPv6 as well as IPv4 (addresses
// travel as 128 bits, IPv4 in IPv4-mapped form), names each mapping's owner
// with a random nonce, and carries options: THIRD_PARTY, PREFER_FAILURE
// and FILTER.
//
// The codec (AppendRequest, ParseRequest, AppendResponse, ParseResponse)
// is made of pure functions over byte slices, so it can be table-tested and
// fuzzed without a network. Its errors tell a server how to answer a bad
// request (HandlePacket acts on them).
//
// Client does one request exchange per call over a fresh UDP socket
// connected to the gateway, retransmitting on RFC 6887 §8.1.1's schedule
// but with a 250 ms first wait instead of 3 s (see DefaultInitialTimeout
// for why), until a reply arrives, the attempts run out, or the context
// ends. Every non-zero result code surfaces as a *ResultError whose message
// tells the user what to do. The client keeps the server's epoch (RFC 6887
// §8.5) to notice when the router rebooted and lost its mappings.
//
// A mapping can only be refreshed or deleted with the nonce that made it.
// MapResult carries it; a program that deletes the mapping in a later
// process keeps it on disk (portmap's state store does).
//
// HandlePacket answers one request through a Handler, which is where the
// router's mapping table lives; it owns no socket. Port 5351, which PCP
// shares with NAT-PMP, is served by package pmp's Server, which hands PCP's
// packets to HandlePacket and sends the unsolicited ANNOUNCE (RFC 6887
// §14.1.3) when the gateway starts or its external address changes.
//
// Quirks of deployed implementations that this package copes with are
// documented where they are handled; in short:
//
//   - A NAT-PMP-only gateway answers a PCP request with a NAT-PMP
//     Unsupported Version reply (version 0, 16-bit result), and a draft
//     implementation with a version 1 one; the client reports both as
//     ResultUnsuppVersion with the version the server speaks, instead of
//     waiting for a PCP reply that never comes.
//   - miniupnpd 2.3 answers a delete of a mapping that does not exist with
//     NO_RESOURCES instead of SUCCESS, refuses a delete whose nonce does
//     not match with NOT_AUTHORIZED but lets a MAP with another nonce
//     replace the mapping, sends error responses with lifetime 0 for long
//     lifetime errors, and answers an option valid for MAP only that comes
//     with PEER with MALFORMED_REQUEST (this package's server answers
//     MALFORMED_OPTION).
//   - Over IPv6, a MAP from a host's own address is a firewall pinhole on a
//     router without NAT66: miniupnpd 2.3.1 answers with the host's own
//     address and internal port, whatever external port was suggested
//     (portmap's Pinholer checks that and refuses a translation). It
//     checks the nonce of a delete but not of a refresh (fixed in 2.3.8),
//     and its nftables backend loses the nonce when it refreshes a
//     pinhole (update_pinhole re-adds the rule without its description),
//     so a refreshed pinhole can never be deleted: the delete is refused
//     NOT_AUTHORIZED whatever nonce it carries. portmap shortens such a
//     pinhole to the server's minimum lifetime instead and says so.
//   - tailscale's portmapper releases its PCP mappings with a fresh nonce,
//     which servers that check nonces refuse; this package's Delete
//     requires the mapping's nonce for that reason.
package pcp
