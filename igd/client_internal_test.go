package igd

import (
	"testing"
	"time"
)

func TestParseBool(t *testing.T) {
	for in, want := range map[string]bool{
		"1": true, "true": true, "TRUE": true, " yes\n": true, "Yes": true,
		"0": false, "false": false, "False": false, "no": false, "\tNO ": false,
	} {
		got, err := parseBool(in)
		if err != nil || got != want {
			t.Errorf("parseBool(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "2", "on", "off", "enabled", "1.0", "y"} {
		if _, err := parseBool(in); err == nil {
			t.Errorf("parseBool(%q) accepted", in)
		}
	}
}

func TestParsePort(t *testing.T) {
	for in, want := range map[string]uint16{"0": 0, "1": 1, " 8080 ": 8080, "65535": 65535, "007": 7} {
		if got, err := parsePort(in); err != nil || got != want {
			t.Errorf("parsePort(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", " ", "65536", "-1", "+1", "80a", "0x50"} {
		if _, err := parsePort(in); err == nil {
			t.Errorf("parsePort(%q) accepted", in)
		}
	}
	if p, err := parseOptionalPort(" "); p != 0 || err != nil {
		t.Errorf("parseOptionalPort(blank) = %d, %v", p, err)
	}
}

func TestSeconds(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "0", -time.Second: "0", time.Nanosecond: "1", time.Second: "1", 1500 * time.Millisecond: "2",
		time.Hour: "3600", 200 * 365 * 24 * time.Hour: "4294967295",
	} {
		if got := formatSeconds(d); got != want {
			t.Errorf("formatSeconds(%v) = %s, want %s", d, got, want)
		}
	}
	for in, want := range map[string]time.Duration{"": 0, " 60 ": time.Minute, "4294967295": 4294967295 * time.Second} {
		if got, err := parseSeconds(in); err != nil || got != want {
			t.Errorf("parseSeconds(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"4294967296", "-1", "1h", "1.5"} {
		if _, err := parseSeconds(in); err == nil {
			t.Errorf("parseSeconds(%q) accepted", in)
		}
	}
}

func TestNextPort(t *testing.T) {
	for p, want := range map[uint16]uint16{8080: 8081, 1024: 1025, 65534: 65535, 65535: 1024, 80: 81} {
		if got := nextPort(p); got != want {
			t.Errorf("nextPort(%d) = %d, want %d", p, got, want)
		}
	}
}
