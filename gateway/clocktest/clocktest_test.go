package clocktest_test

import (
	"slices"
	"testing"
	"time"

	"github.com/portfwd/portfwd/gateway"
	"github.com/portfwd/portfwd/gateway/clocktest"
)

var _ gateway.Clock = (*clocktest.Fake)(nil)

var start = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

func TestTimersFireInDeadlineOrderAtTheirTime(t *testing.T) {
	c := clocktest.New(start)
	var fired []string
	var firedAt []time.Time
	arm := func(name string, d time.Duration) gateway.Timer {
		return c.AfterFunc(d, func() {
			fired = append(fired, name)
			firedAt = append(firedAt, c.Now())
		})
	}
	arm("c", 3*time.Second)
	arm("a", time.Second)
	arm("b", 2*time.Second)
	arm("a2", time.Second) // same deadline as a, armed later
	if c.Pending() != 4 {
		t.Fatalf("Pending = %d, want 4", c.Pending())
	}

	c.Advance(2 * time.Second)
	if want := []string{"a", "a2", "b"}; !slices.Equal(fired, want) {
		t.Fatalf("fired %v, want %v", fired, want)
	}
	if !firedAt[0].Equal(start.Add(time.Second)) || !firedAt[2].Equal(start.Add(2*time.Second)) {
		t.Errorf("callbacks saw Now = %v, want their deadlines", firedAt)
	}
	if !c.Now().Equal(start.Add(2 * time.Second)) {
		t.Errorf("Now = %v after Advance", c.Now())
	}
	if d, ok := c.NextDeadline(); !ok || !d.Equal(start.Add(3*time.Second)) {
		t.Errorf("NextDeadline = %v, %v", d, ok)
	}
}

func TestStopAndReset(t *testing.T) {
	c := clocktest.New(start)
	n := 0
	tm := c.AfterFunc(time.Second, func() { n++ })
	if !tm.Stop() || tm.Stop() {
		t.Error("Stop should report true once, then false")
	}
	c.Advance(time.Hour)
	if n != 0 {
		t.Fatal("stopped timer fired")
	}
	if tm.Reset(time.Second) {
		t.Error("Reset of a stopped timer reported it armed")
	}
	if !tm.Reset(time.Minute) { // moves the deadline, does not add one
		t.Error("Reset of an armed timer reported it unarmed")
	}
	c.Advance(time.Second)
	if n != 0 {
		t.Fatal("timer fired at its replaced deadline")
	}
	c.Advance(time.Minute)
	if n != 1 || c.Pending() != 0 {
		t.Fatalf("fired %d times, %d pending; want 1, 0", n, c.Pending())
	}
}

func TestCallbackMayRearm(t *testing.T) {
	c := clocktest.New(start)
	n := 0
	var tm gateway.Timer
	tm = c.AfterFunc(time.Second, func() {
		n++
		tm.Reset(time.Second)
	})
	c.Advance(10 * time.Second)
	if n != 10 {
		t.Errorf("periodic timer fired %d times in 10s, want 10", n)
	}
}
