//go:build gatewayonly

package upnp

import (
	"context"
	"errors"
	"fmt"
	"io"

	http "github.com/portfwd/portfwd/internal/httpx"
)

// maxRedirects is how many redirects do follows, as http.Client's default
// policy.
const maxRedirects = 10

// do, in the router build (tag gatewayonly, which scripts/release.sh gives
// portfwd-gateway), sends req straight to hc's Transport, or to a
// ConnTransport when hc or its Transport is nil, rather than through
// http.Client.Do: Client.Do links net/http's Transport (its connection
// pool, proxies and gzip), about 0.4 MB of a router's flash, even when
// every client given has a Transport of its own.
//
// What Client.Do adds that a gateway's requests need, it does here: the
// client's Timeout bounds the request and the reading of its answer (the
// gateway's own requests carry a context with a deadline besides), and a
// GET or HEAD follows up to 10 redirects, as http.Client does (a
// description URL that redirects: relative URLs then resolve against the
// final address, resp.Request). A POST's redirect is returned as it came:
// a SOAP control URL does not move. An hc's Jar and CheckRedirect are not
// consulted.
func do(hc *http.Client, req *http.Request) (*http.Response, error) {
	var rt http.RoundTripper = &ConnTransport{}
	if hc != nil && hc.Transport != nil {
		rt = hc.Transport
	}
	cancel := context.CancelFunc(func() {})
	if hc != nil && hc.Timeout > 0 {
		var ctx context.Context
		ctx, cancel = context.WithTimeout(req.Context(), hc.Timeout)
		req = req.WithContext(ctx)
	}
	for redirects := 0; ; redirects++ {
		resp, err := rt.RoundTrip(req)
		if err != nil {
			cancel()
			return nil, err
		}
		next, err := redirectOf(req, resp)
		if err != nil || next == nil {
			if err != nil {
				resp.Body.Close()
				cancel()
				return nil, err
			}
			resp.Body = &cancelBody{ReadCloser: resp.Body, cancel: cancel}
			return resp, nil
		}
		io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		resp.Body.Close()
		if redirects == maxRedirects {
			cancel()
			return nil, fmt.Errorf("%s %s: stopped after %d redirects", req.Method, req.URL, maxRedirects)
		}
		req = next
	}
}

// redirectOf returns the request a redirect answer to a GET or HEAD asks
// for, or nil when resp is not one to follow.
func redirectOf(req *http.Request, resp *http.Response) (*http.Request, error) {
	switch resp.StatusCode {
	case http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther, http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
	default:
		return nil, nil
	}
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		return nil, nil
	}
	loc := resp.Header.Get("Location")
	if loc == "" {
		return nil, nil // as http.Client: the answer itself is returned
	}
	u, err := req.URL.Parse(loc)
	if err != nil {
		return nil, fmt.Errorf("%s %s: redirect to %q: %w", req.Method, req.URL, loc, err)
	}
	if u.Scheme != "http" {
		return nil, errors.New(req.Method + " " + req.URL.String() + ": redirect to " + u.String() + ", not an http:// URL")
	}
	next := req.Clone(req.Context())
	next.URL = u
	next.Host = ""
	return next, nil
}

// cancelBody ends the request's Timeout context once the answer is read.
type cancelBody struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (b *cancelBody) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}
