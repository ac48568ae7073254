package natpmp

import (
	"sync"
	"time"
)

// EpochState is a client's record of the gateway's "seconds since start of
// epoch" (SSSoE), which RFC 6886 §3.6 uses to detect that the gateway has
// rebooted or otherwise lost its mapping table.
type EpochState struct {
	// Valid is false until a reply has been received.
	Valid bool
	// Epoch is the SSSoE of the most recent reply.
	Epoch uint32
	// Received is the local time at which that reply arrived.
	Received time.Time
	// LostState reports that some reply since the last ClearLostState
	// showed the gateway's epoch going back: its mappings are gone and must
	// be re-created (RFC 6886 §3.7).
	LostState bool
}

// epochSlack is how far (in seconds) an epoch may fall behind the client's
// conservative estimate before the client concludes the gateway lost state
// (RFC 6886 §3.6).
const epochSlack = 2

// epochTracker holds an EpochState for concurrent use.
type epochTracker struct {
	mu sync.Mutex
	st EpochState
}

// observe records that a packet carrying epoch arrived at now, and reports
// whether it shows the gateway lost its state since the previous packet.
func (t *epochTracker) observe(epoch uint32, now time.Time) (lost bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.st.Valid {
		lost = epochWentBack(t.st.Epoch, t.st.Received, epoch, now)
	}
	t.st.Valid = true
	t.st.Epoch = epoch
	t.st.Received = now
	t.st.LostState = t.st.LostState || lost
	return lost
}

// epochWentBack applies the RFC 6886 §3.6 test: the gateway's clock may run
// slower than ours, so only 7/8 of our elapsed time is expected to have
// passed on it, and 2 seconds more are forgiven for rounding (the field has a
// one-second resolution) and for the time the packets spent in flight.
func epochWentBack(prev uint32, prevAt time.Time, epoch uint32, now time.Time) bool {
	elapsed := now.Sub(prevAt) // monotonic when both come from time.Now
	if elapsed < 0 {
		elapsed = 0
	}
	expected := int64(prev) + int64(elapsed/8*7/time.Second)
	return int64(epoch) < expected-epochSlack
}

func (t *epochTracker) state() EpochState {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.st
}

func (t *epochTracker) clearLost() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.st.LostState = false
}
