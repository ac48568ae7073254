package main

import (
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/portfwd/portfwd/internal/natlab"
	"github.com/portfwd/portfwd/pcp"
)

// gateway6Config puts the gateway's pinhole rules where the dual-stack
// lab's forward chain jumps to (as miniupnpd's upnp_forward_chain): an
// accept in a table of the gateway's own would not get past the lab's
// drop.
const gateway6Config = `
[nft]
forward_table = "inet filter"
forward_chain = "miniupnpd"

[policy]
rules = [
  "allow 1024-65535 10.77.0.0/24 1024-65535",
  "deny 0-65535 0.0.0.0/0 0-65535",
]
`

// startGateway6 runs `portfwd gateway` on the router of a dual-stack lab
// with Router "none", and waits for its HTTP port on the router's IPv6
// LAN address.
func startGateway6(t *testing.T, l *natlab.Lab) *labGateway {
	t.Helper()
	conf := filepath.Join(l.RunDir, "gateway6.toml")
	if err := os.WriteFile(conf, []byte(gateway6Config), 0o644); err != nil {
		t.Fatal(err)
	}
	g := &labGateway{l: l, stateDir: filepath.Join(l.RunDir, "gw"), args: []string{"gateway", "--config", conf,
		"--internal", natlab.RouterLANIf, "--external", natlab.RouterWANIf,
		"--external-ip", l.RouterWANIP.String(), "--backend", "nft",
		"--state-dir", filepath.Join(l.RunDir, "gw"), "-v"}}
	g.start(t)
	l.WaitTCP(t, natlab.HostLAN, ap(l.RouterLANIP6, 5000), 10*time.Second, g.proc)
	return g
}

var upnpcPinholeID = regexp.MustCompile(`Pinhole ID = (\d+)`)

// TestLabGatewayPinholesWithUpnpc proves our gateway's
// WANIPv6FirewallControl with miniupnpc's upnpc -6, with real TCP from
// the WAN host: discovery over SSDP on ff02::c, status, add, check,
// packets, update, outbound timeout, delete; a LAN host with two global
// addresses opens pinholes for both (miniupnpd refuses the one that is
// not the request's source); AddPinhole over IPv4 SOAP is 606.
func TestLabGatewayPinholesWithUpnpc(t *testing.T) {
	natlab.Require(t, "upnpc")
	l := natlab.Start(t, natlab.Options{Router: natlab.RouterNone, IPv6: true})
	second := "2001:db8:77::22"
	l.AddAddr6(t, natlab.HostLAN, mustPrefix(second+"/64"))
	l.ServeTCP(t, natlab.HostLAN, ap(l.LANIP6, 8080), "first")
	l.ServeTCP(t, natlab.HostLAN, ap(mustAddr(second), 8081), "second")
	g := startGateway6(t, l)
	url := "http://[" + l.RouterLANIP6.String() + "]:5000/rootDesc.xml"

	if _, reached := reach6(t, l, 8080, mustFail); reached {
		t.Fatal("the WAN host reached the LAN host over IPv6 before any pinhole")
	}
	// Discovery over SSDP on ff02::c (no -u), then GetFirewallStatus.
	out := lanRun(t, l, "upnpc", "-6", "-i", "-S")
	contains(t, "upnpc -6 -S", out, "desc: "+url, "Firewall Enabled: Yes", "Inbound Pinhole Allowed: Yes")

	out = lanRun(t, l, "upnpc", "-6", "-i", "-u", url, "-A", "", "0", l.LANIP6.String(), "8080", "TCP", "3600")
	m := upnpcPinholeID.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("upnpc -6 -A printed no pinhole ID:\n%s", out)
	}
	id := m[1]
	if got, reached := reach6(t, l, 8080, mustWork); !reached || got != "first" {
		t.Fatalf("WAN -> [%v]:8080 through our pinhole: %q (reached %v)", l.LANIP6, got, reached)
	}
	// Traffic went through: the element's counter saw it (miniupnpd says
	// 709 and 0 packets whatever happened).
	out = lanRun(t, l, "upnpc", "-6", "-i", "-u", url, "-C", id)
	contains(t, "upnpc -6 -C", out, "IsWorking = Yes")
	out = lanRun(t, l, "upnpc", "-6", "-i", "-u", url, "-K", id)
	if regexp.MustCompile(`PinholePackets = [1-9]`).FindString(out) == "" {
		t.Errorf("upnpc -6 -K after traffic: want packets counted:\n%s", out)
	}
	out = lanRun(t, l, "upnpc", "-6", "-i", "-u", url, "-U", id, "600")
	contains(t, "upnpc -6 -U", out, "UpdatePinhole: Pinhole ID = "+id)
	if strings.Contains(out, "failed") {
		t.Errorf("upnpc -6 -U failed:\n%s", out)
	}
	// miniupnpd answers 501 here; the gateway reads the kernel's
	// conntrack timeout.
	out = lanRun(t, l, "upnpc", "-6", "-i", "-u", url, "-G", "", "0", l.LANIP6.String(), "8080", "6")
	if regexp.MustCompile(`[Tt]imeout[^\n]*= ?[1-9]`).FindString(out) == "" {
		t.Errorf("upnpc -6 -G: want the outbound timeout:\n%s", out)
	}

	// The second global address: a pinhole for each address, whichever of
	// the two the kernel sends the request from.
	out = lanRun(t, l, "upnpc", "-6", "-i", "-u", url, "-A", "", "0", second, "8081", "TCP", "3600")
	if upnpcPinholeID.FindStringSubmatch(out) == nil {
		t.Fatalf("upnpc -6 -A for the host's second address:\n%s", out)
	}
	if got, reached := l.DialTCP(t, natlab.HostWAN, ap(mustAddr(second), 8081), mustWork); reached != nil || got != "second" {
		t.Fatalf("WAN -> [%s]:8081: %q, %v", second, got, reached)
	}
	// One of the two requests came from the host's other address (the
	// kernel picks one source for both): the log names the requester.
	opened := regexp.MustCompile(`pinhole \d+: TCP \[([0-9a-f:]+)\]:\d+ \(UPnP by ([0-9a-f:]+)\)`).FindAllStringSubmatch(g.proc.Output(), -1)
	cross := false
	for _, o := range opened {
		cross = cross || o[1] != o[2]
	}
	if !cross {
		t.Errorf("no pinhole was opened for one address of the host from the other (miniupnpd's 606 case): %v", opened)
	}
	// Another host's address: 606.
	out, _ = l.Run(t, natlab.HostLAN, "upnpc", "-6", "-i", "-u", url, "-A", "", "0", "2001:db8:77::99", "8082", "TCP", "3600")
	contains(t, "upnpc -6 -A for another host", out, "606")
	// Over IPv4 SOAP the requester is not an IPv6 address of the host: 606.
	out, _ = l.Run(t, natlab.HostLAN, "upnpc", "-i", "-u", "http://"+l.RouterLANIP.String()+":5000/rootDesc.xml", "-A", "", "0", l.LANIP6.String(), "8083", "TCP", "3600")
	contains(t, "upnpc -A over IPv4", out, "606")

	out = lanRun(t, l, "upnpc", "-6", "-i", "-u", url, "-D", id)
	contains(t, "upnpc -6 -D", out, "UPNP_DeletePinhole() returned : 0")
	if _, reached := reach6(t, l, 8080, mustFail); reached {
		t.Fatal("the WAN host still reaches [LAN]:8080 after DeletePinhole")
	}
	// An ID that is gone: 704, not miniupnpd's 402.
	out, _ = l.Run(t, natlab.HostLAN, "upnpc", "-6", "-i", "-u", url, "-D", id)
	contains(t, "upnpc -6 -D again", out, "704")
	g.stop(t)
}

// TestLabGatewayPinholesWithOurClient: our CLI against our gateway, over
// UPnP and over PCP, with real TCP from the WAN host; the pinholes and
// their IDs survive a gateway restart.
func TestLabGatewayPinholesWithOurClient(t *testing.T) {
	l := natlab.Start(t, natlab.Options{Router: natlab.RouterNone, IPv6: true})
	l.ServeTCP(t, natlab.HostLAN, ap(l.LANIP6, 8080), "upnp")
	l.ServeTCP(t, natlab.HostLAN, ap(l.LANIP6, 8090), "pcp")
	g := startGateway6(t, l)

	r := ok(t, l, "add", "8080", "--ipv6", "--protocol", "upnp", "--lease", "10m")
	contains(t, "add --ipv6 (UPnP)", r.stdout, "opened ["+l.LANIP6.String()+"]:8080/TCP")
	if got, reached := reach6(t, l, 8080, mustWork); !reached || got != "upnp" {
		t.Fatalf("WAN -> [LAN]:8080: %q (reached %v)", got, reached)
	}
	r = ok(t, l, "add", "8090", "--ipv6", "--protocol", "pcp", "--lease", "10m")
	contains(t, "add --ipv6 (PCP)", r.stdout, "opened ["+l.LANIP6.String()+"]:8090/TCP")
	if got, reached := reach6(t, l, 8090, mustWork); !reached || got != "pcp" {
		t.Fatalf("WAN -> [LAN]:8090: %q (reached %v)", got, reached)
	}

	// Restart: the pinholes and their IDs are kept.
	g.stop(t)
	g.start(t)
	if got, reached := reach6(t, l, 8080, mustWork); !reached || got != "upnp" {
		t.Fatalf("after the gateway restarted, WAN -> [LAN]:8080: %q (reached %v)", got, reached)
	}
	r = ok(t, l, "add", "8080", "--ipv6", "--protocol", "upnp", "--lease", "20m")
	contains(t, "add --ipv6 again after the restart", r.stdout, "(pinhole 1,")

	ok(t, l, "delete", "8080/tcp", "--ipv6", "--protocol", "upnp")
	ok(t, l, "delete", "8090/tcp", "--ipv6", "--protocol", "pcp")
	for _, port := range []uint16{8080, 8090} {
		if _, reached := reach6(t, l, port, mustFail); reached {
			t.Errorf("WAN still reaches [LAN]:%d after delete", port)
		}
	}
	g.stop(t)
}

// TestLabGatewayRelayPinholes: with the relay backend, a pinhole upnpc -6
// opens is relayed from the router's external IPv6 address at the
// pinhole's port to the LAN host's IPv6 address, real TCP and UDP from the
// WAN host; a pinhole for one remote host admits that host only; the LAN
// host's own address stays behind the router's drop (the relay opens no
// firewall); delete closes the router's port.
func TestLabGatewayRelayPinholes(t *testing.T) {
	natlab.Require(t, "upnpc")
	l := natlab.Start(t, natlab.Options{Router: natlab.RouterNone, IPv6: true})
	srv := l.ServeTCP(t, natlab.HostLAN, ap(l.LANIP6, 8080), "relayed6")
	l.ServeUDPEcho(t, natlab.HostLAN, ap(l.LANIP6, 8081))
	l.ServeTCP(t, natlab.HostLAN, ap(l.LANIP6, 8082), "filtered6")
	g := &labGateway{l: l, stateDir: filepath.Join(l.RunDir, "gw"), args: []string{"gateway",
		"--internal", natlab.RouterLANIf, "--external", natlab.RouterWANIf,
		"--external-ip", l.RouterWANIP.String(), "--backend", "relay", "--admin", "off",
		"--state-dir", filepath.Join(l.RunDir, "gw"), "-v"}}
	g.start(t)
	l.WaitTCP(t, natlab.HostLAN, ap(l.RouterLANIP6, 5000), 10*time.Second, g.proc)
	url := "http://[" + l.RouterLANIP6.String() + "]:5000/rootDesc.xml"
	atRouter := func(port uint16) netip.AddrPort { return ap(l.RouterWANIP6, port) }
	if !strings.Contains(g.proc.Output(), "IPv6 pinholes are relayed from ["+l.RouterWANIP6.String()+"]") {
		t.Errorf("the start-up log does not say where pinholes are relayed from:\n%s", g.proc.Output())
	}

	out := lanRun(t, l, "upnpc", "-6", "-i", "-u", url, "-S")
	contains(t, "upnpc -6 -S", out, "Inbound Pinhole Allowed: Yes")
	if _, err := l.DialTCP(t, natlab.HostWAN, atRouter(8080), mustFail); err == nil {
		t.Fatal("the router's port 8080 answered before any pinhole")
	}
	ids := map[string]string{}
	for _, p := range []struct{ remote, port, proto string }{{"", "8080", "TCP"}, {"", "8081", "UDP"}, {"2001:db8:113::99", "8082", "TCP"}} {
		out := lanRun(t, l, "upnpc", "-6", "-i", "-u", url, "-A", p.remote, "0", l.LANIP6.String(), p.port, p.proto, "3600")
		m := upnpcPinholeID.FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("upnpc -6 -A %s/%s printed no pinhole ID:\n%s", p.port, p.proto, out)
		}
		ids[p.port] = m[1]
	}

	got, err := l.DialTCP(t, natlab.HostWAN, atRouter(8080), mustWork)
	if err != nil || got != "relayed6" {
		t.Fatalf("WAN -> [router]:8080 through the relayed pinhole: %q, %v", got, err)
	}
	if peers := srv.Peers(); len(peers) == 0 || peers[len(peers)-1].Addr() != l.RouterLANIP6 {
		t.Errorf("the LAN server saw %v; the relay connects from the router's LAN address %v", peers, l.RouterLANIP6)
	}
	if got, err := l.ProbeUDP(t, natlab.HostWAN, atRouter(8081), "ping6", mustWork); err != nil || got != "ping6" {
		t.Fatalf("UDP WAN -> [router]:8081 through the relayed pinhole: %q, %v", got, err)
	}
	if _, err := l.DialTCP(t, natlab.HostWAN, atRouter(8082), mustFail); err == nil {
		t.Error("a pinhole for 2001:db8:113::99 only admitted the WAN host")
	}
	if _, reached := reach6(t, l, 8080, mustFail); reached {
		t.Error("the LAN host's own address was reached: the relay backend must not open the router's firewall")
	}

	for _, port := range []string{"8080", "8081", "8082"} {
		out := lanRun(t, l, "upnpc", "-6", "-i", "-u", url, "-D", ids[port])
		contains(t, "upnpc -6 -D "+port, out, "UPNP_DeletePinhole() returned : 0")
	}
	if _, err := l.DialTCP(t, natlab.HostWAN, atRouter(8080), mustFail); err == nil {
		t.Error("WAN -> [router]:8080 still relayed after DeletePinhole")
	}
	if _, err := l.ProbeUDP(t, natlab.HostWAN, atRouter(8081), "ping6", mustFail); err == nil {
		t.Error("UDP WAN -> [router]:8081 still relayed after DeletePinhole")
	}
	g.stop(t)
}

// TestLabGatewayAnnouncesOverIPv6: the gateway multicasts a PCP ANNOUNCE to
// [ff02::1]:5350 on its LAN when it starts (RFC 6887 §14.1.3), from its
// LAN address; keep --ipv6 over PCP hears it and renews at once, so a
// pinhole the restarted gateway lost (its state wiped) is open again
// within seconds, not at the next renewal half an hour later.
func TestLabGatewayAnnouncesOverIPv6(t *testing.T) {
	l := natlab.Start(t, natlab.Options{Router: natlab.RouterNone, IPv6: true})
	l.ServeTCP(t, natlab.HostLAN, ap(l.LANIP6, 8093), "announced")
	// A listener of our own on the LAN host, closed before keep binds the
	// port.
	pc, err := l.ListenPacket(natlab.HostLAN, "udp6", "[::]:5350")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	g := startGateway6(t, l)
	pc.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 1100)
	var from netip.Addr
	for {
		n, src, err := pc.ReadFrom(buf)
		if err != nil {
			t.Fatalf("no PCP ANNOUNCE over IPv6 on the LAN within 5 s of the gateway's start: %v\n%s", err, g.proc.Output())
		}
		if r, perr := pcp.ParseResponse(buf[:n]); perr == nil && r.Op == pcp.OpAnnounce && r.Result == pcp.ResultSuccess {
			from = src.(*net.UDPAddr).AddrPort().Addr().WithZone("")
			if from == l.RouterLANIP6 {
				break
			}
		}
	}
	pc.Close()
	t.Logf("PCP ANNOUNCE over IPv6 from [%v]", from)

	keep := l.Start(t, natlab.HostLAN, portfwdBinary(t), "keep", "8093", "--ipv6", "--protocol", "pcp", "--lease", "1h",
		"--check-interval", "1h", "--no-cache")
	if !waitFor(5*time.Second, func() bool { _, ok := reach6(t, l, 8093, 200*time.Millisecond); return ok }) {
		t.Fatalf("keep --ipv6 never opened the pinhole; its output:\n%s", keep.Output())
	}
	// The gateway restarts having lost its state: the pinhole is gone
	// with it, until keep hears the announcement.
	g.stop(t)
	if err := os.RemoveAll(g.stateDir); err != nil {
		t.Fatal(err)
	}
	restarted := time.Now()
	g.start(t)
	if !waitFor(10*time.Second, func() bool {
		return strings.Contains(keep.Output(), "PCP ANNOUNCE over IPv6")
	}) {
		t.Fatalf("keep did not act on the gateway's announcement; its output:\n%s\ngateway:\n%s", keep.Output(), g.proc.Output())
	}
	if got, reached := reach6(t, l, 8093, mustWork); !reached || got != "announced" {
		t.Fatalf("the pinhole is not open again after the announcement: %q; keep output:\n%s", got, keep.Output())
	}
	t.Logf("pinhole open again %v after the gateway restarted without its state", time.Since(restarted).Round(time.Millisecond))
	keep.Stop()
	g.stop(t)
}

// blockIPv4Announcements is an nftables ruleset for the LAN host that
// drops every IPv4 packet to port 5350 (the NAT-PMP/PCP announcements on
// 224.0.0.1), counting them.
const blockIPv4Announcements = `
table ip watch6_block {
	chain input {
		type filter hook input priority raw; policy accept;
		udp dport 5350 counter drop
	}
}
`

// watchWithoutIPv4Announcements drops the IPv4 announcements on the LAN
// host of l and starts `portfwd watch -v` there on the PCP server at the
// router's IPv4 address, with neither UPnP events nor a poll in a test's
// time: only an announcement over IPv6 can tell it anything. It returns
// the watch and the number of events printed up to the initial one.
func watchWithoutIPv4Announcements(t *testing.T, l *natlab.Lab) (*natlab.Process, int) {
	t.Helper()
	rules := filepath.Join(l.RunDir, "block4.nft")
	if err := os.WriteFile(rules, []byte(blockIPv4Announcements), 0o644); err != nil {
		t.Fatal(err)
	}
	lanRun(t, l, "nft", "-f", rules)
	w := l.Start(t, natlab.HostLAN, portfwdBinary(t), "watch", "--json", "-v", "--interval", "1h", "--no-events",
		"--protocol", "pcp", "--natpmp", l.RouterLANIP.String(), "--no-cache", "--state-dir", filepath.Join(l.RunDir, "watch-state"))
	t.Cleanup(w.Stop)
	initial, n, ok := nextWatchEvent(t, w, 0, 10*time.Second, kind("initial"))
	if !ok {
		t.Fatalf("watch printed no initial event; its output:\n%s", w.Output())
	}
	if !strings.Contains(initial.Reason, "NAT-PMP/PCP announcements over IPv4 and IPv6") {
		t.Fatalf("the initial event does not say watch hears announcements over IPv6: %q", initial.Reason)
	}
	return w, n
}

// restartHeardOverIPv6 waits for watch to report the router's restart by
// an announcement heard from the router's address from, and checks that
// IPv4 announcements were sent and dropped, so that the restart can only
// have been heard over IPv6.
func restartHeardOverIPv6(t *testing.T, l *natlab.Lab, w *natlab.Process, n int, from netip.Addr, restarted time.Time) {
	t.Helper()
	ev, _, ok := nextWatchEvent(t, w, n+1, 10*time.Second, kind("router_restarted"))
	if !ok {
		t.Fatalf("watch did not report the router's restart; its output:\n%s", w.Output())
	}
	if ev.Via != "announcement" {
		t.Fatalf("the restart was noticed via %q, want the announcement: %+v", ev.Via, ev)
	}
	t.Logf("restart reported %v after the router started again: %s", time.Since(restarted).Round(time.Millisecond), ev.Reason)
	if heard := `watch: announcement from the router" from=` + from.String() + " "; !strings.Contains(w.Output(), heard) {
		t.Errorf("watch's log does not show the announcement from [%v]:\n%s", from, w.Output())
	}
	counters := lanRun(t, l, "nft", "list", "table", "ip", "watch6_block")
	if m := regexp.MustCompile(`counter packets (\d+)`).FindStringSubmatch(counters); m == nil || m[1] == "0" {
		t.Errorf("no IPv4 announcement was dropped on the LAN host: the proof does not hold:\n%s", counters)
	} else {
		t.Logf("%s IPv4 packets to port 5350 dropped on the LAN host", m[1])
	}
}

// TestLabWatchHearsGatewayRestartOverIPv6: `portfwd watch` watches our
// dual-stack gateway over PCP at its IPv4 address, with the IPv4
// announcements dropped on the LAN host; the gateway restarts without its
// state, and watch reports the restart by the PCP ANNOUNCE the gateway
// multicast to [ff02::1]:5350 from its IPv6 LAN address, the address the
// LAN host's IPv6 default route goes through.
func TestLabWatchHearsGatewayRestartOverIPv6(t *testing.T) {
	natlab.Require(t, "nft")
	l := natlab.Start(t, natlab.Options{Router: natlab.RouterNone, IPv6: true})
	g := startGateway6(t, l)
	w, n := watchWithoutIPv4Announcements(t, l)
	// A restart shows as the epoch going back (RFC 6887 §8.5), which a
	// gateway up for a second or two cannot show: wait until watch has
	// heard, over IPv6, the gateway's announcement of an epoch of 3 s or
	// more (its fifth, 4 s after its start), and read it.
	heard := regexp.MustCompile(`watch: announcement from the router" from=` + regexp.QuoteMeta(l.RouterLANIP6.String()) + ` version=2 epoch=([3-9]|\d\d+)\b`)
	if !waitFor(15*time.Second, func() bool { return heard.MatchString(w.Output()) }) {
		t.Fatalf("watch never heard the gateway's announcement over IPv6 from [%v]; its output:\n%s", l.RouterLANIP6, w.Output())
	}
	g.stop(t)
	if err := os.RemoveAll(g.stateDir); err != nil {
		t.Fatal(err)
	}
	restarted := time.Now()
	g.start(t)
	restartHeardOverIPv6(t, l, w, n, l.RouterLANIP6, restarted)
	g.stop(t)
}

// TestLabWatchHearsMiniupnpdRestartOverIPv6: the same against miniupnpd
// in the dual-stack lab. miniupnpd announces once, over IPv6 from its
// link-local address only (the kernel's choice for ff02::1), while the
// lab's LAN host routes IPv6 through the router's global address: watch
// knows that link-local address as the one the router's MAC address
// (from the LAN host's ARP entry for 10.77.0.1) makes.
func TestLabWatchHearsMiniupnpdRestartOverIPv6(t *testing.T) {
	natlab.Require(t, "nft")
	l := natlab.Start(t, natlab.Options{IPv6: true, MiniupnpdConf: daemonUptime})
	w, n := watchWithoutIPv4Announcements(t, l)
	var lanMAC net.HardwareAddr
	if err := l.In(natlab.HostRouter, func() error {
		ifi, err := net.InterfaceByName(natlab.RouterLANIf)
		if err == nil {
			lanMAC = ifi.HardwareAddr
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	// miniupnpd's epoch must have run for a few seconds for its going
	// back to show (RFC 6887 §8.5), and it sends nothing meanwhile.
	time.Sleep(4 * time.Second)
	restarted := time.Now() // miniupnpd announces as it starts, before restartMiniupnpd sees it answer
	restartMiniupnpd(t, l)
	ll := netip.AddrFrom16([16]byte{0: 0xfe, 1: 0x80, 8: lanMAC[0] ^ 2, 9: lanMAC[1], 10: lanMAC[2], 11: 0xff, 12: 0xfe, 13: lanMAC[3], 14: lanMAC[4], 15: lanMAC[5]})
	restartHeardOverIPv6(t, l, w, n, ll, restarted)
}
