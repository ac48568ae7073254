package admin_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/portfwd/portfwd/internal/httpx/httpxtest"

	"github.com/portfwd/portfwd/gateway/admin"
	"github.com/portfwd/portfwd/internal/websec/websectest"
)

const testToken = "test-token-4f7c1e0b9a"

// env is an admin page served on 127.0.0.1.
type env struct {
	t  *testing.T
	hs *httpxtest.Server
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// api is the page's JSON API as its script calls it.
func (e *env) api() websectest.API {
	return websectest.API{T: e.t, URL: e.hs.URL, TokenHeader: admin.TokenHeader, Token: testToken}
}

// request makes a request with the given headers (the token header is
// not added: pass it when wanted).
func (e *env) request(method, path string, body any, header http.Header) (*http.Response, []byte) {
	e.t.Helper()
	return e.api().Request(method, path, body, header)
}

func withToken() http.Header {
	return http.Header{admin.TokenHeader: {testToken}}
}

// call makes an API request with the token, checks the status and
// decodes the answer into out (when not nil).
func (e *env) call(method, path string, body any, wantStatus int, out any) []byte {
	e.t.Helper()
	return e.api().Call(method, path, body, wantStatus, out)
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

// route is an API request.
type route struct {
	method, path string
	body         any
}

// apiError is an error answer of the API.
type apiError struct {
	Error string `json:"error"`
	Code  int    `json:"code"`
	Field string `json:"field"`
}

// sseEvent is one server-sent event.
type sseEvent struct {
	name string
	data []byte
}

// stream is an open /api/events response.
type stream struct {
	t      *testing.T
	events chan sseEvent
	cancel context.CancelFunc
}

// events opens the event stream with the given headers.
func (e *env) events(header http.Header) (*stream, *http.Response) {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", e.hs.URL+"/api/events", nil)
	for k, v := range header {
		req.Header[k] = v
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		e.t.Fatalf("GET /api/events: %v", err)
	}
	s := &stream{t: e.t, events: make(chan sseEvent, 256), cancel: cancel}
	e.t.Cleanup(s.cancel)
	if res.StatusCode != http.StatusOK {
		res.Body.Close()
		return s, res
	}
	go func() {
		defer res.Body.Close()
		defer close(s.events)
		sc := bufio.NewScanner(res.Body)
		var ev sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if ev.name != "" {
					s.events <- ev
				}
				ev = sseEvent{}
			case strings.HasPrefix(line, "event: "):
				ev.name = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				ev.data = append(ev.data, strings.TrimPrefix(line, "data: ")...)
			}
		}
	}()
	return s, res
}

// next waits for an event called name for which match (if not nil) is
// true, skipping others, and returns it decoded.
func next[T any](s *stream, name string, match func(T) bool) T {
	s.t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case ev, ok := <-s.events:
			if !ok {
				s.t.Fatalf("the event stream ended while waiting for %q", name)
			}
			if ev.name != name {
				continue
			}
			var v T
			if err := json.Unmarshal(ev.data, &v); err != nil {
				s.t.Fatalf("event %s: %v in %s", name, err, ev.data)
			}
			if match == nil || match(v) {
				return v
			}
		case <-timeout:
			var zero T
			s.t.Fatalf("no matching %q event came in 5 s", name)
			return zero
		}
	}
}

// eventually waits up to 5 s for cond to hold.
func eventually(cond func() bool) bool {
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}
