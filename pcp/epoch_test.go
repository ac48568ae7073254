package pcp

import (
	"testing"
	"time"
)

func TestEpochTracker(t *testing.T) {
	var et epochTracker
	tr := et.tracker()
	t0 := time.Now()
	if tr.ObserveSpan(5000, t0, t0) {
		t.Error("the first epoch cannot show a lost state")
	}
	if st := tr.ClientState(); !st.Valid || st.Epoch != 5000 || !st.Received.Equal(t0) || st.LostState {
		t.Errorf("state after first reply: %+v", st)
	}
	if tr.ObserveSpan(5060, t0.Add(time.Minute), t0.Add(time.Minute)) {
		t.Error("a consistent epoch showed a lost state")
	}
	if !tr.ObserveSpan(2, t0.Add(2*time.Minute), t0.Add(2*time.Minute)) {
		t.Error("an epoch back to 2 did not show a lost state")
	}
	// The next reply is consistent with the new epoch, but the flag stays
	// until cleared: the mappings are still to be re-created.
	if tr.ObserveSpan(62, t0.Add(3*time.Minute), t0.Add(3*time.Minute)) || !tr.ClientState().LostState {
		t.Errorf("after the reboot: %+v", tr.ClientState())
	}
	tr.ClearLost()
	if st := tr.ClientState(); st.LostState || st.Epoch != 62 {
		t.Errorf("after ClearLost: %+v", st)
	}
}
