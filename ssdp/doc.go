// Package ssdp implements the Simple Service Discovery Protocol of the UPnP
// Device Architecture (UDA 1.1 and 2.0, IPv4) on both sides.
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
// each new answer to a callback. The server side is Responder, used by the
// gateway daemon to answer searches and to announce its devices on the
// internal interfaces only.
package ssdp
