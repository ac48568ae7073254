//go:build !linux

package daemon

import (
	"io"
	"os"
)

// tryFlock: this platform's lock is the store's own (see
// gateway.OpenFileStore); the daemon adds none.
func tryFlock(*os.File) (bool, error) { return true, nil }

// lockTable: nft exists on Linux only.
func lockTable(string, instanceInfo) (io.Closer, instanceInfo, error) {
	return nopCloser{}, instanceInfo{}, nil
}

type nopCloser struct{}

func (nopCloser) Close() error { return nil }
