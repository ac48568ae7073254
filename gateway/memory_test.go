package gateway_test

import (
	"context"
	"errors"
	"testing"

	"github.com/portfwd/portfwd/gateway"
)

var _ gateway.Backend = (*gateway.Memory)(nil)

func TestMemoryBackend(t *testing.T) {
	var b gateway.Memory // the zero value works
	r1 := tcp(80, "192.168.1.10", 8080).Rule()
	r2 := mapping(gateway.UDP, 53, "192.168.1.11", 53).Rule()
	b.Add(ctx, r1)
	b.Add(ctx, r2)
	r1b := r1
	r1b.InternalPort = 8081
	b.Add(ctx, r1b) // replaces
	if got := b.Rules(); len(got) != 2 || got[0] != r1b || got[1] != r2 {
		t.Errorf("Rules = %v, want [%v %v]", got, r1b, r2)
	}
	b.Delete(ctx, r2)
	if err := b.Delete(ctx, r2); err != nil {
		t.Errorf("deleting an absent rule: %v", err)
	}
	if b.Len() != 1 {
		t.Errorf("Len = %d, want 1", b.Len())
	}

	boom := errors.New("boom")
	b.SetFault(func(op string, r gateway.Rule) error {
		if op == "add" && r.ExternalPort == 443 {
			return boom
		}
		return nil
	})
	if err := b.Add(ctx, tcp(443, "192.168.1.10", 443).Rule()); !errors.Is(err, boom) {
		t.Errorf("faulted Add = %v", err)
	}
	if err := b.Add(ctx, tcp(444, "192.168.1.10", 444).Rule()); err != nil {
		t.Errorf("Add outside the fault = %v", err)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if err := b.Add(cancelled, r2); !errors.Is(err, context.Canceled) {
		t.Errorf("Add with a cancelled context = %v", err)
	}
	b.Flush(ctx)
	if b.Len() != 0 {
		t.Errorf("Flush left %d rules", b.Len())
	}
	if c := b.Calls(); c.Add != 6 || c.Delete != 2 || c.Flush != 1 {
		t.Errorf("Calls = %+v", c)
	}
	b.Close()
	if !b.Closed() {
		t.Error("Closed = false after Close")
	}
}
