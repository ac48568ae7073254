package main

import (
	"net"
	"net/netip"
	"sync/atomic"
	"testing"

	"github.com/portfwd/portfwd/natpmp"
)

// The lean NAT-PMP client sends each request once when the answer comes
// in time: a benchmark that sent duplicates would load the server twice.
func TestWireSendsOnce(t *testing.T) {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	var got atomic.Int32
	go func() {
		buf := make([]byte, 1100)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			got.Add(1)
			q, err := natpmp.ParseRequest(buf[:n])
			if err != nil {
				continue
			}
			pc.WriteTo(natpmp.AppendResponse(nil, natpmp.Response{Op: q.Op, Result: natpmp.Success, InternalPort: q.InternalPort,
				ExternalPort: q.SuggestedExternalPort, Lifetime: q.Lifetime}), from)
		}
	}()
	w, err := dialWire(netip.Addr{}, netip.MustParseAddrPort(pc.LocalAddr().String()))
	if err != nil {
		t.Fatal(err)
	}
	const n = 2000
	for i := range n {
		if _, err := w.natpmpMap(8080, uint16(20000+i%2), uint32(i%2)*3600); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
	}
	if g := got.Load(); g != n {
		t.Errorf("the server read %d requests for %d exchanges", g, n)
	}
}
