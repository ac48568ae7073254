package daemon

import (
	"bufio"
	"io"
	"net"
	"net/http"

	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/portfwd/portfwd/internal/httpserve"
	"github.com/portfwd/portfwd/internal/httpx"
)

// A host gets its share of connections and no more; a newcomer at the
// total takes an idle connection of the host holding the most, never a
// busy one, and is refused when every host holds as many.
func TestConnLimiterShares(t *testing.T) {
	l := newConnLimiter(3, 5, discardLogger())
	a, b, c, d := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("10.0.0.3"), netip.MustParseAddr("10.0.0.4")
	pipe := func() (net.Conn, net.Conn) {
		x, y := net.Pipe()
		t.Cleanup(func() { x.Close(); y.Close() })
		return x, y
	}
	admit := func(from netip.Addr) (*limitedConn, net.Conn) {
		srv, cli := pipe()
		lc, _ := l.admit(srv, from).(*limitedConn)
		return lc, cli
	}
	var fromA []*limitedConn
	for range 3 {
		lc, _ := admit(a)
		if lc == nil {
			t.Fatal("a connection under the limits was refused")
		}
		fromA = append(fromA, lc)
	}
	if lc, _ := admit(a); lc != nil {
		t.Error("a 4th connection from one host was admitted; the per-host limit is 3")
	}
	admit(b)
	admit(c)
	// The total of 5 is reached; a's connections are busy: d is refused.
	for _, lc := range fromA {
		l.connState(lc, httpx.StateActive)
	}
	if lc, _ := admit(d); lc != nil {
		t.Error("a newcomer took a busy connection")
	}
	// One of a's goes idle: d takes it.
	l.connState(fromA[1], httpx.StateIdle)
	if lc, _ := admit(d); lc == nil {
		t.Fatal("a newcomer was refused although a host held more than its share of idle connections")
	}
	if !fromA[1].closed || fromA[0].closed || fromA[2].closed {
		t.Error("the wrong connection made room")
	}
	if l.open() != 5 || l.byAddr[a] != 2 {
		t.Errorf("%d held, %d of them a's; want 5 and 2", l.open(), l.byAddr[a])
	}
	// Closing gives the place back, once.
	fromA[0].Close()
	fromA[0].Close()
	if l.open() != 4 {
		t.Errorf("%d held after a close, want 4", l.open())
	}
}

// Through a real listener: the per-host limit holds, other hosts are
// served.
func TestLANListenerLimitsConnections(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	limits := newConnLimiter(3, 50, discardLogger())
	ll := &lanListener{Listener: ln, allow: func(netip.Addr) bool { return true }, limits: limits, log: discardLogger()}
	srv := &httpserve.Server{Handler: httpx.HandlerFunc(func(w httpx.ResponseWriter, _ *httpx.Request) { io.WriteString(w, "hello") }),
		ConnState: limits.connState, IdleTimeout: time.Minute}
	go srv.Serve(ll)
	defer srv.Close()
	// dial connects from from; nil when the server reset the connection
	// before the dial completed (it refuses at once).
	dial := func(from string) net.Conn {
		t.Helper()
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
		c, err := d.Dial("tcp4", ln.Addr().String())
		if err != nil {
			return nil
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	get := func(c net.Conn) bool {
		if c == nil {
			return false
		}
		c.SetDeadline(time.Now().Add(3 * time.Second))
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return false
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 5))
		resp.Body.Close()
		return strings.Contains(string(b), "hello")
	}
	for i := range 3 {
		if !get(dial("127.0.0.1")) { // kept alive afterwards
			t.Fatalf("connection %d was not served", i+1)
		}
	}
	if get(dial("127.0.0.1")) {
		t.Error("a 4th connection from the same host was served")
	}
	if !get(dial("127.0.0.2")) {
		t.Error("another host was not served")
	}
}
