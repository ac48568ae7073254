package main

import (
	"net/netip"
	"testing"

	"github.com/portfwd/portfwd/internal/testenv"
)

// Both echo servers, blocking and through Go's poller, return every
// datagram and every TCP message as sent, on one address and port: the
// floor's client sees its request come back, byte for byte.
func TestEchoServersReturnWhatTheyGet(t *testing.T) {
	lo := netip.MustParseAddr("127.0.0.1")
	for _, netpoll := range []bool{false, true} {
		port := testenv.FreePort(t, testenv.Bind{Network: "udp4", Addr: lo}, testenv.Bind{Network: "tcp4", Addr: lo})
		addr := netip.AddrPortFrom(lo, port)
		udp, err := echoUDP(addr, netpoll)
		if err != nil {
			t.Fatal(err)
		}
		tcp, err := echoTCP(addr, netpoll)
		if err != nil {
			t.Fatal(err)
		}
		// The loops run until the test binary exits.
		go udp()
		go tcp()

		w, err := dialWire(netip.Addr{}, addr)
		if err != nil {
			t.Fatal(err)
		}
		for i := range 3 {
			if err := w.echo(uint16(8080 + i)); err != nil {
				t.Fatalf("netpoll %v: UDP echo %d: %v", netpoll, i, err)
			}
		}
		e, err := dialTCPEcho(addr)
		if err != nil {
			t.Fatal(err)
		}
		for i := range 3 {
			if err := e.exchange(); err != nil {
				t.Fatalf("netpoll %v: TCP echo %d: %v", netpoll, i, err)
			}
		}
	}
}
