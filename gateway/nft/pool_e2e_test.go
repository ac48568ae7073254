//go:build linux

package nft

import (
	"context"
	"net/netip"
	"testing"

	"github.com/portfwd/portfwd/gateway"
)

// TestPoolForwardingEndToEnd: with an external address pool, a rule on a
// pool address forwards traffic to that address only; the address-less
// maps (the gateway's own address's mappings) do not answer for pool
// addresses; the same port on two addresses is two mappings; and a
// restart keeps the pool map's elements.
func TestPoolForwardingEndToEnd(t *testing.T) {
	top := newTopology(t)
	const poolA, poolB = "203.0.113.10", "203.0.113.11"
	for _, a := range []string{poolA, poolB} {
		run(t, "ip", "-n", top.router.name, "addr", "add", a+"/32", "dev", "wan0")
	}
	// The wan host reaches the pool addresses on its link.
	run(t, "ip", "-n", top.wan.name, "route", "add", "203.0.113.8/30", "dev", "eth0")
	other := netip.MustParseAddr("10.88.0.3")
	run(t, "ip", "-n", top.lan.name, "addr", "add", other.String()+"/24", "dev", "eth0")
	top.lan.serveTCP(t, "tcp4", lanHost.String()+":8080")
	top.lan.serveTCP(t, "tcp4", other.String()+":8080")
	top.lan.serveUDP(t, lanHost.String()+":5353")
	cfg := Config{ExternalInterfaces: []string{"wan0"}, InternalInterfaces: []string{"lan0"},
		Pool: []netip.Addr{netip.MustParseAddr(poolA), netip.MustParseAddr(poolB)}}
	b := newBackend(t, top.router, cfg)
	if !b.SupportsPool() {
		t.Fatal("SupportsPool is false with a pool")
	}
	ctx := context.Background()

	onA := tcpRule(18080, lanHost, 8080)
	onA.ExternalAddr = netip.MustParseAddr(poolA)
	own := tcpRule(18080, other, 8080) // the same port on the gateway's own address
	udpA := udpRule(15353, lanHost, 5353)
	udpA.ExternalAddr = onA.ExternalAddr
	for _, r := range []gateway.Rule{onA, own, udpA} {
		if err := b.Add(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	check := func(t *testing.T) {
		t.Helper()
		if got, err := top.wan.dialTCP("tcp4", poolA+":18080"); err != nil || got != "hello "+wanHost {
			t.Fatalf("wan -> pool address %s: %q, %v", poolA, got, err)
		}
		if got, err := top.wan.pingUDP(poolA + ":15353"); err != nil || got != "pong "+wanHost {
			t.Fatalf("udp to pool address %s: %q, %v", poolA, got, err)
		}
		// The own address's mapping of the same port goes to its host.
		if _, err := top.wan.dialTCP("tcp4", routerWAN+":18080"); err != nil {
			t.Fatalf("wan -> own address: %v", err)
		}
		// Not to the other pool address: nothing is mapped there, and the
		// own address's mapping must not answer for it.
		if got, err := top.wan.dialTCP("tcp4", poolB+":18080"); err == nil {
			t.Fatalf("pool address %s without a mapping forwarded: %q", poolB, got)
		}
	}
	check(t)
	wantRules(t, b, own, onA, udpA)
	b.Close()
	b2 := newBackend(t, top.router, cfg)
	wantRules(t, b2, own, onA, udpA)
	check(t)
	if err := b2.DeleteBatch(ctx, []gateway.Rule{onA, own}); err != nil {
		t.Fatal(err)
	}
	if got, err := top.wan.dialTCP("tcp4", poolA+":18080"); err == nil {
		t.Fatalf("after delete, pool address forwarded: %q", got)
	}
	wantRules(t, b2, udpA)
}
