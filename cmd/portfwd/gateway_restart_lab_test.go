package main

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/portfwd/portfwd/internal/natlab"
)

// TestLabGatewayKill9With1000Leases: kill -9 the gateway with 1,000 live
// leases and a few short ones, restart it: every long lease is back in the
// table and carries traffic from the WAN host, none is lost, and the short
// ones that ran out while it was down are gone.
func TestLabGatewayKill9With1000Leases(t *testing.T) {
	// One host makes all 1,005 mappings: no per-client quota.
	l, g := startUnlimitedGateway(t)
	l.ServeTCP(t, natlab.HostLAN, ap(l.LANIP, 8080), "lan")
	loadgen := natlab.GoBuild(t, "github.com/portfwd/portfwd/bench/loadgen")
	control := fmt.Sprintf("http://%s:5000/ctl/IPConn", l.RouterLANIP)
	const n, base = 1000, 40000
	lanRun(t, l, loadgen, "-upnp", control, "-client", l.LANIP.String(), "-n", strconv.Itoa(n), "-base", strconv.Itoa(base), "-phases", "soap-grow")
	// Five leases of 3 s: they expire while the gateway is down. Made
	// through the known description URL, not SSDP, so that they are all
	// still alive when counted, even on a loaded machine.
	desc := fmt.Sprintf("http://%s:5000/rootDesc.xml", l.RouterLANIP)
	for i := range 5 {
		ok(t, l, "add", "8080", "--external", strconv.Itoa(30000+i), "--lease", "3s", "--gateway", desc, "--protocol", "upnp")
	}
	listed := func() int {
		out := lanRun(t, l, loadgen, "-upnp", control, "-phases", "soap-list")
		var p struct{ Entries int }
		decodeInto(t, out, &p)
		return p.Entries
	}
	if got := listed(); got != n+5 {
		t.Fatalf("before the kill the gateway lists %d mappings, want %d", got, n+5)
	}

	syscall.Kill(g.proc.PID(), syscall.SIGKILL)
	<-g.proc.Done()
	time.Sleep(3500 * time.Millisecond) // the short leases run out meanwhile
	began := time.Now()
	g.start(t)
	t.Logf("restart with %d leases: serving after %v", n, time.Since(began).Round(time.Millisecond))

	if got := listed(); got != n {
		t.Errorf("after the restart the gateway lists %d mappings, want %d (the 5 expired ones gone)", got, n)
	}
	// Every one of the 1,000 carries a real connection from the WAN host.
	failed := 0
	for i := range n {
		if _, reached := reachTCP(t, l, uint16(base+i), 2*time.Second); !reached {
			failed++
			if failed <= 5 {
				t.Errorf("port %d does not forward after the restart", base+i)
			}
		}
	}
	if failed > 0 {
		t.Fatalf("%d of %d restored mappings do not forward", failed, n)
	}
	for i := range 5 {
		if _, reached := reachTCP(t, l, uint16(30000+i), mustFail); reached {
			t.Errorf("expired lease %d still forwards after the restart", 30000+i)
		}
	}
}

// decodeInto parses the first JSON line of out into v.
func decodeInto(t *testing.T, out string, v any) {
	t.Helper()
	line, _, _ := strings.Cut(strings.TrimSpace(out), "\n")
	if err := json.Unmarshal([]byte(line), v); err != nil {
		t.Fatalf("bad JSON %q: %v", line, err)
	}
}
