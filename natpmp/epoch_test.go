package natpmp

import (
	"testing"
	"time"
)

func TestEpochWentBack(t *testing.T) {
	t0 := time.Date(2026, 11, 22, 1, 30, 0, 0, time.UTC)
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
			if got := epochWentBack(tt.prev, t0, tt.epoch, t0.Add(tt.elapsed)); got != tt.want {
				t.Errorf("epochWentBack(prev %d, after %v, epoch %d) = %v, want %v", tt.prev, tt.elapsed, tt.epoch, got, tt.want)
			}
		})
	}
}

func TestEpochTracker(t *testing.T) {
	var tr epochTracker
	t0 := time.Now()
	if tr.observe(50, t0) {
		t.Error("the first epoch cannot show a loss")
	}
	if !tr.observe(10, t0.Add(time.Second)) {
		t.Error("50 -> 10 one second later is a loss")
	}
	if tr.observe(11, t0.Add(2*time.Second)) {
		t.Error("10 -> 11: the new baseline is 10, not 50")
	}
	st := tr.state()
	if !st.Valid || st.Epoch != 11 || !st.Received.Equal(t0.Add(2*time.Second)) || !st.LostState {
		t.Errorf("state = %+v", st)
	}
	tr.clearLost()
	if tr.state().LostState {
		t.Error("clearLost did not clear")
	}
}
