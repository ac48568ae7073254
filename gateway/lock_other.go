//go:build !unix

package gateway

import "os"

// lockFile only opens path: this platform has no flock, so two gateways
// sharing a state directory are not detected.
func lockFile(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
}
