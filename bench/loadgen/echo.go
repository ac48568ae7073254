package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"syscall"
	"time"

	"github.com/portfwd/portfwd/natpmp"
)

// The echo server and the udp-echo-pairs phase measure the floor under the
// NAT-PMP and PCP pair phases: the same client, the same sockets and the
// same path through the lab, to a server that answers each datagram with
// itself and does nothing else. No server that writes a rule and a journal
// record per request can be faster than that, so the pair phases' rates are
// read against it.

// serveEcho answers every datagram on addr with itself, forever, and
// echoes every TCP connection to addr back to its sender. With netpoll
// false it is a loop of blocking system calls, as a C daemon's is; with
// netpoll true it goes through Go's net package and its network poller,
// as a Go server's does. The UDP socket is bound before the TCP one
// listens: once TCP connects, both are served.
func serveEcho(addr netip.AddrPort, netpoll bool) error {
	if !addr.Addr().Is4() {
		return fmt.Errorf("%v: an IPv4 address, please", addr)
	}
	udp, err := echoUDP(addr, netpoll)
	if err != nil {
		return err
	}
	tcp, err := echoTCP(addr, netpoll)
	if err != nil {
		return err
	}
	errc := make(chan error, 2)
	go func() { errc <- tcp() }()
	go func() { errc <- udp() }()
	return <-errc
}

// echoUDP binds the UDP socket and returns its loop.
func echoUDP(addr netip.AddrPort, netpoll bool) (func() error, error) {
	if netpoll {
		c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(addr))
		if err != nil {
			return nil, err
		}
		return func() error {
			buf := make([]byte, 1100)
			for {
				n, from, err := c.ReadFromUDPAddrPort(buf)
				if err != nil {
					return err
				}
				if _, err := c.WriteToUDPAddrPort(buf[:n], from); err != nil {
					return err
				}
			}
		}, nil
	}
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_DGRAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Port: int(addr.Port()), Addr: addr.Addr().As4()}); err != nil {
		syscall.Close(fd)
		return nil, fmt.Errorf("binding to %v: %w", addr, err)
	}
	return func() error {
		defer syscall.Close(fd)
		buf := make([]byte, 1100)
		for {
			n, from, err := syscall.Recvfrom(fd, buf, 0)
			if errors.Is(err, syscall.EINTR) {
				continue
			}
			if err != nil {
				return err
			}
			if err := syscall.Sendto(fd, buf[:n], 0, from); err != nil && !errors.Is(err, syscall.EINTR) {
				return err
			}
		}
	}, nil
}

// echo sends a datagram the size of a NAT-PMP mapping request and waits for
// it to come back.
func (w *wire) echo(port uint16) error {
	w.out = natpmp.AppendRequest(w.out[:0], natpmp.Request{Op: natpmp.OpMapTCP, InternalPort: port, SuggestedExternalPort: port, Lifetime: 3600})
	return w.exchange(w.out, func(b []byte) bool { return bytes.Equal(b, w.out) })
}

// echoTCP listens and returns the loop that echoes one TCP connection at
// a time (the floor's client is one connection).
func echoTCP(addr netip.AddrPort, netpoll bool) (func() error, error) {
	if netpoll {
		ln, err := net.ListenTCP("tcp4", net.TCPAddrFromAddrPort(addr))
		if err != nil {
			return nil, err
		}
		return func() error {
			for {
				c, err := ln.Accept()
				if err != nil {
					return err
				}
				io.Copy(c, c)
				c.Close()
			}
		}, nil
	}
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1)
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Port: int(addr.Port()), Addr: addr.Addr().As4()}); err != nil {
		syscall.Close(fd)
		return nil, fmt.Errorf("binding to %v: %w", addr, err)
	}
	if err := syscall.Listen(fd, 16); err != nil {
		syscall.Close(fd)
		return nil, err
	}
	return func() error { defer syscall.Close(fd); return serveTCPEcho(fd) }, nil
}

// serveTCPEcho accepts on fd and echoes each connection in turn.
func serveTCPEcho(fd int) error {
	buf := make([]byte, 16<<10)
	for {
		c, _, err := syscall.Accept(fd)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil {
			return err
		}
		syscall.SetsockoptInt(c, syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1)
		for {
			n, err := syscall.Read(c, buf)
			if errors.Is(err, syscall.EINTR) {
				continue
			}
			if err != nil || n == 0 || writeAll(c, buf[:n]) != nil {
				break
			}
		}
		syscall.Close(c)
	}
}

func writeAll(fd int, b []byte) error {
	for len(b) > 0 {
		n, err := syscall.Write(fd, b)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

// tcpEcho is a connection to the echo server, sending messages the size
// of a SOAP request.
type tcpEcho struct {
	fd       int
	msg, buf []byte
}

// soapSized is about the size of AddPortMapping's request.
const soapSized = 900

func dialTCPEcho(server netip.AddrPort) (*tcpEcho, error) {
	fd, err := dialTCP(server, 10*time.Second)
	if err != nil {
		return nil, err
	}
	return &tcpEcho{fd: fd, msg: bytes.Repeat([]byte("x"), soapSized), buf: make([]byte, soapSized)}, nil
}

// exchange sends one message and reads it back.
func (e *tcpEcho) exchange() error {
	if err := writeAll(e.fd, e.msg); err != nil {
		return err
	}
	for got := 0; got < len(e.msg); {
		n, err := syscall.Read(e.fd, e.buf[got:])
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil {
			return err
		}
		if n == 0 {
			return errors.New("the echo server closed the connection")
		}
		got += n
	}
	return nil
}
