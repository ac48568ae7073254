package main

import (
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/portfwd/portfwd/gateway/daemon"
	"github.com/portfwd/portfwd/internal/testenv"
)

// loopbackName returns the loopback interface's name, or skips.
func loopbackName(t *testing.T) string {
	t.Helper()
	name, err := loopbackInterface()
	if err != nil {
		testenv.Missing(t, "%v", err)
	}
	return name
}

func TestGatewayImportMiniupnpd(t *testing.T) {
	conf := filepath.Join(t.TempDir(), "miniupnpd.conf")
	os.WriteFile(conf, []byte("ext_ifname=eth1\nlistening_ip=br-lan\nsecure_mode=no\nallow 1024-65535 192.168.0.0/24 1024-65535\nfoo=bar\n"), 0o644)
	stdout, stderr, code := portfwd(t, "gateway", "--import-miniupnpd", conf)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	cfg, err := daemon.ParseConfig([]byte(stdout))
	if err != nil {
		t.Fatalf("output is not a configuration: %v\n%s", err, stdout)
	}
	if cfg.Interfaces.External[0] != "eth1" || cfg.Interfaces.Internal[0] != "br-lan" || cfg.Policy.SecureMode || len(cfg.Policy.Rules) != 1 {
		t.Errorf("converted config %+v", cfg)
	}
	if !strings.Contains(stdout, `"foo=bar": unknown miniupnpd option`) {
		t.Errorf("unknown option not reported:\n%s", stdout)
	}
	if _, stderr, code := portfwd(t, "gateway", "--import-miniupnpd", filepath.Join(t.TempDir(), "missing.conf")); code != exitFailure || !strings.Contains(stderr, "reading the miniupnpd configuration") {
		t.Errorf("missing file: exit %d, %s", code, stderr)
	}
}

// Flags override the file, and only the flags given do.
func TestGatewayPrintConfigAppliesFlags(t *testing.T) {
	file := filepath.Join(t.TempDir(), "gw.toml")
	os.WriteFile(file, []byte("[upnp]\nhttp_port = 6000\nforce_igd_v1 = true\n[natpmp]\nenabled = false\n"), 0o644)
	stdout, stderr, code := portfwd(t, "gateway", "--config", file, "--print-config",
		"--internal", "lan0, lan1", "--external", "wan0", "--external-ip", "192.0.2.9", "--backend", "relay",
		"--state-dir", "/tmp/x", "--admin", "off", "--secure-mode=false", "--no-ssdp", "--flush-on-exit", "-v")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	cfg, err := daemon.ParseConfig([]byte(stdout))
	if err != nil {
		t.Fatalf("--print-config output does not parse: %v\n%s", err, stdout)
	}
	want := daemon.DefaultConfig()
	want.Interfaces = daemon.InterfacesConfig{Internal: []string{"lan0", "lan1"}, External: []string{"wan0"}}
	want.ExternalAddress = daemon.ExternalAddressConfig{Source: daemon.SourceFixed, IP: "192.0.2.9"}
	want.Backend, want.StateDir, want.Admin.Address, want.FlushOnExit = "relay", "/tmp/x", "", true
	want.Policy.SecureMode, want.UPnP.SSDP, want.LogLevel = false, false, "debug"
	want.UPnP.HTTPPort, want.UPnP.ForceIGDv1, want.NATPMP.Enabled = 6000, true, false // from the file
	if got, _ := cfg.Encode(); string(got) != mustEncode(t, want) {
		t.Errorf("effective config:\n%s\nwant\n%s", got, mustEncode(t, want))
	}

	// --admin-ui turns the admin page on, on the default admin address.
	stdout, stderr, code = portfwd(t, "gateway", "--print-config", "--admin-ui")
	if code != exitOK {
		t.Fatalf("--admin-ui: exit %d: %s", code, stderr)
	}
	if cfg, err = daemon.ParseConfig([]byte(stdout)); err != nil || !cfg.Admin.UI || cfg.Admin.Address != daemon.DefaultAdminAddress {
		t.Errorf("--admin-ui gives admin %+v (%v)", cfg.Admin, err)
	}
}

func mustEncode(t *testing.T, c daemon.Config) string {
	b, err := c.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestGatewayUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"gateway", "--bogus"},
		{"gateway", "extra"},
		{"gateway", "--external-ip", "192.0.2.1", "--stun", "stun.example.org", "--print-config"},
		{"gateway", "--config", "/nonexistent/gateway.toml"},
	} {
		if _, stderr, code := portfwd(t, args...); code != exitUsage || stderr == "" {
			t.Errorf("%v: exit %d, stderr %q; want exit 1 with a message", args, code, stderr)
		}
	}
	// An invalid configuration is refused before anything starts.
	_, stderr, code := portfwd(t, "gateway", "--external-ip", "192.0.2.1", "--backend", "memory", "--state-dir", t.TempDir())
	if code != exitUsage || !strings.Contains(stderr, "no internal interface") {
		t.Errorf("gateway without --internal: exit %d, %s", code, stderr)
	}
}

// --check on loopback with the memory backend finds nothing wrong, and
// exits 0; with a missing interface and a port in use it says so and
// exits 1.
func TestGatewayCheck(t *testing.T) {
	lo := loopbackName(t)
	base := []string{"gateway", "--check", "--internal", lo, "--external-ip", "192.0.2.1", "--backend", "memory",
		"--state-dir", t.TempDir(), "--no-ssdp", "--admin", "off"}
	port := testenv.FreePort(t, testenv.Bind{Network: "tcp4", Addr: netip.MustParseAddr("127.0.0.1")})
	stdout, stderr, code := portfwd(t, append(base, "--http-port", strconv.Itoa(int(port)))...)
	if code != exitOK || strings.Contains(stdout, "problem:") || !strings.Contains(stdout, "the gateway is ready to start") {
		t.Errorf("--check on a good setup: exit %d\n%s%s", code, stdout, stderr)
	}

	busy, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	bad := []string{"gateway", "--check", "--internal", lo + ",nosuchif0", "--external-ip", "192.0.2.1", "--backend", "memory",
		"--state-dir", t.TempDir(), "--no-ssdp", "--admin", "off", "--http-port", strconv.Itoa(busy.Addr().(*net.TCPAddr).Port)}
	stdout, stderr, code = portfwd(t, bad...)
	if code != exitUsage {
		t.Errorf("--check with problems: exit %d, want 1", code)
	}
	for _, want := range []string{"problem: internal interface nosuchif0 does not exist", "in use by another program"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("--check output lacks %q:\n%s", want, stdout)
		}
	}
	if !strings.Contains(stderr, "the check found 2 problem(s)") {
		t.Errorf("--check summary: %s", stderr)
	}
}
