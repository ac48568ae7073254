package daemon

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portfwd/portfwd/gateway"
	"github.com/portfwd/portfwd/gateway/admin"
	"github.com/portfwd/portfwd/natpmp"
)

// adminGet makes a request of the admin server with the page's token (or
// none, when token is empty).
func adminDo(t *testing.T, r *running, method, path, token string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, "http://"+r.AdminAddr().String()+path, nil)
	if token != "" {
		req.Header.Set(admin.TokenHeader, token)
	}
	c := &http.Client{Timeout: 5 * time.Second}
	res, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// TestDaemonAdminPageOff: without admin.ui the admin address serves the
// metrics only.
func TestDaemonAdminPageOff(t *testing.T) {
	cfg := testConfig(t)
	r := start(t, cfg)
	if code, _ := adminDo(t, r, "GET", "/", ""); code != http.StatusNotFound {
		t.Errorf("GET / without admin.ui: %d, want 404", code)
	}
	if r.AdminPageURL() != "" {
		t.Errorf("AdminPageURL = %q without admin.ui", r.AdminPageURL())
	}
	if _, err := os.Stat(filepath.Join(cfg.StateDir, adminTokenFile)); !os.IsNotExist(err) {
		t.Errorf("a token file without admin.ui: %v", err)
	}
}

// TestDaemonAdminPage: the page shows a client's mapping with the
// protocol that made it, and deletes it on the operator's authority, in
// secure mode too; the token is in the state directory, for root only.
func TestDaemonAdminPage(t *testing.T) {
	cfg := testConfig(t)
	cfg.Admin.UI = true
	r := start(t, cfg)

	path := filepath.Join(cfg.StateDir, adminTokenFile)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatalf("no token file: %v", err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("the token file's mode is %v, want 0600", fi.Mode().Perm())
	}
	b, _ := os.ReadFile(path)
	token := strings.TrimSpace(string(b))
	if want := "http://" + r.AdminAddr().String() + "/?token=" + token; len(token) < 22 || r.AdminPageURL() != want {
		t.Errorf("AdminPageURL = %q, want %q", r.AdminPageURL(), want)
	}

	r.pmp(t, natpmp.Request{Op: natpmp.OpMapUDP, InternalPort: 5001, SuggestedExternalPort: 25001, Lifetime: 3600})
	if code, _ := adminDo(t, r, "GET", "/api/mappings", ""); code != http.StatusForbidden {
		t.Errorf("the table without the token: %d, want 403", code)
	}
	if code, body := adminDo(t, r, "GET", "/metrics", ""); code != http.StatusOK || !strings.Contains(body, "portfwd_mappings") {
		t.Errorf("/metrics beside the page: %d", code)
	}
	code, body := adminDo(t, r, "GET", "/?token="+token, "")
	if code != http.StatusOK {
		t.Fatalf("the page: %d\n%s", code, body)
	}
	for _, want := range []string{">NAT-PMP<", "127.0.0.1:5001", "25001", cfg.Device.FriendlyName, "memory", "198.51.100.1"} {
		if !strings.Contains(body, want) {
			t.Errorf("the page lacks %q", want)
		}
	}
	_, body = adminDo(t, r, "GET", "/api/status", token)
	var st struct {
		Requests []admin.Counter `json:"requests"`
		Services []admin.Service `json:"services"`
	}
	json.Unmarshal([]byte(body), &st)
	found := false
	for _, c := range st.Requests {
		found = found || (c.Protocol == "NAT-PMP" && c.Action == "map_udp" && c.Result == 0 && c.Count == 1)
	}
	if !found || len(st.Services) != 2 {
		t.Errorf("status: counters %+v, services %+v", st.Requests, st.Services)
	}

	// A stream is open while the mapping goes: it hears of it.
	req, _ := http.NewRequest("GET", "http://"+r.AdminAddr().String()+"/api/events", nil)
	req.Header.Set(admin.TokenHeader, token)
	res, err := http.DefaultClient.Do(req)
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("events: %v %v", res, err)
	}
	lines := make(chan string, 64)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(res.Body)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()

	if code, body := adminDo(t, r, "DELETE", "/api/mappings/udp/25001", token); code != http.StatusOK {
		t.Fatalf("delete from the page: %d %s", code, body)
	}
	if _, ok := r.memory().Rule(gateway.Key{Protocol: gateway.UDP, ExternalPort: 25001}); ok || r.Core().Len() != 0 {
		t.Errorf("the mapping is still there after the page deleted it")
	}
	deadline := time.After(5 * time.Second)
	for seen := 0; seen < 2; {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("the event stream ended early")
			}
			if strings.HasPrefix(l, "data: ") && strings.Contains(l, `"mappings":`) {
				seen++ // the first table has it, the second no more
				if seen == 2 && strings.Contains(l, "25001") {
					t.Errorf("the table after the delete still has it: %s", l)
				}
			}
		case <-deadline:
			t.Fatal("no table event after the delete")
		}
	}

	// Stopping does not wait for the open stream.
	began := time.Now()
	if err := r.stop(); err != nil {
		t.Errorf("stop: %v", err)
	}
	if d := time.Since(began); d > 3*time.Second {
		t.Errorf("stopping took %v with a page open", d)
	}
	for range lines {
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("the token file outlives the daemon: %v", err)
	}
}
