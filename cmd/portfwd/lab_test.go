package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/portfwd/portfwd/internal/natlab"
)

// These tests run the portfwd binary on the lab's LAN host against the
// reference router daemon, miniupnpd, and prove every client command with
// real traffic from the WAN host. CI runs them with PORTFWD_LAB_REQUIRED=1.

// portfwdBinary builds the command once per test process.
func portfwdBinary(t testing.TB) string {
	return natlab.GoBuild(t, "github.com/portfwd/portfwd/cmd/portfwd")
}

// result is one run of the portfwd binary.
type result struct {
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

// pf runs portfwd with args on host.
func pf(t *testing.T, l *natlab.Lab, host string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := l.Cmd(ctx, host, portfwdBinary(t), args...)
	cmd.Env = l.Env()
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	start := time.Now()
	err := cmd.Run()
	r := result{stdout: so.String(), stderr: se.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("portfwd %v: %v", args, err)
	}
	t.Logf("%s$ portfwd %s (%v) -> exit %d", host, strings.Join(args, " "), time.Since(start).Round(time.Millisecond), r.code)
	return r
}

// ok runs portfwd and fails the test unless it exits 0.
func ok(t *testing.T, l *natlab.Lab, args ...string) result {
	t.Helper()
	r := pf(t, l, natlab.HostLAN, args...)
	if r.code != 0 {
		t.Fatalf("portfwd %s: %v", strings.Join(args, " "), r)
	}
	return r
}

func contains(t *testing.T, what, s string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(s, w) {
			t.Errorf("%s lacks %q:\n%s", what, w, s)
		}
	}
}

func ap(a netip.Addr, p uint16) netip.AddrPort { return netip.AddrPortFrom(a, p) }

// reachTCP says whether a TCP connection from the WAN host to the router's
// external address and port reaches a LAN server, and what it said.
func reachTCP(t *testing.T, l *natlab.Lab, port uint16, within time.Duration) (string, bool) {
	t.Helper()
	banner, err := l.DialTCP(t, natlab.HostWAN, ap(l.RouterWANIP, port), within)
	return banner, err == nil
}

func reachUDP(t *testing.T, l *natlab.Lab, port uint16, within time.Duration) (string, bool) {
	t.Helper()
	got, err := l.ProbeUDP(t, natlab.HostWAN, ap(l.RouterWANIP, port), "ping", within)
	return got, err == nil
}

func decode[T any](t *testing.T, s string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("bad JSON (%v):\n%s", err, s)
	}
	return v
}

const (
	mustWork = 3 * time.Second
	mustFail = 500 * time.Millisecond
)

// TestLabUPnPAgainstMiniupnpd walks every client command over UPnP IGD with
// SSDP discovery, and proves each mapping with TCP traffic from the WAN.
func TestLabUPnPAgainstMiniupnpd(t *testing.T) {
	l := natlab.Start(t, natlab.Options{})
	ext := l.RouterWANIP.String()

	// discover: SSDP multicast on the LAN, the IGD's control URL, status and address.
	r := ok(t, l, "discover", "--protocol", "upnp")
	contains(t, "discover", r.stdout, "UPnP", "http://"+l.RouterLANIP.String()+":5000/ctl/IPConn",
		"WANIPConnection:", "connected (Connected)", "external IP: "+ext)
	dj := decode[struct {
		Gateways []struct {
			Method      string `json:"method"`
			Gateway     string `json:"gateway"`
			ServiceType string `json:"service_type"`
			Connected   bool   `json:"connected"`
			ExternalIP  string `json:"external_ip"`
			Class       string `json:"external_ip_class"`
		} `json:"gateways"`
	}](t, ok(t, l, "discover", "--protocol", "upnp", "--json").stdout)
	if len(dj.Gateways) == 0 || dj.Gateways[0].Method != "upnp" || !dj.Gateways[0].Connected ||
		dj.Gateways[0].ExternalIP != ext || dj.Gateways[0].Class != "documentation" {
		t.Errorf("discover --json: %+v", dj)
	}

	// info: what miniupnpd's config says about the device.
	r = ok(t, l, "info")
	contains(t, "info", r.stdout, l.Conf.FriendlyName, "urn:schemas-upnp-org:service:WANIPConnection:",
		"Connected", "External IP:", ext, l.MiniupnpdURL())

	// ip: the address, with a note (not a refusal) that TEST-NET is not routable.
	r = ok(t, l, "ip")
	if strings.TrimSpace(r.stdout) != ext {
		t.Errorf("ip printed %q, want %s", r.stdout, ext)
	}
	contains(t, "ip warning", r.stderr, "TEST-NET")

	// add -> a real TCP connection from the WAN reaches the LAN server.
	l.ServeTCP(t, natlab.HostLAN, ap(l.LANIP, 8080), "lan-8080")
	l.ServeTCP(t, natlab.HostLAN, ap(l.LANIP, 8081), "lan-8081")
	if _, reached := reachTCP(t, l, 18080, mustFail); reached {
		t.Fatal("port 18080 reachable before any mapping")
	}
	r = ok(t, l, "add", "8080", "--external", "18080", "--desc", "lab <web> & co", "--lease", "1h")
	contains(t, "add", r.stdout, ext+":18080/TCP -> "+l.LANIP.String()+":8080")
	if got, reached := reachTCP(t, l, 18080, mustWork); !reached || got != "lan-8080" {
		t.Fatalf("after add, WAN -> %s:18080 got %q (reached %v)", ext, got, reached)
	}

	// list shows it, in the table and in JSON, with the description intact.
	r = ok(t, l, "list")
	contains(t, "list", r.stdout, "TCP", "18080", l.LANIP.String()+":8080", "lab <web> & co")
	lj := decode[struct {
		Mappings []struct {
			Protocol       string `json:"protocol"`
			ExternalPort   int    `json:"external_port"`
			InternalClient string `json:"internal_client"`
			InternalPort   int    `json:"internal_port"`
			Description    string `json:"description"`
			LeaseSeconds   int    `json:"lease_seconds"`
			Enabled        bool   `json:"enabled"`
		} `json:"mappings"`
	}](t, ok(t, l, "list", "--json").stdout)
	if len(lj.Mappings) != 1 || lj.Mappings[0].ExternalPort != 18080 || lj.Mappings[0].InternalPort != 8080 ||
		lj.Mappings[0].Description != "lab <web> & co" || !lj.Mappings[0].Enabled ||
		lj.Mappings[0].LeaseSeconds <= 0 || lj.Mappings[0].LeaseSeconds > 3600 {
		t.Errorf("list --json: %+v", lj.Mappings)
	}

	// edit: point it at another internal port; traffic follows.
	ok(t, l, "edit", "18080/tcp", "--internal", "8081", "--desc", "edited")
	if got, reached := reachTCP(t, l, 18080, mustWork); !reached || got != "lan-8081" {
		t.Fatalf("after edit, WAN -> 18080 got %q (reached %v), want lan-8081", got, reached)
	}
	contains(t, "list after edit", ok(t, l, "list").stdout, l.LANIP.String()+":8081", "edited")

	// miniupnpd accepts NewEnabled=0 but ignores it (the rule stays
	// active): portfwd reads the mapping back, says so and exits 3
	// (TestLabNoSilentReplace checks the traffic); the mapping stays.
	if r := pf(t, l, natlab.HostLAN, "edit", "18080/tcp", "--enabled=false"); r.code != exitRefused || !strings.Contains(r.stderr, "still open") {
		t.Errorf("edit --enabled=false on miniupnpd: %v", r)
	}
	contains(t, "list after disable", ok(t, l, "list").stdout, l.LANIP.String()+":8081")

	// delete -> the connection fails again.
	ok(t, l, "delete", "18080/tcp")
	if _, reached := reachTCP(t, l, 18080, mustFail); reached {
		t.Fatal("port 18080 still reachable after delete")
	}
	// miniupnpd 2.3 answers success to deleting a mapping it does not have
	// (upnpc -d says "returned : 0" too), so a second delete exits 0.
	ok(t, l, "delete", "18080/tcp")

	// --range deletes many at once (IGDv2 DeletePortMappingRange, or one by one).
	for _, p := range []string{"18100", "18101", "18102"} {
		ok(t, l, "add", "8080", "--external", p)
	}
	r = ok(t, l, "delete", "--range", "18100-18101", "--proto", "tcp")
	if lj := decode[struct {
		Mappings []struct {
			ExternalPort int `json:"external_port"`
		} `json:"mappings"`
	}](t, ok(t, l, "list", "--json").stdout); len(lj.Mappings) != 1 || lj.Mappings[0].ExternalPort != 18102 {
		t.Errorf("after delete --range 18100-18101: %+v", lj.Mappings)
	}
	ok(t, l, "delete", "18102/tcp")
}

// TestLabUDPAndGatewayURL maps UDP, skipping SSDP with --gateway.
func TestLabUDPAndGatewayURL(t *testing.T) {
	l := natlab.Start(t, natlab.Options{})
	l.ServeUDPEcho(t, natlab.HostLAN, ap(l.LANIP, 19001))
	gw := []string{"--gateway", l.MiniupnpdURL()}
	ok(t, l, append([]string{"add", "19001", "--external", "29001", "--proto", "udp"}, gw...)...)
	if got, reached := reachUDP(t, l, 29001, mustWork); !reached || !strings.Contains(got, "ping") {
		t.Fatalf("UDP via mapping: got %q (reached %v)", got, reached)
	}
	contains(t, "list", ok(t, l, append([]string{"list"}, gw...)...).stdout, "UDP", "29001")
	ok(t, l, append([]string{"delete", "29001/udp"}, gw...)...)
	if _, reached := reachUDP(t, l, 29001, mustFail); reached {
		t.Fatal("UDP still forwarded after delete")
	}
	// --proto both makes two mappings, deleted together.
	ok(t, l, append([]string{"add", "19001", "--external", "29002", "--proto", "both"}, gw...)...)
	out := ok(t, l, append([]string{"list"}, gw...)...).stdout
	contains(t, "list both", out, "TCP  ", "UDP  ", "29002")
	ok(t, l, append([]string{"delete", "29002", "--proto", "both"}, gw...)...)
}

// TestLabNATPMPAgainstMiniupnpd does the same over NAT-PMP.
func TestLabNATPMPAgainstMiniupnpd(t *testing.T) {
	l := natlab.Start(t, natlab.Options{})
	ext := l.RouterWANIP.String()
	pmp := []string{"--protocol", "natpmp"}

	r := ok(t, l, append([]string{"discover"}, pmp...)...)
	contains(t, "discover natpmp", r.stdout, "1. NAT-PMP  "+l.RouterLANIP.String()+":5351", "external IP: "+ext)
	if r := ok(t, l, append([]string{"ip"}, pmp...)...); strings.TrimSpace(r.stdout) != ext {
		t.Errorf("ip over NAT-PMP: %q", r.stdout)
	}
	contains(t, "info natpmp", ok(t, l, append([]string{"info"}, pmp...)...).stdout, "NAT-PMP server:", "Epoch")

	l.ServeTCP(t, natlab.HostLAN, ap(l.LANIP, 19000), "lan-19000")
	ok(t, l, append([]string{"add", "19000", "--external", "9000", "--lease", "10m"}, pmp...)...)
	if got, reached := reachTCP(t, l, 9000, mustWork); !reached || got != "lan-19000" {
		t.Fatalf("NAT-PMP TCP mapping: got %q (reached %v)", got, reached)
	}
	// Listing is impossible over NAT-PMP and says so.
	if r := pf(t, l, natlab.HostLAN, append([]string{"list"}, pmp...)...); r.code == 0 || !strings.Contains(r.stderr, "NAT-PMP has no way to list") {
		t.Errorf("list over NAT-PMP: %v", r)
	}
	// delete by external port works from a later process (the internal port
	// was remembered in the state directory).
	ok(t, l, append([]string{"delete", "9000/tcp"}, pmp...)...)
	if _, reached := reachTCP(t, l, 9000, mustFail); reached {
		t.Fatal("NAT-PMP mapping still reachable after delete")
	}

	l.ServeUDPEcho(t, natlab.HostLAN, ap(l.LANIP, 19001))
	ok(t, l, append([]string{"add", "19001", "--external", "9001", "--proto", "udp"}, pmp...)...)
	if got, reached := reachUDP(t, l, 9001, mustWork); !reached || !strings.Contains(got, "ping") {
		t.Fatalf("NAT-PMP UDP mapping: got %q (reached %v)", got, reached)
	}
	ok(t, l, append([]string{"delete", "9001/udp"}, pmp...)...)
	if _, reached := reachUDP(t, l, 9001, mustFail); reached {
		t.Fatal("NAT-PMP UDP mapping still reachable after delete")
	}

	// --natpmp names the server explicitly.
	r = ok(t, l, "ip", "--natpmp", l.RouterLANIP.String())
	if strings.TrimSpace(r.stdout) != ext {
		t.Errorf("ip --natpmp: %q", r.stdout)
	}
}

// TestLabDoubleNAT: behind carrier-grade NAT the router's external address
// is 100.64.0.1; portfwd says what that means and still works.
func TestLabDoubleNAT(t *testing.T) {
	l := natlab.Start(t, natlab.Options{DoubleNAT: true})
	r := ok(t, l, "ip")
	if strings.TrimSpace(r.stdout) != l.RouterWANIP.String() {
		t.Errorf("ip: %q, want %s", r.stdout, l.RouterWANIP)
	}
	contains(t, "ip warning", r.stderr, "carrier-grade NAT")
	j := decode[map[string]any](t, ok(t, l, "ip", "--json").stdout)
	if j["external_ip_class"] != "cgnat" || !strings.Contains(fmt.Sprint(j["warning"]), "carrier-grade") {
		t.Errorf("ip --json: %v", j)
	}
	// The warning does not stop anything: a mapping is still made.
	ok(t, l, "add", "8080", "--external", "18080")
	ok(t, l, "delete", "18080/tcp")
}

// TestLabNoGateway: with no router daemon, discovery ends with exit 2 and a
// sentence saying what was tried.
func TestLabNoGateway(t *testing.T) {
	l := natlab.Start(t, natlab.Options{Router: natlab.RouterNone})
	r := pf(t, l, natlab.HostLAN, "ip", "--timeout", "1s")
	if r.code != exitNoGateway {
		t.Fatalf("want exit %d, got %v", exitNoGateway, r)
	}
	contains(t, "no gateway", r.stderr, "no gateway found", "SSDP", "NAT-PMP")
}

// waitFor polls cond every 50 ms until it holds or d passes.
func waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return cond()
}

// TestLabKeepAgainstMiniupnpd: `portfwd keep` makes the mapping, brings it
// back after someone deletes it on the router, and deletes it on exit.
func TestLabKeepAgainstMiniupnpd(t *testing.T) {
	l := natlab.Start(t, natlab.Options{})
	l.ServeTCP(t, natlab.HostLAN, ap(l.LANIP, 8080), "kept")
	keep := l.Start(t, natlab.HostLAN, portfwdBinary(t), "keep", "8080", "--external", "18090",
		"--check-interval", "300ms", "--no-cache", "--lease", "1h")
	if !waitFor(5*time.Second, func() bool { _, ok := reachTCP(t, l, 18090, 200*time.Millisecond); return ok }) {
		t.Fatalf("keep never made the mapping; its output:\n%s", keep.Output())
	}
	// Someone deletes it on the router: keep notices at its next check.
	deleted := time.Now()
	if out, err := l.Run(t, natlab.HostLAN, "upnpc", "-i", "-u", l.MiniupnpdURL(), "-d", "18090", "TCP"); err != nil {
		t.Fatalf("upnpc -d: %v\n%s", err, out)
	}
	if !waitFor(3*time.Second, func() bool { _, ok := reachTCP(t, l, 18090, 200*time.Millisecond); return ok }) {
		t.Fatalf("keep did not recreate the mapping; its output:\n%s", keep.Output())
	}
	t.Logf("mapping back %v after it was deleted (check interval 300 ms)", time.Since(deleted).Round(time.Millisecond))
	// The router has it back; keep knows once it says so. Stopping keep
	// between the two is another test's matter (a SIGTERM while a
	// re-creation is under way must not leak the mapping).
	if !waitFor(5*time.Second, func() bool { return strings.Contains(keep.Output(), "recreated") }) {
		t.Fatalf("keep never said it recreated the mapping; its output:\n%s", keep.Output())
	}
	keep.Stop() // SIGTERM: keep deletes the mapping on its way out
	out := keep.Output()
	contains(t, "keep output", out, "mapped "+l.RouterWANIP.String()+":18090/TCP", "lost the mapping", "recreated", "deleted")
	if _, ok := reachTCP(t, l, 18090, mustFail); ok {
		t.Fatalf("mapping still there after keep exited:\n%s", out)
	}
}

// TestLabPCPAgainstMiniupnpd maps over PCP, proves the mapping with TCP and
// UDP traffic, and deletes it from a later process by the nonce remembered
// in the state directory (a wrong nonce would be refused NOT_AUTHORIZED).
func TestLabPCPAgainstMiniupnpd(t *testing.T) {
	l := natlab.Start(t, natlab.Options{})
	pcpFlags := []string{"--protocol", "pcp"}
	r := ok(t, l, append([]string{"discover"}, pcpFlags...)...)
	contains(t, "discover pcp", r.stdout, "PCP", l.RouterLANIP.String()+":5351", "external IP: "+l.RouterWANIP.String())

	l.ServeTCP(t, natlab.HostLAN, ap(l.LANIP, 19100), "pcp-tcp")
	r = ok(t, l, append([]string{"add", "19100", "--external", "29100", "--lease", "10m"}, pcpFlags...)...)
	contains(t, "add pcp", r.stdout, l.RouterWANIP.String()+":29100/TCP", "PCP")
	if got, reached := reachTCP(t, l, 29100, mustWork); !reached || got != "pcp-tcp" {
		t.Fatalf("PCP TCP mapping: got %q (reached %v)", got, reached)
	}
	// Adding again refreshes with the same nonce (miniupnpd would refuse a
	// different one for the same internal port).
	ok(t, l, append([]string{"add", "19100", "--external", "29100", "--lease", "10m"}, pcpFlags...)...)
	ok(t, l, append([]string{"delete", "29100/tcp"}, pcpFlags...)...)
	if _, reached := reachTCP(t, l, 29100, mustFail); reached {
		t.Fatal("PCP mapping still reachable after delete")
	}

	l.ServeUDPEcho(t, natlab.HostLAN, ap(l.LANIP, 19101))
	ok(t, l, append([]string{"add", "19101", "--external", "29101", "--proto", "udp"}, pcpFlags...)...)
	if got, reached := reachUDP(t, l, 29101, mustWork); !reached || !strings.Contains(got, "ping") {
		t.Fatalf("PCP UDP mapping: got %q (reached %v)", got, reached)
	}
	ok(t, l, append([]string{"delete", "29101/udp"}, pcpFlags...)...)
	if _, reached := reachUDP(t, l, 29101, mustFail); reached {
		t.Fatal("PCP UDP mapping still reachable after delete")
	}
	// A mapping this host did not make through PCP cannot be deleted by it.
	if r := pf(t, l, natlab.HostLAN, append([]string{"delete", "29999/tcp"}, pcpFlags...)...); r.code == 0 ||
		!strings.Contains(r.stderr, "remembered") {
		t.Errorf("deleting an unknown PCP mapping: %v", r)
	}
}
