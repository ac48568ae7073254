package ssdp

import (
	"strings"
	"testing"
)

// fuzzSeeds are the fixtures plus the odd shapes of the table tests.
func fuzzSeeds(f *testing.F) {
	for _, fx := range readFixtures(f) {
		f.Add(fx.data)
	}
	for _, s := range []string{
		miniupnpdReply,
		strings.Replace(miniupnpdReply, "max-age=120", "max-age = 1800", 1),
		"\r\n  " + crlf(miniupnpdReply),
		string(AppendNotify(nil, miniupnpdWant, NTSAlive, "")),
		string(AppendNotify(nil, miniupnpdWant, NTSByeBye, "")),
		string(AppendSearch(nil, STAll, 0, "192.0.2.1:1900")),
		"M-SEARCH * HTTP/1.1\nMAN: ssdp:discover\nMX: 5\nST: ssdp:all",
		"HTTP/1.1 200\nST: x\nLOCATION: http://[::1]:80/\n",
		"",
		"\x00",
	} {
		f.Add([]byte(s))
	}
}

// FuzzParseResponse checks that ParseResponse never panics and that what it
// accepts survives AppendResponse and a second parse unchanged.
func FuzzParseResponse(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseResponse(b)
		if err != nil {
			return
		}
		again, err := ParseResponse(AppendResponse(nil, r))
		if err != nil {
			t.Fatalf("ParseResponse(AppendResponse(%+v)): %v", r, err)
		}
		if again != r {
			t.Fatalf("round trip changed the response:\n%+v\n%+v", r, again)
		}
		alive, err := ParseResponse(AppendNotify(nil, r, NTSAlive, ""))
		if err != nil || alive != r {
			t.Fatalf("ParseResponse(AppendNotify(%+v)) = %+v, %v", r, alive, err)
		}
	})
}

// FuzzParseSearch checks that ParseSearch never panics and that a search it
// accepts survives AppendSearch and a second parse unchanged.
func FuzzParseSearch(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		st, mx, err := ParseSearch(b)
		if err != nil {
			return
		}
		st2, mx2, err := ParseSearch(AppendSearch(nil, st, mx, ""))
		if err != nil || st2 != st || mx2 != mx {
			t.Fatalf("ParseSearch(AppendSearch(%q, %d)) = %q, %d, %v", st, mx, st2, mx2, err)
		}
	})
}
