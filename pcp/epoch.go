package pcp

import (
	"sync"
	"time"
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

// epochTracker holds an EpochState for concurrent use.
type epochTracker struct {
	mu sync.Mutex
	st EpochState
}

// observe records that a response carrying epoch arrived at now, and
// reports whether it shows the server lost its state since the previous one.
func (t *epochTracker) observe(epoch uint32, now time.Time) (lost bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.st.Valid {
		lost = !epochValid(t.st.Epoch, t.st.Received, epoch, now)
	}
	t.st.Valid = true
	t.st.Epoch = epoch
	t.st.Received = now
	t.st.LostState = t.st.LostState || lost
	return lost
}

// epochValid applies the RFC 6887 §8.5 test to a response carrying epoch
// received at now, when the previous one carried prev at prevAt.
//
// It is not NAT-PMP's "7/8 of our elapsed time" rule (RFC 6886 §3.6), which
// only catches an epoch that fell behind: PCP checks both ways, because a
// server that restarted long ago and counted up again can be ahead as well
// as behind. Each side's elapsed time must match the other's within a
// sixteenth (cheap clocks drift) plus 2 seconds (both clocks tick in whole
// seconds). An epoch going back by up to 1 second is forgiven, since two
// responses can arrive out of order.
func epochValid(prev uint32, prevAt time.Time, epoch uint32, now time.Time) bool {
	if int64(epoch) < int64(prev)-1 {
		return false
	}
	// Whole seconds, as the RFC reckons; monotonic when both come from
	// time.Now. A clock going backwards counts as no time.
	client := max(int64(now.Sub(prevAt)/time.Second), 0)
	server := int64(epoch) - int64(prev) // -1 at worst, past the check above
	return client+2 >= server-server/16 && server+2 >= client-client/16
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
