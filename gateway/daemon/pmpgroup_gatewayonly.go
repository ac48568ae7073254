//go:build gatewayonly

package daemon

import "context"

// pmpGroup is nil in the router build: its NAT-PMP/PCP server reads and
// answers one request at a time (pmp's batch_gatewayonly.go), so there is
// no group to commit, and gateway.CommitGroup is not linked.
func pmpGroup() func(ctx context.Context, n int) (context.Context, func()) { return nil }
