package httpserve

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	nethttp "net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	http "github.com/portfwd/portfwd/internal/httpx"
)

// pipeListener hands the server the server ends of net.Pipe connections.
type pipeListener struct {
	conns     chan net.Conn
	closeOnce sync.Once
	done      chan struct{}
}

func newPipeListener() *pipeListener {
	return &pipeListener{conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return nil
}

func (l *pipeListener) Addr() net.Addr { return pipeAddr{} }

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "pipe" }

// dial returns the client end of a new connection to the server.
func (l *pipeListener) dial(t testing.TB) net.Conn {
	client, server := net.Pipe()
	select {
	case l.conns <- server:
	case <-time.After(5 * time.Second):
		t.Fatal("the server accepted no connection")
	}
	return client
}

// serve runs s on a pipe listener until the test ends.
func serve(t testing.TB, s *Server) *pipeListener {
	l := newPipeListener()
	errc := make(chan error, 1)
	go func() { errc <- s.Serve(l) }()
	t.Cleanup(func() {
		s.Close()
		if err := <-errc; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
	})
	return l
}

// exchange sends raw on a new connection and returns all the server
// wrote until it closed the connection (or 5 s passed).
func exchange(t testing.TB, l *pipeListener, raw string) string {
	t.Helper()
	c := l.dial(t)
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	go io.WriteString(c, raw) // the server may stop reading: not waited for
	b, _ := io.ReadAll(c)
	return string(b)
}

// testHandler answers what the tests ask of it by path.
func testHandler(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/echo":
		b, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		fmt.Fprintf(w, "%s %s host=%s len=%d body=%s", r.Method, r.URL.Path, r.Host, len(b), b)
	case "/html":
		io.WriteString(w, "<!DOCTYPE html><p>hi</p>")
	case "/nobody":
		w.WriteHeader(http.StatusNoContent)
	case "/unread":
		io.WriteString(w, "not read")
	case "/short":
		w.Header().Set("Content-Length", "10")
		io.WriteString(w, "abc")
	case "/nodate":
		w.Header()["Date"] = nil
		w.Header()["SID"] = []string{"uuid:1"}
		w.Header().Set("Content-Length", "0")
		w.WriteHeader(http.StatusOK)
	case "/panic":
		panic("handler bug")
	case "/stream":
		rc := http.NewResponseController(w)
		for i := range 3 {
			fmt.Fprintf(w, "event %d\n", i)
			if err := rc.Flush(); err != nil {
				return
			}
		}
	case "/big":
		io.WriteString(w, strings.Repeat("x", bufferSize+10))
	case "/local":
		io.WriteString(w, r.Context().Value(http.LocalAddrContextKey).(net.Addr).String())
	default:
		http.NotFound(w, r)
	}
}

// answer is one HTTP answer read back.
type answer struct {
	status int
	header nethttp.Header
	body   string
	close  bool // Connection: close (which ReadResponse takes out of the header)
}

// answers parses every answer in raw, for a request of method.
func answers(t testing.TB, raw, method string) []answer {
	t.Helper()
	br := bufio.NewReader(strings.NewReader(raw))
	var out []answer
	for {
		if _, err := br.Peek(1); err != nil {
			return out
		}
		resp, err := nethttp.ReadResponse(br, &nethttp.Request{Method: method})
		if err != nil {
			t.Fatalf("answer %d does not parse: %v\n%s", len(out)+1, err, raw)
		}
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("answer %d: body: %v\n%s", len(out)+1, err, raw)
		}
		out = append(out, answer{resp.StatusCode, resp.Header, string(b), resp.Close})
	}
}

// tryAnswers is answers, reporting a failure instead of failing.
func tryAnswers(raw, method string) (out []answer, ok bool) {
	br := bufio.NewReader(strings.NewReader(raw))
	for {
		if _, err := br.Peek(1); err != nil {
			return out, true
		}
		resp, err := nethttp.ReadResponse(br, &nethttp.Request{Method: method})
		if err != nil {
			return nil, false
		}
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			return nil, false
		}
		out = append(out, answer{resp.StatusCode, resp.Header, string(b), resp.Close})
	}
}

// wantAnswer is an answer a test expects: status, the headers named
// (value "" = absent), body.
type wantAnswer struct {
	status int
	header nethttp.Header
	body   string
}

func host(path string) string {
	return "GET " + path + " HTTP/1.1\r\nHost: 192.168.1.1:5000\r\n"
}

// TestServeAnswers: what the server answers for each kind of request, as
// net/http's server answers it.
func TestServeAnswers(t *testing.T) {
	l := serve(t, &Server{Handler: http.HandlerFunc(testHandler), MaxHeaderBytes: 1024, ReadHeaderTimeout: 2 * time.Second})
	for _, tc := range []struct {
		name, raw, method string
		want              []wantAnswer // status, the headers named (value "" = absent), body
		open              bool         // the connection stays open after the answers
	}{
		{name: "GET: buffered, with Content-Length, Date and a sniffed type",
			raw:  host("/html") + "\r\n",
			want: []wantAnswer{{200, nethttp.Header{"Content-Length": {"24"}, "Content-Type": {"text/html; charset=utf-8"}, "Connection": {""}}, "<!DOCTYPE html><p>hi</p>"}},
			open: true},
		{name: "HEAD: the headers only, with the length GET would have",
			raw: "HEAD /html HTTP/1.1\r\nHost: h\r\n\r\n", method: "HEAD",
			want: []wantAnswer{{200, nethttp.Header{"Content-Length": {"24"}, "Content-Type": {"text/html; charset=utf-8"}}, ""}},
			open: true},
		{name: "HTTP/1.0: answered, then closed",
			raw:  "GET /echo HTTP/1.0\r\n\r\n",
			want: []wantAnswer{{200, nethttp.Header{"Content-Length": {"27"}}, "GET /echo host= len=0 body="}}},
		{name: "Connection: close",
			raw:  host("/echo") + "Connection: close\r\n\r\n",
			want: []wantAnswer{{200, nethttp.Header{"Connection": {"close"}}, "GET /echo host=192.168.1.1:5000 len=0 body="}}},
		{name: "a body with Content-Length",
			raw:  "POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello",
			want: []wantAnswer{{200, nil, "POST /echo host=h len=5 body=hello"}}, open: true},
		{name: "a chunked body",
			raw:  "POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhel\r\n2\r\nlo\r\n0\r\n\r\n",
			want: []wantAnswer{{200, nil, "POST /echo host=h len=5 body=hello"}}, open: true},
		{name: "a chunked body cut short: the handler's error, then closed",
			raw:  "POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
			want: []wantAnswer{{400, nethttp.Header{"Connection": {"close"}}, "invalid byte in chunk length\n"}}},
		{name: "pipelined requests: answered in order on one connection",
			raw:  host("/echo") + "\r\n" + "POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nhi" + host("/html") + "\r\n",
			want: []wantAnswer{{200, nil, "GET /echo host=192.168.1.1:5000 len=0 body="}, {200, nil, "POST /echo host=h len=2 body=hi"}, {200, nil, "<!DOCTYPE html><p>hi</p>"}},
			open: true},
		{name: "Expect: 100-continue",
			raw:  "POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\nhi",
			want: []wantAnswer{{100, nil, ""}, {200, nil, "POST /echo host=h len=2 body=hi"}}, open: true},
		{name: "another expectation: 417",
			raw:  "POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\nExpect: fly\r\n\r\nhi",
			want: []wantAnswer{{417, nethttp.Header{"Connection": {"close"}}, ""}}},
		{name: "a body the handler left unread: closed after the answer",
			raw:  "POST /unread HTTP/1.1\r\nHost: h\r\nContent-Length: 100000\r\n\r\nxx",
			want: []wantAnswer{{200, nethttp.Header{"Connection": {"close"}}, "not read"}}},
		{name: "204: no body, no length",
			raw:  host("/nobody") + "\r\n",
			want: []wantAnswer{{204, nethttp.Header{"Content-Length": {""}}, ""}}, open: true},
		{name: "a nil header value suppresses the server's (GENA's DATE)",
			raw:  host("/nodate") + "\r\n",
			want: []wantAnswer{{200, nethttp.Header{"Date": {""}, "Sid": {"uuid:1"}, "Content-Length": {"0"}}, ""}}, open: true},
		{name: "an answer shorter than its Content-Length: closed",
			raw:  host("/short") + "\r\n",
			want: nil}, // unparsable by design: 3 of 10 bytes, then the close
		{name: "flushed: chunked",
			raw:  host("/stream") + "\r\n",
			want: []wantAnswer{{200, nethttp.Header{"Transfer-Encoding": {""}, "Content-Length": {""}}, "event 0\nevent 1\nevent 2\n"}}, open: true},
		{name: "longer than the buffer: streamed",
			raw:  host("/big") + "\r\n",
			want: []wantAnswer{{200, nethttp.Header{"Content-Length": {""}}, strings.Repeat("x", bufferSize+10)}}, open: true},
		{name: "the request's context holds the local address",
			raw:  host("/local") + "\r\n",
			want: []wantAnswer{{200, nil, "pipe"}}, open: true},
		{name: "a handler's panic: 500, closed",
			raw:  host("/panic") + "\r\n",
			want: []wantAnswer{{500, nethttp.Header{"Connection": {"close"}}, "500 Internal Server Error\n"}}},
		{name: "a bad request line: 400",
			raw:  "GARBAGE\r\n\r\n",
			want: []wantAnswer{{400, nethttp.Header{"Connection": {"close"}}, "400 Bad Request"}}},
		{name: "HTTP/1.1 without Host: 400",
			raw:  "GET / HTTP/1.1\r\n\r\n",
			want: []wantAnswer{{400, nil, "400 Bad Request: missing required Host header"}}},
		{name: "a malformed Host: 400",
			raw:  "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n",
			want: []wantAnswer{{400, nil, "400 Bad Request: malformed Host header"}}},
		{name: "HTTP/2.0 over HTTP/1 framing: 505",
			raw:  "GET / HTTP/2.0\r\nHost: h\r\n\r\n",
			want: []wantAnswer{{505, nil, "505 HTTP Version Not Supported: unsupported protocol version"}}},
		{name: "an unknown transfer coding: 501",
			raw:  "POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n",
			want: []wantAnswer{{501, nil, "Unsupported transfer encoding"}}},
		{name: "a header over MaxHeaderBytes: 431",
			raw:  host("/echo") + "X-Big: " + strings.Repeat("a", 6000) + "\r\n\r\n",
			want: []wantAnswer{{431, nil, "431 Request Header Fields Too Large"}}},
		{name: "a control character in a header value: 400",
			raw:  host("/echo") + "X-Bad: a\x01b\r\n\r\n",
			want: []wantAnswer{{400, nil, "400 Bad Request"}}},
		{name: "a space in a header name: 400",
			raw:  host("/echo") + "X Bad: a\r\n\r\n",
			want: []wantAnswer{{400, nil, "400 Bad Request: invalid header name"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := l.dial(t)
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			go io.WriteString(c, tc.raw)
			// Read the answers wanted, then see whether the server closed.
			br := bufio.NewReader(c)
			method := cmpOr(tc.method, "GET")
			if tc.want == nil { // /short: the header, 3 bytes, then the close
				resp, err := nethttp.ReadResponse(br, nil)
				if err != nil {
					t.Fatal(err)
				}
				b, err := io.ReadAll(resp.Body)
				if string(b) != "abc" || !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Errorf("body %q, %v; want abc, then the connection closed", b, err)
				}
				return
			}
			for i, want := range tc.want {
				resp, err := nethttp.ReadResponse(br, &nethttp.Request{Method: method})
				if err != nil {
					t.Fatalf("answer %d: %v", i+1, err)
				}
				b, _ := io.ReadAll(resp.Body)
				if resp.StatusCode != want.status || string(b) != want.body {
					t.Errorf("answer %d: %d %q, want %d %q", i+1, resp.StatusCode, b, want.status, want.body)
				}
				for k, v := range want.header {
					if k == "Connection" {
						if resp.Close != (v[0] == "close") {
							t.Errorf("answer %d: Connection: close %v, want %v", i+1, resp.Close, v[0] == "close")
						}
						continue
					}
					if got := resp.Header.Get(k); got != v[0] {
						t.Errorf("answer %d: %s: %q, want %q", i+1, k, got, v[0])
					}
				}
				if resp.StatusCode != 200 && resp.StatusCode != 100 && resp.StatusCode != 204 {
					if ct := resp.Header.Get("Content-Type"); want.body != "" && ct != "text/plain; charset=utf-8" {
						t.Errorf("answer %d: Content-Type %q", i+1, ct)
					}
				}
				if resp.StatusCode == 200 && resp.Header.Get("Date") == "" && want.header.Get("Sid") == "" {
					t.Errorf("answer %d has no Date", i+1)
				}
			}
			// Open: a further request is answered. Closed: EOF.
			if tc.open {
				go io.WriteString(c, host("/echo")+"\r\n")
				resp, err := nethttp.ReadResponse(br, nil)
				if err != nil || resp.StatusCode != 200 {
					t.Errorf("a further request on the connection: %v %v", resp, err)
				}
			} else if _, err := br.ReadByte(); err != io.EOF {
				t.Errorf("the connection is still open (%v), want it closed", err)
			}
		})
	}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// TestMaxRequestsPerConn: the last request a connection may carry is
// answered with Connection: close.
func TestMaxRequestsPerConn(t *testing.T) {
	l := serve(t, &Server{Handler: http.HandlerFunc(testHandler), MaxRequestsPerConn: 2})
	got := answers(t, exchange(t, l, strings.Repeat(host("/echo")+"\r\n", 3)), "GET")
	if len(got) != 2 || got[0].close || !got[1].close {
		t.Errorf("%d answers (%+v), want 2, the second with Connection: close", len(got), got)
	}
}

// TestSlowHeaderClosed: a client that dribbles its header (slowloris) is
// closed ReadHeaderTimeout after its first byte, without an answer, and
// so is one that sends nothing.
func TestSlowHeaderClosed(t *testing.T) {
	l := serve(t, &Server{Handler: http.HandlerFunc(testHandler), ReadHeaderTimeout: 100 * time.Millisecond, ReadTimeout: time.Minute})
	for _, start := range []string{"", "GET / HTTP/1.1\r\nX-a: "} {
		c := l.dial(t)
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if start != "" {
			io.WriteString(c, start)
		}
		// Dribble a byte at a time until the server stops reading.
		done := make(chan struct{})
		go func() {
			defer close(done)
			for start != "" {
				if _, err := c.Write([]byte("a")); err != nil {
					return
				}
			}
		}()
		b, err := io.ReadAll(c)
		c.Close()
		<-done
		if len(b) != 0 || err != nil {
			t.Errorf("after %q: read %q (%v), want the connection closed without a word", start, b, err)
		}
	}
}

// TestBodyTimeout: a body slower than ReadTimeout fails the handler's read.
func TestBodyTimeout(t *testing.T) {
	l := serve(t, &Server{Handler: http.HandlerFunc(testHandler), ReadTimeout: 200 * time.Millisecond})
	c := l.dial(t)
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 5000\r\n\r\nonly this")
	got := answers(t, readAll(c), "POST")
	if len(got) != 1 || got[0].status != 400 || !got[0].close {
		t.Errorf("answers %+v, want one 400 with Connection: close", got)
	}
}

func readAll(c net.Conn) string {
	b, _ := io.ReadAll(c)
	return string(b)
}

// TestIdleClosed: a kept-alive connection with no further request is
// closed after IdleTimeout.
func TestIdleClosed(t *testing.T) {
	l := serve(t, &Server{Handler: http.HandlerFunc(testHandler), IdleTimeout: 100 * time.Millisecond, ReadHeaderTimeout: time.Minute})
	c := l.dial(t)
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	go io.WriteString(c, host("/echo")+"\r\n")
	if got := answers(t, readAll(c), "GET"); len(got) != 1 || got[0].status != 200 {
		t.Errorf("answers %+v, want one 200, then the close", got)
	}
}

// TestContextEndsWhenClientGoes: a streaming handler waiting on its
// request's context is told when the client closes the connection.
func TestContextEndsWhenClientGoes(t *testing.T) {
	ended := make(chan error, 1)
	l := serve(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "started\n")
		http.NewResponseController(w).Flush()
		<-r.Context().Done()
		ended <- r.Context().Err()
	})})
	c := l.dial(t)
	c.SetDeadline(time.Now().Add(10 * time.Second))
	go io.WriteString(c, host("/")+"\r\n")
	br := bufio.NewReader(c)
	resp, err := nethttp.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if line, _ := bufio.NewReader(resp.Body).ReadString('\n'); line != "started\n" {
		t.Fatalf("stream began with %q", line)
	}
	c.Close()
	select {
	case err := <-ended:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("context ended with %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the handler's context did not end when the client left")
	}
}

// TestShutdown: Shutdown closes the idle connections at once, lets the
// request under way finish, calls the RegisterOnShutdown functions (which
// end a stream), and makes Serve return ErrServerClosed; ConnState hears
// each connection's states in order.
func TestShutdown(t *testing.T) {
	var mu sync.Mutex
	states := map[net.Conn][]string{}
	release := make(chan struct{})
	inHandler := make(chan struct{})
	streamDone := make(chan struct{})
	s := &Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch r.URL.Path {
			case "/slow":
				close(inHandler)
				<-release
				io.WriteString(w, "finished")
			case "/stream":
				w.WriteHeader(200)
				http.NewResponseController(w).Flush()
				<-streamDone
			default:
				io.WriteString(w, "ok")
			}
		}),
		ConnState: func(c net.Conn, st http.ConnState) {
			mu.Lock()
			states[c] = append(states[c], st.String())
			mu.Unlock()
		},
	}
	s.RegisterOnShutdown(func() { close(streamDone) })
	l := newPipeListener()
	served := make(chan error, 1)
	go func() { served <- s.Serve(l) }()

	idle := l.dial(t)
	defer idle.Close()
	idle.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(idle, host("/")+"\r\n")
	idleR := bufio.NewReader(idle)
	if resp, err := nethttp.ReadResponse(idleR, nil); err != nil || resp.StatusCode != 200 {
		t.Fatalf("%v %v", resp, err)
	} else {
		io.ReadAll(resp.Body)
	}
	stream := l.dial(t)
	defer stream.Close()
	stream.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(stream, host("/stream")+"\r\n")
	streamR := bufio.NewReader(stream)
	if _, err := nethttp.ReadResponse(streamR, nil); err != nil {
		t.Fatal(err)
	}
	go io.Copy(io.Discard, streamR) // net.Pipe holds nothing: the stream's end must be read
	busy := l.dial(t)
	defer busy.Close()
	busy.SetDeadline(time.Now().Add(10 * time.Second))
	go io.WriteString(busy, host("/slow")+"\r\n")
	<-inHandler

	shut := make(chan error, 1)
	go func() { shut <- s.Shutdown(context.Background()) }()
	if _, err := idleR.ReadByte(); err != io.EOF {
		t.Errorf("the idle connection: %v, want it closed at once", err)
	}
	if err := <-served; !errors.Is(err, ErrServerClosed) {
		t.Errorf("Serve returned %v", err)
	}
	close(release)
	if got := answers(t, readAll(busy), "GET"); len(got) != 1 || got[0].body != "finished" {
		t.Errorf("the request under way got %+v, want its answer", got)
	}
	if err := <-shut; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	want := map[string]bool{"new active idle closed": true, "new active closed": true}
	for c, st := range states {
		if !want[strings.Join(st, " ")] {
			t.Errorf("%v: states %v", c, st)
		}
	}
}

// TestShutdownDeadline: when its context ends first, Shutdown closes what
// is left and says so.
func TestShutdownDeadline(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	inHandler := make(chan struct{})
	s := &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(inHandler)
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})}
	l := serve(t, s)
	c := l.dial(t)
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	go io.WriteString(c, host("/")+"\r\n")
	<-inHandler
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := s.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown: %v, want the deadline", err)
	}
	if _, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("the connection after Shutdown gave up: %v, want closed", err)
	}
}

// FuzzServe: whatever bytes a client sends, the server answers only with
// well-formed HTTP/1.1 answers, one per request at most, and closes the
// connection or waits for more; it never panics or hangs.
func FuzzServe(f *testing.F) {
	for _, seed := range []string{
		host("/echo") + "\r\n",
		"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello" + host("/html") + "\r\n",
		"POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhel\r\n0\r\n\r\n",
		"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\nhi",
		"GET /echo HTTP/1.0\r\n\r\n",
		"HEAD /html HTTP/1.1\r\nHost: h\r\n\r\n",
		"GET / HTTP/2.0\r\nHost: h\r\n\r\n",
		"GARBAGE\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
		"POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n",
		host("/stream") + "\r\n",
		host("/panic") + "\r\n",
	} {
		f.Add(seed)
	}
	s := &Server{Handler: http.HandlerFunc(testHandler), MaxHeaderBytes: 2048,
		ReadHeaderTimeout: 50 * time.Millisecond, ReadTimeout: 100 * time.Millisecond, IdleTimeout: 20 * time.Millisecond}
	l := serve(f, s)
	f.Fuzz(func(t *testing.T, raw string) {
		out := exchange(t, l, raw)
		if out == "" {
			return
		}
		if !strings.HasPrefix(out, "HTTP/1.1 ") {
			t.Fatalf("answer does not begin with HTTP/1.1: %q", out)
		}
		// HEAD answers have no body: read as HEAD when one was asked
		// (and as GET when the request was refused before it was read).
		method := "GET"
		var got []answer
		if strings.HasPrefix(raw, "HEAD ") {
			if g, ok := tryAnswers(out, "HEAD"); ok {
				method, got = "HEAD", g
			}
		}
		if method == "GET" {
			got = answers(t, out, "GET")
		}
		if n := strings.Count(raw, "HTTP/1.") + strings.Count(raw, "HTTP/"); n == 0 && len(got) > 1 {
			t.Fatalf("%d answers to no request line", len(got))
		}
		for _, a := range got {
			if a.status < 100 || a.status > 599 || a.status == 200 && a.header.Get("Date") == "" {
				t.Fatalf("answer %+v", a)
			}
			if cl := a.header.Get("Content-Length"); cl != "" && cl != strconv.Itoa(len(a.body)) && method != "HEAD" {
				t.Fatalf("Content-Length %s, body %d bytes", cl, len(a.body))
			}
		}
	})
}
