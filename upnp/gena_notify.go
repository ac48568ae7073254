package upnp

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strings"
)

// notifyTransport is the Publisher's default transport: each NOTIFY on a
// connection of its own, closed after the answer, as miniupnpd sends
// them. It is written on net.Conn by hand and read with net/http's
// ReadResponse, rather than with an http.Client, whose transport (a
// connection pool, proxies, HTTP/2, gzip) would add 0.4 MB to a gateway
// built for a router's flash, and which a subscriber sent a few events a
// minute has no use for.
//
// It takes http:// URLs only (UDA callbacks are plain HTTP), dials the
// URL's host with no proxy, and honours the request's context for the
// dial, the write and the read.
type notifyTransport struct{}

// maxNotifyResponseHeader bounds what a subscriber may answer: a status
// line and a few headers.
const maxNotifyResponseHeader = 8 << 10

func (notifyTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme != "http" {
		return nil, fmt.Errorf("callback %s: not an http:// URL", req.URL)
	}
	ctx := req.Context()
	host := req.URL.Host
	if req.URL.Port() == "" {
		host = net.JoinHostPort(req.URL.Hostname(), "80")
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", host)
	if err != nil {
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
	if err := writeNotify(conn, req); err != nil {
		return fail(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(io.LimitReader(conn, maxNotifyResponseHeader+4<<10)), req)
	if err != nil {
		return fail(err)
	}
	resp.Body = &connBody{ReadCloser: resp.Body, close: func() { stop(); conn.Close() }}
	return resp, nil
}

// writeNotify writes req on w as HTTP/1.1 with Connection: close, its
// headers as the publisher spelled them, and its body with a
// Content-Length. (By hand: Request.Write brings net/http's client-side
// writer, for a request this simple.)
func writeNotify(w io.Writer, req *http.Request) error {
	var body []byte
	if req.Body != nil {
		var err error
		if body, err = io.ReadAll(req.Body); err != nil {
			return err
		}
		req.Body.Close()
	}
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "%s %s HTTP/1.1\r\nHost: %s\r\n", req.Method, req.URL.RequestURI(), req.URL.Host)
	keys := make([]string, 0, len(req.Header))
	for k := range req.Header {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		for _, v := range req.Header[k] {
			if strings.ContainsAny(k+v, "\r\n") {
				return fmt.Errorf("header %q: a line break in a header", k)
			}
			fmt.Fprintf(bw, "%s: %s\r\n", k, v)
		}
	}
	fmt.Fprintf(bw, "Content-Length: %d\r\nConnection: close\r\n\r\n", len(body))
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
