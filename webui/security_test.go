package webui_test

import (
	"bytes"
	"encoding/json"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/portfwd/portfwd/portmap"
	"github.com/portfwd/portfwd/webui"
	"github.com/portfwd/portfwd/webui/webuitest"
)

// route is one API route with a request that would succeed with the token.
type route struct {
	method, path string
	body         any
}

var routes = []route{
	{"GET", "/api/gateways", nil},
	{"POST", "/api/discover", nil},
	{"GET", "/api/gateway", nil},
	{"PUT", "/api/gateway", map[string]string{"id": "?"}},
	{"GET", "/api/mappings", nil},
	{"POST", "/api/mappings", map[string]any{"protocol": "tcp", "internal_port": 5000}},
	{"PUT", "/api/mappings/tcp/8443", map[string]any{"description": "changed"}},
	{"DELETE", "/api/mappings/udp/51820", nil},
	{"POST", "/api/mappings/delete", map[string]any{"mappings": []map[string]any{{"protocol": "tcp", "external_port": 8443}}}},
	{"PUT", "/api/mappings/tcp/8443/keep", map[string]any{"keep": true}},
	{"POST", "/api/mappings/tcp/8443/check", nil},
	{"GET", "/api/events", nil},
}

// pageCookie loads the page with the token and returns the cookie it sets.
func (e *env) pageCookie() *http.Cookie {
	e.t.Helper()
	res, _ := e.request("GET", "/?token="+testToken, nil, nil)
	for _, c := range res.Cookies() {
		if strings.HasPrefix(c.Name, "portfwd_") {
			return c
		}
	}
	e.t.Fatalf("the page set no cookie: %v", res.Header["Set-Cookie"])
	return nil
}

func TestEveryRouteWantsTheToken(t *testing.T) {
	g := webuitest.New(webuitest.Options{Mappings: someMappings()})
	e := newEnv(t, nil, g)
	cookie := e.pageCookie()
	before := g.Mappings()
	for _, r := range routes {
		for _, tc := range []struct {
			name   string
			header http.Header
		}{
			{"no token", http.Header{}},
			{"wrong token", http.Header{webui.TokenHeader: {testToken + "x"}}},
			{"empty token", http.Header{webui.TokenHeader: {""}}},
			{"token in the query", nil},
		} {
			path := r.path
			if tc.header == nil {
				path += "?token=" + testToken
				tc.header = http.Header{}
			}
			tc.header.Set("Content-Type", "application/json")
			res, body := e.request(r.method, path, r.body, tc.header)
			if res.StatusCode != http.StatusForbidden {
				t.Errorf("%s %s with %s: %d, want 403", r.method, r.path, tc.name, res.StatusCode)
				continue
			}
			var ae apiError
			if err := json.Unmarshal(body, &ae); err != nil || ae.Code != 403 || !strings.Contains(ae.Error, "token") {
				t.Errorf("%s %s with %s: body %s, want an error sentence about the token", r.method, r.path, tc.name, body)
			}
		}
		// The cookie lets a browser read, but not change anything: a
		// cross-site form or fetch would carry the cookie too.
		h := http.Header{"Cookie": {cookie.String()}, "Content-Type": {"application/json"}}
		if r.method == "GET" {
			if r.path == "/api/events" {
				st, res := e.events(h)
				if res.StatusCode != http.StatusOK {
					t.Errorf("events with the cookie: %d", res.StatusCode)
				}
				st.close()
				continue
			}
			if res, body := e.request(r.method, r.path, r.body, h); res.StatusCode != http.StatusOK {
				t.Errorf("%s %s with the cookie: %d %s, want 200", r.method, r.path, res.StatusCode, body)
			}
		} else if res, _ := e.request(r.method, r.path, r.body, h); res.StatusCode != http.StatusForbidden {
			t.Errorf("%s %s with only the cookie: %d, want 403", r.method, r.path, res.StatusCode)
		}
	}
	if n := g.Calls("Add") + g.Calls("Edit") + g.Calls("Delete"); n != 0 {
		t.Errorf("refused requests reached the router %d times", n)
	}
	if len(g.Mappings()) != len(before) {
		t.Errorf("the table changed: %+v", g.Mappings())
	}
}

func TestHostHeader(t *testing.T) {
	e := newEnv(t, nil, webuitest.New(webuitest.Options{}))
	u, _ := url.Parse(e.hs.URL)
	_, port, _ := net.SplitHostPort(u.Host)
	tests := []struct {
		host string
		ok   bool
	}{
		{u.Host, true},
		{"localhost:" + port, true},
		{"LOCALHOST:" + port, true},
		{"evil.example:" + port, false}, // DNS rebinding: evil.example resolves to 127.0.0.1
		{"evil.example", false},
		{"127.0.0.1", false}, // port 80
		{"127.0.0.1:1", false},
		{"[::1]:" + port, false}, // not the address the connection came to
		{"127.0.0.2:" + port, false},
		{"localhost.evil.example:" + port, false},
	}
	for _, tt := range tests {
		for _, path := range []string{"/api/gateways", "/?token=" + testToken, "/static/app.js"} {
			h := withToken()
			h.Set("Host", tt.host)
			res, body := e.request("GET", path, nil, h)
			if ok := res.StatusCode == http.StatusOK; ok != tt.ok {
				t.Errorf("GET %s with Host %q: %d, want ok=%v (%.80s)", path, tt.host, res.StatusCode, tt.ok, body)
			}
			if !tt.ok && res.StatusCode != http.StatusMisdirectedRequest {
				t.Errorf("GET %s with Host %q: %d, want 421", path, tt.host, res.StatusCode)
			}
		}
		h := withToken()
		h.Set("Host", tt.host)
		res, _ := e.request("POST", "/api/mappings", map[string]any{"protocol": "tcp", "internal_port": 5000}, h)
		if (res.StatusCode == http.StatusCreated) != tt.ok {
			t.Errorf("POST with Host %q: %d", tt.host, res.StatusCode)
		}
		e.request("DELETE", "/api/mappings/tcp/5000", nil, withToken())
	}
}

func TestOriginAndFetchSite(t *testing.T) {
	e := newEnv(t, nil, webuitest.New(webuitest.Options{}))
	tests := []struct {
		header, value string
		ok            bool
	}{
		{"Origin", e.hs.URL, true},
		{"Origin", "http://evil.example", false},
		{"Origin", "null", false},
		{"Origin", strings.Replace(e.hs.URL, "http://127.0.0.1:", "http://127.0.0.1:1", 1), false},
		{"Origin", "https://" + strings.TrimPrefix(e.hs.URL, "http://"), false},
		{"Sec-Fetch-Site", "same-origin", true},
		{"Sec-Fetch-Site", "none", true},
		{"Sec-Fetch-Site", "same-site", false}, // another port of 127.0.0.1 is "same-site"
		{"Sec-Fetch-Site", "cross-site", false},
	}
	for _, tt := range tests {
		h := withToken()
		h.Set(tt.header, tt.value)
		res, body := e.request("POST", "/api/mappings", map[string]any{"protocol": "tcp", "internal_port": 6000}, h)
		if (res.StatusCode == http.StatusCreated) != tt.ok {
			t.Errorf("POST with %s: %s → %d %s", tt.header, tt.value, res.StatusCode, body)
		}
		if !tt.ok && res.StatusCode != http.StatusForbidden {
			t.Errorf("POST with %s: %s → %d, want 403", tt.header, tt.value, res.StatusCode)
		}
		e.request("DELETE", "/api/mappings/tcp/6000", nil, withToken())

		res, _ = e.request("GET", "/?token="+testToken, nil, http.Header{tt.header: {tt.value}})
		if (res.StatusCode == http.StatusOK) != tt.ok {
			t.Errorf("page with %s: %s → %d", tt.header, tt.value, res.StatusCode)
		}
	}
}

func TestPageAccess(t *testing.T) {
	e := newEnv(t, nil, webuitest.New(webuitest.Options{}))
	for _, tc := range []struct {
		name, path string
		header     http.Header
		status     int
	}{
		{"no token", "/", nil, http.StatusForbidden},
		{"wrong token", "/?token=guess", nil, http.StatusForbidden},
		{"wrong token with the header", "/?token=guess", withToken(), http.StatusForbidden},
		{"header only", "/", withToken(), http.StatusForbidden}, // a page is a navigation: cookie or URL
		{"token", "/?token=" + testToken, nil, http.StatusOK},
	} {
		res, body := e.request("GET", tc.path, nil, tc.header)
		if res.StatusCode != tc.status {
			t.Errorf("%s: %d, want %d", tc.name, res.StatusCode, tc.status)
		}
		if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
			t.Errorf("%s: Content-Type %q", tc.name, ct)
		}
		if res.StatusCode == http.StatusForbidden && !strings.Contains(string(body), "portfwd ui") {
			t.Errorf("%s: the refusal does not say what to do:\n%s", tc.name, body)
		}
		if res.StatusCode == http.StatusForbidden && strings.Contains(string(body), testToken) {
			t.Errorf("%s: the refusal leaks the token", tc.name)
		}
		for _, h := range []string{"Content-Security-Policy", "X-Frame-Options", "X-Content-Type-Options", "Referrer-Policy"} {
			if res.Header.Get(h) == "" {
				t.Errorf("%s: no %s header", tc.name, h)
			}
		}
	}

	res, _ := e.request("GET", "/?token="+testToken, nil, nil)
	var c *http.Cookie
	for _, x := range res.Cookies() {
		c = x
	}
	if c == nil || c.Value != testToken || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/" {
		t.Fatalf("cookie %+v, want the token, HttpOnly, SameSite=Strict, Path=/", c)
	}
	if res.Header.Get("Cache-Control") != "no-store" || res.Header.Get("Referrer-Policy") != "no-referrer" {
		t.Errorf("a page holding the token must not be cached or leak as referrer: %v", res.Header)
	}
	if res, _ := e.request("GET", "/", nil, http.Header{"Cookie": {c.String()}}); res.StatusCode != http.StatusOK {
		t.Errorf("the page with the cookie: %d", res.StatusCode)
	}
	bad := *c
	bad.Value = "guess"
	if res, _ := e.request("GET", "/", nil, http.Header{"Cookie": {bad.String()}}); res.StatusCode != http.StatusForbidden {
		t.Errorf("the page with a wrong cookie: %d", res.StatusCode)
	}
	// Static files need no token, and are not a way round the template.
	if res, _ := e.request("GET", "/static/app.js", nil, nil); res.StatusCode != http.StatusOK ||
		!strings.Contains(res.Header.Get("Content-Type"), "javascript") {
		t.Errorf("app.js: %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
	for _, p := range []string{"/static/", "/static/index.html", "/nothing"} {
		if res, body := e.request("GET", p, nil, nil); res.StatusCode == http.StatusOK || bytes.Contains(body, []byte("{{")) {
			t.Errorf("GET %s: %d", p, res.StatusCode)
		}
	}
}

// TestMarkupIsEscaped: text from the router (descriptions, names) can hold
// markup. It must reach the page as text, and the JSON must not carry it
// raw either.
func TestMarkupIsEscaped(t *testing.T) {
	const script = `<script>alert(1)</script>`
	const img = `"><img src=x onerror=alert(2)>`
	g := webuitest.New(webuitest.Options{
		Info: portmap.Info{Method: portmap.UPnP, FriendlyName: img},
		Mappings: []portmap.Mapping{{Protocol: portmap.TCP, ExternalPort: 80, InternalClient: "192.168.1.20", InternalPort: 80,
			Enabled: true, Description: script}},
	})
	e := newEnv(t, nil, g)

	raw := e.call("GET", "/api/mappings", nil, http.StatusOK, nil) // also caches the table for the page
	if bytes.Contains(raw, []byte("<script>")) || !bytes.Contains(raw, []byte(`\u003cscript\u003ealert(1)\u003c/script\u003e`)) {
		t.Errorf("the JSON carries markup raw: %s", raw)
	}
	var tb table
	json.Unmarshal(raw, &tb)
	if tb.Mappings[0].Description != script {
		t.Errorf("the description decodes to %q, want it unchanged", tb.Mappings[0].Description)
	}
	raw = e.call("GET", "/api/gateways", nil, http.StatusOK, nil)
	if bytes.Contains(raw, []byte("<img")) {
		t.Errorf("the gateways JSON carries markup raw: %s", raw)
	}

	_, page := e.request("GET", "/?token="+testToken, nil, nil)
	if bytes.Contains(page, []byte(script)) || bytes.Contains(page, []byte("<img")) {
		t.Errorf("the page carries markup from the router raw:\n%s", page)
	}
	if !bytes.Contains(page, []byte("&lt;script&gt;alert(1)&lt;/script&gt;")) {
		t.Errorf("the description is not in the page as text:\n%s", page)
	}
	if !bytes.Contains(page, []byte("&lt;img src=x onerror=alert(2)&gt;")) {
		t.Errorf("the router's name is not in the page as text:\n%s", page)
	}

	st, _ := e.events(withToken())
	for {
		ev := <-st.events
		if ev.name == "mappings" {
			if bytes.Contains(ev.data, []byte("<script>")) {
				t.Errorf("the event carries markup raw: %s", ev.data)
			}
			break
		}
	}
}

func TestURL(t *testing.T) {
	s := &webui.Server{Token: "abc"}
	for addr, want := range map[string]string{
		"127.0.0.1:8080":    "http://127.0.0.1:8080/?token=abc",
		"[::1]:8080":        "http://[::1]:8080/?token=abc",
		"0.0.0.0:8080":      "http://127.0.0.1:8080/?token=abc",
		"[::]:8080":         "http://127.0.0.1:8080/?token=abc",
		"192.168.1.10:9000": "http://192.168.1.10:9000/?token=abc",
	} {
		ap, err := net.ResolveTCPAddr("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		if got := s.URL(ap); got != want {
			t.Errorf("URL(%s) = %s, want %s", addr, got, want)
		}
	}
}

func TestNewToken(t *testing.T) {
	a, b := webui.NewToken(), webui.NewToken()
	if a == b || len(a) < 22 {
		t.Errorf("tokens %q and %q: want long random ones", a, b)
	}
	s := &webui.Server{}
	s.Close()
	if len(s.Token) < 22 {
		t.Errorf("a server without a token made %q", s.Token)
	}
}
