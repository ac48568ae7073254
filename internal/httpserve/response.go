package httpserve

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	http "github.com/portfwd/portfwd/internal/httpx"
)

// bufferSize is how much of an answer is held to be sent with a
// Content-Length; a longer one is streamed (chunked).
const bufferSize = 64 << 10

// response is the http.ResponseWriter of one request. The handler's
// answer is held until it returns (or flushes, or writes more than
// bufferSize), so that the header can say how long the body is and
// whether the connection stays open.
type response struct {
	c      *conn
	req    *http.Request
	cancel context.CancelFunc
	body   *body

	header      http.Header // the handler's
	sent        http.Header // the header as it was at WriteHeader
	status      int
	wroteHeader bool // the handler has said its status
	headerSent  bool // the status line and header are on their way
	chunked     bool
	buf         []byte
	// written counts the body's bytes the handler wrote;
	// contentLength is the length its header declared, or -1.
	written, contentLength int64
	closeAfter             bool
}

func (w *response) Header() http.Header { return w.header }

func (w *response) WriteHeader(code int) {
	if code < 100 || code > 999 {
		panic(fmt.Sprintf("invalid WriteHeader code %v", code)) // as net/http's
	}
	if w.wroteHeader || code < 200 {
		return // a second status is dropped; so are 1xx answers
	}
	w.wroteHeader = true
	w.status = code
	w.sent = w.header.Clone()
	if w.sent == nil {
		w.sent = http.Header{}
	}
	delete(w.sent, "Transfer-Encoding") // the framing is the server's
	if cl := w.sent.Get("Content-Length"); cl != "" {
		if v, err := strconv.ParseInt(cl, 10, 64); err == nil && v >= 0 {
			w.contentLength = v
		} else {
			delete(w.sent, "Content-Length")
		}
	}
}

func (w *response) Write(p []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if len(p) == 0 {
		return 0, nil
	}
	if !bodyAllowed(w.status) {
		return 0, http.ErrBodyNotAllowed
	}
	w.written += int64(len(p))
	if w.contentLength != -1 && w.written > w.contentLength {
		w.written -= int64(len(p))
		return 0, http.ErrContentLength
	}
	if w.req.Method == http.MethodHead {
		if len(w.buf) < 512 { // enough to sniff a type from
			w.buf = append(w.buf, p[:min(len(p), 512-len(w.buf))]...)
		}
		return len(p), nil
	}
	if w.headerSent {
		return w.writeBody(p)
	}
	w.buf = append(w.buf, p...)
	if len(w.buf) > bufferSize {
		if err := w.sendHeader(false); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// writeBody sends p, in a chunk of its own when the answer is chunked.
func (w *response) writeBody(p []byte) (int, error) {
	bw := w.c.bufw
	if w.chunked {
		fmt.Fprintf(bw, "%x\r\n", len(p))
		bw.Write(p)
		_, err := bw.WriteString("\r\n")
		if err != nil {
			return 0, err
		}
		return len(p), nil
	}
	return bw.Write(p)
}

// Flush sends what the handler wrote so far; see FlushError.
func (w *response) Flush() { w.FlushError() }

// FlushError sends the header and what the handler wrote so far, for
// http.ResponseController: an answer flushed before the handler returns
// is chunked, unless the handler gave a Content-Length.
func (w *response) FlushError() error {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if !w.headerSent {
		if err := w.sendHeader(false); err != nil {
			return err
		}
	}
	return w.c.bufw.Flush()
}

// sendHeader writes the status line, the header and the body held so far.
// final says the handler has returned, so that the body held is all of it.
func (w *response) sendHeader(final bool) error {
	w.headerSent = true
	h := w.sent
	isHead := w.req.Method == http.MethodHead
	ok := bodyAllowed(w.status)
	switch {
	case !ok:
		delete(h, "Content-Length")
	case w.contentLength >= 0:
	case final && (!isHead || w.written > 0):
		h["Content-Length"] = []string{strconv.FormatInt(w.written, 10)}
		w.contentLength = w.written
	case final || isHead:
	case w.req.ProtoAtLeast(1, 1):
		w.chunked = true
		h["Transfer-Encoding"] = []string{"chunked"}
	default:
		w.closeAfter = true // HTTP/1.0: the body ends with the connection
	}
	if _, ok := h["Date"]; !ok {
		h["Date"] = []string{time.Now().UTC().Format(http.TimeFormat)}
	}
	if _, has := h["Content-Type"]; !has && ok && len(w.buf) > 0 {
		h["Content-Type"] = []string{http.DetectContentType(w.buf)}
	}
	if hasToken(h["Connection"], "close") {
		w.closeAfter = true
	}
	if final && w.body.remains() {
		// The handler left the body unread: the next request cannot be
		// found in what follows.
		w.closeAfter = true
	}
	if w.closeAfter && w.req.ProtoAtLeast(1, 1) && !hasToken(h["Connection"], "close") {
		h["Connection"] = []string{"close"}
	}
	bw := w.c.bufw
	text := http.StatusText(w.status)
	if text == "" {
		text = "status code " + strconv.Itoa(w.status)
	}
	bw.WriteString("HTTP/1.1 " + strconv.Itoa(w.status) + " " + text + "\r\n")
	writeHeader(bw, h)
	_, err := bw.WriteString("\r\n")
	if err != nil {
		return err
	}
	buf := w.buf
	w.buf = nil
	if len(buf) > 0 && ok && !isHead {
		_, err = w.writeBody(buf)
	}
	return err
}

// writeHeader writes h as http.Header.Write does (keys sorted, invalid
// names dropped, line breaks in values made spaces, values trimmed), but
// with sort.Slice: Header.Write's slices.SortFunc is 10 KB more of the
// router build for one sort.
func writeHeader(bw *bufio.Writer, h http.Header) {
	keys := make([]string, 0, len(h))
	for k := range h {
		if http.ValidToken(k) {
			keys = append(keys, k)
		}
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
	for _, k := range keys {
		for _, v := range h[k] {
			v = strings.Trim(strings.Map(func(r rune) rune {
				if r == '\r' || r == '\n' {
					return ' '
				}
				return r
			}, v), " \t")
			bw.WriteString(k)
			bw.WriteString(": ")
			bw.WriteString(v)
			bw.WriteString("\r\n")
		}
	}
}

// finish completes the answer once the handler has returned.
func (w *response) finish() {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if !w.headerSent {
		w.sendHeader(true)
	} else if w.chunked {
		w.c.bufw.WriteString("0\r\n\r\n")
	}
	w.c.bufw.Flush()
	if w.req.Method != http.MethodHead && bodyAllowed(w.status) && w.contentLength >= 0 && w.written != w.contentLength {
		w.closeAfter = true // a short answer: the client waits for the rest
	}
}

// reusable reports whether the connection may carry another request.
func (w *response) reusable() bool {
	return !w.closeAfter && w.c.werr == nil && !w.body.remains()
}

// bodyAllowed reports whether an answer of status may have a body.
func bodyAllowed(status int) bool {
	return status >= 200 && status != http.StatusNoContent && status != http.StatusNotModified
}

// hasToken reports whether a comma-separated header holds token.
func hasToken(values []string, token string) bool {
	for _, v := range values {
		for {
			f, rest, more := cutComma(v)
			if equalFoldTrim(f, token) {
				return true
			}
			if !more {
				break
			}
			v = rest
		}
	}
	return false
}

func cutComma(s string) (before, after string, found bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == ',' {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

func equalFoldTrim(s, token string) bool {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	if len(s) != len(token) {
		return false
	}
	for i := 0; i < len(s); i++ {
		a, b := s[i]|0x20, token[i]|0x20
		if a != b {
			return false
		}
	}
	return true
}

// body is a request's body as the handler reads it: it tells the
// connection when it has been read to its end (the connection may then
// read in the background, and carry another request), and sends 100
// Continue before the first read when the client waits for it.
type body struct {
	rc        io.ReadCloser
	noBody    bool
	sawEOF    bool
	onEOF     func()
	continueW *response
}

// remains reports whether some of the body is still unread.
func (b *body) remains() bool { return !b.noBody && !b.sawEOF }

func (b *body) Read(p []byte) (int, error) {
	if !b.remains() {
		return 0, io.EOF
	}
	if w := b.continueW; w != nil {
		b.continueW = nil
		if !w.headerSent && w.c.werr == nil {
			w.c.bufw.WriteString("HTTP/1.1 100 Continue\r\n\r\n")
			w.c.bufw.Flush()
		}
	}
	n, err := b.rc.Read(p)
	if err == io.EOF {
		b.sawEOF = true
		if f := b.onEOF; f != nil {
			b.onEOF = nil
			f()
		}
	}
	return n, err
}

// Close leaves the rest unread; the connection is closed after the answer
// if anything was.
func (b *body) Close() error { return nil }
