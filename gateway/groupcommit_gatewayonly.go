//go:build gatewayonly

package gateway

// groupCommit is false in the router build: its servers answer one
// request at a time (no batch reads), so a Core operation always commits
// alone, and the group's code (CommitGroup.submit, Core.commitChanges)
// is not linked. A context from WithCommitGroup
// is served as if it had no group.
const groupCommit = false
