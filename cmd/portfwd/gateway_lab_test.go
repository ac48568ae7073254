package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/portfwd/portfwd/internal/natlab"
)

// These tests run `portfwd gateway` on the lab's router (nft backend) and
// prove it with clients we did not write: upnpc, natpmpc and
// python3-miniupnpc, then with our own CLI. Every mapping must carry real
// traffic from the WAN host to a LAN server, and stop carrying it once
// deleted or expired. CI runs them with PORTFWD_LAB_REQUIRED=1.

// labGateway is a portfwd gateway running on the lab's router.
type labGateway struct {
	l    *natlab.Lab
	proc *natlab.Process
	// args are portfwd's, from "gateway" on.
	args []string
	// bin, when set, is the gateway-only program (cmd/portfwd-gateway)
	// that runs instead of `portfwd gateway`, with args[1:].
	bin      string
	stateDir string
}

// routerBuildEnv, set to 1, runs every lab gateway as the router build
// (routerGatewayBinary) rather than `portfwd gateway`: the lab tests of
// the gateway against the binary a router's flash gets.
const routerBuildEnv = "PORTFWD_LAB_ROUTER_BUILD"

// routerGatewayBinary is cmd/portfwd-gateway as scripts/release.sh builds
// it for a router: on internal/httpx's own HTTP, without net/http.
func routerGatewayBinary(t testing.TB) string {
	return natlab.GoBuildTags(t, "github.com/portfwd/portfwd/cmd/portfwd-gateway", "gatewayonly,nethttpomithttp2")
}

// gatewayConfig is the lab gateway's configuration file: everything else
// comes from flags, as an operator would do. min_lease is low so that
// expiry can be seen within the test.
const gatewayConfig = `
[policy]
min_lease = "1s"
rules = [
  "allow 1024-65535 10.77.0.0/24 1024-65535",
  "deny 0-65535 0.0.0.0/0 0-65535",
]

[device]
friendly_name = "natlab portfwd gateway"
`

// gatewayArgs are the command line of the lab gateway, after "gateway".
func gatewayArgs(t *testing.T, l *natlab.Lab, extra ...string) []string {
	t.Helper()
	return gatewayArgsWithPolicy(t, l, "", extra...)
}

// gatewayArgsWithPolicy is gatewayArgs with more [policy] keys in the
// configuration file, such as "max_per_client = 0".
// startUnlimitedGateway starts a lab whose router runs only our gateway,
// and the gateway there (nft backend, state in RunDir/gw) without the
// per-client quota, for the tests whose one host or few hosts make
// thousands of mappings.
func startUnlimitedGateway(t *testing.T) (*natlab.Lab, *labGateway) {
	t.Helper()
	l := natlab.Start(t, natlab.Options{Router: natlab.RouterNone})
	g := &labGateway{l: l, args: gatewayArgsWithPolicy(t, l, "max_per_client = 0"), stateDir: filepath.Join(l.RunDir, "gw")}
	g.start(t)
	return l, g
}

func gatewayArgsWithPolicy(t *testing.T, l *natlab.Lab, policy string, extra ...string) []string {
	t.Helper()
	conf := filepath.Join(l.RunDir, "gateway.toml")
	text := strings.Replace(gatewayConfig, "[policy]\n", "[policy]\n"+policy+"\n", 1)
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return append([]string{"gateway", "--config", conf,
		"--internal", natlab.RouterLANIf, "--external", natlab.RouterWANIf,
		"--external-ip", l.RouterWANIP.String(), "--backend", "nft",
		"--state-dir", filepath.Join(l.RunDir, "gw"), "-v"}, extra...)
}

// startGateway starts the gateway in the router namespace and waits until
// its HTTP port answers from the LAN.
func startGateway(t *testing.T, l *natlab.Lab, extra ...string) *labGateway {
	t.Helper()
	g := &labGateway{l: l, args: gatewayArgs(t, l, extra...), stateDir: filepath.Join(l.RunDir, "gw")}
	g.start(t)
	return g
}

func (g *labGateway) start(t *testing.T) {
	t.Helper()
	bin, args := portfwdBinary(t), g.args // built once per test process; not part of the timing
	if g.bin == "" && os.Getenv(routerBuildEnv) == "1" {
		g.bin = routerGatewayBinary(t)
	}
	if g.bin != "" && len(args) > 0 && args[0] == "gateway" {
		bin, args = g.bin, args[1:]
		t.Logf("the gateway is the router build, %s", filepath.Base(bin))
	}
	began := time.Now()
	g.proc = g.l.Start(t, natlab.HostRouter, bin, args...)
	g.l.WaitTCP(t, natlab.HostLAN, ap(g.l.RouterLANIP, 5000), 10*time.Second, g.proc)
	t.Logf("timing: gateway up (HTTP answering on the LAN) %v after start", time.Since(began).Round(time.Millisecond))
}

// stop sends SIGTERM and waits for the exit, which must be clean, with
// nothing logged at error level on the way.
func (g *labGateway) stop(t *testing.T) {
	t.Helper()
	g.proc.Stop()
	out := g.proc.Output()
	if _, err := g.proc.Exited(); err != nil {
		t.Errorf("gateway exited with %v; output:\n%s", err, out)
	}
	if strings.Contains(out, "level=ERROR") {
		t.Errorf("the gateway logged errors:\n%s", out)
	}
	if !strings.Contains(out, "gateway stopping") {
		t.Errorf("the gateway did not log its shutdown:\n%s", out)
	}
}

// run runs a command on the LAN host and fails the test if it fails.
func lanRun(t *testing.T, l *natlab.Lab, name string, args ...string) string {
	t.Helper()
	out, err := l.Run(t, natlab.HostLAN, name, args...) // logs the command and its duration
	if err != nil {
		t.Fatalf("%v\noutput:\n%s", err, out)
	}
	return out
}

// metrics scrapes the gateway's /metrics on its admin address, inside the
// router namespace.
func (g *labGateway) metrics(t *testing.T) string {
	t.Helper()
	c := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return g.l.DialContext(ctx, natlab.HostRouter, network, addr)
		},
	}}
	resp, err := c.Get("http://127.0.0.1:8900/metrics")
	if err != nil {
		t.Fatalf("scraping /metrics: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// metricValue returns the value of the sample whose line starts with
// prefix, or -1.
func metricValue(metrics, prefix string) int {
	for _, line := range strings.Split(metrics, "\n") {
		if strings.HasPrefix(line, prefix) {
			f := strings.Fields(line)
			n, err := strconv.Atoi(f[len(f)-1])
			if err == nil {
				return n
			}
		}
	}
	return -1
}

// TestLabGatewayInterop is the gateway's end-to-end proof against
// third-party clients, on one lab and one gateway, step by step.
func TestLabGatewayInterop(t *testing.T) {
	l := natlab.Start(t, natlab.Options{Router: natlab.RouterNone})
	natlab.Require(t, "upnpc", "natpmpc")
	ext := l.RouterWANIP.String()
	lan := l.LANIP.String()

	// --check passes on the lab router: its forward chain has policy drop
	// but accepts DNATed connections, as OpenWrt's fw4 does.
	out, err := l.Run(t, natlab.HostRouter, portfwdBinary(t), gatewayArgs(t, l, "--check")...)
	if err != nil {
		t.Fatalf("gateway --check failed on the lab router: %v\n%s", err, out)
	}
	contains(t, "--check", out, "nftables: forwarded connections will be accepted", "the gateway is ready to start")

	g := startGateway(t, l)
	l.ServeTCP(t, natlab.HostLAN, ap(l.LANIP, 8080), "lan-8080")
	l.ServeUDPEcho(t, natlab.HostLAN, ap(l.LANIP, 19001))
	l.ServeUDPEcho(t, natlab.HostLAN, ap(l.LANIP, 19002))

	t.Run("upnpc", func(t *testing.T) {
		// SSDP discovery, no -u. -i: miniupnpc treats a TEST-NET external
		// address as "not connected" and would stop there.
		out := lanRun(t, l, "upnpc", "-i", "-l")
		contains(t, "upnpc -l", out, "desc: http://"+l.RouterLANIP.String()+":5000/rootDesc.xml",
			"ExternalIPAddress = "+ext)
		if _, reached := reachTCP(t, l, 18080, mustFail); reached {
			t.Fatal("18080 reachable before any mapping")
		}
		lanRun(t, l, "upnpc", "-i", "-e", "t", "-a", lan, "8080", "18080", "TCP")
		if got, reached := reachTCP(t, l, 18080, mustWork); !reached || got != "lan-8080" {
			t.Fatalf("after upnpc -a, WAN -> %s:18080 got %q (reached %v)", ext, got, reached)
		}
		contains(t, "upnpc -l after add", lanRun(t, l, "upnpc", "-i", "-l"), "18080->"+lan+":8080", "'t'")
		lanRun(t, l, "upnpc", "-i", "-d", "18080", "TCP")
		if _, reached := reachTCP(t, l, 18080, mustFail); reached {
			t.Fatal("18080 still reachable after upnpc -d")
		}
		// The policy's rules: port 80 is outside what the LAN may map.
		out, _ = l.Run(t, natlab.HostLAN, "upnpc", "-i", "-a", lan, "8080", "80", "TCP")
		contains(t, "upnpc -a on a denied port", out, "failed with code 606")
		if _, reached := reachTCP(t, l, 80, mustFail); reached {
			t.Error("port 80 forwarded although the rules deny it")
		}
	})

	t.Run("natpmpc", func(t *testing.T) {
		// The public port comes first: public 9001 -> private 19001.
		out := lanRun(t, l, "natpmpc", "-g", l.RouterLANIP.String(), "-a", "9001", "19001", "udp", "3600")
		contains(t, "natpmpc -a", out, "Public IP address : "+ext, "Mapped public port 9001 protocol UDP to local port 19001")
		if got, reached := reachUDP(t, l, 9001, mustWork); !reached || got != "ping" {
			t.Fatalf("NAT-PMP UDP mapping: got %q (reached %v)", got, reached)
		}
		lanRun(t, l, "natpmpc", "-g", l.RouterLANIP.String(), "-a", "9001", "19001", "udp", "0")
		if _, reached := reachUDP(t, l, 9001, mustFail); reached {
			t.Fatal("UDP 9001 still forwarded after natpmpc deleted it")
		}
	})

	t.Run("python-miniupnpc", func(t *testing.T) {
		script := `
import miniupnpc
u = miniupnpc.UPnP(); u.discoverdelay = 200
print('devices', u.discover())
print('igd', u.selectigd())
print('extip', u.externalipaddress())
print('add', u.addportmapping(18081, 'TCP', u.lanaddr, 8080, 'python', ''))
i = 0
while True:
    e = u.getgenericportmapping(i)
    if e is None: break
    print('entry', i, e); i += 1
print('count', i)
`
		out := lanRun(t, l, "/usr/bin/python3", "-c", script)
		contains(t, "python", out, "igd http://"+l.RouterLANIP.String()+":5000/ctl/IPConn", "extip "+ext,
			"add True", "(18081, 'TCP', ('"+lan+"', 8080), 'python'", "count 1")
		if got, reached := reachTCP(t, l, 18081, mustWork); !reached || got != "lan-8080" {
			t.Fatalf("python mapping: got %q (reached %v)", got, reached)
		}
		out = lanRun(t, l, "/usr/bin/python3", "-c", `
import miniupnpc
u = miniupnpc.UPnP(); u.discoverdelay = 200; u.discover(); u.selectigd()
print('delete', u.deleteportmapping(18081, 'TCP'))
print('after', u.getgenericportmapping(0))`)
		contains(t, "python delete", out, "delete True", "after None")
		if _, reached := reachTCP(t, l, 18081, mustFail); reached {
			t.Fatal("18081 still reachable after python deleted it")
		}
	})

	t.Run("portfwd-client", func(t *testing.T) {
		r := ok(t, l, "discover", "--protocol", "upnp")
		contains(t, "discover", r.stdout, "http://"+l.RouterLANIP.String()+":5000/ctl/IPConn",
			"WANIPConnection:2", "connected (Connected)", "external IP: "+ext)
		contains(t, "info", ok(t, l, "info").stdout, "natlab portfwd gateway")
		ok(t, l, "add", "8080", "--external", "18082", "--desc", "ours", "--lease", "1h")
		if got, reached := reachTCP(t, l, 18082, mustWork); !reached || got != "lan-8080" {
			t.Fatalf("after add, got %q (reached %v)", got, reached)
		}
		contains(t, "list", ok(t, l, "list").stdout, "18082", lan+":8080", "ours")
		// NewEnabled=0: the entry stays in the table but forwards nothing.
		ok(t, l, "edit", "18082/tcp", "--enabled=false")
		if _, reached := reachTCP(t, l, 18082, mustFail); reached {
			t.Error("a disabled mapping still forwards")
		}
		contains(t, "list disabled", ok(t, l, "list").stdout, "18082", "no")
		ok(t, l, "edit", "18082/tcp", "--enabled=true")
		if _, reached := reachTCP(t, l, 18082, mustWork); !reached {
			t.Error("re-enabled mapping does not forward")
		}
		ok(t, l, "delete", "18082/tcp")
		if _, reached := reachTCP(t, l, 18082, mustFail); reached {
			t.Fatal("18082 still reachable after delete")
		}
		// Over NAT-PMP too.
		ok(t, l, "add", "19002", "--external", "9003", "--proto", "udp", "--protocol", "natpmp")
		if _, reached := reachUDP(t, l, 9003, mustWork); !reached {
			t.Fatal("NAT-PMP mapping from our client does not forward")
		}
		ok(t, l, "delete", "9003/udp", "--protocol", "natpmp")
		if _, reached := reachUDP(t, l, 9003, mustFail); reached {
			t.Fatal("9003/udp still forwarded after delete")
		}
	})

	t.Run("pcp", func(t *testing.T) {
		pcpFlags := []string{"--protocol", "pcp"}
		contains(t, "discover pcp", ok(t, l, append([]string{"discover"}, pcpFlags...)...).stdout,
			"PCP", l.RouterLANIP.String()+":5351", "external IP: "+ext)
		r := ok(t, l, append([]string{"add", "8080", "--external", "18084", "--lease", "10m"}, pcpFlags...)...)
		contains(t, "add pcp", r.stdout, ext+":18084/TCP")
		if got, reached := reachTCP(t, l, 18084, mustWork); !reached || got != "lan-8080" {
			t.Fatalf("PCP mapping: got %q (reached %v)", got, reached)
		}
		// It is in the same table UPnP lists.
		contains(t, "list after pcp add", ok(t, l, "list", "--protocol", "upnp").stdout, "18084", "PCP")
		ok(t, l, append([]string{"delete", "18084/tcp"}, pcpFlags...)...)
		if _, reached := reachTCP(t, l, 18084, mustFail); reached {
			t.Fatal("18084 still reachable after the PCP delete")
		}
	})

	t.Run("wan-gets-nothing", func(t *testing.T) {
		// HTTP on the external address: nothing listens there.
		if c, err := l.DialContext(ctxFor(t, time.Second), natlab.HostWAN, "tcp4", ap(l.RouterWANIP, 5000).String()); err == nil {
			c.Close()
			t.Error("the UPnP HTTP port accepts connections on the external address")
		}
		// NAT-PMP, PCP and SSDP on the external address: no answer.
		if got := udpExchange(t, l, natlab.HostWAN, ap(l.RouterWANIP, 5351), []byte{0, 0}); got != nil {
			t.Errorf("NAT-PMP answered the WAN: % x", got)
		}
		if got := udpExchange(t, l, natlab.HostWAN, ap(l.RouterWANIP, 5351), pcpAnnounce(l.WANIP)); got != nil {
			t.Errorf("PCP answered the WAN: % x", got)
		}
		msearch := "M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: \"ssdp:discover\"\r\nMX: 1\r\nST: ssdp:all\r\n\r\n"
		if got := udpExchange(t, l, natlab.HostWAN, ap(l.RouterWANIP, 1900), []byte(msearch)); got != nil {
			t.Errorf("SSDP answered the WAN:\n%s", got)
		}
		// Positive controls: the same requests from the LAN are answered.
		if got := udpExchange(t, l, natlab.HostLAN, ap(l.RouterLANIP, 5351), []byte{0, 0}); len(got) != 12 {
			t.Fatalf("NAT-PMP did not answer the LAN (% x)", got)
		}
		if got := udpExchange(t, l, natlab.HostLAN, ap(l.RouterLANIP, 5351), pcpAnnounce(l.LANIP)); len(got) != 24 || got[0] != 2 || got[3] != 0 {
			t.Fatalf("PCP did not answer ANNOUNCE from the LAN (% x)", got)
		}
		// A WAN host that routes the LAN address through the router reaches
		// the listening socket (Linux is a weak host), and must get nothing.
		if _, err := l.Run(t, natlab.HostWAN, "ip", "route", "add", l.LANPrefix.String(), "via", ext); err != nil {
			t.Fatal(err)
		}
		defer l.Run(t, natlab.HostWAN, "ip", "route", "del", l.LANPrefix.String(), "via", ext)
		if got := httpExchange(t, l, natlab.HostWAN, ap(l.RouterLANIP, 5000)); got != "" {
			t.Errorf("the UPnP HTTP server answered a WAN host that routed to its LAN address:\n%s", got)
		}
		if got := udpExchange(t, l, natlab.HostWAN, ap(l.RouterLANIP, 5351), []byte{0, 0}); got != nil {
			t.Errorf("NAT-PMP answered a WAN host that routed to its LAN address: % x", got)
		}
		if got := httpExchange(t, l, natlab.HostLAN, ap(l.RouterLANIP, 5000)); !strings.Contains(got, "200 OK") {
			t.Errorf("the LAN host did not get the description:\n%s", got)
		}
	})

	t.Run("lease-expiry", func(t *testing.T) {
		lanRun(t, l, "natpmpc", "-g", l.RouterLANIP.String(), "-a", "9002", "19002", "udp", "2")
		added := time.Now()
		if _, reached := reachUDP(t, l, 9002, mustWork); !reached {
			t.Fatal("short-lived NAT-PMP mapping does not forward")
		}
		time.Sleep(time.Until(added.Add(2500 * time.Millisecond)))
		if _, reached := reachUDP(t, l, 9002, mustFail); reached {
			t.Fatal("UDP 9002 still forwarded after its 2 s lease ended")
		}
		t.Logf("timing: a 2 s lease stopped forwarding within %v of the request", time.Since(added).Round(time.Millisecond))
		m := g.metrics(t)
		if n := metricValue(m, "portfwd_leases_expired_total"); n < 1 {
			t.Errorf("portfwd_leases_expired_total = %d after an expiry:\n%s", n, m)
		}
		if n := metricValue(m, `portfwd_requests_total{protocol="upnp",action="AddPortMapping",result="0"}`); n < 1 {
			t.Errorf("no successful AddPortMapping counted:\n%s", m)
		}
	})

	t.Run("restart-keeps-mappings", func(t *testing.T) {
		epoch := natpmpEpoch(t, l)
		lanRun(t, l, "upnpc", "-i", "-e", "kept", "-a", lan, "8080", "18083", "TCP", "3600")
		g.stop(t)
		// Stopped without --flush-on-exit: the rules stay installed.
		if _, reached := reachTCP(t, l, 18083, mustWork); !reached {
			t.Error("the mapping stopped forwarding while the gateway was down")
		}
		g.start(t)
		contains(t, "list after restart", ok(t, l, "list").stdout, "18083", "kept")
		if _, reached := reachTCP(t, l, 18083, mustWork); !reached {
			t.Error("the restored mapping does not forward")
		}
		if after := natpmpEpoch(t, l); after < epoch {
			t.Errorf("NAT-PMP epoch went from %d to %d across a restart that kept the leases", epoch, after)
		}
	})

	t.Run("flush-on-exit", func(t *testing.T) {
		g.stop(t)
		g.args = append(g.args, "--flush-on-exit")
		g.start(t)
		if _, reached := reachTCP(t, l, 18083, mustWork); !reached {
			t.Fatal("the mapping kept across restarts does not forward")
		}
		g.stop(t)
		if _, reached := reachTCP(t, l, 18083, mustFail); reached {
			t.Error("--flush-on-exit left the mapping forwarding")
		}
		tables, err := l.Run(t, natlab.HostRouter, "nft", "list", "tables")
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(tables, "portfwd") {
			t.Errorf("--flush-on-exit left the nft table:\n%s", tables)
		}
	})
}

// TestLabGatewayCheckFindsDrop: --check reports an admin forward chain that
// drops DNATed connections, and exits 1.
func TestLabGatewayCheckFindsDrop(t *testing.T) {
	l := natlab.Start(t, natlab.Options{Router: natlab.RouterNone})
	if _, err := l.Run(t, natlab.HostRouter, "nft", "flush", "chain", "inet", "filter", "forward"); err != nil {
		t.Fatal(err)
	}
	r := pf(t, l, natlab.HostRouter, gatewayArgs(t, l, "--check")...)
	if r.code != exitUsage {
		t.Fatalf("--check with a dropping forward chain: want exit %d, got %v", exitUsage, r)
	}
	contains(t, "--check", r.stdout, "problem: nftables:", "ct status dnat accept")
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// udpExchange sends req from host to `to` and returns the first reply
// within 700 ms, or nil.
func udpExchange(t *testing.T, l *natlab.Lab, host string, to interface{ String() string }, req []byte) []byte {
	t.Helper()
	c, err := l.DialContext(context.Background(), host, "udp4", to.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 1500)
	for range 2 {
		c.Write(req)
		c.SetReadDeadline(time.Now().Add(350 * time.Millisecond))
		if n, err := c.Read(buf); err == nil {
			return buf[:n]
		}
	}
	return nil
}

// httpExchange sends a GET for the description from host and returns what
// came back ("" when the connection fails or closes without a byte).
func httpExchange(t *testing.T, l *natlab.Lab, host string, to interface{ String() string }) string {
	t.Helper()
	c, err := l.DialContext(ctxFor(t, time.Second), host, "tcp4", to.String())
	if err != nil {
		return ""
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	io.WriteString(c, "GET /rootDesc.xml HTTP/1.1\r\nHost: "+to.String()+"\r\nConnection: close\r\n\r\n")
	b, _ := io.ReadAll(c)
	return string(b)
}

// pcpAnnounce is a PCP ANNOUNCE request from client (RFC 6887 section
// 14.1): version 2, opcode 0, lifetime 0, the client's address.
func pcpAnnounce(client netip.Addr) []byte {
	b := make([]byte, 24)
	b[0] = 2
	a := client.As16() // IPv4-mapped
	copy(b[8:], a[:])
	return b
}

var epochRE = regexp.MustCompile(`"epoch":\s*(\d+)`)

// natpmpEpoch asks the gateway's NAT-PMP epoch with our client.
func natpmpEpoch(t *testing.T, l *natlab.Lab) int {
	t.Helper()
	r := ok(t, l, "info", "--protocol", "natpmp", "--json")
	m := epochRE.FindStringSubmatch(r.stdout)
	if m == nil {
		t.Fatalf("no epoch in info --json:\n%s", r.stdout)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// TestLabGatewayRelay runs the gateway with the relay backend, which binds
// mapped ports on the external interface's address and connects to the
// LAN host itself: the LAN server sees the router as its peer.
func TestLabGatewayRelay(t *testing.T) {
	l := natlab.Start(t, natlab.Options{Router: natlab.RouterNone})
	natlab.Require(t, "natpmpc")
	args := []string{"gateway", "--internal", natlab.RouterLANIf, "--external", natlab.RouterWANIf,
		"--backend", "relay", "--state-dir", filepath.Join(l.RunDir, "gw"), "--admin", "off"}
	g := &labGateway{l: l, args: args}
	g.start(t)
	srv := l.ServeTCP(t, natlab.HostLAN, ap(l.LANIP, 8080), "lan-8080")
	lanRun(t, l, "natpmpc", "-g", l.RouterLANIP.String(), "-a", "18085", "8080", "tcp", "600")
	if got, reached := reachTCP(t, l, 18085, mustWork); !reached || got != "lan-8080" {
		t.Fatalf("relayed mapping: got %q (reached %v)", got, reached)
	}
	if peers := srv.Peers(); len(peers) == 0 || peers[len(peers)-1].Addr() != l.RouterLANIP {
		t.Errorf("the LAN server saw %v; a relay connects from the router (%v)", peers, l.RouterLANIP)
	}
	lanRun(t, l, "natpmpc", "-g", l.RouterLANIP.String(), "-a", "18085", "8080", "tcp", "0")
	if _, reached := reachTCP(t, l, 18085, mustFail); reached {
		t.Error("the relay still forwards after the delete")
	}
	g.stop(t)
}
