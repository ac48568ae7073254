package natpmp

import (
	"testing"
	"time"

	"github.com/portfwd/portfwd/internal/epoch"
)

func TestEpochTracker(t *testing.T) {
	var tr epoch.Tracker
	t0 := time.Now()
	if tr.ObserveSpan(50, t0, t0) {
		t.Error("the first epoch cannot show a loss")
	}
	if !tr.ObserveSpan(10, t0.Add(time.Second), t0.Add(time.Second)) {
		t.Error("50 -> 10 one second later is a loss")
	}
	if tr.ObserveSpan(11, t0.Add(2*time.Second), t0.Add(2*time.Second)) {
		t.Error("10 -> 11: the new baseline is 10, not 50")
	}
	st := tr.ClientState()
	if !st.Valid || st.Epoch != 11 || !st.Received.Equal(t0.Add(2*time.Second)) || !st.LostState {
		t.Errorf("state = %+v", st)
	}
	tr.ClearLost()
	if tr.ClientState().LostState {
		t.Error("ClearLost did not clear")
	}
}
