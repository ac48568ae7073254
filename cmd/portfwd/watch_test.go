package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/portfwd/portfwd/igd"
	"github.com/portfwd/portfwd/igd/igdtest"
	"github.com/portfwd/portfwd/internal/testenv"
)

// watching runs `portfwd watch args...` in-process until the test stops
// it; stop returns the exit code.
func watching(t *testing.T, args ...string) (stdout, stderr *testenv.SyncBuffer, stop func() int) {
	t.Helper()
	return running(t, runWatch, args...)
}

// waitOutput waits until the output holds want, for at most d.
func waitOutput(t *testing.T, out *testenv.SyncBuffer, want string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !strings.Contains(out.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the output within %v:\n%s", want, d, out)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

var nas = igd.PortMapping{ExternalPort: 7000, Protocol: "UDP", InternalPort: 7000, InternalClient: "192.168.1.9", Enabled: true, Description: "voip"}

func TestWatchJSONLines(t *testing.T) {
	srv, base := fake(t, igdtest.Options{Version: 2, ExternalIP: "198.51.100.7", Mappings: []igd.PortMapping{nas}})
	// igdtest has no eventing: the poll reports the change.
	stdout, stderr, stop := watching(t, append([]string{"--json", "--interval", "100ms", "--no-announcements"}, base...)...)
	waitOutput(t, stdout, `"event":"initial"`, 3*time.Second)
	web := igd.PortMapping{ExternalPort: 18081, Protocol: "TCP", InternalPort: 8081, InternalClient: "192.168.1.10", Enabled: true, Description: "web", LeaseDuration: time.Hour}
	srv.SetMappings([]igd.PortMapping{nas, web})
	waitOutput(t, stdout, `"event":"mappings_changed"`, 2*time.Second)
	if code := stop(); code != exitOK {
		t.Fatalf("exit %d after Ctrl-C; stderr: %s", code, stderr)
	}

	type event struct {
		Event         string `json:"event"`
		Time          time.Time
		Gateway       string `json:"gateway"`
		Method        string `json:"method"`
		ExternalAddr  string `json:"external_ip"`
		Count         int    `json:"count"`
		PreviousCount int    `json:"previous_count"`
		Status        string `json:"status"`
		Reason        string `json:"reason"`
		Via           string `json:"via"`
		Added         []struct {
			Protocol       string `json:"protocol"`
			ExternalPort   int    `json:"external_port"`
			InternalClient string `json:"internal_client"`
			InternalPort   int    `json:"internal_port"`
			Description    string `json:"description"`
			LeaseSeconds   int    `json:"lease_seconds"`
		} `json:"added"`
		Removed []json.RawMessage `json:"removed"`
	}
	var events []event
	for _, line := range strings.Split(strings.TrimSpace(stdout.String()), "\n") {
		var ev event
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("a line that is not one JSON object (%v): %q", err, line)
		}
		events = append(events, ev)
	}
	if len(events) != 2 {
		t.Fatalf("%d events, want initial and mappings-changed:\n%s", len(events), stdout)
	}
	in, ch := events[0], events[1]
	if in.Method != "upnp" || in.Gateway != srv.ControlURL || in.ExternalAddr != "198.51.100.7" || in.Count != 1 ||
		in.Status != "Connected" || in.Via != "start" || in.Time.IsZero() || !strings.Contains(in.Reason, "polling every 100ms") {
		t.Errorf("initial: %+v", in)
	}
	if ch.Count != 2 || ch.PreviousCount != 1 || ch.Via != "poll" || len(ch.Removed) != 0 || len(ch.Added) != 1 {
		t.Fatalf("mappings-changed: %+v", ch)
	}
	if a := ch.Added[0]; a.Protocol != "TCP" || a.ExternalPort != 18081 || a.InternalClient != "192.168.1.10" || a.InternalPort != 8081 ||
		a.Description != "web" || a.LeaseSeconds != 3600 {
		t.Errorf("added: %+v", a)
	}
}

func TestWatchText(t *testing.T) {
	srv, base := fake(t, igdtest.Options{Version: 1, ExternalIP: "100.64.3.4", Mappings: []igd.PortMapping{nas}})
	stdout, stderr, stop := watching(t, append([]string{"--interval", "100ms", "--no-announcements"}, base...)...)
	waitOutput(t, stdout, "UPnP gateway at "+srv.ControlURL+": external address 100.64.3.4, 1 mapping, Connected (watching by polling", 3*time.Second)
	srv.SetMappings(nil)
	waitOutput(t, stdout, "mappings changed: 1 mapping -> 0 mappings [poll]\n  - 7000/UDP -> 192.168.1.9:7000 \"voip\"\n", 2*time.Second)
	stop()
	// The CGNAT address is worth a warning, as in every command.
	if !strings.Contains(stderr.String(), "carrier-grade NAT") {
		t.Errorf("no CGNAT warning; stderr: %s", stderr)
	}
}

func TestWatchNoGatewayExits2(t *testing.T) {
	var so, se bytes.Buffer
	e := &env{stdout: &so, stderr: &se}
	code := exitCode(e, runWatch(context.Background(), e, []string{"--gateway", "http://127.0.0.1:9/rootDesc.xml", "--protocol", "upnp",
		"--no-announcements", "--timeout", "500ms", "--state-dir", t.TempDir()}))
	if code != exitNoGateway || !strings.Contains(se.String(), "no gateway found") {
		t.Errorf("exit %d, stderr %q; want %d and a sentence", code, se.String(), exitNoGateway)
	}
}

func TestWatchUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"extra"},
		{"--interval", "0s"},
		{"--interval", "soon"},
		{"--callback", "not-an-ip"},
		{"--callback", "0.0.0.0"},
	} {
		var so, se bytes.Buffer
		e := &env{stdout: &so, stderr: &se}
		if code := exitCode(e, runWatch(context.Background(), e, args)); code != exitUsage {
			t.Errorf("watch %v: exit %d, want %d (stderr %q)", args, code, exitUsage, se.String())
		}
	}
}
