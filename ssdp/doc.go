// Package ssdp implements the Simple Service Discovery Protocol of the UPnP
// Device Architecture (UDA 1.1 and 2.0) on both sides.
//
// The codec is a set of pure functions over bytes: AppendSearch and
// ParseSearch for the M-SEARCH request, AppendResponse, AppendNotify and
// ParseResponse for the answers and announcements, and ParseMessage below
// them. Parsing is as tolerant as the routers in the field require (header
// names in any case, LF-only lines, no final blank line, "max-age = 1800",
// an empty SERVER, extra headers) and strict about anything that is not an
// SSDP message at all, so that a stray datagram is reported, not misread.
//
// The client side is Search (and SearchAll): it multicasts M-SEARCH on every
// chosen interface at once, optionally unicasts it to known hosts, and hands
// each new answer to a callback. It searches IPv4 (239.255.255.250) and
// IPv6 (UDA 1.1 Annex A: ff02::c from each interface's link-local address,
// and ff05::c where the interface has a global one) at once, unless
// SearchOptions.Family picks one; each IPv6 search is sent on its own
// interface, since on a host with several the first ff00::/8 route would
// take them all. The server side is Responder, used by the
// gateway daemon to answer searches and to announce its devices on the
// internal interfaces only.
package ssdp
