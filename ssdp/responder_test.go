package ssdp

import (
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
