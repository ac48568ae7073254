package natlab_test

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/portfwd/portfwd/internal/natlab"
	"github.com/portfwd/portfwd/internal/testenv"
)

// The dual-stack lab with miniupnpd, proven with upnpc -6: IPv6 is routed
// (the WAN host sees the LAN host's own address), inbound is dropped and
// counted until a WANIPv6FirewallControl pinhole lets it in, and deleting
// the pinhole shuts it again.
func TestMiniupnpdIPv6Pinhole(t *testing.T) {
	natlab.Require(t, "upnpc")
	l := natlab.Start(t, natlab.Options{IPv6: true})
	if tent := l.TentativeAddrs6(t); len(tent) > 0 {
		t.Fatalf("tentative addresses after Start: %v", tent)
	}
	// IPv4 is untouched by the dual-stack mode.
	if out := run(t, l, natlab.HostLAN, "upnpc", "-i", "-u", l.MiniupnpdURL(), "-s"); !strings.Contains(out, "ExternalIPAddress = "+l.RouterWANIP.String()) {
		t.Errorf("IPv4 IGD in the dual-stack lab: %s", out)
	}

	// LAN -> WAN is routed, not translated.
	wanSrv := l.ServeTCP(t, natlab.HostWAN, at(l.WANIP6, 8000), "wan6")
	if banner, err := l.DialTCP(t, natlab.HostLAN, at(l.WANIP6, 8000), ample); err != nil || banner != "wan6" {
		t.Fatalf("LAN -> WAN over IPv6: %q, %v", banner, err)
	}
	if p := wanSrv.Peers(); len(p) != 1 || p[0].Addr() != l.LANIP6 {
		t.Errorf("WAN server saw %v, want the LAN host's own address %v (no NAT66)", p, l.LANIP6)
	}

	l.ServeTCP(t, natlab.HostLAN, at(l.LANIP6, 8080), "lan6")
	target := at(l.LANIP6, 8080)
	before := l.InboundDrops6(t)
	if banner, err := l.DialTCP(t, natlab.HostWAN, target, quick); err == nil {
		t.Fatalf("before any pinhole the WAN host reached %v (%q)", target, banner)
	}
	if after := l.InboundDrops6(t); after <= before {
		t.Errorf("the forward chain's drop counter stayed at %d: the refusal was not the firewall's", after)
	}

	// Discovery over SSDP on ff02::c, then GetFirewallStatus.
	out := run(t, l, natlab.HostLAN, "upnpc", "-6", "-i", "-S")
	mustContain(t, "upnpc -6 -S", out, "desc: "+l.MiniupnpdURL6(), "Firewall Enabled: Yes", "Inbound Pinhole Allowed: Yes")

	url := l.MiniupnpdURL6()
	out = run(t, l, natlab.HostLAN, "upnpc", "-6", "-i", "-u", url, "-A", "", "0", l.LANIP6.String(), "8080", "TCP", "3600")
	mustContain(t, "upnpc -6 -A", out, "AddPinhole: ([]:0 -> ["+l.LANIP6.String()+"]:8080) / Pinhole ID = ")
	uid := pinholeID(t, out)
	rules := strings.Join(l.PinholeRules(t), "\n")
	mustContain(t, "pinhole chain", rules, fmt.Sprintf("th dport 8080 @nh,192,128 0x%x", l.LANIP6.AsSlice()))

	if banner, err := l.DialTCP(t, natlab.HostWAN, target, ample); err != nil || banner != "lan6" {
		t.Fatalf("WAN -> %v through the pinhole: %q, %v", target, banner, err)
	}

	out = run(t, l, natlab.HostLAN, "upnpc", "-6", "-i", "-u", url, "-D", uid)
	mustContain(t, "upnpc -6 -D", out, "UPNP_DeletePinhole() returned : 0")
	if r := l.PinholeRules(t); len(r) != 0 {
		t.Errorf("pinhole rules left after the delete: %v", r)
	}
	if banner, err := l.DialTCP(t, natlab.HostWAN, target, quick); err == nil {
		t.Fatalf("after the delete the WAN host still reached %v (%q)", target, banner)
	}
}

// pinholeID reads the UniqueID upnpc -A printed.
func pinholeID(t *testing.T, out string) string {
	t.Helper()
	const marker = "Pinhole ID = "
	i := strings.Index(out, marker)
	if i < 0 {
		t.Fatalf("upnpc -A printed no UniqueID:\n%s", out)
	}
	return strings.Fields(out[i+len(marker):])[0]
}

// Router "none" in the dual-stack lab: no daemon, the pinhole chain is
// there for a gateway under test, and an accept rule in it is what lets the
// WAN host in (an accept anywhere else would not get past the drop).
func TestRouterNoneIPv6(t *testing.T) {
	l := natlab.Start(t, natlab.Options{Router: natlab.RouterNone, IPv6: true})
	l.ServeTCP(t, natlab.HostLAN, at(l.LANIP6, 8080), "lan6")
	target := at(l.LANIP6, 8080)
	if banner, err := l.DialTCP(t, natlab.HostWAN, target, quick); err == nil {
		t.Fatalf("without a pinhole the WAN host reached %v (%q)", target, banner)
	}
	rule := fmt.Sprintf("iifname %q ip6 daddr %v tcp dport 8080 accept", natlab.RouterWANIf, l.LANIP6)
	run(t, l, natlab.HostRouter, "nft", "add", "rule", "inet", "filter", natlab.PinholeChain, rule)
	if banner, err := l.DialTCP(t, natlab.HostWAN, target, ample); err != nil || banner != "lan6" {
		t.Fatalf("WAN -> %v through a hand-made pinhole: %q, %v", target, banner, err)
	}
	run(t, l, natlab.HostRouter, "nft", "flush", "chain", "inet", "filter", natlab.PinholeChain)
	if banner, err := l.DialTCP(t, natlab.HostWAN, target, quick); err == nil {
		t.Fatalf("after the flush the WAN host still reached %v (%q)", target, banner)
	}

	// A second global address of the LAN host is usable at once (no DAD).
	second := netip.MustParseAddr("2001:db8:77::22")
	l.AddAddr6(t, natlab.HostLAN, netip.PrefixFrom(second, 64))
	l.ServeTCP(t, natlab.HostLAN, at(second, 8081), "second")
	if banner, err := l.DialTCP(t, natlab.HostRouter, at(second, 8081), ample); err != nil || banner != "second" {
		t.Fatalf("router -> the LAN host's second address: %q, %v", banner, err)
	}
}

func TestIPv6RefusesDoubleNAT(t *testing.T) {
	r := testenv.Record(t, func(tb testing.TB) { natlab.Start(tb, natlab.Options{IPv6: true, DoubleNAT: true}) })
	if !strings.Contains(r.Fatal, "cannot be combined") {
		t.Errorf("Start with IPv6 and DoubleNAT: fatal %q, skip %q; want a refusal", r.Fatal, r.Skip)
	}
}
