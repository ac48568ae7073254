package daemon

import (
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

// convert runs ConvertMiniupnpd and reads its output back, failing the
// test when the output is not a valid configuration file.
func convert(t *testing.T, conf string) (Config, string) {
	t.Helper()
	out := string(ConvertMiniupnpd([]byte(conf)))
	cfg, err := ParseConfig([]byte(out))
	if err != nil {
		t.Fatalf("the converted file does not parse: %v\n%s", err, out)
	}
	return cfg, out
}

// The lab's miniupnpd.conf, as natlab writes it (testdata/ holds a copy).
func TestConvertMiniupnpdLabConf(t *testing.T) {
	src, err := os.ReadFile("testdata/miniupnpd-natlab.conf")
	if err != nil {
		t.Fatal(err)
	}
	cfg, out := convert(t, string(src))
	want := DefaultConfig()
	want.Interfaces = InterfacesConfig{Internal: []string{"lan0"}, External: []string{"wan0"}}
	want.ExternalAddress = ExternalAddressConfig{Source: SourceSTUN, STUNServer: "203.0.113.2:3478"}
	want.UPnP.HTTPPort = 5000
	want.UPnP.NotifyInterval = Duration(60 * time.Second)
	want.Policy.MinLease = Duration(120 * time.Second)
	want.Policy.MaxLease = Duration(86400 * time.Second)
	want.Policy.Rules = []string{"allow 1024-65535 10.77.0.0/24 1024-65535", "deny 0-65535 0.0.0.0/0 0-65535"}
	want.Device.FriendlyName = "natlab ceo router"
	want.Device.Manufacturer = "natlab"
	want.Device.ModelName = "natlab miniupnpd"
	want.Device.ModelNumber = "1"
	want.Device.SerialNumber = "00000001"
	want.Device.PresentationURL = ""
	want.Device.UUID = "f6bb4e68-aa81-4fb9-86e0-1937c6e1e337"
	// upnp_table_name / upnp_forward_chain: where pinholes go.
	want.NFT.ForwardTable, want.NFT.ForwardChain = "inet filter", "miniupnpd"
	want.IPv6.Pinholes = false // ipv6_disable=yes
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("converted:\n%+v\nwant\n%+v\nfile:\n%s", cfg, want, out)
	}
	// What has no equivalent is kept as a comment saying why.
	for _, note := range []string{
		`"lease_file=/run/natlab/ceo/upnp.leases": portfwd keeps leases in state_dir`,
		`"upnp_forward_chain=miniupnpd": IPv6 pinholes are accepted in this chain`,
		`"upnp_nat_chain=prerouting_miniupnpd": portfwd keeps its DNAT in a table of its own`,
		`"clean_ruleset_interval=600": not needed`,
		`"system_uptime=yes"`,
		`"minissdpdsocket=/run/natlab/ceo/minissdpd.sock": not needed`,
		"applied min_lifetime and max_lifetime to NAT-PMP and PCP only",
	} {
		if !strings.Contains(out, note) {
			t.Errorf("converted file lacks %q:\n%s", note, out)
		}
	}
	if err := cfg.Validate(); err != nil {
		t.Errorf("the converted lab configuration does not validate: %v", err)
	}
}

func TestConvertMiniupnpdLines(t *testing.T) {
	for _, tc := range []struct {
		name  string
		conf  string
		check func(Config) bool
		// note is a fragment the output must contain (a comment).
		note string
	}{
		{"ext_ip", "ext_ifname=eth1\next_ip=198.51.100.4\n",
			func(c Config) bool {
				return c.ExternalAddress.Source == SourceFixed && c.ExternalAddress.IP == "198.51.100.4"
			}, ""},
		{"stun wins over ext_ip", "ext_ip=198.51.100.4\next_perform_stun=yes\next_stun_host=stun.example.org\n",
			func(c Config) bool {
				return c.ExternalAddress.Source == SourceSTUN && c.ExternalAddress.STUNServer == "stun.example.org" && c.ExternalAddress.IP == ""
			}, "ext_ip=198.51.100.4 ignored"},
		{"stun port", "ext_perform_stun=yes\next_stun_host=stun.example.org\next_stun_port=19302\n",
			func(c Config) bool { return c.ExternalAddress.STUNServer == "stun.example.org:19302" }, ""},
		{"stun without host", "ext_perform_stun=yes\n",
			func(c Config) bool { return c.ExternalAddress.Source == SourceInterface }, "set stun_server"},
		{"bad ext_ip", "ext_ip=nope\n",
			func(c Config) bool { return c.ExternalAddress.Source == SourceInterface }, "not an IPv4 address"},
		{"private allowed", "ext_allow_private_ipv4=no\n",
			func(c Config) bool { return c.ExternalAddress.RefusePrivateExternal }, ""},
		{"listening names", "listening_ip=br-lan\nlistening_ip=wlan1\n",
			func(c Config) bool { return reflect.DeepEqual(c.Interfaces.Internal, []string{"br-lan", "wlan1"}) }, ""},
		{"bridge ports", "listening_ip=bridge0 em0 wlan0\n",
			func(c Config) bool { return reflect.DeepEqual(c.Interfaces.Internal, []string{"bridge0"}) }, "only bridge0 is kept"},
		{"listening address", "listening_ip=192.168.0.1/24\n",
			func(c Config) bool { return len(c.Interfaces.Internal) == 0 }, "interface holding 192.168.0.1"},
		{"old port key", "port=5555\n", func(c Config) bool { return c.UPnP.HTTPPort == 5555 }, ""},
		{"http_port 0", "http_port=0\n", func(c Config) bool { return c.UPnP.HTTPPort == 0 }, ""},
		{"switches", "enable_upnp=no\nenable_pcp_pmp=yes\nsecure_mode=no\nforce_igd_desc_v1=yes\n",
			func(c Config) bool {
				return !c.UPnP.Enabled && c.NATPMP.Enabled && !c.Policy.SecureMode && c.UPnP.ForceIGDv1
			}, ""},
		{"bad yes/no", "secure_mode=maybe\n", func(c Config) bool { return c.Policy.SecureMode }, "neither yes nor no"},
		{"quoted value", `friendly_name="My "router""` + "\n",
			func(c Config) bool { return c.Device.FriendlyName == `My "router"` }, ""},
		{"bitrates", "bitrate_up=1000000\nbitrate_down=x\n",
			func(c Config) bool { return c.Device.BitrateUp == 1000000 && c.Device.BitrateDown == 0 }, "not a number of bits"},
		{"netmask rule", "allow 1024-65535 192.168.0.0/255.255.255.0 1024-65535\n",
			func(c Config) bool {
				return reflect.DeepEqual(c.Policy.Rules, []string{"allow 1024-65535 192.168.0.0/24 1024-65535"})
			}, ""},
		{"regex rule", `deny 1024-65535 192.168.1.0/24 1024-65535 "evil app"` + "\nallow 1024-65535 192.168.1.0/24 1024-65535\n",
			func(c Config) bool {
				return reflect.DeepEqual(c.Policy.Rules, []string{"allow 1024-65535 192.168.1.0/24 1024-65535"})
			}, "description regex"},
		{"bad rule", "allow 1024-65535 lan 1024-65535\n",
			func(c Config) bool { return reflect.DeepEqual(c.Policy.Rules, DefaultRules) }, "is not an IP address or prefix; left out"},
		{"unknown", "frobnicate=yes\n", func(Config) bool { return true }, `"frobnicate=yes": unknown miniupnpd option`},
		{"not an option", "just words\n", func(Config) bool { return true }, "not an option"},
		{"pf", "anchor=miniupnpd\n", func(Config) bool { return true }, "a pf (BSD) option"},
		{"bad uuid", "uuid=1234\n", func(c Config) bool { return c.Device.UUID == "" }, "not a UUID"},
		{"lifetimes", "min_lifetime=60\nmax_lifetime=3600\n",
			func(c Config) bool {
				return c.Policy.MinLease == Duration(time.Minute) && c.Policy.MaxLease == Duration(time.Hour)
			}, ""},
		{"given twice", "http_port=1\nhttp_port=2\n", func(c Config) bool { return c.UPnP.HTTPPort == 2 }, "the last value is kept"},
		{"comments and blanks", "# a comment\n\n   # indented\n", func(c Config) bool { return reflect.DeepEqual(c, DefaultConfig()) }, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, out := convert(t, tc.conf)
			if !tc.check(cfg) {
				t.Errorf("converted %q to\n%s", tc.conf, out)
			}
			if tc.note != "" && !strings.Contains(out, tc.note) {
				t.Errorf("output lacks %q:\n%s", tc.note, out)
			}
		})
	}
}

// Whatever the input, the output is a configuration file ParseConfig
// reads.
func FuzzConvertMiniupnpd(f *testing.F) {
	if src, err := os.ReadFile("testdata/miniupnpd-natlab.conf"); err == nil {
		f.Add(string(src))
	}
	f.Add("listening_ip=br-lan\next_ifname=wan\nallow 1-2 10.0.0.0/8 3-4\n")
	f.Add("friendly_name=\"\x00\\\"\n")
	f.Add("uuid=\nhttp_port=99999\next_stun_host=[::1]\next_perform_stun=yes\next_stun_port=1\n")
	f.Fuzz(func(t *testing.T, conf string) {
		out := ConvertMiniupnpd([]byte(conf))
		if _, err := ParseConfig(out); err != nil {
			t.Fatalf("output does not parse: %v\ninput %q\noutput:\n%s", err, conf, out)
		}
	})
}
