//go:build linux

package nft

import (
	"context"
	"fmt"
	"testing"

	"github.com/portfwd/portfwd/gateway"
)

// BenchmarkNftAdd measures one Add (a netlink batch with one element
// insert, committed within its sendmsg; txn.go) with 0, 1,000 and 10,000 mappings
// already installed. The cost should not depend on the size. The Delete
// that keeps the size constant is not timed.
func BenchmarkNftAdd(b *testing.B) {
	for _, size := range []int{0, 1000, 10000} {
		b.Run(fmt.Sprintf("size=%d", size), func(b *testing.B) {
			ns := newLab(b).ns()
			be := newBackend(b, ns, Config{ExternalInterfaces: []string{"wan0"}, Logger: quietLogger()})
			ctx := context.Background()
			for p := 1; p <= size; p++ {
				if err := be.Add(ctx, udpRule(uint16(p), lanHost, uint16(p))); err != nil {
					b.Fatal(err)
				}
			}
			r := tcpRule(40000, lanHost, 8080)
			b.ResetTimer()
			for range b.N {
				if err := be.Add(ctx, r); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				if err := be.Delete(ctx, r); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
		})
	}
}

// BenchmarkNftAddWatched is BenchmarkNftAdd (size 0) with and without
// WatchReloads following the ruleset: what the watch costs each Add (its
// goroutine receives and decodes every element change).
func BenchmarkNftAddWatched(b *testing.B) {
	for _, watched := range []bool{false, true} {
		b.Run(fmt.Sprintf("watched=%v", watched), func(b *testing.B) {
			ns := newLab(b).ns()
			be := newBackend(b, ns, Config{ExternalInterfaces: []string{"wan0"}, Logger: quietLogger()})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if watched {
				done := make(chan struct{})
				go func() { be.WatchReloads(ctx); close(done) }()
				defer func() { cancel(); <-done }()
			}
			r := tcpRule(40000, lanHost, 8080)
			for b.Loop() {
				if err := be.Add(ctx, r); err != nil {
					b.Fatal(err)
				}
				if err := be.Delete(ctx, r); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkNftAddDelete is the request path's pair: one mapping added and
// removed, a transaction each, as a NAT-PMP map and unmap make them.
func BenchmarkNftAddDelete(b *testing.B) {
	ns := newLab(b).ns()
	be := newBackend(b, ns, Config{ExternalInterfaces: []string{"wan0"}, Logger: quietLogger()})
	ctx := context.Background()
	r := tcpRule(40000, lanHost, 8080)
	b.ReportAllocs()
	for b.Loop() {
		if err := be.Add(ctx, r); err != nil {
			b.Fatal(err)
		}
		if err := be.Delete(ctx, r); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkNftAddBatch is a commit group's additions: 8 mappings in one
// transaction (per op: one batch of 8, and its removal).
func BenchmarkNftAddBatch(b *testing.B) {
	ns := newLab(b).ns()
	be := newBackend(b, ns, Config{ExternalInterfaces: []string{"wan0"}, Logger: quietLogger()})
	ctx := context.Background()
	var rules []gateway.Rule
	for i := range 8 {
		rules = append(rules, tcpRule(uint16(40000+i), lanHost, 8080))
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := be.AddBatch(ctx, rules); err != nil {
			b.Fatal(err)
		}
		if err := be.DeleteBatch(ctx, rules); err != nil {
			b.Fatal(err)
		}
	}
}
