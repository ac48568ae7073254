//go:build gatewayonly

package gateway_test

import (
	"context"
	"testing"
	"time"

	"github.com/portfwd/portfwd/gateway"
)

// The router build has no group commit: an operation under a commit
// group's context commits alone and returns, even while the group's other
// member never finishes (with group commit it would wait for it).
func TestRouterBuildCommitsAlone(t *testing.T) {
	f := newFixture(t, gateway.Policy{})
	g := gateway.NewCommitGroup(context.Background(), 2) // the other member never calls Done
	ctx := gateway.WithCommitGroup(context.Background(), g)
	before := f.store.saves
	done := make(chan error, 1)
	go func() {
		m := tcp(20000, "192.168.1.10", 8080)
		m.Expires = f.lease(time.Hour)
		_, err := f.core.AddAny(ctx, natpmp("192.168.1.10"), m)
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("an add under a commit group waited for the group in the router build")
	}
	if got := f.store.saves - before; got != 1 {
		t.Errorf("the add made %d store writes, want 1", got)
	}
	if f.core.Len() != 1 {
		t.Errorf("table holds %d mappings, want 1", f.core.Len())
	}
	f.checkConsistent()
}
