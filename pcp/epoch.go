package pcp

import (
	"sync"
	"time"

	"github.com/portfwd/portfwd/internal/epoch"
)

// EpochState is a client's record of a server's epoch time, which RFC 6887
// §8.5 uses to detect that the server rebooted or otherwise lost its
// mappings.
type EpochState struct {
	// Valid is false until a response has been received.
	Valid bool
	// Epoch is the epoch time of the most recent response.
	Epoch uint32
	// Received is the local time at which that response arrived.
	Received time.Time
	// LostState reports that some response since the last ClearLostState
	// failed the epoch check: the server's mappings are gone and must be
	// re-created.
	LostState bool
}

// epochTracker holds an EpochState for concurrent use. The rule (RFC 6887
// §8.5: back by more than a second, or server and client deltas that
// differ by more than a sixteenth plus 2 s either way) lives in
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

// observe records that a response carrying e arrived at now, and reports
// whether it shows the server lost its state since the previous one.
// observe records an epoch the server read between sent and received.
func (t *epochTracker) observe(e uint32, sent, received time.Time) (lost bool) {
	return t.tracker().ObserveSpan(e, sent, received)
}

func (t *epochTracker) state() EpochState {
	s := t.tracker().State()
	return EpochState{Valid: s.Valid, Epoch: s.Value, Received: s.At, LostState: s.Lost}
}

func (t *epochTracker) clearLost() { t.tracker().ClearLost() }
