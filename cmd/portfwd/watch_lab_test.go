package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portfwd/portfwd/internal/natlab"
)

// labWatchEvent is what the lab tests read of `portfwd watch --json`.
type labWatchEvent struct {
	Event         string `json:"event"`
	Via           string `json:"via"`
	Reason        string `json:"reason"`
	ExternalAddr  string `json:"external_ip"`
	Count         int    `json:"count"`
	PreviousCount int    `json:"previous_count"`
	Added         []struct {
		Protocol       string `json:"protocol"`
		ExternalPort   int    `json:"external_port"`
		InternalClient string `json:"internal_client"`
		InternalPort   int    `json:"internal_port"`
		Description    string `json:"description"`
	} `json:"added"`
	Removed []struct {
		ExternalPort int `json:"external_port"`
	} `json:"removed"`
}

// watchEvents parses the JSON lines a watch process printed so far (its
// log also holds stderr, which is not JSON).
func watchEvents(t *testing.T, p *natlab.Process) []labWatchEvent {
	t.Helper()
	var out []labWatchEvent
	for _, line := range strings.Split(p.Output(), "\n") {
		if !strings.HasPrefix(line, "{") {
			continue
		}
		var ev labWatchEvent
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("watch printed a broken JSON line (%v): %s", err, line)
		}
		out = append(out, ev)
	}
	return out
}

// nextWatchEvent waits, for at most d, for an event after the first skip
// ones that satisfies match, and returns it with its index.
func nextWatchEvent(t *testing.T, p *natlab.Process, skip int, d time.Duration, match func(labWatchEvent) bool) (labWatchEvent, int, bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		evs := watchEvents(t, p)
		for i := skip; i < len(evs); i++ {
			if match(evs[i]) {
				return evs[i], i, true
			}
		}
		if time.Now().After(deadline) {
			return labWatchEvent{}, len(evs), false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func kind(k string) func(labWatchEvent) bool {
	return func(e labWatchEvent) bool { return e.Event == k }
}

// TestLabWatchAgainstMiniupnpd: `portfwd watch` subscribes to miniupnpd's
// UPnP events and reports a mapping another client adds (and deletes)
// within a second, by the event: the poll interval is a minute.
func TestLabWatchAgainstMiniupnpd(t *testing.T) {
	l := natlab.Start(t, natlab.Options{})
	w := l.Start(t, natlab.HostLAN, portfwdBinary(t), "watch", "--json", "--interval", "1m",
		"--gateway", l.MiniupnpdURL(), "--protocol", "upnp", "--no-cache", "--state-dir", filepath.Join(l.RunDir, "watch-state"))
	in, n, ok := nextWatchEvent(t, w, 0, 10*time.Second, kind("initial"))
	if !ok {
		t.Fatalf("no initial event; watch's output:\n%s", w.Output())
	}
	if in.ExternalAddr != l.RouterWANIP.String() || in.Count != 0 || !strings.Contains(in.Reason, "UPnP events") {
		t.Errorf("initial event %+v: want external address %s, no mappings, and UPnP events in use", in, l.RouterWANIP)
	}

	if out, err := l.Run(t, natlab.HostLAN, "upnpc", "-i", "-u", l.MiniupnpdURL(), "-e", "x", "-a", l.LANIP.String(), "8080", "18080", "TCP"); err != nil {
		t.Fatalf("upnpc -a: %v\n%s", err, out)
	}
	added := time.Now()
	ev, n, ok := nextWatchEvent(t, w, n+1, time.Second, kind("mappings_changed"))
	if !ok {
		t.Fatalf("no mappings-changed within 1 s of upnpc adding a mapping; watch's output:\n%s", w.Output())
	}
	t.Logf("the new mapping was reported %v after upnpc returned, via %s", time.Since(added).Round(time.Millisecond), ev.Via)
	if ev.Via != "gena" {
		t.Errorf("reported via %q, want gena (miniupnpd's UPnP event)", ev.Via)
	}
	if len(ev.Added) != 1 || len(ev.Removed) != 0 || ev.Count != 1 || ev.PreviousCount != 0 {
		t.Fatalf("mappings-changed %+v: want one mapping added", ev)
	}
	if a := ev.Added[0]; a.Protocol != "TCP" || a.ExternalPort != 18080 || a.InternalClient != l.LANIP.String() || a.InternalPort != 8080 || a.Description != "x" {
		t.Errorf("added %+v", a)
	}

	if out, err := l.Run(t, natlab.HostLAN, "upnpc", "-i", "-u", l.MiniupnpdURL(), "-d", "18080", "TCP"); err != nil {
		t.Fatalf("upnpc -d: %v\n%s", err, out)
	}
	ev, _, ok = nextWatchEvent(t, w, n+1, time.Second, kind("mappings_changed"))
	if !ok || ev.Via != "gena" || len(ev.Removed) != 1 || ev.Removed[0].ExternalPort != 18080 || ev.Count != 0 {
		t.Fatalf("after upnpc -d: %+v (found %v); watch's output:\n%s", ev, ok, w.Output())
	}
	if evs := watchEvents(t, w); len(evs) != 3 {
		t.Errorf("%d events, want initial and two mappings-changed:\n%s", len(evs), w.Output())
	}
}

// daemonUptime makes miniupnpd count its NAT-PMP epoch and UPnP uptime
// from its own start (system_uptime=no): with the lab's default, the
// host's uptime, a restart of the daemon does not show in either.
func daemonUptime(c *natlab.Conf) { c.SystemUptime = false }

// TestLabWatchNATPMPRouterRestart: miniupnpd restarts; `portfwd watch`
// over NAT-PMP sees its epoch start again and reports the restart once.
func TestLabWatchNATPMPRouterRestart(t *testing.T) {
	l := natlab.Start(t, natlab.Options{MiniupnpdConf: daemonUptime})
	w := l.Start(t, natlab.HostLAN, portfwdBinary(t), "watch", "--json", "--interval", "500ms",
		"--natpmp", l.RouterLANIP.String(), "--protocol", "natpmp", "--no-cache", "--state-dir", filepath.Join(l.RunDir, "watch-state"))
	in, n, ok := nextWatchEvent(t, w, 0, 10*time.Second, kind("initial"))
	if !ok {
		t.Fatalf("no initial event; watch's output:\n%s", w.Output())
	}
	if in.ExternalAddr != l.RouterWANIP.String() || in.Count != -1 {
		t.Errorf("initial event %+v", in)
	}
	// The epoch must have run for a few seconds for a restart to show
	// (RFC 6886 §3.6 forgives 2 s).
	time.Sleep(4 * time.Second)
	restartMiniupnpd(t, l)
	restarted := time.Now()
	ev, _, ok := nextWatchEvent(t, w, n+1, 5*time.Second, kind("router_restarted"))
	if !ok {
		t.Fatalf("no router-restarted within 5 s of miniupnpd restarting; watch's output:\n%s", w.Output())
	}
	t.Logf("restart reported %v after miniupnpd came back, via %s: %s", time.Since(restarted).Round(time.Millisecond), ev.Via, ev.Reason)
	onlyOneRestart(t, w)
}

// onlyOneRestart waits a few polls and checks that one restart was
// reported once.
func onlyOneRestart(t *testing.T, w *natlab.Process) {
	t.Helper()
	time.Sleep(2 * time.Second)
	count := 0
	for _, e := range watchEvents(t, w) {
		if e.Event == "router_restarted" {
			count++
		}
	}
	if count != 1 {
		t.Errorf("%d router-restarted events for one restart:\n%s", count, w.Output())
	}
}

// TestLabWatchUPnPRouterRestart: miniupnpd restarts and forgets its event
// subscribers; `portfwd watch` reports the restart once and subscribes
// again, so that the next change still arrives by event.
func TestLabWatchUPnPRouterRestart(t *testing.T) {
	l := natlab.Start(t, natlab.Options{MiniupnpdConf: daemonUptime})
	w := l.Start(t, natlab.HostLAN, portfwdBinary(t), "watch", "--json", "--interval", "500ms",
		"--gateway", l.MiniupnpdURL(), "--protocol", "upnp", "--no-cache", "--state-dir", filepath.Join(l.RunDir, "watch-state"))
	if _, _, ok := nextWatchEvent(t, w, 0, 10*time.Second, kind("initial")); !ok {
		t.Fatalf("no initial event; watch's output:\n%s", w.Output())
	}
	time.Sleep(4 * time.Second) // an uptime worth going back from
	restartMiniupnpd(t, l)
	restarted := time.Now()
	ev, n, ok := nextWatchEvent(t, w, 1, 5*time.Second, kind("router_restarted"))
	if !ok {
		t.Fatalf("no router-restarted within 5 s of miniupnpd restarting; watch's output:\n%s", w.Output())
	}
	t.Logf("restart reported %v after miniupnpd came back, via %s: %s", time.Since(restarted).Round(time.Millisecond), ev.Via, ev.Reason)
	onlyOneRestart(t, w)

	if out, err := l.Run(t, natlab.HostLAN, "upnpc", "-i", "-u", l.MiniupnpdURL(), "-e", "x", "-a", l.LANIP.String(), "8080", "18080", "TCP"); err != nil {
		t.Fatalf("upnpc -a: %v\n%s", err, out)
	}
	ev, _, ok = nextWatchEvent(t, w, n+1, time.Second, kind("mappings_changed"))
	if !ok || len(ev.Added) != 1 {
		t.Fatalf("no mappings-changed within 1 s after the restart (%+v); watch's output:\n%s", ev, w.Output())
	}
	// Within 500 ms the poll may win the race; the event must still work.
	t.Logf("the mapping made after the restart was reported via %s", ev.Via)
}

// restartMiniupnpd stops the lab's miniupnpd and starts it again with the
// same configuration, waiting until it answers.
func restartMiniupnpd(t *testing.T, l *natlab.Lab) {
	t.Helper()
	l.Miniupnpd.Stop()
	conf := filepath.Join(l.RunDir, "miniupnpd.conf")
	// As natlab starts it: /dev/console silenced, in the foreground.
	const wrap = `mount --bind /dev/null /dev/console 2>/dev/null; exec "$@"`
	p := l.Start(t, natlab.HostRouter, "sh", "-c", wrap, "miniupnpd", "miniupnpd", "-d", "-f", conf, "-P", filepath.Join(l.RunDir, "miniupnpd.pid"))
	l.WaitTCP(t, natlab.HostLAN, ap(l.RouterLANIP, l.Conf.HTTPPort), 10*time.Second, p)
}

// TestLabWatchExternalAddressChange: the router's WAN address changes.
// miniupnpd notices (netlink), learns the new address over STUN again
// (about 3 s), and tells its clients by UPnP event and NAT-PMP
// announcement; both watchers report the new address long before their
// one-minute poll. miniupnpd also starts a new NAT-PMP epoch then, which
// the watchers report as a restart.
//
// The new address is added before the old one is removed, with
// promote_secondaries set: otherwise Linux deletes the second address
// with the first, miniupnpd finds wan0 without an address and reports
// "Disconnected" (with the old address still in ExternalIPAddress).
func TestLabWatchExternalAddressChange(t *testing.T) {
	l := natlab.Start(t, natlab.Options{})
	args := []string{"watch", "--json", "--interval", "1m", "--no-cache"}
	wu := l.Start(t, natlab.HostLAN, portfwdBinary(t), append(args, "--gateway", l.MiniupnpdURL(), "--protocol", "upnp",
		"--state-dir", filepath.Join(l.RunDir, "watch-upnp"))...)
	wp := l.Start(t, natlab.HostLAN, portfwdBinary(t), append(args, "--natpmp", l.RouterLANIP.String(), "--protocol", "natpmp",
		"--state-dir", filepath.Join(l.RunDir, "watch-natpmp"))...)
	for _, w := range []*natlab.Process{wu, wp} {
		if _, _, ok := nextWatchEvent(t, w, 0, 10*time.Second, kind("initial")); !ok {
			t.Fatalf("no initial event; watch's output:\n%s", w.Output())
		}
	}
	const newAddr = "203.0.113.9"
	for _, cmd := range [][]string{
		{"sysctl", "-qw", "net.ipv4.conf." + natlab.RouterWANIf + ".promote_secondaries=1"},
		{"ip", "addr", "add", newAddr + "/24", "dev", natlab.RouterWANIf},
		{"ip", "addr", "del", l.RouterWANIP.String() + "/24", "dev", natlab.RouterWANIf},
	} {
		if out, err := l.Run(t, natlab.HostRouter, cmd[0], cmd[1:]...); err != nil {
			t.Fatalf("%v: %v\n%s", cmd, err, out)
		}
	}
	changed := time.Now()
	for name, w := range map[string]*natlab.Process{"UPnP": wu, "NAT-PMP": wp} {
		ev, _, ok := nextWatchEvent(t, w, 1, 15*time.Second, kind("external_address_changed"))
		if !ok {
			t.Fatalf("%s watch: no external-address-changed within 15 s; its output:\n%s\nminiupnpd's log: %s", name, w.Output(), l.Miniupnpd.Log)
		}
		t.Logf("%s watch: new address reported %v after the change, via %s", name, time.Since(changed).Round(time.Millisecond), ev.Via)
		if ev.ExternalAddr != newAddr || ev.Via == "poll" {
			t.Errorf("%s watch: %+v, want %s by event or announcement", name, ev, newAddr)
		}
	}
}
