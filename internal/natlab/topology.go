package natlab

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
)

// topology describes a lab's namespaces: which exist, how veths join
// them, how each is addressed and routed, and which nftables rulesets they
// load. Start's single lab and StartDouble's two-level one are each one
// such description (Lab.topology, Double.topology), built by the same
// steps (createTopology, configureTopology).
type topology struct {
	hosts    []topoHost // in creation order
	links    []topoLink
	rulesets []topoRuleset
}

// topoHost is one namespace: its role (HostLAN, ...), name, whether it
// forwards, and its `ip -batch` configuration.
type topoHost struct {
	role, ns string
	forward  bool
	ip       []string
}

// topoLink is a veth pair, each end born inside its namespace.
type topoLink struct{ a, aNS, b, bNS string }

// topoRuleset is an nftables ruleset loaded in a host, kept in RunDir/file.
type topoRuleset struct{ role, file, rules string }

// pfx writes a as an address of p's length ("10.77.0.1/24").
func pfx(a netip.Addr, p netip.Prefix) string { return netip.PrefixFrom(a, p.Bits()).String() }

// hostLines configures an end host: its address on eth0, its default
// route to gw, and a multicast route so that SSDP leaves by eth0 even if a
// test replaces the default route.
func hostLines(a netip.Addr, p netip.Prefix, gw netip.Addr) []string {
	return []string{
		"link set lo up",
		"addr add " + pfx(a, p) + " dev " + HostIf,
		"link set " + HostIf + " up",
		"route add default via " + gw.String() + " dev " + HostIf,
		"route add 224.0.0.0/4 dev " + HostIf,
	}
}

// routerLines configures a router: lan0 on its inside network, wan0 on its
// outside one, multicast to the inside unless a program chooses (gotcha
// D1), and the default route through wan0 to up, as behind any ISP (a
// gateway under test checks that its external interface carries the
// default route and its internal one does not).
func routerLines(in netip.Addr, inNet netip.Prefix, out netip.Addr, outNet netip.Prefix, up netip.Addr) []string {
	return []string{
		"link set lo up",
		"addr add " + pfx(in, inNet) + " dev " + RouterLANIf,
		"addr add " + pfx(out, outNet) + " dev " + RouterWANIf,
		"link set " + RouterLANIf + " up",
		"link set " + RouterWANIf + " up",
		"route add 224.0.0.0/4 dev " + RouterLANIf,
		"route add default via " + up.String() + " dev " + RouterWANIf,
	}
}

// wanLines configures the WAN host: two addresses on its /24 (the STUN
// helper's) and no route anywhere else, so only NAT reaches the LAN.
func wanLines(a, a2 netip.Addr, p netip.Prefix) []string {
	return []string{
		"link set lo up",
		"addr add " + pfx(a, p) + " dev " + HostIf,
		"addr add " + pfx(a2, p) + " dev " + HostIf,
		"link set " + HostIf + " up",
	}
}

// baseSysctls are set in every namespace: IPv6 off before any link is up
// (no router solicitations, DAD or MLD chatter), and rp_filter pinned to 0
// so that a host-wide default inherited by new namespaces cannot drop the
// STUN answers that come from the second address.
func baseSysctls() map[string]string {
	return map[string]string{
		"net/ipv6/conf/all/disable_ipv6":     "1",
		"net/ipv6/conf/default/disable_ipv6": "1",
		"net/ipv4/conf/*/rp_filter":          "0",
	}
}

// createTopology creates tp's namespaces and veths, refusing namespaces
// that exist already (someone else's: never touched, not even at
// teardown). Whatever it created is recorded for teardown, even on error.
func (l *Lab) createTopology(tp topology) error {
	var lines []string
	for _, h := range tp.hosts {
		if _, err := os.Stat(filepath.Join(netnsDir, h.ns)); err == nil {
			return fmt.Errorf("natlab: namespace %s already exists; give the lab another prefix (or delete a stale one with `ip netns del %s`)", h.ns, h.ns)
		}
		lines = append(lines, "netns add "+h.ns)
	}
	// The veths are born inside the namespaces, never in ours.
	for _, k := range tp.links {
		lines = append(lines, fmt.Sprintf("link add %s netns %s type veth peer name %s netns %s", k.a, k.aNS, k.b, k.bNS))
	}
	err := l.ipBatch("", lines...)
	// ip -batch stops at the first error: whatever exists now is ours.
	for _, h := range tp.hosts {
		if _, serr := os.Stat(filepath.Join(netnsDir, h.ns)); serr == nil {
			l.created = append(l.created, h.ns)
		}
	}
	if err != nil {
		if strings.Contains(err.Error(), "Operation not permitted") || strings.Contains(err.Error(), "Permission denied") {
			return fmt.Errorf("%w: %v", errNoNetns, err)
		}
		return fmt.Errorf("natlab: creating the lab's namespaces: %w", err)
	}
	return nil
}

// configureTopology sets sysctls (plus ip_forward in forwarding hosts),
// then each host's addresses and routes.
func (l *Lab) configureTopology(tp topology, sysctls map[string]string) error {
	for _, h := range tp.hosts {
		f, err := l.nsFile(h.role)
		if err != nil {
			return err
		}
		kv := sysctls
		if h.forward {
			kv = map[string]string{"net/ipv4/ip_forward": "1"}
			for k, v := range sysctls {
				kv[k] = v
			}
		}
		if err := sysctl(f, kv); err != nil {
			return err
		}
	}
	for _, h := range tp.hosts {
		if err := l.ipBatch(h.ns, h.ip...); err != nil {
			return fmt.Errorf("natlab: configuring %s: %w", h.ns, err)
		}
	}
	return nil
}

// loadRulesets writes each of tp's rulesets to RunDir and loads it.
func (l *Lab) loadRulesets(tp topology) error {
	for _, r := range tp.rulesets {
		if err := os.WriteFile(filepath.Join(l.RunDir, r.file), []byte(r.rules), 0o644); err != nil {
			return fmt.Errorf("natlab: %w", err)
		}
		cmd := l.command(context.Background(), r.role, l.nft, "-f", "-")
		cmd.Stdin = strings.NewReader(r.rules)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("natlab: loading the %s nftables ruleset (%s/%s): %w: %s", r.role, l.RunDir, r.file, err, bytes.TrimSpace(out))
		}
	}
	return nil
}

// topology is the single lab: LAN host, router, WAN host.
func (l *Lab) topology() topology {
	return topology{
		hosts: []topoHost{
			{HostLAN, l.LAN, false, hostLines(l.LANIP, l.LANPrefix, l.RouterLANIP)},
			{HostRouter, l.Router, true, routerLines(l.RouterLANIP, l.LANPrefix, l.RouterWANIP, l.WANPrefix, l.WANIP)},
			{HostWAN, l.WAN, false, wanLines(l.WANIP, l.WANIP2, l.WANPrefix)},
		},
		links: []topoLink{
			{HostIf, l.LAN, RouterLANIf, l.Router},
			{RouterWANIf, l.Router, HostIf, l.WAN},
		},
		rulesets: []topoRuleset{{HostRouter, "router.nft", l.ruleset()}},
	}
}

// topology is the double lab: the home router's outside is the CGNAT
// segment, whose router (the ISP) has the WAN host outside.
func (d *Double) topology() topology {
	l := d.Lab
	// The ISP gets a miniupnpd router's ruleset, for the CGNAT segment.
	isp := &Lab{opts: Options{Router: RouterMiniupnpd}, LANPrefix: d.CGNATPrefix}
	return topology{
		hosts: []topoHost{
			{HostLAN, l.LAN, false, hostLines(l.LANIP, l.LANPrefix, l.RouterLANIP)},
			{HostRouter, l.Router, true, routerLines(l.RouterLANIP, l.LANPrefix, l.RouterWANIP, d.CGNATPrefix, d.ISPInsideIP)},
			{HostISP, l.ISP, true, routerLines(d.ISPInsideIP, d.CGNATPrefix, d.ISPOutsideIP, l.WANPrefix, l.WANIP)},
			{HostWAN, l.WAN, false, wanLines(l.WANIP, l.WANIP2, l.WANPrefix)},
		},
		links: []topoLink{
			{HostIf, l.LAN, RouterLANIf, l.Router},
			{RouterWANIf, l.Router, RouterLANIf, l.ISP},
			{RouterWANIf, l.ISP, HostIf, l.WAN},
		},
		// The home router: Router "none"'s ruleset.
		rulesets: []topoRuleset{{HostRouter, "router.nft", l.ruleset()}, {HostISP, "isp.nft", isp.ruleset()}},
	}
}
