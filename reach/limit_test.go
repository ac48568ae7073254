package reach

import (
	"net/netip"
	"testing"
	"time"
)

func TestParseRateLimit(t *testing.T) {
	tests := []struct {
		in   string
		want RateLimit
		err  bool
	}{
		{in: "10/min", want: RateLimit{Events: 10, Per: time.Minute}},
		{in: "10/m", want: RateLimit{Events: 10, Per: time.Minute}},
		{in: " 1/s ", want: RateLimit{Events: 1, Per: time.Second}},
		{in: "100/hour", want: RateLimit{Events: 100, Per: time.Hour}},
		{in: "3/30s", want: RateLimit{Events: 3, Per: 30 * time.Second}},
		{in: "10", err: true},
		{in: "0/min", err: true},
		{in: "-1/min", err: true},
		{in: "x/min", err: true},
		{in: "10/fortnight", err: true},
		{in: "10/-5s", err: true},
		{in: "10/0s", err: true},
	}
	for _, tt := range tests {
		got, err := ParseRateLimit(tt.in)
		if (err != nil) != tt.err || got != tt.want {
			t.Errorf("ParseRateLimit(%q) = %+v, %v; want %+v, error %v", tt.in, got, err, tt.want, tt.err)
		}
	}
}

func TestRateLimitDefaults(t *testing.T) {
	if got := (RateLimit{}).String(); got != "10/min (burst 10)" {
		t.Errorf("zero RateLimit is %q, want the 10/min default", got)
	}
	if got := (RateLimit{Events: 3, Per: 30 * time.Second, Burst: 1}).String(); got != "3/30s (burst 1)" {
		t.Errorf("got %q", got)
	}
}

func TestLimiterTokenBucket(t *testing.T) {
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	l := newLimiter(RateLimit{Events: 6, Per: time.Minute, Burst: 2}, 100) // one token per 10s
	a := sourceKey(netip.MustParseAddr("198.51.100.1"))
	b := sourceKey(netip.MustParseAddr("198.51.100.2"))
	steps := []struct {
		at    time.Duration
		key   netip.Prefix
		want  verdict
		retry time.Duration
	}{
		{0, a, allowed, 0},
		{0, a, allowed, 0},
		{0, a, limited, 10 * time.Second},
		{0, b, allowed, 0}, // another source has its own bucket
		{5 * time.Second, a, limited, 5 * time.Second},
		{10 * time.Second, a, allowed, 0},
		{10 * time.Second, a, limited, 10 * time.Second},
		{time.Hour, a, allowed, 0}, // refills to Burst, no more
		{time.Hour, a, allowed, 0},
		{time.Hour, a, limited, 10 * time.Second},
		{time.Hour - time.Minute, a, limited, 10 * time.Second}, // a clock going back does not refill
	}
	for i, s := range steps {
		v, retry := l.allow(s.key, t0.Add(s.at))
		if v != s.want || retry.Round(time.Second) != s.retry {
			t.Errorf("step %d (%v, %v): got %v, retry %v; want %v, retry %v", i, s.at, s.key, v, retry, s.want, s.retry)
		}
	}
}

func TestSourceKeyGroupsIPv6By64(t *testing.T) {
	tests := []struct {
		a, b string
		same bool
	}{
		{"2001:db8:1:2::1", "2001:db8:1:2:ffff::9", true},
		{"2001:db8:1:2::1", "2001:db8:1:3::1", false},
		{"198.51.100.1", "198.51.100.2", false},
		{"198.51.100.1", "::ffff:198.51.100.1", true},
		{"fe80::1%eth0", "fe80::1%eth1", true},
	}
	for _, tt := range tests {
		ka, kb := sourceKey(netip.MustParseAddr(tt.a)), sourceKey(netip.MustParseAddr(tt.b))
		if (ka == kb) != tt.same {
			t.Errorf("sourceKey(%s) = %v, sourceKey(%s) = %v; same: want %v", tt.a, ka, tt.b, kb, tt.same)
		}
	}
}

// TestLimiterStaysBounded: a flood of sources cannot grow the table past
// its cap; once their buckets have refilled, they are forgotten.
func TestLimiterStaysBounded(t *testing.T) {
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	l := newLimiter(RateLimit{Events: 1, Per: time.Second}, 3)
	src := func(i int) netip.Prefix { return sourceKey(netip.AddrFrom4([4]byte{198, 51, 100, byte(i)})) }
	for i := range 3 {
		if v, _ := l.allow(src(i), t0); v != allowed {
			t.Fatalf("source %d: %v", i, v)
		}
	}
	if v, _ := l.allow(src(3), t0); v != crowded {
		t.Errorf("a fourth source with the table full: %v, want crowded", v)
	}
	if v, _ := l.allow(src(0), t0.Add(time.Second)); v != allowed {
		t.Errorf("a known source is still served: %v", v)
	}
	if v, _ := l.allow(src(3), t0.Add(2*time.Second)); v != allowed {
		t.Errorf("after the buckets refilled: %v, want allowed", v)
	}
	if n := len(l.buckets); n > 3 {
		t.Errorf("table holds %d sources, cap 3", n)
	}
}
