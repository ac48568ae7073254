package stun

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
)

// Sockets are the sockets of a Server: Sockets[a][p] is bound to address a
// (0 primary, 1 alternate) and port p (0 primary, 1 alternate), the grid the
// RFC 3489 NAT test needs. Only Sockets[0][0] is required; without the
// others the server still answers plain Binding requests.
type Sockets [2][2]net.PacketConn

// Server answers STUN Binding requests. A request with CHANGE-REQUEST is
// answered from the socket it asks for: "change IP" flips the address row,
// "change port" the port column, both relative to the socket the request
// arrived on.
type Server struct {
	// Mapped, if not nil, maps the source address of a request to the
	// address reported back to the client. A lab uses it to pretend there is
	// a further NAT between client and server. Nil reports the source as seen.
	Mapped func(src netip.AddrPort) netip.AddrPort
	// Logger gets one debug record per answer. Nil discards.
	Logger *slog.Logger
}

// Serve answers requests arriving on socks until ctx is done, then closes
// the sockets and returns nil. If a socket fails, Serve closes them all and
// returns that error.
func (s *Server) Serve(ctx context.Context, socks Sockets) error {
	if socks[0][0] == nil {
		return errors.New("stun: Serve needs at least the primary socket (Sockets[0][0])")
	}
	var local [2][2]netip.AddrPort
	for a := range socks {
		for p, c := range socks[a] {
			if c == nil {
				continue
			}
			ap, err := addrPort(c.LocalAddr())
			if err != nil {
				return err
			}
			local[a][p] = ap
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
	)
	for a := range socks {
		for p, c := range socks[a] {
			if c == nil {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := s.serveSocket(socks, local, a, p); err != nil && ctx.Err() == nil {
					errOnce.Do(func() { firstErr = err })
					cancel()
				}
			}()
		}
	}
	<-ctx.Done()
	for a := range socks {
		for _, c := range socks[a] {
			if c != nil {
				c.Close()
			}
		}
	}
	wg.Wait()
	return firstErr
}

func (s *Server) serveSocket(socks Sockets, local [2][2]netip.AddrPort, a, p int) error {
	buf := make([]byte, 1500)
	c := socks[a][p]
	for {
		n, from, err := c.ReadFrom(buf)
		if err != nil {
			return fmt.Errorf("stun: reading on %v: %w", local[a][p], err)
		}
		src, err := addrPort(from)
		if err != nil {
			continue
		}
		req, err := Parse(buf[:n])
		if err != nil || req.Type != BindingRequest {
			// Not ours to answer: responses, indications and other methods
			// are dropped, as is garbage, so a stray packet cannot make the
			// server talk.
			continue
		}
		mapped := src
		if s.Mapped != nil {
			mapped = s.Mapped(src)
		}
		resp, ra, rp := answer(req, mapped, local, a, p)
		out := socks[ra][rp]
		if s.Logger != nil {
			s.Logger.Debug("stun answer", "client", src, "mapped", mapped, "received_on", local[a][p],
				"sent_from", local[ra][rp], "type", resp.Type)
		}
		if _, err := out.WriteTo(resp.Append(nil), net.UDPAddrFromAddrPort(src)); err != nil {
			// One unreachable client must not stop the server.
			if s.Logger != nil {
				s.Logger.Debug("stun send failed", "client", src, "err", err)
			}
		}
	}
}

// answer computes the response to req, received on socket [a][p] of a
// server whose socket addresses are local (zero where a socket is missing),
// reporting mapped as the client's address. It returns the response and the
// indices of the socket to send it from.
func answer(req *Message, mapped netip.AddrPort, local [2][2]netip.AddrPort, a, p int) (resp *Message, ra, rp int) {
	resp = &Message{Type: BindingSuccess, ID: req.ID}
	fail := func(code int, reason string) (*Message, int, int) {
		resp.Type = BindingError
		resp.Attrs = nil
		resp.Add(AttrErrorCode, EncodeErrorCode(code, reason))
		return resp, a, p
	}
	var unknown []byte
	for _, at := range req.Attrs {
		if at.Type < 0x8000 && at.Type != AttrChangeRequest {
			unknown = append(unknown, byte(at.Type>>8), byte(at.Type))
		}
	}
	if len(unknown) > 0 {
		m, ra, rp := fail(420, "Unknown Attribute")
		m.Add(AttrUnknownAttributes, unknown)
		return m, ra, rp
	}
	change, err := req.ChangeRequest()
	if err != nil {
		return fail(400, "Bad Request: malformed CHANGE-REQUEST")
	}
	ra, rp = a, p
	if change&ChangeIP != 0 {
		ra = 1 - a
	}
	if change&ChangePort != 0 {
		rp = 1 - p
	}
	if !local[ra][rp].IsValid() {
		// RFC 5780: a server without the alternate address or port that a
		// CHANGE-REQUEST needs answers 420.
		m, ra, rp := fail(420, "Unknown Attribute: no alternate address for CHANGE-REQUEST")
		m.Add(AttrUnknownAttributes, []byte{0, byte(AttrChangeRequest)})
		return m, ra, rp
	}
	other := local[1-a][1-p]
	if req.HasCookie() {
		// RFC 5389 and 5780 names; MAPPED-ADDRESS too, for clients that only
		// read the classic attribute.
		resp.Add(AttrXORMappedAddress, EncodeXORAddress(mapped, req.ID))
		resp.Add(AttrMappedAddress, EncodeAddress(mapped))
		resp.Add(AttrResponseOrigin, EncodeAddress(local[ra][rp]))
		if other.IsValid() {
			resp.Add(AttrOtherAddress, EncodeAddress(other))
		}
	} else {
		resp.Add(AttrMappedAddress, EncodeAddress(mapped))
		resp.Add(AttrSourceAddress, EncodeAddress(local[ra][rp]))
		if other.IsValid() {
			resp.Add(AttrChangedAddress, EncodeAddress(other))
		}
	}
	return resp, ra, rp
}

func addrPort(a net.Addr) (netip.AddrPort, error) {
	u, ok := a.(*net.UDPAddr)
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("stun: %v is not a UDP address", a)
	}
	ap := u.AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
}
