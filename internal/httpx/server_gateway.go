//go:build gatewayonly

package httpx

import (
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"
)

// ResponseWriter is how a handler answers, as net/http's: the header to
// fill, then WriteHeader (or the first Write, which says 200) and the
// body.
type ResponseWriter interface {
	Header() Header
	Write([]byte) (int, error)
	WriteHeader(statusCode int)
}

// Handler answers a request.
type Handler interface {
	ServeHTTP(ResponseWriter, *Request)
}

// HandlerFunc is a function that is a Handler.
type HandlerFunc func(ResponseWriter, *Request)

// ServeHTTP calls f(w, r).
func (f HandlerFunc) ServeHTTP(w ResponseWriter, r *Request) { f(w, r) }

// ConnState is a server connection's state, for Server.ConnState
// (internal/httpserve).
type ConnState int

const (
	StateNew ConnState = iota
	StateActive
	StateIdle
	StateHijacked
	StateClosed
)

// String is the state's name, as net/http's: "new", "active", ...
func (c ConnState) String() string {
	switch c {
	case StateNew:
		return "new"
	case StateActive:
		return "active"
	case StateIdle:
		return "idle"
	case StateHijacked:
		return "hijacked"
	case StateClosed:
		return "closed"
	}
	return "unknown"
}

// contextKey is the type of the context keys here.
type contextKey struct{ name string }

// LocalAddrContextKey is the key of a server request's context value
// holding the net.Addr the connection came to.
var LocalAddrContextKey = &contextKey{"local-addr"}

// The errors net/http's server and writers give, under the same text.
var (
	ErrServerClosed   = errors.New("http: Server closed")
	ErrContentLength  = errors.New("http: wrote more than the declared Content-Length")
	ErrBodyNotAllowed = errors.New("http: request method or response status code does not allow body")
	// ErrAbortHandler, as a handler's panic value, ends the answer
	// without the panic being logged.
	ErrAbortHandler = errors.New("net/http: abort Handler")
	ErrNoCookie     = errors.New("http: named cookie not present")
	ErrNotSupported = errors.New("feature not supported")
)

// Error answers with code and msg as plain text, as net/http's.
func Error(w ResponseWriter, msg string, code int) {
	h := w.Header()
	h.Del("Content-Length")
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	fmt.Fprintln(w, msg)
}

// NotFound answers 404 page not found.
func NotFound(w ResponseWriter, r *Request) { Error(w, "404 page not found", StatusNotFound) }

// StripPrefix returns a handler that serves h with prefix removed from
// the request's path, and answers 404 for a path without it.
func StripPrefix(prefix string, h Handler) Handler {
	if prefix == "" {
		return h
	}
	return HandlerFunc(func(w ResponseWriter, r *Request) {
		p, ok := strings.CutPrefix(r.URL.Path, prefix)
		if !ok {
			NotFound(w, r)
			return
		}
		r2 := *r
		u := *r.URL
		u.Path, u.RawPath = p, ""
		r2.URL = &u
		h.ServeHTTP(w, &r2)
	})
}

// ResponseController reaches what a ResponseWriter offers beyond its
// interface (internal/httpserve's: FlushError, the connection's write
// deadline).
type ResponseController struct{ rw ResponseWriter }

// NewResponseController returns the controller of w.
func NewResponseController(w ResponseWriter) *ResponseController {
	return &ResponseController{rw: w}
}

// Flush sends what was written so far.
func (c *ResponseController) Flush() error {
	switch w := c.rw.(type) {
	case interface{ FlushError() error }:
		return w.FlushError()
	case interface{ Flush() }:
		w.Flush()
		return nil
	}
	return ErrNotSupported
}

// SetWriteDeadline bounds the writing of the rest of the answer.
func (c *ResponseController) SetWriteDeadline(t time.Time) error {
	if w, ok := c.rw.(interface{ SetWriteDeadline(time.Time) error }); ok {
		return w.SetWriteDeadline(t)
	}
	return ErrNotSupported
}

// MaxBytesError is what a MaxBytesReader's Read returns past its limit.
type MaxBytesError struct{ Limit int64 }

func (e *MaxBytesError) Error() string { return "http: request body too large" }

// MaxBytesReader bounds a request body to n bytes: reading more is a
// *MaxBytesError. (The server closes a connection whose request body was
// left unread.)
func MaxBytesReader(w ResponseWriter, r io.ReadCloser, n int64) io.ReadCloser {
	return &maxBytesReader{r: r, left: max(n, 0), n: n}
}

type maxBytesReader struct {
	r    io.ReadCloser
	left int64
	n    int64
	err  error
}

func (m *maxBytesReader) Read(p []byte) (int, error) {
	if m.err != nil {
		return 0, m.err
	}
	if len(p) == 0 {
		return 0, nil
	}
	// Read one byte more than allowed, to tell a body of exactly n bytes
	// from a longer one.
	if int64(len(p))-1 > m.left {
		p = p[:m.left+1]
	}
	n, err := m.r.Read(p)
	if int64(n) <= m.left {
		m.left -= int64(n)
		m.err = err
		return n, err
	}
	n = int(m.left)
	m.left = 0
	m.err = &MaxBytesError{Limit: m.n}
	return n, m.err
}

func (m *maxBytesReader) Close() error { return m.r.Close() }

// DetectContentType names the type of an answer whose handler set none,
// from its first bytes: the few types the gateway sends (HTML, XML, plain
// text), else application/octet-stream. (net/http's full sniffer knows
// images and archives the gateway never serves.)
func DetectContentType(data []byte) string {
	data = data[:min(len(data), 512)]
	s := strings.TrimLeft(string(data), "\t\n\x0c\r ")
	lower := strings.ToLower(s[:min(len(s), 14)])
	switch {
	case strings.HasPrefix(lower, "<!doctype html"), strings.HasPrefix(lower, "<html"):
		return "text/html; charset=utf-8"
	case strings.HasPrefix(s, "<?xml"):
		return "text/xml; charset=utf-8"
	}
	for i, r := range string(data) {
		if r == utf8.RuneError && !utf8.FullRuneInString(string(data[i:])) {
			break // a character cut at 512 bytes
		}
		if r == utf8.RuneError || r < ' ' && r != '\t' && r != '\n' && r != '\r' && r != '\x0c' || r == 0x7f {
			return "application/octet-stream"
		}
	}
	return "text/plain; charset=utf-8"
}

// Cookie is a cookie a server sets (SetCookie) or a request carries
// (Request.Cookie).
type Cookie struct {
	Name, Value  string
	Path, Domain string
	// MaxAge: 0 means none given, a negative one deletes the cookie.
	MaxAge   int
	Secure   bool
	HttpOnly bool
	SameSite SameSite
}

// SameSite is a cookie's SameSite attribute.
type SameSite int

const (
	SameSiteDefaultMode SameSite = iota + 1
	SameSiteLaxMode
	SameSiteStrictMode
	SameSiteNoneMode
)

// String is the Set-Cookie header's value for c; "" when its name or
// value cannot be sent.
func (c *Cookie) String() string {
	if c == nil || !ValidToken(c.Name) || strings.ContainsFunc(c.Value, func(r rune) bool {
		return r < 0x21 || r > 0x7e || r == '"' || r == ',' || r == ';' || r == '\\'
	}) {
		return ""
	}
	s := c.Name + "=" + c.Value
	if c.Path != "" && !strings.ContainsAny(c.Path, ";\r\n") {
		s += "; Path=" + c.Path
	}
	if c.Domain != "" && ValidToken(strings.ReplaceAll(c.Domain, ".", "-")) {
		s += "; Domain=" + c.Domain
	}
	switch {
	case c.MaxAge > 0:
		s += fmt.Sprintf("; Max-Age=%d", c.MaxAge)
	case c.MaxAge < 0:
		s += "; Max-Age=0"
	}
	if c.HttpOnly {
		s += "; HttpOnly"
	}
	if c.Secure {
		s += "; Secure"
	}
	switch c.SameSite {
	case SameSiteLaxMode:
		s += "; SameSite=Lax"
	case SameSiteStrictMode:
		s += "; SameSite=Strict"
	case SameSiteNoneMode:
		s += "; SameSite=None"
	}
	return s
}

// SetCookie adds a Set-Cookie header for c to w's header; an invalid
// cookie is dropped.
func SetCookie(w ResponseWriter, c *Cookie) {
	if v := c.String(); v != "" {
		w.Header().Add("Set-Cookie", v)
	}
}

// Cookie returns the request's cookie of that name (the first, when the
// browser sent several), or ErrNoCookie.
func (r *Request) Cookie(name string) (*Cookie, error) {
	if name == "" {
		return nil, ErrNoCookie
	}
	for _, line := range r.Header["Cookie"] {
		for part := range strings.SplitSeq(line, ";") {
			k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
			if !ok || k != name {
				continue
			}
			if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
				v = v[1 : len(v)-1]
			}
			return &Cookie{Name: k, Value: v}, nil
		}
	}
	return nil, ErrNoCookie
}

// redirectTo answers 307 (the method kept, as net/http's ServeMux) to the
// path p of r's URL (its query kept).
func redirectTo(w ResponseWriter, r *Request, p string) {
	u := url.URL{Path: p, RawQuery: r.URL.RawQuery}
	w.Header().Set("Location", u.String())
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(StatusTemporaryRedirect)
}

// StatusText is the reason phrase of code, or "" for one unknown.
func StatusText(code int) string {
	switch code {
	case StatusContinue:
		return "Continue"
	case 101:
		return "Switching Protocols"
	case StatusOK:
		return "OK"
	case 201:
		return "Created"
	case 202:
		return "Accepted"
	case StatusNoContent:
		return "No Content"
	case 206:
		return "Partial Content"
	case StatusMovedPermanently:
		return "Moved Permanently"
	case StatusFound:
		return "Found"
	case StatusSeeOther:
		return "See Other"
	case StatusNotModified:
		return "Not Modified"
	case StatusTemporaryRedirect:
		return "Temporary Redirect"
	case StatusPermanentRedirect:
		return "Permanent Redirect"
	case StatusBadRequest:
		return "Bad Request"
	case 401:
		return "Unauthorized"
	case StatusForbidden:
		return "Forbidden"
	case StatusNotFound:
		return "Not Found"
	case StatusMethodNotAllowed:
		return "Method Not Allowed"
	case 406:
		return "Not Acceptable"
	case 408:
		return "Request Timeout"
	case 409:
		return "Conflict"
	case 411:
		return "Length Required"
	case StatusPreconditionFailed:
		return "Precondition Failed"
	case StatusRequestEntityTooLarge:
		return "Request Entity Too Large"
	case 414:
		return "Request URI Too Long"
	case 415:
		return "Unsupported Media Type"
	case StatusExpectationFailed:
		return "Expectation Failed"
	case StatusMisdirectedRequest:
		return "Misdirected Request"
	case 429:
		return "Too Many Requests"
	case StatusRequestHeaderFieldsTooLarge:
		return "Request Header Fields Too Large"
	case StatusInternalServerError:
		return "Internal Server Error"
	case StatusNotImplemented:
		return "Not Implemented"
	case 502:
		return "Bad Gateway"
	case StatusServiceUnavailable:
		return "Service Unavailable"
	case 504:
		return "Gateway Timeout"
	case StatusHTTPVersionNotSupported:
		return "HTTP Version Not Supported"
	}
	return ""
}
