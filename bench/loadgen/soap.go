package main

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strconv"
	"syscall"
	"time"
)

// soapWire calls a WANIPConnection's actions over one HTTP/1.1 connection
// of its own, the way wire speaks NAT-PMP: the request bytes are built by
// hand and sent with one write on a blocking socket, and the answer is
// read with plain reads and checked (status 200 and the action's
// ...Response element, or the UPnP error code of a fault), without
// net/http's client, encoding/xml or Go's network poller. The load
// generator measures the server: its own cost per request is kept as small
// as the protocol allows, for every server alike.
//
// The connection is kept alive while the server keeps it (HTTP/1.1's
// default); a server that closes it after each answer, as miniupnpd does,
// gets a new connection for the next request, as any client must open.
type soapWire struct {
	server  netip.AddrPort
	head    []byte // the request line and the headers that do not change
	service string
	fd      int // -1 while no connection is open
	req     []byte
	buf     []byte
	timeout time.Duration
}

// newSoapWire returns a client of the service at control URL.
func newSoapWire(control, service string, timeout time.Duration) (*soapWire, error) {
	u, err := url.Parse(control)
	if err != nil || u.Scheme != "http" {
		return nil, fmt.Errorf("control URL %q: want http://ADDR:PORT/PATH", control)
	}
	ap, err := netip.ParseAddrPort(u.Host)
	if err != nil || !ap.Addr().Is4() {
		return nil, fmt.Errorf("control URL %q: want an IPv4 address and a port", control)
	}
	head := []byte("POST " + u.RequestURI() + " HTTP/1.1\r\nHost: " + u.Host + "\r\nContent-Type: text/xml; charset=\"utf-8\"\r\n")
	return &soapWire{server: ap, head: head, service: service, fd: -1, buf: make([]byte, 0, 16<<10), timeout: timeout}, nil
}

// soapFault is a UPnP error answered by the server.
type soapFault struct {
	status int
	code   int
}

func (f *soapFault) Error() string {
	return fmt.Sprintf("HTTP %d, UPnP error %d", f.status, f.code)
}

func (s *soapWire) connect() error {
	fd, err := dialTCP(s.server, s.timeout)
	if err != nil {
		return err
	}
	s.fd = fd
	return nil
}

// dialTCP connects a blocking TCP socket to server, with timeout on its
// reads and writes and Nagle's delay off (as Go's net sets it).
func dialTCP(server netip.AddrPort, timeout time.Duration) (int, error) {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	tv := syscall.NsecToTimeval(timeout.Nanoseconds())
	syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv)
	syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_SNDTIMEO, &tv)
	syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1)
	sa := &syscall.SockaddrInet4{Port: int(server.Port()), Addr: server.Addr().As4()}
	for {
		err := syscall.Connect(fd, sa)
		// A signal (the Go runtime's preemption) interrupts a blocking
		// connect, which then goes on by itself: ask again until it is
		// done.
		if errors.Is(err, syscall.EINTR) || errors.Is(err, syscall.EALREADY) {
			continue
		}
		if err != nil && !errors.Is(err, syscall.EISCONN) {
			syscall.Close(fd)
			return -1, fmt.Errorf("connecting to %v: %w", server, err)
		}
		return fd, nil
	}
}

func (s *soapWire) close() {
	if s.fd >= 0 {
		syscall.Close(s.fd)
		s.fd = -1
	}
}

// call sends action with args (the argument elements, in order) and
// returns the answer's body. An answer other than 200 is a *soapFault.
func (s *soapWire) call(action, args string) ([]byte, error) {
	body := `<?xml version="1.0"?>` + "\r\n" +
		`<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" s:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"><s:Body>` +
		`<u:` + action + ` xmlns:u="` + s.service + `">` + args + `</u:` + action + `></s:Body></s:Envelope>` + "\r\n"
	s.req = append(s.req[:0], s.head...)
	s.req = append(s.req, "SOAPAction: \""+s.service+"#"+action+"\"\r\nContent-Length: "...)
	s.req = strconv.AppendInt(s.req, int64(len(body)), 10)
	s.req = append(s.req, "\r\n\r\n"...)
	s.req = append(s.req, body...)
	for try := 0; ; try++ {
		fresh := s.fd < 0
		if fresh {
			if err := s.connect(); err != nil {
				return nil, err
			}
		}
		status, b, keep, err := s.roundTrip()
		if !keep {
			s.close()
		}
		if err != nil {
			// A kept connection the server closed meanwhile: once more on
			// a new one, as HTTP clients do.
			if !fresh && try == 0 && errors.Is(err, errClosedBeforeAnswer) {
				continue
			}
			return nil, fmt.Errorf("%s: %w", action, err)
		}
		if status != 200 {
			return nil, &soapFault{status: status, code: errorCode(b)}
		}
		if !bytes.Contains(b, []byte(action+"Response")) {
			return nil, fmt.Errorf("%s: HTTP 200 without %sResponse: %.200q", action, action, b)
		}
		return b, nil
	}
}

var errClosedBeforeAnswer = errors.New("the server closed the connection before answering")

// roundTrip writes s.req and reads the answer: its status, its body, and
// whether the connection may carry another request.
func (s *soapWire) roundTrip() (status int, body []byte, keep bool, err error) {
	for out := s.req; len(out) > 0; {
		n, err := syscall.Write(s.fd, out)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil {
			return 0, nil, false, errClosedBeforeAnswer
		}
		out = out[n:]
	}
	b := s.buf[:0]
	headEnd, length := -1, -1
	keep = true
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := syscall.Read(s.fd, b[len(b):cap(b)])
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if errors.Is(err, syscall.EAGAIN) {
			return 0, nil, false, fmt.Errorf("no answer within %v", s.timeout)
		}
		if err != nil || n == 0 {
			if len(b) == 0 {
				return 0, nil, false, errClosedBeforeAnswer
			}
			if headEnd >= 0 && length < 0 {
				return status, b[headEnd:], false, nil // the body ends with the connection
			}
			return 0, nil, false, fmt.Errorf("the connection ended inside the answer (%d bytes read)", len(b))
		}
		b = b[:len(b)+n]
		if headEnd < 0 {
			i := bytes.Index(b, []byte("\r\n\r\n"))
			if i < 0 {
				continue
			}
			headEnd = i + 4
			status, length, keep, err = parseHead(b[:i])
			if err != nil {
				return 0, nil, false, err
			}
		}
		if length >= 0 && len(b)-headEnd >= length {
			s.buf = b[:0]
			return status, b[headEnd : headEnd+length], keep, nil
		}
	}
}

// parseHead reads an answer's status line and headers: the status, the
// Content-Length (-1 without one) and whether the connection stays open.
func parseHead(h []byte) (status, length int, keep bool, err error) {
	lines := bytes.Split(h, []byte("\r\n"))
	f := bytes.Fields(lines[0])
	if len(f) < 2 || !bytes.HasPrefix(f[0], []byte("HTTP/1.")) {
		return 0, 0, false, fmt.Errorf("not an HTTP answer: %.80q", lines[0])
	}
	if status, err = strconv.Atoi(string(f[1])); err != nil {
		return 0, 0, false, fmt.Errorf("status line %.80q", lines[0])
	}
	keep = string(f[0]) == "HTTP/1.1"
	length = -1
	for _, l := range lines[1:] {
		name, value, ok := bytes.Cut(l, []byte(":"))
		if !ok {
			continue
		}
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			if length, err = strconv.Atoi(string(value)); err != nil || length < 0 {
				return 0, 0, false, fmt.Errorf("Content-Length %.40q", value)
			}
		case bytes.EqualFold(name, []byte("Connection")):
			if bytes.EqualFold(value, []byte("close")) {
				keep = false
			} else if bytes.EqualFold(value, []byte("keep-alive")) {
				keep = true
			}
		}
	}
	return status, length, keep, nil
}

// errorCode is a fault's UPnP errorCode, or 0.
func errorCode(b []byte) int {
	_, rest, ok := bytes.Cut(b, []byte("errorCode>"))
	if !ok {
		return 0
	}
	digits, _, _ := bytes.Cut(rest, []byte("<"))
	n, _ := strconv.Atoi(string(bytes.TrimSpace(digits)))
	return n
}

// addPortMapping is AddPortMapping of TCP or UDP port ext to internal
// port in on client, enabled, with description desc and lease 0.
func (s *soapWire) addPortMapping(proto string, ext, in int, client, desc string) error {
	_, err := s.call("AddPortMapping", "<NewRemoteHost></NewRemoteHost><NewExternalPort>"+strconv.Itoa(ext)+
		"</NewExternalPort><NewProtocol>"+proto+"</NewProtocol><NewInternalPort>"+strconv.Itoa(in)+
		"</NewInternalPort><NewInternalClient>"+client+"</NewInternalClient><NewEnabled>1</NewEnabled><NewPortMappingDescription>"+
		desc+"</NewPortMappingDescription><NewLeaseDuration>0</NewLeaseDuration>")
	return err
}

// deletePortMapping is DeletePortMapping of proto's port ext.
func (s *soapWire) deletePortMapping(proto string, ext int) error {
	_, err := s.call("DeletePortMapping", "<NewRemoteHost></NewRemoteHost><NewExternalPort>"+strconv.Itoa(ext)+
		"</NewExternalPort><NewProtocol>"+proto+"</NewProtocol>")
	return err
}

// getGeneric is GetGenericPortMappingEntry of index i; it checks that the
// answer names a port.
func (s *soapWire) getGeneric(i int) error {
	b, err := s.call("GetGenericPortMappingEntry", "<NewPortMappingIndex>"+strconv.Itoa(i)+"</NewPortMappingIndex>")
	if err == nil && !bytes.Contains(b, []byte("NewExternalPort")) {
		err = fmt.Errorf("GetGenericPortMappingEntry %d: no NewExternalPort in %.200q", i, b)
	}
	return err
}
