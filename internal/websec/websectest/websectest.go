// Package websectest calls a web page's JSON API as the page's script
// does (the token header, JSON bodies, the status and Content-Type
// checked), for the tests of the two pages package websec guards: the
// client's web UI and the gateway's admin page.
package websectest

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// API is a page's JSON API served by Server, or at URL when Server is
// nil (a server that is not net/http's, as the router build's), whose
// token Token goes in the header TokenHeader.
type API struct {
	T           testing.TB
	Server      *httptest.Server
	URL         string
	TokenHeader string
	Token       string
}

// WithToken is a header holding the page's token.
func (a API) WithToken() http.Header {
	return http.Header{a.TokenHeader: {a.Token}}
}

// Request makes a request with the given headers (the token header is
// not added: pass it when wanted) and returns the response with its body.
func (a API) Request(method, path string, body any, header http.Header) (*http.Response, []byte) {
	a.T.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			a.T.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	base, client := a.URL, http.DefaultClient
	if a.Server != nil {
		base, client = a.Server.URL, a.Server.Client()
	}
	req, err := http.NewRequestWithContext(ctx, method, base+path, rd)
	if err != nil {
		a.T.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if host := header.Get("Host"); host != "" {
		req.Host = host
	}
	res, err := client.Do(req)
	if err != nil {
		a.T.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	data, err := io.ReadAll(res.Body)
	if err != nil {
		a.T.Fatalf("%s %s: reading the body: %v", method, path, err)
	}
	return res, data
}

// Call makes an API request with the token, checks the status and the
// JSON Content-Type, and decodes the answer into out (when not nil).
func (a API) Call(method, path string, body any, wantStatus int, out any) []byte {
	a.T.Helper()
	h := a.WithToken()
	if body != nil {
		h.Set("Content-Type", "application/json")
	}
	res, data := a.Request(method, path, body, h)
	if res.StatusCode != wantStatus {
		a.T.Fatalf("%s %s: status %d, want %d; body %s", method, path, res.StatusCode, wantStatus, data)
	}
	if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		a.T.Errorf("%s %s: Content-Type %q, want JSON", method, path, ct)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			a.T.Fatalf("%s %s: decoding %s: %v", method, path, data, err)
		}
	}
	return data
}
