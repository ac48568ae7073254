//go:build gatewayonly

package httpx

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"
)

// maxStartLine bounds a request's or an answer's first line. (The whole
// header is bounded by the reader the caller gives: internal/httpserve
// bounds a request's, upnp.ConnTransport an answer's.)
const maxStartLine = 8 << 10

// Request is an HTTP request: one a server read (ReadRequest) or one a
// client sends (NewRequestWithContext). Its fields mean what net/http's
// do.
type Request struct {
	Method                 string
	URL                    *url.URL
	Proto                  string // "HTTP/1.1"
	ProtoMajor, ProtoMinor int
	// Header holds the fields but Host, which is in Host.
	Header Header
	// Body is the request's body: never nil in a request a server read
	// (NoBody when there is none).
	Body io.ReadCloser
	// ContentLength is the body's length, -1 when unknown (chunked).
	ContentLength    int64
	TransferEncoding []string
	// Close says the client sends no other request on the connection.
	Close bool
	// Host is the Host header's value (or the host of a request-target
	// in absolute form); for a client's request, the URL's host.
	Host string
	// RemoteAddr is the client's address, set by the server.
	RemoteAddr string
	// RequestURI is the request-target as the client sent it.
	RequestURI string

	ctx        context.Context
	pathValues map[string]string
}

// Context is the request's context: for a server's request, it ends when
// the client goes away or the handler returns.
func (r *Request) Context() context.Context {
	if r.ctx != nil {
		return r.ctx
	}
	return context.Background()
}

// WithContext returns a shallow copy of r with its context ctx.
func (r *Request) WithContext(ctx context.Context) *Request {
	if ctx == nil {
		panic("nil context")
	}
	r2 := *r
	r2.ctx = ctx
	return &r2
}

// Clone returns a copy of r with its context ctx, its URL and header
// copied (the body is shared).
func (r *Request) Clone(ctx context.Context) *Request {
	r2 := r.WithContext(ctx)
	if r.URL != nil {
		u := *r.URL
		if u.User != nil {
			user := *u.User
			u.User = &user
		}
		r2.URL = &u
	}
	r2.Header = r.Header.Clone()
	r2.TransferEncoding = append([]string(nil), r.TransferEncoding...)
	if r.pathValues != nil {
		r2.pathValues = make(map[string]string, len(r.pathValues))
		for k, v := range r.pathValues {
			r2.pathValues[k] = v
		}
	}
	return r2
}

// ProtoAtLeast reports whether the request's version is at least
// major.minor.
func (r *Request) ProtoAtLeast(major, minor int) bool {
	return r.ProtoMajor > major || r.ProtoMajor == major && r.ProtoMinor >= minor
}

// PathValue is the path segment the ServeMux pattern's wildcard {name}
// matched, or "".
func (r *Request) PathValue(name string) string { return r.pathValues[name] }

// SetPathValue sets what PathValue(name) returns.
func (r *Request) SetPathValue(name, value string) {
	if r.pathValues == nil {
		r.pathValues = map[string]string{}
	}
	r.pathValues[name] = value
}

// NewRequestWithContext returns a client's request for method and an
// absolute URL, with body (nil for none) sent as it is read.
func NewRequestWithContext(ctx context.Context, method, rawURL string, body io.Reader) (*Request, error) {
	if ctx == nil {
		return nil, errors.New("net/http: nil Context")
	}
	if method == "" {
		method = MethodGet
	}
	if !ValidToken(method) {
		return nil, errors.New("net/http: invalid method " + strconv.Quote(method))
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, err
	}
	u.Host = strings.TrimSuffix(u.Host, ":") // as net/http: "host:" is "host"
	r := &Request{
		ctx:        ctx,
		Method:     method,
		URL:        u,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     make(Header),
		Host:       u.Host,
	}
	if body != nil {
		rc, ok := body.(io.ReadCloser)
		if !ok {
			rc = io.NopCloser(body)
		}
		r.Body = rc
		switch b := body.(type) {
		case *bytes.Buffer:
			r.ContentLength = int64(b.Len())
		case *bytes.Reader:
			r.ContentLength = int64(b.Len())
		case *strings.Reader:
			r.ContentLength = int64(b.Len())
		}
	}
	return r, nil
}

// ReadRequest reads a request's line and header from b, the body being
// left to read from r.Body: RFC 9112's request line, the header fields
// canonicalised (a malformed field refused), Host moved to r.Host (two
// Host fields refused), and the body's framing, Content-Length or
// chunked (any other transfer coding is an error saying "unsupported
// transfer encoding"; both at once are refused). The header's size is
// bounded by b's source: bound it.
func ReadRequest(b *bufio.Reader) (*Request, error) {
	line, err := readLine(b, maxStartLine)
	if err != nil {
		return nil, err
	}
	method, rest, ok1 := strings.Cut(line, " ")
	target, proto, ok2 := strings.Cut(rest, " ")
	if !ok1 || !ok2 {
		return nil, &badStringError{"malformed HTTP request", line}
	}
	if !ValidToken(method) {
		return nil, &badStringError{"invalid method", method}
	}
	major, minor, ok := parseHTTPVersion(proto)
	if !ok {
		return nil, &badStringError{"malformed HTTP version", proto}
	}
	r := &Request{Method: method, RequestURI: target, Proto: proto, ProtoMajor: major, ProtoMinor: minor}
	if r.URL, err = url.ParseRequestURI(target); err != nil {
		return nil, err
	}
	if r.Header, err = readHeader(b); err != nil {
		return nil, err
	}
	if hosts := r.Header["Host"]; len(hosts) > 1 {
		return nil, errors.New("too many Host headers")
	}
	r.Host = r.URL.Host
	if r.Host == "" {
		r.Host = r.Header.Get("Host")
	}
	delete(r.Header, "Host")
	r.Close = !r.ProtoAtLeast(1, 1) && !hasToken(r.Header["Connection"], "keep-alive") || hasToken(r.Header["Connection"], "close")

	f, err := framingOf(r.Header)
	if err != nil {
		return nil, err
	}
	if f.length == -1 && !f.chunked {
		f.length = 0 // a request without either has no body
	}
	r.ContentLength = f.length
	if f.chunked {
		r.TransferEncoding = []string{"chunked"}
		delete(r.Header, "Transfer-Encoding")
	}
	r.Body = f.bodyReader(b)
	return r, nil
}

// Response is an HTTP answer as a client reads it (ReadResponse).
type Response struct {
	Status                 string // "200 OK"
	StatusCode             int
	Proto                  string
	ProtoMajor, ProtoMinor int
	Header                 Header
	// Body is the answer's body, never nil; the caller closes it.
	Body io.ReadCloser
	// ContentLength is the body's length, -1 when unknown.
	ContentLength    int64
	TransferEncoding []string
	// Close says the server closes the connection after the answer.
	Close bool
	// Request is the request answered.
	Request *Request
}

// ReadResponse reads an answer to req (which may be nil) from r: the
// status line, the header, and the body's framing (none for an answer to
// HEAD, a 1xx, 204 or 304; chunked; a Content-Length; or to the
// connection's end). The header's size is bounded by r's source.
func ReadResponse(r *bufio.Reader, req *Request) (*Response, error) {
	line, err := readLine(r, maxStartLine)
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	proto, status, ok := strings.Cut(line, " ")
	if !ok {
		return nil, &badStringError{"malformed HTTP response", line}
	}
	major, minor, ok := parseHTTPVersion(proto)
	if !ok {
		return nil, &badStringError{"malformed HTTP version", proto}
	}
	status = strings.TrimLeft(status, " ")
	code, _, _ := strings.Cut(status, " ")
	if len(code) != 3 || code[0] < '1' || code[0] > '9' {
		return nil, &badStringError{"malformed HTTP status code", code}
	}
	n, err := strconv.Atoi(code)
	if err != nil {
		return nil, &badStringError{"malformed HTTP status code", code}
	}
	resp := &Response{Status: status, StatusCode: n, Proto: proto, ProtoMajor: major, ProtoMinor: minor, Request: req}
	if resp.Header, err = readHeader(r); err != nil {
		return nil, err
	}
	resp.Close = !resp.ProtoAtLeast(1, 1) || hasToken(resp.Header["Connection"], "close")
	f, err := framingOf(resp.Header)
	if err != nil {
		return nil, err
	}
	if f.chunked {
		resp.TransferEncoding = []string{"chunked"}
		delete(resp.Header, "Transfer-Encoding")
	}
	if n < 200 || n == StatusNoContent || n == StatusNotModified || req != nil && req.Method == MethodHead {
		resp.Body = NoBody
		resp.ContentLength = 0
		if !f.chunked && f.length > 0 && req != nil && req.Method == MethodHead {
			resp.ContentLength = f.length // what a GET would have had
		}
		return resp, nil
	}
	resp.ContentLength = f.length
	resp.Body = f.bodyReader(r)
	return resp, nil
}

// ProtoAtLeast reports whether the answer's version is at least
// major.minor.
func (r *Response) ProtoAtLeast(major, minor int) bool {
	return r.ProtoMajor > major || r.ProtoMajor == major && r.ProtoMinor >= minor
}

// readHeader reads header fields up to the empty line, canonicalising
// their names; a field that is not "token: value" is an error (RFC 9112
// section 5.1: no space before the colon).
func readHeader(b *bufio.Reader) (Header, error) {
	h, err := textproto.NewReader(b).ReadMIMEHeader()
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		return nil, err
	}
	for k := range h {
		if !ValidToken(k) { // textproto lets "X Bad" and "X-Bad " through
			return nil, errors.New("invalid header name " + strconv.Quote(k))
		}
	}
	if h == nil {
		h = textproto.MIMEHeader{}
	}
	return Header(h), nil
}

// parseHTTPVersion parses "HTTP/1.1" and its like: one digit each.
func parseHTTPVersion(v string) (major, minor int, ok bool) {
	if len(v) != len("HTTP/1.1") || !strings.HasPrefix(v, "HTTP/") || v[6] != '.' {
		return 0, 0, false
	}
	if v[5] < '0' || v[5] > '9' || v[7] < '0' || v[7] > '9' {
		return 0, 0, false
	}
	return int(v[5] - '0'), int(v[7] - '0'), true
}

// hasToken reports whether a comma-separated header holds token, in any
// case.
func hasToken(values []string, token string) bool {
	for _, v := range values {
		for f := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(f), token) {
				return true
			}
		}
	}
	return false
}

// badStringError is a start line that is not HTTP's.
type badStringError struct {
	what string
	str  string
}

func (e *badStringError) Error() string { return e.what + " " + strconv.Quote(e.str) }
