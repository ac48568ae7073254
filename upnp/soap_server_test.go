package upnp

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	nethttp "net/http"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	http "github.com/portfwd/portfwd/internal/httpx"
	"github.com/portfwd/portfwd/internal/httpx/httpxtest"
)

// readResult is what a handler calling ReadRequest saw.
type readResult struct {
	serviceType, action string
	args                Args
	err                 error
}

// readRequestServer runs ReadRequest in a real net/http server, so header
// names arrive exactly as net/http presents them, and reports each result.
func readRequestServer(t *testing.T, maxBody int64) (*httpxtest.Server, chan readResult) {
	t.Helper()
	results := make(chan readResult, 16)
	srv := httpxtest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var res readResult
		res.serviceType, res.action, res.args, res.err = ReadRequest(r, maxBody)
		results <- res
		if res.err != nil {
			http.Error(w, res.err.Error(), http.StatusBadRequest)
			return
		}
		WriteResponse(w, res.serviceType, res.action, nil)
	}))
	t.Cleanup(srv.Close)
	return srv, results
}

// sendRaw writes a request verbatim and returns the response status.
func sendRaw(t *testing.T, srv *httpxtest.Server, raw []byte) int {
	t.Helper()
	c, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(raw); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestReadRequestCapture(t *testing.T) {
	// The AddPortMapping request miniupnpc sent in the natlab, replayed
	// byte for byte.
	raw := readShared(t, filepath.Join(capturesDir, "soap_AddPortMapping_request.txt"))
	srv, results := readRequestServer(t, 0)
	if status := sendRaw(t, srv, raw); status != http.StatusOK {
		t.Errorf("status %d", status)
	}
	res := <-results
	if res.err != nil {
		t.Fatal(res.err)
	}
	want := Args{
		{"NewRemoteHost", ""}, {"NewExternalPort", "18080"}, {"NewProtocol", "TCP"},
		{"NewInternalPort", "8080"}, {"NewInternalClient", "10.77.0.2"}, {"NewEnabled", "1"},
		{"NewPortMappingDescription", "natlab-capture"}, {"NewLeaseDuration", "0"},
	}
	if res.serviceType != wanIP2 || res.action != "AddPortMapping" || !reflect.DeepEqual(res.args, want) {
		t.Errorf("got %q %q %q", res.serviceType, res.action, res.args)
	}
}

func TestReadRequestHeaders(t *testing.T) {
	body := AppendEnvelope(nil, wanIP1, "GetExternalIPAddress", nil)
	tests := []struct {
		name     string
		header   string // whole header line, or "" for none
		wantErr  bool
		wantCode int
	}{
		{"quoted", `SOAPAction: "urn:schemas-upnp-org:service:WANIPConnection:1#GetExternalIPAddress"`, false, 0},
		{"unquoted", `SOAPAction: urn:schemas-upnp-org:service:WANIPConnection:1#GetExternalIPAddress`, false, 0},
		{"upper-case name", `SOAPACTION: "urn:schemas-upnp-org:service:WANIPConnection:1#GetExternalIPAddress"`, false, 0},
		{"lower-case name", `soapaction: "urn:schemas-upnp-org:service:WANIPConnection:1#GetExternalIPAddress"`, false, 0},
		{"spaces inside quotes", `SOAPAction: " urn:schemas-upnp-org:service:WANIPConnection:1#GetExternalIPAddress "`, false, 0},
		{"missing", "", true, 401},
		{"empty quotes", `SOAPAction: ""`, true, 401},
		{"no action", `SOAPAction: "urn:schemas-upnp-org:service:WANIPConnection:1"`, true, 401},
		{"no service type", `SOAPAction: "#GetExternalIPAddress"`, true, 401},
		{"empty action", `SOAPAction: "urn:schemas-upnp-org:service:WANIPConnection:1#"`, true, 401},
		{"other action than body", `SOAPAction: "urn:schemas-upnp-org:service:WANIPConnection:1#DeletePortMapping"`, true, 401},
		{"action differs in case", `SOAPAction: "urn:schemas-upnp-org:service:WANIPConnection:1#getexternalipaddress"`, true, 401},
	}
	srv, results := readRequestServer(t, 0)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var req bytes.Buffer
			fmt.Fprintf(&req, "POST /ctl/IPConn HTTP/1.1\r\nHost: %s\r\nContent-Type: text/xml\r\nContent-Length: %d\r\n", srv.Listener.Addr(), len(body))
			if tc.header != "" {
				req.WriteString(tc.header + "\r\n")
			}
			req.WriteString("Connection: close\r\n\r\n")
			req.Write(body)
			sendRaw(t, srv, req.Bytes())
			res := <-results
			if tc.wantErr {
				if res.err == nil {
					t.Fatalf("accepted: %q %q", res.serviceType, res.action)
				}
				if got := ErrorCode(res.err); got != tc.wantCode {
					t.Errorf("ErrorCode(%v) = %d, want %d", res.err, got, tc.wantCode)
				}
				return
			}
			if res.err != nil {
				t.Fatal(res.err)
			}
			if res.serviceType != wanIP1 || res.action != "GetExternalIPAddress" || len(res.args) != 0 {
				t.Errorf("got %q %q %q", res.serviceType, res.action, res.args)
			}
		})
	}
}

func TestReadRequestRejects(t *testing.T) {
	const action = `"urn:schemas-upnp-org:service:WANIPConnection:1#AddPortMapping"`
	big := AppendEnvelope(nil, wanIP1, "AddPortMapping", []Arg{{"NewPortMappingDescription", strings.Repeat("x", 2048)}})
	tests := []struct {
		name    string
		method  string
		body    []byte
		chunked bool // hide the length, so only reading can find it
		wantErr string
		is      error
	}{
		{name: "GET", method: http.MethodGet, body: nil, wantErr: "not POST"},
		{name: "not XML", method: http.MethodPost, body: []byte("hello"), wantErr: "no element inside its Body"},
		{name: "truncated", method: http.MethodPost, body: big[:100], wantErr: "malformed"},
		{name: "fault as request", method: http.MethodPost, body: AppendFault(nil, 501, "x"), wantErr: "fault"},
		{name: "too large, declared", method: http.MethodPost, body: big, is: ErrBodyTooLarge},
		{name: "too large, chunked", method: http.MethodPost, body: big, chunked: true, is: ErrBodyTooLarge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var body io.Reader = bytes.NewReader(tc.body)
			if tc.chunked {
				body = io.MultiReader(body) // not a type httptest can measure
			}
			r := httpxtest.NewRequest(tc.method, "http://192.0.2.1/ctl", body)
			r.Header.Set("SOAPAction", action)
			_, _, _, err := ReadRequest(r, 1024)
			if err == nil {
				t.Fatal("accepted")
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("error %v, want %v", err, tc.is)
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error %q does not contain %q", err, tc.wantErr)
			}
			if ErrorCode(err) != 0 {
				t.Errorf("ErrorCode = %d; a malformed request is an HTTP error, not a UPnP one", ErrorCode(err))
			}
		})
	}
	// maxBody 0 means DefaultMaxBody, under which big fits easily.
	r := httpxtest.NewRequest(http.MethodPost, "http://192.0.2.1/ctl", bytes.NewReader(big))
	r.Header.Set("SOAPAction", action)
	if _, _, args, err := ReadRequest(r, 0); err != nil || len(args) != 1 {
		t.Errorf("maxBody 0: %q, %v", args, err)
	}
}

func TestWriteResponse(t *testing.T) {
	w := httpxtest.NewRecorder()
	out := []Arg{{"NewExternalIPAddress", "203.0.113.1"}}
	WriteResponse(w, wanIP2, "GetExternalIPAddress", out)
	checkSOAPResponse(t, w, http.StatusOK)
	name, args, err := ParseEnvelope(w.Body.Bytes())
	if err != nil || name != "GetExternalIPAddressResponse" || !reflect.DeepEqual(args, Args(out)) {
		t.Errorf("body parses as %q %q %v:\n%s", name, args, err, w.Body)
	}
	if !bytes.Contains(w.Body.Bytes(), []byte(`xmlns:u="`+wanIP2+`"`)) {
		t.Errorf("response not in the service's namespace:\n%s", w.Body)
	}
}

func TestWriteFault(t *testing.T) {
	w := httpxtest.NewRecorder()
	WriteFault(w, 718, "ConflictInMappingEntry")
	checkSOAPResponse(t, w, http.StatusInternalServerError)
	_, _, err := ParseEnvelope(w.Body.Bytes())
	var ue *Error
	if !errors.As(err, &ue) || ue.Code != 718 || ue.Description != "ConflictInMappingEntry" {
		t.Errorf("body parses as %v:\n%s", err, w.Body)
	}
}

func checkSOAPResponse(t *testing.T, w *httpxtest.ResponseRecorder, status int) {
	t.Helper()
	if w.Code != status {
		t.Errorf("status %d, want %d", w.Code, status)
	}
	if ct := w.Header().Get("Content-Type"); ct != `text/xml; charset="utf-8"` {
		t.Errorf("Content-Type %q", ct)
	}
	if cl := w.Header().Get("Content-Length"); cl != strconv.Itoa(w.Body.Len()) {
		t.Errorf("Content-Length %q for a %d-byte body", cl, w.Body.Len())
	}
}

// TestServerClientEndToEnd runs the device side and the control point side
// of this package against each other over loopback.
func TestServerClientEndToEnd(t *testing.T) {
	srv := httpxtest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		st, action, args, err := ReadRequest(r, 0)
		if err != nil {
			if code := ErrorCode(err); code != 0 {
				WriteFault(w, code, "Invalid Action")
				return
			}
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		switch action {
		case "AddPortMapping":
			if args.Value("NewExternalPort") == "80" {
				WriteFault(w, 718, "ConflictInMappingEntry")
				return
			}
			WriteResponse(w, st, action, nil)
		case "GetExternalIPAddress":
			WriteResponse(w, st, action, []Arg{{"NewExternalIPAddress", "203.0.113.7"}})
		default:
			WriteFault(w, 401, "Invalid Action")
		}
	}))
	defer srv.Close()
	c := &Client{HTTP: srv.Client()}
	ctx := context.Background()

	out, err := c.Call(ctx, srv.URL+"/ctl", wanIP1, "GetExternalIPAddress", nil)
	if err != nil || out.Value("NewExternalIPAddress") != "203.0.113.7" {
		t.Errorf("GetExternalIPAddress: %q, %v", out, err)
	}
	if _, err := c.Call(ctx, srv.URL+"/ctl", wanIP1, "AddPortMapping", []Arg{{"NewExternalPort", "8080"}}); err != nil {
		t.Errorf("AddPortMapping: %v", err)
	}
	for _, tc := range []struct {
		action string
		args   []Arg
		code   int
	}{
		{"AddPortMapping", []Arg{{"NewExternalPort", "80"}}, 718},
		{"Reboot", nil, 401},
	} {
		_, err := c.Call(ctx, srv.URL+"/ctl", wanIP1, tc.action, tc.args)
		var ue *Error
		if !errors.As(err, &ue) || ue.Code != tc.code || ue.HTTPStatus != http.StatusInternalServerError || ue.Action != tc.action {
			t.Errorf("%s: %v, want UPnP error %d under HTTP 500", tc.action, err, tc.code)
		}
	}

	// Whatever the client does on the wire, the response is never chunked.
	resp, err := nethttp.Post(srv.URL+"/ctl", "text/xml", bytes.NewReader(AppendEnvelope(nil, wanIP1, "GetExternalIPAddress", nil)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusInternalServerError || resp.ContentLength <= 0 || len(resp.TransferEncoding) != 0 {
		t.Errorf("request without SOAPAction: status %d, length %d, transfer encoding %q", resp.StatusCode, resp.ContentLength, resp.TransferEncoding)
	}
}
