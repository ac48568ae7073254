package gateway_test

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/portfwd/portfwd/gateway"
	"github.com/portfwd/portfwd/gateway/clocktest"
)

// The router's own services on its external side (an SSH or web port
// listening on every address) are never handed to a client: Add is
// refused with ErrReservedPort (UPnP 729), AddAny moves to another port.
func TestRoutersOwnListeningPortsAreNeverMapped(t *testing.T) {
	var listening [2]gateway.PortSet
	listening[0].Add(22)
	listening[0].Add(8443)
	var asked []uint16
	c, err := gateway.New(ctx, gateway.Config{Backend: gateway.NewMemory(), Clock: clocktest.New(t0),
		PortInUse: func(p gateway.Protocol, port uint16) bool {
			asked = append(asked, port)
			if p == gateway.UDP {
				return listening[1].Contains(port)
			}
			return listening[0].Contains(port)
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx, false)
	a := upnp("192.168.1.10")
	_, err = c.Add(ctx, a, tcp(22, "192.168.1.10", 22))
	errIs(t, err, gateway.ErrReservedPort)
	got, err := c.AddAny(ctx, natpmp("192.168.1.10"), tcp(8443, "192.168.1.10", 8443))
	if err != nil || got.ExternalPort != 8444 {
		t.Errorf("AddAny from 8443 = %d, %v; want 8444", got.ExternalPort, err)
	}
	if _, err := c.Add(ctx, a, mapping(gateway.UDP, 22, "192.168.1.10", 22)); err != nil {
		t.Errorf("UDP 22 is free, yet: %v", err)
	}
	// A port of the table is never asked about: the relay backend itself
	// listens on the ports it maps, and a refresh must keep its port.
	asked = nil
	listening[0].Add(8444)
	if _, err := c.AddAny(ctx, natpmp("192.168.1.10"), tcp(8444, "192.168.1.10", 8443)); err != nil {
		t.Errorf("refreshing a held mapping: %v", err)
	}
	if _, err := c.Add(ctx, natpmp("192.168.1.10"), tcp(8444, "192.168.1.10", 8443)); err != nil {
		t.Errorf("updating a held mapping: %v", err)
	}
	if len(asked) != 0 {
		t.Errorf("ports of the table were probed: %v", asked)
	}
	// A long run of the router's own ports is skipped, boundedly.
	for p := 30000; p < 30100; p++ {
		listening[0].Add(uint16(p))
	}
	if got, err := c.AddAny(ctx, natpmp("192.168.1.10"), tcp(30000, "192.168.1.10", 30000)); err != nil || got.ExternalPort != 30100 {
		t.Errorf("AddAny over 100 of the router's ports = %d, %v; want 30100", got.ExternalPort, err)
	}
}

// Every change is in the audit trail: who, what, when, how it ended.
func TestAuditTrailRecordsEveryChange(t *testing.T) {
	trail := make(chan gateway.AuditRecord, 16)
	clock := clocktest.New(t0)
	c, err := gateway.New(ctx, gateway.Config{Backend: gateway.NewMemory(), Clock: clock,
		Audit: func(r gateway.AuditRecord) { trail <- r }})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx, false)
	a := upnp("192.168.1.10")
	m := tcp(5000, "192.168.1.10", 80)
	m.Description = "web <b>"
	m.Expires = clock.Now().Add(time.Hour)
	c.Add(ctx, a, m) // added
	c.Add(ctx, a, m) // renewed
	m.InternalPort = 81
	c.Add(ctx, a, m) // changed
	c.Delete(ctx, a, gateway.TCP, 5000, netip.Addr{})
	short := tcp(5001, "192.168.1.10", 80)
	short.Expires = clock.Now().Add(time.Minute)
	c.Add(ctx, natpmp("192.168.1.10"), short)
	clock.Advance(2 * time.Minute) // the expiry timer fires
	var recs []gateway.AuditRecord
	for len(recs) < 6 {
		select {
		case r := <-trail:
			recs = append(recs, r)
		case <-time.After(5 * time.Second):
			t.Fatalf("%d audit records, want 6: %+v", len(recs), recs)
		}
	}

	want := []struct {
		ev   gateway.AuditEvent
		port uint16
		via  string
	}{
		{gateway.AuditAdded, 5000, "UPnP"}, {gateway.AuditRenewed, 5000, "UPnP"}, {gateway.AuditChanged, 5000, "UPnP"},
		{gateway.AuditDeleted, 5000, "UPnP"}, {gateway.AuditAdded, 5001, "NAT-PMP"}, {gateway.AuditExpired, 5001, "NAT-PMP"},
	}
	for i, w := range want {
		r := recs[i]
		if r.Event != w.ev || r.ExternalPort != w.port || r.Via != w.via || r.Client != addr("192.168.1.10") ||
			r.Protocol != "TCP" || r.Result != "ok" || r.Time.IsZero() {
			t.Errorf("record %d = %+v, want %s of %d via %s by 192.168.1.10", i, r, w.ev, w.port, w.via)
		}
	}
	if recs[0].Description != "web <b>" || recs[0].LeaseSeconds != 3600 || recs[0].Internal.String() != "192.168.1.10:80" {
		t.Errorf("added record %+v", recs[0])
	}
	if recs[2].Internal.Port() != 81 || recs[2].Reason == "" {
		t.Errorf("changed record %+v: want the new internal port and what it was", recs[2])
	}
}

// A mapping restricted to a remote host of the other address family (a
// PCP FILTER naming an IPv6 peer on an IPv4 mapping) is malformed, and
// never reaches the backend.
func TestRemoteHostMustBeOfTheMappingsFamily(t *testing.T) {
	f := newFixture(t, gateway.Policy{})
	m := tcp(5000, "192.168.1.10", 80)
	m.RemoteHost = addr("2001:db8::1")
	_, err := f.core.Add(ctx, upnp("192.168.1.10"), m)
	errIs(t, err, gateway.ErrInvalidArgs)
	if f.mem.Calls().Add != 0 {
		t.Error("the backend was asked")
	}
}

// batchMemory is a Memory that also deletes in batches, counting them.
type batchMemory struct {
	*gateway.Memory
	batches int
}

func (b *batchMemory) DeleteBatch(ctx context.Context, rules []gateway.Rule) error {
	b.batches++
	for _, r := range rules {
		if err := b.Delete(ctx, r); err != nil {
			return err
		}
	}
	return nil
}

// Deleting thousands of a host's mappings at once (NAT-PMP's "delete all")
// goes by chunks, through the backend's batch delete, and deletes them
// all; the other hosts' mappings stay.
func TestDeleteAllForThousandsOfMappings(t *testing.T) {
	mem := &batchMemory{Memory: gateway.NewMemory()}
	c, err := gateway.New(ctx, gateway.Config{Backend: mem, Clock: clocktest.New(t0)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx, false)
	h := natpmp("192.168.1.10")
	for p := range 3000 {
		if _, err := c.Add(ctx, h, mapping(gateway.UDP, uint16(10000+p), "192.168.1.10", uint16(1+p))); err != nil {
			t.Fatal(err)
		}
	}
	c.Add(ctx, natpmp("192.168.1.11"), mapping(gateway.UDP, 9000, "192.168.1.11", 9000))
	c.Add(ctx, h, mapping(gateway.TCP, 9000, "192.168.1.10", 9000))
	n, err := c.DeleteAllFor(ctx, h, gateway.UDP)
	if err != nil || n != 3000 {
		t.Fatalf("DeleteAllFor = %d, %v; want 3000", n, err)
	}
	if c.Len() != 2 || mem.Len() != 2 {
		t.Errorf("%d mappings, %d rules left; want the other host's and the TCP one", c.Len(), mem.Len())
	}
	if mem.batches < 3000/512 || mem.batches > 3000/512+1 {
		t.Errorf("%d batches, want chunks of 512", mem.batches)
	}
}

// NAT-PMP and PCP find a host's mapping by its internal port through an
// index: the cost does not grow with what the host holds.
func BenchmarkFindByInternalWith5000Mappings(b *testing.B) {
	c, _ := gateway.New(ctx, gateway.Config{Backend: gateway.NewMemory(), Clock: clocktest.New(t0)})
	defer c.Close(ctx, false)
	h := natpmp("192.168.1.10")
	for p := range 5000 {
		c.Add(ctx, h, mapping(gateway.UDP, uint16(10000+p), "192.168.1.10", uint16(1+p)))
	}
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if _, ok := c.FindByInternal(h.Addr, gateway.UDP, uint16(1+i%5000)); !ok {
			b.Fatal("not found")
		}
	}
}

// AddAny on a crowded protocol skips taken ports by the word.
func BenchmarkAddAnyCrowded(b *testing.B) {
	c, _ := gateway.New(ctx, gateway.Config{Backend: gateway.NewMemory(), Clock: clocktest.New(t0)})
	defer c.Close(ctx, false)
	for p := 1024; p < 60000; p++ {
		c.Add(ctx, admin, mapping(gateway.UDP, uint16(p), "192.168.1.2", 1))
	}
	h := natpmp("192.168.1.10")
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		m, err := c.AddAny(ctx, h, mapping(gateway.UDP, 1024, "192.168.1.10", uint16(1+i%1000)))
		if err != nil {
			b.Fatal(err)
		}
		c.Delete(ctx, h, gateway.UDP, m.ExternalPort, netip.Addr{})
	}
}
