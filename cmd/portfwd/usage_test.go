package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// runWatched runs the command line with a tripwire on the network: the
// list of what the command began to use the network for (env.network).
func runWatched(t *testing.T, args ...string) (stdout, stderr string, code int, network []string) {
	t.Helper()
	var so, se bytes.Buffer
	e := &env{stdout: &so, stderr: &se, beforeNetwork: func(what string) { network = append(network, what) }}
	code = run(context.Background(), e, args)
	return so.String(), se.String(), code, network
}

// TestUsageErrors: each mistake in a command line exits 1 before any
// network traffic, with one sentence on stderr that names the flag or the
// argument at fault and, where it helps, what was meant.
func TestUsageErrors(t *testing.T) {
	dir := t.TempDir()
	miniupnpdConf := filepath.Join(dir, "miniupnpd.conf")
	os.WriteFile(miniupnpdConf, []byte("ext_ifname=eth1\nlistening_ip=br-lan\nenable_natpmp=yes\nallow 1024-65535 192.168.0.0/24 1024-65535\n"), 0o600)
	for _, tt := range []struct {
		args []string
		want string // the whole sentence, after "portfwd: "
	}{
		{[]string{"lsit"}, `unknown command "lsit"; did you mean 'portfwd list'? (run 'portfwd help' for the list of commands)`},
		{[]string{"frobnicate"}, `unknown command "frobnicate" (run 'portfwd help' for the list of commands)`},
		{[]string{"--gateway", "http://x/"}, `--gateway is not a command; flags come after the command, as in 'portfwd list --json' (run 'portfwd help' for the list of commands)`},
		{[]string{"help", "ad"}, `no command "ad"; did you mean 'portfwd help add'? (run 'portfwd help' for the list of commands)`},
		{[]string{"add"}, `add takes one internal PORT, e.g. 'portfwd add 8080 --external 18080'`},
		{[]string{"add", "0"}, `internal port: 0 is not a port number: ports are 1-65535`},
		{[]string{"add", "70000"}, `internal port: 70000 is not a port number: ports are 1-65535`},
		{[]string{"add", "abc"}, `internal port: "abc" is not a port number (1-65535)`},
		{[]string{"add", "8080", "--external", "0"}, `--external: 0 is not a port number: ports are 1-65535`},
		{[]string{"add", "8080", "--external", "70000"}, `--external: 70000 is not a port number: ports are 1-65535`},
		{[]string{"add", "8080", "--external", "abc"}, `--external: "abc" is not a port number (1-65535)`},
		{[]string{"add", "8080", "--proto", "xyz"}, `--proto must be tcp, udp or both, not "xyz"`},
		{[]string{"add", "8080", "--lease", "-5m"}, `--lease: -5m is negative; give a length of time such as 1h`},
		{[]string{"add", "8080", "--lease", "5"}, `--lease: "5" has no unit; did you mean 5s?`},
		{[]string{"add", "8080", "--lease", "500ms"}, `--lease: 500ms is too short: at least 1s`},
		{[]string{"add", "8080", "--client", "not-an-ip"}, `--client: "not-an-ip" is not an IP address`},
		{[]string{"add", "8080", "--lease"}, `--lease needs a value, like --lease 1h`},
		{[]string{"keep", "8080", "--external", "70000"}, `--external: 70000 is not a port number: ports are 1-65535`},
		{[]string{"keep", "8080", "--lease", "0s"}, `--lease must be above 0, such as 1h`},
		{[]string{"keep", "8080", "--check-interval", "-1s"}, `--check-interval: -1s is negative; give a length of time such as 30s`},
		{[]string{"ip", "--gateway", "not-a-url"}, `--gateway: "not-a-url" is not an http:// URL, like http://192.168.1.1:5000/rootDesc.xml`},
		{[]string{"ip", "--timeout", "0s"}, `--timeout must be above 0, such as 3s`},
		{[]string{"ip", "--timeout", "3"}, `--timeout: "3" has no unit; did you mean 3s?`},
		{[]string{"ip", "--interface", "nosuch0"}, `--interface: this host has no interface "nosuch0" (it has `},
		{[]string{"ip", "--gateway", "http://192.0.2.1:5000/rootDesc.xml", "--protocol", "natpmp"},
			`--gateway names a UPnP gateway, but --protocol natpmp leaves UPnP out; give the NAT-PMP server with --natpmp HOST, or use --protocol upnp`},
		{[]string{"ip", "--natpmp", "192.0.2.1", "--protocol", "upnp"}, `--natpmp names a NAT-PMP/PCP server, but --protocol upnp leaves them out; drop one of the two`},
		{[]string{"ip", "--protocol", "carrier-pigeon"}, `--protocol must be auto, upnp, natpmp or pcp, not "carrier-pigeon"`},
		{[]string{"ip", "--natpmp", "nonsense:port"}, `--natpmp: "nonsense" is not an IP address`},
		{[]string{"ip", "stray"}, `ip takes no arguments, only flags (got "stray")`},
		{[]string{"add", "8080", "--ipv6", "--external", "18080"}, `--external does not apply to --ipv6: a pinhole opens the port on this host's own address, with no external port`},
		{[]string{"add", "8080", "--ipv6", "--any"}, `--any does not apply to --ipv6: a pinhole opens the port on this host's own address, with no external port`},
		{[]string{"add", "8080", "--ipv6", "--protocol", "natpmp"}, `NAT-PMP has no IPv6: a pinhole is opened with UPnP (WANIPv6FirewallControl) or PCP; use --protocol upnp or pcp, or leave --protocol out`},
		{[]string{"add", "8080", "--ipv6", "--natpmp", "192.0.2.1"}, `--natpmp 192.0.2.1 is an IPv4 address; a pinhole is asked for over IPv6: give the router's IPv6 address`},
		{[]string{"delete", "--ipv6"}, `delete --ipv6 takes one pinhole: 'portfwd delete 8080/tcp --ipv6' or 'portfwd delete --id 3'`},
		{[]string{"delete", "8080/tcp", "--id", "3"}, `delete --ipv6 takes one pinhole: 'portfwd delete 8080/tcp --ipv6' or 'portfwd delete --id 3'`},
		{[]string{"delete", "--ipv6", "--range", "1000-2000"}, `--range and --remote do not apply to pinholes; close one by PORT/PROTO or --id`},
		{[]string{"delete", "8080/xyz", "--ipv6"}, `"8080/xyz": the protocol after the / must be tcp, udp or both, not "xyz"`},
		{[]string{"ip", "--ipv4", "--ipv6"}, `--ipv4 and --ipv6 together are the default: leave both out`},
		{[]string{"keep", "8080", "--ipv6", "--external", "18080"}, `--external and --any do not apply to --ipv6 alone: a pinhole opens the port on this host's own address`},
		{[]string{"list", "--no-such-flag"}, `unknown flag --no-such-flag ('portfwd list --help' lists the flags)`},
		{[]string{"list", "--no-cahe"}, `unknown flag --no-cahe; did you mean --no-cache? ('portfwd list --help' lists the flags)`},
		{[]string{"edit", "18081/xyz", "--internal", "9"}, `"18081/xyz": the protocol after the / must be tcp, udp or both, not "xyz"`},
		{[]string{"edit", "18081/tcp", "--internal", "0"}, `--internal: 0 is not a port number: ports are 1-65535`},
		{[]string{"edit", "18081/tcp"}, `edit needs something to change: --internal, --external, --client, --desc, --lease or --enabled`},
		{[]string{"edit", "x/tcp", "--internal", "9"}, `"x/tcp": the external port: "x" is not a port number (1-65535)`},
		{[]string{"delete"}, `delete takes one mapping (e.g. 'portfwd delete 18080/tcp') or --range START-END`},
		{[]string{"delete", "1/tcp", "--range", "1-2"}, `delete takes one mapping (e.g. 'portfwd delete 18080/tcp') or --range START-END`},
		{[]string{"delete", "--range", "20-10"}, `--range: 20-10 ends below its start`},
		{[]string{"delete", "--range", "1-70000"}, `--range: the end: 70000 is not a port number: ports are 1-65535`},
		{[]string{"forget", "9000/tcp", "--all"}, `forget takes mappings (e.g. 9000/tcp) or --all, not both`},
		{[]string{"check", "8080", "--probe", "notaurl"}, `--probe: "notaurl" is not an http:// URL, like http://probe.example.net:8999`},
		{[]string{"check", "8080", "--proto", "both"}, `--proto must be tcp or udp, not "both"`},
		{[]string{"watch", "--interval", "0s"}, `--interval must be above 0, such as 30s`},
		{[]string{"watch", "--callback", "0.0.0.0"}, `--callback: 0.0.0.0 is a wildcard; give this host's address on the router's network`},
		{[]string{"ui", "--listen", "nowhere"}, `--listen must be HOST:PORT, such as 127.0.0.1:8080, not "nowhere"`},
		{[]string{"gateway", "--log-level", "loud"}, `--log-level must be debug, info, warn or error, not "loud"`},
		{[]string{"gateway", "--config", miniupnpdConf}, miniupnpdConf + ` is a miniupnpd configuration, not portfwd's (TOML); convert it with 'portfwd gateway --import-miniupnpd ` +
			miniupnpdConf + ` > gateway.toml' and give that to --config`},
		{[]string{"probe-server", "--listen", ":0", "--connect-timeout", "10s"}, `--connect-timeout must be at most 5s`},
		{[]string{"completion", "tcsh"}, `completion takes the name of a shell: bash, zsh or fish, e.g. 'portfwd completion bash'`},
		{[]string{"version", "now"}, `version takes no arguments (got "now")`},
	} {
		stdout, stderr, code, network := runWatched(t, tt.args...)
		if code != exitUsage {
			t.Errorf("portfwd %s: exit %d, want 1 (stderr %q)", strings.Join(tt.args, " "), code, stderr)
		}
		if !strings.HasPrefix(stderr, "portfwd: "+tt.want) || strings.Count(stderr, "\n") != 1 {
			t.Errorf("portfwd %s:\n got %q\nwant %q", strings.Join(tt.args, " "), stderr, "portfwd: "+tt.want+"\n")
		}
		if stdout != "" {
			t.Errorf("portfwd %s: printed on stdout: %q", strings.Join(tt.args, " "), stdout)
		}
		if len(network) > 0 {
			t.Errorf("portfwd %s: used the network (%v) before saying the command line was wrong", strings.Join(tt.args, " "), network)
		}
	}
}

// TestTripwireSeesTheNetwork: the tripwire of TestUsageErrors does go off
// when a command uses the network, so its silence there means something.
func TestTripwireSeesTheNetwork(t *testing.T) {
	for _, args := range [][]string{
		{"ip", "--gateway", "http://127.0.0.1:9/rootDesc.xml", "--protocol", "upnp", "--timeout", "1s", "--state-dir", t.TempDir()},
		{"add", "8080", "--gateway", "http://127.0.0.1:9/rootDesc.xml", "--timeout", "1s", "--state-dir", t.TempDir()},
	} {
		_, stderr, code, network := runWatched(t, args...)
		if code != exitNoGateway || len(network) != 1 || network[0] != "discover" {
			t.Errorf("portfwd %s: exit %d, network %v, stderr %q; want exit 2 after one discovery", strings.Join(args, " "), code, network, stderr)
		}
	}
}

// TestUsageErrorJSON: under --json a usage error is also an object on
// stdout, even when the flag at fault comes before --json.
func TestUsageErrorJSON(t *testing.T) {
	stdout, stderr, code, _ := runWatched(t, "add", "8080", "--proto", "xyz", "--json")
	var out struct {
		Schema int       `json:"schema"`
		Error  jsonError `json:"error"`
	}
	if err := json.Unmarshal([]byte(stdout), &out); err != nil {
		t.Fatalf("stdout %q: %v", stdout, err)
	}
	want := jsonError{Code: "usage", Message: `--proto must be tcp, udp or both, not "xyz"`, Exit: 1}
	if code != exitUsage || out.Schema != 1 || out.Error != want || stderr != "portfwd: "+want.Message+"\n" {
		t.Errorf("exit %d, stdout %+v, stderr %q", code, out, stderr)
	}
}
