package webui_test

import (
	"bufio"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/portfwd/portfwd/internal/websec/websectest"
	"github.com/portfwd/portfwd/portmap"
	"github.com/portfwd/portfwd/webui"
	"github.com/portfwd/portfwd/webui/webuitest"
)

const testToken = "test-token-4f7c1e0b9a"

// env is a UI server on 127.0.0.1 over in-memory gateways.
type env struct {
	t   *testing.T
	srv *webui.Server
	hs  *httptest.Server
}

// newEnv starts a server whose discovery finds gws; configure, if not
// nil, adjusts it before it starts. It waits for discovery to finish when
// there is a gateway to find.
func newEnv(t *testing.T, configure func(*webui.Server), gws ...*webuitest.Gateway) *env {
	t.Helper()
	srv := &webui.Server{
		Token:        testToken,
		Timeout:      2 * time.Second,
		PollInterval: 50 * time.Millisecond,
		Logger:       slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Discover: func(ctx context.Context, o portmap.Options) ([]portmap.Gateway, error) {
			if len(gws) == 0 {
				return nil, portmap.ErrNoGateway
			}
			out := make([]portmap.Gateway, len(gws))
			for i, g := range gws {
				out[i] = g
			}
			return out, nil
		},
	}
	if configure != nil {
		configure(srv)
	}
	e := &env{t: t, srv: srv, hs: newHTTPServer(t, srv)}
	if len(gws) > 0 {
		e.waitDiscovered()
	}
	return e
}

// newHTTPServer serves srv on 127.0.0.1 until the test ends.
func newHTTPServer(t *testing.T, srv *webui.Server) *httptest.Server {
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	t.Cleanup(func() { srv.Close() }) // runs first: ends the event streams
	return hs
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// waitDiscovered polls GET /api/gateways until discovery has finished.
func (e *env) waitDiscovered() gateways {
	e.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		var g gateways
		e.call("GET", "/api/gateways", nil, http.StatusOK, &g)
		if g.Discovery.Done && !g.Discovery.Running {
			return g
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("discovery did not finish: %+v", g.Discovery)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// api is the page's JSON API as its script calls it.
func (e *env) api() websectest.API {
	return websectest.API{T: e.t, Server: e.hs, TokenHeader: webui.TokenHeader, Token: testToken}
}

// request makes a request with the given headers (the token header is
// not added: pass it when wanted).
func (e *env) request(method, path string, body any, header http.Header) (*http.Response, []byte) {
	e.t.Helper()
	return e.api().Request(method, path, body, header)
}

func withToken() http.Header {
	return http.Header{webui.TokenHeader: {testToken}}
}

// call makes an API request with the token, checks the status and
// decodes the answer into out (when not nil).
func (e *env) call(method, path string, body any, wantStatus int, out any) []byte {
	e.t.Helper()
	return e.api().Call(method, path, body, wantStatus, out)
}

// The API's JSON, as a script reads it (docs/api.md).

type gateways struct {
	Discovery struct {
		Running bool   `json:"running"`
		Message string `json:"message"`
		Found   int    `json:"found"`
		Error   string `json:"error"`
		Done    bool   `json:"done"`
	} `json:"discovery"`
	Selected string    `json:"selected"`
	Gateways []gateway `json:"gateways"`
	Features struct {
		Keep  bool `json:"keep"`
		Check bool `json:"check"`
	} `json:"features"`
}

type gateway struct {
	ID         string `json:"id"`
	Method     string `json:"method"`
	Addr       string `json:"addr"`
	LocalAddr  string `json:"local_addr"`
	Name       string `json:"name"`
	Selected   bool   `json:"selected"`
	ExternalIP string `json:"external_ip"`
	Class      string `json:"class"`
	Warning    string `json:"warning"`
	CanList    bool   `json:"can_list"`
	Updates    string `json:"updates"`
}

type mapping struct {
	Protocol       string `json:"protocol"`
	ExternalPort   int    `json:"external_port"`
	InternalClient string `json:"internal_client"`
	InternalPort   int    `json:"internal_port"`
	Enabled        bool   `json:"enabled"`
	Description    string `json:"description"`
	RemoteHost     string `json:"remote_host"`
	LeaseSeconds   int64  `json:"lease_seconds"`
	Permanent      bool   `json:"permanent"`
	ThisHost       bool   `json:"this_host"`
	Kept           *bool  `json:"kept"`
}

type table struct {
	Gateway   string    `json:"gateway"`
	Supported bool      `json:"supported"`
	Mappings  []mapping `json:"mappings"`
	Error     string    `json:"error"`
}

type external struct {
	Gateway    string `json:"gateway"`
	ExternalIP string `json:"external_ip"`
	Class      string `json:"class"`
	Warning    string `json:"warning"`
	Error      string `json:"error"`
}

type apiError struct {
	Error      string `json:"error"`
	Code       int    `json:"code"`
	RouterCode int    `json:"router_code"`
	Field      string `json:"field"`
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
	res, err := e.hs.Client().Do(req)
	if err != nil {
		cancel()
		e.t.Fatalf("GET /api/events: %v", err)
	}
	s := &stream{t: e.t, events: make(chan sseEvent, 256), cancel: cancel}
	e.t.Cleanup(s.close)
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

func (s *stream) close() { s.cancel() }

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
