//go:build gatewayonly

package httpx

import (
	"bufio"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
)

// FuzzReadRequest reads any bytes as a request, as the gateway's server
// does, without a panic; and wherever net/http's own reader (the
// reference, in tests only) accepts the same bytes too, both see the same
// request: method, target, Host, header fields and body. (Where they
// differ in what they accept, this package is the stricter on purpose:
// both framings at once, a space before a field's colon.)
func FuzzReadRequest(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: h\r\n\r\n",
		"POST /ctl/IPConn HTTP/1.1\r\nHost: 10.0.0.1:5000\r\nContent-Length: 5\r\nSOAPAction: \"x#y\"\r\n\r\nhello",
		"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5;x\r\nhello\r\n0\r\nT: 1\r\n\r\n",
		"SUBSCRIBE /evt/IPConn HTTP/1.1\r\nHOST: h\r\nCALLBACK: <http://10.0.0.2/>\r\nNT: upnp:event\r\n\r\n",
		"GET http://h/x HTTP/1.0\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: h\r\nCookie: a=1; b=\"2\"\r\n\r\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		ours, ourBody, ourErr := readReq(raw)
		ref, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw)))
		if ourErr != nil || err != nil {
			return
		}
		refBody, err := io.ReadAll(ref.Body)
		if err != nil {
			return
		}
		if ours.Method != ref.Method || ours.RequestURI != ref.RequestURI || ours.URL.String() != ref.URL.String() ||
			ours.Host != ref.Host || ours.ProtoMajor != ref.ProtoMajor || ours.ProtoMinor != ref.ProtoMinor {
			t.Fatalf("%q: read as %s %s %s host %q; net/http reads %s %s %s host %q", raw,
				ours.Method, ours.URL, ours.Proto, ours.Host, ref.Method, ref.URL, ref.Proto, ref.Host)
		}
		if !reflect.DeepEqual(map[string][]string(ours.Header), map[string][]string(ref.Header)) {
			t.Fatalf("%q: header %v; net/http reads %v", raw, ours.Header, ref.Header)
		}
		if ourBody != string(refBody) {
			t.Fatalf("%q: body %q; net/http reads %q", raw, ourBody, refBody)
		}
	})
}

// FuzzReadResponse reads any bytes as an answer to a GET, as
// upnp.ConnTransport does, without a panic; and wherever net/http's
// reader accepts them too, both read the same status, header and body.
func FuzzReadResponse(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n<a/>",
		"HTTP/1.1 500 Internal Server Error\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
		"HTTP/1.0 200 OK\r\n\r\nto the end",
		"HTTP/1.1 412 Precondition Failed\r\n\r\n",
		"HTTP/1.1 204 No Content\r\nContent-Length: 3\r\n\r\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		ours, err := ReadResponse(bufio.NewReader(strings.NewReader(raw)), &Request{Method: "GET"})
		if err != nil {
			return
		}
		ourBody, err := io.ReadAll(ours.Body)
		if err != nil {
			return
		}
		ref, err := http.ReadResponse(bufio.NewReader(strings.NewReader(raw)), &http.Request{Method: "GET"})
		if err != nil {
			return
		}
		refBody, err := io.ReadAll(ref.Body)
		if err != nil {
			return
		}
		if ours.StatusCode != ref.StatusCode || ours.ProtoMajor != ref.ProtoMajor || ours.ProtoMinor != ref.ProtoMinor {
			t.Fatalf("%q: status %d %s; net/http reads %d %s", raw, ours.StatusCode, ours.Proto, ref.StatusCode, ref.Proto)
		}
		if !reflect.DeepEqual(map[string][]string(ours.Header), map[string][]string(ref.Header)) {
			t.Fatalf("%q: header %v; net/http reads %v", raw, ours.Header, ref.Header)
		}
		if string(ourBody) != string(refBody) {
			t.Fatalf("%q: body %q; net/http reads %q", raw, ourBody, refBody)
		}
	})
}
