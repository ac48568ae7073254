//go:build linux

package nft

import (
	"context"
	"errors"
	"testing"

	"github.com/portfwd/portfwd/gateway"
	"golang.org/x/sys/unix"
)

// AddBatch is one transaction: every rule lands, replacing what its key
// held, or, when the kernel refuses any part, none does.
func TestAddBatchAllOrNothing(t *testing.T) {
	ns := newLab(t).ns()
	b := newBackend(t, ns, Config{ExternalInterfaces: []string{"wan0"}})
	ctx := context.Background()

	old := tcpRule(18080, lanHost, 8080)
	if err := b.Add(ctx, old); err != nil {
		t.Fatal(err)
	}
	web := tcpRule(18080, lanHost2, 8081) // replaces old
	dns := udpRule(5353, lanHost, 53)
	dns.RemoteHost = remote
	game := udpRule(27015, lanHost2, 27015)
	if err := b.AddBatch(ctx, []gateway.Rule{web, dns, game}); err != nil {
		t.Fatalf("AddBatch: %v", err)
	}
	wantElements(t, ns, mapFwd, "tcp . 18080 : 10.88.0.3 . 8081", "udp . 27015 : 10.88.0.3 . 27015")
	wantElements(t, ns, mapFwdSrc, "203.0.113.7 . udp . 5353 : 10.88.0.2 . 53")

	// The element web replaces vanishes behind our back: its deletion
	// fails, and with it the whole batch.
	ns.nft(t, "delete", "element", "inet", DefaultTable, mapFwd, "{ tcp . 18080 }")
	other := tcpRule(18080, lanHost, 81)
	more := tcpRule(18081, lanHost, 82)
	err := b.AddBatch(ctx, []gateway.Rule{more, other})
	if !errors.Is(err, unix.ENOENT) {
		t.Fatalf("AddBatch over a vanished element = %v, want ENOENT", err)
	}
	wantElements(t, ns, mapFwd, "udp . 27015 : 10.88.0.3 . 27015")
	// What the Core does then: one by one.
	for _, r := range []gateway.Rule{more, other} {
		if err := b.Add(ctx, r); err != nil {
			t.Fatalf("Add(%v): %v", r, err)
		}
	}
	wantRules(t, b, other, more, dns, game)
}

// The lean transaction reports the kernel's refusal of a message as that
// message's error, with nothing committed.
func TestElemTxnReportsErrors(t *testing.T) {
	ns := newLab(t).ns()
	b := newBackend(t, ns, Config{ExternalInterfaces: []string{"wan0"}})
	ctx := context.Background()
	if err := b.Add(ctx, tcpRule(1000, lanHost, 1000)); err != nil {
		t.Fatal(err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.queueAdd(tcpRule(1001, lanHost, 1001)); err != nil {
		t.Fatal(err)
	}
	if err := b.queueDelete(tcpRule(1002, lanHost, 1002)); err != nil { // not there
		t.Fatal(err)
	}
	if err := b.tx.Flush(); !errors.Is(err, unix.ENOENT) {
		t.Fatalf("Flush = %v, want ENOENT", err)
	}
	// The next transaction is not answered with the last one's error.
	if err := b.queueAdd(tcpRule(1003, lanHost, 1003)); err != nil {
		t.Fatal(err)
	}
	if err := b.tx.Flush(); err != nil {
		t.Fatalf("Flush after a failed one: %v", err)
	}
	wantElements(t, ns, mapFwd, "tcp . 1000 : 10.88.0.2 . 1000", "tcp . 1003 : 10.88.0.2 . 1003")
}
