package gateway

import "time"

// Clock is the source of time for leases. Production uses SystemClock;
// tests use clocktest.Fake so that expiry can be driven step by step.
type Clock interface {
	Now() time.Time
	// AfterFunc calls f in its own goroutine (or, for fakes, whenever the
	// fake decides) once d has elapsed.
	AfterFunc(d time.Duration, f func()) Timer
}

// Timer is the handle AfterFunc returns; *time.Timer satisfies it.
type Timer interface {
	// Stop prevents the timer from firing; it reports whether it was armed.
	Stop() bool
	// Reset re-arms the timer to fire after d, replacing any earlier
	// deadline; it reports whether it was armed.
	Reset(d time.Duration) bool
}

// SystemClock is the real clock.
type SystemClock struct{}

// Now returns time.Now().
func (SystemClock) Now() time.Time { return time.Now() }

// AfterFunc wraps time.AfterFunc.
func (SystemClock) AfterFunc(d time.Duration, f func()) Timer { return time.AfterFunc(d, f) }
