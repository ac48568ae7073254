package igd

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	nethttp "net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	http "github.com/portfwd/portfwd/internal/httpx"
	"github.com/portfwd/portfwd/internal/httpx/httpxtest"

	"github.com/portfwd/portfwd/upnp"
)

// post sends body to the WANIPConnection control URL of srv with the
// given SOAPAction, and returns the response and its body.
func post(t testing.TB, srv *httpxtest.Server, soapAction string, body io.Reader, edit func(*nethttp.Request)) (*nethttp.Response, []byte) {
	t.Helper()
	req, err := nethttp.NewRequest(http.MethodPost, srv.URL+WANIPConnectionControlPath, body)
	if err != nil {
		t.Fatal(err)
	}
	if soapAction != "" {
		req.Header.Set("SOAPAction", soapAction)
	}
	req.Header.Set("Content-Type", `text/xml; charset="utf-8"`)
	if edit != nil {
		edit(req)
	}
	resp, err := nethttp.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, data
}

func envelope(action string, args ...upnp.Arg) []byte {
	return upnp.AppendEnvelope(nil, URNWANIPConnection2, action, args)
}

// onlyReader hides the length of a reader, so that the request is sent
// chunked, without a Content-Length.
type onlyReader struct{ io.Reader }

func TestHostileBodies(t *testing.T) {
	f := newFake()
	srv, _ := newTestServer(t, 2, f, nil)
	action := `"` + URNWANIPConnection2 + `#GetExternalIPAddress"`
	huge := append(envelope("GetExternalIPAddress"), bytes.Repeat([]byte(" "), DefaultMaxSOAPBody)...)
	for _, tc := range []struct {
		name       string
		soapAction string
		body       io.Reader
		status     int
		code       int // UPnP code when status is 500
	}{
		{"oversized with length", action, bytes.NewReader(huge), http.StatusRequestEntityTooLarge, 0},
		{"oversized chunked", action, onlyReader{bytes.NewReader(huge)}, http.StatusRequestEntityTooLarge, 0},
		{"endless chunked", action, onlyReader{io.LimitReader(zeroReader{}, 10<<20)}, http.StatusRequestEntityTooLarge, 0},
		{"not XML", action, strings.NewReader("GET / HTTP/1.1\r\n"), http.StatusBadRequest, 0},
		{"truncated XML", action, bytes.NewReader(envelope("GetExternalIPAddress")[:60]), http.StatusBadRequest, 0},
		{"XML without a Body", action, strings.NewReader(`<?xml version="1.0"?><Envelope><Header/></Envelope>`), http.StatusBadRequest, 0},
		{"DTD with entities", action, strings.NewReader(`<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]>` +
			`<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><u:GetExternalIPAddress/></s:Body></s:Envelope>`), http.StatusBadRequest, 0},
		{"a fault instead of a call", action, bytes.NewReader(upnp.AppendFault(nil, 718, "x")), http.StatusBadRequest, 0},
		{"no SOAPAction", "", bytes.NewReader(envelope("GetExternalIPAddress")), http.StatusInternalServerError, CodeInvalidAction},
		{"SOAPAction without action", `"` + URNWANIPConnection2 + `"`, bytes.NewReader(envelope("GetExternalIPAddress")), http.StatusInternalServerError, CodeInvalidAction},
		{"header and body disagree", `"` + URNWANIPConnection2 + `#AddPortMapping"`, bytes.NewReader(envelope("GetExternalIPAddress")), http.StatusInternalServerError, CodeInvalidAction},
		{"empty body", action, strings.NewReader(""), http.StatusBadRequest, 0},
	} {
		resp, body := post(t, srv, tc.soapAction, tc.body, nil)
		if resp.StatusCode != tc.status {
			t.Errorf("%s: HTTP %s, want %d", tc.name, resp.Status, tc.status)
			continue
		}
		if tc.code != 0 {
			if _, _, err := upnp.ParseEnvelope(body); upnp.ErrorCode(err) != tc.code {
				t.Errorf("%s: fault %v, want %d", tc.name, err, tc.code)
			}
		}
	}
	if called := f.calls(); len(called) != 0 {
		t.Errorf("the Service was called for hostile requests: %v", called)
	}
	// And the server still works.
	if _, err := soapCall(t, srv, WANIPConnectionControlPath, URNWANIPConnection2, "GetExternalIPAddress"); err != nil {
		t.Errorf("after hostile requests: %v", err)
	}
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// TestEscapingRoundTrip sends descriptions full of XML syntax and reads
// them back through every action that returns them.
func TestEscapingRoundTrip(t *testing.T) {
	ctx := context.Background()
	f := newFake()
	srv, _ := newTestServer(t, 2, f, nil)
	c, _ := discover(t, srv)
	const nasty = `<script>alert("x&y")</script> ' ]]> &amp; <!--`
	m := PortMapping{ExternalPort: 9000, Protocol: TCP, InternalPort: 9000, InternalClient: "127.0.0.1", Enabled: true,
		Description: nasty, LeaseDuration: time.Hour}
	if err := c.AddPortMapping(ctx, m); err != nil {
		t.Fatal(err)
	}
	if got := f.mappings()[0].Description; got != nasty {
		t.Fatalf("Service got description %q, want %q", got, nasty)
	}
	if got, err := c.GetSpecificPortMappingEntry(ctx, "", 9000, TCP); err != nil || got.Description != nasty {
		t.Errorf("GetSpecificPortMappingEntry: %q, %v", got.Description, err)
	}
	if got, err := c.GetGenericPortMappingEntry(ctx, 0); err != nil || got.Description != nasty {
		t.Errorf("GetGenericPortMappingEntry: %q, %v", got.Description, err)
	}
	if list, err := c.GetListOfPortMappings(ctx, 0, 65535, TCP, true, 0); err != nil || len(list) != 1 || list[0].Description != nasty {
		t.Errorf("GetListOfPortMappings: %+v, %v", list, err)
	}
	for _, action := range []string{"GetGenericPortMappingEntry", "GetListOfPortMappings"} {
		var args []upnp.Arg
		if action == "GetGenericPortMappingEntry" {
			args = []upnp.Arg{{Name: "NewPortMappingIndex", Value: "0"}}
		} else {
			for _, kv := range [][2]string{{"NewStartPort", "1"}, {"NewEndPort", "65535"}, {"NewProtocol", "TCP"}, {"NewManage", "1"}, {"NewNumberOfPorts", "0"}} {
				args = append(args, upnp.Arg{Name: kv[0], Value: kv[1]})
			}
		}
		resp, body := post(t, srv, `"`+URNWANIPConnection2+`#`+action+`"`, bytes.NewReader(envelope(action, args...)), nil)
		if resp.StatusCode != 200 || bytes.Contains(body, []byte("<script")) || bytes.Contains(body, []byte("<!--")) {
			t.Errorf("%s: raw answer carries the markup unescaped: %s", action, body)
		}
	}

	// A description the Service holds from elsewhere, with characters
	// XML cannot carry, still makes a well-formed answer.
	f.mu.Lock()
	f.table[0].Description = "bad\x00char\x1b\uFFFE"
	f.mu.Unlock()
	if got, err := c.GetGenericPortMappingEntry(ctx, 0); err != nil || strings.ContainsAny(got.Description, "\x00\x1b") {
		t.Errorf("GetGenericPortMappingEntry of an unprintable description: %q, %v", got.Description, err)
	}
}

func TestCleanDescription(t *testing.T) {
	for _, tc := range []struct {
		in   string
		max  int
		want string
	}{
		{"plain", 256, "plain"},
		{"  padded\t", 256, "padded"},
		{"line1\nline2\r\ttab", 256, "line1 line2  tab"},
		{"a\x01b\x1fc\x7fd", 256, "abcd"},
		{"c1\u0085\u009fend", 256, "c1end"},
		{"\u202eevil\u202c \u2066iso\u2069 \u200fmark", 256, "evil iso mark"},
		{"bad \xff utf8", 256, "bad \uFFFD utf8"},
		{"ééé", 5, "éé"},
		{"日本語", 7, "日本"},
		{"abc   def", 4, "abc"},
		{"", 256, ""},
	} {
		if got := cleanDescription(tc.in, tc.max); got != tc.want {
			t.Errorf("cleanDescription(%q, %d) = %q, want %q", tc.in, tc.max, got, tc.want)
		}
	}
}

// TestDescriptionReachesServiceClean checks the cleaning and the length
// cap on the way from a control point to the Service.
func TestDescriptionReachesServiceClean(t *testing.T) {
	f := newFake()
	srv, _ := newTestServer(t, 2, f, func(c *ServerConfig) { c.MaxDescription = 32 })
	ctx := context.Background()
	c, _ := discover(t, srv)
	m := PortMapping{ExternalPort: 9000, Protocol: UDP, InternalPort: 9000, InternalClient: "127.0.0.1", Enabled: true,
		Description: "line1\nline2\u0085\u202eRTL\x7f " + strings.Repeat("x", 100)}
	if err := c.AddPortMapping(ctx, m); err != nil {
		t.Fatal(err)
	}
	got, _ := f.lastCall("AddPortMapping")
	if want := "line1 line2RTL " + strings.Repeat("x", 17); got.mapping.Description != want {
		t.Errorf("Service got description %q, want %q", got.mapping.Description, want)
	}
	if s, _ := NewServer(ServerConfig{Service: f, UUID: testUUID}); s.maxDescription != DefaultMaxDescription {
		t.Errorf("default description cap %d", s.maxDescription)
	}
}

// TestHostHeader checks the DNS rebinding defence.
func TestHostHeader(t *testing.T) {
	srv, _ := newTestServer(t, 2, newFake(), nil)
	port := srv.Listener.Addr().(*net.TCPAddr).Port
	for host, want := range map[string]int{
		"127.0.0.1:" + strconv.Itoa(port):    200,
		"127.0.0.1":                          200,
		"evil.example":                       400,
		"evil.example:" + strconv.Itoa(port): 400,
		"localhost:" + strconv.Itoa(port):    400,
		"127.0.0.2:" + strconv.Itoa(port):    400,
		"127.0.0.1:" + strconv.Itoa(port+1):  400,
		"[::1]:" + strconv.Itoa(port):        400,
	} {
		for _, path := range []string{DescriptionPath, WANIPConnectionSCPDPath} {
			req, _ := nethttp.NewRequest(http.MethodGet, srv.URL+path, nil)
			req.Host = host
			resp, err := nethttp.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != want {
				t.Errorf("GET %s with Host %q: %s, want %d", path, host, resp.Status, want)
			}
		}
		resp, _ := post(t, srv, `"`+URNWANIPConnection2+`#GetExternalIPAddress"`, bytes.NewReader(envelope("GetExternalIPAddress")),
			func(r *nethttp.Request) { r.Host = host })
		if resp.StatusCode != want {
			t.Errorf("POST with Host %q: %s, want %d", host, resp.Status, want)
		}
	}

	// An HTTP/1.0 request may have no Host at all.
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(conn, "GET "+DescriptionPath+" HTTP/1.0\r\n\r\n")
	resp, err := nethttp.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("HTTP/1.0 without Host: %s", resp.Status)
	}

	// AllowedHosts replaces the rule.
	var asked []string
	srv2, _ := newTestServer(t, 2, newFake(), func(c *ServerConfig) {
		c.AllowedHosts = func(h string) bool { asked = append(asked, h); return h == "router.lan:5000" }
	})
	for host, want := range map[string]int{"router.lan:5000": 200, srv2.Listener.Addr().String(): 400} {
		req, _ := nethttp.NewRequest(http.MethodGet, srv2.URL+DescriptionPath, nil)
		req.Host = host
		resp, err := nethttp.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("AllowedHosts: Host %q: %s, want %d", host, resp.Status, want)
		}
	}
	if len(asked) != 2 {
		t.Errorf("AllowedHosts asked %v", asked)
	}
}

// TestPanicRecovered checks that a panicking Service costs one 501, not
// the server.
func TestPanicRecovered(t *testing.T) {
	f := newFake()
	var codes []int
	srv, _ := newTestServer(t, 2, f, func(c *ServerConfig) { c.OnRequest = func(_ string, code int) { codes = append(codes, code) } })
	f.mu.Lock()
	f.panicOn = "AddPortMapping"
	f.mu.Unlock()
	if _, err := soapCall(t, srv, WANIPConnectionControlPath, URNWANIPConnection2, "AddPortMapping", addArgs()...); upnp.ErrorCode(err) != CodeActionFailed {
		t.Errorf("AddPortMapping with a panicking Service: %v, want 501", err)
	}
	f.mu.Lock()
	f.panicOn = "ExternalIPAddress"
	f.mu.Unlock()
	if _, err := soapCall(t, srv, WANIPConnectionControlPath, controlURN, "QueryStateVariable", "varName", "ExternalIPAddress"); upnp.ErrorCode(err) != CodeActionFailed {
		t.Errorf("QueryStateVariable with a panicking Service: %v, want 501", err)
	}
	f.mu.Lock()
	f.panicOn = ""
	f.mu.Unlock()
	if out, err := soapCall(t, srv, WANIPConnectionControlPath, URNWANIPConnection2, "GetExternalIPAddress"); err != nil || out.Value("NewExternalIPAddress") != "203.0.113.7" {
		t.Errorf("after the panics: %+v, %v", out, err)
	}
	if want := []int{501, 501, 0}; len(codes) != 3 || codes[0] != want[0] || codes[1] != want[1] || codes[2] != want[2] {
		t.Errorf("OnRequest codes %v, want %v", codes, want)
	}
}

// TestNoInternalsLeak checks that an error from the Service that is not a
// UPnP error reaches the control point as a bare 501.
func TestNoInternalsLeak(t *testing.T) {
	f := newFake()
	srv, _ := newTestServer(t, 2, f, nil)
	f.script("AddPortMapping", &leakyError{})
	var args []upnp.Arg
	a := addArgs()
	for i := 0; i < len(a); i += 2 {
		args = append(args, upnp.Arg{Name: a[i], Value: a[i+1]})
	}
	resp, body := post(t, srv, `"`+URNWANIPConnection2+`#AddPortMapping"`, bytes.NewReader(envelope("AddPortMapping", args...)), nil)
	if resp.StatusCode != 500 || bytes.Contains(body, []byte("secret")) || bytes.Contains(body, []byte("/etc/")) {
		t.Errorf("answer to a failing Service: %s %s", resp.Status, body)
	}
	if _, _, err := upnp.ParseEnvelope(body); upnp.ErrorCode(err) != CodeActionFailed {
		t.Errorf("fault %v, want 501", err)
	}
}

type leakyError struct{}

func (*leakyError) Error() string { return "open /etc/portfwd/secret-key: permission denied" }

// TestMethodsAndPaths checks the answers to each method on each kind of
// path.
func TestMethodsAndPaths(t *testing.T) {
	subscribed := 0
	events := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		subscribed++
		w.Header().Set("SID", "uuid:sub-1")
		w.WriteHeader(http.StatusOK)
	})
	for _, tc := range []struct {
		version      int
		events       http.Handler
		method, path string
		status       int
		allow        string
	}{
		{2, nil, http.MethodGet, DescriptionPath, 200, ""},
		{2, nil, http.MethodHead, DescriptionPath, 200, ""},
		{2, nil, http.MethodPut, DescriptionPath, 405, "GET, HEAD"},
		{2, nil, http.MethodPost, DescriptionPath, 405, "GET, HEAD"},
		{2, nil, http.MethodDelete, WANIPConnectionSCPDPath, 405, "GET, HEAD"},
		{2, nil, http.MethodGet, WANIPConnectionControlPath, 405, "POST"},
		{2, nil, "M-POST", WANIPConnectionControlPath, 405, "POST"},
		{2, nil, http.MethodGet, "/", 404, ""},
		{2, nil, http.MethodGet, "/rootDesc.xml/../etc/passwd", 404, ""},
		{2, nil, http.MethodGet, "/ctl", 404, ""},
		{2, nil, "SUBSCRIBE", WANIPConnectionEventPath, 503, ""},
		{2, nil, "UNSUBSCRIBE", WANCommonInterfaceConfigEventPath, 503, ""},
		{2, nil, http.MethodGet, WANIPConnectionEventPath, 405, "SUBSCRIBE, UNSUBSCRIBE"},
		{2, nil, "SUBSCRIBE", Layer3ForwardingEventPath, 404, ""},
		{1, nil, "SUBSCRIBE", Layer3ForwardingEventPath, 503, ""},
		{1, nil, http.MethodGet, Layer3ForwardingSCPDPath, 200, ""},
		{2, events, "SUBSCRIBE", WANIPConnectionEventPath, 200, ""},
	} {
		srv, _ := newTestServer(t, tc.version, newFake(), func(c *ServerConfig) { c.Events = tc.events })
		req, _ := nethttp.NewRequest(tc.method, srv.URL+tc.path, nil)
		resp, err := nethttp.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status || resp.Header.Get("Allow") != tc.allow {
			t.Errorf("v%d %s %s: %s, Allow %q; want %d, Allow %q", tc.version, tc.method, tc.path, resp.Status, resp.Header.Get("Allow"), tc.status, tc.allow)
		}
		if tc.status == 503 && !strings.Contains(string(body), "event") {
			t.Errorf("%s %s: 503 without an explanation: %q", tc.method, tc.path, body)
		}
		if tc.method == http.MethodHead && (len(body) != 0 || resp.ContentLength <= 0) {
			t.Errorf("HEAD: body %d bytes, Content-Length %d", len(body), resp.ContentLength)
		}
	}
	if subscribed != 1 {
		t.Errorf("Events handler called %d times, want 1", subscribed)
	}
}

// TestResponseHeaders reads raw responses, since net/http's client hides
// header spelling, to check what UDA asks for.
func TestResponseHeaders(t *testing.T) {
	for _, version := range []int{1, 2} {
		srv, _ := newTestServer(t, version, newFake(), nil)
		body := upnp.AppendEnvelope(nil, URNWANIPConnection1, "GetExternalIPAddress", nil)
		raw := "POST " + WANIPConnectionControlPath + " HTTP/1.1\r\nHost: " + srv.Listener.Addr().String() + "\r\n" +
			"SOAPAction: \"" + URNWANIPConnection1 + "#GetExternalIPAddress\"\r\nContent-Type: text/xml\r\n" +
			"Content-Length: " + strconv.Itoa(len(body)) + "\r\nConnection: close\r\n\r\n" + string(body)
		head := rawHead(t, srv, raw)
		for _, want := range []string{
			"HTTP/1.1 200 OK\r\n",
			"\r\nEXT: \r\n",
			"\r\nContent-Type: text/xml; charset=\"utf-8\"\r\n",
			"\r\nContent-Length: ",
			"\r\nServer: ",
			map[int]string{1: " UPnP/1.0 ", 2: " UPnP/1.1 "}[version],
		} {
			if !strings.Contains(head, want) {
				t.Errorf("v%d: control response header lacks %q:\n%s", version, want, head)
			}
		}
		if strings.Contains(head, "chunked") {
			t.Errorf("v%d: chunked control response", version)
		}
		head = rawHead(t, srv, "GET "+DescriptionPath+" HTTP/1.1\r\nHost: "+srv.Listener.Addr().String()+"\r\nConnection: close\r\n\r\n")
		for _, want := range []string{"\r\nContent-Type: text/xml; charset=\"utf-8\"\r\n", "\r\nContent-Length: ", "\r\nServer: "} {
			if !strings.Contains(head, want) {
				t.Errorf("v%d: description response header lacks %q:\n%s", version, want, head)
			}
		}
	}
	srv, _ := newTestServer(t, 2, newFake(), func(c *ServerConfig) { c.ServerHeader = "Linux/6.1 UPnP/1.1 portfwd/9.9" })
	resp, err := nethttp.Get(srv.URL + DescriptionPath)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Get("Server"); got != "Linux/6.1 UPnP/1.1 portfwd/9.9" {
		t.Errorf("Server header %q", got)
	}
}

// rawHead sends a raw request and returns the response's header block.
func rawHead(t *testing.T, srv *httpxtest.Server, raw string) string {
	t.Helper()
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(conn, raw); err != nil {
		t.Fatal(err)
	}
	all, err := io.ReadAll(conn)
	if err != nil {
		t.Fatal(err)
	}
	head, _, ok := strings.Cut(string(all), "\r\n\r\n")
	if !ok {
		t.Fatalf("no complete response header in %q", all)
	}
	return head + "\r\n"
}

// FuzzServeSOAP feeds arbitrary SOAPAction headers and bodies to the
// control URL of both versions. The server must never panic (a panic in
// the handler itself is not recovered; only the Service's are) and must
// always answer well-formed HTTP: 200 with an action response, 500 with a
// UPnP fault, or 400 or 413 for what is not SOAP.
func FuzzServeSOAP(f *testing.F) {
	f.Add(uint8(2), `"`+URNWANIPConnection2+`#AddPortMapping"`, string(envelope("AddPortMapping",
		upnp.Arg{Name: "NewRemoteHost"}, upnp.Arg{Name: "NewExternalPort", Value: "8080"}, upnp.Arg{Name: "NewProtocol", Value: "TCP"},
		upnp.Arg{Name: "NewInternalPort", Value: "80"}, upnp.Arg{Name: "NewInternalClient", Value: "192.0.2.1"},
		upnp.Arg{Name: "NewEnabled", Value: "1"}, upnp.Arg{Name: "NewPortMappingDescription", Value: "<&>"},
		upnp.Arg{Name: "NewLeaseDuration", Value: "0"})))
	f.Add(uint8(1), `"`+URNWANIPConnection2+`#GetListOfPortMappings"`, string(envelope("GetListOfPortMappings",
		upnp.Arg{Name: "NewStartPort", Value: "0"}, upnp.Arg{Name: "NewEndPort", Value: "65535"}, upnp.Arg{Name: "NewProtocol", Value: "TCP"},
		upnp.Arg{Name: "NewManage", Value: "1"}, upnp.Arg{Name: "NewNumberOfPorts", Value: "0"})))
	f.Add(uint8(2), controlURN+"#QueryStateVariable", `<s:Envelope><s:Body><u:QueryStateVariable><u:varName>ConnectionStatus</u:varName></u:QueryStateVariable></s:Body></s:Envelope>`)
	f.Add(uint8(2), `"#"`, `<`)
	f.Add(uint8(1), `"`+URNWANIPConnection1+`#GetGenericPortMappingEntry"`, `<?xml version="1.0" encoding="ISO-8859-1"?><Envelope><Body><GetGenericPortMappingEntry><NewPortMappingIndex>00000000000000000001</NewPortMappingIndex></GetGenericPortMappingEntry></Body></Envelope>`)
	// Requests miniupnpc sent to miniupnpd, captured in the natlab.
	if files, _ := filepath.Glob("testdata/natlab/soap_*_request.txt"); len(files) > 0 {
		for _, file := range files {
			data, err := os.ReadFile(file)
			if err != nil {
				f.Fatal(err)
			}
			req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(data)))
			if err != nil {
				f.Fatalf("%s: %v", file, err)
			}
			body, _ := io.ReadAll(req.Body)
			f.Add(uint8(2), req.Header.Get("SOAPAction"), string(body))
		}
	}
	servers := map[int]*Server{}
	for _, v := range []int{1, 2} {
		fake := newFake()
		fake.table = []PortMapping{{ExternalPort: 8080, Protocol: TCP, InternalPort: 80, InternalClient: "192.0.2.1", Enabled: true, Description: "seed"}}
		s, err := NewServer(ServerConfig{Service: fake, Version: v, UUID: testUUID, Logger: slogDiscard()})
		if err != nil {
			f.Fatal(err)
		}
		servers[v] = s
	}
	f.Fuzz(func(t *testing.T, version uint8, soapAction, body string) {
		s := servers[1+int(version%2)]
		req := httpxtest.NewRequest(http.MethodPost, WANIPConnectionControlPath, strings.NewReader(body))
		req.Host = "192.0.2.10:5000"
		req.Header.Set("SOAPAction", soapAction)
		w := httpxtest.NewRecorder()
		s.ServeHTTP(w, req)
		resp := struct {
			StatusCode int
			Header     http.Header
		}{w.Code, w.Header()}
		out := w.Body.Bytes()
		switch resp.StatusCode {
		case http.StatusOK:
			name, _, err := upnp.ParseEnvelope(out)
			if err != nil || !strings.HasSuffix(name, "Response") {
				t.Fatalf("200 with a body that is not an action response (%v): %q", err, out)
			}
		case http.StatusInternalServerError:
			_, _, err := upnp.ParseEnvelope(out)
			if code := upnp.ErrorCode(err); code < 400 || code >= 900 {
				t.Fatalf("500 without a UPnP fault (%v): %q", err, out)
			}
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
		default:
			t.Fatalf("unexpected status %d", resp.StatusCode)
		}
		if cl := resp.Header.Get("Content-Length"); resp.StatusCode != 400 && resp.StatusCode != 413 && cl != strconv.Itoa(len(out)) {
			t.Fatalf("Content-Length %q for a %d-byte body", cl, len(out))
		}
	})
}
