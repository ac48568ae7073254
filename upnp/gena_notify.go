package upnp

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"sort"
	"strings"

	http "github.com/portfwd/portfwd/internal/httpx"
)

// notifyTransport is the Publisher's default transport: each NOTIFY on a
// connection of its own, closed after the answer, as miniupnpd sends
// them, with the answer bounded to a status line and a few headers. It is
// a ConnTransport (see there for why not an http.Client's transport).
type notifyTransport struct{}

// maxNotifyResponseHeader bounds what a subscriber may answer: a status
// line and a few headers.
const maxNotifyResponseHeader = 8 << 10

func (notifyTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	return (&ConnTransport{MaxResponse: maxNotifyResponseHeader + 4<<10}).RoundTrip(req)
}

// ConnTransport is an http.RoundTripper for a gateway built for a
// router's flash: each request on a connection of its own, closed after
// the answer, with no proxy, no connection pool, no HTTP/2 and no gzip. It
// is written on net.Conn by hand and read with ReadResponse (internal/httpx:
// net/http's, or the router build's own), rather than with net/http's
// Transport, which would add about 0.4 MB to the router's binary and which
// a daemon sending a few requests a minute (GENA events, SOAP calls to the
// router above) has no use for.
//
// It takes http:// URLs only (UPnP devices and UDA callbacks are plain
// HTTP), and honours the request's context for the dial, the write and
// the read. It sends the request's headers as spelled, a Content-Length
// when there is a body (or the method is not GET or HEAD) and
// Connection: close; the answer may be chunked or delimited by the
// connection's end.
type ConnTransport struct {
	// DialContext dials the URL's host; nil means a net.Dialer's.
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)
	// MaxResponse bounds the bytes read of an answer, header and body;
	// zero means DefaultMaxBody plus 64 KiB of header.
	MaxResponse int64
}

func (t *ConnTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme != "http" {
		closeBody(req)
		return nil, fmt.Errorf("%s: not an http:// URL", req.URL)
	}
	ctx := req.Context()
	host := req.URL.Host
	if req.URL.Port() == "" {
		host = net.JoinHostPort(req.URL.Hostname(), "80")
	}
	dial := t.DialContext
	if dial == nil {
		var d net.Dialer
		dial = d.DialContext
	}
	conn, err := dial(ctx, "tcp", host)
	if err != nil {
		closeBody(req)
		return nil, err
	}
	// The context ends the exchange wherever it is: closing the
	// connection unblocks the write or the read.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	fail := func(err error) (*http.Response, error) {
		stop()
		conn.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, err
	}
	if err := writeRequest(conn, req); err != nil {
		return fail(err)
	}
	limit := t.MaxResponse
	if limit <= 0 {
		limit = DefaultMaxBody + 64<<10
	}
	resp, err := http.ReadResponse(bufio.NewReader(io.LimitReader(conn, limit)), req)
	if err != nil {
		return fail(err)
	}
	resp.Body = &connBody{ReadCloser: resp.Body, close: func() { stop(); conn.Close() }}
	return resp, nil
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}

// writeRequest writes req on w as HTTP/1.1 with Connection: close, its
// headers as the caller spelled them, and its body with a Content-Length
// (none for a GET or HEAD without a body, as browsers and miniupnpc send
// them). (By hand: Request.Write brings net/http's client-side writer,
// for a request this simple.)
func writeRequest(w io.Writer, req *http.Request) error {
	var body []byte
	if req.Body != nil {
		var err error
		if body, err = io.ReadAll(req.Body); err != nil {
			return err
		}
		req.Body.Close()
	}
	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	if strings.ContainsAny(req.Method+req.URL.RequestURI()+host, " \r\n") {
		return fmt.Errorf("%s %s: a space or line break in the request line or host", req.Method, req.URL)
	}
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "%s %s HTTP/1.1\r\nHost: %s\r\n", req.Method, req.URL.RequestURI(), host)
	keys := make([]string, 0, len(req.Header))
	for k := range req.Header {
		switch http.CanonicalHeaderKey(k) {
		case "Host", "Content-Length", "Connection", "Transfer-Encoding":
			continue // written below, once
		}
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] }) // not sort.Strings (slices.Sort): one sort routine in the router build
	for _, k := range keys {
		for _, v := range req.Header[k] {
			if strings.ContainsAny(k+v, "\r\n") {
				return fmt.Errorf("header %q: a line break in a header", k)
			}
			fmt.Fprintf(bw, "%s: %s\r\n", k, v)
		}
	}
	if len(body) > 0 || (req.Method != http.MethodGet && req.Method != http.MethodHead) {
		fmt.Fprintf(bw, "Content-Length: %d\r\n", len(body))
	}
	bw.WriteString("Connection: close\r\n\r\n")
	bw.Write(body)
	return bw.Flush()
}

// connBody closes the connection with the body.
type connBody struct {
	io.ReadCloser
	close func()
}

func (b *connBody) Close() error {
	err := b.ReadCloser.Close()
	b.close()
	return err
}
