package pmp

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/portfwd/portfwd/internal/testenv"
	"github.com/portfwd/portfwd/natpmp"
)

// Requests waiting together are read together and answered under one
// Group context, each Done once; every client gets its own answer, from
// the address it asked. The router build (gatewayonly) reads them one at
// a time and never calls Group: every client still gets its answer.
func TestServerAnswersABatchAsAGroup(t *testing.T) {
	h := &memHandler{ext: netip.MustParseAddr("198.51.100.20")}
	var mu sync.Mutex
	var sizes []int
	dones := 0
	type groupKey struct{}
	s := &Server{NATPMP: h, Logger: testenv.Logger(t),
		Group: func(ctx context.Context, n int) (context.Context, func()) {
			mu.Lock()
			sizes = append(sizes, n)
			mu.Unlock()
			return context.WithValue(ctx, groupKey{}, n), func() { mu.Lock(); dones++; mu.Unlock() }
		}}
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	server := pc.LocalAddr().(*net.UDPAddr)

	// The requests wait in the socket before serving starts, so that the
	// first read finds them all.
	const clients = 8
	conns := make([]*net.UDPConn, clients)
	for i := range conns {
		// Each from an address of its own: a client has at most two
		// requests in progress.
		c, err := net.DialUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, byte(10+i))}, server)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns[i] = c
		req := natpmp.AppendRequest(nil, natpmp.Request{Op: natpmp.OpMapTCP, InternalPort: uint16(8000 + i), SuggestedExternalPort: uint16(9000 + i), Lifetime: 60})
		if _, err := c.Write(req); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- s.ServePacketConn(ctx, pc) }()
	defer func() { cancel(); <-served }()

	buf := make([]byte, 64)
	for i, c := range conns {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, from, err := c.ReadFromUDP(buf)
		if err != nil {
			t.Fatalf("client %d: no answer: %v", i, err)
		}
		if from.AddrPort() != server.AddrPort() {
			t.Errorf("client %d: answer from %v, want %v", i, from, server)
		}
		r, err := natpmp.ParseResponse(buf[:n])
		if err != nil || r.Result != natpmp.Success || r.InternalPort != uint16(8000+i) {
			t.Errorf("client %d: answer %+v, %v", i, r, err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if !readsBatches {
		if len(sizes) != 0 {
			t.Errorf("the router build called Group for %v request(s); it answers one at a time", sizes)
		}
		return
	}
	total := 0
	for _, n := range sizes {
		if n < 2 {
			t.Errorf("Group called for %d request(s); a request read alone needs none", n)
		}
		total += n
	}
	if len(sizes) == 0 {
		t.Fatal("8 waiting requests were never answered as a group")
	}
	if dones != total {
		t.Errorf("done called %d times for groups of %d members in all", dones, total)
	}
}
