// Package epoch tells, from the clocks a NAT gateway reports, whether it
// restarted or otherwise lost its mappings since the last reading. It is
// the one implementation of the rules: the NAT-PMP and PCP clients and
// portmap's keeper and watcher all use it, so that they never disagree
// about the same reading.
//
// A gateway reports one of three clocks:
//
//   - NAT-PMP's "seconds since start of epoch" (RFC 6886 §3.6). The gateway
//     may count slower than the client, but by no more than an eighth: an
//     epoch more than 2 s below prev + 7/8 of the client's elapsed time
//     shows lost state. Only an epoch that falls behind counts.
//   - PCP's epoch time (RFC 6887 §8.5), checked both ways: back by more
//     than 1 s, or a server delta and a client delta that differ by more
//     than a sixteenth plus 2 s, in either direction. A server that
//     restarted long ago and counted up again past its old epoch is caught
//     too.
//   - UPnP's connection uptime (GetStatusInfo's NewUptime), which the
//     UPnP specifications give no rule for. A step back always counts.
//     Quirk: some routers report a frozen uptime (a constant, or always the
//     same made-up value), so a shortfall against the client's clock, by
//     NAT-PMP's 7/8 rule, only counts once the uptime has been seen to
//     advance.
package epoch

import (
	"sync"
	"time"
)

// Rule is the kind of clock a reading comes from, and so the rule it is
// checked by.
type Rule uint8

const (
	// NATPMP is RFC 6886 §3.6's rule for NAT-PMP's epoch.
	NATPMP Rule = iota
	// PCP is RFC 6887 §8.5's rule for PCP's epoch time.
	PCP
	// Uptime is the rule for a UPnP router's uptime (see the package doc).
	Uptime
)

func (r Rule) String() string {
	switch r {
	case NATPMP:
		return "NAT-PMP epoch"
	case PCP:
		return "PCP epoch"
	case Uptime:
		return "uptime"
	}
	return "clock"
}

// natpmpSlack is how far (in seconds) a NAT-PMP epoch or an uptime may fall
// behind the client's conservative estimate before it counts as lost state
// (RFC 6886 §3.6): the field has a one-second resolution, and the packets
// spend time in flight.
const natpmpSlack = 2

// Lost applies rule to a reading of cur (seconds) taken at now, when the
// previous reading of the same gateway was prev at prevAt. live says, for
// the Uptime rule, that the uptime has been seen to advance (see the
// package doc); the other rules ignore it. Times are compared with their
// monotonic readings when both come from time.Now; a client clock going
// backwards counts as no time passed.
func Lost(rule Rule, prev uint32, prevAt time.Time, cur uint32, now time.Time, live bool) bool {
	elapsed := max(now.Sub(prevAt), 0)
	return lost(rule, prev, cur, elapsed, elapsed, live)
}

// lost applies rule when the client's time between the two readings is
// known only to lie between minElapsed and maxElapsed: a gateway stamps
// its clock at some moment between the request going out and the answer
// coming back, and a slow gateway (miniupnpd reads the epoch when it reads
// the request, then may take seconds to answer) would otherwise look as if
// its clock had fallen behind. Each check takes the end of the span that
// favours "no restart", so only a reading no timing can explain counts.
func lost(rule Rule, prev, cur uint32, minElapsed, maxElapsed time.Duration, live bool) bool {
	switch rule {
	case PCP:
		if int64(cur) < int64(prev)-1 {
			return true
		}
		server := int64(cur) - int64(prev) // -1 at worst, past the check above
		// Whole seconds, as the RFC reckons.
		least, most := int64(minElapsed/time.Second), int64(maxElapsed/time.Second)
		return most+2 < server-server/16 || server+2 < least-least/16
	case Uptime:
		if int64(cur)+natpmpSlack < int64(prev) {
			return true // a plain step back
		}
		if !live {
			return false
		}
	}
	expected := int64(prev) + int64(minElapsed/8*7/time.Second)
	return int64(cur) < expected-natpmpSlack
}

// Tracker follows one clock of one gateway. Its zero value is ready for
// the NAT-PMP rule; set Rule before first use for another. It is safe for
// concurrent use.
type Tracker struct {
	Rule Rule

	mu   sync.Mutex
	st   State
	live bool // the clock has been seen to advance since the baseline (Uptime rule)
}

// State is what a Tracker knows.
type State struct {
	// Valid is false until a reading has been observed.
	Valid bool
	// Value is the most recent reading, in seconds.
	Value uint32
	// At is the local time of that reading: the latest moment the gateway
	// can have read its clock (when its answer arrived).
	At time.Time
	// From is the earliest moment the gateway can have read its clock (when
	// the request went out); it equals At for a reading taken at one
	// instant.
	From time.Time
	// Lost reports that some reading since the last ClearLost showed lost
	// state.
	Lost bool
}

// Observe records a reading of value seconds taken at now and reports
// whether it shows that the gateway lost its state since the previous one.
// The first reading only sets the baseline.
func (t *Tracker) Observe(value uint32, now time.Time) (lost bool) {
	return t.ObserveSpan(value, now, now)
}

// ObserveSpan is Observe for a reading the gateway took at some moment
// between sent (the request went out; the first transmission, when it was
// retransmitted) and received (its answer arrived).
func (t *Tracker) ObserveSpan(value uint32, sent, received time.Time) (isLost bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.st.Valid {
		minElapsed := max(sent.Sub(t.st.At), 0)
		maxElapsed := max(received.Sub(t.st.From), 0)
		isLost = lost(t.Rule, t.st.Value, value, minElapsed, maxElapsed, t.live)
		if !isLost && value > t.st.Value {
			t.live = true
		}
	}
	if isLost {
		// A restarted router's uptime must be seen advancing afresh.
		t.live = false
	}
	t.st = State{Valid: true, Value: value, At: received, From: sent, Lost: t.st.Lost || isLost}
	return isLost
}

// State returns what the tracker knows.
func (t *Tracker) State() State {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.st
}

// ClientState is a protocol client's record of its server's epoch: the
// EpochState that natpmp.Client and pcp.Client report (their Epoch
// method).
type ClientState struct {
	// Valid is false until a reply has been received.
	Valid bool
	// Epoch is the epoch of the most recent reply, in seconds.
	Epoch uint32
	// Received is the local time at which that reply arrived.
	Received time.Time
	// LostState reports that some reply since the last ClearLostState
	// showed the server lost its mappings (its epoch went back, or out of
	// step with the client's clock): they must be re-created.
	LostState bool
}

// ClientState returns what the tracker knows, as a client reports it.
func (t *Tracker) ClientState() ClientState {
	s := t.State()
	return ClientState{Valid: s.Valid, Epoch: s.Value, Received: s.At, LostState: s.Lost}
}

// ClearLost resets the flag State().Lost reports, once the caller has acted
// on it (re-created its mappings).
func (t *Tracker) ClearLost() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.st.Lost = false
}

// Reset forgets every reading: the next one is a new baseline. A caller
// that learned of a restart from another clock resets this one, so that
// its next reading, which shows the same restart, is not taken for a
// second one.
func (t *Tracker) Reset() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.st, t.live = State{}, false
}
