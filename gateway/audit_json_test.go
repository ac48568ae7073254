package gateway

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"testing"
	"time"
)

// AppendJSON is the audit trail's file format, so it must write exactly
// what json.Marshal writes, field for field and byte for byte.
func TestAuditRecordAppendJSONIsJSONMarshal(t *testing.T) {
	now := time.Date(2026, 12, 6, 16, 5, 4, 123456789, time.UTC)
	m := Mapping{Protocol: UDP, ExternalPort: 40000, InternalAddr: netip.MustParseAddr("192.168.1.20"), InternalPort: 8080,
		Description: "bench", Expires: now.Add(time.Hour), Enabled: true}
	req := Requester{Addr: netip.MustParseAddr("192.168.1.20"), Source: SourceNATPMP}
	records := []AuditRecord{
		{},
		{Time: now, Event: AuditAdded, Via: "admin", Result: "ok"},
		NewAuditRecord(now, AuditAdded, req, m),
		NewAuditRecord(now.In(time.FixedZone("X", 3600)), AuditRenewed, req, m),
		NewAuditRecord(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), AuditDeleted, Requester{Source: SourceAdmin}, Mapping{}),
		{Time: now, Event: AuditRefused, Via: "UPnP", Client: netip.MustParseAddr("fe80::1%lan0"), Protocol: "TCP",
			ExternalPort: 1, Internal: netip.MustParseAddrPort("[2001:db8::1]:80"), RemoteHost: netip.MustParseAddr("198.51.100.7"),
			Family: "ipv6", PinholeID: 7, RemotePort: 9, LeaseSeconds: 1, Description: "a \"quoted\" <b>&amp;</b> \\ \u2028 é \x00\x7f \xff",
			Action: "AddPortMapping", Result: "606 Action not authorized", Reason: "tab\there, newline\nthere"},
	}
	for _, r := range records {
		want, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		got, err := r.AppendJSON([]byte("prefix"))
		if err != nil {
			t.Fatalf("AppendJSON(%+v): %v", r, err)
		}
		if !bytes.Equal(got, append([]byte("prefix"), want...)) {
			t.Errorf("AppendJSON:\n got %s\nwant prefix%s", got, want)
		}
	}
	bad := AuditRecord{Time: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}
	if _, err := json.Marshal(bad); err == nil {
		t.Fatal("json.Marshal accepts the year 10000 now; AppendJSON must follow")
	}
	if got, err := bad.AppendJSON([]byte("x")); err == nil || string(got) != "x" {
		t.Errorf("AppendJSON of the year 10000 = %q, %v; want x unchanged and an error, as json.Marshal", got, err)
	}
}

func FuzzAuditRecordAppendJSON(f *testing.F) {
	f.Add("bench", "ok", "", int64(0), uint16(1))
	f.Add("<\u2028>", "é\xff", "\x00", int64(1<<40), uint16(0))
	f.Fuzz(func(t *testing.T, desc, result, reason string, nanos int64, port uint16) {
		r := AuditRecord{Time: time.Unix(0, nanos).UTC(), Event: AuditChanged, Via: "PCP", ExternalPort: port,
			Description: desc, Result: result, Reason: reason}
		want, werr := json.Marshal(r)
		got, gerr := r.AppendJSON(nil)
		if (werr == nil) != (gerr == nil) || (werr == nil && !bytes.Equal(got, want)) {
			t.Fatalf("AppendJSON = %s, %v; json.Marshal = %s, %v", got, gerr, want, werr)
		}
	})
}

// BenchmarkAuditRecordJSON is the audit trail's encoding of one change, as
// every add and delete makes it.
func BenchmarkAuditRecordJSON(b *testing.B) {
	now := time.Now()
	m := Mapping{Protocol: TCP, ExternalPort: 40000, InternalAddr: netip.MustParseAddr("192.168.1.20"), InternalPort: 8080,
		Description: "NAT-PMP", Expires: now.Add(time.Hour), Enabled: true}
	r := NewAuditRecord(now, AuditAdded, Requester{Addr: m.InternalAddr, Source: SourceNATPMP}, m)
	b.Run("AppendJSON", func(b *testing.B) {
		b.ReportAllocs()
		var buf []byte
		for b.Loop() {
			buf, _ = r.AppendJSON(buf[:0])
		}
	})
	b.Run("json.Marshal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			json.Marshal(r)
		}
	})
}
