package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/portfwd/portfwd/igd"
	"github.com/portfwd/portfwd/igd/igdtest"
	"github.com/portfwd/portfwd/internal/testenv"
	"github.com/portfwd/portfwd/reach"
)

func TestListenExposed(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:0":     false,
		"127.0.0.2:8080":  false,
		"[::1]:8080":      false,
		"localhost:8080":  false,
		":8080":           true,
		"0.0.0.0:8080":    true,
		"[::]:8080":       true,
		"192.168.1.5:80":  true,
		"myhost.lan:8080": true,
	} {
		got, err := listenExposed(addr)
		if err != nil || got != want {
			t.Errorf("listenExposed(%q) = %v, %v; want %v", addr, got, err, want)
		}
	}
	if _, err := listenExposed("8080"); err == nil {
		t.Error("a port alone is accepted")
	}
}

// startUI runs "portfwd ui" with args until the test ends and returns
// what it printed as JSON, and its stderr.
func startUI(t *testing.T, args ...string) (map[string]string, *testenv.SyncBuffer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	stderr := &testenv.SyncBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- runUI(ctx, &env{stdout: pw, stderr: stderr}, append(args, "--json"))
		pw.Close()
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("portfwd ui ended with %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("portfwd ui did not stop when its context ended")
		}
	})
	var printed struct {
		URL    string `json:"url"`
		Listen string `json:"listen"`
		Token  string `json:"token"`
	}
	if err := json.NewDecoder(pr).Decode(&printed); err != nil {
		t.Fatalf("reading the address: %v (stderr: %s)", err, stderr.String())
	}
	go io.Copy(io.Discard, pr)
	return map[string]string{"url": printed.URL, "listen": printed.Listen, "token": printed.Token}, stderr
}

func TestUIServesTheGatewaysTable(t *testing.T) {
	_, flags := fake(t, igdtest.Options{Mappings: []igd.PortMapping{{
		ExternalPort: 8443, Protocol: "TCP", InternalPort: 443, InternalClient: "192.168.1.20", Enabled: true, Description: "nas",
	}}})
	out, stderr := startUI(t, flags...)
	u, err := url.Parse(out["url"])
	if err != nil || u.Hostname() != "127.0.0.1" || u.Query().Get("token") != out["token"] || len(out["token"]) < 20 {
		t.Fatalf("printed %v", out)
	}
	if strings.Contains(stderr.String(), "warning") {
		t.Errorf("a warning for a loopback address: %s", stderr.String())
	}

	res, err := http.Get(out["url"])
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Errorf("the page: %d", res.StatusCode)
	}

	api := "http://" + u.Host + "/api/mappings"
	deadline := time.Now().Add(10 * time.Second)
	for {
		req, _ := http.NewRequest("GET", api, nil)
		req.Header.Set("X-Portfwd-Token", out["token"])
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode == http.StatusOK {
			if !strings.Contains(string(body), `"description":"nas"`) {
				t.Errorf("the table: %s", body)
			}
			break
		}
		if res.StatusCode != http.StatusServiceUnavailable || time.Now().After(deadline) {
			t.Fatalf("GET /api/mappings: %d %s", res.StatusCode, body)
		}
		time.Sleep(20 * time.Millisecond) // discovery still running
	}

	res, err = http.Get("http://" + u.Host + "/api/mappings")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusForbidden {
		t.Errorf("without the token: %d, want 403", res.StatusCode)
	}
}

func TestUIUsage(t *testing.T) {
	for _, args := range [][]string{{"extra"}, {"--listen", "8080"}, {"--protocol", "smoke-signals"}} {
		err := runUI(context.Background(), &env{stdout: io.Discard, stderr: io.Discard}, args)
		if classify(err) != exitUsage {
			t.Errorf("portfwd ui %v: %v, want a usage error", args, err)
		}
	}
}

// TestUICheckResult: the web UI's check answers with portfwd check
// --json's names (snake_case, schema 1) and the CLI's diagnosis, not Go's
// field names.
func TestUICheckResult(t *testing.T) {
	r := reach.Report{Result: reach.Result{Protocol: "TCP", ExternalPort: 18080, Address: netip.MustParseAddrPort("203.0.113.7:18080"),
		Code: reach.CodeRefused, Reason: "connection refused", Probe: "http://probe:8999"},
		Diagnosis: "the router forwards 18080/tcp to 192.168.1.10:8080, where nothing listens"}
	c := newUICheck(r, "tcp", 8080)
	if c.String() != "not reachable: "+r.Diagnosis {
		t.Errorf("summary %q", c.String())
	}
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for k := range m {
		if strings.ToLower(k) != k {
			t.Errorf("field %q is not snake_case: %s", k, b)
		}
	}
	if m["reachable"] != false || m["reason"] != r.Diagnosis || m["observed"] != "connection refused" || m["external_port"] != 18080.0 ||
		m["address"] != "203.0.113.7:18080" || m["code"] != reach.CodeRefused {
		t.Errorf("result: %s", b)
	}
}
