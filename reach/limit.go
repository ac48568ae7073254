package reach

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Defaults of RateLimit: ten checks a minute per source address. A user
// checking a port needs one; a script checking a handful of ports needs a
// few.
const (
	DefaultRateEvents = 10
	DefaultRatePer    = time.Minute
)

// RateLimit is a token bucket per source address (per /64 for IPv6, which
// one subscriber usually holds whole): Burst checks at once, refilled at
// Events per Per. Its zero value means the defaults; it cannot be turned
// off.
type RateLimit struct {
	Events int
	Per    time.Duration
	// Burst is the bucket's size; 0 means Events.
	Burst int
}

// ParseRateLimit parses "N/UNIT": UNIT is s, min or h (or second, minute,
// hour) or a Go duration such as 30s, e.g. "10/min" or "3/30s".
func ParseRateLimit(s string) (RateLimit, error) {
	n, unit, ok := strings.Cut(strings.TrimSpace(s), "/")
	if !ok {
		return RateLimit{}, fmt.Errorf("rate %q: want N/UNIT, e.g. 10/min", s)
	}
	events, err := strconv.Atoi(n)
	if err != nil || events <= 0 {
		return RateLimit{}, fmt.Errorf("rate %q: %q is not a positive number of checks", s, n)
	}
	var per time.Duration
	switch strings.ToLower(unit) {
	case "s", "sec", "second":
		per = time.Second
	case "m", "min", "minute":
		per = time.Minute
	case "h", "hour":
		per = time.Hour
	default:
		per, err = time.ParseDuration(unit)
		if err != nil || per <= 0 {
			return RateLimit{}, fmt.Errorf("rate %q: unit %q is not s, min, h or a duration like 30s", s, unit)
		}
	}
	return RateLimit{Events: events, Per: per}, nil
}

func (r RateLimit) orDefault() RateLimit {
	if r.Events <= 0 || r.Per <= 0 {
		r.Events, r.Per = DefaultRateEvents, DefaultRatePer
	}
	if r.Burst <= 0 {
		r.Burst = r.Events
	}
	return r
}

func (r RateLimit) String() string {
	r = r.orDefault()
	per := r.Per.String()
	switch r.Per {
	case time.Second:
		per = "s"
	case time.Minute:
		per = "min"
	case time.Hour:
		per = "h"
	}
	return fmt.Sprintf("%d/%s (burst %d)", r.Events, per, r.Burst)
}

// maxSources bounds the limiter's table. Beyond it, a source not yet in the
// table is turned away until idle entries can be dropped: memory stays
// bounded however many addresses an attacker has.
const maxSources = 1 << 16

// limiter holds one token bucket per source.
type limiter struct {
	rate  float64 // tokens per second
	burst float64
	max   int

	mu        sync.Mutex
	buckets   map[netip.Prefix]*bucket
	lastSweep time.Time
}

type bucket struct {
	tokens float64
	at     time.Time
}

func newLimiter(r RateLimit, max int) *limiter {
	r = r.orDefault()
	return &limiter{
		rate:    float64(r.Events) / r.Per.Seconds(),
		burst:   float64(r.Burst),
		max:     max,
		buckets: map[netip.Prefix]*bucket{},
	}
}

// sourceKey is what the limit counts by: the address for IPv4, its /64 for
// IPv6.
func sourceKey(a netip.Addr) netip.Prefix {
	a = a.Unmap().WithZone("")
	if a.Is4() {
		return netip.PrefixFrom(a, 32)
	}
	p, _ := a.Prefix(64)
	return p
}

// verdict is the limiter's answer.
type verdict int

const (
	allowed verdict = iota
	limited         // this source used its checks: 429
	crowded         // the table is full of other sources: 503
)

// allow takes a token from key's bucket. When it cannot, retry says when
// one will be there.
func (l *limiter) allow(key netip.Prefix, now time.Time) (v verdict, retry time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets[key]
	if !ok {
		if len(l.buckets) >= l.max {
			l.sweep(now)
		}
		if len(l.buckets) >= l.max {
			return crowded, time.Second
		}
		b = &bucket{tokens: l.burst, at: now}
		l.buckets[key] = b
	}
	if now.After(b.at) {
		b.tokens = min(l.burst, b.tokens+now.Sub(b.at).Seconds()*l.rate)
		b.at = now
	}
	if b.tokens >= 1 {
		b.tokens--
		return allowed, 0
	}
	wait := time.Duration((1 - b.tokens) / l.rate * float64(time.Second))
	return limited, max(wait, time.Second)
}

// sweep drops the buckets that have refilled completely: forgetting them
// changes nothing. It runs at most once a second, so a flood of new
// sources costs a full scan only that often.
func (l *limiter) sweep(now time.Time) {
	if now.Sub(l.lastSweep) < time.Second {
		return
	}
	l.lastSweep = now
	for k, b := range l.buckets {
		if b.tokens+now.Sub(b.at).Seconds()*l.rate >= l.burst {
			delete(l.buckets, k)
		}
	}
}
