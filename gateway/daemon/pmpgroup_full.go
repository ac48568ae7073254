//go:build !gatewayonly

package daemon

import (
	"context"

	"github.com/portfwd/portfwd/gateway"
)

// pmpGroup is the NAT-PMP/PCP server's Group: the requests a worker read
// together commit together (gateway.CommitGroup).
func pmpGroup() func(ctx context.Context, n int) (context.Context, func()) {
	return func(ctx context.Context, n int) (context.Context, func()) {
		g := gateway.NewCommitGroup(ctx, n)
		return gateway.WithCommitGroup(ctx, g), g.Done
	}
}
