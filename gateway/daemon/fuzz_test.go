package daemon

import (
	"os"
	"reflect"
	"testing"

	"github.com/portfwd/portfwd/gateway"
)

// FuzzParseConfig: any file is read without a panic, and a configuration
// that reads, written back by Encode (--print-config), reads the same.
func FuzzParseConfig(f *testing.F) {
	if b, err := os.ReadFile("../../dist/gateway.example.toml"); err == nil {
		f.Add(b)
	}
	f.Add([]byte("[policy]\nrules = [\"allow 1024-65535 10.0.0.0/8 1024-65535\"]\nmin_lease = 60\n"))
	f.Add([]byte("[external_address]\nsource = \"stun\"\nstun_server = \"[2001:db8::1]:3478\"\nrefresh = \"90s\"\n"))
	f.Add([]byte("state_dir = \"\"\n[audit]\nmax_bytes = -1\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := ParseConfig(data)
		if err != nil {
			return
		}
		cfg.Validate()
		cfg.PolicySummary()
		out, err := cfg.Encode()
		if err != nil {
			t.Fatalf("a configuration that reads does not encode: %v", err)
		}
		again, err := ParseConfig(out)
		if err != nil {
			t.Fatalf("Encode wrote what ParseConfig refuses: %v\n%s", err, out)
		}
		if !reflect.DeepEqual(cfg, again) {
			t.Fatalf("round trip changed the configuration:\n%+v\n%+v\n%s", cfg, again, out)
		}
	})
}

// FuzzParsePermRule: a rule that reads writes back (String) as a rule that
// reads the same.
func FuzzParsePermRule(f *testing.F) {
	for _, s := range []string{"allow 1024-65535 192.168.0.0/24 1024-65535", "deny 0-65535 0.0.0.0/0 0-65535",
		"allow 80 192.168.1.10 80", "ALLOW 1-2 10.0.0.0/255.0.0.0 3-4", "allow 1 ::/0 1", "deny 5-1 x 1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := gateway.ParsePermRule(s)
		if err != nil {
			return
		}
		again, err := gateway.ParsePermRule(r.String())
		if err != nil || again != r {
			t.Fatalf("%q read as %v, written as %q, read back as %v (%v)", s, r, r.String(), again, err)
		}
		if _, err := ParsePortSpec(r.External.String()); err != nil {
			t.Fatalf("port range %v does not read as a port spec: %v", r.External, err)
		}
	})
}

// The miniupnpd.conf importer's fuzz target is FuzzConvertMiniupnpd, in
// miniupnpd_test.go.
