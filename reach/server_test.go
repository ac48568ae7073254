package reach

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portfwd/portfwd/internal/testenv"
)

// These tests run the probe server and its targets on 127.0.0.1: the
// server connects back to the loopback address the test's request came
// from, as it would to a client's public address.

var loopback = netip.MustParseAddr("127.0.0.1")

const testToken = "0123456789abcdef0123456789abcdef"

// startProbe serves s on loopback and returns its base URL.
func startProbe(t *testing.T, s *ProbeServer) string {
	t.Helper()
	s.AllowLoopback = true
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)
	return ts.URL
}

// post sends body to the probe server and returns the status and answer.
func post(t *testing.T, base string, body string, header ...string) (int, CheckResponse, http.Header) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, base+Path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var cr CheckResponse
	if err := json.Unmarshal(b, &cr); err != nil {
		t.Fatalf("answer %d is not JSON (%v): %s", resp.StatusCode, err, b)
	}
	return resp.StatusCode, cr, resp.Header
}

func checkBody(proto string, port uint16, token string) string {
	b, _ := json.Marshal(CheckRequest{Protocol: proto, Port: port, Token: token})
	return string(b)
}

// freePort returns a port nothing listens on for proto on 127.0.0.1.
func freePort(t *testing.T, proto string) uint16 {
	t.Helper()
	return testenv.FreePort(t, testenv.Bind{Network: proto + "4", Addr: netip.MustParseAddr("127.0.0.1")})
}

// tokenListener starts portfwd's listener for token on a free loopback port.
func tokenListener(t *testing.T, proto, token string) (*listener, uint16) {
	t.Helper()
	port := freePort(t, proto)
	l, err := listen(proto, loopback, port, token, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	return l, port
}

func TestProbeReachable(t *testing.T) {
	for _, proto := range []string{TCP, UDP} {
		t.Run(proto, func(t *testing.T) {
			t.Parallel()
			base := startProbe(t, &ProbeServer{})
			l, port := tokenListener(t, proto, testToken)
			status, got, _ := post(t, base, checkBody(proto, port, testToken))
			if status != http.StatusOK || !got.Reachable || !got.Answered || got.Code != "" {
				t.Fatalf("got %d %+v, want 200 reachable", status, got)
			}
			if want := netip.AddrPortFrom(loopback, port).String(); got.Address != want || got.Protocol != proto {
				t.Errorf("address %q protocol %q, want %q %q", got.Address, got.Protocol, want, proto)
			}
			if got.RTTMillis <= 0 {
				t.Errorf("rtt_ms %v, want > 0", got.RTTMillis)
			}
			if seen := l.Seen(); len(seen) == 0 || seen[0].Addr() != loopback {
				t.Errorf("listener saw the probe from %v, want from %v", seen, loopback)
			}
		})
	}
}

func TestProbeClosedPortIsRefused(t *testing.T) {
	for _, proto := range []string{TCP, UDP} {
		t.Run(proto, func(t *testing.T) {
			t.Parallel()
			base := startProbe(t, &ProbeServer{})
			status, got, _ := post(t, base, checkBody(proto, freePort(t, proto), testToken))
			if status != http.StatusOK || got.Reachable || got.Answered || got.Code != CodeRefused || got.Error != "connection refused" {
				t.Fatalf("got %d %+v, want 200, refused, \"connection refused\"", status, got)
			}
		})
	}
}

// serveTCP runs a TCP program on a free loopback port that handles each
// connection with f.
func serveTCP(t *testing.T, f func(net.Conn)) uint16 {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() { defer wg.Done(); defer c.Close(); f(c) }()
		}
	}()
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return netip.MustParseAddrPort(ln.Addr().String()).Port()
}

func TestProbeWrongProgram(t *testing.T) {
	other := "fedcba9876543210fedcba9876543210"
	tests := []struct {
		name    string
		serve   func(net.Conn)
		wantErr string
	}{
		{"ssh banner", func(c net.Conn) { io.WriteString(c, "SSH-2.0-OpenSSH_9.6\r\n") }, "not the token"},
		{"echo service", func(c net.Conn) {
			c.SetDeadline(time.Now().Add(3 * time.Second))
			io.Copy(c, c)
		}, "not the token"},
		{"another check's listener", func(c net.Conn) {
			c.SetDeadline(time.Now().Add(3 * time.Second))
			b := make([]byte, len(probeLine(other)))
			io.ReadFull(c, b)
			c.Write(replyLine(other))
		}, "not the token"},
		{"closes at once", func(net.Conn) {}, "not the token"},
		{"silent", func(c net.Conn) {
			c.SetDeadline(time.Now().Add(3 * time.Second))
			io.Copy(io.Discard, c)
		}, "nothing answered"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			base := startProbe(t, &ProbeServer{})
			port := serveTCP(t, tt.serve)
			status, got, _ := post(t, base, checkBody(TCP, port, testToken))
			if status != http.StatusOK || got.Reachable || !got.Answered || got.Code != CodeMismatch || !strings.Contains(got.Error, tt.wantErr) {
				t.Fatalf("got %d %+v, want 200, answered, mismatch, error with %q", status, got, tt.wantErr)
			}
		})
	}
}

func TestProbeUDPEchoServiceIsNotTheListener(t *testing.T) {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 512)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo(buf[:n], from)
		}
	}()
	t.Cleanup(func() { pc.Close(); <-done })
	base := startProbe(t, &ProbeServer{})
	port := netip.MustParseAddrPort(pc.LocalAddr().String()).Port()
	status, got, _ := post(t, base, checkBody(UDP, port, testToken))
	if status != http.StatusOK || got.Reachable || !got.Answered || got.Code != CodeMismatch {
		t.Fatalf("got %d %+v, want answered but mismatch", status, got)
	}
}

func TestProbeUDPSilentTimesOut(t *testing.T) {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	base := startProbe(t, &ProbeServer{ConnectTimeout: 600 * time.Millisecond})
	port := netip.MustParseAddrPort(pc.LocalAddr().String()).Port()
	start := time.Now()
	status, got, _ := post(t, base, checkBody(UDP, port, testToken))
	took := time.Since(start)
	if status != http.StatusOK || got.Reachable || got.Answered || got.Code != CodeTimeout {
		t.Fatalf("got %d %+v, want timeout", status, got)
	}
	if took < 500*time.Millisecond || took > 3*time.Second {
		t.Errorf("took %v, want about the 600ms connect timeout", took)
	}
	// It resent while waiting: a lost datagram does not fail the check.
	pc.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	n := 0
	for buf := make([]byte, 512); ; n++ {
		if _, _, err := pc.ReadFrom(buf); err != nil {
			break
		}
	}
	if n < 2 || n > 4 {
		t.Errorf("got %d probe datagrams in 600ms, want 3 (one per 250ms)", n)
	}
}

// recordingDialer records what the probe server dials.
type recordingDialer struct {
	mu     sync.Mutex
	dialed []string
	d      net.Dialer
}

func (r *recordingDialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	r.mu.Lock()
	r.dialed = append(r.dialed, network+" "+address)
	r.mu.Unlock()
	return r.d.DialContext(ctx, network, address)
}

func (r *recordingDialer) calls() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.dialed...)
}

// TestProbeDialsOnlyTheSource: whatever the request claims, in its body or
// its headers, the server connects to the address it came from.
func TestProbeDialsOnlyTheSource(t *testing.T) {
	rd := &recordingDialer{}
	base := startProbe(t, &ProbeServer{Dialer: rd})
	_, port := tokenListener(t, TCP, testToken)
	body := `{"protocol":"tcp","port":` + strconv.Itoa(int(port)) + `,"token":"` + testToken + `",` +
		`"host":"192.0.2.7","address":"192.0.2.7:22","ip":"198.51.100.1","target":"10.0.0.1:` + strconv.Itoa(int(port)) + `"}`
	status, got, _ := post(t, base, body,
		"X-Forwarded-For", "192.0.2.7", "X-Real-IP", "192.0.2.8", "Forwarded", "for=192.0.2.9")
	if status != http.StatusOK || !got.Reachable {
		t.Fatalf("got %d %+v, want reachable", status, got)
	}
	want := "tcp " + netip.AddrPortFrom(loopback, port).String()
	if calls := rd.calls(); len(calls) != 1 || calls[0] != want {
		t.Errorf("dialed %q, want only %q", calls, want)
	}
}

func TestProbeRefusesLoopbackUnlessAllowed(t *testing.T) {
	rd := &recordingDialer{}
	ts := httptest.NewServer(&ProbeServer{Dialer: rd}) // AllowLoopback off
	defer ts.Close()
	status, got, _ := post(t, ts.URL, checkBody(TCP, 8080, testToken))
	if status != http.StatusForbidden || !strings.Contains(got.Error, "loopback") {
		t.Fatalf("got %d %+v, want 403 naming loopback", status, got)
	}
	if calls := rd.calls(); len(calls) != 0 {
		t.Errorf("dialed %q for a refused source", calls)
	}
}

func TestProbeRateLimit(t *testing.T) {
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	rd := &recordingDialer{}
	base := startProbe(t, &ProbeServer{Limit: RateLimit{Events: 2, Per: time.Minute}, Clock: clock, Dialer: rd})
	port := freePort(t, TCP)
	for i := range 2 {
		if status, got, _ := post(t, base, checkBody(TCP, port, testToken)); status != http.StatusOK {
			t.Fatalf("check %d: %d %+v, want 200", i+1, status, got)
		}
	}
	status, got, h := post(t, base, checkBody(TCP, port, testToken))
	if status != http.StatusTooManyRequests || !strings.Contains(got.Error, "too many checks") {
		t.Fatalf("third check: %d %+v, want 429", status, got)
	}
	if ra := h.Get("Retry-After"); ra != "30" {
		t.Errorf("Retry-After %q, want 30 (one check per 30s)", ra)
	}
	if n := len(rd.calls()); n != 2 {
		t.Errorf("dialed %d times, want 2: a limited check must not dial", n)
	}
	// Malformed requests count too, or they would be a free way in.
	advance(30 * time.Second)
	if status, _, _ := post(t, base, `{}`); status != http.StatusBadRequest {
		t.Fatalf("after 30s, a bad request: %d, want 400", status)
	}
	if status, _, _ := post(t, base, checkBody(TCP, port, testToken)); status != http.StatusTooManyRequests {
		t.Fatalf("the bad request used the refilled token: got %d, want 429", status)
	}
	advance(30 * time.Second)
	if status, _, _ := post(t, base, checkBody(TCP, port, testToken)); status != http.StatusOK {
		t.Fatalf("after another 30s: %d, want 200", status)
	}
}

func TestProbeBodyLimit(t *testing.T) {
	base := startProbe(t, &ProbeServer{})
	big := `{"protocol":"tcp","port":8080,"token":"` + testToken + `","pad":"` + strings.Repeat("x", MaxRequestBytes) + `"}`
	if status, got, _ := post(t, base, big); status != http.StatusRequestEntityTooLarge {
		t.Errorf("with Content-Length: %d %+v, want 413", status, got)
	}
	// Without Content-Length (chunked), the limit holds while reading.
	req, _ := http.NewRequest(http.MethodPost, base+Path, io.MultiReader(strings.NewReader(big)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if req.ContentLength != 0 || resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("chunked: %d (request length %d), want 413", resp.StatusCode, req.ContentLength)
	}
}

func TestProbeRejects(t *testing.T) {
	base := startProbe(t, &ProbeServer{Limit: RateLimit{Events: 100, Per: time.Second}})
	tests := []struct {
		name, method, path, body string
		status                   int
		want                     string
	}{
		{"GET", http.MethodGet, Path, "", http.StatusMethodNotAllowed, "POST"},
		{"other path", http.MethodPost, "/v1/scan", checkBody(TCP, 80, testToken), http.StatusNotFound, Path},
		{"not JSON", http.MethodPost, Path, "protocol=tcp", http.StatusBadRequest, "not a check request"},
		{"two values", http.MethodPost, Path, checkBody(TCP, 80, testToken) + "{}", http.StatusBadRequest, "more than one"},
		{"protocol", http.MethodPost, Path, checkBody("sctp", 80, testToken), http.StatusBadRequest, "protocol"},
		{"protocol case", http.MethodPost, Path, checkBody("TCP", 80, testToken), http.StatusBadRequest, "protocol"},
		{"port 0", http.MethodPost, Path, checkBody(TCP, 0, testToken), http.StatusBadRequest, "port"},
		{"port too big", http.MethodPost, Path, `{"protocol":"tcp","port":70000,"token":"` + testToken + `"}`, http.StatusBadRequest, "not a check request"},
		{"short token", http.MethodPost, Path, checkBody(TCP, 80, "abc"), http.StatusBadRequest, "token"},
		{"uppercase token", http.MethodPost, Path, checkBody(TCP, 80, strings.ToUpper(testToken)), http.StatusBadRequest, "token"},
		{"no token", http.MethodPost, Path, `{"protocol":"tcp","port":80}`, http.StatusBadRequest, "token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, base+tt.path, strings.NewReader(tt.body))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var eb errorBody
			b, _ := io.ReadAll(resp.Body)
			json.Unmarshal(b, &eb)
			if resp.StatusCode != tt.status || !strings.Contains(eb.Error, tt.want) {
				t.Errorf("got %d %s, want %d with %q", resp.StatusCode, b, tt.status, tt.want)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
		})
	}
}

// blockingDialer holds every dial until released.
type blockingDialer struct {
	started chan struct{}
	release chan struct{}
}

func (b *blockingDialer) DialContext(ctx context.Context, _, _ string) (net.Conn, error) {
	b.started <- struct{}{}
	select {
	case <-b.release:
	case <-ctx.Done():
	}
	return nil, &net.OpError{Op: "dial", Err: context.DeadlineExceeded}
}

func TestProbeConcurrencyCap(t *testing.T) {
	bd := &blockingDialer{started: make(chan struct{}, 1), release: make(chan struct{})}
	base := startProbe(t, &ProbeServer{MaxConcurrent: 1, Dialer: bd})
	first := make(chan int)
	go func() {
		status, _, _ := post(t, base, checkBody(TCP, 8080, testToken))
		first <- status
	}()
	<-bd.started
	status, got, h := post(t, base, checkBody(TCP, 8080, testToken))
	if status != http.StatusServiceUnavailable || h.Get("Retry-After") == "" {
		t.Errorf("second check while one runs: %d %+v, want 503 with Retry-After", status, got)
	}
	close(bd.release)
	if status := <-first; status != http.StatusOK {
		t.Errorf("first check: %d, want 200", status)
	}
	// The slot is free again.
	bd.release = make(chan struct{})
	close(bd.release)
	go func() { <-bd.started }()
	if status, _, _ := post(t, base, checkBody(TCP, 8080, testToken)); status != http.StatusOK {
		t.Errorf("third check after the first finished: %d, want 200", status)
	}
}

func TestProbeNeverRedirectsOrCaches(t *testing.T) {
	base := startProbe(t, &ProbeServer{})
	req, _ := http.NewRequest(http.MethodPost, base+Path+"/", bytes.NewReader([]byte(checkBody(TCP, 80, testToken))))
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 == 3 {
		t.Errorf("%s/: redirected with %d", Path, resp.StatusCode)
	}
	_, _, h := post(t, base, checkBody(TCP, freePort(t, TCP), testToken))
	if h.Get("Cache-Control") != "no-store" {
		t.Errorf("Cache-Control %q, want no-store", h.Get("Cache-Control"))
	}
}

func TestServeStopsWithContext(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- (&ProbeServer{AllowLoopback: true}).Serve(ctx, ln) }()
	base := "http://" + ln.Addr().String()
	if status, got, _ := post(t, base, checkBody(TCP, freePort(t, TCP), testToken)); status != http.StatusOK || got.Code != CodeRefused {
		t.Fatalf("through Serve: %d %+v", status, got)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve returned %v after cancel, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after its context ended")
	}
}
