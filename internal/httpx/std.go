//go:build !gatewayonly

package httpx

import (
	"bufio"
	"context"
	"io"
	"net/http"
)

// The ordinary build: net/http itself.

type (
	Request            = http.Request
	Response           = http.Response
	ResponseWriter     = http.ResponseWriter
	Header             = http.Header
	Handler            = http.Handler
	HandlerFunc        = http.HandlerFunc
	Client             = http.Client
	RoundTripper       = http.RoundTripper
	ServeMux           = http.ServeMux
	ConnState          = http.ConnState
	Cookie             = http.Cookie
	SameSite           = http.SameSite
	ResponseController = http.ResponseController
	MaxBytesError      = http.MaxBytesError
)

const (
	StateNew    = http.StateNew
	StateActive = http.StateActive
	StateIdle   = http.StateIdle
	StateClosed = http.StateClosed

	SameSiteStrictMode = http.SameSiteStrictMode
)

var (
	NoBody              = http.NoBody
	ErrServerClosed     = http.ErrServerClosed
	ErrContentLength    = http.ErrContentLength
	ErrBodyNotAllowed   = http.ErrBodyNotAllowed
	ErrAbortHandler     = http.ErrAbortHandler
	LocalAddrContextKey = http.LocalAddrContextKey
)

func NewRequestWithContext(ctx context.Context, method, url string, body io.Reader) (*Request, error) {
	return http.NewRequestWithContext(ctx, method, url, body)
}
func ReadRequest(b *bufio.Reader) (*Request, error)                 { return http.ReadRequest(b) }
func ReadResponse(r *bufio.Reader, req *Request) (*Response, error) { return http.ReadResponse(r, req) }
func Error(w ResponseWriter, error string, code int)                { http.Error(w, error, code) }
func NotFound(w ResponseWriter, r *Request)                         { http.NotFound(w, r) }
func StatusText(code int) string                                    { return http.StatusText(code) }
func CanonicalHeaderKey(s string) string                            { return http.CanonicalHeaderKey(s) }
func DetectContentType(data []byte) string                          { return http.DetectContentType(data) }
func NewServeMux() *ServeMux                                        { return http.NewServeMux() }
func NewResponseController(w ResponseWriter) *ResponseController {
	return http.NewResponseController(w)
}
func MaxBytesReader(w ResponseWriter, r io.ReadCloser, n int64) io.ReadCloser {
	return http.MaxBytesReader(w, r, n)
}
func SetCookie(w ResponseWriter, cookie *Cookie)   { http.SetCookie(w, cookie) }
func StripPrefix(prefix string, h Handler) Handler { return http.StripPrefix(prefix, h) }
