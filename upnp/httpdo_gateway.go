//go:build gatewayonly

package upnp

import "net/http"

// do, in the router build (tag gatewayonly, which scripts/release.sh gives
// portfwd-gateway), sends req straight to hc's Transport, or to a
// ConnTransport when hc or its Transport is nil, rather than through
// http.Client.Do: Client.Do links net/http's Transport (its connection
// pool, proxies and gzip), about 0.4 MB of a router's flash, even when
// every client given has a Transport of its own. The gateway's requests
// (SOAP calls and description fetches to the router above) follow no
// redirect and keep no cookie, and are bounded by their context, so what
// Client.Do adds to a RoundTrip is not needed; an hc with a
// CheckRedirect, Jar or Timeout is not honoured here.
func do(hc *http.Client, req *http.Request) (*http.Response, error) {
	var rt http.RoundTripper = &ConnTransport{}
	if hc != nil && hc.Transport != nil {
		rt = hc.Transport
	}
	resp, err := rt.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	return resp, nil
}
