//go:build !gatewayonly

package upnp

import (
	"net/http"
	"time"
)

// defaultHTTP is the client of a nil *http.Client: no proxy (a router on
// the LAN must never be reached through one), and a connection or two
// kept to a router that is asked again and again.
var defaultHTTP = &http.Client{Transport: &http.Transport{
	Proxy:               nil,
	MaxIdleConnsPerHost: 2,
	IdleConnTimeout:     30 * time.Second,
}}

// do sends req with hc, or defaultHTTP when hc is nil.
//
// The router build (tag gatewayonly, portfwd-gateway) has its own do,
// which links no http.Client or http.Transport; see httpdo_gateway.go.
func do(hc *http.Client, req *http.Request) (*http.Response, error) {
	if hc == nil {
		hc = defaultHTTP
	}
	return hc.Do(req)
}
