package reach

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// Dialer opens the probe's connections; *net.Dialer is one. Tests
// substitute a recording dialer.
type Dialer interface {
	DialContext(ctx context.Context, network, address string) (net.Conn, error)
}

// ProbeServer runs checks for clients: it connects back to the address a
// request came from and reports what answered (see the package
// documentation for the protocol). The zero value is ready to use; its
// fields must not change once it serves.
type ProbeServer struct {
	// Limit is the per-source rate limit; the zero value means 10 checks a
	// minute. There is no way to turn it off.
	Limit RateLimit
	// ConnectTimeout bounds a connection attempt (and, for UDP, the wait
	// for the reply). Default and maximum: MaxConnectTimeout.
	ConnectTimeout time.Duration
	// MaxConcurrent caps the checks running at once; more get 503.
	// Default 64.
	MaxConcurrent int
	// AllowLoopback lets loopback sources be probed, for tests on one
	// machine. Leave it off in production: behind a local reverse proxy
	// every request would come from loopback.
	AllowLoopback bool
	// Logger receives one line per check; nil discards.
	Logger *slog.Logger
	// Dialer opens the probe connections; nil means a net.Dialer.
	Dialer Dialer
	// Clock is the time the rate limit uses; nil means time.Now.
	Clock func() time.Time

	once    sync.Once
	limiter *limiter
	slots   chan struct{}
}

// udpResend is how often a UDP probe is repeated while no answer comes.
const udpResend = 250 * time.Millisecond

func (s *ProbeServer) init() {
	s.once.Do(func() {
		s.limiter = newLimiter(s.Limit, maxSources)
		n := s.MaxConcurrent
		if n <= 0 {
			n = 64
		}
		s.slots = make(chan struct{}, n)
	})
}

func (s *ProbeServer) logger() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.New(slog.DiscardHandler)
}

func (s *ProbeServer) now() time.Time {
	if s.Clock != nil {
		return s.Clock()
	}
	return time.Now()
}

func (s *ProbeServer) connectTimeout() time.Duration {
	if s.ConnectTimeout <= 0 || s.ConnectTimeout > MaxConnectTimeout {
		return MaxConnectTimeout
	}
	return s.ConnectTimeout
}

func (s *ProbeServer) dialer() Dialer {
	if s.Dialer != nil {
		return s.Dialer
	}
	return &net.Dialer{}
}

// ServeHTTP answers POST /v1/check.
func (s *ProbeServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.init()
	log := s.logger()
	if r.URL.Path != Path {
		fail(w, http.StatusNotFound, "not found: the probe server answers POST "+Path)
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		fail(w, http.StatusMethodNotAllowed, "use POST "+Path)
		return
	}
	// The TCP peer's address, and nothing else: headers such as
	// X-Forwarded-For are the requester's to invent.
	src, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		fail(w, http.StatusBadRequest, "cannot tell the address this request came from")
		return
	}
	ip := src.Addr().Unmap()
	if why := s.refuseSource(ip); why != "" {
		log.Warn("reach: refused source", "source", ip, "why", why)
		fail(w, http.StatusForbidden, why)
		return
	}
	switch v, retry := s.limiter.allow(sourceKey(ip), s.now()); v {
	case limited:
		log.Info("reach: rate limited", "source", ip)
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(retry.Seconds()))))
		fail(w, http.StatusTooManyRequests, fmt.Sprintf("too many checks from %v: the limit is %v; retry in %v", ip, s.Limit, retry.Round(time.Second)))
		return
	case crowded:
		log.Warn("reach: too many sources", "source", ip)
		w.Header().Set("Retry-After", "1")
		fail(w, http.StatusServiceUnavailable, "the probe server is busy; retry shortly")
		return
	}
	if r.ContentLength > MaxRequestBytes {
		fail(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("the body is over %d bytes", MaxRequestBytes))
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxRequestBytes))
	if err != nil {
		var mb *http.MaxBytesError
		if errors.As(err, &mb) {
			fail(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("the body is over %d bytes", MaxRequestBytes))
			return
		}
		fail(w, http.StatusBadRequest, "reading the body: "+err.Error())
		return
	}
	req, err := decodeRequest(body)
	if err != nil {
		fail(w, http.StatusBadRequest, err.Error())
		return
	}
	select {
	case s.slots <- struct{}{}:
		defer func() { <-s.slots }()
	default:
		log.Warn("reach: at the concurrency cap", "source", ip, "max", cap(s.slots))
		w.Header().Set("Retry-After", "1")
		fail(w, http.StatusServiceUnavailable, "the probe server is running too many checks; retry shortly")
		return
	}

	target := netip.AddrPortFrom(ip, req.Port) // Unmap keeps an IPv6 zone, if any
	var out CheckResponse
	start := time.Now()
	if req.Protocol == TCP {
		out = s.probeTCP(r.Context(), target, req.Token)
	} else {
		out = s.probeUDP(r.Context(), target, req.Token)
	}
	out.Protocol = req.Protocol
	out.Address = netip.AddrPortFrom(ip, req.Port).String()
	if out.Answered {
		out.RTTMillis = float64(time.Since(start).Microseconds()) / 1000
	}
	log.Info("reach: check", "source", ip, "protocol", req.Protocol, "port", req.Port,
		"reachable", out.Reachable, "answered", out.Answered, "code", out.Code, "rtt_ms", out.RTTMillis)
	writeJSON(w, http.StatusOK, out)
}

// refuseSource says why ip must not be probed, or "".
func (s *ProbeServer) refuseSource(ip netip.Addr) string {
	switch {
	case ip.IsUnspecified() || ip.IsMulticast():
		return fmt.Sprintf("will not probe %v", ip)
	case ip.IsLoopback() && !s.AllowLoopback:
		return "will not probe a loopback address: the probe server must be reached directly, not through a local proxy"
	}
	return ""
}

// probeTCP connects to target, sends the probe line and reads the reply.
func (s *ProbeServer) probeTCP(ctx context.Context, target netip.AddrPort, token string) CheckResponse {
	dctx, cancel := context.WithTimeout(ctx, s.connectTimeout())
	c, err := s.dialer().DialContext(dctx, "tcp", target.String())
	cancel()
	if err != nil {
		return failed(err, fmt.Sprintf("no TCP connection within %v", s.connectTimeout()))
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	c.SetDeadline(time.Now().Add(AnswerTimeout))
	if _, err := c.Write(probeLine(token)); err != nil {
		return CheckResponse{Answered: true, Code: CodeMismatch, Error: "connected, but the connection broke before the probe was sent: " + errText(err)}
	}
	reply := replyLine(token)
	buf := make([]byte, len(reply))
	n, err := io.ReadFull(c, buf)
	switch {
	case err == nil && bytes.Equal(buf, reply):
		return CheckResponse{Reachable: true, Answered: true}
	case n == 0 && isTimeout(err):
		return CheckResponse{Answered: true, Code: CodeMismatch, Error: fmt.Sprintf("connected, but nothing answered the probe within %v: another program holds the port", AnswerTimeout)}
	}
	return CheckResponse{Answered: true, Code: CodeMismatch, Error: "connected, but the answer was not the token: another program holds the port"}
}

// probeUDP sends the probe line to target until the reply comes back, the
// target refuses, or the connect timeout ends. The socket is connected, so that
// an ICMP port unreachable shows up as ECONNREFUSED and only datagrams
// from target are read.
func (s *ProbeServer) probeUDP(ctx context.Context, target netip.AddrPort, token string) CheckResponse {
	timeout := s.connectTimeout()
	deadline := time.Now().Add(timeout)
	dctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	c, err := s.dialer().DialContext(dctx, "udp", target.String())
	if err != nil {
		return failed(err, "")
	}
	defer c.Close()
	stop := context.AfterFunc(dctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	probe, reply := probeLine(token), replyLine(token)
	buf := make([]byte, 512)
	// Bounded by the deadline: every turn waits up to udpResend, or ends.
	for {
		if _, err := c.Write(probe); err != nil {
			return failed(err, "")
		}
		wait := time.Now().Add(udpResend)
		if wait.After(deadline) {
			wait = deadline
		}
		c.SetReadDeadline(wait)
		n, err := c.Read(buf)
		if err == nil {
			if bytes.Equal(buf[:n], reply) {
				return CheckResponse{Reachable: true, Answered: true}
			}
			return CheckResponse{Answered: true, Code: CodeMismatch, Error: "a datagram came back, but not the token: another program holds the port"}
		}
		if !isTimeout(err) || !time.Now().Before(deadline) || dctx.Err() != nil {
			return failed(err, fmt.Sprintf("no UDP answer within %v", timeout))
		}
	}
}

// failed turns a connection error into a response; timeoutText replaces
// the error's own words for a timeout.
func failed(err error, timeoutText string) CheckResponse {
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return CheckResponse{Code: CodeRefused, Error: "connection refused"}
	case errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH):
		return CheckResponse{Code: CodeUnreachable, Error: errText(err)}
	case isTimeout(err):
		if timeoutText == "" {
			timeoutText = "timeout"
		}
		return CheckResponse{Code: CodeTimeout, Error: timeoutText}
	}
	return CheckResponse{Code: CodeError, Error: errText(err)}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) ||
		(errors.As(err, &ne) && ne.Timeout())
}

// errText is an error without the address prefix of *net.OpError, which
// only repeats the requester's own address back.
func errText(err error) string {
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		return oe.Err.Error()
	}
	return err.Error()
}

// errorBody is the answer to a request the server did not run.
type errorBody struct {
	Error string `json:"error"`
}

func fail(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, errorBody{Error: msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// Serve runs the probe server on ln with timeouts that suit it, until ctx
// ends; then it lets running checks finish and returns nil.
func (s *ProbeServer) Serve(ctx context.Context, ln net.Listener) error {
	s.init()
	hs := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		// A check takes at most the connect timeout plus AnswerTimeout.
		WriteTimeout:   MaxConnectTimeout + AnswerTimeout + 10*time.Second,
		IdleTimeout:    30 * time.Second,
		MaxHeaderBytes: 8 << 10,
		ErrorLog:       slog.NewLogLogger(s.logger().Handler(), slog.LevelDebug),
		BaseContext:    func(net.Listener) context.Context { return ctx },
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("reach: probe server: %w", err)
	case <-ctx.Done():
	}
	// BaseContext is done already, so running checks end early; this only
	// waits for their answers to be written.
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := hs.Shutdown(sctx)
	<-errc
	if err != nil {
		return fmt.Errorf("reach: stopping the probe server: %w", err)
	}
	return nil
}
