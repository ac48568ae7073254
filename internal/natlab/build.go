package natlab

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

var (
	buildMu    sync.Mutex
	buildCache = map[string]string{}
)

// GoBuild builds the main package pkg (an import path such as
// "github.com/portfwd/portfwd/cmd/portfwd") once per test process and
// returns the binary's path, so that lab tests can run it inside the lab's
// namespaces.
func GoBuild(t testing.TB, pkg string) string {
	t.Helper()
	return GoBuildTags(t, pkg, "")
}

// GoBuildTags is GoBuild with build tags (a comma-separated list, as go
// build's -tags takes; "" for none): the router build of the gateway is
// cmd/portfwd-gateway with "gatewayonly,nethttpomithttp2".
func GoBuildTags(t testing.TB, pkg, tags string) string {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	key := pkg + " " + tags
	if bin, ok := buildCache[key]; ok {
		return bin
	}
	dir, err := os.MkdirTemp("", "natlab-bin-")
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, filepath.Base(pkg))
	cmd := exec.Command("go", "build", "-tags", tags, "-o", bin, pkg)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("natlab: go build -tags %q %s: %v\n%s", tags, pkg, err, strings.TrimSpace(string(out)))
	}
	buildCache[key] = bin
	return bin
}

// Env returns the environment for a command of this lab with extra
// variables set, and a state directory of the lab's own in
// PORTFWD_STATE_DIR: labs share addresses, so one lab's remembered
// gateway or mappings would mislead another's.
func (l *Lab) Env(extra ...string) []string {
	return append(append(os.Environ(), fmt.Sprintf("PORTFWD_STATE_DIR=%s", filepath.Join(l.RunDir, "portfwd-state"))), extra...)
}
