// Package clocktest provides a fake gateway.Clock whose time moves only
// when a test says so, so that lease expiry can be tested without sleeping.
//
// Timers fire synchronously inside Advance or Set, in deadline order, on
// the caller's goroutine and without the fake's lock held, so a callback
// may read the clock and re-arm timers. When Advance returns, every
// callback that was due has finished.
package clocktest

import (
	"fmt"
	"sync"
	"time"

	"github.com/portfwd/portfwd/gateway"
)

// maxFirings bounds how many callbacks one Advance may run, so that a
// callback that keeps re-arming itself with a zero delay fails the test
// instead of hanging it.
const maxFirings = 1 << 20

// Fake is a manually driven clock. The zero value is not usable; call New.
type Fake struct {
	mu     sync.Mutex
	now    time.Time
	seq    uint64
	timers map[*timer]struct{}
}

// New returns a fake clock reading start.
func New(start time.Time) *Fake {
	return &Fake{now: start, timers: make(map[*timer]struct{})}
}

// Now returns the fake time.
func (f *Fake) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

// AfterFunc arms a timer that calls fn once the fake time reaches Now()+d.
func (f *Fake) AfterFunc(d time.Duration, fn func()) gateway.Timer {
	f.mu.Lock()
	defer f.mu.Unlock()
	t := &timer{f: f, fn: fn}
	f.armLocked(t, d)
	return t
}

// Advance moves the clock forward by d, running due callbacks in order.
func (f *Fake) Advance(d time.Duration) {
	if d < 0 {
		panic(fmt.Sprintf("clocktest: Advance(%v): time cannot go backwards", d))
	}
	f.mu.Lock()
	target := f.now.Add(d)
	f.mu.Unlock()
	f.runUntil(target)
}

// Set moves the clock to t, which must not be before Now, running due
// callbacks in order.
func (f *Fake) Set(t time.Time) {
	f.mu.Lock()
	if t.Before(f.now) {
		f.mu.Unlock()
		panic(fmt.Sprintf("clocktest: Set(%v) is before Now (%v)", t, f.now))
	}
	f.mu.Unlock()
	f.runUntil(t)
}

// Pending returns how many timers are armed.
func (f *Fake) Pending() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.timers)
}

// NextDeadline returns the earliest armed deadline.
func (f *Fake) NextDeadline() (time.Time, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	t := f.nextLocked()
	if t == nil {
		return time.Time{}, false
	}
	return t.at, true
}

func (f *Fake) runUntil(target time.Time) {
	for i := 0; ; i++ {
		if i == maxFirings {
			panic("clocktest: too many timer callbacks in one Advance; a callback keeps re-arming with no delay")
		}
		f.mu.Lock()
		t := f.nextLocked()
		if t == nil || t.at.After(target) {
			f.now = target
			f.mu.Unlock()
			return
		}
		if t.at.After(f.now) {
			f.now = t.at
		}
		delete(f.timers, t)
		fn := t.fn
		f.mu.Unlock()
		fn()
	}
}

// nextLocked returns the armed timer with the earliest deadline, ties going
// to the one armed first.
func (f *Fake) nextLocked() *timer {
	var best *timer
	for t := range f.timers {
		if best == nil || t.at.Before(best.at) || (t.at.Equal(best.at) && t.seq < best.seq) {
			best = t
		}
	}
	return best
}

func (f *Fake) armLocked(t *timer, d time.Duration) {
	if d < 0 {
		d = 0
	}
	f.seq++
	t.seq = f.seq
	t.at = f.now.Add(d)
	f.timers[t] = struct{}{}
}

type timer struct {
	f   *Fake
	fn  func()
	at  time.Time
	seq uint64
}

func (t *timer) Stop() bool {
	t.f.mu.Lock()
	defer t.f.mu.Unlock()
	_, armed := t.f.timers[t]
	delete(t.f.timers, t)
	return armed
}

func (t *timer) Reset(d time.Duration) bool {
	t.f.mu.Lock()
	defer t.f.mu.Unlock()
	_, armed := t.f.timers[t]
	t.f.armLocked(t, d)
	return armed
}
