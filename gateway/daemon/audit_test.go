package daemon

import (
	"bufio"
	"bytes"
	"encoding/json"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/portfwd/portfwd/gateway"
)

// The trail is JSON lines, rotated at its size bound, and read back at the
// next start for the admin page.
func TestAuditLogRotatesAndRemembers(t *testing.T) {
	dir := t.TempDir()
	a, err := openAuditLog(dir, AuditConfig{Enabled: true, MaxBytes: 2000, Keep: 2}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	m := gateway.Mapping{Protocol: gateway.TCP, ExternalPort: 5000, InternalAddr: netip.MustParseAddr("192.168.1.10"),
		InternalPort: 80, Description: `<script>alert("x")</script>`}
	req := gateway.Requester{Addr: netip.MustParseAddr("192.168.1.10"), Source: gateway.SourceUPnP}
	for i := range 100 {
		m.ExternalPort = uint16(5000 + i)
		a.Record(gateway.NewAuditRecord(time.Unix(1700000000+int64(i), 0), gateway.AuditAdded, req, m))
	}
	a.Close()
	var total int64
	for _, name := range []string{"audit.jsonl", "audit.jsonl.1", "audit.jsonl.2"} {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if st.Size() > 2000 {
			t.Errorf("%s is %d bytes, over the bound", name, st.Size())
		}
		total += st.Size()
	}
	if _, err := os.Stat(filepath.Join(dir, "audit.jsonl.3")); err == nil {
		t.Error("more rotated files than keep")
	}
	f, _ := os.Open(filepath.Join(dir, "audit.jsonl"))
	sc := bufio.NewScanner(f)
	var last map[string]any
	for sc.Scan() {
		last = nil
		if err := json.Unmarshal(sc.Bytes(), &last); err != nil {
			t.Fatalf("not a JSON line: %q", sc.Text())
		}
	}
	f.Close()
	for k, want := range map[string]any{"event": "added", "via": "UPnP", "client": "192.168.1.10", "protocol": "TCP",
		"external_port": float64(5099), "internal": "192.168.1.10:80", "result": "ok", "time": "2023-11-14T22:14:59Z"} {
		if last[k] != want {
			t.Errorf("last line %s = %v, want %v (%v)", k, last[k], want, last)
		}
	}

	b, err := openAuditLog(dir, AuditConfig{Enabled: true, MaxBytes: 2000, Keep: 2}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	recent := b.Recent()
	if len(recent) == 0 || recent[0].ExternalPort != 5099 || recent[0].Description != m.Description {
		t.Errorf("after a restart the newest record is %+v, want 5099's", recent)
	}
}

// A flood of refusals is recorded up to a bound, and the count of those
// left out goes with the next one recorded; changes are always recorded.
func TestAuditLogBoundsRefusals(t *testing.T) {
	dir := t.TempDir()
	a, err := openAuditLog(dir, AuditConfig{Enabled: true}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	now := time.Unix(1700000000, 0)
	req := gateway.Requester{Addr: netip.MustParseAddr("192.168.1.10"), Source: gateway.SourceUPnP}
	m := gateway.Mapping{Protocol: gateway.TCP, ExternalPort: 22}
	for range 2000 {
		a.Record(gateway.NewAuditRecord(now, gateway.AuditRefused, req, m))
	}
	a.Record(gateway.NewAuditRecord(now, gateway.AuditAdded, req, m))
	a.flush()
	b, _ := os.ReadFile(filepath.Join(dir, auditFile))
	if n := bytes.Count(b, []byte("\n")); n != auditRefusalBurst+1 {
		t.Errorf("%d records written of a flood of 2,000 refusals and one change, want the burst of %d and the change", n, auditRefusalBurst)
	}
	if r := a.Recent()[0]; r.Event != gateway.AuditAdded {
		t.Errorf("the change was not recorded after the flood: %+v", r)
	}
	a.Record(gateway.NewAuditRecord(now.Add(time.Second), gateway.AuditRefused, req, m))
	if r := a.Recent()[0]; !strings.Contains(r.Reason, "1500 refusals before this one were not recorded") {
		t.Errorf("the next refusal recorded says %q", r.Reason)
	}
}

// TestAuditRecordReadsBackAsWritten: every field of a record the trail
// writes (json.Marshal) reads back (parseAuditRecord, without encoding/json's
// decoder) as json.Unmarshal would read it.
func TestAuditRecordReadsBackAsWritten(t *testing.T) {
	for _, r := range []gateway.AuditRecord{
		{Time: time.Date(2026, 12, 6, 16, 0, 0, 5, time.UTC), Event: gateway.AuditRefused, Via: "UPnP",
			Client: netip.MustParseAddr("10.0.0.5"), Protocol: "TCP", ExternalPort: 65535,
			Internal: netip.MustParseAddrPort("10.0.0.5:8080"), RemoteHost: netip.MustParseAddr("192.0.2.9"),
			Family: "ipv6", PinholeID: 7, RemotePort: 443, LeaseSeconds: 604800,
			Description: "caf\u00e9 <b>\"x\"</b>\n", Action: "AddPortMapping", Result: "606 Action not authorized", Reason: "secure mode"},
		{Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Event: gateway.AuditAdded, Via: "admin", Result: "ok"},
	} {
		line, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		var want gateway.AuditRecord
		if err := json.Unmarshal(line, &want); err != nil {
			t.Fatal(err)
		}
		got, err := parseAuditRecord(line)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("%s:\n got %+v (%v)\nwant %+v", line, got, err, want)
		}
	}
}

// Records reach the file by themselves, within auditFlushDelay and
// several in one write, without waiting for Close.
func TestAuditLogWritesSoon(t *testing.T) {
	dir := t.TempDir()
	a, err := openAuditLog(dir, AuditConfig{Enabled: true}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	req := gateway.Requester{Addr: netip.MustParseAddr("192.168.1.10"), Source: gateway.SourceNATPMP}
	for i := range 10 {
		m := gateway.Mapping{Protocol: gateway.UDP, ExternalPort: uint16(4000 + i)}
		a.Record(gateway.NewAuditRecord(time.Unix(1700000000, 0), gateway.AuditAdded, req, m))
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, _ := os.ReadFile(filepath.Join(dir, auditFile))
		if n := bytes.Count(b, []byte("\n")); n == 10 {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("%d of 10 records written after 5 s", n)
		}
		time.Sleep(time.Millisecond)
	}
}
