package addrclass

import (
	"net/netip"
	"testing"
)

func TestOf(t *testing.T) {
	tests := []struct {
		addr string
		want Class
	}{
		{"8.8.8.8", Public},
		{"2606:4700::1111", Public},
		{"0.0.0.0", Unspecified},
		{"::", Unspecified},
		{"10.1.2.3", Private},
		{"172.16.0.1", Private},
		{"172.31.255.254", Private},
		{"172.32.0.1", Public},
		{"192.168.1.1", Private},
		{"fd00::1", Private},
		{"100.64.0.1", CGNAT},
		{"100.127.255.254", CGNAT},
		{"100.128.0.1", Public},
		{"127.0.0.1", Loopback},
		{"169.254.3.4", LinkLocal},
		{"203.0.113.1", Documentation},
		{"198.51.100.7", Documentation},
		{"192.0.2.1", Documentation},
		{"2001:db8::5", Documentation},
		{"198.18.0.1", Reserved},
		{"240.0.0.1", Reserved},
		{"239.255.255.250", Reserved},
		{"::ffff:10.0.0.1", Private},
	}
	for _, tt := range tests {
		if got := Of(netip.MustParseAddr(tt.addr)); got != tt.want {
			t.Errorf("Of(%s) = %v, want %v", tt.addr, got, tt.want)
		}
	}
	if Of(netip.Addr{}) != Unspecified {
		t.Error("the zero Addr must classify as unspecified")
	}
}

func TestWarningOnlyForNonPublic(t *testing.T) {
	if w := Public.Warning(); w != "" {
		t.Errorf("public address warned: %q", w)
	}
	for c := Unspecified; c <= Reserved; c++ {
		if c.Warning() == "" {
			t.Errorf("class %v has no warning", c)
		}
	}
}
