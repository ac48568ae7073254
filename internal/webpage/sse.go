package webpage

import (
	"fmt"

	http "github.com/portfwd/portfwd/internal/httpx"
)

// Stream writes server-sent events (the text/event-stream format) to one
// response, for the client UI's and the admin page's live updates.
type Stream struct {
	w  http.ResponseWriter
	rc *http.ResponseController
}

// StartStream sends the headers of an event stream and how soon the
// browser should reconnect after it ends.
func StartStream(w http.ResponseWriter) (*Stream, error) {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream; charset=utf-8")
	h.Set("X-Accel-Buffering", "no") // proxies must not hold events back
	w.WriteHeader(http.StatusOK)
	s := &Stream{w: w, rc: http.NewResponseController(w)}
	// retry: how soon EventSource reconnects after the stream ends.
	if _, err := fmt.Fprint(w, "retry: 2000\n\n"); err != nil {
		return nil, err
	}
	return s, nil
}

// Send writes one event; data is JSON, which never holds a raw newline,
// so one data line is enough. It is sent at the next Flush.
func (s *Stream) Send(name string, data []byte) error {
	_, err := fmt.Fprintf(s.w, "event: %s\ndata: %s\n\n", name, data)
	return err
}

// Keepalive writes a comment line, which keeps idle proxies and the
// browser from dropping a quiet stream.
func (s *Stream) Keepalive() error {
	_, err := fmt.Fprint(s.w, ": keepalive\n\n")
	return err
}

// Flush sends what was written.
func (s *Stream) Flush() error { return s.rc.Flush() }
