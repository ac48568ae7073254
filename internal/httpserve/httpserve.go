// Package httpserve is the gateway daemon's HTTP/1.1 server: the loop that
// accepts connections on its UPnP (description, SOAP, GENA) and admin
// listeners, reads requests with internal/httpx's ReadRequest (header
// validation, chunked bodies: net/http's own in the ordinary build, the
// router build's own under the gatewayonly tag) and hands them to an
// http.Handler.
//
// It exists for the size of the router build. net/http's Server checks
// every plain connection for unencrypted HTTP/2, a static call into
// crypto/tls (conn.serve → maybeServeUnencryptedHTTP2 → tls.Client) that
// links the whole TLS client, about 1.5 MB of a mipsle binary, into a
// daemon that never speaks TLS or HTTP/2 (and the router build links no
// net/http at all: see internal/httpx). Everything else here is what
// net/http's Server does for an HTTP/1.1 handler, so that handlers written
// for it (igd, upnp's GENA publisher, the admin page) run unchanged:
//
//   - deadlines: the header within ReadHeaderTimeout, the whole request
//     within ReadTimeout, the answer within WriteTimeout, and a kept-alive
//     connection closed after IdleTimeout without a request;
//   - the header bounded to MaxHeaderBytes (431 beyond), HTTP/1.1 without
//     a Host or with a malformed one refused (400), a version other than
//     1.x refused (505), an unknown transfer coding refused (501), each
//     with net/http's answer;
//   - Expect: 100-continue answered when the handler first reads the body,
//     any other expectation refused (417);
//   - the answer buffered and sent with a Content-Length (and a Date, and a
//     sniffed Content-Type when the handler set none), or, once a handler
//     flushes (an event stream) or writes more than a buffer's worth,
//     streamed with chunked coding;
//   - HEAD answered with the headers only; keep-alive, at most
//     MaxRequestsPerConn requests on a connection, closed after an
//     HTTP/1.0 request, a "Connection: close", a body the handler left
//     unread, or a short answer; pipelined requests answered in order;
//   - the request's context holds http.LocalAddrContextKey and ends when
//     the client goes away, the handler returns, or the server closes;
//   - a panicking handler is logged with its stack and its connection
//     closed (with a 500 when nothing was sent yet); the server goes on;
//   - ConnState reports New, Active, Idle and Closed, as net/http's does,
//     for a limiter of idle connections; Shutdown closes the listeners and
//     idle connections and waits for the answers under way.
//
// It does not do TLS, HTTP/2, Hijack, trailers or 1xx answers other than
// 100 Continue: the gateway uses none of them.
package httpserve

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	http "github.com/portfwd/portfwd/internal/httpx"
)

// DefaultMaxHeaderBytes is MaxHeaderBytes when that is zero (as
// net/http's).
const DefaultMaxHeaderBytes = 1 << 20

// DefaultMaxRequestsPerConn is MaxRequestsPerConn when that is zero.
const DefaultMaxRequestsPerConn = 100

// ErrServerClosed is what Serve returns after Shutdown or Close: net/http's
// own, so that callers test for one error whichever server they run.
var ErrServerClosed = http.ErrServerClosed

// Server serves HTTP/1.1 on the listeners given to Serve. Its fields are
// read when Serve is called; a Server is not to be copied after use.
type Server struct {
	// Handler answers every request.
	Handler http.Handler
	// ReadHeaderTimeout bounds reading a request's header, from its
	// first byte (or the connection's start); zero means ReadTimeout.
	ReadHeaderTimeout time.Duration
	// ReadTimeout bounds reading a whole request, body included; zero
	// means none.
	ReadTimeout time.Duration
	// WriteTimeout bounds writing an answer, from the end of the
	// request's header; zero means none (an event stream needs none).
	WriteTimeout time.Duration
	// IdleTimeout closes a kept-alive connection on which no request
	// began for that long; zero means ReadTimeout, and if that is zero
	// too, ReadHeaderTimeout.
	IdleTimeout time.Duration
	// MaxHeaderBytes bounds a request's line and header fields (plus 4
	// KiB of slack, as net/http's); zero means DefaultMaxHeaderBytes.
	MaxHeaderBytes int
	// MaxRequestsPerConn bounds the requests answered on one kept-alive
	// connection; the last answer says Connection: close. Zero means
	// DefaultMaxRequestsPerConn, 1 one request per connection (as
	// miniupnpd answers).
	MaxRequestsPerConn int
	// ConnState, when not nil, is told of each connection's state
	// changes, as net/http.Server's ConnState is (StateHijacked never).
	ConnState func(net.Conn, http.ConnState)
	// Logger receives handler panics and accept errors; nil discards.
	Logger *slog.Logger

	mu         sync.Mutex
	listeners  map[*net.Listener]struct{}
	conns      map[*conn]struct{}
	onShutdown []func()
	inShutdown atomic.Bool
}

// RegisterOnShutdown registers f to be called, in a goroutine of its own,
// when Shutdown begins: for handlers that stream (an event stream), which
// Shutdown would otherwise wait for.
func (s *Server) RegisterOnShutdown(f func()) {
	s.mu.Lock()
	s.onShutdown = append(s.onShutdown, f)
	s.mu.Unlock()
}

// Serve accepts connections on ln and serves each in a goroutine of its
// own, until Shutdown or Close (then it returns ErrServerClosed) or a
// permanent accept error. It closes ln when it returns.
func (s *Server) Serve(ln net.Listener) error {
	l := &ln
	s.mu.Lock()
	if s.inShutdown.Load() {
		s.mu.Unlock()
		ln.Close()
		return ErrServerClosed
	}
	if s.listeners == nil {
		s.listeners = map[*net.Listener]struct{}{}
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, l)
		s.mu.Unlock()
		ln.Close()
	}()

	var backoff time.Duration
	for {
		rwc, err := ln.Accept()
		if err != nil {
			if s.inShutdown.Load() {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporary(err) {
				// Out of descriptors, or a connection reset before it was
				// accepted: wait a little and go on, as net/http does.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.logger().Warn("http: accept error; retrying", "err", err, "retry_in", backoff)
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
		c := &conn{srv: s, rwc: rwc}
		if !s.track(c) {
			rwc.Close()
			return ErrServerClosed
		}
		s.setState(c, http.StateNew)
		go c.serve()
	}
}

// isTemporary reports errors Accept may return that are no reason to
// stop serving.
func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

// Shutdown stops the server gracefully: it closes the listeners, calls the
// functions given to RegisterOnShutdown, closes the idle connections, and
// waits for the others to finish their answer. When ctx ends first, it
// closes those too and returns ctx's error.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.inShutdown.Store(true)
	for l := range s.listeners {
		(*l).Close()
	}
	for _, f := range s.onShutdown {
		go f()
	}
	s.mu.Unlock()

	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if s.closeIdle() {
			return nil
		}
		select {
		case <-ctx.Done():
			s.Close()
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// Close closes the listeners and every connection at once.
func (s *Server) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.inShutdown.Store(true)
	for l := range s.listeners {
		(*l).Close()
	}
	for c := range s.conns {
		c.rwc.Close()
	}
	return nil
}

// closeIdle closes the connections that wait for a request, and reports
// whether none is left.
func (s *Server) closeIdle() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		if st := http.ConnState(c.state.Load()); st == http.StateNew || st == http.StateIdle {
			c.rwc.Close()
		}
	}
	return len(s.conns) == 0
}

func (s *Server) track(c *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.inShutdown.Load() {
		return false
	}
	if s.conns == nil {
		s.conns = map[*conn]struct{}{}
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *Server) untrack(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

func (s *Server) setState(c *conn, st http.ConnState) {
	c.state.Store(int32(st))
	if s.ConnState != nil {
		s.ConnState(c.rwc, st)
	}
}

func (s *Server) logger() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.New(slog.DiscardHandler)
}

func (s *Server) maxHeaderBytes() int64 {
	n := s.MaxHeaderBytes
	if n <= 0 {
		n = DefaultMaxHeaderBytes
	}
	return int64(n) + 4096 // net/http's slack, for the bufio.Reader's reading ahead
}

func (s *Server) readHeaderTimeout() time.Duration {
	if s.ReadHeaderTimeout > 0 {
		return s.ReadHeaderTimeout
	}
	return s.ReadTimeout
}

func (s *Server) idleTimeout() time.Duration {
	if s.IdleTimeout > 0 {
		return s.IdleTimeout
	}
	return s.readHeaderTimeout()
}

// deadline returns now+d, or the zero time (none) when d is zero.
func deadline(now time.Time, d time.Duration) time.Time {
	if d <= 0 {
		return time.Time{}
	}
	return now.Add(d)
}

// conn is one client connection.
type conn struct {
	srv   *Server
	rwc   net.Conn
	state atomic.Int32 // an http.ConnState
	r     *connReader
	bufr  *bufio.Reader
	bufw  *bufio.Writer
	werr  error // the first write error; the connection is done
}

// Write is where the answers go: it keeps the first error, after which
// the connection is closed.
func (c *conn) Write(p []byte) (int, error) {
	if c.werr != nil {
		return 0, c.werr
	}
	n, err := c.rwc.Write(p)
	if err != nil {
		c.werr = err
		c.r.cancel() // the client is gone: so is the request
	}
	return n, err
}

// badRequest is a request refused before its handler: status and the
// text after the status line's reason, as net/http's answer says it.
type badRequest struct {
	code int
	text string
}

func (e *badRequest) Error() string { return e.text }

// errHeaderTooLarge is a header over MaxHeaderBytes.
var errHeaderTooLarge = errors.New("request header too large")

func (c *conn) serve() {
	s := c.srv
	ctx, cancel := context.WithCancel(context.WithValue(context.Background(), http.LocalAddrContextKey, c.rwc.LocalAddr()))
	defer cancel()
	c.r = &connReader{rwc: c.rwc, cancelConn: cancel, remain: -1}
	c.bufr = bufio.NewReaderSize(c.r, 4096)
	c.bufw = bufio.NewWriterSize(c, 4096)
	remote := c.rwc.RemoteAddr().String()

	var inFlight *response
	defer func() {
		if p := recover(); p != nil {
			if p != http.ErrAbortHandler {
				buf := make([]byte, 64<<10)
				buf = buf[:runtime.Stack(buf, false)]
				s.logger().Error("http: panic serving a request; connection closed", "peer", remote, "panic", p, "stack", string(buf))
			}
			if inFlight != nil && !inFlight.headerSent && c.werr == nil {
				// Nothing of the answer left yet: say so, rather than
				// leave the client to guess from a closed connection.
				c.rwc.SetWriteDeadline(time.Now().Add(time.Second))
				io.WriteString(c.rwc, "HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 26\r\nConnection: close\r\n\r\n500 Internal Server Error\n")
			}
		}
		if inFlight != nil {
			inFlight.cancel()
		}
		c.r.abortPendingRead()
		c.rwc.Close()
		s.untrack(c)
		s.setState(c, http.StateClosed)
	}()

	maxRequests := s.MaxRequestsPerConn
	if maxRequests <= 0 {
		maxRequests = DefaultMaxRequestsPerConn
	}
	c.rwc.SetReadDeadline(deadline(time.Now(), s.readHeaderTimeout()))
	lastMethod := ""
	for n := 1; ; n++ {
		// Wait for the request's first byte: until then the connection
		// is idle (Shutdown and a limiter may close it).
		if lastMethod == http.MethodPost {
			// RFC 9112 section 2.2: a server SHOULD ignore an empty line
			// before a request; old clients send one after a POST's body.
			for range 2 {
				if b, err := c.bufr.Peek(1); err == nil && (b[0] == '\r' || b[0] == '\n') {
					c.bufr.Discard(1)
				}
			}
		}
		// The header's bound counts from here: what the reader buffers
		// while waiting is part of it.
		c.r.setReadLimit(s.maxHeaderBytes())
		if _, err := c.bufr.Peek(1); err != nil {
			return
		}
		if s.inShutdown.Load() {
			return
		}
		s.setState(c, http.StateActive)
		t0 := time.Now()
		c.rwc.SetReadDeadline(deadline(t0, s.readHeaderTimeout()))
		w, err := c.readRequest(ctx, t0)
		if err != nil {
			c.refuse(err)
			return
		}
		lastMethod = w.req.Method
		if n >= maxRequests {
			w.closeAfter = true
		}

		// Expect: 100-continue is answered when the handler first reads
		// the body; any other expectation is refused.
		if expect := w.req.Header.Get("Expect"); expect != "" {
			if !strings.EqualFold(expect, "100-continue") {
				w.header.Set("Connection", "close")
				w.WriteHeader(http.StatusExpectationFailed)
				w.finish()
				return
			}
			if w.req.ProtoAtLeast(1, 1) && w.req.ContentLength != 0 {
				w.body.continueW = w
			}
		}
		if w.body.remains() {
			w.body.onEOF = c.r.startBackgroundRead
		} else {
			c.r.startBackgroundRead()
		}

		inFlight = w
		s.Handler.ServeHTTP(w, w.req)
		inFlight = nil
		w.cancel()
		w.finish()
		c.r.abortPendingRead()
		if !w.reusable() {
			if w.body.remains() && c.werr == nil {
				c.closeWriteAndWait()
			}
			return
		}
		if s.inShutdown.Load() {
			return
		}
		s.setState(c, http.StateIdle)
		c.rwc.SetWriteDeadline(time.Time{})
		c.rwc.SetReadDeadline(deadline(time.Now(), s.idleTimeout()))
	}
}

// readRequest reads the next request's header, t0 being when its first
// byte came.
func (c *conn) readRequest(ctx context.Context, t0 time.Time) (*response, error) {
	s := c.srv
	req, err := http.ReadRequest(c.bufr)
	if err != nil {
		if c.r.hitReadLimit() {
			return nil, errHeaderTooLarge
		}
		if strings.HasPrefix(err.Error(), "invalid header name") {
			// The router build's reader checks the names itself (below
			// for net/http's): the same answer.
			return nil, &badRequest{http.StatusBadRequest, "invalid header name"}
		}
		return nil, err
	}
	c.r.setReadLimit(-1)
	if req.ProtoMajor != 1 {
		return nil, &badRequest{http.StatusHTTPVersionNotSupported, "unsupported protocol version"}
	}
	// http.ReadRequest moves the Host header to req.Host (the first one,
	// when a client sent several).
	switch {
	case req.ProtoAtLeast(1, 1) && req.Host == "":
		return nil, &badRequest{http.StatusBadRequest, "missing required Host header"}
	case !validHost(req.Host):
		return nil, &badRequest{http.StatusBadRequest, "malformed Host header"}
	}
	for k := range req.Header {
		if !http.ValidToken(k) { // textproto lets "X Bad" (a space) through
			return nil, &badRequest{http.StatusBadRequest, "invalid header name"}
		}
	}
	if d := s.ReadTimeout; d > 0 {
		c.rwc.SetReadDeadline(t0.Add(d))
	} else {
		c.rwc.SetReadDeadline(time.Time{})
	}
	c.rwc.SetWriteDeadline(deadline(time.Now(), s.WriteTimeout))

	rctx, cancel := context.WithCancel(ctx)
	req = req.WithContext(rctx)
	req.RemoteAddr = c.rwc.RemoteAddr().String()
	w := &response{
		c:             c,
		req:           req,
		cancel:        cancel,
		header:        make(http.Header),
		contentLength: -1,
		closeAfter:    wantsClose(req),
	}
	w.body = &body{rc: req.Body, noBody: req.Body == http.NoBody || req.Body == nil}
	if req.Body != nil && req.Body != http.NoBody {
		req.Body = w.body
	}
	return w, nil
}

// wantsClose reports whether the client will send no other request on
// the connection: an HTTP/1.0 request (keep-alive there is rare and this
// server does not offer it) or a "Connection: close".
func wantsClose(req *http.Request) bool {
	return !req.ProtoAtLeast(1, 1) || req.Close || hasToken(req.Header["Connection"], "close")
}

// refuse answers a request that could not be read, as net/http's server
// does, or says nothing when the client went away or was too slow.
func (c *conn) refuse(err error) {
	const errorHeaders = "\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"
	c.rwc.SetWriteDeadline(time.Now().Add(time.Second))
	var br *badRequest
	switch {
	case errors.Is(err, errHeaderTooLarge):
		const msg = "431 Request Header Fields Too Large"
		io.WriteString(c.rwc, "HTTP/1.1 "+msg+errorHeaders+msg)
		c.closeWriteAndWait()
	case strings.HasPrefix(err.Error(), "unsupported transfer encoding"):
		// RFC 9112 section 6.1: 501 for a transfer coding not understood
		// (its name is not echoed: it is the client's text).
		io.WriteString(c.rwc, "HTTP/1.1 501 Not Implemented"+errorHeaders+"Unsupported transfer encoding")
	case isNetReadError(err):
		// The client closed, reset, or kept silent past a deadline.
	case errors.As(err, &br):
		line := strconv.Itoa(br.code) + " " + http.StatusText(br.code) + ": " + br.text
		io.WriteString(c.rwc, "HTTP/1.1 "+line+errorHeaders+line)
	default:
		const msg = "400 Bad Request"
		io.WriteString(c.rwc, "HTTP/1.1 "+msg+errorHeaders+msg)
	}
}

// isNetReadError reports the errors of a connection's reading, not of
// what was read.
func isNetReadError(err error) bool {
	if err == io.EOF {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Op == "read"
}

// closeWriteAndWait ends the connection's sending half and reads what the
// client still sends for a moment, so that the answer is not lost to the
// TCP reset that closing a connection with unread data would send. A
// client still sending after 256 KiB is given the rest of the moment
// (half a second, as net/http's server waits) to read the answer before
// the reset.
func (c *conn) closeWriteAndWait() {
	c.bufw.Flush()
	if cw, ok := c.rwc.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
	end := time.Now().Add(500 * time.Millisecond)
	c.rwc.SetReadDeadline(end)
	if n, _ := io.CopyN(io.Discard, c.rwc, 256<<10); n == 256<<10 {
		time.Sleep(time.Until(end))
	}
}

// validHost reports whether a Host header's value is made of the bytes a
// host, an IP literal and a port are (RFC 3986 reg-name, IP-literal,
// port), as net/http's check.
func validHost(h string) bool {
	for i := 0; i < len(h); i++ {
		b := h[i]
		switch {
		case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z', '0' <= b && b <= '9':
		case strings.IndexByte("!$%&'()*+,-.:;=[]_~", b) >= 0:
		case b >= 0x80: // an IDN's UTF-8, as net/http allows
		default:
			return false
		}
	}
	return true
}

// connReader reads a connection for the request parser, bounded to a
// header's size while the header is read. Once a request's body is read,
// it reads in the background, so that the client's going away ends the
// request's context (an event stream's handler waits on it); a byte read
// there is the next pipelined request's, kept for it.
type connReader struct {
	rwc        net.Conn
	cancelConn context.CancelFunc

	mu      sync.Mutex
	cond    *sync.Cond
	hasByte bool
	byteBuf [1]byte
	inRead  bool
	aborted bool
	remain  int64 // -1: no limit
}

func (cr *connReader) lock() {
	cr.mu.Lock()
	if cr.cond == nil {
		cr.cond = sync.NewCond(&cr.mu)
	}
}

func (cr *connReader) setReadLimit(n int64) { cr.lock(); cr.remain = n; cr.mu.Unlock() }
func (cr *connReader) hitReadLimit() bool {
	cr.lock()
	defer cr.mu.Unlock()
	return cr.remain == 0
}

// cancel ends the connection's context, and with it the request's.
func (cr *connReader) cancel() { cr.cancelConn() }

func (cr *connReader) startBackgroundRead() {
	cr.lock()
	defer cr.mu.Unlock()
	if cr.inRead || cr.hasByte {
		return
	}
	cr.inRead = true
	// No deadline: the handler may stream for as long as it likes; the
	// client's going away ends the read. (Set here, not in the goroutine,
	// where it could undo abortPendingRead's.)
	cr.rwc.SetReadDeadline(time.Time{})
	go cr.backgroundRead()
}

func (cr *connReader) backgroundRead() {
	n, err := cr.rwc.Read(cr.byteBuf[:])
	cr.lock()
	if n == 1 {
		cr.hasByte = true // a pipelined request's first byte
	}
	var ne net.Error
	if err != nil && !(cr.aborted && errors.As(err, &ne) && ne.Timeout()) {
		cr.cancelConn()
	}
	cr.aborted = false
	cr.inRead = false
	cr.mu.Unlock()
	cr.cond.Broadcast()
}

// abortPendingRead stops a background read and waits for it.
func (cr *connReader) abortPendingRead() {
	cr.lock()
	defer cr.mu.Unlock()
	if !cr.inRead {
		return
	}
	cr.aborted = true
	cr.rwc.SetReadDeadline(time.Unix(1, 0))
	for cr.inRead {
		cr.cond.Wait()
	}
	cr.rwc.SetReadDeadline(time.Time{})
}

func (cr *connReader) Read(p []byte) (int, error) {
	cr.lock()
	if cr.inRead {
		cr.mu.Unlock()
		panic("httpserve: concurrent read of a connection")
	}
	if cr.remain == 0 {
		cr.mu.Unlock()
		return 0, io.EOF
	}
	if len(p) == 0 {
		cr.mu.Unlock()
		return 0, nil
	}
	if cr.remain > 0 && int64(len(p)) > cr.remain {
		p = p[:cr.remain]
	}
	if cr.hasByte {
		p[0] = cr.byteBuf[0]
		cr.hasByte = false
		if cr.remain > 0 {
			cr.remain--
		}
		cr.mu.Unlock()
		return 1, nil
	}
	cr.inRead = true
	cr.mu.Unlock()
	n, err := cr.rwc.Read(p)
	cr.lock()
	cr.inRead = false
	if cr.remain > 0 {
		cr.remain -= int64(n)
	}
	if err != nil && err != io.EOF {
		cr.cancelConn()
	}
	cr.mu.Unlock()
	cr.cond.Broadcast()
	return n, err
}
