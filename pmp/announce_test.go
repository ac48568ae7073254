package pmp

import (
	"net/netip"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/portfwd/portfwd/natpmp"
	"github.com/portfwd/portfwd/pcp"
)

// The schedule runs on real timers (time.AfterFunc); the tests run it in
// a testing/synctest bubble, where time moves only when every goroutine
// of the test waits, so they check exact instants without sleeping.

// burst returns the times of a full burst started at start: RFC 6886
// §3.2.1's first announcement at once, the second 250 ms later, and each
// gap twice the one before, ten in all. Written out rather than computed,
// so that it checks announceOffset too.
func burst(start time.Time) []time.Time {
	ms := []int{0, 250, 750, 1750, 3750, 7750, 15750, 31750, 63750, 127750}
	out := make([]time.Time, len(ms))
	for i, m := range ms {
		out[i] = start.Add(time.Duration(m) * time.Millisecond)
	}
	return out
}

// recorder is an announcer that records when it sends and which
// announcement of the burst each send is.
type recorder struct {
	a     *announcer
	mu    sync.Mutex
	at    []time.Time
	index []int
}

func newRecorder() *recorder {
	r := &recorder{}
	r.a = newAnnouncer(func(i int) {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.at = append(r.at, time.Now())
		r.index = append(r.index, i)
	})
	return r
}

// sent returns what was sent so far.
func (r *recorder) sent() ([]time.Time, []int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.at), slices.Clone(r.index)
}

// armed reports whether the announcer has a timer armed.
func (r *recorder) armed() bool {
	r.a.mu.Lock()
	defer r.a.mu.Unlock()
	return r.a.timer != nil
}

// advance lets d pass in the bubble, and waits until every timer due has
// done its work.
func advance(d time.Duration) {
	time.Sleep(d)
	synctest.Wait()
}

func TestAnnouncerSchedule(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRecorder()
		start := time.Now()
		r.a.Restart()
		// The first goes out at once, before the clock moves.
		if at, _ := r.sent(); len(at) != 1 || !at[0].Equal(start) {
			t.Fatalf("after Restart: sent at %v, want once at the start", at)
		}
		advance(10 * time.Minute)
		at, index := r.sent()
		if want := burst(start); !slices.EqualFunc(at, want, time.Time.Equal) {
			t.Errorf("sent at offsets %v,\nwant %v", offsets(at, start), offsets(want, start))
		}
		if want := []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}; !slices.Equal(index, want) {
			t.Errorf("announcement numbers %v, want %v", index, want)
		}
		if r.armed() {
			t.Error("a timer is still armed after the burst")
		}
	})
}

// A new event during a burst starts the schedule again from its own
// start; nothing more of the old burst is sent.
func TestAnnouncerRestartDuringBurst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRecorder()
		start := time.Now()
		r.a.Restart()
		advance(1100 * time.Millisecond) // 0, 250 ms, 750 ms sent; 1.75 s due next
		second := time.Now()
		r.a.Restart()
		advance(10 * time.Minute)

		at, index := r.sent()
		want := append(burst(start)[:3], burst(second)...)
		if !slices.EqualFunc(at, want, time.Time.Equal) {
			t.Errorf("sent at offsets %v,\nwant %v", offsets(at, start), offsets(want, start))
		}
		if wantIdx := []int{0, 1, 2, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9}; !slices.Equal(index, wantIdx) {
			t.Errorf("announcement numbers %v, want %v", index, wantIdx)
		}
		// The old burst's next announcement (at 1.75 s) is not among them.
		if slices.ContainsFunc(at, func(at time.Time) bool { return at.Equal(start.Add(1750 * time.Millisecond)) }) {
			t.Error("the abandoned burst still sent its fourth announcement")
		}
	})
}

// A burst that ended is started again by the next event, in full.
func TestAnnouncerRestartAfterBurst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRecorder()
		r.a.Restart()
		advance(time.Hour)
		later := time.Now()
		r.a.Restart()
		advance(time.Hour)
		at, _ := r.sent()
		if len(at) != 2*announceCount {
			t.Fatalf("%d announcements for two events, want %d", len(at), 2*announceCount)
		}
		if got := at[announceCount:]; !slices.EqualFunc(got, burst(later), time.Time.Equal) {
			t.Errorf("second burst at offsets %v", offsets(got, later))
		}
	})
}

func TestAnnouncerStop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRecorder()
		r.a.Restart()
		advance(300 * time.Millisecond)
		r.a.Stop()
		advance(time.Hour)
		if at, _ := r.sent(); len(at) != 2 {
			t.Errorf("%d announcements, want the 2 sent before Stop", len(at))
		}
		if r.armed() {
			t.Error("a timer is armed after Stop")
		}
		r.a.Restart()
		if at, _ := r.sent(); len(at) != 2 {
			t.Error("Restart after Stop sent an announcement")
		}
	})
}

func TestAnnounceOffset(t *testing.T) {
	epoch0 := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	for i, want := range burst(epoch0) {
		if got := epoch0.Add(announceOffset(i)); !got.Equal(want) {
			t.Errorf("announceOffset(%d) = %v, want %v", i, announceOffset(i), want.Sub(epoch0))
		}
		if i > 0 && announceOffset(i)-announceOffset(i-1) != announceGap(i) {
			t.Errorf("announceGap(%d) = %v, want the difference of the offsets", i, announceGap(i))
		}
	}
}

func offsets(ts []time.Time, start time.Time) []time.Duration {
	out := make([]time.Duration, len(ts))
	for i, t := range ts {
		out[i] = t.Sub(start)
	}
	return out
}

func TestNATPMPAnnouncement(t *testing.T) {
	for _, tc := range []struct {
		name   string
		ext    netip.Addr
		result natpmp.ResultCode
		addr   netip.Addr
	}{
		{"address", netip.MustParseAddr("203.0.113.9"), natpmp.Success, netip.MustParseAddr("203.0.113.9")},
		{"mapped address", netip.MustParseAddr("::ffff:203.0.113.9"), natpmp.Success, netip.MustParseAddr("203.0.113.9")},
		{"no address", netip.Addr{}, natpmp.NetworkFailure, netip.Addr{}},
		{"IPv6 address", netip.MustParseAddr("2001:db8::1"), natpmp.NetworkFailure, netip.Addr{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := natpmpAnnouncement(4242, tc.ext)
			// Version 0, opcode 128 (the external address response), then
			// result, epoch and the address (RFC 6886 §3.2).
			if len(b) != 12 || b[0] != 0 || b[1] != 128 {
				t.Fatalf("announcement % x: want 12 bytes starting 00 80", b)
			}
			r, err := natpmp.ParseResponse(b)
			if err != nil {
				t.Fatal(err)
			}
			if r.Op != natpmp.OpExternalAddress || r.Result != tc.result || r.Epoch != 4242 || r.ExternalAddr != tc.addr {
				t.Errorf("announcement decodes as %+v", r)
			}
		})
	}
}

func TestPCPAnnouncement(t *testing.T) {
	b := pcpAnnouncement(77)
	// Version 2, opcode ANNOUNCE with the R bit, result SUCCESS, lifetime
	// 0, the epoch: a bare 24-byte header (RFC 6887 §14.1.3).
	if len(b) != 24 || b[0] != 2 || b[1] != 0x80 || b[3] != 0 {
		t.Fatalf("announcement % x: want 24 bytes starting 02 80, result 0", b)
	}
	r, err := pcp.ParseResponse(b)
	if err != nil {
		t.Fatal(err)
	}
	if r.Op != pcp.OpAnnounce || r.Result != pcp.ResultSuccess || r.Epoch != 77 || r.Lifetime != 0 {
		t.Errorf("announcement decodes as %+v", r)
	}
}

func TestAllHostsGroup(t *testing.T) {
	if allHostsGroup.String() != "224.0.0.1:5350" {
		t.Errorf("announcements go to %v, want 224.0.0.1:5350", allHostsGroup)
	}
}
