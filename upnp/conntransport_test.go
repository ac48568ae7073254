package upnp

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"

	"strings"
	"sync/atomic"
	"testing"

	"github.com/portfwd/portfwd/internal/httpx"
)

// TestConnTransport: the router build's transport dials with the dialer it
// is given, sends a GET with no Content-Length and a POST with one, each
// on a connection of its own with Connection: close, and reads answers
// longer than a NOTIFY's, chunked or not, whole.
func TestConnTransport(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	heads := make(chan string, 2)
	big := strings.Repeat("x", 20000)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			br := bufio.NewReader(c)
			var head strings.Builder
			length := 0
			for {
				line, err := br.ReadString('\n')
				if err != nil {
					break
				}
				head.WriteString(line)
				fmt.Sscanf(line, "Content-Length: %d", &length)
				if line == "\r\n" {
					break
				}
			}
			io.CopyN(io.Discard, br, int64(length))
			heads <- head.String()
			if strings.HasPrefix(head.String(), "GET") {
				fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n", len(big), big)
			} else {
				fmt.Fprintf(c, "HTTP/1.1 200 OK\r\n\r\n%s", big)
			}
			c.Close()
		}
	}()
	var dials atomic.Int32
	tr := &ConnTransport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		dials.Add(1)
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}}
	for _, tc := range []struct{ method, body, want, wantNot string }{
		{"GET", "", "GET /desc.xml HTTP/1.1\r\n", "Content-Length"},
		{"POST", "<s:Envelope/>", "Content-Length: 13\r\n", "chunked"},
	} {
		var body io.Reader
		if tc.body != "" {
			body = strings.NewReader(tc.body)
		}
		req, err := httpx.NewRequestWithContext(context.Background(), tc.method, "http://"+ln.Addr().String()+"/desc.xml", body)
		if err != nil {
			t.Fatal(err)
		}
		req.Header["SOAPAction"] = []string{`"urn:x#y"`}
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatalf("%s: %v", tc.method, err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || string(got) != big {
			t.Errorf("%s: read %d bytes (%v), want %d", tc.method, len(got), err, len(big))
		}
		head := <-heads
		if !strings.Contains(head, tc.want) || strings.Contains(head, tc.wantNot) ||
			!strings.Contains(head, "Connection: close\r\n") || !strings.Contains(head, "SOAPAction: \"urn:x#y\"\r\n") {
			t.Errorf("%s sent\n%s\nwant %q, Connection: close, SOAPAction as spelled, and no %q", tc.method, head, tc.want, tc.wantNot)
		}
	}
	if n := dials.Load(); n != 2 {
		t.Errorf("%d dials through the given dialer, want 2", n)
	}
}
