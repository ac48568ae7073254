// Package relay is the userspace backend of the gateway: it forwards mapped
// ports by terminating connections on the gateway and opening new ones to
// the internal host, so it needs no privileges and no firewall (beyond
// binding the external ports, which below 1024 needs CAP_NET_BIND_SERVICE).
//
// # How it works
//
// For a TCP rule the relay listens on BindAddr:ExternalPort; each accepted
// connection gets a connection to InternalAddr:InternalPort, and the two are
// spliced with io.Copy in both directions, which on Linux moves the bytes
// with splice(2) without copying them through user space. When one side
// finishes sending (FIN), the relay half-closes the other side (CloseWrite)
// and keeps relaying the opposite direction until it finishes too, so
// protocols that signal the end of a request with a half-close work. An
// error (reset) on either side tears the pair down.
//
// For a UDP rule the relay binds one socket on BindAddr:ExternalPort and
// keeps a session per client address: a socket connected to the internal
// host, whose replies are sent back to that client from the external port.
// A session ends after UDPIdleTimeout without traffic in either direction.
//
// IPv6 pinholes (AddPinhole, pinhole.go) are relayed the same way, from
// the router's external IPv6 addresses (Config.PinholeAddrs) at the
// pinhole's port to the LAN host's address and port: peers reach them at
// the router's address, and one port serves one pinhole.
//
// # Limits
//
//   - The internal host sees connections from the gateway, not from the
//     real client: a relay cannot preserve source addresses. Use the nft
//     backend where that matters (logs, per-client access control).
//   - RemoteHost restriction is enforced after the fact: a TCP connection
//     from another host completes its handshake and is then reset; UDP
//     datagrams from other hosts are dropped.
//   - MaxConnsPerRule bounds the TCP connections and UDP sessions of each
//     rule; beyond it new connections are reset and new UDP clients
//     ignored until a slot frees. Each UDP session holds a 64 KiB buffer.
//   - The relay lives in the daemon's process: Close (like Flush) stops all
//     forwarding, and the core re-adds its mappings when it starts again.
//   - The gateway itself must not already use the external port; Add then
//     fails with a *PortInUseError.
package relay
