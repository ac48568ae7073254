package upnp

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"math"
	"net"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	nethttp "net/http"

	http "github.com/portfwd/portfwd/internal/httpx"
	"github.com/portfwd/portfwd/internal/httpx/httpxtest"
)

// Expiry and moderation are tested under testing/synctest: the publisher
// runs on real timers, and in a bubble time moves only when every
// goroutine of the test waits, so the tests check exact instants without
// sleeping. Deliveries then go to an in-memory transport (recorder,
// memSink): a goroutine blocked on a real socket would keep the bubble's
// time from moving.

// advance lets d pass in the bubble and waits until what fell due is done.
func advance(d time.Duration) {
	time.Sleep(d)
	synctest.Wait()
}

// notifyMsg is one NOTIFY a test callback received.
type notifyMsg struct {
	path   string
	header http.Header
	sid    string
	seq    uint32
	vars   []Arg
	err    error // parsing the body
}

// sink is a callback server on 127.0.0.1 that records every request.
type sink struct {
	srv   *httpxtest.Server
	got   chan notifyMsg
	count atomic.Int32
}

// newSink starts a sink answering status. When hold is not nil every
// request waits for it to be closed (or for the client to give up) before
// it is recorded and answered.
func newSink(t *testing.T, status int, hold <-chan struct{}) *sink {
	t.Helper()
	s := &sink{got: make(chan notifyMsg, 64)}
	s.srv = httpxtest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.count.Add(1)
		if hold != nil {
			select {
			case <-hold:
			case <-r.Context().Done():
				return
			}
		}
		body, _ := io.ReadAll(r.Body)
		m := notifyMsg{path: r.URL.Path, header: r.Header, sid: r.Header.Get("SID")}
		m.seq, _ = ParseSeq(r.Header.Get("SEQ"))
		m.vars, m.err = ParsePropertySet(body)
		if r.Method != "NOTIFY" {
			m.err = fmt.Errorf("method %s", r.Method)
		}
		s.got <- m
		w.WriteHeader(status)
	}))
	t.Cleanup(s.srv.Close)
	return s
}

// url returns a callback URL of the sink.
func (s *sink) url(path string) string { return s.srv.URL + path }

// next waits for the next NOTIFY, failing the test after a few seconds.
func (s *sink) next(t *testing.T) notifyMsg {
	t.Helper()
	select {
	case m := <-s.got:
		if m.err != nil {
			t.Fatalf("bad NOTIFY: %v", m.err)
		}
		return m
	case <-time.After(5 * time.Second):
		t.Fatal("no NOTIFY within 5 s")
		return notifyMsg{}
	}
}

// none checks that no NOTIFY arrives within a short while.
func (s *sink) none(t *testing.T, within time.Duration) {
	t.Helper()
	select {
	case m := <-s.got:
		t.Fatalf("unexpected NOTIFY SEQ %d %q", m.seq, m.vars)
	case <-time.After(within):
	}
}

// recorder is an http.RoundTripper that records requests instead of
// sending them, answering 200.
type recorder struct {
	mu   sync.Mutex
	reqs []string // "METHOD URL SEQ"
}

func (rt *recorder) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		io.Copy(io.Discard, r.Body)
		r.Body.Close()
	}
	rt.mu.Lock()
	rt.reqs = append(rt.reqs, r.Method+" "+r.URL.String()+" "+r.Header.Get("SEQ"))
	rt.mu.Unlock()
	return &http.Response{StatusCode: 200, Status: "200 OK", Body: http.NoBody, Header: http.Header{}, Request: r}, nil
}

// waitSent waits until at least n requests have gone out.
func (rt *recorder) waitSent(t *testing.T, n int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); len(rt.sent()) < n; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d requests sent after 10 s, want %d", len(rt.sent()), n)
		}
	}
}

func (rt *recorder) sent() []string {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return append([]string(nil), rt.reqs...)
}

// memSink is a callback "server" in memory: an http.RoundTripper that
// parses every NOTIFY, as sink does, and answers 200.
type memSink struct{ got chan notifyMsg }

func newMemSink() *memSink { return &memSink{got: make(chan notifyMsg, 64)} }

func (s *memSink) RoundTrip(r *http.Request) (*http.Response, error) {
	var body []byte
	if r.Body != nil {
		body, _ = io.ReadAll(r.Body)
		r.Body.Close()
	}
	// As a server would read them: the publisher writes its header names
	// in upper case, which Header.Get does not find as they are.
	h := http.Header{}
	for k, vs := range r.Header {
		for _, v := range vs {
			h.Add(k, v)
		}
	}
	m := notifyMsg{path: r.URL.Path, header: h, sid: h.Get("SID")}
	m.seq, _ = ParseSeq(h.Get("SEQ"))
	m.vars, m.err = ParsePropertySet(body)
	if r.Method != "NOTIFY" {
		m.err = fmt.Errorf("method %s", r.Method)
	}
	s.got <- m
	return &http.Response{StatusCode: 200, Status: "200 OK", Body: http.NoBody, Header: http.Header{}, Request: r}, nil
}

// next returns the NOTIFY delivered, once every delivery under way is
// done (call it in the bubble).
func (s *memSink) next(t *testing.T) notifyMsg {
	t.Helper()
	synctest.Wait()
	select {
	case m := <-s.got:
		if m.err != nil {
			t.Fatalf("bad NOTIFY: %v", m.err)
		}
		return m
	default:
		t.Fatal("no NOTIFY delivered")
		return notifyMsg{}
	}
}

// none checks that nothing was delivered, once every delivery under way
// is done (call it in the bubble).
func (s *memSink) none(t *testing.T) {
	t.Helper()
	synctest.Wait()
	select {
	case m := <-s.got:
		t.Fatalf("unexpected NOTIFY SEQ %d %q", m.seq, m.vars)
	default:
	}
}

// state is a service's evented variables, changeable by the test.
type state struct {
	mu   sync.Mutex
	vars []Arg
}

func (s *state) get() []Arg {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Arg(nil), s.vars...)
}

func (s *state) set(vars ...Arg) {
	s.mu.Lock()
	s.vars = vars
	s.mu.Unlock()
}

const evtPath = "/evt/IPConn"

func newTestPublisher(t *testing.T, cfg PublisherConfig) *Publisher {
	t.Helper()
	if cfg.Services == nil {
		st := &state{vars: []Arg{{"PortMappingNumberOfEntries", "0"}, {"ExternalIPAddress", "192.0.2.1"}}}
		cfg.Services = map[string]func() []Arg{evtPath: st.get, "/evt/Other": st.get}
	}
	p := NewPublisher(cfg)
	t.Cleanup(p.Close)
	return p
}

// call runs one request through p.ServeHTTP as if it came from remote.
func call(p *Publisher, method, path, remote string, hdr map[string]string) *httpxtest.ResponseRecorder {
	r := httpxtest.NewRequest(method, path, nil)
	r.RemoteAddr = remote
	for k, v := range hdr {
		r.Header.Set(k, v)
	}
	w := httpxtest.NewRecorder()
	p.ServeHTTP(w, r)
	return w
}

// respHeader returns the response header k, matched without regard to case: the
// Publisher sets its headers in upper case, which a ResponseRecorder keeps.
func respHeader(w *httpxtest.ResponseRecorder, k string) string {
	for name, v := range w.Header() {
		if strings.EqualFold(name, k) && len(v) > 0 {
			return v[0]
		}
	}
	return ""
}

// subscribe makes a subscription from 127.0.0.1 and returns its SID.
func subscribe(t *testing.T, p *Publisher, callback, timeout string) string {
	t.Helper()
	hdr := map[string]string{"NT": "upnp:event", "CALLBACK": "<" + callback + ">"}
	if timeout != "" {
		hdr["TIMEOUT"] = timeout
	}
	w := call(p, "SUBSCRIBE", evtPath, "127.0.0.1:40000", hdr)
	if w.Code != http.StatusOK {
		t.Fatalf("SUBSCRIBE: %d %s", w.Code, w.Body)
	}
	sid, err := ParseSID(respHeader(w, "SID"))
	if err != nil {
		t.Fatalf("SUBSCRIBE response: %v", err)
	}
	return sid
}

// TestPublisherWire checks the bytes of a SUBSCRIBE exchange and of the
// initial event against UDA 1.1 §4.1.2 and §4.3.2, through a real server
// and a raw callback socket, since net/http hides header case and framing.
func TestPublisherWire(t *testing.T) {
	st := &state{vars: []Arg{{"ExternalIPAddress", "192.0.2.1"}, {"X_Name", "a&b"}}}
	p := newTestPublisher(t, PublisherConfig{Services: map[string]func() []Arg{evtPath: st.get}})
	srv := httpxtest.NewServer(p)
	defer srv.Close()

	cb, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer cb.Close()
	type rawNotify struct {
		head string
		body []byte
		err  error
	}
	got := make(chan rawNotify, 1)
	go func() {
		c, err := cb.Accept()
		if err != nil {
			got <- rawNotify{err: err}
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		br := bufio.NewReader(c)
		var head strings.Builder
		n := 0
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				got <- rawNotify{err: err}
				return
			}
			head.WriteString(line)
			if line == "\r\n" {
				break
			}
			if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(k, "Content-Length") {
				n, _ = strconv.Atoi(strings.TrimSpace(v))
			}
		}
		body := make([]byte, n)
		_, err = io.ReadFull(br, body)
		c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"))
		got <- rawNotify{head: head.String(), body: body, err: err}
	}()

	c, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "SUBSCRIBE %s HTTP/1.1\r\nHOST: %s\r\nCALLBACK: <http://%s/cb>\r\nNT: upnp:event\r\nTIMEOUT: Second-300\r\n\r\n",
		evtPath, srv.Listener.Addr(), cb.Addr())
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("SUBSCRIBE: %s", resp.Status)
	}
	if len(resp.TransferEncoding) != 0 || resp.ContentLength != 0 {
		t.Errorf("SUBSCRIBE response framed with %v, length %d; want Content-Length: 0", resp.TransferEncoding, resp.ContentLength)
	}
	sid := resp.Header.Get("SID")
	if _, err := ParseSID(sid); err != nil {
		t.Errorf("SID: %v", err)
	}
	if got := resp.Header.Get("TIMEOUT"); got != "Second-1800" {
		t.Errorf("TIMEOUT %q: the default minimum is the 1800 s UDA 1.1 recommends", got)
	}
	if _, err := nethttp.ParseTime(resp.Header.Get("DATE")); err != nil {
		t.Errorf("DATE: %v", err)
	}
	if s := resp.Header.Get("SERVER"); !strings.Contains(s, "UPnP/1.1") {
		t.Errorf("SERVER %q is not of the form OS/version UPnP/1.1 product/version", s)
	}

	n := <-got
	if n.err != nil {
		t.Fatalf("reading NOTIFY: %v", n.err)
	}
	for _, want := range []string{
		"NOTIFY /cb HTTP/1.1\r\n",
		"\r\nNT: upnp:event\r\n",
		"\r\nNTS: upnp:propchange\r\n",
		"\r\nSID: " + sid + "\r\n",
		"\r\nSEQ: 0\r\n",
		"\r\nCONTENT-TYPE: text/xml; charset=\"utf-8\"\r\n",
		"\r\nHost: " + cb.Addr().String() + "\r\n",
	} {
		if !strings.Contains(n.head, want) {
			t.Errorf("NOTIFY lacks %q:\n%s", want, n.head)
		}
	}
	if !bytes.Equal(n.body, AppendPropertySet(nil, st.get())) {
		t.Errorf("initial event body:\n%s\nwant every evented variable:\n%s", n.body, AppendPropertySet(nil, st.get()))
	}
}

func TestPublisherRefusals(t *testing.T) {
	cb := "<http://127.0.0.1:9/cb>"
	tests := []struct {
		name   string
		method string
		path   string
		hdr    map[string]string
		status int
	}{
		{"no NT", "SUBSCRIBE", evtPath, map[string]string{"CALLBACK": cb}, 412},
		{"wrong NT", "SUBSCRIBE", evtPath, map[string]string{"NT": "ssdp:alive", "CALLBACK": cb}, 412},
		{"no CALLBACK", "SUBSCRIBE", evtPath, map[string]string{"NT": "upnp:event"}, 412},
		{"CALLBACK without brackets", "SUBSCRIBE", evtPath, map[string]string{"NT": "upnp:event", "CALLBACK": "http://127.0.0.1:9/cb"}, 412},
		{"CALLBACK https", "SUBSCRIBE", evtPath, map[string]string{"NT": "upnp:event", "CALLBACK": "<https://127.0.0.1:9/cb>"}, 412},
		{"SID with NT", "SUBSCRIBE", evtPath, map[string]string{"SID": "uuid:x", "NT": "upnp:event"}, 400},
		{"SID with CALLBACK", "SUBSCRIBE", evtPath, map[string]string{"SID": "uuid:x", "CALLBACK": cb}, 400},
		{"renew unknown SID", "SUBSCRIBE", evtPath, map[string]string{"SID": "uuid:6f2c6d3e-1b7a-4c1e-9a53-2f9d0c1b2a3e"}, 412},
		{"renew malformed SID", "SUBSCRIBE", evtPath, map[string]string{"SID": "6f2c6d3e"}, 412},
		{"UNSUBSCRIBE without SID", "UNSUBSCRIBE", evtPath, nil, 412},
		{"UNSUBSCRIBE unknown SID", "UNSUBSCRIBE", evtPath, map[string]string{"SID": "uuid:nope"}, 412},
		{"UNSUBSCRIBE SID with NT", "UNSUBSCRIBE", evtPath, map[string]string{"SID": "uuid:nope", "NT": "upnp:event"}, 400},
		{"GET", "GET", evtPath, nil, 405},
		{"POST", "POST", evtPath, nil, 405},
		{"unknown path", "SUBSCRIBE", "/evt/Nope", map[string]string{"NT": "upnp:event", "CALLBACK": cb}, 404},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rt := &recorder{}
			p := newTestPublisher(t, PublisherConfig{Transport: rt})
			w := call(p, tc.method, tc.path, "127.0.0.1:40000", tc.hdr)
			if w.Code != tc.status {
				t.Errorf("status %d, want %d", w.Code, tc.status)
			}
			if tc.status == 405 && w.Header().Get("Allow") != "SUBSCRIBE, UNSUBSCRIBE" {
				t.Errorf("405 with Allow %q", w.Header().Get("Allow"))
			}
			if respHeader(w, "SID") != "" {
				t.Errorf("refusal carries SID %q", respHeader(w, "SID"))
			}
			p.Notify(evtPath, []Arg{{"PortMappingNumberOfEntries", "1"}})
			p.Close() // waits for any delivery
			if n := p.Subscribers(evtPath); n != 0 {
				t.Errorf("%d subscribers after a refusal", n)
			}
			if sent := rt.sent(); len(sent) != 0 {
				t.Errorf("refused subscription still got events: %q", sent)
			}
		})
	}
}

// TestPublisherCallStranger checks the CVE-2020-12695 rule: callback URLs
// must name the subscriber's own address. A refused subscription stores
// nothing, so no event ever reaches the victim, while a proper subscriber
// on the same publisher gets its events.
func TestPublisherCallStranger(t *testing.T) {
	legit := newSink(t, 200, nil)
	victim := newSink(t, 200, nil)
	p := newTestPublisher(t, PublisherConfig{})

	_, victimPort, _ := net.SplitHostPort(victim.srv.Listener.Addr().String())
	attacks := []struct {
		name   string
		remote string
		cb     string
	}{
		{"callback on another host", "127.0.0.2:5000", "<" + victim.url("/x") + ">"},
		{"DNS name for our own address", "127.0.0.1:5000", "<http://localhost:" + victimPort + "/x>"},
		{"own address first, victim second", "127.0.0.2:5000", "<http://127.0.0.2:9/x>" + "<" + victim.url("/x") + ">"},
		{"IPv6 source, IPv4 callback", "[::1]:5000", "<" + victim.url("/x") + ">"},
		{"no usable source address", "pipe", "<" + victim.url("/x") + ">"},
	}
	for _, a := range attacks {
		w := call(p, "SUBSCRIBE", evtPath, a.remote, map[string]string{"NT": "upnp:event", "CALLBACK": a.cb})
		if w.Code != http.StatusPreconditionFailed {
			t.Errorf("%s: status %d, want 412", a.name, w.Code)
		}
	}
	if n := p.Subscribers(evtPath); n != 0 {
		t.Fatalf("%d subscriptions stored from refused requests", n)
	}

	subscribe(t, p, legit.url("/cb"), "")
	if m := legit.next(t); m.seq != 0 {
		t.Fatalf("initial event SEQ %d", m.seq)
	}
	p.Notify(evtPath, []Arg{{"PortMappingNumberOfEntries", "1"}})
	if m := legit.next(t); m.seq != 1 {
		t.Fatalf("second event SEQ %d", m.seq)
	}
	// Both events reached the legitimate subscriber; anything sent to the
	// victim would have been sent alongside them.
	victim.none(t, 200*time.Millisecond)
	if n := victim.count.Load(); n != 0 {
		t.Errorf("victim received %d requests", n)
	}
}

func TestPublisherCallbackAddressForms(t *testing.T) {
	// Address forms that do name the subscriber, and must be accepted.
	tests := []struct {
		remote, cb string
	}{
		{"[::ffff:127.0.0.1]:5000", "<http://127.0.0.1:9/cb>"}, // IPv4 on a dual-stack socket
		{"127.0.0.1:5000", "<http://[::ffff:127.0.0.1]:9/cb>"},
		{"[fe80::1%eth0]:5000", "<http://[fe80::1%25eth0]:9/cb>"},
		{"[fe80::1%eth0]:5000", "<http://[fe80::1]:9/cb>"},
		{"127.0.0.1:5000", "<http://127.0.0.1:9/a><http://127.0.0.1:10/b>"},
	}
	for _, tc := range tests {
		rt := &recorder{}
		p := newTestPublisher(t, PublisherConfig{Transport: rt})
		w := call(p, "SUBSCRIBE", evtPath, tc.remote, map[string]string{"NT": "upnp:event", "CALLBACK": tc.cb})
		if w.Code != 200 {
			t.Errorf("from %s with CALLBACK %s: status %d, want 200", tc.remote, tc.cb, w.Code)
		}
		p.Close()
	}
}

func TestPublisherTimeout(t *testing.T) {
	tests := []struct {
		name     string
		min, max time.Duration
		timeout  string // "" for no header
		want     time.Duration
	}{
		{"defaults, short request", 0, 0, "Second-60", 1800 * time.Second},
		{"defaults, long request", 0, 0, "Second-86400", 1800 * time.Second},
		{"within range", 60 * time.Second, time.Hour, "Second-600", 600 * time.Second},
		{"below minimum", 60 * time.Second, time.Hour, "Second-5", 60 * time.Second},
		{"zero", 60 * time.Second, time.Hour, "Second-0", 60 * time.Second},
		{"above maximum", 60 * time.Second, time.Hour, "Second-99999", time.Hour},
		{"infinite is ignored (UDA 1.1)", 60 * time.Second, time.Hour, "Second-infinite", 1800 * time.Second},
		{"absent", 60 * time.Second, time.Hour, "", 1800 * time.Second},
		{"garbage", 60 * time.Second, time.Hour, "forever", 1800 * time.Second},
		{"absent, maximum below 1800", 10 * time.Second, 100 * time.Second, "", 100 * time.Second},
		{"maximum below minimum", 300 * time.Second, 100 * time.Second, "Second-100", 300 * time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				p := newTestPublisher(t, PublisherConfig{MinTimeout: tc.min, MaxTimeout: tc.max, Transport: &recorder{}})
				hdr := map[string]string{"NT": "upnp:event", "CALLBACK": "<http://127.0.0.1:9/>"}
				if tc.timeout != "" {
					hdr["TIMEOUT"] = tc.timeout
				}
				w := call(p, "SUBSCRIBE", evtPath, "127.0.0.1:1", hdr)
				if got, want := respHeader(w, "TIMEOUT"), FormatTimeout(tc.want); got != want {
					t.Fatalf("TIMEOUT %q, want %q", got, want)
				}
				// The subscription lasts exactly what was granted.
				advance(tc.want - time.Second)
				if n := p.Subscribers(evtPath); n != 1 {
					t.Fatalf("%d subscribers a second before expiry", n)
				}
				advance(time.Second)
				if n := p.Subscribers(evtPath); n != 0 {
					t.Fatalf("%d subscribers at expiry", n)
				}
			})
		})
	}
}

func TestPublisherRenewUnsubscribeExpiry(t *testing.T) {
	synctest.Test(t, testPublisherRenewUnsubscribeExpiry)
}

func testPublisherRenewUnsubscribeExpiry(t *testing.T) {
	rt := &recorder{}
	p := newTestPublisher(t, PublisherConfig{MinTimeout: 10 * time.Second, MaxTimeout: time.Hour, Transport: rt})
	sid := subscribe(t, p, "http://127.0.0.1:9/cb", "Second-100")
	// The initial event goes out on its own goroutine: wait for it, or it
	// may count below as an event after expiry.
	rt.waitSent(t, 1)

	advance(90 * time.Second)
	w := call(p, "SUBSCRIBE", evtPath, "127.0.0.1:40001", map[string]string{"SID": sid, "TIMEOUT": "Second-100"})
	if w.Code != 200 || respHeader(w, "SID") != sid || respHeader(w, "TIMEOUT") != "Second-100" {
		t.Fatalf("renewal: %d SID %q TIMEOUT %q", w.Code, respHeader(w, "SID"), respHeader(w, "TIMEOUT"))
	}
	advance(90 * time.Second) // 180 s after subscribing: alive only thanks to the renewal
	if n := p.Subscribers(evtPath); n != 1 {
		t.Fatalf("%d subscribers after renewal", n)
	}
	if w := call(p, "SUBSCRIBE", "/evt/Other", "127.0.0.1:1", map[string]string{"SID": sid}); w.Code != 412 {
		t.Errorf("renewal on another event path: %d, want 412", w.Code)
	}
	advance(10 * time.Second)
	if n := p.Subscribers(evtPath); n != 0 {
		t.Fatalf("%d subscribers after expiry", n)
	}
	if w := call(p, "SUBSCRIBE", evtPath, "127.0.0.1:1", map[string]string{"SID": sid}); w.Code != 412 {
		t.Errorf("renewal after expiry: %d, want 412", w.Code)
	}
	before := len(rt.sent())
	p.Notify(evtPath, []Arg{{"PortMappingNumberOfEntries", "9"}})
	p.Close()
	if sent := rt.sent(); len(sent) != before {
		t.Errorf("expired subscription got events: %q", sent[before:])
	}

	// UNSUBSCRIBE ends a subscription at once; a second one is refused.
	p = newTestPublisher(t, PublisherConfig{Transport: rt})
	sid = subscribe(t, p, "http://127.0.0.1:9/cb", "")
	if w := call(p, "UNSUBSCRIBE", "/evt/Other", "127.0.0.1:1", map[string]string{"SID": sid}); w.Code != 412 {
		t.Errorf("UNSUBSCRIBE on another event path: %d, want 412", w.Code)
	}
	if w := call(p, "UNSUBSCRIBE", evtPath, "127.0.0.1:1", map[string]string{"SID": sid}); w.Code != 200 {
		t.Fatalf("UNSUBSCRIBE: %d", w.Code)
	}
	if n := p.Subscribers(evtPath); n != 0 {
		t.Errorf("%d subscribers after UNSUBSCRIBE", n)
	}
	for _, m := range []string{"UNSUBSCRIBE", "SUBSCRIBE"} {
		if w := call(p, m, evtPath, "127.0.0.1:1", map[string]string{"SID": sid}); w.Code != 412 {
			t.Errorf("%s after UNSUBSCRIBE: %d, want 412", m, w.Code)
		}
	}
}

func TestPublisherCaps(t *testing.T) { synctest.Test(t, testPublisherCaps) }

func testPublisherCaps(t *testing.T) {
	p := newTestPublisher(t, PublisherConfig{MaxPerClient: 2, MaxTotal: 3, Transport: &recorder{}})
	sub := func(ip string) (int, string) {
		w := call(p, "SUBSCRIBE", evtPath, ip+":1000", map[string]string{"NT": "upnp:event", "CALLBACK": "<http://" + ip + ":9/>"})
		return w.Code, respHeader(w, "SID")
	}
	var sids []string
	for i, step := range []struct {
		ip   string
		want int
	}{
		{"10.0.0.1", 200},
		{"10.0.0.1", 200},
		{"10.0.0.1", 503}, // per client
		{"10.0.0.2", 200},
		{"10.0.0.2", 503}, // total: every host holds about as many
		{"10.0.0.3", 200}, // total, but 10.0.0.1 holds more: its oldest goes
	} {
		code, sid := sub(step.ip)
		if code != step.want {
			t.Fatalf("step %d from %s: %d, want %d", i, step.ip, code, step.want)
		}
		if sid != "" {
			sids = append(sids, sid)
		}
	}
	// 10.0.0.1's first subscription made room for 10.0.0.3.
	if w := call(p, "SUBSCRIBE", evtPath, "10.0.0.1:1000", map[string]string{"SID": sids[0]}); w.Code != 412 {
		t.Errorf("renewing the evicted subscription: %d, want 412", w.Code)
	}
	// A canceled subscription frees its slot.
	if w := call(p, "UNSUBSCRIBE", evtPath, "10.0.0.1:1000", map[string]string{"SID": sids[1]}); w.Code != 200 {
		t.Fatalf("UNSUBSCRIBE: %d", w.Code)
	}
	if code, _ := sub("10.0.0.4"); code != 200 {
		t.Fatalf("after UNSUBSCRIBE: %d, want 200", code)
	}
	// Expired ones do too.
	advance(DefaultMaxTimeout)
	for _, ip := range []string{"10.0.0.4", "10.0.0.4", "10.0.0.5"} {
		if code, _ := sub(ip); code != 200 {
			t.Fatalf("after expiry, from %s: %d, want 200", ip, code)
		}
	}
}

// A few hosts cannot fill the table: 8 hosts each at the per-host cap
// fill the default 128 only with 16 hosts, and even a full table takes a
// newcomer in, at the expense of the host holding the most.
func TestPublisherTotalCannotBeFilledByFewHosts(t *testing.T) {
	p := newTestPublisher(t, PublisherConfig{Transport: &recorder{}})
	sub := func(ip string) int {
		return call(p, "SUBSCRIBE", evtPath, ip+":1000", map[string]string{"NT": "upnp:event", "CALLBACK": "<http://" + ip + ":9/>"}).Code
	}
	refused := 0
	for h := range 8 {
		for range 16 {
			if sub(fmt.Sprintf("10.0.0.%d", h+1)) != 200 {
				refused++
			}
		}
	}
	if refused != 8*(16-DefaultMaxPerClient) {
		t.Errorf("%d of 8 hosts' 16 subscriptions refused, want all beyond the per-host cap of %d", refused, DefaultMaxPerClient)
	}
	// 120 more hosts, one subscription each, all get in: the 8 give way
	// down to one each, and then the table holds one per host.
	for h := range DefaultMaxSubscribers - 8 {
		if code := sub(fmt.Sprintf("10.1.0.%d", h+1)); code != 200 {
			t.Fatalf("host %d of a crowd: %d, want 200", h, code)
		}
	}
	if n := p.Subscribers(evtPath); n != DefaultMaxSubscribers {
		t.Errorf("%d subscribers, want the cap %d", n, DefaultMaxSubscribers)
	}
	if code := sub("10.2.0.1"); code != 503 {
		t.Errorf("with one subscription per host in a full table: %d, want 503", code)
	}
}

// A subscription is bound to its subscriber's address: another host that
// knows its SID can neither renew nor cancel it.
func TestPublisherSIDIsBoundToItsSubscriber(t *testing.T) {
	p := newTestPublisher(t, PublisherConfig{Transport: &recorder{}})
	sid := subscribe(t, p, "http://127.0.0.1:9/cb", "")
	for _, m := range []string{"SUBSCRIBE", "UNSUBSCRIBE"} {
		if w := call(p, m, evtPath, "127.0.0.2:1", map[string]string{"SID": sid}); w.Code != 412 {
			t.Errorf("%s with the SID from another host: %d, want 412", m, w.Code)
		}
	}
	if n := p.Subscribers(evtPath); n != 1 {
		t.Fatalf("%d subscribers after another host's attempts, want 1", n)
	}
	if w := call(p, "SUBSCRIBE", evtPath, "127.0.0.1:2", map[string]string{"SID": sid}); w.Code != 200 {
		t.Errorf("renewal by the subscriber: %d", w.Code)
	}
}

// A SUBSCRIBE answer carries SERVER and DATE once each, even behind a
// handler that sets Server for every response.
func TestPublisherAnswerHasEachHeaderOnce(t *testing.T) {
	p := newTestPublisher(t, PublisherConfig{Transport: &recorder{}})
	srv := httpxtest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Server", "front/1")
		p.ServeHTTP(w, r)
	}))
	defer srv.Close()
	c, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	host := srv.Listener.Addr().String()
	cb := "http://127.0.0.1:9/"
	fmt.Fprintf(c, "SUBSCRIBE %s HTTP/1.1\r\nHost: %s\r\nNT: upnp:event\r\nCALLBACK: <%s>\r\nTIMEOUT: Second-1800\r\n\r\n", evtPath, host, cb)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	count := map[string]int{}
	for k, v := range resp.Header {
		count[strings.ToUpper(k)] += len(v)
	}
	for _, h := range []string{"SERVER", "DATE", "SID", "TIMEOUT"} {
		if count[h] != 1 {
			t.Errorf("%s sent %d times: %v", h, count[h], resp.Header)
		}
	}
}

func TestPublisherInitialEvent(t *testing.T) {
	st := &state{vars: []Arg{{"PortMappingNumberOfEntries", "0"}, {"ExternalIPAddress", "192.0.2.1"}}}
	p := newTestPublisher(t, PublisherConfig{Services: map[string]func() []Arg{evtPath: st.get}})
	a := newSink(t, 200, nil)
	b := newSink(t, 200, nil)

	sidA := subscribe(t, p, a.url("/a"), "")
	m := a.next(t)
	if m.seq != 0 || m.sid != sidA || m.path != "/a" || !reflect.DeepEqual(m.vars, st.get()) {
		t.Fatalf("initial event: SEQ %d SID %q path %q vars %q; want SEQ 0, %q, /a, %q", m.seq, m.sid, m.path, m.vars, sidA, st.get())
	}
	if got := m.header.Get("NTS"); got != NTSPropChange {
		t.Errorf("NTS %q", got)
	}

	// A later subscriber's initial event has the state of its time, and
	// every variable, not only the changed one.
	st.set(Arg{"PortMappingNumberOfEntries", "1"}, Arg{"ExternalIPAddress", "192.0.2.1"})
	p.Notify(evtPath, []Arg{{"PortMappingNumberOfEntries", "1"}})
	if m := a.next(t); m.seq != 1 || !reflect.DeepEqual(m.vars, []Arg{{"PortMappingNumberOfEntries", "1"}}) {
		t.Fatalf("change event: SEQ %d vars %q", m.seq, m.vars)
	}
	sidB := subscribe(t, p, b.url("/b"), "")
	if sidB == sidA {
		t.Fatal("two subscriptions share a SID")
	}
	if m := b.next(t); m.seq != 0 || m.sid != sidB || !reflect.DeepEqual(m.vars, st.get()) {
		t.Fatalf("second initial event: SEQ %d SID %q vars %q", m.seq, m.sid, m.vars)
	}
	a.none(t, 50*time.Millisecond)
}

func TestPublisherModeration(t *testing.T) { synctest.Test(t, testPublisherModeration) }

func testPublisherModeration(t *testing.T) {
	s := newMemSink()
	p := newTestPublisher(t, PublisherConfig{Moderation: 200 * time.Millisecond, Transport: s})
	subscribe(t, p, "http://127.0.0.1:9/cb", "")
	if m := s.next(t); m.seq != 0 {
		t.Fatalf("initial event SEQ %d", m.seq) // not moderated
	}

	for i := 1; i <= 10; i++ {
		changed := []Arg{{"PortMappingNumberOfEntries", strconv.Itoa(i)}}
		if i == 4 {
			changed = append(changed, Arg{"ExternalIPAddress", "198.51.100.4"})
		}
		p.Notify(evtPath, changed)
	}
	advance(199 * time.Millisecond)
	s.none(t)
	advance(time.Millisecond)
	m := s.next(t)
	want := []Arg{{"PortMappingNumberOfEntries", "10"}, {"ExternalIPAddress", "198.51.100.4"}}
	if m.seq != 1 || !reflect.DeepEqual(m.vars, want) {
		t.Fatalf("moderated event: SEQ %d vars %q; want SEQ 1 %q", m.seq, m.vars, want)
	}

	// The next window starts afresh; its event is SEQ 2, proving the burst
	// produced a single event.
	p.Notify(evtPath, []Arg{{"PortMappingNumberOfEntries", "11"}})
	advance(200 * time.Millisecond)
	if m := s.next(t); m.seq != 2 || !reflect.DeepEqual(m.vars, []Arg{{"PortMappingNumberOfEntries", "11"}}) {
		t.Fatalf("next event: SEQ %d vars %q", m.seq, m.vars)
	}
	// Other paths have windows of their own and no subscribers here.
	p.Notify("/evt/Other", []Arg{{"A", "1"}})
	advance(time.Second)
	s.none(t)
}

func TestPublisherSeqWrap(t *testing.T) {
	p := newTestPublisher(t, PublisherConfig{})
	s := newSink(t, 200, nil)
	sid := subscribe(t, p, s.url("/cb"), "")
	if m := s.next(t); m.seq != 0 {
		t.Fatalf("initial SEQ %d", m.seq)
	}
	p.mu.Lock()
	p.subs[sid].seq = math.MaxUint32 - 1
	p.mu.Unlock()
	for _, want := range []uint32{math.MaxUint32 - 1, math.MaxUint32, 1, 2} {
		p.Notify(evtPath, []Arg{{"PortMappingNumberOfEntries", strconv.Itoa(int(want))}})
		if m := s.next(t); m.seq != want {
			t.Fatalf("SEQ %d, want %d", m.seq, want)
		}
	}
}

// waitFor polls cond for up to five seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

func TestPublisherFailedDelivery(t *testing.T) {
	t.Run("error status drops the subscription", func(t *testing.T) {
		p := newTestPublisher(t, PublisherConfig{})
		s := newSink(t, http.StatusInternalServerError, nil)
		sid := subscribe(t, p, s.url("/cb"), "")
		s.next(t)
		waitFor(t, "the subscription to be dropped", func() bool { return p.Subscribers(evtPath) == 0 })
		if w := call(p, "SUBSCRIBE", evtPath, "127.0.0.1:1", map[string]string{"SID": sid}); w.Code != 412 {
			t.Errorf("renewal of a dropped subscription: %d, want 412", w.Code)
		}
		p.Notify(evtPath, []Arg{{"A", "1"}})
		s.none(t, 100*time.Millisecond)
	})
	t.Run("unreachable callback drops the subscription", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close() // nothing listens there now
		p := newTestPublisher(t, PublisherConfig{})
		subscribe(t, p, "http://"+addr+"/cb", "")
		waitFor(t, "the subscription to be dropped", func() bool { return p.Subscribers(evtPath) == 0 })
	})
	t.Run("next callback URL is tried", func(t *testing.T) {
		p := newTestPublisher(t, PublisherConfig{})
		bad := newSink(t, http.StatusNotFound, nil)
		good := newSink(t, 200, nil)
		w := call(p, "SUBSCRIBE", evtPath, "127.0.0.1:1", map[string]string{
			"NT": "upnp:event", "CALLBACK": "<" + bad.url("/1") + "><" + good.url("/2") + ">",
		})
		if w.Code != 200 {
			t.Fatalf("SUBSCRIBE: %d", w.Code)
		}
		for _, want := range []uint32{0, 1} {
			if want == 1 {
				p.Notify(evtPath, []Arg{{"A", "1"}})
			}
			if m := bad.next(t); m.seq != want {
				t.Fatalf("first URL got SEQ %d, want %d", m.seq, want)
			}
			if m := good.next(t); m.seq != want || m.path != "/2" {
				t.Fatalf("second URL got SEQ %d at %s, want %d", m.seq, m.path, want)
			}
		}
		if n := p.Subscribers(evtPath); n != 1 {
			t.Errorf("%d subscribers; one accepting URL is enough", n)
		}
	})
}

func TestPublisherSlowSubscriber(t *testing.T) {
	p := newTestPublisher(t, PublisherConfig{DeliveryTimeout: 30 * time.Second})
	hold := make(chan struct{})
	slow := newSink(t, 200, hold)
	fast := newSink(t, 200, nil)
	subscribe(t, p, slow.url("/slow"), "")
	subscribe(t, p, fast.url("/fast"), "")
	waitFor(t, "the slow subscriber's initial event to be in flight", func() bool { return slow.count.Load() == 1 })

	if m := fast.next(t); m.seq != 0 {
		t.Fatalf("fast initial SEQ %d", m.seq)
	}
	// Many changes while the slow subscriber is stuck: the fast one gets
	// each at once; the slow one's queue stays bounded.
	const changes = 3 * maxQueued
	for i := 1; i <= changes; i++ {
		p.Notify(evtPath, []Arg{{"PortMappingNumberOfEntries", strconv.Itoa(i)}, {"X_" + strconv.Itoa(i%3), "v"}})
		if m := fast.next(t); m.seq != uint32(i) {
			t.Fatalf("fast SEQ %d, want %d", m.seq, i)
		}
	}
	p.mu.Lock()
	queued := 0
	for _, s := range p.subs {
		queued = max(queued, len(s.queue))
	}
	p.mu.Unlock()
	if queued > maxQueued {
		t.Errorf("%d events queued for the slow subscriber, bound is %d", queued, maxQueued)
	}

	close(hold)
	var last notifyMsg
	n := 0
	for want := uint32(0); want <= changes; want++ {
		m := slow.next(t)
		if m.seq != want {
			t.Fatalf("slow SEQ %d, want %d", m.seq, want)
		}
		n++
		last = m
		if v, _ := Args(m.vars).Get("PortMappingNumberOfEntries"); v == strconv.Itoa(changes) {
			break
		}
	}
	if n > maxQueued+1 {
		t.Errorf("slow subscriber got %d events; coalescing should bound them to %d", n, maxQueued+1)
	}
	for _, name := range []string{"X_0", "X_1", "X_2"} {
		if _, ok := Args(last.vars).Get(name); !ok {
			// Each of these changed in the last few events, all merged
			// into the last queued one.
			t.Errorf("last coalesced event lacks %s: %q", name, last.vars)
		}
	}
	slow.none(t, 100*time.Millisecond)
}

func TestPublisherClose(t *testing.T) {
	p := NewPublisher(PublisherConfig{
		Services:        map[string]func() []Arg{evtPath: func() []Arg { return nil }},
		DeliveryTimeout: time.Minute,
	})
	hold := make(chan struct{})
	defer close(hold)
	slow := newSink(t, 200, hold)
	subscribe(t, p, slow.url("/cb"), "")
	waitFor(t, "a delivery in flight", func() bool { return slow.count.Load() == 1 })

	done := make(chan struct{})
	go func() { p.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not abort a delivery in flight")
	}
	if w := call(p, "SUBSCRIBE", evtPath, "127.0.0.1:1", map[string]string{"NT": "upnp:event", "CALLBACK": "<" + slow.url("/cb") + ">"}); w.Code != 503 {
		t.Errorf("SUBSCRIBE after Close: %d, want 503", w.Code)
	}
	p.Notify(evtPath, []Arg{{"A", "1"}}) // must not panic or start anything
	if n := p.Subscribers(evtPath); n != 0 {
		t.Errorf("%d subscribers after Close", n)
	}
	p.Close() // idempotent
}

func TestPublisherChangeDuringSubscribe(t *testing.T) {
	// A change reported while the initial state is being read (here, by
	// the state function itself) must reach the new subscriber after the
	// initial event, never before it or not at all.
	var p *Publisher
	var once sync.Once
	st := &state{vars: []Arg{{"PortMappingNumberOfEntries", "0"}, {"ExternalIPAddress", "192.0.2.1"}}}
	p = newTestPublisher(t, PublisherConfig{Services: map[string]func() []Arg{evtPath: func() []Arg {
		once.Do(func() {
			st.set(Arg{"PortMappingNumberOfEntries", "1"}, Arg{"ExternalIPAddress", "192.0.2.1"})
			p.Notify(evtPath, []Arg{{"PortMappingNumberOfEntries", "1"}})
		})
		return st.get()
	}}})
	s := newSink(t, 200, nil)
	subscribe(t, p, s.url("/cb"), "")
	if m := s.next(t); m.seq != 0 || !reflect.DeepEqual(m.vars, st.get()) {
		t.Fatalf("first event SEQ %d %q, want the initial one", m.seq, m.vars)
	}
	if m := s.next(t); m.seq != 1 || !reflect.DeepEqual(m.vars, []Arg{{"PortMappingNumberOfEntries", "1"}}) {
		t.Fatalf("second event SEQ %d %q, want the change", m.seq, m.vars)
	}
}
