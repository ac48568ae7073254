package main

import (
	"bytes"
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/portfwd/portfwd/igd"
	"github.com/portfwd/portfwd/igd/igdtest"
)

// cli runs the command in-process against buffers.
func portfwd(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var so, se bytes.Buffer
	code = run(context.Background(), &env{stdout: &so, stderr: &se}, args)
	return so.String(), se.String(), code
}

// fake starts a UPnP IGD on loopback and returns the flags that point the
// CLI at it without any discovery traffic.
func fake(t *testing.T, opts igdtest.Options) (*igdtest.Server, []string) {
	srv := igdtest.NewServer(t, opts)
	return srv, []string{"--gateway", srv.Location, "--protocol", "upnp", "--state-dir", t.TempDir(), "--timeout", "2s"}
}

func TestFlagsAfterPositionals(t *testing.T) {
	srv, base := fake(t, igdtest.Options{Version: 2, ExternalIP: "198.51.100.7"})
	out, stderr, code := portfwd(t, append([]string{"add", "8080", "--external", "18080", "--proto", "both", "--desc", "a <b>"}, base...)...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !strings.Contains(out, "198.51.100.7:18080/TCP -> 127.0.0.1:8080") || !strings.Contains(out, "18080/UDP") {
		t.Errorf("add output: %s", out)
	}
	if got := srv.Mappings(); len(got) != 2 || got[0].Description != "a <b>" {
		t.Errorf("router table: %+v", got)
	}
}

func TestJSONOutputs(t *testing.T) {
	_, base := fake(t, igdtest.Options{Version: 1, ExternalIP: "100.64.3.4",
		Mappings: []igd.PortMapping{{ExternalPort: 7000, Protocol: "UDP", InternalPort: 7000, InternalClient: "192.168.1.9", Enabled: true, Description: "voip", LeaseDuration: 0}}})
	out, _, code := portfwd(t, append([]string{"ip", "--json"}, base...)...)
	var ip map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &ip) != nil || ip["external_ip"] != "100.64.3.4" || ip["external_ip_class"] != "cgnat" || ip["method"] != "upnp" {
		t.Errorf("ip --json (exit %d): %s", code, out)
	}
	out, _, code = portfwd(t, append([]string{"list", "--json"}, base...)...)
	var list struct {
		Mappings []map[string]any `json:"mappings"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &list) != nil || len(list.Mappings) != 1 {
		t.Fatalf("list --json (exit %d): %s", code, out)
	}
	m := list.Mappings[0]
	for k, want := range map[string]any{"protocol": "UDP", "external_port": 7000.0, "internal_client": "192.168.1.9",
		"permanent": true, "lease_seconds": 0.0, "description": "voip", "method": "upnp"} {
		if m[k] != want {
			t.Errorf("mapping[%q] = %v, want %v", k, m[k], want)
		}
	}
}

func TestRefusalExit3WithCodeAndHolder(t *testing.T) {
	srv, base := fake(t, igdtest.Options{Version: 1, ExternalIP: "198.51.100.7",
		Mappings: []igd.PortMapping{{ExternalPort: 8080, Protocol: "TCP", InternalPort: 8080, InternalClient: "192.168.1.7", Enabled: true, Description: "nas"}}})
	_, stderr, code := portfwd(t, append([]string{"add", "8080"}, base...)...)
	if code != exitRefused || !strings.Contains(stderr, `192.168.1.7:8080 ("nas")`) || !strings.Contains(stderr, "--replace") {
		t.Errorf("exit %d, stderr %q: want 3 naming the holder and --replace", code, stderr)
	}
	if slices.Contains(srv.Actions(), "AddPortMapping") {
		t.Errorf("portfwd asked for a port it knew was taken: %v", srv.Actions())
	}
	// A 718 for a port nobody holds, for another host, is secure mode.
	_, base = fake(t, igdtest.Options{Version: 1, ExternalIP: "198.51.100.7",
		Faults: []igdtest.Fault{{Action: "AddPortMapping", Code: 718}}})
	_, stderr, code = portfwd(t, append([]string{"add", "8080", "--client", "192.168.1.50"}, base...)...)
	if code != exitRefused || !strings.Contains(stderr, "secure mode") || !strings.Contains(stderr, "192.168.1.50") || strings.Contains(stderr, "already mapped") {
		t.Errorf("exit %d, stderr %q: want 3 explaining secure mode", code, stderr)
	}
}

func TestNoGatewayExit2(t *testing.T) {
	// A description URL on a loopback port where nothing listens.
	_, stderr, code := portfwd(t, "ip", "--gateway", "http://127.0.0.1:9/rootDesc.xml", "--protocol", "upnp", "--timeout", "1s", "--state-dir", t.TempDir())
	if code != exitNoGateway || !strings.Contains(stderr, "no gateway found") {
		t.Errorf("exit %d, stderr %q", code, stderr)
	}
}

func TestParseHostPort(t *testing.T) {
	for in, want := range map[string]string{"10.0.0.1": "10.0.0.1:5351", "10.0.0.1:5000": "10.0.0.1:5000", "[::1]:7": "[::1]:7", "::1": "[::1]:5351"} {
		got, err := parseHostPort(in, 5351)
		if err != nil || got.String() != want {
			t.Errorf("parseHostPort(%q) = %v, %v; want %s", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "host", "1.2.3.4:0", "1.2.3.4:99999", "a:b:c"} {
		if _, err := parseHostPort(bad, 5351); err == nil {
			t.Errorf("parseHostPort(%q) accepted", bad)
		}
	}
}
