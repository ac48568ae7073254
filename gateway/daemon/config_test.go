package daemon

import (
	"net/netip"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/portfwd/portfwd/gateway"
)

func TestParseConfigEmptyIsDefault(t *testing.T) {
	cfg, err := ParseConfig(nil)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(cfg, DefaultConfig()) {
		t.Errorf("empty file:\n%+v\nwant the defaults:\n%+v", cfg, DefaultConfig())
	}
	def := DefaultConfig()
	if !def.Policy.SecureMode || !def.UPnP.Enabled || !def.NATPMP.Enabled || def.FlushOnExit {
		t.Errorf("defaults must be secure mode on, UPnP and NAT-PMP on, no flush: %+v", def)
	}
}

func TestParseConfigKeepsUnsetDefaults(t *testing.T) {
	cfg, err := ParseConfig([]byte(`
[interfaces]
internal = ["lan0"]
[upnp]
http_port = 5555
`))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.UPnP.HTTPPort != 5555 || !cfg.UPnP.SSDP || cfg.NATPMP.Port != DefaultNATPMPPort || cfg.StateDir != DefaultStateDir {
		t.Errorf("a partial file must keep the other defaults: %+v", cfg)
	}
}

func TestParseConfigRejectsUnknownKeys(t *testing.T) {
	_, err := ParseConfig([]byte("[upnp]\nhttp_prot = 5000\n"))
	if err == nil || !strings.Contains(err.Error(), "upnp.http_prot") {
		t.Errorf("misspelt key: %v", err)
	}
	if _, err := ParseConfig([]byte("backend = \n")); err == nil {
		t.Error("broken TOML was accepted")
	}
}

func TestDurationForms(t *testing.T) {
	for _, tc := range []struct {
		toml string
		want time.Duration
		bad  bool
	}{
		{`"90s"`, 90 * time.Second, false},
		{`"2h"`, 2 * time.Hour, false},
		{`120`, 120 * time.Second, false},
		{`"86400"`, 24 * time.Hour, false},
		{`"-5s"`, 0, true},
		{`-5`, 0, true},
		{`"soon"`, 0, true},
		{`1.5`, 0, true},
	} {
		cfg, err := ParseConfig([]byte("[policy]\nmin_lease = " + tc.toml + "\n"))
		switch {
		case tc.bad && err == nil:
			t.Errorf("min_lease = %s accepted as %v", tc.toml, cfg.Policy.MinLease)
		case !tc.bad && err != nil:
			t.Errorf("min_lease = %s: %v", tc.toml, err)
		case !tc.bad && time.Duration(cfg.Policy.MinLease) != tc.want:
			t.Errorf("min_lease = %s read as %v, want %v", tc.toml, time.Duration(cfg.Policy.MinLease), tc.want)
		}
	}
	for d, want := range map[time.Duration]string{0: "0s", 90 * time.Second: "1m30s", 2 * time.Minute: "2m", 168 * time.Hour: "168h"} {
		if got := Duration(d).String(); got != want {
			t.Errorf("Duration(%v) = %q, want %q", d, got, want)
		}
	}
}

func validConfig() Config {
	cfg := DefaultConfig()
	cfg.Interfaces.Internal = []string{"lan0"}
	cfg.Interfaces.External = []string{"wan0"}
	cfg.Backend = BackendNFT
	return cfg
}

func TestValidate(t *testing.T) {
	if cfg := validConfig(); cfg.Validate() != nil {
		t.Fatalf("valid config refused: %v", cfg.Validate())
	}
	for _, tc := range []struct {
		name   string
		change func(*Config)
		want   string // a fragment of the sentence
	}{
		{"no internal", func(c *Config) { c.Interfaces.Internal = nil }, "no internal interface"},
		{"both roles", func(c *Config) { c.Interfaces.Internal = []string{"wan0"} }, "both internal and external"},
		{"internal pattern", func(c *Config) { c.Interfaces.Internal = []string{"br*"} }, "patterns are only allowed for external"},
		{"backend", func(c *Config) { c.Backend = "iptables" }, "use nft, relay or memory"},
		{"nft without wan", func(c *Config) {
			c.Interfaces.External = nil
			c.ExternalAddress = ExternalAddressConfig{Source: SourceFixed, IP: "192.0.2.1"}
		}, "nft backend needs the external"},
		{"address from pattern", func(c *Config) { c.Interfaces.External = []string{"ppp*"} }, "cannot be read from the pattern"},
		{"fixed without ip", func(c *Config) { c.ExternalAddress.Source = SourceFixed }, "is not an IPv4 address"},
		{"fixed ipv6", func(c *Config) { c.ExternalAddress = ExternalAddressConfig{Source: SourceFixed, IP: "2001:db8::1"} }, "is not an IPv4 address"},
		{"ip without fixed", func(c *Config) { c.ExternalAddress.IP = "192.0.2.1" }, `set source = "fixed"`},
		{"stun without server", func(c *Config) { c.ExternalAddress.Source = SourceSTUN }, "no STUN server"},
		{"stun bad port", func(c *Config) {
			c.ExternalAddress = ExternalAddressConfig{Source: SourceSTUN, STUNServer: "stun.example:x"}
		}, "bad port"},
		{"source", func(c *Config) { c.ExternalAddress.Source = "dhcp" }, "use interface, fixed or stun"},
		{"http port", func(c *Config) { c.UPnP.HTTPPort = 70000 }, "upnp.http_port"},
		{"notify", func(c *Config) { c.UPnP.NotifyInterval = Duration(time.Millisecond) }, "notify_interval"},
		{"nothing served", func(c *Config) { c.UPnP.Enabled, c.NATPMP.Enabled = false, false }, "answer nothing"},
		{"admin", func(c *Config) { c.Admin.Address = "localhost:8900" }, "want IP:port"},
		{"admin page without address", func(c *Config) { c.Admin.Address, c.Admin.UI = "", true }, "admin.ui needs admin.address"},
		{"relay bind", func(c *Config) { c.Relay.Bind = "wan0" }, "relay.bind"},
		{"uuid", func(c *Config) { c.Device.UUID = "not-a-uuid" }, "device.uuid"},
		{"log level", func(c *Config) { c.LogLevel = "loud" }, "log_level"},
		{"log format", func(c *Config) { c.LogFormat = "xml" }, "log_format"},
		{"rule", func(c *Config) { c.Policy.Rules = []string{"allow 1024-65535 lan 1024-65535"} }, "policy.rules"},
		{"reserved", func(c *Config) { c.Policy.Reserved = []string{"22/sctp"} }, "policy.reserved"},
		{"lease bounds", func(c *Config) { c.Policy.MinLease, c.Policy.MaxLease = Duration(time.Hour), Duration(time.Minute) }, "longer than MaxLease"},
		{"quota", func(c *Config) { c.Policy.MaxPerClient = -1 }, "negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := validConfig()
			tc.change(&cfg)
			err := cfg.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Validate = %v, want a sentence containing %q", err, tc.want)
			}
		})
	}
}

func TestPolicyConversion(t *testing.T) {
	pc := PolicyConfig{
		SecureMode: false, ListOwnOnly: true, MaxPerClient: 3, MaxMappings: 100,
		Reserved:      []string{"22/tcp", "8000-8010", "53/UDP"},
		MinLease:      Duration(time.Minute),
		MaxLease:      Duration(time.Hour),
		Rules:         []string{"allow 1024-65535 192.168.0.0/24 1024-65535", "deny 0-65535 0.0.0.0/0 0-65535"},
		ShowDummyRule: true, AllowDisableExternal: true,
	}
	p, err := pc.Policy()
	if err != nil {
		t.Fatal(err)
	}
	want := gateway.Policy{
		InsecureMode: true, ListOwnOnly: true, MaxPerClient: 3, MaxMappings: 100,
		MinLease: time.Minute, MaxLease: time.Hour, ShowDummyRule: true, AllowDisableExternal: true,
		Reserved: []gateway.PortSpec{
			{Protocol: gateway.TCP, Ports: gateway.PortRange{Min: 22, Max: 22}},
			{Ports: gateway.PortRange{Min: 8000, Max: 8010}},
			{Protocol: gateway.UDP, Ports: gateway.PortRange{Min: 53, Max: 53}},
		},
		Rules: []gateway.PermRule{
			{Allow: true, External: gateway.PortRange{Min: 1024, Max: 65535}, Client: netip.MustParsePrefix("192.168.0.0/24"), Internal: gateway.PortRange{Min: 1024, Max: 65535}},
			{External: gateway.PortRange{Max: 65535}, Client: netip.MustParsePrefix("0.0.0.0/0"), Internal: gateway.PortRange{Max: 65535}},
		},
	}
	if !reflect.DeepEqual(p, want) {
		t.Errorf("policy:\n%+v\nwant\n%+v", p, want)
	}
	if !p.Permit(2000, netip.MustParseAddr("192.168.0.9"), 2000) || p.Permit(2000, netip.MustParseAddr("10.0.0.1"), 2000) {
		t.Error("the converted rules do not decide as written")
	}
}

func TestEncodeRoundTrip(t *testing.T) {
	cfg := validConfig()
	cfg.Policy.Rules = []string{"allow 1024-65535 10.0.0.0/8 1024-65535"}
	cfg.Policy.MinLease = Duration(90 * time.Second)
	cfg.Device.FriendlyName = `quote " and \ backslash`
	b, err := cfg.Encode()
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseConfig(b)
	if err != nil {
		t.Fatalf("re-reading the encoded config: %v\n%s", err, b)
	}
	if !reflect.DeepEqual(back, cfg) {
		t.Errorf("round trip changed the config:\n%s\n%+v\nwant\n%+v", b, back, cfg)
	}
}

// tomlKeys returns every key path a Config can hold ("upnp.http_port").
func tomlKeys(typ reflect.Type, prefix string) []string {
	var out []string
	for i := range typ.NumField() {
		f := typ.Field(i)
		tag := strings.Split(f.Tag.Get("toml"), ",")[0]
		if tag == "" || tag == "-" {
			continue
		}
		if f.Type.Kind() == reflect.Struct {
			out = append(out, tomlKeys(f.Type, prefix+tag+".")...)
			continue
		}
		out = append(out, prefix+tag)
	}
	return out
}

// The example file documents every option, and is itself valid.
func TestExampleConfigCoversEveryKey(t *testing.T) {
	data, err := os.ReadFile("../../dist/gateway.example.toml")
	if err != nil {
		t.Fatalf("the example configuration is part of the repository: %v", err)
	}
	cfg := DefaultConfig()
	md, err := toml.Decode(string(data), &cfg)
	if err != nil {
		t.Fatal(err)
	}
	keys := tomlKeys(reflect.TypeFor[Config](), "")
	if len(keys) < 40 {
		t.Fatalf("found only %d keys: the reflection walk is broken", len(keys))
	}
	for _, k := range keys {
		if !md.IsDefined(strings.Split(k, ".")...) {
			t.Errorf("dist/gateway.example.toml does not document %s", k)
		}
	}
	parsed, err := ParseConfig(data)
	if err != nil {
		t.Fatal(err)
	}
	if err := parsed.Validate(); err != nil {
		t.Errorf("the example does not validate: %v", err)
	}
	// Apart from its examples, it shows the defaults.
	def := DefaultConfig()
	parsed.Interfaces, def.Interfaces = InterfacesConfig{}, InterfacesConfig{}
	parsed.Policy.Reserved, def.Policy.Reserved = nil, nil
	if !reflect.DeepEqual(parsed, def) {
		t.Errorf("the example's values differ from the defaults:\n%+v\nwant\n%+v", parsed, def)
	}
}

func TestParsePortSpec(t *testing.T) {
	for in, want := range map[string]gateway.PortSpec{
		"22":         {Ports: gateway.PortRange{Min: 22, Max: 22}},
		"22/tcp":     {Protocol: gateway.TCP, Ports: gateway.PortRange{Min: 22, Max: 22}},
		" 1-100/udp": {Protocol: gateway.UDP, Ports: gateway.PortRange{Min: 1, Max: 100}},
	} {
		got, err := ParsePortSpec(in)
		if err != nil || got != want {
			t.Errorf("ParsePortSpec(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "x", "22/icmp", "100-1", "65536"} {
		if _, err := ParsePortSpec(in); err == nil {
			t.Errorf("ParsePortSpec(%q) accepted", in)
		}
	}
}

// The defaults are safe: secure mode, ports 1024-65535, a quota, and the
// gateway's own ports reserved.
func TestDefaultPolicy(t *testing.T) {
	cfg := DefaultConfig()
	p, err := cfg.effectivePolicy()
	if err != nil {
		t.Fatal(err)
	}
	lan := netip.MustParseAddr("192.168.1.10")
	for _, tc := range []struct {
		ext, internal uint16
		want          bool
	}{{1024, 1024, true}, {65535, 65535, true}, {22, 22, false}, {80, 8080, false}, {8080, 80, false}, {1023, 2000, false}} {
		if got := p.Permit(tc.ext, lan, tc.internal); got != tc.want {
			t.Errorf("default rules: %d -> %d permitted %v, want %v", tc.ext, tc.internal, got, tc.want)
		}
	}
	if p.InsecureMode || p.MaxPerClient != DefaultMaxPerClient || p.MaxMappings != DefaultMaxMappings {
		t.Errorf("default policy %+v", p)
	}
	own := map[string]bool{}
	for _, s := range p.Reserved {
		own[s.Protocol.String()+" "+s.Ports.String()] = true
	}
	for _, want := range []string{"TCP 5000", "UDP 1900", "UDP 5351", "TCP 8900"} {
		if !own[want] {
			t.Errorf("the gateway's own port %s is not reserved: %v", want, p.Reserved)
		}
	}
	summary := strings.Join(cfg.PolicySummary(), "\n")
	for _, want := range []string{"secure mode", "1024-65535", "TCP 5000", "at most 128 mappings per client, 8192 in all", "2m to 168h"} {
		if !strings.Contains(summary, want) {
			t.Errorf("the policy summary does not say %q:\n%s", want, summary)
		}
	}
}

func TestPCPExternalPool(t *testing.T) {
	got, err := parsePool([]string{"198.51.100.1", "198.51.100.8/30", "198.51.100.16/31", "198.51.100.20/32"})
	if err != nil {
		t.Fatal(err)
	}
	// A /30 gives its two usable addresses; a /31 and a /32 all theirs.
	want := []string{"198.51.100.1", "198.51.100.9", "198.51.100.10", "198.51.100.16", "198.51.100.17", "198.51.100.20"}
	if len(got) != len(want) {
		t.Fatalf("parsePool = %v, want %v", got, want)
	}
	for i := range want {
		if got[i].String() != want[i] {
			t.Fatalf("parsePool = %v, want %v", got, want)
		}
	}
	for _, bad := range [][]string{{"2001:db8::1"}, {"198.51.100.1", "198.51.100.0/30"}, {"198.51.100.1/30"}, {"10.0.0.0/8"}, {"0.0.0.0"}, {"nonsense"}} {
		if _, err := parsePool(bad); err == nil {
			t.Errorf("parsePool(%q) accepted", bad)
		}
	}
	cfg := DefaultConfig()
	cfg.Interfaces.Internal, cfg.Interfaces.External = []string{"lan0"}, []string{"wan0"}
	cfg.NATPMP.PCPExternalPool = []string{"198.51.100.0/29"}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("a pool with the nft backend: %v", err)
	}
	for _, c := range []struct {
		change func(*Config)
		want   string
	}{
		{func(c *Config) { c.Backend = BackendRelay }, "needs the nft backend"},
		{func(c *Config) { c.NATPMP.PCP = false }, "PCP is off"},
		{func(c *Config) { c.NATPMP.PCPExternalPool = []string{"300.1.1.1"} }, "natpmp.pcp_external_pool"},
	} {
		cfg := cfg
		c.change(&cfg)
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Validate: %v, want %q", err, c.want)
		}
	}
}
