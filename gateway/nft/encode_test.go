package nft

import (
	"bytes"
	"encoding/hex"
	"net/netip"
	"strings"
	"testing"

	"github.com/portfwd/portfwd/gateway"
)

// The expected bytes below were read from "nft --debug=netlink add element"
// for the same elements: they are the encoding nft itself uses, so maps we
// fill and maps an administrator fills by hand agree.
func TestEncodeMatchesNft(t *testing.T) {
	tests := []struct {
		name          string
		rule          gateway.Rule
		key, src, val string
	}{
		{
			name: "tcp 18080 to 10.88.0.2:8080",
			rule: gateway.Rule{Protocol: gateway.TCP, ExternalPort: 18080, InternalAddr: netip.MustParseAddr("10.88.0.2"), InternalPort: 8080},
			key:  "06000000 46a00000",
			val:  "0a580002 1f900000",
		},
		{
			name: "udp 53 from 1.2.3.4",
			rule: gateway.Rule{Protocol: gateway.UDP, ExternalPort: 53, InternalAddr: netip.MustParseAddr("10.88.0.2"), InternalPort: 8080, RemoteHost: netip.MustParseAddr("1.2.3.4")},
			key:  "11000000 00350000",
			src:  "01020304 11000000 00350000",
			val:  "0a580002 1f900000",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			check := func(what string, got []byte, want string) {
				t.Helper()
				w, err := hex.DecodeString(strings.ReplaceAll(want, " ", ""))
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, w) {
					t.Errorf("%s = %x, want %x", what, got, w)
				}
			}
			check("encodeKey", encodeKey(tt.rule), tt.key)
			check("encodeData", encodeData(tt.rule), tt.val)
			if tt.src != "" {
				check("encodeSrcKey", encodeSrcKey(tt.rule), tt.src)
			}
		})
	}
}

func TestDecodeElementRejects(t *testing.T) {
	good := gateway.Rule{Protocol: gateway.TCP, ExternalPort: 1, InternalAddr: netip.MustParseAddr("10.0.0.1"), InternalPort: 2}
	tests := []struct {
		name      string
		key, data []byte
	}{
		{"short key", encodeKey(good)[:7], encodeData(good)},
		{"long data", encodeKey(good), append(encodeData(good), 0)},
		{"icmp", append([]byte{1}, encodeKey(good)[1:]...), encodeData(good)},
		{"empty", nil, nil},
	}
	for _, tt := range tests {
		if r, err := decodeElement(tt.key, tt.data); err == nil {
			t.Errorf("%s: decodeElement = %v, want an error", tt.name, r)
		}
	}
}

func TestNormalize(t *testing.T) {
	v4 := netip.MustParseAddr("192.168.1.10")
	tests := []struct {
		name    string
		in      gateway.Rule
		want    gateway.Rule
		wantErr string
	}{
		{
			name: "plain",
			in:   gateway.Rule{Protocol: gateway.TCP, ExternalPort: 80, InternalAddr: v4, InternalPort: 8080},
			want: gateway.Rule{Protocol: gateway.TCP, ExternalPort: 80, InternalAddr: v4, InternalPort: 8080},
		},
		{
			name: "mapped addresses are unmapped",
			in: gateway.Rule{Protocol: gateway.UDP, ExternalPort: 80, InternalAddr: netip.MustParseAddr("::ffff:192.168.1.10"), InternalPort: 80,
				RemoteHost: netip.MustParseAddr("::ffff:1.2.3.4")},
			want: gateway.Rule{Protocol: gateway.UDP, ExternalPort: 80, InternalAddr: v4, InternalPort: 80, RemoteHost: netip.MustParseAddr("1.2.3.4")},
		},
		{
			name: "0.0.0.0 remote host means any",
			in:   gateway.Rule{Protocol: gateway.TCP, ExternalPort: 80, InternalAddr: v4, InternalPort: 80, RemoteHost: netip.IPv4Unspecified()},
			want: gateway.Rule{Protocol: gateway.TCP, ExternalPort: 80, InternalAddr: v4, InternalPort: 80},
		},
		{name: "ipv6 target", in: gateway.Rule{Protocol: gateway.TCP, ExternalPort: 80, InternalAddr: netip.MustParseAddr("fd00::1"), InternalPort: 80}, wantErr: "IPv4"},
		{name: "ipv6 remote", in: gateway.Rule{Protocol: gateway.TCP, ExternalPort: 80, InternalAddr: v4, InternalPort: 80, RemoteHost: netip.MustParseAddr("2001:db8::1")}, wantErr: "IPv4"},
		{name: "no target", in: gateway.Rule{Protocol: gateway.TCP, ExternalPort: 80, InternalPort: 80}, wantErr: "IPv4"},
		{name: "port 0", in: gateway.Rule{Protocol: gateway.TCP, InternalAddr: v4, InternalPort: 80}, wantErr: "non-zero"},
		{name: "sctp", in: gateway.Rule{Protocol: 132, ExternalPort: 80, InternalAddr: v4, InternalPort: 80}, wantErr: "TCP and UDP"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := normalize(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("normalize(%v) error = %v, want one mentioning %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("normalize(%v) = %v, %v; want %v", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestIfnameMatch(t *testing.T) {
	tests := []struct {
		name string
		want []byte // nil: invalid
	}{
		{"wan0", append([]byte("wan0"), make([]byte, 12)...)},
		{"ppp*", []byte("ppp")},
		{"enp1s0f0np0.100", append([]byte("enp1s0f0np0.100"), 0)},
		{"", nil},
		{"*", nil},
		{"a*b*", nil},
		{"enp1s0f0np0.1000", nil}, // 16 bytes: no room for the NUL
		{"wan 0", nil},
	}
	for _, tt := range tests {
		got, err := ifnameMatch(tt.name)
		if tt.want == nil {
			if err == nil {
				t.Errorf("ifnameMatch(%q) = %q, want an error", tt.name, got)
			}
			continue
		}
		if err != nil || !bytes.Equal(got, tt.want) {
			t.Errorf("ifnameMatch(%q) = %q, %v; want %q", tt.name, got, err, tt.want)
		}
	}
}

// FuzzRuleRoundTrip checks that every valid rule survives the trip through
// the map encoding, in whichever map it belongs.
func FuzzRuleRoundTrip(f *testing.F) {
	f.Add(true, uint16(18080), []byte{10, 88, 0, 2}, uint16(8080), []byte{})
	f.Add(false, uint16(53), []byte{192, 168, 1, 2}, uint16(53), []byte{1, 2, 3, 4})
	f.Add(false, uint16(65535), []byte{0, 0, 0, 0}, uint16(1), []byte{255, 255, 255, 255})
	f.Fuzz(func(t *testing.T, tcp bool, ext uint16, internal []byte, port uint16, remote []byte) {
		in, ok := netip.AddrFromSlice(internal)
		if !ok {
			return
		}
		r := gateway.Rule{Protocol: gateway.UDP, ExternalPort: ext, InternalAddr: in, InternalPort: port}
		if tcp {
			r.Protocol = gateway.TCP
		}
		if rh, ok := netip.AddrFromSlice(remote); ok {
			r.RemoteHost = rh
		}
		r, err := normalize(r)
		if err != nil {
			return
		}
		key := encodeKey(r)
		if r.RemoteHost.IsValid() {
			key = encodeSrcKey(r)
		}
		got, err := decodeElement(key, encodeData(r))
		if err != nil || got != r {
			t.Fatalf("decode(encode(%v)) = %v, %v", r, got, err)
		}
	})
}

// FuzzDecodeElement feeds arbitrary map contents (an administrator can add
// anything of the right length with nft) and checks that decoding never
// panics and that what decodes re-encodes to a key that decodes the same.
func FuzzDecodeElement(f *testing.F) {
	r := gateway.Rule{Protocol: gateway.TCP, ExternalPort: 18080, InternalAddr: netip.MustParseAddr("10.88.0.2"), InternalPort: 8080,
		RemoteHost: netip.MustParseAddr("1.2.3.4")}
	f.Add(encodeKey(r), encodeData(r))
	f.Add(encodeSrcKey(r), encodeData(r))
	f.Add([]byte{}, []byte{})
	f.Fuzz(func(t *testing.T, key, data []byte) {
		got, err := decodeElement(key, data)
		if err != nil {
			return
		}
		k := encodeKey(got)
		if got.RemoteHost.IsValid() {
			k = encodeSrcKey(got)
		}
		again, err := decodeElement(k, encodeData(got))
		if err != nil || again != got {
			t.Fatalf("decode(encode(%v)) = %v, %v", got, again, err)
		}
	})
}
