package natlab

import (
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
)

func TestConfString(t *testing.T) {
	c := &Conf{
		ExtIfname:    "wan0",
		PerformSTUN:  true,
		STUNHost:     netip.MustParseAddr("203.0.113.2"),
		STUNPort:     3478,
		ListeningIP:  "lan0",
		HTTPPort:     5000,
		EnableUPnP:   true,
		EnableNATPMP: false,
		SecureMode:   true,
		LeaseFile:    "/run/x/upnp.leases",
		Rules:        []string{"allow 1024-65535 10.77.0.0/24 1024-65535", "deny 0-65535 0.0.0.0/0 0-65535"},
		Extra:        []string{"bitrate_up=1000"},
	}
	got := c.String()
	for _, want := range []string{
		"ext_ifname=wan0\n",
		"ext_perform_stun=yes\next_stun_host=203.0.113.2\next_stun_port=3478\n",
		"listening_ip=lan0\n",
		"http_port=5000\n",
		"enable_upnp=yes\n",
		"enable_natpmp=no\n",
		"secure_mode=yes\n",
		"lease_file=/run/x/upnp.leases\n",
		// miniupnpd applies the first matching rule: order is meaning.
		"allow 1024-65535 10.77.0.0/24 1024-65535\ndeny 0-65535 0.0.0.0/0 0-65535\nbitrate_up=1000\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("config lacks %q:\n%s", want, got)
		}
	}
	for _, absent := range []string{"ext_ip=", "minissdpdsocket=", "uuid=", "force_igd_desc_v1", "min_lifetime"} {
		if strings.Contains(got, absent) {
			t.Errorf("unset setting %q written:\n%s", absent, got)
		}
	}
	c.PerformSTUN = false
	c.ExtIP = netip.MustParseAddr("198.51.100.1")
	got = c.String()
	if strings.Contains(got, "stun") || !strings.Contains(got, "ext_ip=198.51.100.1\n") {
		t.Errorf("without STUN, with ext_ip:\n%s", got)
	}
}

func TestRulesetModes(t *testing.T) {
	lab := func(router string) *Lab {
		return &Lab{opts: Options{Router: router}, LANPrefix: netip.MustParsePrefix("10.77.0.0/24")}
	}
	mini := lab(RouterMiniupnpd).ruleset()
	none := lab(RouterNone).ruleset()
	for _, want := range []string{"jump miniupnpd", "jump prerouting_miniupnpd", "jump postrouting_miniupnpd",
		"chain prerouting_miniupnpd", `iifname "wan0" tcp dport 5000 drop`} {
		if !strings.Contains(mini, want) {
			t.Errorf("miniupnpd ruleset lacks %q:\n%s", want, mini)
		}
	}
	if strings.Contains(mini, "ct status dnat accept") {
		t.Errorf("miniupnpd ruleset accepts any DNAT-ed flow; only its own chain should:\n%s", mini)
	}
	if !strings.Contains(none, "ct status dnat accept") || strings.Contains(none, "miniupnpd") || strings.Contains(none, "drop\n") {
		t.Errorf("Router none ruleset: want ct status dnat accept, no miniupnpd chains, no input drops:\n%s", none)
	}
	for name, rs := range map[string]string{"miniupnpd": mini, "none": none} {
		if !strings.Contains(rs, `oifname "wan0" ip saddr 10.77.0.0/24 masquerade`) {
			t.Errorf("%s ruleset does not masquerade the LAN:\n%s", name, rs)
		}
	}
}

func TestFreePrefix(t *testing.T) {
	pid := strconv.FormatInt(int64(os.Getpid()), 36)
	for _, name := range []string{"TestMiniupnpdUPnP", "TestX/sub_test#01", "Test", ""} {
		p, err := freePrefix(name)
		if err != nil {
			t.Fatal(err)
		}
		if !validPrefix.MatchString(p) {
			t.Errorf("freePrefix(%q) = %q: not a valid prefix", name, p)
		}
		// The PID keeps test processes of different packages apart.
		if !strings.Contains(p, pid) {
			t.Errorf("freePrefix(%q) = %q lacks the PID in base 36 (%s)", name, p, pid)
		}
	}
	if p, _ := freePrefix("TestMiniupnpdUPnP"); !strings.HasPrefix(p, "min") {
		t.Errorf("prefix %q does not start with letters of the test name", p)
	}
}
