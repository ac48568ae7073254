package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/portfwd/portfwd/internal/natlab"
	"github.com/portfwd/portfwd/pcp"
)

// These tests run `portfwd gateway` on the home router of a double-NAT lab
// (natlab.StartDouble): its external address is 100.64.0.2, behind an ISP
// router running miniupnpd. With the default upstream = "auto" the gateway
// chains every mapping to the ISP's, so that the WAN host reaches the LAN
// host through both NATs, which no mapping on the home router alone does.

// doubleGateway starts the gateway on the home router with extra flags
// and waits until it chains to the ISP.
func doubleGateway(t *testing.T, d *natlab.Double, extra ...string) *labGateway {
	t.Helper()
	return doubleGatewayConf(t, d, gatewayConfig, extra...)
}

// doubleGatewayConf is doubleGateway with the configuration file's text.
func doubleGatewayConf(t *testing.T, d *natlab.Double, text string, extra ...string) *labGateway {
	t.Helper()
	conf := filepath.Join(d.RunDir, "gateway.toml")
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	g := &labGateway{l: d.Lab, stateDir: filepath.Join(d.RunDir, "gw"), args: append([]string{"gateway", "--config", conf,
		"--internal", natlab.RouterLANIf, "--external", natlab.RouterWANIf, "--backend", "nft",
		"--state-dir", filepath.Join(d.RunDir, "gw"), "--admin-ui", "-v"}, extra...)}
	g.start(t)
	waitLog(t, g, "chaining mappings to the router above", 10*time.Second)
	return g
}

// waitLog waits until the gateway's log holds s.
func waitLog(t *testing.T, g *labGateway, s string, within time.Duration) {
	t.Helper()
	if !waitFor(within, func() bool { return strings.Contains(g.proc.Output(), s) }) {
		t.Fatalf("the gateway never logged %q within %v:\n%s", s, within, tailOf(g.proc.Output(), 3000))
	}
}

func tailOf(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// reachPublic says whether a TCP connection from the WAN host to the ISP's
// public address and port reaches a LAN server, and what it said.
func reachPublic(t *testing.T, d *natlab.Double, port uint16, within time.Duration) (string, bool) {
	t.Helper()
	banner, err := d.DialTCP(t, natlab.HostWAN, ap(d.ISPOutsideIP, port), within)
	return banner, err == nil
}

func reachPublicUDP(t *testing.T, d *natlab.Double, port uint16, within time.Duration) (string, bool) {
	t.Helper()
	got, err := d.ProbeUDP(t, natlab.HostWAN, ap(d.ISPOutsideIP, port), "ping", within)
	return got, err == nil
}

func hasMapping(ms []string, want string) bool { return slices.Contains(ms, want) }

// TestLabGatewayChainsToTheRouterAbove is issue 15's proof: upnpc,
// natpmpc and our own client on the LAN get mappings the WAN host reaches
// through both NATs, see the ISP's public address, delete both halves;
// a port held upstream gets a clear answer; the ISP restarting with its
// state lost is repaired at once; kill -9 of the gateway neither loses
// nor leaks an upstream mapping.
func TestLabGatewayChainsToTheRouterAbove(t *testing.T) {
	natlab.Require(t, "upnpc", "natpmpc")
	d := natlab.StartDouble(t, natlab.DoubleOptions{})
	// --check says what will happen, without asking anything upstream.
	r := pf(t, d.Lab, natlab.HostRouter, "gateway", "--check", "--internal", natlab.RouterLANIf, "--external", natlab.RouterWANIf,
		"--backend", "nft", "--state-dir", filepath.Join(d.RunDir, "gw"))
	contains(t, "gateway --check", r.stdout, "upstream = auto: 100.64.0.2 on wan0 is CGNAT, so the gateway will ask the router above (100.64.0.1, the default gateway of wan0)")
	g := doubleGateway(t, d)
	d.ServeTCP(t, natlab.HostLAN, ap(d.LANIP, 8080), "lan-8080")
	d.ServeTCP(t, natlab.HostLAN, ap(d.LANIP, 8081), "lan-8081")
	d.ServeTCP(t, natlab.HostLAN, ap(d.LANIP, 8082), "lan-8082")
	d.ServeUDPEcho(t, natlab.HostLAN, ap(d.LANIP, 9000))
	desc := fmt.Sprintf("http://%s:5000/rootDesc.xml", d.RouterLANIP)
	public := d.ISPOutsideIP.String()
	home := d.RouterWANIP.String()

	// The LAN sees the ISP's public address, over every protocol.
	out := lanRun(t, d.Lab, "upnpc", "-i", "-u", desc, "-s")
	contains(t, "upnpc -s", out, "ExternalIPAddress = "+public)
	out = lanRun(t, d.Lab, "natpmpc", "-g", d.RouterLANIP.String())
	contains(t, "natpmpc", out, "Public IP address : "+public)
	if r := ok(t, d.Lab, "ip", "--protocol", "pcp"); strings.TrimSpace(r.stdout) != public {
		t.Errorf("portfwd ip over PCP: %q, want %s", r.stdout, public)
	}

	// Nothing reaches the LAN before a mapping.
	if _, reached := reachPublic(t, d, 18080, mustFail); reached {
		t.Fatal("the WAN host reaches the LAN with no mapping")
	}

	// upnpc: exactly the port asked, on both levels.
	out = lanRun(t, d.Lab, "upnpc", "-i", "-u", desc, "-e", "chained", "-a", d.LANIP.String(), "8080", "18080", "TCP", "3600")
	contains(t, "upnpc -a", out, "external "+public+":18080 TCP is redirected to internal "+d.LANIP.String()+":8080")
	if got, reached := reachPublic(t, d, 18080, mustWork); !reached || got != "lan-8080" {
		t.Fatalf("upnpc's mapping through both NATs: got %q (reached %v)", got, reached)
	}
	if ms := d.ISPMappings(t); !hasMapping(ms, "TCP 18080->"+home+":18080") {
		t.Errorf("the ISP's table lacks the upstream half: %v", ms)
	}

	// natpmpc: UDP, reached on the port the answer names.
	out = lanRun(t, d.Lab, "natpmpc", "-g", d.RouterLANIP.String(), "-a", "19000", "9000", "udp", "3600")
	contains(t, "natpmpc -a", out, "Mapped public port 19000 protocol UDP to local port 9000")
	if got, reached := reachPublicUDP(t, d, 19000, mustWork); !reached || !strings.Contains(got, "ping") {
		t.Fatalf("natpmpc's mapping through both NATs: got %q (reached %v)", got, reached)
	}

	// Our own client, over PCP: the answer carries the public address.
	r = ok(t, d.Lab, "add", "8081", "--external", "18081", "--lease", "10m", "--protocol", "pcp")
	contains(t, "portfwd add over PCP", r.stdout, public+":18081/TCP")
	if got, reached := reachPublic(t, d, 18081, mustWork); !reached || got != "lan-8081" {
		t.Fatalf("our client's mapping through both NATs: got %q (reached %v)", got, reached)
	}

	// A port the ISP holds (its own service listens there): upnpc's exact
	// request is refused (718) and nothing is installed at home; NAT-PMP
	// gets another port, which the WAN host reaches.
	held, err := d.Listen(natlab.HostISP, "tcp4", ap(d.ISPOutsideIP, 18082).String())
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	out, _ = d.Run(t, natlab.HostLAN, "upnpc", "-i", "-u", desc, "-a", d.LANIP.String(), "8082", "18082", "TCP", "3600")
	contains(t, "upnpc -a of a port held upstream", out, "718")
	if strings.Contains(d.NftRuleset(t), "18082") {
		t.Errorf("a refused chained add left a rule at home:\n%s", d.NftRuleset(t))
	}
	out = lanRun(t, d.Lab, "natpmpc", "-g", d.RouterLANIP.String(), "-a", "18082", "8082", "tcp", "3600")
	m := regexp.MustCompile(`Mapped public port (\d+) protocol TCP to local port 8082`).FindStringSubmatch(out)
	if m == nil || m[1] == "18082" {
		t.Fatalf("natpmpc for a port held upstream: want another public port:\n%s", out)
	}
	var other uint16
	fmt.Sscan(m[1], &other)
	if got, reached := reachPublic(t, d, other, mustWork); !reached || got != "lan-8082" {
		t.Fatalf("the other port NAT-PMP was given (%d) does not reach the LAN: %q", other, got)
	}

	// The admin side shows both halves and the upstream.
	metrics := g.metrics(t)
	contains(t, "/metrics", metrics, `portfwd_upstream_up{method="pcp"} 1`, `portfwd_upstream_mappings 4`)

	// Delete removes both halves.
	lanRun(t, d.Lab, "upnpc", "-i", "-u", desc, "-d", "18080", "TCP")
	if ms := d.ISPMappings(t); hasMapping(ms, "TCP 18080->"+home+":18080") {
		t.Errorf("the upstream half outlived the delete: %v", ms)
	}
	if _, reached := reachPublic(t, d, 18080, mustFail); reached {
		t.Error("18080 still reachable after delete")
	}

	// The ISP reboots, losing every mapping: its PCP ANNOUNCE makes the
	// gateway make them again.
	before := d.ISPMappings(t)
	d.RestartISP(t)
	restarted := time.Now()
	back := waitFor(10*time.Second, func() bool {
		_, reached := reachPublic(t, d, 18081, 100*time.Millisecond)
		return reached
	})
	took := time.Since(restarted)
	if !back {
		t.Fatalf("after the ISP's restart 18081 never came back; gateway log:\n%s", tailOf(g.proc.Output(), 4000))
	}
	waitLog(t, g, "the router above announced a restart", 5*time.Second)
	t.Logf("timing: traffic back %v after the restarted ISP enabled forwarding", took.Round(time.Millisecond))
	for _, line := range strings.Split(g.proc.Output(), "\n") {
		if strings.Contains(line, "router above") && !strings.Contains(line, "level=DEBUG") {
			t.Logf("gateway: %s", line)
		}
	}
	if !waitFor(5*time.Second, func() bool { return sameSet(d.ISPMappings(t), before) }) {
		t.Errorf("after the ISP's restart its table is %v, want %v", d.ISPMappings(t), before)
	}

	// kill -9 of the gateway and a restart: the ISP's table is the same,
	// nothing lost, nothing leaked, and traffic flows.
	before = d.ISPMappings(t)
	syscall.Kill(g.proc.PID(), syscall.SIGKILL)
	<-g.proc.Done()
	g.start(t)
	waitLog(t, g, "chaining mappings to the router above", 10*time.Second)
	waitLog(t, g, "made the mappings' halves on the router above again", 10*time.Second)
	if after := d.ISPMappings(t); !sameSet(after, before) {
		t.Errorf("after kill -9 and restart the ISP holds %v, want %v", after, before)
	}
	if got, reached := reachPublic(t, d, 18081, mustWork); !reached || got != "lan-8081" {
		t.Errorf("after kill -9 and restart: %q (reached %v)", got, reached)
	}

	// Deleting the rest leaves the ISP empty.
	ok(t, d.Lab, "delete", "18081/tcp", "--protocol", "pcp")
	lanRun(t, d.Lab, "natpmpc", "-g", d.RouterLANIP.String(), "-a", "19000", "9000", "udp", "0")
	lanRun(t, d.Lab, "natpmpc", "-g", d.RouterLANIP.String(), "-a", fmt.Sprint(other), "8082", "tcp", "0")
	if ms := d.ISPMappings(t); len(ms) != 0 {
		t.Errorf("after deleting everything the ISP still holds %v", ms)
	}
	g.stop(t)
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// TestLabGatewayUpstreamDownAndBack: while the router above is dead, new
// mappings are refused with each protocol's transient code (nothing is
// granted that the Internet cannot reach), /metrics says so; once it is
// back they are granted again.
func TestLabGatewayUpstreamDownAndBack(t *testing.T) {
	natlab.Require(t, "upnpc", "natpmpc")
	d := natlab.StartDouble(t, natlab.DoubleOptions{})
	g := doubleGateway(t, d)
	d.ServeTCP(t, natlab.HostLAN, ap(d.LANIP, 8080), "lan-8080")
	desc := fmt.Sprintf("http://%s:5000/rootDesc.xml", d.RouterLANIP)

	d.StopISP(t)
	out, _ := d.Run(t, natlab.HostLAN, "upnpc", "-i", "-u", desc, "-a", d.LANIP.String(), "8080", "18080", "TCP", "3600")
	contains(t, "upnpc -a with the router above down", out, "501")
	out, err := d.Run(t, natlab.HostLAN, "natpmpc", "-g", d.RouterLANIP.String(), "-a", "18081", "8080", "tcp", "3600")
	contains(t, "natpmpc -a with the router above down", fmt.Sprint(out, err), "network failure")
	if strings.Contains(d.NftRuleset(t), "18080") || strings.Contains(d.NftRuleset(t), "18081") {
		t.Errorf("a refused chained add left a rule at home")
	}
	contains(t, "/metrics", g.metrics(t), `portfwd_upstream_up{method="pcp"} 0`)

	d.RestartISP(t)
	if !waitFor(10*time.Second, func() bool { return strings.Contains(g.metrics(t), `portfwd_upstream_up{method="pcp"} 1`) }) {
		t.Fatalf("the router above is back but the gateway does not say so:\n%s", tailOf(g.proc.Output(), 3000))
	}
	lanRun(t, d.Lab, "upnpc", "-i", "-u", desc, "-a", d.LANIP.String(), "8080", "18080", "TCP", "3600")
	if got, reached := reachPublic(t, d, 18080, mustWork); !reached || got != "lan-8080" {
		t.Fatalf("after the router above came back: %q (reached %v)", got, reached)
	}
	lanRun(t, d.Lab, "upnpc", "-i", "-u", desc, "-d", "18080", "TCP")

	// A lease that runs out takes its upstream half with it.
	lanRun(t, d.Lab, "natpmpc", "-g", d.RouterLANIP.String(), "-a", "18090", "8080", "tcp", "2")
	if ms := d.ISPMappings(t); !hasMapping(ms, "TCP 18090->"+d.RouterWANIP.String()+":18090") {
		t.Fatalf("the ISP lacks the short lease's half: %v", ms)
	}
	if !waitFor(10*time.Second, func() bool { return len(d.ISPMappings(t)) == 0 }) {
		t.Errorf("the lease expired at home but the ISP still holds %v; gateway log:\n%s", d.ISPMappings(t), tailOf(g.proc.Output(), 3000))
	}
	g.stop(t)
}

// TestLabGatewayUpstreamMethods: the same chained mapping over each
// protocol the router above speaks, chosen by upstream = natpmp | upnp,
// and upstream = off keeps mappings local (reachable from the ISP's side
// only, the classic trap).
func TestLabGatewayUpstreamMethods(t *testing.T) {
	natlab.Require(t, "upnpc")
	d := natlab.StartDouble(t, natlab.DoubleOptions{})
	d.ServeTCP(t, natlab.HostLAN, ap(d.LANIP, 8080), "lan-8080")
	desc := fmt.Sprintf("http://%s:5000/rootDesc.xml", d.RouterLANIP)
	home := d.RouterWANIP.String()
	for _, mode := range []string{"natpmp", "upnp", d.ISPURL()} {
		method := mode
		if strings.HasPrefix(mode, "http://") {
			method = "upnp" // the router above named by its description URL
		}
		g := doubleGateway(t, d, "--upstream", mode)
		contains(t, "gateway log", g.proc.Output(), "method="+method)
		lanRun(t, d.Lab, "upnpc", "-i", "-u", desc, "-a", d.LANIP.String(), "8080", "18080", "TCP", "3600")
		if got, reached := reachPublic(t, d, 18080, mustWork); !reached || got != "lan-8080" {
			t.Fatalf("upstream %s: %q (reached %v)", method, got, reached)
		}
		ms := d.ISPMappings(t)
		if !hasMapping(ms, "TCP 18080->"+home+":18080") {
			t.Errorf("upstream %s: the ISP holds %v", method, ms)
		}
		lanRun(t, d.Lab, "upnpc", "-i", "-u", desc, "-d", "18080", "TCP")
		if ms := d.ISPMappings(t); len(ms) != 0 {
			t.Errorf("upstream %s: after delete the ISP holds %v", method, ms)
		}
		g.stop(t)
		os.RemoveAll(g.stateDir)
	}

	g := &labGateway{l: d.Lab, stateDir: filepath.Join(d.RunDir, "gw"), args: []string{"gateway", "--config", filepath.Join(d.RunDir, "gateway.toml"),
		"--internal", natlab.RouterLANIf, "--external", natlab.RouterWANIf, "--backend", "nft",
		"--state-dir", filepath.Join(d.RunDir, "gw"), "--upstream", "off", "-v"}}
	g.start(t)
	lanRun(t, d.Lab, "upnpc", "-i", "-u", desc, "-a", d.LANIP.String(), "8080", "18080", "TCP", "3600")
	if _, reached := reachPublic(t, d, 18080, mustFail); reached {
		t.Error("upstream = off: the WAN host reached a local-only mapping through the ISP")
	}
	if got, err := d.DialTCP(t, natlab.HostISP, ap(d.RouterWANIP, 18080), mustWork); err != nil || got != "lan-8080" {
		t.Errorf("upstream = off: the local mapping does not work from the ISP's side: %q, %v", got, err)
	}
	if ms := d.ISPMappings(t); len(ms) != 0 {
		t.Errorf("upstream = off: the ISP holds %v", ms)
	}
	g.stop(t)
}

// TestLabGatewayKill9WithChainedAddsInFlight: PCP clients add mappings as
// fast as they can while the gateway is killed (SIGKILL); after the
// restart the ISP holds exactly the halves of the mappings the gateway
// holds: none leaked (an intent journaled, asked upstream, never
// committed is deleted) and none lost.
func TestLabGatewayKill9WithChainedAddsInFlight(t *testing.T) {
	d := natlab.StartDouble(t, natlab.DoubleOptions{})
	g := doubleGateway(t, d)
	c := &pcp.Client{Gateway: netip.AddrPortFrom(d.RouterLANIP, pcp.ServerPort), MaxTries: 1,
		Dial: func(ctx context.Context, network, address string) (net.Conn, error) {
			return d.DialContext(ctx, natlab.HostLAN, network, address)
		}}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var granted atomic.Int64
	// The kill comes once killAfter adds were granted (a number drawn
	// anew each run, so that it lands at different points of the other
	// clients' adds in flight).
	killAfter := int64(30 + rand.IntN(30))
	enough := make(chan struct{})
	var once sync.Once
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil && i < 500; i++ {
				port := uint16(30000 + w*1000 + i)
				if _, err := c.Map(ctx, pcp.MapRequest{Protocol: pcp.TCP, InternalPort: port, SuggestedExternalPort: port, Lifetime: time.Hour}); err == nil {
					if granted.Add(1) >= killAfter {
						once.Do(func() { close(enough) })
					}
				}
			}
		}()
	}
	select {
	case <-enough:
	case <-time.After(30 * time.Second):
		cancel()
		wg.Wait()
		t.Fatalf("only %d chained adds granted in 30 s; gateway log:\n%s", granted.Load(), tailOf(g.proc.Output(), 3000))
	}
	syscall.Kill(g.proc.PID(), syscall.SIGKILL)
	<-g.proc.Done()
	cancel()
	wg.Wait()
	t.Logf("%d chained adds granted before the kill", granted.Load())

	g.start(t)
	waitLog(t, g, "chaining mappings to the router above", 10*time.Second)
	waitLog(t, g, "reason=start", 10*time.Second)
	home := metricValue(g.metrics(t), "portfwd_upstream_mappings ")
	if home < int(granted.Load()) {
		t.Errorf("after kill -9 and restart the gateway holds %d chained mappings, fewer than the %d granted: some were lost", home, granted.Load())
	}
	isp := d.ISPMappings(t)
	if len(isp) != home {
		// Give the router above a moment, and say which ports differ.
		waitFor(5*time.Second, func() bool { isp = d.ISPMappings(t); return len(isp) == home })
	}
	if len(isp) != home {
		seen, installed := map[string]bool{}, map[string]bool{}
		for _, m := range isp {
			seen[strings.Fields(m)[1]] = true
		}
		for _, line := range strings.Split(g.proc.Output(), "\n") {
			if m := regexp.MustCompile(`mapping installed.*rule="TCP (\d+) `).FindStringSubmatch(line); m != nil {
				installed[m[1]+"->"+d.RouterWANIP.String()+":"+m[1]] = true
				if !seen[m[1]+"->"+d.RouterWANIP.String()+":"+m[1]] {
					t.Logf("installed at home, missing on the ISP: %s", m[1])
				}
			}
		}
		for m := range seen {
			if !installed[m] {
				t.Logf("on the ISP, not installed at home: %s", m)
			}
		}
	}
	orphans := regexp.MustCompile(`never recorded as granted.*count=(\d+)`).FindStringSubmatch(g.proc.Output())
	t.Logf("after the restart: %d chained mappings at home, %d on the ISP; uncommitted intents deleted upstream: %v", home, len(isp), orphans)
	if len(isp) != home {
		t.Errorf("after kill -9 and restart the ISP holds %d mappings for this router, the gateway %d: leaked or lost halves", len(isp), home)
	}
	g.stop(t)
}

// TestLabGatewayNoticesAUPnPOnlyRouterAboveRestarting: the ISP's miniupnpd
// speaks UPnP only (no NAT-PMP/PCP, so no ANNOUNCE) and restarts with its
// state lost. The gateway hears its SSDP NOTIFY with a new BOOTID.UPNP.ORG
// on the external interface and makes the half again at once: the check
// interval is ten minutes, so nothing else can explain it.
func TestLabGatewayNoticesAUPnPOnlyRouterAboveRestarting(t *testing.T) {
	natlab.Require(t, "upnpc")
	d := natlab.StartDouble(t, natlab.DoubleOptions{ISPConf: func(c *natlab.Conf) { c.EnableNATPMP = false }})
	g := doubleGatewayConf(t, d, "upstream_check_interval = \"10m\"\n"+gatewayConfig)
	contains(t, "gateway log", g.proc.Output(), "method=upnp")
	d.ServeTCP(t, natlab.HostLAN, ap(d.LANIP, 8080), "lan-8080")
	desc := fmt.Sprintf("http://%s:5000/rootDesc.xml", d.RouterLANIP)
	lanRun(t, d.Lab, "upnpc", "-i", "-u", desc, "-a", d.LANIP.String(), "8080", "18080", "TCP", "3600")
	if got, reached := reachPublic(t, d, 18080, mustWork); !reached || got != "lan-8080" {
		t.Fatalf("before the restart: %q (reached %v)", got, reached)
	}
	want := "TCP 18080->" + d.RouterWANIP.String() + ":18080"

	// Someone deletes the half on the ISP router: its UPnP event
	// (PortMappingNumberOfEntries) tells the gateway, which makes it again.
	waitLog(t, g, "subscribed to the router above's events", 5*time.Second)
	if _, err := d.Run(t, natlab.HostRouter, "upnpc", "-i", "-m", natlab.RouterWANIf, "-u", d.ISPURL(), "-d", "18080", "TCP"); err != nil {
		t.Fatal(err)
	}
	deleted := time.Now()
	if !waitFor(5*time.Second, func() bool { return hasMapping(d.ISPMappings(t), want) }) {
		t.Fatalf("the half deleted on the ISP was not made again (ISP holds %v); gateway log:\n%s", d.ISPMappings(t), tailOf(g.proc.Output(), 3000))
	}
	t.Logf("timing: half deleted on the ISP by hand back %v later", time.Since(deleted).Round(time.Millisecond))
	contains(t, "gateway log", g.proc.Output(), "holds fewer mappings than this router's halves there")

	d.RestartISP(t)
	back := time.Now()
	if !waitFor(5*time.Second, func() bool { return hasMapping(d.ISPMappings(t), want) }) {
		t.Fatalf("the restarted ISP never got the half back (ISP holds %v); gateway log:\n%s", d.ISPMappings(t), tailOf(g.proc.Output(), 3000))
	}
	after := time.Since(back)
	if got, reached := reachPublic(t, d, 18080, mustWork); !reached || got != "lan-8080" {
		t.Fatalf("after the restart: %q (reached %v)", got, reached)
	}
	out := g.proc.Output()
	contains(t, "gateway log", out, "SSDP BOOTID.UPNP.ORG changed")
	took := regexp.MustCompile(`halves on the router above again" reason=restart count=\d+ failed=0 public_changed=\d+ took=(\S+)`).FindStringSubmatch(out)
	if took == nil {
		t.Fatalf("no re-creation after the restart in the gateway log:\n%s", tailOf(out, 3000))
	}
	t.Logf("timing: half back on the ISP %v after its miniupnpd enabled forwarding; re-creation took %s after the NOTIFY", after.Round(time.Millisecond), took[1])

	// The restarted ISP forgot the event subscription; the gateway made
	// it anew, so a half deleted by hand comes back again.
	if !waitFor(5*time.Second, func() bool { return strings.Count(g.proc.Output(), "subscribed to the router above's events") >= 2 }) {
		t.Fatalf("no new event subscription after the ISP restarted; gateway log:\n%s", tailOf(g.proc.Output(), 3000))
	}
	if _, err := d.Run(t, natlab.HostRouter, "upnpc", "-i", "-m", natlab.RouterWANIf, "-u", d.ISPURL(), "-d", "18080", "TCP"); err != nil {
		t.Fatal(err)
	}
	if !waitFor(5*time.Second, func() bool { return hasMapping(d.ISPMappings(t), want) }) {
		t.Fatalf("after the restart, a half deleted on the ISP was not made again (ISP holds %v)", d.ISPMappings(t))
	}
	g.stop(t)
}
