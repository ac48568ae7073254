package daemon

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/portfwd/portfwd/gateway/clocktest"
	"github.com/portfwd/portfwd/natpmp"
	"github.com/portfwd/portfwd/pcp"
)

var epoch0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

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

// recorder is an announcer on a fake clock that records when it sends
// and which announcement of the burst each send is.
type recorder struct {
	clock *clocktest.Fake
	a     *announcer
	at    []time.Time
	index []int
}

func newRecorder() *recorder {
	r := &recorder{clock: clocktest.New(epoch0)}
	r.a = newAnnouncer(r.clock, func(i int) {
		r.at = append(r.at, r.clock.Now())
		r.index = append(r.index, i)
	})
	return r
}

func TestAnnouncerSchedule(t *testing.T) {
	r := newRecorder()
	r.a.Restart()
	// The first goes out at once, before the clock moves.
	if len(r.at) != 1 || !r.at[0].Equal(epoch0) {
		t.Fatalf("after Restart: sent at %v, want once at the start", r.at)
	}
	r.clock.Advance(10 * time.Minute)
	if want := burst(epoch0); !slices.EqualFunc(r.at, want, time.Time.Equal) {
		t.Errorf("sent at offsets %v,\nwant %v", offsets(r.at, epoch0), offsets(want, epoch0))
	}
	if want := []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}; !slices.Equal(r.index, want) {
		t.Errorf("announcement numbers %v, want %v", r.index, want)
	}
	if n := r.clock.Pending(); n != 0 {
		t.Errorf("%d timers still armed after the burst", n)
	}
}

// A new event during a burst starts the schedule again from its own
// start; nothing more of the old burst is sent.
func TestAnnouncerRestartDuringBurst(t *testing.T) {
	r := newRecorder()
	r.a.Restart()
	r.clock.Advance(1100 * time.Millisecond) // 0, 250 ms, 750 ms sent; 1.75 s due next
	second := r.clock.Now()
	r.a.Restart()
	r.clock.Advance(10 * time.Minute)

	want := append(burst(epoch0)[:3], burst(second)...)
	if !slices.EqualFunc(r.at, want, time.Time.Equal) {
		t.Errorf("sent at offsets %v,\nwant %v", offsets(r.at, epoch0), offsets(want, epoch0))
	}
	if wantIdx := []int{0, 1, 2, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9}; !slices.Equal(r.index, wantIdx) {
		t.Errorf("announcement numbers %v, want %v", r.index, wantIdx)
	}
	// The old burst's next announcement (at 1.75 s) is not among them.
	if slices.ContainsFunc(r.at, func(at time.Time) bool { return at.Equal(epoch0.Add(1750 * time.Millisecond)) }) {
		t.Error("the abandoned burst still sent its fourth announcement")
	}
}

// A burst that ended is started again by the next event, in full.
func TestAnnouncerRestartAfterBurst(t *testing.T) {
	r := newRecorder()
	r.a.Restart()
	r.clock.Advance(time.Hour)
	later := r.clock.Now()
	r.a.Restart()
	r.clock.Advance(time.Hour)
	if len(r.at) != 2*announceCount {
		t.Fatalf("%d announcements for two events, want %d", len(r.at), 2*announceCount)
	}
	if got := r.at[announceCount:]; !slices.EqualFunc(got, burst(later), time.Time.Equal) {
		t.Errorf("second burst at offsets %v", offsets(got, later))
	}
}

func TestAnnouncerStop(t *testing.T) {
	r := newRecorder()
	r.a.Restart()
	r.clock.Advance(300 * time.Millisecond)
	r.a.Stop()
	r.clock.Advance(time.Hour)
	if len(r.at) != 2 {
		t.Errorf("%d announcements, want the 2 sent before Stop", len(r.at))
	}
	if n := r.clock.Pending(); n != 0 {
		t.Errorf("%d timers armed after Stop", n)
	}
	r.a.Restart()
	if len(r.at) != 2 {
		t.Error("Restart after Stop sent an announcement")
	}
}

func TestAnnounceOffset(t *testing.T) {
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
