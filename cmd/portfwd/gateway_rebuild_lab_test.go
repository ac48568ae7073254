package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/portfwd/portfwd/internal/natlab"
)

// With [nft] rebuild_on_start, a gateway killed with -9 empties its maps
// when it starts again and serves at once, refilling them from the lease
// journal while it answers: every restored lease is listed, a new mapping
// can be made, and every restored lease forwards again once the refill is
// done.
func TestLabGatewayRebuildServesWhileRefilling(t *testing.T) {
	l := natlab.Start(t, natlab.Options{Router: natlab.RouterNone})
	g := &labGateway{l: l, args: gatewayArgsWithPolicy(t, l, "max_per_client = 0"), stateDir: filepath.Join(l.RunDir, "gw")}
	conf, err := os.OpenFile(filepath.Join(l.RunDir, "gateway.toml"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conf.WriteString("\n[nft]\nrebuild_on_start = true\n"); err != nil {
		t.Fatal(err)
	}
	conf.Close()
	g.start(t)
	l.ServeTCP(t, natlab.HostLAN, ap(l.LANIP, 8080), "lan")
	loadgen := natlab.GoBuild(t, "github.com/portfwd/portfwd/bench/loadgen")
	control := fmt.Sprintf("http://%s:5000/ctl/IPConn", l.RouterLANIP)
	const n, base = 1000, 41000
	lanRun(t, l, loadgen, "-upnp", control, "-client", l.LANIP.String(), "-n", strconv.Itoa(n), "-base", strconv.Itoa(base), "-phases", "soap-grow")

	syscall.Kill(g.proc.PID(), syscall.SIGKILL)
	<-g.proc.Done()
	g.start(t)

	out := lanRun(t, l, loadgen, "-upnp", control, "-phases", "soap-list")
	var listed struct{ Entries int }
	decodeInto(t, out, &listed)
	if listed.Entries != n {
		t.Fatalf("after the restart the gateway lists %d mappings, want %d", listed.Entries, n)
	}
	desc := fmt.Sprintf("http://%s:5000/rootDesc.xml", l.RouterLANIP)
	ok(t, l, "add", "8080", "--external", "30500", "--gateway", desc, "--protocol", "upnp")

	// The refill takes milliseconds for a thousand: wait for the last
	// restored lease to forward (bounded), then check them all.
	last := uint16(base + n - 1)
	for try := 0; ; try++ {
		if _, reached := reachTCP(t, l, last, 2*time.Second); reached {
			break
		}
		if try == 50 {
			t.Fatalf("port %d does not forward 10 s after the restart", last)
		}
		time.Sleep(200 * time.Millisecond) // the refill runs in the gateway; nothing to wait on from here
	}
	failed := 0
	for i := range n {
		if _, reached := reachTCP(t, l, uint16(base+i), 2*time.Second); !reached {
			failed++
			if failed <= 5 {
				t.Errorf("port %d does not forward after the refill", base+i)
			}
		}
	}
	if failed > 0 {
		t.Fatalf("%d of %d restored mappings do not forward", failed, n)
	}
	if _, reached := reachTCP(t, l, 30500, 2*time.Second); !reached {
		t.Error("the mapping made during the refill does not forward")
	}
}
