// Package nft is the Linux netfilter backend of the gateway: it forwards
// mapped ports with nftables DNAT, programmed over netlink through
// github.com/google/nftables (the nft binary is never run).
//
// # Ruleset
//
// The backend owns one table, "inet portfwd" unless Config.Table says
// otherwise, and never touches anything outside it. In nft syntax it holds
// (ExternalInterfaces = ["wan0"], InternalInterfaces = ["lan0"]):
//
//	table inet portfwd {
//		map fwd4 {
//			type inet_proto . inet_service : ipv4_addr . inet_service
//		}
//		map fwd4src {
//			type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service
//		}
//		set portfwd_pin6 {
//			type ipv6_addr . inet_proto . inet_service
//			flags timeout
//			counter
//		}
//		set portfwd_pin6p {
//			type ipv6_addr . inet_proto . inet_service . inet_service
//			flags timeout
//			counter
//		}
//		set portfwd_pin6s {
//			type ipv6_addr . inet_proto . inet_service . ipv6_addr
//			flags timeout
//			counter
//		}
//		set portfwd_pin6sp {
//			type ipv6_addr . inet_proto . inet_service . ipv6_addr . inet_service
//			flags timeout
//			counter
//		}
//		chain prerouting {
//			type nat hook prerouting priority dstnat; policy accept;
//			iifname "wan0" fib daddr type local dnat ip to ip saddr . meta l4proto . th dport map @fwd4src
//			iifname "wan0" meta nfproto ipv4 fib daddr type local dnat ip to meta l4proto . th dport map @fwd4
//			iifname "lan0" fib daddr type local fib daddr . iif type != local dnat ip to ip saddr . meta l4proto . th dport map @fwd4src
//			iifname "lan0" meta nfproto ipv4 fib daddr type local fib daddr . iif type != local dnat ip to meta l4proto . th dport map @fwd4
//		}
//		chain postrouting {
//			type nat hook postrouting priority srcnat; policy accept;
//			iifname "lan0" oifname "lan0" ct status dnat masquerade
//		}
//		chain forward {
//			type filter hook forward priority filter; policy accept;
//			ct status dnat accept
//			iifname "wan0" ip6 daddr . meta l4proto . th dport @portfwd_pin6 accept
//			iifname "wan0" ip6 daddr . meta l4proto . th dport . th sport @portfwd_pin6p accept
//			iifname "wan0" ip6 daddr . meta l4proto . th dport . ip6 saddr @portfwd_pin6s accept
//			iifname "wan0" ip6 daddr . meta l4proto . th dport . ip6 saddr . th sport @portfwd_pin6sp accept
//		}
//	}
//
// The sets and the last four rules are IPv6 pinholes (pinhole.go): one
// element per pinhole, by which of the remote host and port it restricts.
// In our own table's forward chain they decide nothing against a drop in
// the administrator's forward chain; with Config.ForwardTable and
// ForwardChain the sets and rules go into that chain of the
// administrator's firewall instead (the chain its forward chain jumps to,
// as miniupnpd's upnp_forward_chain), where the backend owns only its own
// rules (tagged) and sets, never the chain. Elements time out by
// themselves a little after their lease (should the daemon be gone), and
// count the packets they let through (GetPinholePackets).
//
// # External address pool
//
// With Config.Pool (a carrier's PCP server spreading mappings over several
// external addresses) the table also holds
//
//	map fwd4pool {
//		type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service
//	}
//	set pool4 {
//		type ipv4_addr
//		elements = { 198.51.100.2, 198.51.100.3 }
//	}
//
// and each interface's pair of prerouting rules is preceded by
//
//	iifname "wan0" meta nfproto ipv4 fib daddr type local dnat ip to ip daddr . meta l4proto . th dport map @fwd4pool
//	iifname "wan0" meta nfproto ipv4 fib daddr type local ip daddr @pool4 accept
//
// A rule with an ExternalAddr is an element of fwd4pool, keyed by that
// address; traffic to a pool address that no element matches is accepted
// without DNAT, so that the address-less maps (the gateway's own address's
// mappings) never answer for a pool address. Without a pool none of this
// exists and the ruleset is as above. Config.Rebuild empties the maps at
// New instead of reading them back (the kernel's dump of a map is
// quadratic in its size), for the caller to fill them again with AddBatch.
//
// A mapping is one element of a map, so Add and Delete cost one element
// insert or delete in a kernel hash table, whatever the number of mappings:
// the rules never change after New. Mappings restricted to one RemoteHost
// live in fwd4src, whose rule comes first, so a restricted mapping is only
// reachable from its host. The chains are rewritten (atomically, in the
// same netlink batch that re-creates them) each time New runs, so a
// changed interface list takes effect on restart, while the maps and their
// elements survive restarts: Close leaves everything in place, Flush
// empties the maps and Destroy deletes the table.
//
// NAT chains only see the first packet of a connection; later packets follow
// the conntrack entry. So Delete stops new connections at once, but flows
// already established keep going until conntrack forgets them (for UDP,
// until they are idle for nf_conntrack_udp_timeout). Run
// "conntrack -D -p tcp --orig-port-dst PORT" to cut them.
//
// # Other firewalls
//
// A packet crosses every base chain registered at a hook, table by table,
// and is dropped if any of them drops it: the accept in our forward chain
// does not override a drop elsewhere. An administrator whose own forward
// chain has policy drop must accept DNATed connections in it, as OpenWrt's
// fw4 does:
//
//	ct status dnat accept
//
// (with iptables: "-m conntrack --ctstate DNAT -j ACCEPT"). Check inspects
// the ruleset for such chains and for other common reasons why forwarded
// traffic would not flow (net.ipv4.ip_forward off, a missing interface).
//
// # Reloads
//
// A firewall reload that removes our objects (fw4 rebuilding its table,
// "nft flush ruleset") is repaired by the next operation that meets the
// missing object (retry, retryPins) and, when the daemon runs
// WatchReloads, within about ReloadDebounce of the reload, from nftables'
// netlink events (reload.go).
//
// # Hairpin
//
// When InternalInterfaces is set, LAN hosts can reach mappings through the
// gateway's external address ("NAT loopback"): packets arriving on an
// internal interface for a local address that is not one of that
// interface's own are DNATed through the same maps, and the postrouting
// chain masquerades LAN-to-LAN DNATed connections so that replies come
// back through the gateway. The limits: a connection from one internal
// interface to the address of another internal interface counts as hairpin
// too, and any other DNAT of LAN-to-LAN traffic in the ruleset is
// masqueraded as well. Leave InternalInterfaces empty to turn hairpin off.
//
// # Limits
//
//   - IPv4 only: mappings are DNAT, and IPv6 needs pinholes rather than
//     NAT; Add rejects IPv6 addresses.
//   - Interface names are matched by name, so interfaces that come and go
//     (ppp0) keep working; a trailing "*" matches a prefix ("ppp*").
//   - The backend keeps an index of what it installed (loaded from the maps
//     by New) to know which map holds a port's element; an element added
//     or removed behind its back with the nft tool is only seen on the
//     next New.
//   - google/nftables has no context support: netlink requests to the
//     kernel are short and never wait on the network, so ctx is only
//     checked before each request.
//   - Check sees nftables only: rules loaded through iptables-legacy are
//     invisible to it (it reports that such tables exist), and iptables-nft
//     rules are only understood for the conntrack match.
package nft
