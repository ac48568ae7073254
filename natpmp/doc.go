// Package natpmp implements NAT Port Mapping Protocol (NAT-PMP, RFC 6886):
// the wire codec, a client that asks a router for its external address and
// for port mappings, and the request-handling half of a server that a router
// daemon plugs its mapping table into.
//
// The codec (AppendRequest, ParseRequest, AppendResponse, ParseResponse) is
// made of pure functions over byte slices so it can be table-tested and
// fuzzed without a network. Client does one request exchange per call over a
// fresh UDP socket connected to the gateway, retransmitting on the RFC 6886
// §3.1 schedule (250 ms, doubling) until a reply arrives, the attempts run
// out, or the context ends. HandlePacket answers one request through a
// Handler, which is where the router's mapping table and firewall live. The
// socket of port 5351, which NAT-PMP shares with PCP, is package pmp's: its
// Server reads the requests, hands NAT-PMP's to HandlePacket, and sends the
// announcements.
//
// Every non-zero result code a gateway returns surfaces as a *ResultError,
// whose message tells the user what to do about it. The client also tracks
// the gateway's "seconds since start of epoch" (RFC 6886 §3.6) to notice
// when the router has rebooted or otherwise lost its mappings, so that a
// keep-alive loop can re-create them at once instead of at the next renewal.
//
// Quirks of deployed implementations that this package copes with are
// documented where they are handled; in short:
//
//   - RFC 6886 §3.5 drew the Unsupported Version reply with opcode 0, which
//     erratum 3618 corrects to 128. Servers exist that follow either, so the
//     parser accepts both; this package's server sends 128.
//   - Error replies are sometimes cut short after the 8-byte common header;
//     the parser accepts short replies when the result code is non-zero.
//   - A PCP-only gateway answers a NAT-PMP request with a PCP (version 2)
//     Unsupported Version reply; the client reports that as
//     UnsupportedVersion instead of waiting for a NAT-PMP reply that never
//     comes.
//   - A router that is not connected may answer "success" with external
//     address 0.0.0.0; the client reports that as ErrNoExternalAddress.
//   - A host that does not run NAT-PMP answers with ICMP port unreachable;
//     the client stops retrying at once (RFC 6886 §3.1) with
//     ErrNotSupported, as libnatpmp does.
//
// Unsolicited address announcements (RFC 6886 §3.2.1, multicast to
// 224.0.0.1:5350) live with the roles that own the sockets: package pmp's
// Server sends them when the gateway starts and on every change of its
// external address, and portmap's Keep and Watch listen for them.
// Client.ObserveEpoch is how a listener feeds the epoch check.
package natpmp
