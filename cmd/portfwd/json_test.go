package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/portfwd/portfwd/igd"
	"github.com/portfwd/portfwd/igd/igdtest"
	"github.com/portfwd/portfwd/internal/testenv"
	"github.com/portfwd/portfwd/upnp"
)

// TestJSONGolden: what each command prints under --json, schema 1, as
// README.md documents it: testdata/json/NAME.json (run with -update to
// rewrite them after a deliberate change; a change to a field of schema 1
// is not one). The fake router's port and the state directory are
// replaced by placeholders.
func TestJSONGolden(t *testing.T) {
	table := []igd.PortMapping{
		{ExternalPort: 7000, Protocol: "UDP", InternalPort: 7000, InternalClient: "192.168.1.9", Enabled: true, Description: "voip"},
		{ExternalPort: 8443, Protocol: "TCP", InternalPort: 443, InternalClient: "192.168.1.20", Enabled: false, Description: "nas", LeaseDuration: time.Hour},
	}
	udp := func(a upnp.Args) bool { return a.Value("NewProtocol") == "UDP" }
	second := func(a upnp.Args) bool { return a.Value("NewPortMappingIndex") == "1" }
	for _, tt := range []struct {
		name string
		opts igdtest.Options
		args []string
		code int
	}{
		{"discover", igdtest.Options{ExternalIP: "198.51.100.7"}, []string{"discover"}, exitOK},
		{"discover-cgnat", igdtest.Options{ExternalIP: "100.64.3.4", Status: "Connected"}, []string{"discover"}, exitOK},
		{"info", igdtest.Options{ExternalIP: "198.51.100.7"}, []string{"info"}, exitOK},
		{"ip", igdtest.Options{ExternalIP: "10.0.0.2"}, []string{"ip", "--ipv4"}, exitOK}, // --ipv4: this host's IPv6 addresses are the machine's, not the golden's
		{"list", igdtest.Options{Version: 1, Mappings: table}, []string{"list"}, exitOK},
		{"list-partial", igdtest.Options{Version: 1, Mappings: table,
			Faults: []igdtest.Fault{{Action: "GetGenericPortMappingEntry", HTTPStatus: 503, Match: second}}}, []string{"list"}, exitFailure},
		{"add", igdtest.Options{}, []string{"add", "8080", "--external", "18080", "--desc", "web", "--lease", "2h"}, exitOK},
		{"add-both-partial", igdtest.Options{Faults: []igdtest.Fault{{Action: "AddPortMapping", Code: 728, Match: udp}}},
			[]string{"add", "8080", "--proto", "both"}, exitRefused},
		{"add-refused", igdtest.Options{Mappings: []igd.PortMapping{{ExternalPort: 8080, Protocol: "TCP", InternalPort: 80,
			InternalClient: "192.168.1.7", Enabled: true, Description: "nas"}}}, []string{"add", "8080"}, exitRefused},
		{"edit", igdtest.Options{Version: 1, Mappings: table}, []string{"edit", "8443/tcp", "--internal", "8444", "--client", "192.168.1.20"}, exitOK},
		{"delete", igdtest.Options{Mappings: table}, []string{"delete", "7000/udp"}, exitOK},
		{"delete-range", igdtest.Options{Version: 1, Mappings: table}, []string{"delete", "--range", "1-65535", "--proto", "both"}, exitOK},
		{"forget", igdtest.Options{}, []string{"forget"}, exitOK},
		{"no-gateway", igdtest.Options{}, []string{"ip", "--gateway", "http://127.0.0.1:9/rootDesc.xml"}, exitNoGateway},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, flags := fake(t, tt.opts)
			stateDir := flags[5]
			if tt.name == "no-gateway" {
				flags = []string{"--state-dir", stateDir, "--timeout", "2s"}
			}
			stdout, stderr, code := portfwd(t, append(append(tt.args, "--json"), flags...)...)
			if code != tt.code {
				t.Errorf("exit %d, want %d (stderr %q)", code, tt.code, stderr)
			}
			var obj map[string]any
			if err := json.Unmarshal([]byte(stdout), &obj); err != nil || obj["schema"] != 1.0 {
				t.Fatalf("not one object of schema 1 (%v):\n%s", err, stdout)
			}
			if code != exitOK && obj["error"] == nil {
				t.Errorf("exit %d without an error object:\n%s", code, stdout)
			}
			snakeCase(t, obj)
			out := regexp.MustCompile(`127\.0\.0\.1:\d+`).ReplaceAllString(stdout, "127.0.0.1:PORT")
			out = strings.ReplaceAll(out, stateDir, "STATE_DIR")
			golden(t, filepath.Join("testdata", "json", tt.name+".json"), out)
		})
	}
}

// snakeCase fails the test for a key of v that is not snake_case.
func snakeCase(t *testing.T, v any) {
	t.Helper()
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if !regexp.MustCompile(`^[a-z][a-z0-9]*(_[a-z0-9]+)*$`).MatchString(k) {
				t.Errorf("key %q is not snake_case", k)
			}
			snakeCase(t, x)
		}
	case []any:
		for _, x := range v {
			snakeCase(t, x)
		}
	}
}

// TestJSONGoldenStreams: keep and watch print one object per line, each
// of schema 1; check prints one object. Times, ports and round trips are
// replaced by placeholders.
func TestJSONGoldenStreams(t *testing.T) {
	normalize := func(s string) string {
		s = regexp.MustCompile(`"time":"[^"]+"`).ReplaceAllString(s, `"time":"TIME"`)
		s = regexp.MustCompile(`"rtt_ms":\s*[0-9.e-]+`).ReplaceAllString(s, `"rtt_ms": 0`)
		return regexp.MustCompile(`127\.0\.0\.1:\d+`).ReplaceAllString(s, "127.0.0.1:PORT")
	}
	lines := func(t *testing.T, out string) {
		t.Helper()
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			var obj map[string]any
			if err := json.Unmarshal([]byte(line), &obj); err != nil || obj["schema"] != 1.0 {
				t.Errorf("not an object of schema 1 (%v): %s", err, line)
			}
			snakeCase(t, obj)
		}
	}

	t.Run("keep", func(t *testing.T) {
		_, flags := fake(t, igdtest.Options{ExternalIP: "198.51.100.7"})
		stdout, _, stop := running(t, runKeep, append([]string{"8080", "--external", "18080", "--lease", "1h", "--json"}, flags...)...)
		waitOutput(t, stdout, `"event":"mapped"`, 5*time.Second)
		if code := stop(); code != exitOK {
			t.Errorf("keep: exit %d", code)
		}
		lines(t, stdout.String())
		golden(t, filepath.Join("testdata", "json", "keep.jsonl"), normalize(stdout.String()))
	})
	t.Run("watch", func(t *testing.T) {
		srv, flags := fake(t, igdtest.Options{Version: 2, ExternalIP: "198.51.100.7", Mappings: []igd.PortMapping{nas}})
		stdout, _, stop := running(t, runWatch, append([]string{"--json", "--interval", "100ms", "--no-events", "--no-announcements"}, flags...)...)
		waitOutput(t, stdout, `"event":"initial"`, 5*time.Second)
		srv.SetMappings(nil)
		waitOutput(t, stdout, `"event":"mappings_changed"`, 5*time.Second)
		stop()
		lines(t, stdout.String())
		golden(t, filepath.Join("testdata", "json", "watch.jsonl"), normalize(stdout.String()))
	})
	t.Run("check", func(t *testing.T) {
		probe := loopbackProbe(t)
		port := freeTCPPort(t)
		out, _, err := runIn(runCheck, port, "--no-gateway", "--probe", probe, "--json")
		if err != nil {
			t.Fatal(err)
		}
		lines(t, strings.Join(strings.Fields(out), ""))
		out = regexp.MustCompile(`"(internal|external)_port": \d+`).ReplaceAllString(out, `"${1}_port": 1`)
		out = strings.ReplaceAll(out, port, "PORT")
		golden(t, filepath.Join("testdata", "json", "check.json"), normalize(out))
	})
}

// running runs a command in-process until stop, which returns its exit
// code.
func running(t *testing.T, cmd func(context.Context, *env, []string) error, args ...string) (stdout, stderr *testenv.SyncBuffer, stop func() int) {
	t.Helper()
	stdout, stderr = &testenv.SyncBuffer{}, &testenv.SyncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	code := make(chan int, 1)
	e := &env{stdout: stdout, stderr: stderr}
	go func() { code <- exitCode(e, cmd(ctx, e, args)) }()
	stopped := false
	stop = func() int {
		t.Helper()
		cancel()
		select {
		case c := <-code:
			stopped = true
			return c
		case <-time.After(5 * time.Second):
			t.Fatalf("the command did not end within 5 s of its context; stderr:\n%s", stderr)
			return -1
		}
	}
	t.Cleanup(func() {
		if !stopped {
			stop()
		}
	})
	return stdout, stderr, stop
}
