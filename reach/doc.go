// Package reach proves that a port forward works from outside: a probe
// server on the Internet connects back to the address a request came from,
// on the port named in the request, and reports whether the program at the
// other end is the one that asked.
//
// A router can accept a mapping and still not forward: another NAT in front
// of it (double NAT, carrier-grade NAT), a firewall on the host, a mapping
// pointing at another machine, a router that lies. Only traffic from outside
// tells. Checker is the client side, ProbeServer the server side.
// RouterFacts asks the router what it says about the port (its external
// address, its mapping), and Diagnose turns a failure and those facts into
// a sentence for the user; CheckGateway does all three and returns a
// Report. portfwd check and the web UI's check button both diagnose here,
// so they always say the same.
//
// # Protocol
//
// The client (Checker) picks a random 128-bit token, makes sure a program
// that knows the token listens on the internal port, and sends
//
//	POST /v1/check HTTP/1.1
//	Content-Type: application/json
//
//	{"protocol":"tcp","port":18080,"token":"<32 lowercase hex digits>"}
//
// The probe server reaches the requester's own address, the IP address of
// the TCP connection carrying the request (r.RemoteAddr), on that port.
// Nothing in the request names a host: unknown JSON fields are ignored, and
// so are X-Forwarded-For and the like, so a probe server can never be made
// to connect to a third party. It speaks first, with one line
//
//	portfwd-reach/1 probe <token>\n
//
// over a TCP connection or as a UDP datagram (resent every 250 ms, since
// datagrams get lost), and expects back
//
//	portfwd-reach/1 reply <token>\n
//
// The client's listener answers only that exact probe line, with its own
// token; anything else gets no answer, so the listener serves nothing to
// strangers. The reply differs from the probe so that an echo service is
// not taken for portfwd's listener. The server then answers the HTTP
// request with 200 and
//
//	{"protocol":"tcp","address":"203.0.113.1:18080","reachable":true,
//	 "answered":true,"rtt_ms":3.2}
//
// "reachable" means the reply came back: the forward leads to the program
// that asked. "answered" means something accepted the connection or sent a
// datagram back, which is all that can be shown when the port belongs to
// another program (a web server already running on it): the check then
// proves that the port is open from outside, not which host answered. On
// failure "code" says what happened and "error" says it in words:
//
//	refused      TCP reset or ICMP port unreachable
//	timeout      no answer within the connect timeout (packets dropped)
//	mismatch     something answered, but not with the token
//	unreachable  ICMP host or network unreachable
//	error        anything else
//
// Requests the server will not run get a status and {"error":"..."}: 400
// (malformed), 403 (a source address it will not probe), 404, 405, 413
// (body over MaxRequestBytes), 429 (rate limit, with Retry-After) and 503
// (too many checks at once, with Retry-After).
//
// # Safety
//
// A probe server connects only to the address the request came from, over
// TCP: the requester has completed a handshake from that address, so it
// cannot spoof someone else's, and the server is not a port scanner or a
// reflector for third parties. A UDP check sends at most one 55-byte
// datagram per 250 ms for at most MaxConnectTimeout, in answer to an HTTP
// request larger than that. Checks are rate-limited per source address
// (per /64 for IPv6) with a token bucket that cannot be turned off, bodies
// are limited to MaxRequestBytes, connect-back to MaxConnectTimeout, the
// number of checks running at once is capped, and the server never
// redirects. Loopback sources are refused unless AllowLoopback is set: a
// probe server behind a reverse proxy on the same host would otherwise
// probe its own host's services for anyone. Do not put a probe server
// behind a reverse proxy at all: it would probe the proxy.
//
// The client reaches probe servers over IPv4 only and never through an
// HTTP proxy (its default HTTP client), because the server probes the
// address it sees, and port mappings are made on the router's IPv4
// address. It does not follow redirects.
//
// # Listener
//
// If nothing listens on the internal port, Checker starts a temporary
// listener there for the duration of the check (TCP: accept, read the
// probe line, answer; UDP: answer the probe datagram), so a success proves that the forward leads
// to this host and this port. If another program holds the port, the check
// can only show that something answered (TCP); Result.Listener says which
// case it was. The temporary listener also records that it saw the token,
// a proof that does not depend on the probe server's word.
//
// # Running a probe server
//
//	portfwd probe-server --listen :8999 --rate 10/min
//
// and point clients at it with "portfwd check 8080 --probe http://HOST:8999"
// or probe_servers = ["http://HOST:8999"] in ~/.config/portfwd/config.toml.
package reach
