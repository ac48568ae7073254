package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/portfwd/portfwd/internal/testenv"
	"github.com/portfwd/portfwd/reach"
)

// These tests run "portfwd check" in-process against a probe server on
// 127.0.0.1, with --no-gateway: no discovery traffic leaves the test.

func loopbackProbe(t *testing.T) string {
	t.Helper()
	ts := httptest.NewServer(&reach.ProbeServer{AllowLoopback: true})
	t.Cleanup(ts.Close)
	return ts.URL
}

// freeTCPPort returns a port check can listen on: it binds every address.
func freeTCPPort(t *testing.T) string {
	t.Helper()
	return strconv.Itoa(int(testenv.FreePort(t, testenv.Bind{Network: "tcp"})))
}

func runIn(cmd func(context.Context, *env, []string) error, args ...string) (stdout, stderr string, err error) {
	var so, se bytes.Buffer
	err = cmd(context.Background(), &env{stdout: &so, stderr: &se}, args)
	return so.String(), se.String(), err
}

func TestCheckCommandReachable(t *testing.T) {
	probe := loopbackProbe(t)
	port := freeTCPPort(t)
	out, _, err := runIn(runCheck, port, "--no-gateway", "--probe", probe)
	if err != nil {
		t.Fatalf("check: %v\n%s", err, out)
	}
	if !strings.HasPrefix(out, "reachable: 127.0.0.1:"+port+"/tcp leads to port "+port+" on this host") {
		t.Errorf("output:\n%s", out)
	}
}

func TestCheckCommandNotReachable(t *testing.T) {
	probe := loopbackProbe(t)
	out, _, err := runIn(runCheck, freeTCPPort(t), "--external", freeTCPPort(t), "--no-gateway", "--probe", probe, "--json")
	var ue unreachableError
	if !errors.As(err, &ue) || ue.ExitCode() != exitUnreachable {
		t.Fatalf("got %v, want an unreachable error (exit %d)", err, exitUnreachable)
	}
	var j jsonCheck
	if err := json.Unmarshal([]byte(out), &j); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	if j.Reachable || j.Code != reach.CodeRefused || j.Listener != "temporary" || j.Probe != probe ||
		!strings.Contains(j.Observed, "connection refused") || j.Reason == "" {
		t.Errorf("JSON: %+v", j)
	}
}

func TestCheckCommandProbesFromConfig(t *testing.T) {
	probe := loopbackProbe(t)
	path := filepath.Join(t.TempDir(), "config.toml")
	conf := "# portfwd\nprobe_servers = [\"http://127.0.0.1:1\", \"" + probe + "\"]\nother_key = 1\n"
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	out, _, err := runIn(runCheck, freeTCPPort(t), "--no-gateway", "--config", path)
	if err != nil || !strings.Contains(out, "(probe "+probe+",") {
		t.Fatalf("check with the config's probes: %v\n%s", err, out)
	}
}

func TestCheckCommandErrors(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "none.toml")
	bad := filepath.Join(t.TempDir(), "bad.toml")
	os.WriteFile(bad, []byte("probe_servers = \"not a list\"\n"), 0o600)
	t.Setenv("PORTFWD_CONFIG", filepath.Join(t.TempDir(), "absent.toml"))
	tests := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--no-gateway"}, exitUsage, "one internal PORT"},
		{[]string{"0", "--no-gateway"}, exitUsage, "not a port number"},
		{[]string{"80", "--proto", "both", "--no-gateway"}, exitUsage, "tcp or udp"},
		{[]string{"80", "--external", "70000", "--no-gateway"}, exitUsage, "not a port number"},
		{[]string{"80", "--no-gateway"}, exitUsage, "no probe server"},
		{[]string{"80", "--no-gateway", "--config", missing}, exitFailure, "none.toml"},
		{[]string{"80", "--no-gateway", "--config", bad}, exitFailure, "bad.toml"},
		// check listens on the port for the probe: a free one, as port 80
		// is root's.
		{[]string{freeTCPPort(t), "--no-gateway", "--probe", "http://127.0.0.1:1"}, exitFailure, "no probe server ran the check"},
	}
	for _, tt := range tests {
		_, _, err := runIn(runCheck, tt.args...)
		if err == nil || classify(err) != tt.code || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("check %v: %v (exit %d), want exit %d with %q", tt.args, err, classify(err), tt.code, tt.want)
		}
	}
}

func TestProbeServerFlags(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{nil, "--listen"},
		{[]string{"--listen", ":0", "extra"}, "no arguments"},
		{[]string{"--listen", ":0", "--rate", "0/min"}, "--rate"},
		{[]string{"--listen", ":0", "--rate", "lots"}, "--rate"},
		{[]string{"--listen", ":0", "--connect-timeout", "10s"}, "at most 5s"},
		{[]string{"--listen", ":0", "--max-concurrent", "0"}, "at least 1"},
	}
	for _, tt := range tests {
		_, _, err := runIn(runProbeServer, tt.args...)
		var ue usageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("probe-server %v: %v, want a usage error with %q", tt.args, err, tt.want)
		}
	}
}

// TestProbeServerCommandServes runs the command until its context ends.
func TestProbeServerCommandServes(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var se testenv.SyncBuffer
	done := make(chan error, 1)
	go func() {
		done <- runProbeServer(ctx, &env{stdout: &bytes.Buffer{}, stderr: &se}, []string{"--listen", "127.0.0.1:0", "--rate", "5/min"})
	}()
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("probe-server after cancel: %v", err)
	}
	if log := se.String(); !strings.Contains(log, "probe server listening") || !strings.Contains(log, "5/min") {
		t.Errorf("log:\n%s", log)
	}
}
