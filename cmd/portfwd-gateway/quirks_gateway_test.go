//go:build gatewayonly

package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestQuirksLeftOut: the router build (tag gatewayonly, as
// scripts/release.sh builds it) has no router emulation, and says in one
// sentence, before touching the network, to run 'portfwd gateway' for it,
// whether it is asked on the command line or in the configuration.
func TestQuirksLeftOut(t *testing.T) {
	conf := filepath.Join(t.TempDir(), "gateway.toml")
	if err := os.WriteFile(conf, []byte("quirks = [\"no-natpmp\"]\n[interfaces]\ninternal = [\"lo\"]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"--quirks", "list"},
		{"--quirks", "no-natpmp", "--internal", "lo"},
		{"--personality", "list"},
		{"--personality", "fritzbox-7590", "--check", "--internal", "lo"},
	} {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), &stdout, &stderr, args)
		msg := stderr.String()
		if code != 1 || stdout.Len() > 0 || !strings.Contains(msg, "left out of portfwd-gateway") ||
			!strings.Contains(msg, "run 'portfwd gateway'") || strings.Count(strings.TrimSpace(msg), "\n") > 0 {
			t.Errorf("portfwd-gateway %q: exit %d\nstdout: %s\nstderr: %s", args, code, stdout.String(), msg)
		}
	}

	// --check reports the configuration's quirks as one of its problems.
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), &stdout, &stderr, []string{"--check", "--config", conf, "--backend", "memory", "--external-ip", "192.0.2.1"})
	if code != 1 || !strings.Contains(stdout.String(), "quirks and personalities (router emulation for testing clients) are left out of portfwd-gateway") {
		t.Errorf("portfwd-gateway --check of a configuration with quirks: exit %d\nstdout: %s\nstderr: %s", code, stdout.String(), stderr.String())
	}
}
