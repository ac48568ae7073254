package pcp

import (
	"testing"
	"time"
)

func TestEpochValid(t *testing.T) {
	t0 := time.Date(2026, 11, 22, 1, 30, 0, 0, time.UTC)
	tests := []struct {
		name    string
		prev    uint32
		elapsed time.Duration
		epoch   uint32
		want    bool
	}{
		{"same epoch at once", 1000, 0, 1000, true},
		{"epoch advanced with our clock", 1000, 10 * time.Second, 1010, true},
		{"a fraction of a second counts as none", 1000, 900 * time.Millisecond, 1001, true},
		// Reordered replies: back by one second is forgiven, not more.
		{"back by 1 s", 1000, 0, 999, true},
		{"back by 2 s", 1000, 0, 998, false},
		// The server's clock may run a sixteenth slower than ours, plus 2 s:
		// after 160 s it must have counted 150 - 2.
		{"server slower, at the edge", 1000, 160 * time.Second, 1148, true},
		{"server slower, past the edge", 1000, 160 * time.Second, 1147, false},
		{"server did not count at all", 1000, 160 * time.Second, 1000, false},
		// Or a sixteenth faster: 172 s counted in our 160 is the most.
		{"server faster, at the edge", 1000, 160 * time.Second, 1172, true},
		{"server faster, past the edge", 1000, 160 * time.Second, 1175, false},
		{"reboot: back near zero", 100000, time.Second, 3, false},
		// The server restarted early in our hour and has counted up again
		// past its old epoch: only comparing the two deltas shows it.
		{"reboot long ago, counted up again", 1000, time.Hour, 1000 + 3000, false},
		// NAT-PMP's one-sided 7/8 rule lets an epoch ahead through; PCP's
		// does not (a server replaced by another, say).
		{"epoch far ahead of our clock", 1000, 10 * time.Second, 100000, false},
		// Our clock going back counts as no time passed: the server may
		// only have moved within the 2 s slack.
		{"our clock went backwards, epoch same", 1000, -time.Hour, 1000, true},
		{"our clock went backwards, epoch moved", 1000, -time.Hour, 1005, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := epochValid(tt.prev, t0, tt.epoch, t0.Add(tt.elapsed)); got != tt.want {
				t.Errorf("epochValid(%d, +%v, %d) = %v, want %v", tt.prev, tt.elapsed, tt.epoch, got, tt.want)
			}
		})
	}
}

func TestEpochTracker(t *testing.T) {
	var tr epochTracker
	t0 := time.Now()
	if tr.observe(5000, t0) {
		t.Error("the first epoch cannot show a lost state")
	}
	if st := tr.state(); !st.Valid || st.Epoch != 5000 || !st.Received.Equal(t0) || st.LostState {
		t.Errorf("state after first reply: %+v", st)
	}
	if tr.observe(5060, t0.Add(time.Minute)) {
		t.Error("a consistent epoch showed a lost state")
	}
	if !tr.observe(2, t0.Add(2*time.Minute)) {
		t.Error("an epoch back to 2 did not show a lost state")
	}
	// The next reply is consistent with the new epoch, but the flag stays
	// until cleared: the mappings are still to be re-created.
	if tr.observe(62, t0.Add(3*time.Minute)) || !tr.state().LostState {
		t.Errorf("after the reboot: %+v", tr.state())
	}
	tr.clearLost()
	if st := tr.state(); st.LostState || st.Epoch != 62 {
		t.Errorf("after clearLost: %+v", st)
	}
}
