//go:build gatewayonly

package httpx

import "time"

// RoundTripper sends one request and returns its answer, as net/http's.
type RoundTripper interface {
	RoundTrip(*Request) (*Response, error)
}

// Client is what the gateway's packages hold to send requests: its
// Transport (nil: upnp.ConnTransport, one connection per request) and a
// Timeout for each exchange. The router build has no Client.Do (no
// connection pool, proxies or cookie jar): package upnp sends with its
// own do, which follows redirects as net/http's Client does.
type Client struct {
	Transport RoundTripper
	Timeout   time.Duration
}
