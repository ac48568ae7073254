package natlab_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/portfwd/portfwd/internal/natlab"
	"github.com/portfwd/portfwd/internal/testenv"
)

// These tests prove the lab with the real reference peers: miniupnpd on the
// router, miniupnpc's upnpc and libnatpmp's natpmpc on the LAN host. CI runs
// them with PORTFWD_LAB_REQUIRED=1, so they cannot pass by being skipped.

const (
	quick = 300 * time.Millisecond // for checks that must fail
	ample = 3 * time.Second        // for checks that must succeed
)

func at(a netip.Addr, port uint16) netip.AddrPort { return netip.AddrPortFrom(a, port) }

// mustContain fails t unless out contains every want.
func mustContain(t *testing.T, what, out string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(out, w) {
			t.Errorf("%s: output lacks %q; got:\n%s", what, w, out)
		}
	}
}

func run(t *testing.T, l *natlab.Lab, host, name string, args ...string) string {
	t.Helper()
	out, err := l.Run(t, host, name, args...)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	return out
}

// The IGD path end to end: SSDP discovery from the LAN, the external
// address learned over STUN, a mapping that lets the WAN host in, and its
// removal shutting the door again.
func TestMiniupnpdUPnP(t *testing.T) {
	natlab.Require(t, "upnpc")
	l := natlab.Start(t, natlab.Options{})
	lanSrv := l.ServeTCP(t, natlab.HostLAN, at(l.LANIP, 8080), "hello from the LAN")
	ext := at(l.RouterWANIP, 18080)

	// No -u: discovery is SSDP multicast on the lab's LAN segment. -i
	// because miniupnpc calls an IGD with a TEST-NET address "not connected".
	out := run(t, l, natlab.HostLAN, "upnpc", "-i", "-l")
	mustContain(t, "upnpc -i -l", out,
		"desc: "+l.MiniupnpdURL(),
		"ExternalIPAddress = "+l.RouterWANIP.String())

	if banner, err := l.DialTCP(t, natlab.HostWAN, ext, quick); err == nil {
		t.Fatalf("before any mapping the WAN host reached %v (%q)", ext, banner)
	}

	// The rest skips discovery, which costs upnpc two seconds each time.
	url := l.MiniupnpdURL()
	out = run(t, l, natlab.HostLAN, "upnpc", "-i", "-u", url, "-e", "natlab-test", "-a", l.LANIP.String(), "8080", "18080", "TCP")
	mustContain(t, "upnpc -a", out, "external "+ext.String()+" TCP is redirected to internal "+l.LANIP.String()+":8080")
	out = run(t, l, natlab.HostLAN, "upnpc", "-i", "-u", url, "-l")
	mustContain(t, "upnpc -l after add", out, "TCP 18080->"+l.LANIP.String()+":8080  'natlab-test'")
	mustContain(t, "nft ruleset after add", l.NftRuleset(t), "dnat ip to "+l.LANIP.String()+":8080")

	banner, err := l.DialTCP(t, natlab.HostWAN, ext, ample)
	if err != nil || banner != "hello from the LAN" {
		t.Fatalf("WAN -> %v through the mapping: %q, %v; want the LAN server's banner", ext, banner, err)
	}
	// DNAT only: the LAN server sees the WAN host itself.
	if peers := lanSrv.Peers(); len(peers) != 1 || peers[0].Addr() != l.WANIP {
		t.Errorf("LAN server saw %v, want one connection from %v", peers, l.WANIP)
	}

	out = run(t, l, natlab.HostLAN, "upnpc", "-i", "-u", url, "-d", "18080", "TCP")
	mustContain(t, "upnpc -d", out, "UPNP_DeletePortMapping() returned : 0")
	if strings.Contains(l.NftRuleset(t), "dnat ip to") {
		t.Error("a DNAT rule is left in the ruleset after the delete")
	}
	if banner, err := l.DialTCP(t, natlab.HostWAN, ext, quick); err == nil {
		t.Fatalf("after the delete the WAN host still reached %v (%q)", ext, banner)
	}
}

// NAT-PMP with natpmpc: public address, a UDP mapping carrying an echo, and
// its removal. natpmpc -a takes the public port first.
func TestMiniupnpdNATPMP(t *testing.T) {
	natlab.Require(t, "natpmpc")
	l := natlab.Start(t, natlab.Options{})
	gw := l.RouterLANIP.String()
	echo := l.ServeUDPEcho(t, natlab.HostLAN, at(l.LANIP, 19001))
	ext := at(l.RouterWANIP, 9001)

	out := run(t, l, natlab.HostLAN, "natpmpc", "-g", gw)
	mustContain(t, "natpmpc public address", out, "Public IP address : "+l.RouterWANIP.String())

	if reply, err := l.ProbeUDP(t, natlab.HostWAN, ext, "early", quick); err == nil {
		t.Fatalf("before any mapping a datagram to %v came back (%q)", ext, reply)
	}
	out = run(t, l, natlab.HostLAN, "natpmpc", "-g", gw, "-a", "9001", "19001", "udp", "3600")
	mustContain(t, "natpmpc -a", out, "Mapped public port 9001 protocol UDP to local port 19001")

	reply, err := l.ProbeUDP(t, natlab.HostWAN, ext, "ping through NAT-PMP", ample)
	if err != nil || reply != "ping through NAT-PMP" {
		t.Fatalf("WAN -> %v through the mapping: %q, %v; want the echo", ext, reply, err)
	}
	if peers := echo.Peers(); len(peers) == 0 || peers[0].Addr() != l.WANIP {
		t.Errorf("echo server saw %v, want datagrams from %v", peers, l.WANIP)
	}

	out = run(t, l, natlab.HostLAN, "natpmpc", "-g", gw, "-a", "9001", "19001", "udp", "0")
	mustContain(t, "natpmpc delete", out, "liftime 0") // sic: natpmpc's spelling
	if reply, err := l.ProbeUDP(t, natlab.HostWAN, ext, "late", quick); err == nil {
		t.Fatalf("after the delete a datagram to %v still came back (%q)", ext, reply)
	}
}

// Router "none": NAT without a daemon. The LAN reaches the WAN masqueraded,
// the WAN cannot reach the LAN, and a DNAT rule in a table of its own (as
// portfwd's gateway will add) is let through by the forward chain.
func TestRouterNone(t *testing.T) {
	l := natlab.Start(t, natlab.Options{Router: natlab.RouterNone})
	if l.Miniupnpd != nil || l.Conf != nil || l.MiniupnpdURL() != "" {
		t.Errorf("Router none has miniupnpd state: process %v, conf %v, URL %q", l.Miniupnpd, l.Conf, l.MiniupnpdURL())
	}

	wanSrv := l.ServeTCP(t, natlab.HostWAN, at(l.WANIP, 8000), "hello from the WAN")
	if banner, err := l.DialTCP(t, natlab.HostLAN, wanSrv.Addr(), ample); err != nil || banner != "hello from the WAN" {
		t.Fatalf("LAN -> WAN TCP: %q, %v", banner, err)
	}
	if peers := wanSrv.Peers(); len(peers) != 1 || peers[0].Addr() != l.RouterWANIP {
		t.Errorf("WAN server saw %v, want the masqueraded %v", peers, l.RouterWANIP)
	}
	wanEcho := l.ServeUDPEcho(t, natlab.HostWAN, at(l.WANIP, 8001))
	if reply, err := l.ProbeUDP(t, natlab.HostLAN, wanEcho.Addr(), "out", ample); err != nil || reply != "out" {
		t.Fatalf("LAN -> WAN UDP: %q, %v", reply, err)
	}
	if peers := wanEcho.Peers(); len(peers) == 0 || peers[0].Addr() != l.RouterWANIP {
		t.Errorf("WAN echo saw %v, want the masqueraded %v", peers, l.RouterWANIP)
	}

	l.ServeTCP(t, natlab.HostLAN, at(l.LANIP, 8080), "hello from the LAN")
	for _, to := range []netip.AddrPort{at(l.LANIP, 8080), at(l.RouterWANIP, 8080)} {
		if banner, err := l.DialTCP(t, natlab.HostWAN, to, quick); err == nil {
			t.Errorf("WAN reached %v (%q) with no mapping", to, banner)
		}
	}
	if _, err := l.DialTCP(t, natlab.HostLAN, at(l.RouterLANIP, natlab.MiniupnpdHTTPPort), quick); err == nil {
		t.Error("something listens on the router's UPnP port in Router none mode")
	}

	// A gateway's own DNAT table.
	for _, cmd := range [][]string{
		{"add", "table", "ip", "gw"},
		{"add", "chain", "ip", "gw", "pre", "{ type nat hook prerouting priority dstnat; }"},
		{"add", "rule", "ip", "gw", "pre", "iifname", natlab.RouterWANIf, "tcp", "dport", "18080", "dnat", "to", l.LANIP.String() + ":8080"},
	} {
		run(t, l, natlab.HostRouter, "nft", cmd...)
	}
	if banner, err := l.DialTCP(t, natlab.HostWAN, at(l.RouterWANIP, 18080), ample); err != nil || banner != "hello from the LAN" {
		t.Fatalf("WAN -> LAN through a DNAT rule of another table: %q, %v; the forward chain must accept ct status dnat", banner, err)
	}
}

// Behind a carrier-grade NAT the router's WAN address is 100.64.0.1, and
// that is what a client reads: the signal for a double-NAT warning. The STUN
// responder reports the same address, so miniupnpd still forwards (without
// STUN it would report no external address at all and fail every mapping).
func TestDoubleNAT(t *testing.T) {
	natlab.Require(t, "upnpc", "natpmpc")
	l := natlab.Start(t, natlab.Options{DoubleNAT: true})
	cgnat := netip.MustParsePrefix("100.64.0.0/10")
	if !cgnat.Contains(l.RouterWANIP) || !cgnat.Contains(l.WANIP) {
		t.Fatalf("DoubleNAT addresses %v / %v are not in %v", l.RouterWANIP, l.WANIP, cgnat)
	}
	url := l.MiniupnpdURL()
	out := run(t, l, natlab.HostLAN, "upnpc", "-i", "-u", url, "-l")
	mustContain(t, "upnpc -l", out, "ExternalIPAddress = "+l.RouterWANIP.String())
	out = run(t, l, natlab.HostLAN, "natpmpc", "-g", l.RouterLANIP.String())
	mustContain(t, "natpmpc", out, "Public IP address : "+l.RouterWANIP.String())

	l.ServeTCP(t, natlab.HostLAN, at(l.LANIP, 8080), "behind two NATs")
	run(t, l, natlab.HostLAN, "upnpc", "-i", "-u", url, "-a", l.LANIP.String(), "8080", "18080", "TCP")
	if banner, err := l.DialTCP(t, natlab.HostWAN, at(l.RouterWANIP, 18080), ample); err != nil || banner != "behind two NATs" {
		t.Fatalf("WAN -> mapping: %q, %v", banner, err)
	}
}

// Two labs side by side, with the same addresses and the same mapping: each
// must keep to itself (namespaces, miniupnpd PID and lease files, minissdpd
// socket path).
func TestParallelLabs(t *testing.T) {
	natlab.Require(t, "upnpc")
	for _, name := range []string{"first", "second"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			l := natlab.Start(t, natlab.Options{})
			l.ServeTCP(t, natlab.HostLAN, at(l.LANIP, 8080), "lab "+name)
			run(t, l, natlab.HostLAN, "upnpc", "-i", "-u", l.MiniupnpdURL(), "-a", l.LANIP.String(), "8080", "18080", "TCP")
			banner, err := l.DialTCP(t, natlab.HostWAN, at(l.RouterWANIP, 18080), ample)
			if err != nil || banner != "lab "+name {
				t.Fatalf("WAN -> mapping in lab %s (%s): %q, %v", name, l.Router, banner, err)
			}
		})
	}
}

// Teardown leaves nothing behind: processes (those started with Start, the
// daemon, and strays started with Cmd, even one that has not reached its
// namespace yet, and the child of a Run that left its process group),
// namespaces, files.
func TestTeardown(t *testing.T) {
	var (
		l       *natlab.Lab
		bg      *natlab.Process
		strays  = map[string]chan error{}
		escaped int
	)
	t.Run("lab", func(t *testing.T) {
		l = natlab.Start(t, natlab.Options{})
		bg = l.Start(t, natlab.HostWAN, "sleep", "60")
		startStray := func(name string, cmd *exec.Cmd) {
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			c := make(chan error, 1)
			strays[name] = c
			go func() { c <- cmd.Wait() }()
		}
		// Started just before teardown: ip may not have entered the
		// namespace yet when the teardown runs.
		startStray("Cmd", l.Cmd(context.Background(), natlab.HostLAN, "sleep", "60"))
		// Held back on purpose: in the test's namespace for a second, where
		// no scan of the lab's namespaces can find it.
		late := l.Cmd(context.Background(), natlab.HostLAN, "sleep", "60")
		late.Args = append([]string{"sh", "-c", `sleep 1; exec "$@"`, "sh"}, late.Args...)
		late.Path = "/bin/sh"
		startStray("Cmd not yet in its namespace", late)
		// A child that left its parent's process group and outlived it.
		out := run(t, l, natlab.HostWAN, "sh", "-c", "setsid sleep 60 </dev/null >/dev/null 2>&1 & echo $!")
		if _, err := fmt.Sscan(out, &escaped); err != nil {
			t.Fatalf("PID of the escaped child: %q: %v", out, err)
		}
	})
	if t.Failed() {
		return
	}
	if l == nil || bg == nil {
		t.Skip("the lab is unavailable here")
	}
	for _, p := range []*natlab.Process{bg, l.Miniupnpd} {
		select {
		case <-p.Done():
		default:
			t.Errorf("%s (pid %d) still runs after teardown", p.Name, p.PID())
		}
	}
	for name, c := range strays {
		select {
		case err := <-c:
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ProcessState.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
				t.Errorf("stray process (%s) ended with %v; want it killed by teardown", name, err)
			}
		case <-time.After(ample):
			t.Errorf("stray process (%s) survived teardown", name)
		}
	}
	// Not our child, so not ours to wait for: gone or a zombie will do.
	if stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", escaped)); err == nil {
		if f := strings.Fields(string(stat)); len(f) > 2 && f[1] == "(sleep)" && f[2] != "Z" {
			t.Errorf("escaped child %d (setsid sleep) survived teardown: %s", escaped, stat)
		}
	}
	for _, ns := range []string{l.LAN, l.Router, l.WAN} {
		if _, err := os.Stat(filepath.Join("/run/netns", ns)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("namespace %s still exists (%v)", ns, err)
		}
	}
	if _, err := os.Stat(l.RunDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("RunDir %s still exists (%v)", l.RunDir, err)
	}
}

// The lab must stay cheap enough to start one per test. This is a guard
// against regressions such as sleeping instead of polling, with a bound
// generous enough for a loaded CI machine; the log has the real figures.
func TestStartupTime(t *testing.T) {
	var times []time.Duration
	for range 3 {
		var l *natlab.Lab
		t.Run("start", func(t *testing.T) { l = natlab.Start(t, natlab.Options{}) })
		if t.Failed() {
			return
		}
		if l == nil {
			t.Skip("the lab is unavailable here")
		}
		times = append(times, l.StartupTime)
	}
	slices.Sort(times)
	t.Logf("lab start with miniupnpd: min %v, median %v, max %v", times[0], times[1], times[2])
	if times[1] > 2*time.Second {
		t.Errorf("median lab start %v; it was about 50 ms when written", times[1])
	}
}

// A missing tool skips, and fails only when the lab is required: CI must
// not go green by skipping.
func TestRequirePolicy(t *testing.T) {
	for _, tc := range []struct {
		env       string
		wantFatal bool
	}{{"", false}, {"0", false}, {"1", true}} {
		t.Run("PORTFWD_LAB_REQUIRED="+tc.env, func(t *testing.T) {
			t.Setenv(natlab.EnvRequired, tc.env)
			r := testenv.Record(t, func(tb testing.TB) { natlab.Require(tb, "sh", "natlab-no-such-program") })
			msg := r.Skip
			if tc.wantFatal {
				msg = r.Fatal
			}
			if (r.Fatal != "") != tc.wantFatal || (r.Skip != "") == tc.wantFatal {
				t.Fatalf("fatal %q, skip %q; want only a %s", r.Fatal, r.Skip, map[bool]string{true: "failure", false: "skip"}[tc.wantFatal])
			}
			if !strings.Contains(msg, "natlab-no-such-program") || strings.Contains(msg, "missing sh") {
				t.Errorf("message %q should name exactly the missing program", msg)
			}
		})
	}
}

func TestStartRejectsBadOptions(t *testing.T) {
	for _, opts := range []natlab.Options{
		{Router: "openwrt"},
		{Prefix: "much-too-long-prefix"},
	} {
		r := testenv.Record(t, func(tb testing.TB) { natlab.Start(tb, opts) })
		if r.Fatal == "" {
			t.Errorf("Start(%+v) did not fail (skip: %q)", opts, r.Skip)
		}
	}
}

// A prefix that a running lab uses is refused, and the failed Start's
// teardown leaves the other lab alone.
func TestPrefixCollision(t *testing.T) {
	first := natlab.Start(t, natlab.Options{})
	prefix := strings.TrimSuffix(first.LAN, "-lan")
	t.Run("second", func(t *testing.T) {
		r := testenv.Record(t, func(tb testing.TB) { natlab.Start(tb, natlab.Options{Prefix: prefix}) })
		if !strings.Contains(r.Fatal, "already exists") {
			t.Errorf("Start with the prefix %q of a running lab: fatal %q, skip %q; want \"already exists\"", prefix, r.Fatal, r.Skip)
		}
	})
	// The second lab's teardown has run by now.
	for _, ns := range []string{first.LAN, first.Router, first.WAN} {
		if _, err := os.Stat(filepath.Join("/run/netns", ns)); err != nil {
			t.Errorf("the failed Start removed namespace %s of the running lab: %v", ns, err)
		}
	}
	if exited, err := first.Miniupnpd.Exited(); exited {
		t.Errorf("the failed Start stopped the running lab's miniupnpd: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), ample)
	defer cancel()
	c, err := first.DialContext(ctx, natlab.HostLAN, "tcp4", at(first.RouterLANIP, natlab.MiniupnpdHTTPPort).String())
	if err != nil {
		t.Fatalf("running lab unusable after the failed Start: %v", err)
	}
	c.Close()
}

// Background processes: output lands in RunDir, WaitTCP sees a server come
// up, and a process that dies instead ends the wait with its output.
func TestStartProcess(t *testing.T) {
	natlab.Require(t, "python3")
	l := natlab.Start(t, natlab.Options{Router: natlab.RouterNone})
	addr := at(l.WANIP, 8000)
	srv := l.Start(t, natlab.HostWAN, "python3", "-m", "http.server", "--bind", l.WANIP.String(), "8000")
	l.WaitTCP(t, natlab.HostWAN, addr, 10*time.Second, srv)

	ctx, cancel := context.WithTimeout(context.Background(), ample)
	defer cancel()
	c, err := l.DialContext(ctx, natlab.HostLAN, "tcp4", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(ample))
	fmt.Fprintf(c, "GET /natlab-probe HTTP/1.0\r\n\r\n")
	buf := make([]byte, 64)
	n, _ := c.Read(buf)
	c.Close()
	if !strings.HasPrefix(string(buf[:n]), "HTTP/1.0 404") {
		t.Errorf("LAN -> WAN HTTP: %q, want a 404 status line", buf[:n])
	}
	srv.Stop()
	if !strings.Contains(srv.Output(), "GET /natlab-probe") || filepath.Dir(srv.Log) != l.RunDir {
		t.Errorf("server log %s lacks the request; output:\n%s", srv.Log, srv.Output())
	}

	dead := l.Start(t, natlab.HostWAN, "sh", "-c", "echo boom >&2; exit 3")
	r := testenv.Record(t, func(tb testing.TB) { l.WaitTCP(tb, natlab.HostWAN, at(l.WANIP, 8001), time.Minute, dead) })
	if !strings.Contains(r.Fatal, "boom") || !strings.Contains(r.Fatal, "exit status 3") {
		t.Errorf("WaitTCP on a dead process: %q; want its output and exit status", r.Fatal)
	}
}
