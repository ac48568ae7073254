package stun

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"
)

// startServer runs a Server on loopback: 127.0.0.1 and 127.0.0.2 (Linux
// answers on all of 127/8), each on two ports, or only the sockets that
// want says. It returns the socket addresses.
func startServer(t *testing.T, srv *Server, want [2][2]bool) [2][2]netip.AddrPort {
	t.Helper()
	ips := [2]string{"127.0.0.1", "127.0.0.2"}
	var socks Sockets
	var addrs [2][2]netip.AddrPort
	// The two ports must be free on both addresses; take a kernel-chosen
	// port on the primary and retry when its neighbour is taken.
	for try := 0; ; try++ {
		if try == 20 {
			t.Fatal("no two adjacent free UDP ports on loopback after 20 tries")
		}
		first, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := first.LocalAddr().(*net.UDPAddr).Port
		socks, addrs = Sockets{}, [2][2]netip.AddrPort{}
		socks[0][0] = first
		addrs[0][0] = netip.MustParseAddrPort(first.LocalAddr().String())
		ok := true
		for a := range 2 {
			for p := range 2 {
				if (a == 0 && p == 0) || !want[a][p] {
					continue
				}
				ap := netip.AddrPortFrom(netip.MustParseAddr(ips[a]), uint16(port+p))
				c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(ap))
				if err != nil {
					ok = false
					continue
				}
				socks[a][p], addrs[a][p] = c, ap
			}
		}
		if ok {
			break
		}
		for a := range socks {
			for _, c := range socks[a] {
				if c != nil {
					c.Close()
				}
			}
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, socks) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve returned %v after cancel, want nil", err)
		}
	})
	return addrs
}

// exchange sends req from c to dst and returns the response and its source.
func exchange(t *testing.T, c *net.UDPConn, dst netip.AddrPort, req []byte) (*Message, netip.AddrPort) {
	t.Helper()
	if _, err := c.WriteToUDPAddrPort(req, dst); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 1500)
	n, from, err := c.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatalf("no answer from %v: %v", dst, err)
	}
	m, err := Parse(buf[:n])
	if err != nil {
		t.Fatalf("answer does not parse: %v", err)
	}
	return m, netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
}

func client(t *testing.T) (*net.UDPConn, netip.AddrPort) {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, netip.MustParseAddrPort(c.LocalAddr().String())
}

var all = [2][2]bool{{true, true}, {true, true}}

// The four requests of miniupnpd's NAT test, sent to every one of the four
// sockets: each answer must come from the socket CHANGE-REQUEST selects,
// relative to the receiving one, and report the client's address.
func TestServerChangeRequestGrid(t *testing.T) {
	addrs := startServer(t, &Server{}, all)
	c, self := client(t)
	for a := range 2 {
		for p := range 2 {
			for _, change := range []Change{0, ChangePort, ChangeIP, ChangeIP | ChangePort} {
				req := NewBindingRequest([12]byte{byte(a), byte(p), byte(change)}, change)
				resp, from := exchange(t, c, addrs[a][p], req.Append(nil))
				wa, wp := a, p
				if change&ChangeIP != 0 {
					wa = 1 - a
				}
				if change&ChangePort != 0 {
					wp = 1 - p
				}
				if from != addrs[wa][wp] {
					t.Errorf("to %v with change=%d: answer from %v, want %v", addrs[a][p], change, from, addrs[wa][wp])
				}
				if resp.Type != BindingSuccess || resp.ID != req.ID {
					t.Errorf("to %v with change=%d: got %v with ID %x, want a success with ID %x", addrs[a][p], change, resp.Type, resp.ID, req.ID)
				}
				if m, err := resp.MappedAddress(); err != nil || m != self {
					t.Errorf("mapped address %v, %v; want %v", m, err, self)
				}
				if v, _ := resp.Get(AttrResponseOrigin); v == nil || mustDecode(t, v) != from {
					t.Errorf("RESPONSE-ORIGIN does not name the sending socket %v", from)
				}
				if v, _ := resp.Get(AttrOtherAddress); v == nil || mustDecode(t, v) != addrs[1-a][1-p] {
					t.Errorf("OTHER-ADDRESS is not %v", addrs[1-a][1-p])
				}
			}
		}
	}
}

func mustDecode(t *testing.T, v []byte) netip.AddrPort {
	t.Helper()
	ap, err := DecodeAddress(v)
	if err != nil {
		t.Fatal(err)
	}
	return ap
}

// A classic RFC 3489 request (no magic cookie) gets the classic attribute
// names and no XOR-MAPPED-ADDRESS, which it could not decode.
func TestServerClassicRequest(t *testing.T) {
	addrs := startServer(t, &Server{}, all)
	c, self := client(t)
	req := &Message{Type: BindingRequest, ID: [16]byte{0xde, 0xad, 0xbe, 0xef, 1, 2, 3}}
	req.Add(AttrChangeRequest, EncodeChange(ChangePort))
	resp, from := exchange(t, c, addrs[0][0], req.Append(nil))
	if from != addrs[0][1] {
		t.Errorf("answer from %v, want %v", from, addrs[0][1])
	}
	if _, ok := resp.Get(AttrXORMappedAddress); ok {
		t.Error("XOR-MAPPED-ADDRESS in an answer to an RFC 3489 request")
	}
	for at, want := range map[AttrType]netip.AddrPort{
		AttrMappedAddress:  self,
		AttrSourceAddress:  addrs[0][1],
		AttrChangedAddress: addrs[1][1],
	} {
		v, ok := resp.Get(at)
		if !ok || mustDecode(t, v) != want {
			t.Errorf("attribute 0x%04x = %x, want %v", uint16(at), v, want)
		}
	}
}

func TestServerMappedHook(t *testing.T) {
	public := netip.MustParseAddrPort("198.51.100.9:40000")
	seen := make(chan netip.AddrPort, 1)
	addrs := startServer(t, &Server{Mapped: func(src netip.AddrPort) netip.AddrPort {
		seen <- src
		return public
	}}, all)
	c, self := client(t)
	resp, _ := exchange(t, c, addrs[0][0], NewBindingRequest([12]byte{7}, 0).Append(nil))
	if got, _ := resp.MappedAddress(); got != public {
		t.Errorf("mapped address %v, want the hook's %v", got, public)
	}
	if got := <-seen; got != self {
		t.Errorf("hook saw %v, want the client's %v", got, self)
	}
}

func TestServerErrors(t *testing.T) {
	// Only the primary socket: CHANGE-REQUEST cannot be honoured.
	addrs := startServer(t, &Server{}, [2][2]bool{{true, false}, {false, false}})
	c, _ := client(t)

	// Garbage and non-requests are dropped silently; the server keeps going.
	for _, junk := range [][]byte{
		[]byte("GET / HTTP/1.0\r\n\r\n"),
		(&Message{Type: BindingSuccess}).Append(nil),
	} {
		if _, err := c.WriteToUDPAddrPort(junk, addrs[0][0]); err != nil {
			t.Fatal(err)
		}
	}

	for _, tc := range []struct {
		name        string
		req         *Message
		wantCode    int
		wantUnknown []byte
	}{
		{"change IP without alternate", NewBindingRequest([12]byte{1}, ChangeIP), 420, []byte{0x00, 0x03}},
		{"unknown comprehension-required attribute",
			NewBindingRequest([12]byte{2}, 0).Add(0x0777, []byte{1, 2, 3, 4}), 420, []byte{0x07, 0x77}},
		{"malformed CHANGE-REQUEST",
			(&Message{Type: BindingRequest, ID: [16]byte{0x21, 0x12, 0xa4, 0x42, 3}}).Add(AttrChangeRequest, []byte{4}), 400, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, from := exchange(t, c, addrs[0][0], tc.req.Append(nil))
			if from != addrs[0][0] {
				t.Errorf("error answer from %v, want the receiving socket %v", from, addrs[0][0])
			}
			if resp.Type != BindingError || resp.ID != tc.req.ID {
				t.Fatalf("got %v (ID %x), want a Binding error response to %x", resp.Type, resp.ID, tc.req.ID)
			}
			code, _, err := resp.ErrorCode()
			if err != nil || code != tc.wantCode {
				t.Errorf("error code %d, %v; want %d", code, err, tc.wantCode)
			}
			if u, _ := resp.Get(AttrUnknownAttributes); string(u) != string(tc.wantUnknown) {
				t.Errorf("UNKNOWN-ATTRIBUTES = %x, want %x", u, tc.wantUnknown)
			}
		})
	}

	// Comprehension-optional attributes (>= 0x8000) are fine.
	req := NewBindingRequest([12]byte{4}, 0).Add(AttrSoftware, []byte("test"))
	if resp, _ := exchange(t, c, addrs[0][0], req.Append(nil)); resp.Type != BindingSuccess {
		t.Errorf("request with SOFTWARE: %v, want success", resp.Type)
	}
}

func TestServeNeedsPrimary(t *testing.T) {
	err := (&Server{}).Serve(context.Background(), Sockets{})
	if err == nil {
		t.Fatal("Serve without sockets returned nil")
	}
}

// A socket failing (closed under the server) ends Serve with an error
// instead of leaving it half-alive.
func TestServeReturnsSocketError(t *testing.T) {
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- (&Server{}).Serve(context.Background(), Sockets{{c, nil}}) }()
	c.Close()
	select {
	case err := <-done:
		if err == nil || !errors.Is(err, net.ErrClosed) {
			t.Errorf("Serve = %v, want an error wrapping net.ErrClosed", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Serve did not return after its socket was closed")
	}
}
