//go:build !gatewayonly

package daemon

import (
	"context"
	"net"
	"net/http"
	"time"
)

// testHTTPClient is the client the tests ask the daemon's UPnP with: in
// the ordinary build net/http's, as portmap's, each connection dialled
// with dial.
func testHTTPClient(dial func(ctx context.Context, network, addr string) (net.Conn, error)) *http.Client {
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil, DialContext: dial, DisableKeepAlives: true}}
}
