//go:build gatewayonly

package httpx

import (
	"bufio"
	"errors"
	"io"
	"strings"
	"testing"
)

func readReq(raw string) (*Request, string, error) {
	r, err := ReadRequest(bufio.NewReader(strings.NewReader(raw)))
	if err != nil {
		return nil, "", err
	}
	b, err := io.ReadAll(r.Body)
	return r, string(b), err
}

func TestReadRequest(t *testing.T) {
	r, body, err := readReq("POST /ctl/IPConn?x=1 HTTP/1.1\r\nhost: 192.168.1.1:5000\r\nsoapaction: \"urn:x#y\"\r\ncontent-LENGTH: 5\r\nX-Two: a\r\nx-two: b\r\n\r\nhelloNEXT")
	if err != nil {
		t.Fatal(err)
	}
	if r.Method != "POST" || r.URL.Path != "/ctl/IPConn" || r.URL.RawQuery != "x=1" || r.RequestURI != "/ctl/IPConn?x=1" ||
		r.Proto != "HTTP/1.1" || !r.ProtoAtLeast(1, 1) || r.ProtoAtLeast(1, 2) {
		t.Errorf("request line read as %s %s %s", r.Method, r.URL, r.Proto)
	}
	if r.Host != "192.168.1.1:5000" || r.Header["Host"] != nil {
		t.Errorf("Host %q, header %v: want the Host field moved to Host", r.Host, r.Header)
	}
	if r.Header.Get("SOAPACTION") != `"urn:x#y"` || r.Header["Soapaction"] == nil || strings.Join(r.Header.Values("x-two"), ",") != "a,b" {
		t.Errorf("header %v: want canonical keys, values in order", r.Header)
	}
	if body != "hello" || r.ContentLength != 5 || r.Close {
		t.Errorf("body %q (length %d, close %v), want the 5 bytes the Content-Length says", body, r.ContentLength, r.Close)
	}

	// Absolute form: the URL's host is the request's.
	r, _, err = readReq("GET http://h:1/d.xml HTTP/1.1\r\nHost: other\r\n\r\n")
	if err != nil || r.Host != "h:1" || r.URL.Path != "/d.xml" {
		t.Errorf("absolute form: %v %v", r, err)
	}
	// HTTP/1.0 closes unless kept alive; Connection: close closes.
	if r, _, _ := readReq("GET / HTTP/1.0\r\n\r\n"); r == nil || !r.Close || r.Host != "" || r.Body != NoBody {
		t.Errorf("HTTP/1.0 without Host: %+v", r)
	}
	if r, _, _ := readReq("GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, Close\r\n\r\n"); r == nil || !r.Close {
		t.Errorf("Connection: close not seen")
	}
}

func TestReadRequestChunked(t *testing.T) {
	r, body, err := readReq("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: Chunked\r\n\r\n5;ext=1\r\nhello\r\nA\r\n, world!!!\r\n0\r\nTrailer: x\r\n\r\n")
	if err != nil {
		t.Fatal(err)
	}
	if body != "hello, world!!!" || r.ContentLength != -1 || len(r.TransferEncoding) != 1 || r.Header["Transfer-Encoding"] != nil {
		t.Errorf("chunked body %q (length %d, %v)", body, r.ContentLength, r.TransferEncoding)
	}
	for name, chunks := range map[string]string{
		"size not hex":        "zz\r\n",
		"size empty":          "\r\nhello\r\n0\r\n\r\n",
		"size huge":           "1000000000000000\r\n",
		"no CRLF after data":  "5\r\nhelloXX0\r\n\r\n",
		"cut in the data":     "5\r\nhel",
		"cut before the end":  "5\r\nhello\r\n",
		"cut in the trailer":  "0\r\nTrailer: x\r\n",
		"size line endless":   strings.Repeat("0", 5000) + "1\r\n",
		"trailer lines many":  "0\r\n" + strings.Repeat("T: x\r\n", 100) + "\r\n",
		"negative size":       "-5\r\nhello\r\n0\r\n\r\n",
		"space inside size":   "5 5\r\nhello\r\n0\r\n\r\n",
		"size with 0x prefix": "0x5\r\nhello\r\n0\r\n\r\n",
	} {
		_, _, err := readReq("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks)
		if err == nil {
			t.Errorf("%s: read without an error", name)
		}
	}
}

func TestReadRequestRefuses(t *testing.T) {
	for name, raw := range map[string]string{
		"empty":                       "",
		"no version":                  "GET /\r\n\r\n",
		"HTTP/1.1.1":                  "GET / HTTP/1.1.1\r\nHost: h\r\n\r\n",
		"HTTP/11":                     "GET / HTTP/11\r\nHost: h\r\n\r\n",
		"lower-case http":             "GET / http/1.1\r\nHost: h\r\n\r\n",
		"method not a token":          "G(T / HTTP/1.1\r\nHost: h\r\n\r\n",
		"target not a path":           "GET x HTTP/1.1\r\nHost: h\r\n\r\n",
		"two Hosts":                   "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
		"a space in a field name":     "GET / HTTP/1.1\r\nHost: h\r\nX Bad: 1\r\n\r\n",
		"a space before the colon":    "GET / HTTP/1.1\r\nHost: h\r\nX-Bad : 1\r\n\r\n",
		"a field without a colon":     "GET / HTTP/1.1\r\nHost: h\r\nX-Bad\r\n\r\n",
		"header cut":                  "GET / HTTP/1.1\r\nHost: h\r\n",
		"Content-Length with a sign":  "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +5\r\n\r\nhello",
		"Content-Length not a number": "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5x\r\n\r\nhello",
		"Content-Length negative":     "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n",
		"Content-Lengths differ":      "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
		"Content-Length list differs": "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 6\r\n\r\nhello!",
		"Content-Length huge":         "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999\r\n\r\n",
		"both framings (smuggling)":   "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"body shorter than declared":  "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nhello",
		"request line endless":        "GET /" + strings.Repeat("a", maxStartLine) + " HTTP/1.1\r\n\r\n",
	} {
		if _, _, err := readReq(raw); err == nil {
			t.Errorf("%s: read without an error", name)
		}
	}
	// The answer httpserve gives (501) hangs on the error's text.
	if _, _, err := readReq("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"); err == nil || !strings.HasPrefix(err.Error(), "unsupported transfer encoding") {
		t.Errorf("gzip coding: %v, want unsupported transfer encoding", err)
	}
	// Equal Content-Lengths are one.
	if _, body, err := readReq("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello"); err != nil || body != "hello" {
		t.Errorf("two equal Content-Lengths: %q %v", body, err)
	}
}

func TestReadResponse(t *testing.T) {
	read := func(raw, method string) (*Response, string, error) {
		resp, err := ReadResponse(bufio.NewReader(strings.NewReader(raw)), &Request{Method: method})
		if err != nil {
			return nil, "", err
		}
		b, err := io.ReadAll(resp.Body)
		return resp, string(b), err
	}
	resp, body, err := read("HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: 4\r\n\r\n<a/>junk", "GET")
	if err != nil || resp.StatusCode != 200 || resp.Status != "200 OK" || body != "<a/>" || resp.Header.Get("content-type") != "text/xml" || resp.Close {
		t.Errorf("Content-Length: %+v %q %v", resp, body, err)
	}
	resp, body, err = read("HTTP/1.1 500 Internal Server Error\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", "POST")
	if err != nil || resp.StatusCode != 500 || body != "abc" {
		t.Errorf("chunked: %+v %q %v", resp, body, err)
	}
	resp, body, err = read("HTTP/1.0 200 OK\r\n\r\nto the end", "GET")
	if err != nil || body != "to the end" || resp.ContentLength != -1 || !resp.Close {
		t.Errorf("to the connection's end: %+v %q %v", resp, body, err)
	}
	resp, body, err = read("HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n", "HEAD")
	if err != nil || body != "" || resp.ContentLength != 99 {
		t.Errorf("HEAD: %+v %q %v", resp, body, err)
	}
	resp, body, err = read("HTTP/1.1 204 No Content\r\n\r\n", "GET")
	if err != nil || body != "" {
		t.Errorf("204: %+v %q %v", resp, body, err)
	}
	resp, _, err = read("HTTP/1.1 412\r\n\r\n", "SUBSCRIBE")
	if err != nil || resp.StatusCode != 412 {
		t.Errorf("a status without a reason: %+v %v", resp, err)
	}
	for _, raw := range []string{"", "HTTP/1.1\r\n\r\n", "HTTP/1.1 20 OK\r\n\r\n", "HTTP/1.1 abc OK\r\n\r\n", "ICY 200 OK\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab", "HTTP/1.1 200 OK\r\nBad Field: x\r\n\r\n"} {
		if _, _, err := read(raw, "GET"); err == nil {
			t.Errorf("%q read without an error", raw)
		}
	}
}

func TestHeader(t *testing.T) {
	h := Header{}
	h.Add("content-type", "text/xml")
	h.Add("CONTENT-TYPE", "charset")
	h.Set("sid", "uuid:1")
	if h.Get("Content-Type") != "text/xml" || len(h["Content-Type"]) != 2 || h["Sid"][0] != "uuid:1" {
		t.Errorf("header %v: want canonical keys", h)
	}
	c := h.Clone()
	c.Del("SID")
	if h.Get("sid") == "" || c.Get("sid") != "" {
		t.Error("Clone shares its values")
	}
	for in, want := range map[string]string{"content-length": "Content-Length", "x-forwarded-FOR": "X-Forwarded-For", "SOAPACTION": "Soapaction", "bad key": "bad key", "": ""} {
		if got := CanonicalHeaderKey(in); got != want {
			t.Errorf("CanonicalHeaderKey(%q) = %q, want %q", in, got, want)
		}
	}
}

// recorder is a ResponseWriter for the handlers here.
type recorder struct {
	code int
	h    Header
	body strings.Builder
}

func (r *recorder) Header() Header { return r.h }
func (r *recorder) WriteHeader(code int) {
	if r.code == 0 {
		r.code = code
	}
}
func (r *recorder) Write(p []byte) (int, error) { r.WriteHeader(200); return r.body.Write(p) }

func serve(h Handler, method, target string) *recorder {
	w := &recorder{h: Header{}}
	r, _, err := readReq(method + " " + target + " HTTP/1.1\r\nHost: h\r\n\r\n")
	if err != nil {
		panic(err)
	}
	h.ServeHTTP(w, r)
	return w
}

func TestServeMux(t *testing.T) {
	mux := NewServeMux()
	route := func(name string) HandlerFunc {
		return func(w ResponseWriter, r *Request) {
			io.WriteString(w, name+" "+r.PathValue("proto")+r.PathValue("port")+r.PathValue("id")+" "+r.URL.Path)
		}
	}
	mux.HandleFunc("GET /{$}", route("page"))
	mux.Handle("GET /static/", StripPrefix("/static/", route("static")))
	mux.HandleFunc("/api/", route("api"))
	mux.HandleFunc("GET /api/mappings", route("list"))
	mux.HandleFunc("DELETE /api/mappings/{proto}/{port}", route("delete"))
	mux.HandleFunc("DELETE /api/pinholes/{id}", route("pinhole"))
	mux.HandleFunc("/metrics", route("metrics"))
	for _, tc := range []struct{ method, target, want string }{
		{"GET", "/", "page  /"},
		{"HEAD", "/", "page  /"},
		{"GET", "/static/style.css", "static  style.css"},
		{"GET", "/api/mappings", "list  /api/mappings"},
		{"DELETE", "/api/mappings/TCP/8080", "delete TCP8080 /api/mappings/TCP/8080"},
		{"DELETE", "/api/pinholes/7", "pinhole 7 /api/pinholes/7"},
		{"POST", "/api/unknown", "api  /api/unknown"},
		{"DELETE", "/api/mappings/TCP", "api  /api/mappings/TCP"}, // too short for the wildcard route
		{"DELETE", "/api/mappings//80", "api  /api/mappings//80"}, // not clean: redirected below
		{"PUT", "/metrics", "metrics  /metrics"},
	} {
		w := serve(mux, tc.method, tc.target)
		if strings.Contains(tc.target, "//") {
			if w.code != 307 || w.h.Get("Location") != "/api/mappings/80" {
				t.Errorf("%s %s: %d to %q, want a redirect to the clean path", tc.method, tc.target, w.code, w.h.Get("Location"))
			}
			continue
		}
		if w.body.String() != tc.want {
			t.Errorf("%s %s: %q, want %q", tc.method, tc.target, w.body.String(), tc.want)
		}
	}
	if w := serve(mux, "POST", "/"); w.code != 405 || w.h.Get("Allow") != "GET, HEAD" {
		t.Errorf("POST /: %d, Allow %q; want 405, GET and HEAD", w.code, w.h.Get("Allow"))
	}
	if w := serve(mux, "GET", "/nothing"); w.code != 404 {
		t.Errorf("GET /nothing: %d, want 404", w.code)
	}
	if w := serve(mux, "GET", "/static"); w.code != 404 {
		t.Errorf("GET /static (no slash): %d, want 404", w.code)
	}
	for _, bad := range []string{"GET /api/mappings", "api/x", "GET /a/{x...}", "GET /a/{x}y", "example.com/"} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("pattern %q registered", bad)
				}
			}()
			mux.HandleFunc(bad, route("x"))
		}()
	}
}

func TestCookies(t *testing.T) {
	w := &recorder{h: Header{}}
	SetCookie(w, &Cookie{Name: "portfwd_admin", Value: "abc123", Path: "/", HttpOnly: true, SameSite: SameSiteStrictMode})
	SetCookie(w, &Cookie{Name: "bad", Value: "a;b"})
	SetCookie(w, &Cookie{Name: "bad name", Value: "x"})
	if got := w.h.Values("Set-Cookie"); len(got) != 1 || got[0] != "portfwd_admin=abc123; Path=/; HttpOnly; SameSite=Strict" {
		t.Errorf("Set-Cookie %q", got)
	}
	r, _, _ := readReq("GET / HTTP/1.1\r\nHost: h\r\nCookie: a=1; portfwd_admin=\"tok\"\r\nCookie: portfwd_admin=later\r\n\r\n")
	if c, err := r.Cookie("portfwd_admin"); err != nil || c.Value != "tok" {
		t.Errorf("Cookie: %v %v, want the first one's value, unquoted", c, err)
	}
	if _, err := r.Cookie("none"); !errors.Is(err, ErrNoCookie) {
		t.Errorf("a missing cookie: %v", err)
	}
}

func TestMaxBytesReader(t *testing.T) {
	for _, tc := range []struct {
		body   string
		n      int64
		tooBig bool
	}{{"hello", 5, false}, {"hello!", 5, true}, {"", 0, false}, {"x", 0, true}} {
		b, err := io.ReadAll(MaxBytesReader(nil, io.NopCloser(strings.NewReader(tc.body)), tc.n))
		var mbe *MaxBytesError
		if errors.As(err, &mbe) != tc.tooBig || int64(len(b)) > tc.n {
			t.Errorf("%q bounded to %d: read %q, %v", tc.body, tc.n, b, err)
		}
	}
}

func TestDetectContentType(t *testing.T) {
	for in, want := range map[string]string{
		"<!DOCTYPE html><p>hi":                 "text/html; charset=utf-8",
		"  <html>":                             "text/html; charset=utf-8",
		"<?xml version=\"1.0\"?><root/>":       "text/xml; charset=utf-8",
		"hello\n":                              "text/plain; charset=utf-8",
		"h\u00e9llo":                           "text/plain; charset=utf-8",
		"\x00\x01binary":                       "application/octet-stream",
		strings.Repeat("a", 511) + "\u00e9xyz": "text/plain; charset=utf-8", // a character cut at 512
	} {
		if got := DetectContentType([]byte(in)); got != want {
			t.Errorf("DetectContentType(%.20q) = %q, want %q", in, got, want)
		}
	}
}

func TestErrorAndStatusText(t *testing.T) {
	w := &recorder{h: Header{"Content-Length": {"99"}}}
	Error(w, "igd: no", StatusBadRequest)
	if w.code != 400 || w.body.String() != "igd: no\n" || w.h.Get("Content-Length") != "" || w.h.Get("Content-Type") != "text/plain; charset=utf-8" {
		t.Errorf("Error: %d %q %v", w.code, w.body.String(), w.h)
	}
	for code, want := range map[int]string{200: "OK", 412: "Precondition Failed", 431: "Request Header Fields Too Large", 505: "HTTP Version Not Supported", 599: ""} {
		if got := StatusText(code); got != want {
			t.Errorf("StatusText(%d) = %q, want %q", code, got, want)
		}
	}
}
