//go:build !gatewayonly

package pmp

// The full build reads and answers requests in batches (recvmmsg,
// sendmmsg, group commit); the router build (batch_gatewayonly.go) one
// at a time.

import (
	"context"
	"net"
	"net/netip"
	"sync"

	"golang.org/x/net/ipv4"
)

// maxBatch bounds the requests a worker reads at once (recvmmsg): enough
// for a burst from many clients, few enough that one batch's answers are
// not held up for long by its slowest.
const maxBatch = 16

// readsBatches: this build reads requests in batches and answers a batch
// under Server.Group.
const readsBatches = true

// batch is a worker's receive side: on an IPv4 socket with IP_PKTINFO it
// reads every request waiting, up to maxBatch, in one system call
// (ReadBatch, which is recvmmsg on Linux); elsewhere one at a time.
type batch struct {
	c    *packetConn
	msgs []ipv4.Message
	cms  []ipv4.ControlMessage
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
	resp   []byte // the answer, when answered with others
}

func newBatch(c *packetConn) *batch {
	b := &batch{c: c}
	if c.p != nil {
		b.msgs = make([]ipv4.Message, maxBatch)
		b.cms = make([]ipv4.ControlMessage, maxBatch)
		for i := range b.msgs {
			b.msgs[i].Buffers = [][]byte{make([]byte, maxPacket)}
			b.msgs[i].OOB = ipv4.NewControlMessage(ipv4.FlagDst | ipv4.FlagInterface)
		}
	}
	return b
}

// read waits for requests and returns how many it read.
func (b *batch) read() (int, error) {
	if b.c.p == nil {
		var err error
		b.n1, b.cm1, b.src1, err = b.c.read(b.one[:])
		if err != nil {
			return 0, err
		}
		return 1, nil
	}
	for i := range b.msgs {
		b.msgs[i].OOB = b.msgs[i].OOB[:cap(b.msgs[i].OOB)]
	}
	return b.c.p.ReadBatch(b.msgs, 0)
}

// message returns request i of those read: its bytes, its control
// message (nil when unknown) and its source (nil when not UDP).
func (b *batch) message(i int) ([]byte, *ipv4.ControlMessage, *net.UDPAddr) {
	if b.c.p == nil {
		from, _ := b.src1.(*net.UDPAddr)
		return b.one[:b.n1], b.cm1, from
	}
	m := &b.msgs[i]
	from, _ := m.Addr.(*net.UDPAddr)
	cm := &b.cms[i]
	*cm = ipv4.ControlMessage{}
	if m.NN == 0 || cm.Parse(m.OOB[:m.NN]) != nil {
		cm = nil
	}
	return m.Buffers[0][:m.N], cm, from
}

// answerAll answers reqs and sends the replies. One request is answered
// on the worker's goroutine; several are answered concurrently under one
// Group context, so that their changes are committed together, and their
// replies leave in one system call.
func (s *Server) answerAll(ctx context.Context, c *packetConn, reqs []request) {
	switch {
	case len(reqs) == 0:
		return
	case len(reqs) == 1 || s.Group == nil:
		for i := range reqs {
			r := &reqs[i]
			if resp := s.answer(ctx, r.pkt, r.client, r.dst); resp != nil {
				s.sendReply(ctx, c, resp, r)
			}
		}
		return
	}
	gctx, done := s.Group(ctx, len(reqs))
	var wg sync.WaitGroup
	for i := range reqs {
		r := &reqs[i]
		r.resp = nil
		answer := func() {
			defer done()
			r.resp = s.answer(gctx, r.pkt, r.client, r.dst)
		}
		if i == len(reqs)-1 {
			answer() // the last on this goroutine
		} else {
			wg.Go(answer)
		}
	}
	wg.Wait()
	s.sendReplies(ctx, c, reqs)
}

// sendReplies sends the answers of reqs in as few system calls as the
// socket allows (WriteBatch, sendmmsg on Linux), each from the address
// its request was sent to.
func (s *Server) sendReplies(ctx context.Context, c *packetConn, reqs []request) {
	if c.p == nil {
		for i := range reqs {
			if reqs[i].resp != nil {
				s.sendReply(ctx, c, reqs[i].resp, &reqs[i])
			}
		}
		return
	}
	out := make([]ipv4.Message, 0, len(reqs))
	sent := make([]*request, 0, len(reqs))
	for i := range reqs {
		r := &reqs[i]
		if r.resp == nil {
			continue
		}
		m := ipv4.Message{Buffers: [][]byte{r.resp}, Addr: r.from}
		if r.dst.IsValid() && !r.dst.IsUnspecified() {
			m.OOB = (&ipv4.ControlMessage{Src: r.dst.AsSlice()}).Marshal()
		}
		out = append(out, m)
		sent = append(sent, r)
	}
	for len(out) > 0 {
		n, err := c.p.WriteBatch(out, 0)
		if err != nil {
			// Say which one failed, and carry on with the rest.
			n = min(max(n, 0), len(out)-1)
			if ctx.Err() == nil {
				s.logger().Warn("natpmp: cannot send a reply", "client", sent[n].client, "err", err)
			}
			n++
		}
		if n <= 0 {
			break // cannot happen: a batch write without error sends one at least
		}
		out, sent = out[n:], sent[n:]
	}
}
