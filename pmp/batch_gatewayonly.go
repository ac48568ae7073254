//go:build gatewayonly

package pmp

import (
	"context"
	"net"
	"net/netip"

	"golang.org/x/net/ipv4"
)

// The router build (the gatewayonly tag) reads and answers one request at
// a time, as a home router's few clients need: no recvmmsg/sendmmsg
// batches (x/net's batch I/O) and no group commit, which the full build
// (batch_full.go) uses for thousands of requests a second. Server.Group
// is never called.

// readsBatches: this build reads one request at a time.
const readsBatches = false

// batch is a worker's receive side: one request at a time.
type batch struct {
	c    *packetConn
	one  [maxPacket]byte
	n1   int
	src1 net.Addr
	cm1  *ipv4.ControlMessage
	reqs []request
}

// request is a request read and admitted, waiting for its answer.
type request struct {
	pkt    []byte
	client netip.AddrPort
	dst    netip.Addr
	from   *net.UDPAddr
}

func newBatch(c *packetConn) *batch { return &batch{c: c} }

// read waits for a request and returns 1.
func (b *batch) read() (int, error) {
	var err error
	b.n1, b.cm1, b.src1, err = b.c.read(b.one[:])
	if err != nil {
		return 0, err
	}
	return 1, nil
}

// message returns the request read: its bytes, its control message (nil
// when unknown) and its source (nil when not UDP).
func (b *batch) message(int) ([]byte, *ipv4.ControlMessage, *net.UDPAddr) {
	from, _ := b.src1.(*net.UDPAddr)
	return b.one[:b.n1], b.cm1, from
}

// answerAll answers reqs, one by one, and sends each reply.
func (s *Server) answerAll(ctx context.Context, c *packetConn, reqs []request) {
	for i := range reqs {
		r := &reqs[i]
		if resp := s.answer(ctx, r.pkt, r.client, r.dst); resp != nil {
			s.sendReply(ctx, c, resp, r)
		}
	}
}
