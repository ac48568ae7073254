package natpmp

import (
	"testing"
	"time"
)

func TestEpochTracker(t *testing.T) {
	var tr epochTracker
	t0 := time.Now()
	if tr.observe(50, t0, t0) {
		t.Error("the first epoch cannot show a loss")
	}
	if !tr.observe(10, t0.Add(time.Second), t0.Add(time.Second)) {
		t.Error("50 -> 10 one second later is a loss")
	}
	if tr.observe(11, t0.Add(2*time.Second), t0.Add(2*time.Second)) {
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
