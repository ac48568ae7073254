package stun

import (
	"bytes"
	"encoding/hex"
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The sample responses of RFC 5769 sections 2.2 and 2.3: independent bytes
// for the XOR-MAPPED-ADDRESS arithmetic.
const (
	rfc5769IPv4Response = `
		0101 003c 2112a442 b7e7a701 bc34d686 fa87dfae
		8022 000b 74657374 20766563 746f7220
		0020 0008 0001a147 e112a643
		0008 0014 2b91f599 fd9e90c3 8c7489f9 2af9ba53 f06be7d7
		8028 0004 c07d4c96`
	rfc5769IPv6Response = `
		0101 0048 2112a442 b7e7a701 bc34d686 fa87dfae
		8022 000b 74657374 20766563 746f7220
		0020 0014 0002a147 0113a9fa a5d3f179 bc25f4b5 bed2b9d9
		0008 0014 a382954e 4be67bf1 1784c97c 8292c275 bfe3ed41
		8028 0004 c8fb0b4c`
)

func TestParseRFC5769Responses(t *testing.T) {
	for _, tc := range []struct {
		name string
		wire string
		want netip.AddrPort
	}{
		{"IPv4", rfc5769IPv4Response, netip.MustParseAddrPort("192.0.2.1:32853")},
		{"IPv6", rfc5769IPv6Response, netip.MustParseAddrPort("[2001:db8:1234:5678:11:2233:4455:6677]:32853")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := Parse(unhex(t, tc.wire))
			if err != nil {
				t.Fatal(err)
			}
			if m.Type != BindingSuccess || !m.HasCookie() {
				t.Errorf("type %v, cookie %v; want a Binding success response with the magic cookie", m.Type, m.HasCookie())
			}
			if got, _ := m.Get(AttrSoftware); string(got) != "test vector" {
				t.Errorf("SOFTWARE = %q, want %q (padding stripped)", got, "test vector")
			}
			if len(m.Attrs) != 4 {
				t.Errorf("%d attributes, want 4", len(m.Attrs))
			}
			got, err := m.MappedAddress()
			if err != nil || got != tc.want {
				t.Errorf("MappedAddress() = %v, %v; want %v", got, err, tc.want)
			}
			v, _ := m.Get(AttrXORMappedAddress)
			if enc := EncodeXORAddress(tc.want, m.ID); !bytes.Equal(enc, v) {
				t.Errorf("EncodeXORAddress(%v) = %x, want %x", tc.want, enc, v)
			}
		})
	}
}

func TestParseRejects(t *testing.T) {
	for _, tc := range []struct {
		name string
		wire string
		want error
	}{
		{"short header", "0001 0000 2112a442 0000", ErrTruncated},
		{"top bits set (RTP, not STUN)", "8001 0000 2112a442 000000000000000000000000", ErrNotSTUN},
		{"length not a multiple of 4", "0001 0002 2112a442 000000000000000000000000 0000", ErrNotSTUN},
		{"length beyond datagram", "0001 0008 2112a442 000000000000000000000000 00030004", ErrTruncated},
		{"attribute beyond message", "0001 0008 2112a442 000000000000000000000000 00030008 00000000", ErrTruncated},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(unhex(t, tc.wire))
			if !errors.Is(err, tc.want) {
				t.Errorf("Parse = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestAppendLayout(t *testing.T) {
	m := NewBindingRequest([12]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}, ChangeIP|ChangePort)
	m.Add(AttrSoftware, []byte("abcde"))
	got := m.Append([]byte{0xff}) // appends after existing bytes
	want := unhex(t, `ff
		0001 0014 2112a442 0102030405060708090a0b0c
		0003 0004 00000006
		8022 0005 6162636465 000000`)
	if !bytes.Equal(got, want) {
		t.Errorf("Append =\n%x\nwant\n%x", got, want)
	}
}

func TestAddressRoundTrip(t *testing.T) {
	id := [16]byte{0x21, 0x12, 0xa4, 0x42, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 0xaa, 0x55}
	for _, s := range []string{"203.0.113.1:3478", "0.0.0.0:0", "[2001:db8::1]:65535", "[::ffff:10.0.0.1]:80"} {
		ap := netip.MustParseAddrPort(s)
		want := netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
		if got, err := DecodeAddress(EncodeAddress(ap)); err != nil || got != want {
			t.Errorf("DecodeAddress(EncodeAddress(%v)) = %v, %v", ap, got, err)
		}
		if got, err := DecodeXORAddress(EncodeXORAddress(ap, id), id); err != nil || got != want {
			t.Errorf("DecodeXORAddress(EncodeXORAddress(%v)) = %v, %v", ap, got, err)
		}
	}
	for _, bad := range []string{"", "0001", "00010050 0a0000", "00030050 0a000001", "00020050 0a000001"} {
		if _, err := DecodeAddress(unhex(t, bad)); err == nil {
			t.Errorf("DecodeAddress(%s) succeeded, want an error", bad)
		}
	}
}

func TestChangeRequestAndErrorCode(t *testing.T) {
	m := &Message{Type: BindingRequest}
	if c, err := m.ChangeRequest(); c != 0 || err != nil {
		t.Errorf("no attribute: ChangeRequest() = %v, %v; want 0, nil", c, err)
	}
	m.Add(AttrChangeRequest, []byte{0, 0, 0, 4})
	if c, err := m.ChangeRequest(); c != ChangeIP || err != nil {
		t.Errorf("ChangeRequest() = %v, %v; want ChangeIP", c, err)
	}
	bad := &Message{Attrs: []Attr{{AttrChangeRequest, []byte{4}}}}
	if _, err := bad.ChangeRequest(); err == nil {
		t.Error("1-byte CHANGE-REQUEST accepted")
	}
	e := (&Message{}).Add(AttrErrorCode, EncodeErrorCode(420, "Unknown Attribute"))
	if code, reason, err := e.ErrorCode(); code != 420 || reason != "Unknown Attribute" || err != nil {
		t.Errorf("ErrorCode() = %d, %q, %v", code, reason, err)
	}
	if _, _, err := m.ErrorCode(); !errors.Is(err, ErrNoAttr) {
		t.Errorf("ErrorCode() without the attribute: %v, want ErrNoAttr", err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add(unhex(f, rfc5769IPv4Response))
	f.Add(unhex(f, rfc5769IPv6Response))
	f.Add(NewBindingRequest([12]byte{1}, ChangeIP).Append(nil))
	f.Add([]byte{0, 1, 0, 4, 0x21, 0x12, 0xa4, 0x42})
	local := [2][2]netip.AddrPort{
		{netip.MustParseAddrPort("192.0.2.1:3478"), netip.MustParseAddrPort("192.0.2.1:3479")},
		{netip.MustParseAddrPort("192.0.2.2:3478"), {}},
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Parse(b)
		if err != nil {
			return
		}
		m2, err := Parse(m.Append(nil))
		if err != nil {
			t.Fatalf("re-parsing our own encoding: %v", err)
		}
		if !reflect.DeepEqual(normalize(m), normalize(m2)) {
			t.Fatalf("round trip changed the message:\n%+v\n%+v", m, m2)
		}
		m.MappedAddress()
		m.ErrorCode()
		if m.Type == BindingRequest {
			resp, ra, rp := answer(m, netip.MustParseAddrPort("198.51.100.7:1024"), local, 0, 0)
			if !local[ra][rp].IsValid() {
				t.Fatalf("answer picked missing socket [%d][%d]", ra, rp)
			}
			if _, err := Parse(resp.Append(nil)); err != nil {
				t.Fatalf("answer does not parse: %v", err)
			}
		}
	})
}

// normalize makes empty and nil values compare equal.
func normalize(m *Message) *Message {
	c := *m
	c.Attrs = nil
	for _, a := range m.Attrs {
		if len(a.Value) == 0 {
			a.Value = nil
		}
		c.Attrs = append(c.Attrs, a)
	}
	return &c
}
