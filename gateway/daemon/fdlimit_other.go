//go:build !unix

package daemon

func fdLimit() int { return 0 }
