package reach

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestNewToken(t *testing.T) {
	a, err := NewToken()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := NewToken()
	if !validToken(a) || !validToken(b) || a == b {
		t.Errorf("tokens %q, %q: want two different valid tokens", a, b)
	}
}

func TestLines(t *testing.T) {
	p, r := string(probeLine(testToken)), string(replyLine(testToken))
	if p != "portfwd-reach/1 probe "+testToken+"\n" || r != "portfwd-reach/1 reply "+testToken+"\n" {
		t.Errorf("probe %q reply %q", p, r)
	}
	if len(p) != len(r) {
		t.Errorf("probe and reply differ in length: the TCP side reads len(reply) bytes")
	}
}

func TestDecodeRequest(t *testing.T) {
	tests := []struct {
		body string
		want CheckRequest
		err  string
	}{
		{body: `{"protocol":"udp","port":1,"token":"` + testToken + `"}`, want: CheckRequest{UDP, 1, testToken}},
		{body: `{"protocol":"tcp","port":65535,"token":"` + testToken + `","address":"192.0.2.1:22"}`, want: CheckRequest{TCP, 65535, testToken}},
		{body: `{"protocol":"tcp","port":65536,"token":"` + testToken + `"}`, err: "not a check request"},
		{body: `{"protocol":"tcp","port":-1,"token":"` + testToken + `"}`, err: "not a check request"},
		{body: `{"protocol":"tcp","port":"80","token":"` + testToken + `"}`, err: "not a check request"},
		{body: `{"protocol":"tcp","port":80,"token":"` + testToken + `"} x`, err: "more than one"},
		{body: `{"protocol":"tcp","port":80,"token":"` + testToken[:31] + `g"}`, err: "token"},
		{body: ``, err: "not a check request"},
		{body: `null`, err: "protocol"},
	}
	for _, tt := range tests {
		got, err := decodeRequest([]byte(tt.body))
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("decodeRequest(%s): %v, want an error with %q", tt.body, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("decodeRequest(%s) = %+v, %v; want %+v", tt.body, got, err, tt.want)
		}
	}
}

func TestDecodeResponse(t *testing.T) {
	tests := []struct {
		body string
		ok   bool
	}{
		{`{"address":"203.0.113.1:18080","reachable":true,"answered":true,"rtt_ms":1.5}`, true},
		{`{"address":"203.0.113.1:18080","reachable":false,"answered":false,"code":"refused"}`, true},
		{`{"address":"[2001:db8::1]:18080","reachable":false,"code":"timeout"}`, true},
		{`{"address":"203.0.113.1","reachable":true,"answered":true}`, false},
		{`{"address":"203.0.113.1:1","reachable":true,"answered":false}`, false},
		{`{"address":"203.0.113.1:1","reachable":false}`, false},
		{`{"address":"203.0.113.1:1","reachable":true,"answered":true,"rtt_ms":-1}`, false},
		{`<html>`, false},
	}
	for _, tt := range tests {
		_, _, err := decodeResponse([]byte(tt.body))
		if (err == nil) != tt.ok {
			t.Errorf("decodeResponse(%s): %v, want ok %v", tt.body, err, tt.ok)
		}
	}
}

// FuzzDecodeRequest: no body panics the decoder, and an accepted request
// survives a round trip unchanged.
func FuzzDecodeRequest(f *testing.F) {
	f.Add([]byte(`{"protocol":"tcp","port":18080,"token":"` + testToken + `"}`))
	f.Add([]byte(`{"protocol":"udp","port":1,"token":"` + testToken + `","host":"192.0.2.1"}`))
	f.Add([]byte(`{"protocol":"tcp","port":70000}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeRequest(b)
		if err != nil {
			return
		}
		if r.validate() != nil {
			t.Fatalf("accepted an invalid request %+v", r)
		}
		again, _ := json.Marshal(r)
		r2, err := decodeRequest(again)
		if err != nil || r2 != r {
			t.Fatalf("round trip: %+v -> %s -> %+v, %v", r, again, r2, err)
		}
	})
}

// FuzzDecodeResponse: no answer from a probe server panics the client,
// and an accepted one is consistent.
func FuzzDecodeResponse(f *testing.F) {
	f.Add([]byte(`{"address":"203.0.113.1:18080","reachable":true,"answered":true,"rtt_ms":1.5}`))
	f.Add([]byte(`{"address":"[::ffff:203.0.113.1]:1","code":"refused"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, ap, err := decodeResponse(b)
		if err != nil {
			return
		}
		if !ap.IsValid() || ap.Addr().Is4In6() || (r.Reachable && !r.Answered) || (!r.Reachable && r.Code == "") {
			t.Fatalf("accepted %s as %+v %v", b, r, ap)
		}
	})
}
