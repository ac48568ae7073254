package reach

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"time"
)

// ErrNoProbe is returned by Check when no probe server ran the check:
// none is configured, none could be reached, or all refused (rate limit,
// overload).
var ErrNoProbe = errors.New("no probe server ran the check")

// Listener says what listened on the internal port during a check.
type Listener string

const (
	// ListenerTemporary is portfwd's own listener, which answers with the
	// token: a success proves the forward leads to this host and port.
	ListenerTemporary Listener = "temporary"
	// ListenerExisting is another program that held the port: a TCP
	// success only proves that something answered on the external port.
	ListenerExisting Listener = "existing"
)

// Result is the outcome of a check.
type Result struct {
	Protocol     string // TCP or UDP
	InternalPort uint16
	ExternalPort uint16
	// Address is what the probe server reached: this network's public
	// address as the server saw it, and the external port.
	Address netip.AddrPort
	// Reachable means the forward works from outside: the token came back
	// (Verified), or, with an existing program on the port, a TCP
	// connection was accepted.
	Reachable bool
	// Verified means portfwd's own listener answered with the token.
	Verified bool
	// Answered means something accepted the connection or sent a datagram
	// back, token or not.
	Answered bool
	Listener Listener
	// Code is the probe server's Code constant when Reachable is false, or
	// when the answer was not verified.
	Code string
	// Reason says in one sentence what the probe saw.
	Reason string
	// Probe is the base URL of the probe server that ran the check.
	Probe string
	RTT   time.Duration
	// Peer is where the probe came from, as the temporary listener saw it
	// (after the router's translation), when it came.
	Peer netip.AddrPort
}

// Checker asks probe servers whether a port is reachable from outside.
type Checker struct {
	// Probes are probe server base URLs ("http://probe.example:8999"),
	// tried in turn until one answers.
	Probes []string
	// HTTP is the client for the probe servers. Nil means one that dials
	// IPv4 only, uses no proxy and follows no redirect: the server must
	// see this network's own IPv4 address.
	HTTP *http.Client
	// Timeout bounds each probe server's answer; default 15 s, enough for
	// a probe that waits MaxConnectTimeout plus AnswerTimeout.
	Timeout time.Duration
	// ListenAddr is the address the temporary listener binds; the zero
	// Addr means all of this host's addresses.
	ListenAddr netip.Addr
	// Logger receives details; nil discards.
	Logger *slog.Logger
}

func (c *Checker) logger() *slog.Logger {
	if c.Logger != nil {
		return c.Logger
	}
	return slog.New(slog.DiscardHandler)
}

func (c *Checker) client() *http.Client {
	if c.HTTP != nil {
		return c.HTTP
	}
	d := &net.Dialer{Timeout: 10 * time.Second}
	return &http.Client{
		Transport: &http.Transport{
			Proxy: nil, // a proxy's address would be probed instead of ours
			DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
				return d.DialContext(ctx, "tcp4", addr)
			},
			TLSHandshakeTimeout:    10 * time.Second,
			MaxResponseHeaderBytes: 16 << 10,
			DisableKeepAlives:      true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// Check asks the probe servers to reach externalPort (0: the same as
// internalPort) on this network's public address over proto ("tcp" or
// "udp"). If nothing listens on internalPort, a temporary listener answers
// the probe there for the duration of the check; otherwise the program
// holding the port is probed as it is (see Listener).
//
// A check that ran returns its Result, reachable or not, and a nil error;
// the error is for a check that could not run (no probe server answered,
// the port cannot be opened).
func (c *Checker) Check(ctx context.Context, proto string, internalPort, externalPort uint16) (Result, error) {
	proto = strings.ToLower(proto)
	if proto != TCP && proto != UDP {
		return Result{}, fmt.Errorf("reach: protocol must be tcp or udp, not %q", proto)
	}
	if internalPort == 0 {
		return Result{}, errors.New("reach: the internal port must be 1-65535")
	}
	if externalPort == 0 {
		externalPort = internalPort
	}
	res := Result{Protocol: proto, InternalPort: internalPort, ExternalPort: externalPort, Listener: ListenerTemporary}
	if len(c.Probes) == 0 {
		return res, fmt.Errorf("reach: %w: none is configured; name one with --probe URL or probe_servers in the config file", ErrNoProbe)
	}
	token, err := NewToken()
	if err != nil {
		return res, err
	}
	log := c.logger()
	l, err := listen(proto, c.ListenAddr, internalPort, token, log)
	switch {
	case errors.Is(err, syscall.EADDRINUSE):
		res.Listener = ListenerExisting
		log.Debug("reach: the port is in use; probing the program that holds it", "protocol", proto, "port", internalPort)
	case err != nil:
		return res, fmt.Errorf("reach: cannot listen on %s port %d to answer the probe: %w; free the port, or check it as a user allowed to open it", proto, internalPort, err)
	default:
		defer l.Close()
	}

	req := CheckRequest{Protocol: proto, Port: externalPort, Token: token}
	var errs []error
	for _, p := range c.Probes {
		resp, addr, err := c.ask(ctx, p, req)
		if err != nil {
			log.Info("reach: probe server did not answer", "probe", p, "err", err)
			errs = append(errs, fmt.Errorf("%s: %w", p, err))
			if ctx.Err() != nil {
				break
			}
			continue
		}
		res.Probe, res.Address = p, addr
		res.Answered, res.Verified, res.Code = resp.Answered, resp.Reachable, resp.Code
		res.RTT = time.Duration(resp.RTTMillis * float64(time.Millisecond))
		if l != nil {
			if seen := l.Seen(); len(seen) > 0 {
				// The listener's own evidence: the probe arrived, even if
				// its reply got lost on the way back.
				res.Peer, res.Answered, res.Verified = seen[0], true, true
			}
		}
		res.Reachable = res.Verified || (res.Listener == ListenerExisting && proto == TCP && res.Answered)
		if res.Reachable && !res.Verified && res.Code == "" {
			res.Code = CodeMismatch
		}
		if res.Verified {
			res.Code = ""
		}
		res.Reason = explain(res, resp)
		log.Debug("reach: checked", "probe", p, "address", addr, "reachable", res.Reachable, "code", res.Code)
		return res, nil
	}
	return res, fmt.Errorf("reach: %w: %w", ErrNoProbe, errors.Join(errs...))
}

// ask runs the check on one probe server.
func (c *Checker) ask(ctx context.Context, base string, req CheckRequest) (CheckResponse, netip.AddrPort, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return CheckResponse{}, netip.AddrPort{}, fmt.Errorf("%q is not an http:// or https:// URL", base)
	}
	u = u.JoinPath(Path)
	body, err := json.Marshal(req)
	if err != nil {
		return CheckResponse{}, netip.AddrPort{}, err
	}
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = 15 * time.Second
	}
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	hreq, err := http.NewRequestWithContext(rctx, http.MethodPost, u.String(), bytes.NewReader(body))
	if err != nil {
		return CheckResponse{}, netip.AddrPort{}, err
	}
	hreq.Header.Set("Content-Type", "application/json")
	hreq.Header.Set("User-Agent", "portfwd-reach/1")
	hresp, err := c.client().Do(hreq)
	if err != nil {
		return CheckResponse{}, netip.AddrPort{}, err
	}
	defer hresp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(hresp.Body, maxResponseBytes))
	if err != nil {
		return CheckResponse{}, netip.AddrPort{}, fmt.Errorf("reading the answer: %w", err)
	}
	if hresp.StatusCode != http.StatusOK {
		var eb errorBody
		if json.Unmarshal(b, &eb) != nil || eb.Error == "" {
			eb.Error = strings.TrimSpace(string(b))
			if len(eb.Error) > 200 {
				eb.Error = eb.Error[:200] + "…"
			}
		}
		return CheckResponse{}, netip.AddrPort{}, &StatusError{Status: hresp.StatusCode, Message: eb.Error}
	}
	return decodeResponse(b)
}

// StatusError is a probe server's refusal to run a check.
type StatusError struct {
	Status  int    // HTTP status
	Message string // the server's "error"
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("%d %s: %s", e.Status, http.StatusText(e.Status), e.Message)
}

// explain says what the probe saw, in one sentence.
func explain(r Result, resp CheckResponse) string {
	what := fmt.Sprintf("%v/%s", r.Address, r.Protocol)
	switch {
	case r.Verified:
		s := fmt.Sprintf("the probe server reached portfwd's listener on port %d through %s and got the token back", r.InternalPort, what)
		if !resp.Reachable {
			s += " (the listener saw the probe, but its answer did not make it back to the server)"
		}
		return s
	case r.Reachable:
		return fmt.Sprintf("something answered on %s, but it is not portfwd's listener (another program holds port %d), so which host answered can't be proven", what, r.InternalPort)
	case r.Answered:
		return fmt.Sprintf("something answered on %s, but not portfwd's listener on port %d: the port leads to another program or host (%s)", what, r.InternalPort, resp.Error)
	}
	s := fmt.Sprintf("the probe server could not reach %s: %s", what, resp.Error)
	switch {
	case r.Listener == ListenerExisting && r.Protocol == UDP:
		s += fmt.Sprintf(" (another program holds UDP port %d, so portfwd could not listen there to answer the probe; stop it and check again)", r.InternalPort)
	case r.Listener == ListenerExisting && r.Code == CodeRefused:
		s += fmt.Sprintf(" (the program holding port %d may listen on 127.0.0.1 only, where other hosts cannot reach it)", r.InternalPort)
	}
	return s
}
