package jsonobj

import (
	"encoding/json"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// TestParse: what a line may hold, and what Parse makes of it.
func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Object // nil: an error
	}{
		{`{}`, Object{}},
		{" \t\r\n{ \"a\" : \"x\" , \"b\":1 }\n", Object{"a": {true, "x"}, "b": {false, "1"}}},
		{`{"s":"q\"b\\s\/n\n\t\b\f\r"}`, Object{"s": {true, "q\"b\\s/n\n\t\b\f\r"}}},
		{`{"u":"\u00e9\u4e2d\ud83d\ude00"}`, Object{"u": {true, "é中😀"}}},
		{`{"u":"\ud83d"}`, Object{"u": {true, "\ufffd"}}},
		{`{"u":"\ud83dx"}`, Object{"u": {true, "\ufffdx"}}},
		{`{"u":"\ud83d\u0041"}`, Object{"u": {true, "\ufffdA"}}},
		{"{\"bad\":\"caf\xe9\"}", Object{"bad": {true, "caf\ufffd"}}},
		{`{"n":-0.5e+3,"z":0,"t":true,"f":false,"x":null}`, Object{"n": {false, "-0.5e+3"}, "z": {false, "0"}, "t": {false, "true"}, "f": {false, "false"}, "x": {false, "null"}}},
		{`{"nested":{"a":[1,{"b":[]}]},"k":"v"}`, Object{"k": {true, "v"}}},
		{`{"k":"first","k":"last"}`, Object{"k": {true, "last"}}},
		{`{"k":"v","k":[1]}`, Object{}},
		{``, nil},
		{`[]`, nil},
		{`{"a":1`, nil},
		{`{"a":1,}`, nil},
		{`{"a":01}`, nil},
		{`{"a":1.}`, nil},
		{`{"a":-}`, nil},
		{`{"a":1e}`, nil},
		{`{"a":tru}`, nil},
		{`{"a":"x} `, nil},
		{"{\"a\":\"x\ny\"}", nil},
		{`{"a":"\x"}`, nil},
		{`{"a":"\u12"}`, nil},
		{`{a:1}`, nil},
		{`{"a" 1}`, nil},
		{`{"a":1} x`, nil},
		{`{"a":[1 2]}`, nil},
		{`{"a":` + deep(100) + `}`, nil},
	} {
		got, err := Parse([]byte(tc.in))
		if tc.want == nil {
			if err == nil {
				t.Errorf("Parse(%q) = %v, want an error", tc.in, got)
			}
			continue
		}
		if err != nil || len(got) != len(tc.want) {
			t.Errorf("Parse(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
			continue
		}
		for k, v := range tc.want {
			if got[k] != v {
				t.Errorf("Parse(%q)[%q] = %+v, want %+v", tc.in, k, got[k], v)
			}
		}
	}
}

func deep(n int) string {
	s := ""
	for range n {
		s += "["
	}
	for range n {
		s += "]"
	}
	return s
}

// record is a structure of every type the getters read, as encoding/json
// writes and reads it.
type record struct {
	Time time.Time      `json:"time"`
	S    string         `json:"s"`
	U16  uint16         `json:"u16,omitempty"`
	U32  uint32         `json:"u32,omitempty"`
	I    int            `json:"i"`
	A    netip.Addr     `json:"a,omitzero"`
	AP   netip.AddrPort `json:"ap,omitzero"`
	Z    netip.Addr     `json:"z"`
}

func readRecord(b []byte) (record, error) {
	var r record
	o, err := Parse(b)
	if err != nil {
		return r, err
	}
	var u16, u32 uint64
	var i int64
	err = errors.Join(o.Time("time", &r.Time), o.String("s", &r.S), o.Uint("u16", 16, &u16), o.Uint("u32", 32, &u32),
		o.Int("i", &i), o.Addr("a", &r.A), o.AddrPort("ap", &r.AP), o.Addr("z", &r.Z))
	r.U16, r.U32, r.I = uint16(u16), uint32(u32), int(i)
	return r, err
}

// TestRoundTrip: what json.Marshal writes, the getters read back as
// json.Unmarshal does.
func TestRoundTrip(t *testing.T) {
	for _, in := range []record{
		{},
		{Time: time.Date(2026, 12, 6, 16, 0, 0, 123456789, time.UTC), S: "caf\u00e9 <b>&\"\\\n\u2028", U16: 65535, U32: 4294967295, I: -42,
			A: netip.MustParseAddr("192.0.2.1"), AP: netip.MustParseAddrPort("[2001:db8::1%eth0]:5000"), Z: netip.MustParseAddr("::ffff:10.0.0.1")},
		{Time: time.Date(2026, 1, 1, 0, 0, 0, 0, time.FixedZone("", 3600)), S: "\x00\x1f", I: 1 << 40},
	} {
		b, err := json.Marshal(in)
		if err != nil {
			t.Fatal(err)
		}
		var want record
		if err := json.Unmarshal(b, &want); err != nil {
			t.Fatal(err)
		}
		got, err := readRecord(b)
		if err != nil || !got.Time.Equal(want.Time) || got.S != want.S || got.U16 != want.U16 || got.U32 != want.U32 ||
			got.I != want.I || got.A != want.A || got.AP != want.AP || got.Z != want.Z {
			t.Errorf("%s:\n got %+v, %v\nwant %+v", b, got, err, want)
		}
	}
}

// TestGetterErrors: a value of the wrong type or range is an error, as
// with json.Unmarshal, and leaves the destination alone.
func TestGetterErrors(t *testing.T) {
	for _, in := range []string{
		`{"s":1}`, `{"u16":65536}`, `{"u16":-1}`, `{"u16":"1"}`, `{"u32":1.5}`, `{"i":"x"}`,
		`{"time":"yesterday"}`, `{"time":5}`, `{"a":"300.1.1.1"}`, `{"ap":"1.2.3.4"}`, `{"a":true}`,
	} {
		var want record
		if json.Unmarshal([]byte(in), &want) == nil {
			t.Fatalf("json.Unmarshal accepts %s: the test is wrong", in)
		}
		if r, err := readRecord([]byte(in)); err == nil {
			t.Errorf("%s: read %+v, want an error", in, r)
		}
	}
}

// FuzzParse: Parse accepts exactly what encoding/json accepts as an
// object, and a string field reads as json.Unmarshal reads it.
func FuzzParse(f *testing.F) {
	for _, s := range []string{`{}`, `{"s":"a\u00e9\ud83d\ude00"}`, `{"i":-1e3,"s":"x","x":[{"y":null}]}`, `{"s":"\ud800"}`, "{\"s\":\"\xff\"}"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		o, err := Parse([]byte(in))
		var m map[string]any
		jerr := json.Unmarshal([]byte(in), &m)
		if (err == nil) != (jerr == nil && m != nil) {
			t.Fatalf("Parse(%q): %v; json.Unmarshal: %v", in, err, jerr)
		}
		if err != nil {
			return
		}
		var r struct {
			S *string `json:"s"`
		}
		for k := range m { // json.Unmarshal matches keys in any case
			if k != "s" && strings.EqualFold(k, "s") {
				return
			}
		}
		if json.Unmarshal([]byte(in), &r) == nil && r.S != nil {
			var s string
			if err := o.String("s", &s); err != nil || s != *r.S {
				t.Fatalf("Parse(%q) s = %q (%v), json.Unmarshal %q", in, s, err, *r.S)
			}
		}
	})
}
