package upnp

import (
	"bytes"
	"errors"
	"math"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestPropertySetRoundTrip(t *testing.T) {
	vars := []Arg{
		{"PortMappingNumberOfEntries", "3"},
		{"ExternalIPAddress", "203.0.113.7"},
		{"ConnectionStatus", ""},
		{"X_Description", `<a href="x">Tom & Jerry's</a>`},
		{"X_Multiline", "line 1\nline 2\r\nline 3\ttab"},
		{"X_Unicode", "Café ☕ 𝄞"},
	}
	body := AppendPropertySet(nil, vars)
	for _, raw := range []string{`<a href`, `Tom & Jerry`} {
		if bytes.Contains(body, []byte(raw)) {
			t.Errorf("body holds %q unescaped:\n%s", raw, body)
		}
	}
	got, err := ParsePropertySet(body)
	if err != nil {
		t.Fatalf("ParsePropertySet(AppendPropertySet(vars)): %v\n%s", err, body)
	}
	if !reflect.DeepEqual(got, vars) {
		t.Errorf("round trip:\n got %q\nwant %q", got, vars)
	}
}

func TestAppendPropertySetFormat(t *testing.T) {
	// The layout of UDA 1.1 §4.3.2, which strict control points parse
	// literally: declaration, e: prefix, one variable per property.
	got := string(AppendPropertySet([]byte("prefix:"), []Arg{{"A", "1"}, {"B", "<2>"}}))
	want := "prefix:" + `<?xml version="1.0"?>` + "\r\n" +
		`<e:propertyset xmlns:e="urn:schemas-upnp-org:event-1-0">` +
		`<e:property><A>1</A></e:property>` +
		`<e:property><B>&lt;2&gt;</B></e:property>` +
		"</e:propertyset>\r\n"
	if got != want {
		t.Errorf("AppendPropertySet:\n got %q\nwant %q", got, want)
	}
	if got := string(AppendPropertySet(nil, nil)); !strings.Contains(got, `<e:propertyset xmlns:e="urn:schemas-upnp-org:event-1-0"></e:propertyset>`) {
		t.Errorf("empty property set: %q", got)
	}
}

func TestParsePropertySet(t *testing.T) {
	tests := []struct {
		name string
		body string
		want []Arg
	}{
		{
			name: "miniupnpd style",
			body: `<?xml version="1.0"?>` + "\r\n" + `<e:propertyset xmlns:e="urn:schemas-upnp-org:event-1-0"><e:property><PortMappingNumberOfEntries>2</PortMappingNumberOfEntries></e:property><e:property><ExternalIPAddress>198.51.100.1</ExternalIPAddress></e:property></e:propertyset>`,
			want: []Arg{{"PortMappingNumberOfEntries", "2"}, {"ExternalIPAddress", "198.51.100.1"}},
		},
		{
			name: "other prefix, pretty printed",
			body: "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<ev:propertyset xmlns:ev=\"urn:schemas-upnp-org:event-1-0\">\n  <ev:property>\n    <ConnectionStatus>\n      Connected\n    </ConnectionStatus>\n  </ev:property>\n</ev:propertyset>\n",
			want: []Arg{{"ConnectionStatus", "Connected"}},
		},
		{
			name: "no namespace at all",
			body: `<propertyset><property><A>x</A></property></propertyset>`,
			want: []Arg{{"A", "x"}},
		},
		{
			name: "default namespace",
			body: `<propertyset xmlns="urn:schemas-upnp-org:event-1-0"><property><A>x</A></property></propertyset>`,
			want: []Arg{{"A", "x"}},
		},
		{
			name: "several variables in one property",
			body: `<e:propertyset xmlns:e="urn:schemas-upnp-org:event-1-0"><e:property><A>1</A><B>2</B></e:property></e:propertyset>`,
			want: []Arg{{"A", "1"}, {"B", "2"}},
		},
		{
			name: "empty and self-closing values",
			body: `<e:propertyset xmlns:e="urn:schemas-upnp-org:event-1-0"><e:property><A></A></e:property><e:property><B/></e:property></e:propertyset>`,
			want: []Arg{{"A", ""}, {"B", ""}},
		},
		{
			name: "escaped XML value (LastChange) arrives as text",
			body: `<e:propertyset xmlns:e="urn:schemas-upnp-org:event-1-0"><e:property><LastChange>&lt;Event&gt;&lt;/Event&gt;</LastChange></e:property></e:propertyset>`,
			want: []Arg{{"LastChange", "<Event></Event>"}},
		},
		{
			name: "nested markup skipped",
			body: `<e:propertyset xmlns:e="urn:schemas-upnp-org:event-1-0"><e:property><A>a<x>inner</x>b</A></e:property></e:propertyset>`,
			want: []Arg{{"A", "ab"}},
		},
		{
			name: "unknown children of propertyset ignored",
			body: `<e:propertyset xmlns:e="urn:schemas-upnp-org:event-1-0"><e:junk><A>1</A></e:junk><e:property><B>2</B></e:property></e:propertyset>`,
			want: []Arg{{"B", "2"}},
		},
		{
			name: "trailing bytes after the property set",
			body: `<propertyset><property><A>1</A></property></propertyset>` + "\x00garbage<",
			want: []Arg{{"A", "1"}},
		},
		{
			name: "latin-1 declared",
			body: "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><propertyset><property><A>caf\xe9</A></property></propertyset>",
			want: []Arg{{"A", "café"}},
		},
		{
			name: "empty property set",
			body: `<e:propertyset xmlns:e="urn:schemas-upnp-org:event-1-0"></e:propertyset>`,
			want: nil,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParsePropertySet([]byte(tc.body))
			if err != nil {
				t.Fatalf("ParsePropertySet: %v", err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestParsePropertySetErrors(t *testing.T) {
	var many strings.Builder
	many.WriteString("<propertyset>")
	for range maxEventVars + 1 {
		many.WriteString("<property><A>1</A></property>")
	}
	many.WriteString("</propertyset>")
	tests := []struct {
		name string
		body string
		is   error
	}{
		{name: "empty", body: ""},
		{name: "not XML", body: "hello"},
		{name: "SOAP envelope, not a property set", body: `<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body/></s:Envelope>`},
		{name: "truncated", body: `<e:propertyset xmlns:e="urn:schemas-upnp-org:event-1-0"><e:property><A>1`},
		{name: "DTD entities", body: `<!DOCTYPE p [<!ENTITY x "y">]><propertyset><property><A>&x;</A></property></propertyset>`},
		{name: "too many variables", body: many.String()},
		{name: "too large", body: "<propertyset>" + strings.Repeat(" ", MaxEventBody) + "</propertyset>", is: ErrBodyTooLarge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParsePropertySet([]byte(tc.body))
			if err == nil {
				t.Fatalf("ParsePropertySet succeeded with %q, want an error", got)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("error %v is not %v", err, tc.is)
			}
		})
	}
}

func TestParseTimeout(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"Second-1800", 1800 * time.Second, true},
		{"second-30", 30 * time.Second, true},
		{"SECOND-0", 0, true},
		{"  Second-00060 ", 60 * time.Second, true},
		{"Second-4294967295", math.MaxUint32 * time.Second, true},
		{"Second-infinite", TimeoutInfinite, true},
		{"Second-INFINITE", TimeoutInfinite, true},
		{"Second-4294967296", 0, false},
		{"Second-", 0, false},
		{"Second--5", 0, false},
		{"Second-1.5", 0, false},
		{"Second- 5", 0, false},
		{"1800", 0, false},
		{"Seconds-1800", 0, false},
		{"", 0, false},
	}
	for _, tc := range tests {
		got, err := ParseTimeout(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseTimeout(%q) = %v, %v; want %v, ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestFormatTimeout(t *testing.T) {
	tests := []struct {
		in   time.Duration
		want string
	}{
		{1800 * time.Second, "Second-1800"},
		{0, "Second-0"},
		{1500 * time.Millisecond, "Second-2"}, // rounded up: never understate
		{time.Nanosecond, "Second-1"},
		{TimeoutInfinite, "Second-infinite"},
	}
	for _, tc := range tests {
		if got := FormatTimeout(tc.in); got != tc.want {
			t.Errorf("FormatTimeout(%v) = %q, want %q", tc.in, got, tc.want)
		}
		if d, err := ParseTimeout(FormatTimeout(tc.in)); err != nil || (tc.in >= 0 && d < tc.in) {
			t.Errorf("ParseTimeout(FormatTimeout(%v)) = %v, %v", tc.in, d, err)
		}
	}
}

func TestParseSID(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"uuid:6f2c6d3e-1b7a-4c1e-9a53-2f9d0c1b2a3e", "uuid:6f2c6d3e-1b7a-4c1e-9a53-2f9d0c1b2a3e", true},
		{"  uuid:abc \t", "uuid:abc", true},
		{"UUID:ABC", "UUID:ABC", true}, // returned as sent: SIDs compare exactly
		{"uuid:", "", false},
		{"abc", "", false},
		{"", "", false},
		{"uuid:a b", "", false},
		{"uuid:a\x00", "", false},
		{"uuid:caf\u00e9", "", false},
		{"uuid:" + strings.Repeat("a", maxSIDLen), "", false},
	}
	for _, tc := range tests {
		got, err := ParseSID(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseSID(%q) = %q, %v; want %q, ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestNewSID(t *testing.T) {
	v4 := regexp.MustCompile(`^uuid:[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	seen := map[string]bool{}
	for range 100 {
		sid := newSID()
		if !v4.MatchString(sid) {
			t.Fatalf("newSID() = %q, not uuid: and a version 4 UUID", sid)
		}
		if _, err := ParseSID(sid); err != nil {
			t.Fatalf("ParseSID(newSID()): %v", err)
		}
		if seen[sid] {
			t.Fatalf("newSID() repeated %q", sid)
		}
		seen[sid] = true
	}
}

func TestParseSeq(t *testing.T) {
	tests := []struct {
		in   string
		want uint32
		ok   bool
	}{
		{"0", 0, true},
		{"17", 17, true},
		{"0000000042", 42, true}, // leading zeros: UDA says to ignore them
		{" 5 ", 5, true},
		{"4294967295", math.MaxUint32, true},
		{"4294967296", 0, false},
		{"-1", 0, false},
		{"+1", 0, false},
		{"0x10", 0, false},
		{"1_000", 0, false},
		{"", 0, false},
	}
	for _, tc := range tests {
		got, err := ParseSeq(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseSeq(%q) = %d, %v; want %d, ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestNextSeq(t *testing.T) {
	tests := []struct{ in, want uint32 }{
		{0, 1},
		{1, 2},
		{math.MaxUint32 - 1, math.MaxUint32},
		{math.MaxUint32, 1}, // never back to 0, which marks the initial event
	}
	for _, tc := range tests {
		if got := NextSeq(tc.in); got != tc.want {
			t.Errorf("NextSeq(%d) = %d, want %d", tc.in, got, tc.want)
		}
	}
}

func TestParseCallback(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"<http://192.168.1.10:49152/cb>", []string{"http://192.168.1.10:49152/cb"}},
		{"<http://10.0.0.2/a><http://192.168.1.10:8080/b>", []string{"http://10.0.0.2/a", "http://192.168.1.10:8080/b"}},
		{"  <http://10.0.0.2/a>  <http://10.0.0.3/b> ", []string{"http://10.0.0.2/a", "http://10.0.0.3/b"}},
		{"< http://10.0.0.2/a >", []string{"http://10.0.0.2/a"}},
		{"<HTTP://10.0.0.2/a>", []string{"http://10.0.0.2/a"}},
		{"<http://[fe80::1%25eth0]:5000/x?y=1>", []string{"http://[fe80::1%25eth0]:5000/x?y=1"}},
		{"<http://router.lan/cb>", []string{"http://router.lan/cb"}}, // a name parses; the Publisher refuses it
		{"", nil},
		{"http://10.0.0.2/a", nil},
		{"<http://10.0.0.2/a", nil},
		{"<http://10.0.0.2/a>junk", nil},
		{"<https://10.0.0.2/a>", nil},
		{"<ftp://10.0.0.2/a>", nil},
		{"</relative>", nil},
		{"<http:///nohost>", nil},
		{"<http://user:pw@10.0.0.2/a>", nil},
		{"<>", nil},
		{strings.Repeat("<http://10.0.0.2/>", maxCallbacks+1), nil},
	}
	for _, tc := range tests {
		urls, err := ParseCallback(tc.in)
		if tc.want == nil {
			if err == nil {
				t.Errorf("ParseCallback(%q) = %v, want an error", tc.in, urls)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseCallback(%q): %v", tc.in, err)
			continue
		}
		var got []string
		for _, u := range urls {
			got = append(got, u.String())
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseCallback(%q) = %q, want %q", tc.in, got, tc.want)
		}
		// FormatCallback gives back an equivalent header.
		again, err := ParseCallback(FormatCallback(urls...))
		if err != nil || !reflect.DeepEqual(again, urls) {
			t.Errorf("ParseCallback(FormatCallback(%q)) = %v, %v", got, again, err)
		}
	}
}

func TestMergeVars(t *testing.T) {
	got := mergeVars([]Arg{{"A", "1"}, {"B", "1"}}, []Arg{{"B", "2"}, {"C", "2"}, {"A", "3"}})
	want := []Arg{{"A", "3"}, {"B", "2"}, {"C", "2"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("mergeVars = %q, want %q", got, want)
	}
}

// simpleVarName matches the names AppendPropertySet can write and
// ParsePropertySet read back unchanged.
var simpleVarName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.-]*$`)

func FuzzParsePropertySet(f *testing.F) {
	f.Add(AppendPropertySet(nil, []Arg{{"PortMappingNumberOfEntries", "1"}, {"ExternalIPAddress", "192.0.2.1"}}))
	f.Add(AppendPropertySet(nil, []Arg{{"X", `<&>"'` + "\r\n\t"}}))
	f.Add([]byte("<?xml version=\"1.0\" encoding=\"latin1\"?><propertyset><property><A>\xe9</A><B/></property></propertyset>"))
	f.Add([]byte(`<e:propertyset xmlns:e="urn:schemas-upnp-org:event-1-0"><e:property><A>a<x>y</x>b</A></e:property></e:propertyset>`))
	f.Add([]byte(`<!DOCTYPE x [<!ENTITY a "b">]><propertyset/>`))
	f.Add([]byte(`<propertyset><property><A>&#xD;&#0;&amp;</A></property>`))
	f.Fuzz(func(t *testing.T, data []byte) {
		vars, err := ParsePropertySet(data)
		if err != nil {
			return
		}
		for _, v := range vars {
			if !simpleVarName.MatchString(v.Name) {
				return
			}
		}
		body := AppendPropertySet(nil, vars)
		again, err := ParsePropertySet(body)
		if err != nil {
			t.Fatalf("our own rendering of %q does not parse: %v\n%s", vars, err, body)
		}
		if len(again) != len(vars) || (len(vars) > 0 && !reflect.DeepEqual(again, vars)) {
			t.Fatalf("round trip changed the variables:\n got %q\nwant %q", again, vars)
		}
	})
}

func FuzzParseCallback(f *testing.F) {
	f.Add("<http://192.168.1.10:49152/cb>")
	f.Add("<http://10.0.0.2/a> <http://[::1]:80/b?c=d#e>")
	f.Add("<http://[fe80::1%25eth0]/>")
	f.Fuzz(func(t *testing.T, v string) {
		urls, err := ParseCallback(v)
		if err != nil {
			return
		}
		if len(urls) == 0 || len(urls) > maxCallbacks {
			t.Fatalf("ParseCallback(%q) returned %d URLs", v, len(urls))
		}
		again, err := ParseCallback(FormatCallback(urls...))
		if err != nil {
			t.Fatalf("ParseCallback(FormatCallback(%v)): %v", urls, err)
		}
		for i := range urls {
			if again[i].String() != urls[i].String() {
				t.Fatalf("round trip changed %q into %q", urls[i], again[i])
			}
		}
	})
}
