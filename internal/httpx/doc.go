// Package httpx is the HTTP/1.1 the gateway's packages are written
// against: the types and functions of net/http they use (Request,
// ResponseWriter, Header, Handler, ServeMux, Client, ReadRequest, ...),
// under the same names and with the same meaning, so that the packages
// import it as `http` and read as if they used net/http.
//
// It exists for the size of the router build. Linking net/http at all,
// even for one constant, costs about 1.2 MB of a mipsle binary: its
// package initialisation keeps crypto/tls and the FIPS self-tests, and
// DefaultTransport the x/net IDNA tables. A router with 16 MB of flash
// cannot spare that for a daemon that speaks plain HTTP/1.1 on its LAN.
//
// In the ordinary build (without the gatewayonly tag) every name here is
// net/http's own: type aliases, and variables and functions that forward,
// so that portfwd and its tests see net/http itself. In the router build
// (tag gatewayonly, see scripts/release.sh) the names are this package's
// own minimal implementation of exactly what the gateway uses: requests
// and answers read and written as HTTP/1.1 (Content-Length and chunked
// bodies, bounded headers), a ServeMux for the patterns the daemon and its
// admin page register, cookies, and a Client that sends each request to
// its Transport (upnp.ConnTransport: one connection per request). The
// server loop is package internal/httpserve, in both builds.
//
// What the router build does not offer, it does not pretend to: no TLS, no
// HTTP/2, no proxies, no connection pool, no multipart forms.
package httpx

// The status codes and methods the gateway uses, with net/http's values;
// untyped constants, the same in both builds.
const (
	StatusContinue                    = 100
	StatusOK                          = 200
	StatusNoContent                   = 204
	StatusMovedPermanently            = 301
	StatusFound                       = 302
	StatusSeeOther                    = 303
	StatusNotModified                 = 304
	StatusTemporaryRedirect           = 307
	StatusPermanentRedirect           = 308
	StatusBadRequest                  = 400
	StatusForbidden                   = 403
	StatusNotFound                    = 404
	StatusMethodNotAllowed            = 405
	StatusPreconditionFailed          = 412
	StatusRequestEntityTooLarge       = 413
	StatusExpectationFailed           = 417
	StatusMisdirectedRequest          = 421
	StatusRequestHeaderFieldsTooLarge = 431
	StatusInternalServerError         = 500
	StatusNotImplemented              = 501
	StatusServiceUnavailable          = 503
	StatusHTTPVersionNotSupported     = 505
)

const (
	MethodGet     = "GET"
	MethodHead    = "HEAD"
	MethodPost    = "POST"
	MethodPut     = "PUT"
	MethodDelete  = "DELETE"
	MethodOptions = "OPTIONS"
)

// TimeFormat is the format of HTTP dates (RFC 9110 section 5.6.7).
const TimeFormat = "Mon, 02 Jan 2006 15:04:05 GMT"
