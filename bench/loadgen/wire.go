package main

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/portfwd/portfwd/natpmp"
	"github.com/portfwd/portfwd/pcp"
)

// wire speaks NAT-PMP and PCP to one server over one connected UDP socket,
// with the codecs and nothing else: no socket per request, no retransmit
// goroutine, no logging. A load generator measures the server, so its own
// cost per request is kept as small as the protocol allows, for every
// server alike.
type wire struct {
	conn  *net.UDPConn
	local netip.Addr
	buf   []byte
	out   []byte
}

// dialWire connects a socket from local (any address when invalid) to
// server.
func dialWire(local netip.Addr, server netip.AddrPort) (*wire, error) {
	var laddr *net.UDPAddr
	if local.IsValid() {
		laddr = net.UDPAddrFromAddrPort(netip.AddrPortFrom(local, 0))
	}
	c, err := net.DialUDP("udp4", laddr, net.UDPAddrFromAddrPort(server))
	if err != nil {
		return nil, err
	}
	la := c.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap()
	return &wire{conn: c, local: la, buf: make([]byte, 1100)}, nil
}

// exchange sends req and returns the first reply accept takes, sending
// again after 250 ms, 500 ms, 1 s and 2 s (RFC 6886 §3.1), then failing.
func (w *wire) exchange(req []byte, accept func([]byte) bool) error {
	wait := 250 * time.Millisecond
	for try := 0; try < 5; try++ {
		if _, err := w.conn.Write(req); err != nil {
			return err
		}
		deadline := time.Now().Add(wait)
		w.conn.SetReadDeadline(deadline)
		for {
			n, err := w.conn.Read(w.buf)
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					break
				}
				return err
			}
			if accept(w.buf[:n]) {
				return nil
			}
		}
		wait *= 2
	}
	return errors.New("no reply")
}

// natpmpMap maps (lifetime > 0) or unmaps (lifetime 0) internal TCP port
// internal, and returns the external port.
func (w *wire) natpmpMap(internal, suggested uint16, lifetime uint32) (uint16, error) {
	w.out = natpmp.AppendRequest(w.out[:0], natpmp.Request{Op: natpmp.OpMapTCP, InternalPort: internal, SuggestedExternalPort: suggested, Lifetime: lifetime})
	var resp natpmp.Response
	err := w.exchange(w.out, func(b []byte) bool {
		r, err := natpmp.ParseResponse(b)
		if err != nil || r.Op != natpmp.OpMapTCP || r.InternalPort != internal {
			return false
		}
		resp = r
		return true
	})
	if err != nil {
		return 0, err
	}
	if resp.Result != natpmp.Success {
		return 0, fmt.Errorf("result %v", resp.Result)
	}
	return resp.ExternalPort, nil
}

// pcpMap sends a PCP MAP for TCP port internal with nonce (lifetime 0
// deletes) and returns the external port.
func (w *wire) pcpMap(nonce pcp.Nonce, internal, suggested uint16, lifetime uint32) (uint16, error) {
	var err error
	w.out, err = pcp.AppendRequest(w.out[:0], pcp.Request{Op: pcp.OpMap, Lifetime: lifetime, ClientAddr: w.local,
		Map: &pcp.MapPayload{Nonce: nonce, Protocol: pcp.TCP, InternalPort: internal, ExternalPort: suggested}})
	if err != nil {
		return 0, err
	}
	var resp pcp.Response
	err = w.exchange(w.out, func(b []byte) bool {
		r, err := pcp.ParseResponse(b)
		if err != nil || r.Op != pcp.OpMap || r.Map == nil || r.Map.Nonce != nonce || r.Map.InternalPort != internal {
			return false
		}
		resp = r
		return true
	})
	if err != nil {
		return 0, err
	}
	if resp.Result != pcp.ResultSuccess {
		return 0, fmt.Errorf("result %v", resp.Result)
	}
	return resp.Map.ExternalPort, nil
}
