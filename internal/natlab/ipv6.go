package natlab

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Dual-stack mode (Options.IPv6), modelled on the reference lab's
// NATLAB_IPV6=1: the IPv4 lab as always, plus routed IPv6 between two
// documentation /64s (RFC 3849), with no NAT66.
//
//	 LAN host                    router                              WAN host
//	eth0 2001:db8:77::2 ──── lan0 2001:db8:77::1  wan0 2001:db8:113::1 ──── eth0 2001:db8:113::2
//	default via ::1                                                      2001:db8:77::/64 via 2001:db8:113::1
//
// The router's forward chain lets LAN→WAN out and established traffic back,
// jumps to chain "miniupnpd" (where pinholes live) and then drops, and
// counts, every new inbound IPv6 connection: only a pinhole, an accept rule
// in that chain, lets the WAN host reach the LAN host.
//
// With Router "miniupnpd" the daemon runs with IPv6 on: SSDP on
// [ff02::c]/[ff05::c]:1900 and SOAP on [::]:5000 (bound to lan0), handing
// out http://[2001:db8:77::1]:5000/rootDesc.xml; WANIPv6FirewallControl:1
// pinholes as rules in inet filter/miniupnpd; PCP over IPv6 on [::]:5351.
//
// With Router "none" the same chain exists, jumped to from the forward
// chain for both families, so a gateway under test can put its pinhole
// rules there (forward_table "inet filter", forward_chain "miniupnpd"): an
// accept in a table of its own cannot get past the lab's drop, because a
// packet crosses every base chain at the forward hook.
//
// # IPv6 quirks the lab works around
//
// A fresh address is "tentative" for about two seconds (duplicate address
// detection) and bind(2) to it fails with EADDRNOTAVAIL meanwhile: the lab
// turns DAD off (accept_dad=0, dad_transmits=0) before any link is up and
// adds every address with nodad. Nothing sends router advertisements and
// nothing listens to them (accept_ra=0, autoconf=0,
// router_solicitations=0), so a gateway under test cannot change the
// hosts' addresses or routes behind a test's back. IPv6 forwarding is
// switched by net.ipv6.conf.all.forwarding: the per-interface switch alone
// forwards nothing. The WAN host needs a route to the LAN /64 through the
// router, as an ISP routes a delegated prefix. IPv6 has no rp_filter.
//
// miniupnpd 2.3.1 must see its global LAN address before it starts (with
// only a link-local address it logs "no HTTP IPv6 address, disabling
// IPv6"), and ipv6_listening_ip must stay unset: set to a unicast address
// it binds its HTTP socket there (IPv4 SOAP is then refused) and its SSDP
// socket never receives ff02::c. With -d the lab checks its log for "HTTP
// IPv6 address given to control points".

// Addrs6 are the IPv6 addresses of a dual-stack lab; zero unless
// Options.IPv6.
type Addrs6 struct {
	LANIP6       netip.Addr   // the LAN host: 2001:db8:77::2
	RouterLANIP6 netip.Addr   // the router's LAN address: 2001:db8:77::1
	RouterWANIP6 netip.Addr   // the router's WAN address: 2001:db8:113::1
	WANIP6       netip.Addr   // the WAN host: 2001:db8:113::2
	LANPrefix6   netip.Prefix // 2001:db8:77::/64
	WANPrefix6   netip.Prefix // 2001:db8:113::/64
}

// InboundDropComment tags the forward chain's rule that drops, and counts,
// new inbound IPv6 connections no pinhole accepted.
const InboundDropComment = "inbound IPv6 without pinhole"

// PinholeTable and PinholeChain name where pinholes live in the router's
// ruleset: miniupnpd's upnp_table_name (family inet) and
// upnp_forward_chain, and the forward_table / forward_chain a gateway
// under test must be given in Router "none" mode.
const (
	PinholeTable = "inet filter"
	PinholeChain = "miniupnpd"
)

func defaultAddrs6() Addrs6 {
	return Addrs6{
		LANIP6:       netip.MustParseAddr("2001:db8:77::2"),
		RouterLANIP6: netip.MustParseAddr("2001:db8:77::1"),
		RouterWANIP6: netip.MustParseAddr("2001:db8:113::1"),
		WANIP6:       netip.MustParseAddr("2001:db8:113::2"),
		LANPrefix6:   netip.MustParsePrefix("2001:db8:77::/64"),
		WANPrefix6:   netip.MustParsePrefix("2001:db8:113::/64"),
	}
}

// checkIPv6Options refuses combinations the dual-stack lab does not build.
func checkIPv6Options(opts Options) error {
	if opts.IPv6 && opts.DoubleNAT {
		return fmt.Errorf("natlab: Options.IPv6 and Options.DoubleNAT cannot be combined: the dual-stack lab has one router")
	}
	return nil
}

// prepareIPv6 sets each namespace's IPv6 switches while every link is still
// down: no DAD, no RA, no autoconfiguration, then IPv6 on. On the router it
// turns forwarding on.
func (l *Lab) prepareIPv6() error {
	quiet := map[string]string{}
	for _, k := range []string{"accept_dad", "dad_transmits", "accept_ra", "autoconf", "router_solicitations"} {
		quiet["net/ipv6/conf/*/"+k] = "0"
	}
	on := map[string]string{
		"net/ipv6/conf/all/disable_ipv6":     "0",
		"net/ipv6/conf/default/disable_ipv6": "0",
	}
	for _, h := range []string{HostLAN, HostRouter, HostWAN} {
		f, err := l.nsFile(h)
		if err != nil {
			return err
		}
		// Two calls: the map's order is random, and DAD must be off before
		// IPv6 comes on.
		if err := sysctl(f, quiet); err != nil {
			return err
		}
		if err := sysctl(f, on); err != nil {
			return err
		}
		if h == HostRouter {
			if err := sysctl(f, map[string]string{"net/ipv6/conf/all/forwarding": "1"}); err != nil {
				return err
			}
		}
	}
	return nil
}

// configureIPv6 adds the IPv6 addresses and routes, after the links are up.
func (l *Lab) configureIPv6() error {
	a := l.Addrs6
	pfx := func(ip netip.Addr, p netip.Prefix) string { return netip.PrefixFrom(ip, p.Bits()).String() }
	steps := []struct {
		ns    string
		lines []string
	}{
		{l.LAN, []string{
			"addr add " + pfx(a.LANIP6, a.LANPrefix6) + " dev " + HostIf + " nodad",
			"route add ::/0 via " + a.RouterLANIP6.String() + " dev " + HostIf,
		}},
		{l.Router, []string{
			"addr add " + pfx(a.RouterLANIP6, a.LANPrefix6) + " dev " + RouterLANIf + " nodad",
			"addr add " + pfx(a.RouterWANIP6, a.WANPrefix6) + " dev " + RouterWANIf + " nodad",
			"route add ::/0 via " + a.WANIP6.String() + " dev " + RouterWANIf,
		}},
		// The ISP routes the delegated LAN prefix to the customer's router.
		{l.WAN, []string{
			"addr add " + pfx(a.WANIP6, a.WANPrefix6) + " dev " + HostIf + " nodad",
			"route add " + a.LANPrefix6.String() + " via " + a.RouterWANIP6.String() + " dev " + HostIf,
		}},
	}
	for _, s := range steps {
		if err := l.ipBatch(s.ns, s.lines...); err != nil {
			return fmt.Errorf("natlab: configuring IPv6 in %s: %w", s.ns, err)
		}
	}
	return nil
}

// ruleset6 writes the forward chain's IPv6 tail: in Router "none" mode the
// jump to the pinhole chain (miniupnpd mode has it already), then the
// counted drop of new inbound IPv6.
func (l *Lab) ruleset6(w func(string, ...any)) {
	if !l.opts.IPv6 {
		return
	}
	if l.opts.Router == RouterNone {
		w("    jump %s", PinholeChain)
	}
	w("    iifname %q oifname %q meta nfproto ipv6 counter drop comment %q", RouterWANIf, RouterLANIf, InboundDropComment)
}

// pinholeChain6 writes the (empty) pinhole chain in Router "none" mode;
// miniupnpd mode declares it anyway.
func (l *Lab) pinholeChain6(w func(string, ...any)) {
	if l.opts.IPv6 && l.opts.Router == RouterNone {
		w("  chain %s {", PinholeChain)
		w("  }")
	}
}

// miniupnpdConf6 turns miniupnpd's IPv6 side on.
func (l *Lab) miniupnpdConf6(c *Conf) {
	if !l.opts.IPv6 {
		return
	}
	c.IPv6Disable = false
	c.Extra = append(c.Extra,
		"ext_ifname6="+RouterWANIf,
		"lease_file6="+filepath.Join(l.RunDir, "upnp.leases6"),
	)
}

// waitMiniupnpd6 checks, in debug mode, that miniupnpd kept IPv6 on.
func (l *Lab) waitMiniupnpd6(p *Process) error {
	if !l.opts.IPv6 || l.opts.Quiet {
		return nil
	}
	want := "HTTP IPv6 address given to control points : [" + l.RouterLANIP6.String() + "]"
	for range 200 {
		out := p.Output()
		if strings.Contains(out, want) {
			return nil
		}
		if strings.Contains(out, "disabling IPv6") {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	return fmt.Errorf("natlab: miniupnpd runs without IPv6: its log lacks %q (see %s)", want, p.Log)
}

// MiniupnpdURL6 returns the URL miniupnpd hands out to IPv6 control
// points, or "" without miniupnpd or without Options.IPv6. SOAP for
// WANIPv6FirewallControl must go there: miniupnpd 2.3.1 refuses AddPinhole
// sent over IPv4 with 606.
func (l *Lab) MiniupnpdURL6() string {
	if l.Conf == nil || !l.opts.IPv6 {
		return ""
	}
	return fmt.Sprintf("http://%s/rootDesc.xml", netip.AddrPortFrom(l.RouterLANIP6, l.Conf.HTTPPort))
}

// IPv6 reports whether the lab is dual-stack.
func (l *Lab) IPv6() bool { return l.opts.IPv6 }

// AddAddr6 gives host's interface (eth0 for the LAN and WAN hosts) one more
// IPv6 address, without DAD, e.g. a second global address of the LAN host.
// It is removed with the lab.
func (l *Lab) AddAddr6(t testing.TB, host string, addr netip.Prefix) {
	t.Helper()
	ns, err := l.Namespace(host)
	if err != nil {
		t.Fatal(err)
	}
	ifname := HostIf
	if host == HostRouter {
		ifname = RouterLANIf
	}
	if err := l.ipBatch(ns, "addr add "+addr.String()+" dev "+ifname+" nodad"); err != nil {
		t.Fatalf("natlab: %v", err)
	}
}

// PinholeRules returns the rules of the router's pinhole chain
// (inet filter/miniupnpd), one per line, without the chain's braces.
func (l *Lab) PinholeRules(t testing.TB) []string {
	t.Helper()
	out, err := l.Run(t, HostRouter, l.nft, "list", "chain", "inet", "filter", PinholeChain)
	if err != nil {
		t.Fatal(err)
	}
	var rules []string
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "table ") || strings.HasPrefix(line, "chain ") || line == "}" {
			continue
		}
		rules = append(rules, line)
	}
	return rules
}

var dropCounter = regexp.MustCompile(`packets (\d+) bytes \d+ drop comment "` + regexp.QuoteMeta(InboundDropComment) + `"`)

// InboundDrops6 returns how many packets the router's forward chain has
// dropped as new inbound IPv6 without a pinhole.
func (l *Lab) InboundDrops6(t testing.TB) int {
	t.Helper()
	out, err := l.Run(t, HostRouter, l.nft, "list", "chain", "inet", "filter", "forward")
	if err != nil {
		t.Fatal(err)
	}
	m := dropCounter.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("natlab: the forward chain has no %q counter:\n%s", InboundDropComment, out)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// TentativeAddrs6 lists the IPv6 addresses of the lab still in DAD
// ("tentative"), which bind(2) refuses; a built lab has none.
func (l *Lab) TentativeAddrs6(t testing.TB) []string {
	t.Helper()
	var tentative []string
	for _, h := range []string{HostLAN, HostRouter, HostWAN} {
		out, err := l.Run(t, h, l.ip, "-6", "addr", "show", "tentative")
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(out, "\n") {
			if f := strings.Fields(line); len(f) > 1 && f[0] == "inet6" {
				tentative = append(tentative, h+" "+f[1])
			}
		}
	}
	return tentative
}

// tcpNetwork returns base+"4" or base+"6" ("tcp4", "udp6", ...) for
// addr's family, so the lab's servers and probes serve both.
func tcpNetwork(base string, addr netip.Addr) string {
	if addr.Is6() && !addr.Is4In6() {
		return base + "6"
	}
	return base + "4"
}
