//go:build unix

package gateway

import (
	"os"
	"syscall"
)

// lockFile takes an exclusive, non-blocking flock on path. The lock goes
// away with the process, so a crashed gateway never leaves it stale.
func lockFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}
