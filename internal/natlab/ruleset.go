package natlab

import (
	"fmt"
	"strings"
)

// ruleset returns the router's nftables ruleset, fed to `nft -f -`.
//
// Everything lives in one `inet` table called "filter": miniupnpd's nftables
// backend talks NFPROTO_INET and, by default, looks for a table of that name
// holding the chains named in its config. Debian bookworm's nft_init.sh,
// meant to create them, sources the iptables helper script and dies, so the
// lab writes them itself.
//
// In Router "none" mode there is no miniupnpd: its chains are left out, the
// input chain drops nothing (the gateway under test must refuse WAN peers on
// its own), and the forward chain accepts connections that some other table
// DNAT-ed (`ct status dnat`), as OpenWrt's fw4 does. A gateway under test can
// then keep its port mappings in a table of its own.
func (l *Lab) ruleset() string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	mini := l.opts.Router == RouterMiniupnpd
	w("flush ruleset")
	w("table inet filter {")
	w("  chain input {")
	w("    type filter hook input priority filter; policy accept;")
	if mini {
		// The management protocols answer the LAN only.
		w("    iifname %q tcp dport %d drop", RouterWANIf, MiniupnpdHTTPPort)
		w("    iifname %q udp dport { 1900, 5351 } drop", RouterWANIf)
	}
	w("  }")
	w("  chain forward {")
	w("    type filter hook forward priority filter; policy drop;")
	w("    ct state established,related accept")
	w("    iifname %q oifname %q accept", RouterLANIf, RouterWANIf)
	if mini {
		w("    jump miniupnpd")
	} else {
		w("    ct status dnat accept")
	}
	l.ruleset6(w)
	w("  }")
	w("  chain prerouting {")
	w("    type nat hook prerouting priority dstnat; policy accept;")
	if mini {
		w("    jump prerouting_miniupnpd")
	}
	w("  }")
	w("  chain postrouting {")
	w("    type nat hook postrouting priority srcnat; policy accept;")
	if mini {
		w("    jump postrouting_miniupnpd")
	}
	w("    oifname %q ip saddr %s masquerade", RouterWANIf, l.LANPrefix)
	w("  }")
	if mini {
		w("  chain miniupnpd {")
		w("  }")
		w("  chain prerouting_miniupnpd {")
		w("  }")
		w("  chain postrouting_miniupnpd {")
		w("  }")
	}
	l.pinholeChain6(w)
	w("}")
	return b.String()
}
