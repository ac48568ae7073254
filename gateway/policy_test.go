package gateway_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/portfwd/portfwd/gateway"
)

var allPorts = gateway.PortRange{Min: 0, Max: 65535}

func TestParsePermRule(t *testing.T) {
	tests := []struct {
		in   string
		want gateway.PermRule
	}{
		{"allow 1024-65535 192.168.0.0/24 1024-65535", gateway.PermRule{
			Allow: true, External: gateway.PortRange{Min: 1024, Max: 65535},
			Client: netip.MustParsePrefix("192.168.0.0/24"), Internal: gateway.PortRange{Min: 1024, Max: 65535}}},
		{"deny 0-65535 0.0.0.0/0 0-65535", gateway.PermRule{
			External: allPorts, Client: netip.MustParsePrefix("0.0.0.0/0"), Internal: allPorts}},
		// Dotted netmask, as older miniupnpd configurations write it; host bits cleared.
		{"ALLOW 80 192.168.1.77/255.255.255.0 8080", gateway.PermRule{
			Allow: true, External: gateway.PortRange{Min: 80, Max: 80},
			Client: netip.MustParsePrefix("192.168.1.0/24"), Internal: gateway.PortRange{Min: 8080, Max: 8080}}},
		// A bare address is that host only.
		{"allow 22 192.168.1.5 22", gateway.PermRule{
			Allow: true, External: gateway.PortRange{Min: 22, Max: 22},
			Client: netip.MustParsePrefix("192.168.1.5/32"), Internal: gateway.PortRange{Min: 22, Max: 22}}},
		{"deny 1-1023 fd00::/8 0-65535", gateway.PermRule{
			External: gateway.PortRange{Min: 1, Max: 1023}, Client: netip.MustParsePrefix("fd00::/8"), Internal: allPorts}},
		{"  allow\t1-2   10.0.0.0/8  3-4  ", gateway.PermRule{
			Allow: true, External: gateway.PortRange{Min: 1, Max: 2},
			Client: netip.MustParsePrefix("10.0.0.0/8"), Internal: gateway.PortRange{Min: 3, Max: 4}}},
	}
	for _, tt := range tests {
		got, err := gateway.ParsePermRule(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParsePermRule(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{
		"", "allow", "allow 1-2 10.0.0.0/8", "allow 1-2 10.0.0.0/8 3-4 extra",
		"permit 1-2 10.0.0.0/8 3-4", "allow 2-1 10.0.0.0/8 3-4", "allow 1-65536 10.0.0.0/8 3-4",
		"allow -1 10.0.0.0/8 3-4", "allow 1- 10.0.0.0/8 3-4", "allow +1 10.0.0.0/8 3-4",
		"allow 1-2 10.0.0.0/33 3-4", "allow 1-2 10.0.0.0/255.0.255.0 3-4", "allow 1-2 host.lan 3-4",
		"allow 1-2 fd00::/255.0.0.0 3-4", "allow 1-2 fe80::1%eth0 3-4",
	} {
		if r, err := gateway.ParsePermRule(bad); err == nil {
			t.Errorf("ParsePermRule(%q) = %v, want an error", bad, r)
		}
	}
}

func FuzzParsePermRule(f *testing.F) {
	for _, s := range []string{
		"allow 1024-65535 192.168.0.0/24 1024-65535", "deny 0-65535 0.0.0.0/0 0-65535",
		"allow 80 192.168.1.77/255.255.255.0 8080", "deny 1-1023 fd00::/8 0-65535", "allow 22 10.1.2.3 22",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := gateway.ParsePermRule(s)
		if err != nil {
			return
		}
		again, err := gateway.ParsePermRule(r.String())
		if err != nil || again != r {
			t.Fatalf("%q parsed to %v, whose String %q parses to %v, %v", s, r, r.String(), again, err)
		}
	})
}

func TestPolicyPermit(t *testing.T) {
	rule := func(s string) gateway.PermRule {
		r, err := gateway.ParsePermRule(s)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	if !(gateway.Policy{}).Permit(1, addr("10.0.0.1"), 1) {
		t.Error("no rules must allow everything")
	}
	p := gateway.Policy{Rules: []gateway.PermRule{
		rule("deny 8000-8999 192.168.1.13 0-65535"),
		rule("allow 1024-65535 192.168.1.0/24 0-65535"),
		rule("allow 1024-65535 fd00::/64 0-65535"),
	}}
	tests := []struct {
		ext    uint16
		client string
		int    uint16
		want   bool
	}{
		{8080, "192.168.1.12", 80, true},
		{8080, "192.168.1.13", 80, false},       // the earlier deny wins over the later allow
		{9000, "192.168.1.13", 80, true},        // outside the deny's range, the allow applies
		{80, "192.168.1.12", 80, false},         // no rule matches: default deny
		{8080, "10.0.0.1", 80, false},           // no rule matches: default deny
		{8080, "fd00::5", 80, true},             // IPv6 rule
		{8080, "::ffff:192.168.1.12", 80, true}, // a mapped address is the IPv4 client
		{8080, "fd01::5", 80, false},
	}
	for _, tt := range tests {
		if got := p.Permit(tt.ext, addr(tt.client), tt.int); got != tt.want {
			t.Errorf("Permit(%d, %s, %d) = %v, want %v", tt.ext, tt.client, tt.int, got, tt.want)
		}
	}
}

func TestPolicyValidate(t *testing.T) {
	if err := (gateway.Policy{}).Validate(); err != nil {
		t.Errorf("zero Policy: %v", err)
	}
	for name, p := range map[string]gateway.Policy{
		"negative quota":   {MaxPerClient: -1},
		"negative cap":     {MaxMappings: -1},
		"min above max":    {MinLease: time.Hour, MaxLease: time.Minute},
		"negative lease":   {MaxLease: -time.Second},
		"rule w/o client":  {Rules: []gateway.PermRule{{Allow: true, External: allPorts, Internal: allPorts}}},
		"inverted rule":    {Rules: []gateway.PermRule{{External: gateway.PortRange{Min: 2, Max: 1}, Client: netip.MustParsePrefix("0.0.0.0/0")}}},
		"reserved proto":   {Reserved: []gateway.PortSpec{{Protocol: 47, Ports: allPorts}}},
		"inverted reserve": {Reserved: []gateway.PortSpec{{Ports: gateway.PortRange{Min: 9, Max: 8}}}},
	} {
		if err := p.Validate(); err == nil {
			t.Errorf("%s: Validate accepted %+v", name, p)
		}
	}
}

func TestParsePortRange(t *testing.T) {
	for in, want := range map[string]gateway.PortRange{
		"0": {0, 0}, "65535": {65535, 65535}, "1-2": {1, 2}, "00080": {80, 80},
	} {
		if got, err := gateway.ParsePortRange(in); err != nil || got != want {
			t.Errorf("ParsePortRange(%q) = %v, %v; want %v", in, got, err, want)
		}
		if got, _ := gateway.ParsePortRange(want.String()); got != want {
			t.Errorf("String of %v does not parse back", want)
		}
	}
}
