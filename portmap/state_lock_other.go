//go:build !unix

package portmap

import "sync"

// stateLock stands in for flock where the system has none: it keeps the
// goroutines of this process apart, not other processes.
var stateLock sync.RWMutex

func lockState(dir string, exclusive bool) (func(), error) {
	if exclusive {
		stateLock.Lock()
		return stateLock.Unlock, nil
	}
	stateLock.RLock()
	return stateLock.RUnlock, nil
}
