package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/portfwd/portfwd/internal/natlab"
	"github.com/portfwd/portfwd/pcp"
	"github.com/portfwd/portfwd/portmap"
)

// These tests prove, through the portfwd binary on the lab's LAN host and
// against miniupnpd, that the client tells the truth (issue 9): what it
// prints is what the router holds, checked with traffic from the WAN host
// wherever a port's state is claimed.

// labMapping is a mapping as --json prints it.
type labMapping struct {
	Protocol       string `json:"protocol"`
	ExternalPort   int    `json:"external_port"`
	InternalClient string `json:"internal_client"`
	InternalPort   int    `json:"internal_port"`
	Enabled        bool   `json:"enabled"`
	Description    string `json:"description"`
	Permanent      bool   `json:"permanent"`
	LeaseSeconds   int    `json:"lease_seconds"`
	ReadBack       bool   `json:"read_back"`
	Note           string `json:"note"`
	Method         string `json:"method"`
}

func listJSON(t *testing.T, l *natlab.Lab, args ...string) []labMapping {
	t.Helper()
	return decode[struct {
		Mappings []labMapping `json:"mappings"`
	}](t, ok(t, l, append([]string{"list", "--json"}, args...)...).stdout).Mappings
}

// refused runs portfwd and requires exit 3 with each of wants in stderr.
func refused(t *testing.T, l *natlab.Lab, wants []string, args ...string) result {
	t.Helper()
	r := pf(t, l, natlab.HostLAN, args...)
	if r.code != exitRefused {
		t.Fatalf("portfwd %s: want exit 3 (refused): %v", strings.Join(args, " "), r)
	}
	contains(t, "portfwd "+strings.Join(args, " "), r.stderr, wants...)
	return r
}

// reachesLAN requires that the WAN host's connection to the router's port
// reaches the LAN server that answers want.
func reachesLAN(t *testing.T, l *natlab.Lab, port uint16, want string) {
	t.Helper()
	if got, reached := reachTCP(t, l, port, mustWork); !reached || got != want {
		t.Fatalf("WAN -> %s:%d: got %q (reached %v), want %q", l.RouterWANIP, port, got, reached, want)
	}
}

func unreachable(t *testing.T, l *natlab.Lab, port uint16) {
	t.Helper()
	if got, reached := reachTCP(t, l, port, mustFail); reached {
		t.Fatalf("WAN -> %s:%d reached %q; want no forward", l.RouterWANIP, port, got)
	}
}

// TestLabNoSilentReplace (points 2 and 3): add and edit never replace a
// mapping unless --replace; keep does not take over a port this host maps
// to another internal port; add reports the lease miniupnpd granted; edit
// --enabled=false, which miniupnpd ignores, fails and says the port is
// still open, which traffic confirms.
func TestLabNoSilentReplace(t *testing.T) {
	l := natlab.Start(t, natlab.Options{})
	lan := l.LANIP.String()
	l.ServeTCP(t, natlab.HostLAN, ap(l.LANIP, 8080), "lan-8080")
	l.ServeTCP(t, natlab.HostLAN, ap(l.LANIP, 8081), "lan-8081")

	// add: what the router holds, read back. miniupnpd's IGDv2 turns a
	// permanent request into 604800 s; --json says so, not "permanent".
	added := decode[struct {
		Mappings []labMapping `json:"mappings"`
	}](t, ok(t, l, "add", "8080", "--external", "18085", "--desc", "first", "--json").stdout).Mappings
	if len(added) != 1 || added[0].Permanent || added[0].LeaseSeconds < 604790 || added[0].LeaseSeconds > 604800 ||
		!added[0].ReadBack || !strings.Contains(added[0].Note, "asked for a permanent mapping") {
		t.Errorf("add --json: %+v, want the 604800 s lease granted, read back, with a note", added)
	}
	if got := listJSON(t, l); len(got) != 1 || got[0].LeaseSeconds > added[0].LeaseSeconds || got[0].Permanent {
		t.Errorf("list after add: %+v; add must have said what list says", got)
	}
	reachesLAN(t, l, 18085, "lan-8080")

	// add onto it: refused, naming "first"; the forward is unchanged.
	refused(t, l, []string{lan + `:8080 ("first")`, "--replace"}, "add", "8081", "--external", "18085", "--desc", "second")
	refused(t, l, []string{`("first")`}, "add", "8080", "--external", "18085", "--desc", "second")
	reachesLAN(t, l, 18085, "lan-8080")
	// --replace does what it says.
	r := ok(t, l, "add", "8081", "--external", "18085", "--desc", "second", "--replace")
	contains(t, "add --replace", r.stdout, l.RouterWANIP.String()+":18085/TCP -> "+lan+":8081", "as the router holds it")
	reachesLAN(t, l, 18085, "lan-8081")

	// edit onto an existing port: refused, both mappings intact.
	ok(t, l, "add", "8080", "--external", "18086", "--desc", "at 18086")
	refused(t, l, []string{lan + `:8081 ("second")`}, "edit", "18086/tcp", "--external", "18085")
	reachesLAN(t, l, 18085, "lan-8081")
	reachesLAN(t, l, 18086, "lan-8080")

	// edit --enabled=false: miniupnpd accepts and ignores it. portfwd says
	// so, exits 3, and never prints enabled=no; the port is still open.
	r = refused(t, l, []string{"enabled=no", "holds enabled=yes", "still open"}, "edit", "18086/tcp", "--enabled=false")
	if strings.Contains(r.stdout, "enabled=no") {
		t.Errorf("edit printed enabled=no for a port still open:\n%s", r.stdout)
	}
	reachesLAN(t, l, 18086, "lan-8080")

	// keep on a port this host maps to another internal port: it gives up
	// at once (exit 3) and the mapping there keeps forwarding.
	r = refused(t, l, []string{"18085/TCP is already mapped to " + lan + ":8081"}, "keep", "8080", "--external", "18085", "--no-cache")
	contains(t, "keep's output", r.stdout, "giving up")
	reachesLAN(t, l, 18085, "lan-8081")
	if got := listJSON(t, l); len(got) != 2 {
		t.Errorf("router table after the refused keep: %+v", got)
	}
}

// TestLabSecureModeExplained (point 4): miniupnpd in secure mode answers
// 718 to a mapping for another host although nothing holds the port.
// portfwd checks, and explains secure mode instead of a conflict.
func TestLabSecureModeExplained(t *testing.T) {
	l := natlab.Start(t, natlab.Options{})
	r := refused(t, l, []string{"secure mode", "10.77.0.9", "this host is " + l.LANIP.String()},
		"add", "8080", "--external", "18090", "--client", "10.77.0.9")
	if strings.Contains(r.stderr, "already mapped") {
		t.Errorf("the refusal blames a conflict: %s", r.stderr)
	}
	if got := listJSON(t, l); len(got) != 0 {
		t.Errorf("router table: %+v", got)
	}
	unreachable(t, l, 18090)
}

// TestLabDeleteRangeCounts (point 5): delete --range says how many it
// really removed (not -1), lists them, and only those stop forwarding.
func TestLabDeleteRangeCounts(t *testing.T) {
	l := natlab.Start(t, natlab.Options{})
	l.ServeTCP(t, natlab.HostLAN, ap(l.LANIP, 8080), "lan-8080")
	for _, p := range []string{"18100", "18101", "18102"} {
		ok(t, l, "add", "8080", "--external", p, "--desc", "r"+p)
	}
	j := decode[struct {
		Deleted []struct {
			Protocol     string `json:"protocol"`
			ExternalPort int    `json:"external_port"`
		} `json:"deleted"`
		Count int `json:"count"`
	}](t, ok(t, l, "delete", "--range", "18100-18101", "--proto", "tcp", "--json").stdout)
	if j.Count != 2 || len(j.Deleted) != 2 || j.Deleted[0].ExternalPort != 18100 && j.Deleted[1].ExternalPort != 18100 {
		t.Errorf("delete --range --json: %+v, want the two removed", j)
	}
	unreachable(t, l, 18100)
	unreachable(t, l, 18101)
	reachesLAN(t, l, 18102, "lan-8080")
	// The text form lists each, and an empty range removes none.
	ok(t, l, "add", "8080", "--external", "18100", "--desc", "again")
	r := ok(t, l, "delete", "--range", "18099-18101")
	contains(t, "delete --range", r.stdout, "deleted 18100/TCP -> "+l.LANIP.String()+`:8080 "again"`, "deleted 1 TCP mapping(s) in 18099-18101")
	r = ok(t, l, "delete", "--range", "18200-18300")
	contains(t, "empty range", r.stdout, "deleted 0 TCP mapping(s)")
	if strings.Contains(r.stdout, "deleted -1") {
		t.Errorf("a count of -1: %s", r.stdout)
	}
}

// keepEvent is a line of `portfwd keep --json`.
type keepEvent struct {
	Event   string     `json:"event"`
	Reason  string     `json:"reason"`
	Mapping labMapping `json:"mapping"`
}

func keepEvents(t *testing.T, p *natlab.Process) []keepEvent {
	t.Helper()
	var out []keepEvent
	for _, line := range strings.Split(p.Output(), "\n") {
		if !strings.HasPrefix(line, "{") {
			continue
		}
		var e keepEvent
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("keep printed a broken JSON line (%v): %s", err, line)
		}
		out = append(out, e)
	}
	return out
}

// waitKeep waits, at most d, until keep printed n events of kind, and
// returns all its events.
func waitKeep(t *testing.T, p *natlab.Process, kind string, n int, d time.Duration) []keepEvent {
	t.Helper()
	var evs []keepEvent
	if !waitFor(d, func() bool {
		evs = keepEvents(t, p)
		c := 0
		for _, e := range evs {
			if e.Event == kind {
				c++
			}
		}
		return c >= n
	}) {
		t.Fatalf("keep printed fewer than %d %q events within %v; its output:\n%s", n, kind, d, p.Output())
	}
	return evs
}

// TestLabKeepRenewsTheGrantedPort (point 6): the port asked for is held
// (by this host, to another internal port), and keep may take any: it gets
// another, and every renewal renews that one. After several renewals the
// router holds exactly two mappings, over UPnP and over NAT-PMP alike.
func TestLabKeepRenewsTheGrantedPort(t *testing.T) {
	l := natlab.Start(t, natlab.Options{})
	l.ServeTCP(t, natlab.HostLAN, ap(l.LANIP, 8080), "kept")
	l.ServeTCP(t, natlab.HostLAN, ap(l.LANIP, 8081), "held")
	ok(t, l, "add", "8081", "--external", "18080", "--desc", "held")
	for _, proto := range []string{"upnp", "natpmp"} {
		t.Run(proto, func(t *testing.T) {
			keep := l.Start(t, natlab.HostLAN, portfwdBinary(t), "keep", "8080", "--external", "18080", "--any",
				"--lease", "4s", "--check-interval", "1s", "--json", "--no-cache", "--protocol", proto)
			evs := waitKeep(t, keep, "renewed", 4, 20*time.Second)
			port := 0
			for _, e := range evs {
				switch e.Event {
				case "mapped":
					port = e.Mapping.ExternalPort
				case "renewed":
					if e.Mapping.ExternalPort != port {
						t.Errorf("renewed port %d, mapped %d", e.Mapping.ExternalPort, port)
					}
				case "recreated", "lost", "error":
					t.Errorf("unexpected %s: %s", e.Event, e.Reason)
				}
			}
			if port == 0 || port == 18080 {
				t.Fatalf("keep mapped port %d; want another than the held 18080:\n%s", port, keep.Output())
			}
			t.Logf("%s: %d renewals of port %d", proto, len(evs)-1, port)
			if got := listJSON(t, l, "--protocol", "upnp"); len(got) != 2 {
				t.Errorf("after the renewals the router holds %d mappings, want 2 (held and kept): %+v", len(got), got)
			}
			reachesLAN(t, l, uint16(port), "kept")
			reachesLAN(t, l, 18080, "held")
			keep.Stop()
			unreachable(t, l, uint16(port))
			reachesLAN(t, l, 18080, "held")
		})
	}
}

// TestLabKeepGivesUpOnPermanentRefusal (point 6): miniupnpd refuses
// external port 80 (its allow rule covers 1024-65535) with 606. keep stops
// at once with exit 3 instead of retrying forever.
func TestLabKeepGivesUpOnPermanentRefusal(t *testing.T) {
	l := natlab.Start(t, natlab.Options{})
	start := time.Now()
	r := refused(t, l, []string{"606"}, "keep", "8080", "--external", "80", "--no-cache")
	contains(t, "keep's output", r.stdout, "giving up")
	t.Logf("keep gave up after %v", time.Since(start).Round(time.Millisecond))
}

// TestLabKeepDeletesCrashedLeftovers (points 6 and 8): a keep killed with
// SIGKILL leaves its mapping; the next keep deletes it, and says so.
func TestLabKeepDeletesCrashedLeftovers(t *testing.T) {
	l := natlab.Start(t, natlab.Options{})
	l.ServeTCP(t, natlab.HostLAN, ap(l.LANIP, 8080), "kept")
	first := l.Start(t, natlab.HostLAN, portfwdBinary(t), "keep", "8080", "--external", "18095", "--json", "--no-cache")
	waitKeep(t, first, "mapped", 1, 10*time.Second)
	reachesLAN(t, l, 18095, "kept")
	syscall.Kill(first.PID(), syscall.SIGKILL)
	<-first.Done()
	reachesLAN(t, l, 18095, "kept") // left behind
	second := l.Start(t, natlab.HostLAN, portfwdBinary(t), "keep", "8080", "--external", "18096", "--json", "--no-cache")
	evs := waitKeep(t, second, "mapped", 1, 10*time.Second)
	if evs[0].Event != "leftover_deleted" || evs[0].Mapping.ExternalPort != 18095 || !strings.Contains(evs[0].Reason, fmt.Sprint(first.PID())) {
		t.Errorf("the second keep's first event: %+v", evs[0])
	}
	unreachable(t, l, 18095)
	reachesLAN(t, l, 18096, "kept")
	second.Stop()
	if got := listJSON(t, l); len(got) != 0 {
		t.Errorf("left on the router: %+v", got)
	}
}

// TestLabStateEightProcesses (point 8): eight portfwd processes add a
// NAT-PMP mapping each at once, on one state directory. Every mapping is
// remembered: later processes delete each by its external port (NAT-PMP
// deletes by internal port, which only the record knows).
func TestLabStateEightProcesses(t *testing.T) {
	l := natlab.Start(t, natlab.Options{})
	var wg sync.WaitGroup
	results := make([]result, 8)
	for i := range 8 {
		l.ServeTCP(t, natlab.HostLAN, ap(l.LANIP, uint16(9200+i)), fmt.Sprint("p", i))
		wg.Go(func() {
			results[i] = pf(t, l, natlab.HostLAN, "add", fmt.Sprint(9200+i), "--external", fmt.Sprint(19200+i), "--protocol", "natpmp", "--lease", "10m")
		})
	}
	wg.Wait()
	for i, r := range results {
		if r.code != 0 {
			t.Fatalf("process %d: %v", i, r)
		}
	}
	recs, err := portmap.Remembered(filepath.Join(l.RunDir, "portfwd-state"))
	if err != nil || len(recs) != 8 {
		t.Fatalf("%d records after 8 concurrent adds (%v): %+v", len(recs), err, recs)
	}
	reachesLAN(t, l, 19203, "p3")
	for i := range 8 {
		ok(t, l, "delete", fmt.Sprint(19200+i, "/tcp"), "--protocol", "natpmp")
	}
	unreachable(t, l, 19203)
	if recs, _ := portmap.Remembered(filepath.Join(l.RunDir, "portfwd-state")); len(recs) != 0 {
		t.Errorf("records left: %+v", recs)
	}
	// forget drops a record and nothing else.
	ok(t, l, "add", "9200", "--external", "19200", "--protocol", "natpmp", "--lease", "10m")
	r := ok(t, l, "forget", "19200/tcp")
	contains(t, "forget", r.stdout, "forgot 19200/TCP via NAT-PMP", "1 record(s) forgotten, 0 kept")
	reachesLAN(t, l, 19200, "p0")
}

// TestLabAddressFailureKept (point 1): miniupnpd without a usable external
// address (no STUN on a TEST-NET WAN) answers GetExternalIPAddress with an
// empty address, and fails mappings with 501. portfwd keeps the gateway:
// info shows the description and the problem, list works, add is tried
// and the router's refusal shown.
func TestLabAddressFailureKept(t *testing.T) {
	l := natlab.Start(t, natlab.Options{MiniupnpdConf: func(c *natlab.Conf) { c.PerformSTUN = false }})
	gw := []string{"--gateway", l.MiniupnpdURL(), "--protocol", "upnp"}
	r := ok(t, l, append([]string{"info"}, gw...)...)
	contains(t, "info", r.stdout, l.Conf.FriendlyName, "Status:", "not connected", "Problem:", "GetExternalIPAddress", "Services:")
	r = ok(t, l, "discover", "--protocol", "upnp")
	contains(t, "discover", r.stdout, "UPnP", "not connected", "problem:")
	ok(t, l, append([]string{"list"}, gw...)...)
	r = refused(t, l, []string{"501"}, append([]string{"add", "8080", "--external", "18080"}, gw...)...)
	t.Logf("add on the unconnected router: %s", strings.TrimSpace(r.stderr))
	// NAT-PMP answers result 3 (network failure): kept too.
	r = ok(t, l, "discover", "--protocol", "natpmp")
	contains(t, "discover natpmp", r.stdout, "NAT-PMP", "not connected", "problem:")
}

// TestLabKeepAndWatchSeeOnePCPRestart (point 9): keep and watch over PCP
// judge miniupnpd's epoch with the same rule: when it restarts, watch
// reports it once, keep notices and makes the mapping again, which the
// WAN host reaches.
func TestLabKeepAndWatchSeeOnePCPRestart(t *testing.T) {
	l := natlab.Start(t, natlab.Options{MiniupnpdConf: daemonUptime})
	l.ServeTCP(t, natlab.HostLAN, ap(l.LANIP, 8080), "kept")
	keep := l.Start(t, natlab.HostLAN, portfwdBinary(t), "keep", "8080", "--external", "18097", "--protocol", "pcp",
		"--json", "--check-interval", "500ms", "--no-cache", "--state-dir", filepath.Join(l.RunDir, "keep-state"))
	w := l.Start(t, natlab.HostLAN, portfwdBinary(t), "watch", "--json", "--interval", "500ms", "--protocol", "pcp",
		"--no-cache", "--state-dir", filepath.Join(l.RunDir, "watch-state"))
	waitKeep(t, keep, "mapped", 1, 10*time.Second)
	if _, _, found := nextWatchEvent(t, w, 0, 10*time.Second, kind("initial")); !found {
		t.Fatalf("no initial event; watch's output:\n%s", w.Output())
	}
	reachesLAN(t, l, 18097, "kept")
	// PCP forgives an epoch going back by one second (RFC 6887 §8.5):
	// wait until the router's epoch has counted past that.
	waitEpoch(t, l, 3)
	restartMiniupnpd(t, l)
	waitKeep(t, keep, "recreated", 1, 10*time.Second)
	ev, _, found := nextWatchEvent(t, w, 1, 5*time.Second, kind("router_restarted"))
	if !found || !strings.Contains(ev.Reason, "PCP epoch") && !strings.Contains(ev.Reason, "NAT-PMP epoch") {
		t.Fatalf("watch: %+v (found %v); its output:\n%s", ev, found, w.Output())
	}
	for _, e := range keepEvents(t, keep) {
		if e.Event == "lost" && !strings.Contains(e.Reason, "epoch") {
			t.Errorf("keep lost the mapping for %q, want the epoch", e.Reason)
		}
	}
	onlyOneRestart(t, w)
	reachesLAN(t, l, 18097, "kept")
}

// waitEpoch waits until the lab router's PCP epoch reaches secs, asking it
// with ANNOUNCE from the LAN host.
func waitEpoch(t *testing.T, l *natlab.Lab, secs uint32) {
	t.Helper()
	c := &pcp.Client{Gateway: ap(l.RouterLANIP, pcp.ServerPort), MaxTries: 2,
		Dial: func(ctx context.Context, network, address string) (net.Conn, error) {
			return l.DialContext(ctx, natlab.HostLAN, network, address)
		}}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		e, err := c.Announce(ctx)
		cancel()
		if err == nil && e >= secs {
			return
		}
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("the router's PCP epoch never reached %d s (last %d, %v)", secs, e, err)
		}
	}
}
