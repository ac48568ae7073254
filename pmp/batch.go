package pmp

import "context"

// Requests are read and answered in batches in the full build
// (batch_full.go) and one at a time in the router build
// (batch_gatewayonly.go); both send a lone answer with sendReply.

// sendReply sends resp, the answer to r, from the address r was sent to.
func (s *Server) sendReply(ctx context.Context, c *packetConn, resp []byte, r *request) {
	if err := c.reply(resp, r.dst, r.from); err != nil && ctx.Err() == nil {
		s.logger().Warn("natpmp: cannot send a reply", "client", r.client, "err", err)
	}
}
