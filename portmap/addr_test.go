package portmap

import (
	"net/netip"
	"testing"
)

func TestClassify(t *testing.T) {
	tests := []struct {
		addr string
		want AddrClass
	}{
		{"8.8.8.8", AddrPublic},
		{"2606:4700::1111", AddrPublic},
		{"0.0.0.0", AddrUnspecified},
		{"::", AddrUnspecified},
		{"10.1.2.3", AddrPrivate},
		{"172.16.0.1", AddrPrivate},
		{"172.31.255.254", AddrPrivate},
		{"172.32.0.1", AddrPublic},
		{"192.168.1.1", AddrPrivate},
		{"fd00::1", AddrPrivate},
		{"100.64.0.1", AddrCGNAT},
		{"100.127.255.254", AddrCGNAT},
		{"100.128.0.1", AddrPublic},
		{"127.0.0.1", AddrLoopback},
		{"169.254.3.4", AddrLinkLocal},
		{"203.0.113.1", AddrDocumentation},
		{"198.51.100.7", AddrDocumentation},
		{"192.0.2.1", AddrDocumentation},
		{"2001:db8::5", AddrDocumentation},
		{"198.18.0.1", AddrReserved},
		{"240.0.0.1", AddrReserved},
		{"239.255.255.250", AddrReserved},
		{"::ffff:10.0.0.1", AddrPrivate},
	}
	for _, tt := range tests {
		if got := Classify(netip.MustParseAddr(tt.addr)); got != tt.want {
			t.Errorf("Classify(%s) = %v, want %v", tt.addr, got, tt.want)
		}
	}
	if Classify(netip.Addr{}) != AddrUnspecified {
		t.Error("the zero Addr must classify as unspecified")
	}
}

func TestWarningOnlyForNonPublic(t *testing.T) {
	if w := AddrPublic.Warning(); w != "" {
		t.Errorf("public address warned: %q", w)
	}
	for c := AddrUnspecified; c <= AddrReserved; c++ {
		if c.Warning() == "" {
			t.Errorf("class %v has no warning", c)
		}
	}
}
