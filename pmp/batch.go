package pmp

import (
	"context"
	"net"
	"net/netip"
)

// request is a request read and admitted, waiting for its answer.
type request struct {
	pkt    []byte
	client netip.AddrPort
	dst    netip.Addr
	from   *net.UDPAddr
	resp   []byte
}

func (s *Server) sendReply(ctx context.Context, c *packetConn, resp []byte, r *request) {
	if err := c.reply(resp, r.dst, r.from); err != nil && ctx.Err() == nil {
		s.logger().Warn("natpmp: cannot send a reply", "client", r.client, "err", err)
	}
}
