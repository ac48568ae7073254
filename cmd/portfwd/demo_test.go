package main

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/portfwd/portfwd/internal/testenv"
)

// The demo runs on loopback only (no SSDP, no default gateway), so it runs
// as an ordinary test.

func TestDemo(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out testenv.SyncBuffer
	began := time.Now()
	if err := demo(ctx, &out, demoOptions{self: "portfwd"}); err != nil {
		t.Fatalf("demo failed: %v\noutput:\n%s", err, out.String())
	}
	t.Logf("the demo took %v", time.Since(began).Round(time.Millisecond))
	text := out.String()
	// Each step, in order, saying what it proved.
	steps := []string{
		`1\. gateway started: relay backend, external address 127\.0\.0\.\d`,
		`UPnP IGD: +http://127\.0\.0\.1:\d+/rootDesc\.xml`,
		`NAT-PMP and PCP: 127\.0\.0\.1:\d+`,
		`2\. a TCP server \(the "LAN host"\) listens on 127\.0\.0\.1:\d+`,
		`3\. the client found the gateway over UPnP: http://127\.0\.0\.1:\d+/ctl/IPConn`,
		`4\. added 127\.0\.0\.\d:(\d+)/TCP -> 127\.0\.0\.1:\d+ \(lease 10m0s\)`,
		`5\. connected to 127\.0\.0\.\d:\d+; the relay carried it to the server, which said: "hello from the demo server at 127\.0\.0\.1:\d+"`,
		`6\. the gateway's table holds 1 mapping\(s\):`,
		`TCP \d+ -> 127\.0\.0\.1:\d+  enabled=yes  lease=\d+m\d+s  "portfwd demo"`,
		`7\. deleted \d+/TCP`,
		`8\. connecting to 127\.0\.0\.\d:\d+ again fails, as it should: connection refused`,
		`demo done`,
	}
	rest := text
	for _, s := range steps {
		loc := regexp.MustCompile(s).FindStringIndex(rest)
		if loc == nil {
			t.Fatalf("demo output lacks, in order, %s:\n%s", s, text)
		}
		rest = rest[loc[1]:]
	}
}

// With --keep the gateway stays up, and the printed commands work.
func TestDemoKeep(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out testenv.SyncBuffer
	done := make(chan error, 1)
	go func() { done <- demo(ctx, &out, demoOptions{keep: true, self: "portfwd"}) }()
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(out.String(), "Try, in another terminal") {
		if time.Now().After(deadline) {
			t.Fatalf("the demo never printed its commands:\n%s", out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	text := out.String()
	m := regexp.MustCompile(`portfwd list (--gateway \S+ --protocol upnp --no-cache)`).FindStringSubmatch(text)
	if m == nil {
		t.Fatalf("no list command printed:\n%s", text)
	}
	args := append([]string{"list"}, strings.Fields(m[1])...)
	args = append(args, "--state-dir", t.TempDir())
	stdout, stderr, code := portfwd(t, args...)
	if code != exitOK || !strings.Contains(stdout, "portfwd demo") || !strings.Contains(stdout, "1 mapping(s)") {
		t.Errorf("portfwd %s: exit %d\n%s%s", strings.Join(args, " "), code, stdout, stderr)
	}
	if !regexp.MustCompile(`curl http://127\.0\.0\.1:\d+/metrics`).MatchString(text) {
		t.Errorf("no metrics URL printed:\n%s", text)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("demo --keep ended with %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("demo --keep did not stop when its context ended")
	}
}
