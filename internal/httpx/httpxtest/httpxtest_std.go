//go:build !gatewayonly

package httpxtest

import (
	"io"
	"net/http"
	"net/http/httptest"
)

// The ordinary build: net/http/httptest itself.

type (
	Server           = httptest.Server
	ResponseRecorder = httptest.ResponseRecorder
)

// NewServer is httptest.NewServer.
func NewServer(h http.Handler) *Server { return httptest.NewServer(h) }

// NewRequest is httptest.NewRequest.
func NewRequest(method, target string, body io.Reader) *http.Request {
	return httptest.NewRequest(method, target, body)
}

// NewRecorder is httptest.NewRecorder.
func NewRecorder() *ResponseRecorder { return httptest.NewRecorder() }
