package main

import (
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/portfwd/portfwd/internal/natlab"
	"github.com/portfwd/portfwd/natpmp"
)

// TestLabGatewayKill9DuringGroupCommits: 16 NAT-PMP clients, each from an
// address of its own, map ports as fast as they are answered, so that the
// gateway reads their requests in batches and commits each batch as one
// (one nft transaction, one journal write); it is killed with SIGKILL in
// the middle. After a restart every mapping that was acknowledged is back,
// on the port its client was given.
func TestLabGatewayKill9DuringGroupCommits(t *testing.T) {
	l, g := startUnlimitedGateway(t)
	const clients, each = 16, 100
	addLANAddrs(t, l, clients)
	server := ap(l.RouterLANIP, 5351)

	type acked struct {
		client   int
		internal uint16
		ext      uint16
	}
	var mu sync.Mutex
	var acks []acked
	var count atomic.Int64
	killAt := int64(clients * each / 3)
	var wg sync.WaitGroup
	for c := 1; c <= clients; c++ {
		wg.Go(func() {
			for j := range each {
				internal := uint16(20000 + c*each + j)
				reply := udpAsk(t, l, natlab.HostLAN, lanAddr(c), server, natpmpReq(natpmp.OpMapTCP, internal, internal, 3600), 300*time.Millisecond)
				if reply == nil {
					if count.Load() >= killAt {
						return // killed: nothing more is answered
					}
					continue
				}
				r, err := natpmp.ParseResponse(reply)
				if err != nil || r.Result != natpmp.Success {
					t.Errorf("client %d, port %d: %s", c, internal, natpmpAnswer(reply))
					continue
				}
				mu.Lock()
				acks = append(acks, acked{c, internal, r.ExternalPort})
				mu.Unlock()
				if count.Add(1) == killAt {
					syscall.Kill(g.proc.PID(), syscall.SIGKILL)
				}
			}
		})
	}
	wg.Wait()
	<-g.proc.Done()
	if int64(len(acks)) < killAt || len(acks) == clients*each {
		t.Fatalf("the kill did not happen in the middle of the maps (%d of %d acknowledged)", len(acks), clients*each)
	}
	t.Logf("killed with SIGKILL after %d acknowledged maps; %d acknowledged in all", killAt, len(acks))

	g.start(t)
	lost := 0
	for _, a := range acks {
		got, resp := soap(t, l, lanAddr(a.client), "GetSpecificPortMappingEntry", "NewRemoteHost", "", "NewExternalPort", strconv.Itoa(int(a.ext)), "NewProtocol", "TCP")
		if got != "200" || !holdsAll(resp, strconv.Itoa(int(a.internal)), lanAddr(a.client).String()) {
			lost++
			if lost <= 5 {
				t.Errorf("acknowledged mapping of %v:%d on port %d is gone or changed after the restart: %s", lanAddr(a.client), a.internal, a.ext, got)
			}
		}
	}
	t.Logf("after the restart: %d of %d acknowledged leases lost", lost, len(acks))
	g.stop(t)
}

// holdsAll reports whether s contains every one of subs.
func holdsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}
