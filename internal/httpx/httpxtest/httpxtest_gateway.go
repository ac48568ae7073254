//go:build gatewayonly

package httpxtest

import (
	"bytes"
	"context"
	"io"
	"net"
	"time"

	"github.com/portfwd/portfwd/internal/httpserve"
	http "github.com/portfwd/portfwd/internal/httpx"
)

// Server is a handler served on a loopback port, as httptest.Server.
type Server struct {
	// URL is http://127.0.0.1:port, no trailing slash.
	URL      string
	Listener net.Listener
	srv      *httpserve.Server
	done     chan struct{}
}

// NewServer serves h on 127.0.0.1 at a free port; Close stops it.
func NewServer(h http.Handler) *Server {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		panic("httpxtest: " + err.Error())
	}
	s := &Server{
		URL:      "http://" + ln.Addr().String(),
		Listener: ln,
		srv:      &httpserve.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second},
		done:     make(chan struct{}),
	}
	go func() {
		defer close(s.done)
		s.srv.Serve(ln)
	}()
	return s
}

// Client is a client for the server: one with no settings of its own
// (the packages' default transport).
func (s *Server) Client() *http.Client { return &http.Client{} }

// Close stops the server, waiting a second at most for the answers under
// way.
func (s *Server) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	s.srv.Shutdown(ctx)
	<-s.done
}

// NewRequest returns a request as a server would hand it to a handler,
// for calling a handler straight (as httptest.NewRequest): target is a
// path or an absolute URL; the Host is example.com when target has none,
// the client 192.0.2.1:1234.
func NewRequest(method, target string, body io.Reader) *http.Request {
	r, err := http.NewRequestWithContext(context.Background(), method, target, body)
	if err != nil {
		panic("httpxtest: " + err.Error())
	}
	r.RequestURI = target
	if r.Host == "" {
		r.Host = "example.com"
	}
	if r.Body == nil {
		r.Body = http.NoBody
	}
	r.RemoteAddr = "192.0.2.1:1234"
	return r
}

// ResponseRecorder is a ResponseWriter that keeps the answer, for calling a
// handler straight (as httptest.ResponseRecorder).
type ResponseRecorder struct {
	// Code is the status the handler wrote (200 when it wrote none).
	Code int
	// Body is what the handler wrote.
	Body    *bytes.Buffer
	header  http.Header
	wrote   bool
	Flushed bool
}

// NewRecorder returns an empty Recorder.
func NewRecorder() *ResponseRecorder {
	return &ResponseRecorder{Code: http.StatusOK, Body: new(bytes.Buffer), header: http.Header{}}
}

// Header is the answer's header.
func (r *ResponseRecorder) Header() http.Header { return r.header }

// WriteHeader keeps the first status.
func (r *ResponseRecorder) WriteHeader(code int) {
	if !r.wrote {
		r.Code, r.wrote = code, true
	}
}

// Write keeps p.
func (r *ResponseRecorder) Write(p []byte) (int, error) {
	r.WriteHeader(http.StatusOK)
	return r.Body.Write(p)
}

// Flush records that the handler flushed.
func (r *ResponseRecorder) Flush() { r.WriteHeader(http.StatusOK); r.Flushed = true }
