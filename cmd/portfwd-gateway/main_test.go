package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestNoClientPackage: the gateway-only build links the router side
// alone; none of the client's packages, nor the web UI's template
// engine, which alone would add 2.7 MB.
func TestNoClientPackage(t *testing.T) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command in PATH to list the dependencies")
	}
	out, err := exec.Command(gobin, "list", "-tags", "nethttpomithttp2,gatewayonly", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 20 || !strings.Contains(string(out), "github.com/portfwd/portfwd/gateway/daemon") {
		t.Fatalf("go list -deps lists %d packages, without the daemon:\n%s", len(deps), out)
	}
	for _, d := range deps {
		for _, bad := range []string{"/portmap", "/webui", "/reach", "/internal/explain", "chromedp", "html/template", "text/template", "regexp"} {
			if strings.HasSuffix(d, bad) || strings.Contains(d, bad+"/") {
				t.Errorf("the gateway-only build links %s", d)
			}
		}
	}
}

// TestNoHTTPServerNorTLS: the router build, as scripts/release.sh makes
// it, links neither net/http nor crypto/tls, not even one package of
// them: net/http's initialisation alone keeps the TLS client, the FIPS
// self-tests and the IDNA tables, 1.2 MB of a mipsle binary. It serves
// HTTP with internal/httpserve and speaks it with internal/httpx's own
// implementation (tag gatewayonly), and sends with upnp.ConnTransport; nor
// does it link
// encoding/json's decoder (internal/jsonobj reads what the gateway wrote).
// Nor what was taken out of it to bring it toward 8 MB for mipsle (README,
// "Releases, packaging and licence"): x/net/bpf's assembler (the nft
// reload watch's filter is raw instructions), batched NAT-PMP/PCP reads
// and writes (recvmmsg/sendmmsg) and group commit (the router build
// answers one request at a time), and slices' sort routines instantiated
// for the project's own element types or net/netip's (sort.Slice is one
// routine for all). The symbols are read with go tool nm from a build for
// this machine: what links is the same on every architecture.
func TestNoHTTPServerNorTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the gateway (-short)")
	}
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command in PATH to build the gateway")
	}
	out, err := exec.Command(gobin, "list", "-tags", "nethttpomithttp2,gatewayonly", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "github.com/portfwd/portfwd/internal/httpx\n") {
		t.Fatalf("go list -deps lists no internal/httpx: the test reads the wrong build\n%s", out)
	}
	for _, d := range strings.Fields(string(out)) {
		for _, bad := range []string{"net/http", "crypto/tls", "crypto/x509", "vendor/golang.org/x/net/idna", "golang.org/x/net/idna", "mime/multipart"} {
			if d == bad || strings.HasPrefix(d, bad+"/") {
				t.Errorf("the router build links %s: nothing of the gateway may import it (internal/httpx is the router build's HTTP)", d)
			}
		}
	}

	bin := filepath.Join(t.TempDir(), "portfwd-gateway")
	build := exec.Command(gobin, "build", "-trimpath", "-tags", "nethttpomithttp2,gatewayonly", "-gcflags=all=-l", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err = exec.Command(gobin, "tool", "nm", bin).Output()
	if err != nil {
		t.Fatalf("go tool nm: %v", err)
	}
	syms := string(out)
	if !strings.Contains(syms, "internal/httpserve.(*Server).Serve") {
		t.Fatal("go tool nm lists no internal/httpserve: the test reads the wrong binary")
	}
	for _, bad := range []string{
		"net/http.(*Server).Serve", "net/http.(*conn).serve", "crypto/tls.(*Conn).Handshake", "crypto/x509.(*Certificate).Verify",
		"net/http.(*Transport).roundTrip", "net/http.(*Client).Do", "encoding/json.(*decodeState).object",
		"golang.org/x/net/internal/socket.(*Conn).RecvMsgs", "golang.org/x/net/internal/socket.(*Conn).SendMsgs",
		"github.com/portfwd/portfwd/gateway.(*CommitGroup).submit", "github.com/portfwd/portfwd/gateway.(*Core).commitChanges",
	} {
		if strings.Contains(syms, " "+bad+"\n") {
			t.Errorf("the router build links %s", bad)
		}
	}
	for _, line := range strings.Split(syms, "\n") {
		fields := strings.Fields(line)
		if len(fields) < 3 {
			continue
		}
		sym := strings.Join(fields[2:], " ")
		if strings.HasPrefix(sym, "net/http.") || strings.HasPrefix(sym, "crypto/tls.") {
			t.Errorf("the router build links %s", sym)
		}
		if strings.HasPrefix(sym, "golang.org/x/net/bpf.") {
			t.Errorf("the router build links x/net/bpf (%s): write socket filters as raw instructions", sym)
		}
		// An instantiation's element type, as a shape: one of the
		// project's, or netip.Addr's (the standard library's own sorts,
		// such as net's of its addresses, are not ours to change).
		ours := strings.Contains(sym, "github.com/portfwd/portfwd") || strings.Contains(sym, "shape.struct { net/netip.addr ")
		if ours && (strings.HasPrefix(sym, "slices.pdqsort") || strings.HasPrefix(sym, "slices.stable")) {
			t.Errorf("the router build links a sort routine for one element type (%s): use sort.Slice", sym)
		}
	}
}

func TestRun(t *testing.T) {
	for _, tt := range []struct {
		args     []string
		code     int
		stdout   string
		stderr   string
		noStderr bool
	}{
		{args: []string{"--help"}, stdout: "Usage: portfwd-gateway [flags]", noStderr: true},
		{args: []string{"help"}, stdout: "--import-miniupnpd", noStderr: true},
		{args: []string{"--version"}, stdout: "portfwd ", noStderr: true},
		{args: []string{"--bogus"}, code: 1, stderr: "portfwd-gateway: unknown flag --bogus"},
		{args: []string{"--http-port", "x"}, code: 1, stderr: "--http-port"},
		{args: []string{"start"}, code: 1, stderr: `no arguments are taken, only flags (got "start")`},
		{args: []string{"--config", "/nonexistent/gateway.toml"}, code: 1, stderr: "/nonexistent/gateway.toml"},
		{args: []string{"--print-config", "--internal", "lan0"}, stdout: `internal = ["lan0"]`, noStderr: true},
	} {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), &stdout, &stderr, tt.args)
		if code != tt.code || !strings.Contains(stdout.String(), tt.stdout) || !strings.Contains(stderr.String(), tt.stderr) ||
			tt.noStderr && stderr.Len() > 0 {
			t.Errorf("portfwd-gateway %q: exit %d\nstdout: %s\nstderr: %s", tt.args, code, stdout.String(), stderr.String())
		}
	}
}
