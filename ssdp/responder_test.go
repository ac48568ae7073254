package ssdp

import (
	"bytes"
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// Serving sockets multicast, so Serve itself is exercised only inside
// network namespaces (ssdp_netns_test.go). These tests cover what can be
// checked without a socket.

func TestResponderRejectsBadConfig(t *testing.T) {
	loc := func(a netip.Addr) string { return "http://" + a.String() + ":5000/rootDesc.xml" }
	ads := igd2Adverts()
	tests := []struct {
		name    string
		r       Responder
		mention string
	}{
		{"no interfaces", Responder{Adverts: ads, Location: loc}, "WAN"},
		{"no Location", Responder{Adverts: ads, Interfaces: []string{"lo"}}, "Location"},
		{"no adverts", Responder{Location: loc, Interfaces: []string{"lo"}}, "DeviceAdverts"},
		{"unicast group", Responder{Adverts: ads, Location: loc, Interfaces: []string{"lo"}, Group: netip.MustParseAddr("192.0.2.1")}, "multicast"},
		{"IPv6 group", Responder{Adverts: ads, Location: loc, Interfaces: []string{"lo"}, Group: netip.MustParseAddr("ff02::c")}, "IPv4 multicast"},
		{"unknown interface", Responder{Adverts: ads, Location: loc, Interfaces: []string{"pfssdp-none0"}}, "pfssdp-none0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			err := tt.r.Serve(ctx)
			if err == nil || !strings.Contains(err.Error(), tt.mention) {
				t.Errorf("Serve error = %v, want one mentioning %q", err, tt.mention)
			}
		})
	}
}

func TestResponderDelay(t *testing.T) {
	tests := []struct {
		maxMX, mx int
		limit     time.Duration // delays must fall in [0, limit); 0: no delay
	}{
		{5, 1, time.Second},
		{5, 3, 3 * time.Second},
		{5, 120, 5 * time.Second}, // UDA: MX above 5 counts as 5
		{1, 3, time.Second},       // the cap tests use
		{5, 0, time.Second},       // a multicast search without MX
		{-1, 5, 0},                // negative cap: answer at once
	}
	for _, tt := range tests {
		s := &responder{cfg: Responder{MaxMX: tt.maxMX}}
		var longest time.Duration
		for range 200 {
			d := s.delay(tt.mx)
			if d < 0 || (tt.limit == 0 && d != 0) || (tt.limit > 0 && d >= tt.limit) {
				t.Fatalf("MaxMX %d, MX %d: delay %v outside [0, %v)", tt.maxMX, tt.mx, d, tt.limit)
			}
			longest = max(longest, d)
		}
		// 200 draws from [0, limit) all in its lower quarter would mean the
		// delay is not spread over the window.
		if tt.limit > 0 && longest < tt.limit/4 {
			t.Errorf("MaxMX %d, MX %d: longest of 200 delays is %v, want them spread up to %v", tt.maxMX, tt.mx, longest, tt.limit)
		}
	}
}

// The reflection guard: a requester gets a burst of answers, then as many
// bytes as it sends, and a fresh burst after a quiet minute.
func TestSourceBudgets(t *testing.T) {
	b := newSourceBudgets(1000)
	src := netip.MustParseAddr("192.168.1.7")
	now := time.Unix(1000, 0)
	answer := bytes.Repeat([]byte("x"), 300)
	answers := [][]byte{answer, answer, answer, answer, answer}
	if n := b.allow(src, 100, answers, now); n != 3 {
		t.Fatalf("first search: %d answers sent, want 3 (the 1000-byte burst)", n)
	}
	// Now 100 bytes in: 100 bytes of credit, not enough for a 300-byte answer.
	in, out := 0, 0
	for i := range 100 {
		in += 100
		out += b.allow(src, 100, answers, now.Add(time.Duration(i)*time.Second)) * len(answer)
	}
	// One search a second for 100 s: 100 s of refill at most beside it.
	if max := in + 100*budgetRefill; out > max {
		t.Errorf("a flood after the burst: %d bytes out for %d in, want at most %d (1x plus the refill)", out, in, max)
	}
	if out < in-len(answer)*2 {
		t.Errorf("a flood after the burst: %d bytes out for %d in; the credit is not given", out, in)
	}
	// A control point searching every 30 s for an hour, each search
	// answered with more than it sent, is answered in full every time.
	cp := netip.MustParseAddr("192.168.1.9")
	for i := range 120 {
		if n := b.allow(cp, 130, answers[:2], now.Add(time.Duration(i)*30*time.Second)); n != 2 {
			t.Fatalf("search %d of a control point searching every 30 s: %d of 2 answers sent", i, n)
		}
	}
	// Another source has its own budget.
	if n := b.allow(netip.MustParseAddr("192.168.1.8"), 100, answers, now); n != 3 {
		t.Errorf("another source: %d answers, want its own burst", n)
	}
	// A quiet minute restores the burst.
	if n := b.allow(src, 100, answers, now.Add(200*time.Second)); n != 3 {
		t.Errorf("after a quiet minute: %d answers, want the burst again", n)
	}
}

// A flood of spoofed sources cannot grow the table without bound, and the
// sources beyond it get no burst.
func TestSourceBudgetsBounded(t *testing.T) {
	b := newSourceBudgets(1000)
	now := time.Unix(1000, 0)
	answers := [][]byte{bytes.Repeat([]byte("x"), 300)}
	sent := 0
	for i := range 10000 {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		sent += b.allow(a, 100, answers, now)
	}
	if len(b.m) > maxBudgets {
		t.Errorf("%d sources tracked, want at most %d", len(b.m), maxBudgets)
	}
	if sent != maxBudgets {
		t.Errorf("%d answers to 10,000 new sources, want %d (those beyond the table get none)", sent, maxBudgets)
	}
}
