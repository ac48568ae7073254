//go:build gatewayonly

package httpx

import (
	"bufio"
	"errors"
	"io"
	"strconv"
	"strings"
)

// NoBody is a body with no bytes: Read returns io.EOF at once.
var NoBody = noBody{}

type noBody struct{}

func (noBody) Read([]byte) (int, error) { return 0, io.EOF }
func (noBody) Close() error             { return nil }

// Limits of a chunked body's framing, which no honest peer comes near.
const (
	maxChunkLine    = 4096 // a chunk's size line, extensions included
	maxTrailerLines = 64   // trailer fields after the last chunk
)

// The errors of a chunked body's framing that is not RFC 9112's, with
// net/http's texts.
var (
	errBadChunk       = errors.New("malformed chunked encoding")
	errBadChunkLength = errors.New("invalid byte in chunk length")
)

// framing is how a message's body is delimited: its length (-1: unknown)
// and whether it is chunked.
type framing struct {
	length  int64
	chunked bool
}

// framingOf reads a message's Transfer-Encoding and Content-Length, as
// RFC 9112 section 6 says: chunked is the only transfer coding known; a
// message with both is refused (a request smuggler's trick), as is a
// Content-Length that is not one decimal number.
func framingOf(h Header) (framing, error) {
	te, hasTE := h["Transfer-Encoding"]
	cl, hasCL := h["Content-Length"]
	if hasTE {
		if len(te) != 1 || !strings.EqualFold(strings.TrimSpace(te[0]), "chunked") {
			return framing{}, errors.New("unsupported transfer encoding")
		}
		if hasCL {
			return framing{}, errors.New("both Transfer-Encoding and Content-Length")
		}
		return framing{length: -1, chunked: true}, nil
	}
	if !hasCL {
		return framing{length: -1}, nil
	}
	var n int64 = -1
	for _, v := range cl {
		// Several equal values (or one list of them) are one length.
		for f := range strings.SplitSeq(v, ",") {
			m, err := parseContentLength(strings.TrimSpace(f))
			if err != nil || (n != -1 && m != n) {
				return framing{}, errors.New("bad Content-Length")
			}
			n = m
		}
	}
	return framing{length: n}, nil
}

func parseContentLength(s string) (int64, error) {
	if s == "" || len(s) > 18 {
		return 0, errors.New("bad Content-Length")
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, errors.New("bad Content-Length")
		}
	}
	return strconv.ParseInt(s, 10, 64)
}

// bodyReader returns the body that follows a header read from br.
func (f framing) bodyReader(br *bufio.Reader) io.ReadCloser {
	switch {
	case f.chunked:
		return &chunkedReader{br: br}
	case f.length == 0:
		return NoBody
	case f.length > 0:
		return &lengthReader{r: br, n: f.length}
	}
	return io.NopCloser(br) // to the connection's end
}

// lengthReader reads a body of a Content-Length; the connection ending
// before is io.ErrUnexpectedEOF.
type lengthReader struct {
	r io.Reader
	n int64
}

func (l *lengthReader) Read(p []byte) (int, error) {
	if l.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.r.Read(p)
	l.n -= int64(n)
	if err == io.EOF {
		if l.n > 0 {
			return n, io.ErrUnexpectedEOF
		}
		err = nil
	}
	if l.n == 0 && err == nil {
		return n, io.EOF
	}
	return n, err
}

func (l *lengthReader) Close() error { return nil }

// chunkedReader reads a body in chunked coding (RFC 9112 section 7.1):
// size lines in hexadecimal, extensions ignored, each chunk followed by
// CRLF, the trailer fields after the last chunk read and dropped.
type chunkedReader struct {
	br   *bufio.Reader
	left int64 // of the current chunk
	err  error
}

func (c *chunkedReader) Read(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	if c.left == 0 {
		n, err := c.nextChunk()
		if err != nil {
			c.err = err
			return 0, err
		}
		if n == 0 {
			c.err = c.readTrailer()
			if c.err == nil {
				c.err = io.EOF
			}
			return 0, c.err
		}
		c.left = n
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.br.Read(p)
	c.left -= int64(n)
	if c.left == 0 && err == nil {
		err = c.crlf()
	}
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	c.err = err
	return n, err
}

func (c *chunkedReader) Close() error { return nil }

// crlf reads the CRLF after a chunk's data.
func (c *chunkedReader) crlf() error {
	var b [2]byte
	if _, err := io.ReadFull(c.br, b[:]); err != nil {
		return io.ErrUnexpectedEOF
	}
	if b != [2]byte{'\r', '\n'} {
		return errBadChunk
	}
	return nil
}

// nextChunk reads a size line.
func (c *chunkedReader) nextChunk() (int64, error) {
	line, err := readLine(c.br, maxChunkLine)
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return 0, err
	}
	if i := strings.IndexByte(line, ';'); i >= 0 {
		line = line[:i] // chunk extensions: none is understood
	}
	line = strings.TrimRight(line, " \t")
	if line == "" {
		return 0, errBadChunkLength
	}
	if len(line) > 15 { // 15 hex digits: far beyond any body, and no overflow
		return 0, errors.New("http chunk length too large")
	}
	var n int64
	for i := 0; i < len(line); i++ {
		d := unhex(line[i])
		if d < 0 {
			return 0, errBadChunkLength
		}
		n = n<<4 | int64(d)
	}
	return n, nil
}

// readTrailer reads the trailer fields and the empty line that ends the
// body.
func (c *chunkedReader) readTrailer() error {
	for range maxTrailerLines {
		line, err := readLine(c.br, maxChunkLine)
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
		if line == "" {
			return nil
		}
	}
	return errBadChunk
}

func unhex(b byte) int {
	switch {
	case '0' <= b && b <= '9':
		return int(b - '0')
	case 'a' <= b && b <= 'f':
		return int(b-'a') + 10
	case 'A' <= b && b <= 'F':
		return int(b-'A') + 10
	}
	return -1
}

// errLineTooLong is a line of a message's framing over its bound.
var errLineTooLong = errors.New("line too long")

// readLine reads a line ending in LF (a CR before it dropped), of at most
// max bytes.
func readLine(br *bufio.Reader, max int) (string, error) {
	var line []byte
	for {
		frag, err := br.ReadSlice('\n')
		if len(line)+len(frag) > max {
			return "", errLineTooLong
		}
		line = append(line, frag...)
		if err == nil {
			break
		}
		if err != bufio.ErrBufferFull {
			if err == io.EOF && len(line) > 0 {
				err = io.ErrUnexpectedEOF
			}
			return "", err
		}
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return string(line), nil
}
