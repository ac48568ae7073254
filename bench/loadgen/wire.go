package main

import (
	"errors"
	"fmt"
	"net/netip"
	"syscall"
	"time"

	"github.com/portfwd/portfwd/natpmp"
	"github.com/portfwd/portfwd/pcp"
)

// wire speaks NAT-PMP and PCP to one server over one connected UDP socket,
// with the codecs and nothing else: no socket per request, no retransmit
// goroutine, no logging. A load generator measures the server, so its own
// cost per request is kept as small as the protocol allows, for every
// server alike.
//
// The socket is a blocking one, used through plain read and write system
// calls with a receive timeout (SO_RCVTIMEO), not through Go's network
// poller: a request is one write and one read that sleeps in the kernel
// until the answer is delivered, where the poller cost a failed read, a
// park, an epoll wait and a second read, plus a deadline timer, per
// request. The server sees exactly the same packets.
type wire struct {
	fd    int
	local netip.Addr
	buf   []byte
	out   []byte
	wait  time.Duration // the receive timeout set on fd
}

// dialWire connects a socket from local (any address when invalid) to
// server.
func dialWire(local netip.Addr, server netip.AddrPort) (*wire, error) {
	if !server.Addr().Is4() {
		return nil, fmt.Errorf("%v: an IPv4 server, please", server)
	}
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_DGRAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	if local.IsValid() {
		if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: local.As4()}); err != nil {
			syscall.Close(fd)
			return nil, fmt.Errorf("binding to %v: %w", local, err)
		}
	}
	if err := syscall.Connect(fd, &syscall.SockaddrInet4{Port: int(server.Port()), Addr: server.Addr().As4()}); err != nil {
		syscall.Close(fd)
		return nil, fmt.Errorf("connecting to %v: %w", server, err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		syscall.Close(fd)
		return nil, err
	}
	la := netip.AddrFrom4(sa.(*syscall.SockaddrInet4).Addr)
	return &wire{fd: fd, local: la, buf: make([]byte, 1100)}, nil
}

// setWait sets the socket's receive timeout to d, if it is not that
// already.
func (w *wire) setWait(d time.Duration) error {
	if d == w.wait {
		return nil
	}
	tv := syscall.NsecToTimeval(max(d, time.Millisecond).Nanoseconds())
	if err := syscall.SetsockoptTimeval(w.fd, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv); err != nil {
		return err
	}
	w.wait = d
	return nil
}

// exchange sends req and returns the first reply accept takes, sending
// again after 250 ms, 500 ms, 1 s and 2 s (RFC 6886 §3.1), then failing.
func (w *wire) exchange(req []byte, accept func([]byte) bool) error {
	wait := 250 * time.Millisecond
	for try := 0; try < 5; try++ {
		if err := w.setWait(wait); err != nil {
			return err
		}
		if _, err := syscall.Write(w.fd, req); err != nil {
			return err
		}
		deadline := time.Now().Add(wait)
		for {
			n, err := syscall.Read(w.fd, w.buf)
			if errors.Is(err, syscall.EINTR) {
				continue
			}
			if errors.Is(err, syscall.EAGAIN) {
				break // timed out: send again
			}
			if err != nil {
				return err
			}
			if accept(w.buf[:n]) {
				return nil
			}
			// Not the answer: wait for the rest of this try only.
			left := time.Until(deadline)
			if left <= 0 {
				break
			}
			if err := w.setWait(left); err != nil {
				return err
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
