//go:build gatewayonly

package upnp

import (
	"context"
	"io"
	"net/http"

	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/portfwd/portfwd/internal/httpx"
)

// TestDoWithoutClient: the router build's do, which sends without
// http.Client, follows a GET's redirects (to the final address, for
// relative URLs) but not a POST's, and honours the client's Timeout.
func TestDoWithoutClient(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/a", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/b", http.StatusFound) })
	mux.HandleFunc("/b", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "c", http.StatusTemporaryRedirect) })
	mux.HandleFunc("/c", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "here "+r.Header.Get("User-Agent")) })
	mux.HandleFunc("/loop", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/loop", http.StatusFound) })
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()

	req, _ := httpx.NewRequestWithContext(context.Background(), "GET", srv.URL+"/a", nil)
	req.Header.Set("User-Agent", "portfwd")
	resp, err := do(nil, req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "here portfwd" || resp.Request.URL.String() != srv.URL+"/c" {
		t.Errorf("GET /a: %q from %s, want the end of the redirects, /c, with the request's headers", b, resp.Request.URL)
	}

	req, _ = httpx.NewRequestWithContext(context.Background(), "POST", srv.URL+"/a", strings.NewReader("<x/>"))
	if resp, err := do(nil, req); err != nil || resp.StatusCode != http.StatusFound {
		t.Errorf("POST /a: %v %v, want the 302 itself", resp, err)
	} else {
		resp.Body.Close()
	}

	req, _ = httpx.NewRequestWithContext(context.Background(), "GET", srv.URL+"/loop", nil)
	if _, err := do(nil, req); err == nil || !strings.Contains(err.Error(), "redirects") {
		t.Errorf("a redirect loop: %v, want an error", err)
	}

	req, _ = httpx.NewRequestWithContext(context.Background(), "GET", srv.URL+"/slow", nil)
	began := time.Now()
	if _, err := do(&httpx.Client{Timeout: 100 * time.Millisecond}, req); err == nil || time.Since(began) > 3*time.Second {
		t.Errorf("a client with a 100 ms Timeout, to a server that waits: %v after %v", err, time.Since(began))
	}
}
