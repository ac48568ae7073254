package upnp

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"

	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/portfwd/portfwd/internal/httpx"
)

// TestNotifyTransport: the publisher's own transport delivers a NOTIFY
// with its headers and body on a connection it closes, reads the answer,
// and gives up when the request's context ends, even on a subscriber that
// accepts the connection and never answers.
func TestNotifyTransport(t *testing.T) {
	got := make(chan *http.Request, 1)
	var body string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		body = string(b)
		got <- r
	}))
	defer srv.Close()

	req, err := httpx.NewRequestWithContext(context.Background(), "NOTIFY", srv.URL+"/cb", strings.NewReader("<e:propertyset/>"))
	if err != nil {
		t.Fatal(err)
	}
	req.Header["SID"] = []string{"uuid:1"}
	resp, err := notifyTransport{}.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	r := <-got
	if resp.StatusCode != 200 || r.Method != "NOTIFY" || r.URL.Path != "/cb" || r.Header.Get("SID") != "uuid:1" || !r.Close || body != "<e:propertyset/>" {
		t.Errorf("delivered %s %s (close %v, SID %q, body %q), answered %d", r.Method, r.URL, r.Close, r.Header.Get("SID"), body, resp.StatusCode)
	}

	// A subscriber that never answers.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	req, _ = httpx.NewRequestWithContext(ctx, "NOTIFY", "http://"+ln.Addr().String()+"/cb", strings.NewReader("x"))
	if _, err := (notifyTransport{}).RoundTrip(req); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("a silent subscriber: %v, want the context's deadline", err)
	}

	req, _ = httpx.NewRequestWithContext(context.Background(), "NOTIFY", "https://127.0.0.1:1/cb", nil)
	if _, err := (notifyTransport{}).RoundTrip(req); err == nil || !strings.Contains(err.Error(), "not an http:// URL") {
		t.Errorf("an https callback: %v", err)
	}
}
