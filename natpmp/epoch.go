package natpmp

import (
	"time"

	"github.com/portfwd/portfwd/internal/epoch"
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

// epochTracker holds an EpochState for concurrent use. The rule itself
// (the gateway's clock may run slower than ours, so only 7/8 of our
// elapsed time is expected on it, with 2 s forgiven) lives in
// internal/epoch, shared with PCP's rule and with portmap's keeper and
// watcher.
type epochTracker struct {
	t epoch.Tracker // zero value: the NAT-PMP rule
}

// observe records that a packet carrying sssoe arrived at now, and reports
// whether it shows the gateway lost its state since the previous packet.
// observe records an epoch the gateway read between sent and received.
func (t *epochTracker) observe(sssoe uint32, sent, received time.Time) (lost bool) {
	return t.t.ObserveSpan(sssoe, sent, received)
}

func (t *epochTracker) state() EpochState {
	s := t.t.State()
	return EpochState{Valid: s.Valid, Epoch: s.Value, Received: s.At, LostState: s.Lost}
}

func (t *epochTracker) clearLost() { t.t.ClearLost() }
