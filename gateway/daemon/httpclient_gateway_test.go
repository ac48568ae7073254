//go:build gatewayonly

package daemon

import (
	"context"
	"net"
	"time"

	http "github.com/portfwd/portfwd/internal/httpx"
	"github.com/portfwd/portfwd/upnp"
)

// testHTTPClient is the client the tests ask the daemon's UPnP with: in
// the router build, which has no net/http client to give upnp, the
// router build's own, upnp.ConnTransport, each connection dialled with
// dial.
func testHTTPClient(dial func(ctx context.Context, network, addr string) (net.Conn, error)) *http.Client {
	return &http.Client{Timeout: 5 * time.Second, Transport: &upnp.ConnTransport{DialContext: dial}}
}
