package pcp

import (
	"sync"

	"github.com/portfwd/portfwd/internal/epoch"
)

// EpochState is a client's record of a server's epoch time, which RFC 6887
// §8.5 uses to detect that the server rebooted or otherwise lost its
// mappings: Valid is false until a response arrived, Epoch is the epoch of
// the most recent one, Received when it arrived, and LostState reports that
// some response since the last ClearLostState failed the epoch check, so
// that the mappings must be re-created.
type EpochState = epoch.ClientState

// epochTracker is a Client's epoch.Tracker, with PCP's rule (RFC 6887
// §8.5: back by more than a second, or server and client deltas that
// differ by more than a sixteenth plus 2 s either way), which lives in
// internal/epoch, shared with NAT-PMP's rule and with portmap's keeper and
// watcher.
type epochTracker struct {
	once sync.Once
	t    epoch.Tracker
}

func (t *epochTracker) tracker() *epoch.Tracker {
	t.once.Do(func() { t.t.Rule = epoch.PCP })
	return &t.t
}
