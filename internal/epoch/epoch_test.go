package epoch

import (
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 22, 1, 30, 0, 0, time.UTC)

// TestNATPMPRule is RFC 6886 §3.6: only an epoch that falls behind 7/8 of
// the client's elapsed time, by more than 2 s, shows lost state.
func TestNATPMPRule(t *testing.T) {
	tests := []struct {
		name    string
		prev    uint32
		elapsed time.Duration
		epoch   uint32
		want    bool
	}{
		{"same epoch at once", 1000, 0, 1000, false},
		{"epoch advanced with our clock", 1000, 10 * time.Second, 1010, false},
		{"2 s behind at once is within the slack", 1000, 0, 998, false},
		{"3 s behind at once", 1000, 0, 997, true},
		// After 80 s the gateway must have counted at least 7/8 of them:
		// 1070, less the 2 s slack.
		{"gateway clock 7/8 of ours", 1000, 80 * time.Second, 1070, false},
		{"at the edge of the slack", 1000, 80 * time.Second, 1068, false},
		{"past the edge of the slack", 1000, 80 * time.Second, 1067, true},
		{"gateway did not count at all", 1000, 80 * time.Second, 1000, true},
		{"reboot: back near zero", 100000, time.Second, 3, true},
		{"reboot long ago, counted up again but not far enough", 1000, time.Hour, 1000 + 3000, true},
		{"gateway clock faster than ours", 1000, 10 * time.Second, 2000, false},
		{"our clock went backwards: treated as no time", 1000, -time.Hour, 999, false},
		{"first epoch 0", 0, 0, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Lost(NATPMP, tt.prev, t0, tt.epoch, t0.Add(tt.elapsed), false); got != tt.want {
				t.Errorf("Lost(NATPMP, prev %d, after %v, epoch %d) = %v, want %v", tt.prev, tt.elapsed, tt.epoch, got, tt.want)
			}
		})
	}
}

// TestPCPRule is RFC 6887 §8.5: both deltas must agree within a sixteenth
// plus 2 s, either way, and the epoch may go back by 1 s at most.
func TestPCPRule(t *testing.T) {
	tests := []struct {
		name    string
		prev    uint32
		elapsed time.Duration
		epoch   uint32
		want    bool
	}{
		{"same epoch at once", 1000, 0, 1000, false},
		{"epoch advanced with our clock", 1000, 10 * time.Second, 1010, false},
		{"a fraction of a second counts as none", 1000, 900 * time.Millisecond, 1001, false},
		// Reordered replies: back by one second is forgiven, not more.
		{"back by 1 s", 1000, 0, 999, false},
		{"back by 2 s", 1000, 0, 998, true},
		// The server's clock may run a sixteenth slower than ours, plus 2 s:
		// after 160 s it must have counted 150 - 2.
		{"server slower, at the edge", 1000, 160 * time.Second, 1148, false},
		{"server slower, past the edge", 1000, 160 * time.Second, 1147, true},
		{"server did not count at all", 1000, 160 * time.Second, 1000, true},
		// Or a sixteenth faster: 172 s counted in our 160 is the most.
		{"server faster, at the edge", 1000, 160 * time.Second, 1172, false},
		{"server faster, past the edge", 1000, 160 * time.Second, 1175, true},
		{"reboot: back near zero", 100000, time.Second, 3, true},
		// The server restarted early in our hour and has counted up again
		// past its old epoch: only comparing the two deltas shows it.
		{"reboot long ago, counted up again", 1000, time.Hour, 1000 + 3000, true},
		// NAT-PMP's one-sided 7/8 rule lets an epoch ahead through; PCP's
		// does not (a server replaced by another, say).
		{"epoch far ahead of our clock", 1000, 10 * time.Second, 100000, true},
		// Our clock going back counts as no time passed: the server may
		// only have moved within the 2 s slack.
		{"our clock went backwards, epoch same", 1000, -time.Hour, 1000, false},
		{"our clock went backwards, epoch moved", 1000, -time.Hour, 1005, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Lost(PCP, tt.prev, t0, tt.epoch, t0.Add(tt.elapsed), false); got != tt.want {
				t.Errorf("Lost(PCP, %d, +%v, %d) = %v, want %v", tt.prev, tt.elapsed, tt.epoch, got, tt.want)
			}
		})
	}
}

// TestRulesDisagreeOnAnEpochAhead is why one component decides: the same
// pair of readings is a restart for PCP and none for NAT-PMP, and a PCP
// epoch must be judged by PCP's rule wherever it is read.
func TestRulesDisagreeOnAnEpochAhead(t *testing.T) {
	var pcp, natpmp Tracker
	pcp.Rule = PCP
	for _, tr := range []*Tracker{&pcp, &natpmp} {
		tr.Observe(1000, t0)
	}
	if !pcp.Observe(100000, t0.Add(10*time.Second)) {
		t.Error("PCP: an epoch 99000 s ahead after 10 s is lost state")
	}
	if natpmp.Observe(100000, t0.Add(10*time.Second)) {
		t.Error("NAT-PMP: an epoch ahead is no lost state by RFC 6886")
	}
}

func TestUptimeRule(t *testing.T) {
	type reading struct {
		at, up int // seconds
		lost   bool
	}
	tests := []struct {
		name     string
		readings []reading
	}{
		{"advancing", []reading{{0, 100, false}, {30, 130, false}, {60, 159, false}}},
		{"step back", []reading{{0, 100, false}, {30, 5, true}, {60, 35, false}}},
		{"rounding forgiven", []reading{{0, 100, false}, {1, 99, false}}},
		// A frozen uptime never advances: only a step back counts.
		{"frozen", []reading{{0, 3600, false}, {30, 3600, false}, {600, 3600, false}}},
		// Once live, an uptime far short of the time passed means a restart
		// while we were not looking, even if it is above the last reading.
		{"restart while away", []reading{{0, 10, false}, {30, 40, false}, {600, 50, true}, {630, 80, false}}},
		{"slow clock forgiven", []reading{{0, 10, false}, {30, 40, false}, {830, 740, false}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr := Tracker{Rule: Uptime}
			for i, r := range tc.readings {
				if got := tr.Observe(uint32(r.up), t0.Add(time.Duration(r.at)*time.Second)); got != r.lost {
					t.Errorf("reading %d (%ds at %ds): lost = %v, want %v", i, r.up, r.at, got, r.lost)
				}
			}
		})
	}
}

func TestTrackerStateClearAndReset(t *testing.T) {
	var tr Tracker
	if tr.Observe(50, t0) {
		t.Error("the first reading cannot show a loss")
	}
	if !tr.Observe(10, t0.Add(time.Second)) {
		t.Error("50 -> 10 one second later is a loss")
	}
	if tr.Observe(11, t0.Add(2*time.Second)) {
		t.Error("10 -> 11: the new baseline is 10, not 50")
	}
	st := tr.State()
	if !st.Valid || st.Value != 11 || !st.At.Equal(t0.Add(2*time.Second)) || !st.Lost {
		t.Errorf("state = %+v", st)
	}
	tr.ClearLost()
	if tr.State().Lost {
		t.Error("ClearLost did not clear")
	}
	tr.Reset()
	if tr.State().Valid || tr.Observe(0, t0.Add(3*time.Second)) {
		t.Error("after Reset the next reading is a baseline")
	}
}

// A slow gateway reads its clock when it reads the request and answers
// seconds later (miniupnpd under load does): the reading belongs to the
// whole span between request and answer, and only a value no moment of
// that span explains shows lost state.
func TestObserveSpanSlowGateway(t *testing.T) {
	tests := []struct {
		name       string
		rule       Rule
		sent, recv time.Duration // after the baseline, taken at one instant
		value      uint32        // baseline 1000
		want       bool
	}{
		{"NAT-PMP: stamped at the request, answered 10 s late", NATPMP, 10 * time.Second, 20 * time.Second, 1010, false},
		{"NAT-PMP: a restart is still a restart", NATPMP, 10 * time.Second, 20 * time.Second, 3, true},
		{"NAT-PMP: behind even the request's time", NATPMP, 10 * time.Second, 20 * time.Second, 1005, true},
		{"PCP: stamped at the request, answered 30 s late", PCP, 10 * time.Second, 40 * time.Second, 1010, false},
		{"PCP: stamped at the answer", PCP, 10 * time.Second, 40 * time.Second, 1040, false},
		{"PCP: ahead of the answer", PCP, 10 * time.Second, 40 * time.Second, 1080, true},
		{"PCP: a restart is still a restart", PCP, 10 * time.Second, 40 * time.Second, 2, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := Tracker{Rule: tt.rule}
			tr.Observe(1000, t0)
			if got := tr.ObserveSpan(tt.value, t0.Add(tt.sent), t0.Add(tt.recv)); got != tt.want {
				t.Errorf("ObserveSpan(%d, +%v, +%v) = %v, want %v", tt.value, tt.sent, tt.recv, got, tt.want)
			}
		})
	}
	// The point form, at the answer's arrival, would have called the first
	// case a restart: that is the false alarm the span removes.
	if !Lost(NATPMP, 1000, t0, 1010, t0.Add(20*time.Second), false) {
		t.Error("Lost at the answer's arrival: want the false alarm the span avoids")
	}
}
