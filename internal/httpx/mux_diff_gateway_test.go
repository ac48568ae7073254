//go:build gatewayonly

package httpx

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestServeMuxAsNetHTTP: for the patterns the daemon and the admin page
// register, every request of a set of methods and paths is routed as
// net/http's ServeMux routes it (the same handler, or the same 404, 405
// or redirect), with the same path values. The one difference, on
// purpose: net/http redirects a subtree's name without its slash
// ("/static" to "/static/"), this ServeMux answers 404.
func TestServeMuxAsNetHTTP(t *testing.T) {
	patterns := []string{
		"GET /{$}", "GET /static/", "/api/", "GET /api/mappings", "DELETE /api/mappings/{proto}/{port}",
		"DELETE /api/pinholes/{id}", "GET /api/status", "GET /api/events", "/metrics", "/healthz",
	}
	ours, ref := NewServeMux(), http.NewServeMux()
	for _, p := range patterns {
		ours.HandleFunc(p, func(w ResponseWriter, r *Request) {
			io.WriteString(w, p+" "+r.PathValue("proto")+"|"+r.PathValue("port")+"|"+r.PathValue("id"))
		})
		ref.HandleFunc(p, func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, p+" "+r.PathValue("proto")+"|"+r.PathValue("port")+"|"+r.PathValue("id"))
		})
	}
	paths := []string{
		"/", "/x", "/static/", "/static/style.css", "/static/a/b", "/api", "/api/", "/api/x", "/api/mappings",
		"/api/mappings/", "/api/mappings/TCP", "/api/mappings/TCP/80", "/api/mappings/TCP/80/x", "/api/mappings//80",
		"/api/pinholes/3", "/api/pinholes/", "/api/status", "/api/events", "/metrics", "/metrics/", "/healthz",
		"/a/../api/status", "/api/./status", "//api/status", "/API/status",
	}
	for _, method := range []string{"GET", "HEAD", "POST", "DELETE", "PUT", "OPTIONS"} {
		for _, p := range paths {
			if p == "/api" {
				continue // net/http redirects to /api/; this ServeMux answers 404
			}
			w := &recorder{h: Header{}}
			r, _, err := readReq(method + " " + p + " HTTP/1.1\r\nHost: h\r\n\r\n")
			if err != nil {
				t.Fatal(err)
			}
			ours.ServeHTTP(w, r)
			rw := httptest.NewRecorder()
			ref.ServeHTTP(rw, httptest.NewRequest(method, p, nil))
			code := w.code
			if code == 0 {
				code = 200
			}
			if code != rw.Code || code < 300 && w.body.String() != rw.Body.String() ||
				code == 405 && w.h.Get("Allow") != rw.Header().Get("Allow") ||
				code == 307 && w.h.Get("Location") != rw.Header().Get("Location") {
				t.Errorf("%s %s: %d %q (Allow %q, Location %q); net/http: %d %q (Allow %q, Location %q)", method, p,
					code, w.body.String(), w.h.Get("Allow"), w.h.Get("Location"),
					rw.Code, rw.Body.String(), rw.Header().Get("Allow"), rw.Header().Get("Location"))
			}
		}
	}
}
