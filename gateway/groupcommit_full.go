//go:build !gatewayonly

package gateway

// groupCommit: a Core operation under a context from WithCommitGroup
// commits with its group (group.go).
const groupCommit = true
