//go:build linux

package daemon

import (
	"context"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/portfwd/portfwd/gateway"
	"github.com/portfwd/portfwd/gateway/relay"
	"github.com/portfwd/portfwd/igd"
	"github.com/portfwd/portfwd/internal/testenv"
	"github.com/portfwd/portfwd/pcp"
	"github.com/portfwd/portfwd/upnp"
)

// v6LAN is a LAN host in a namespace of its own, joined to the test's
// namespace (the router, where the daemon runs; its own too, by
// testenv.InOwnNetns, since the veth and the sysctls change it) by a veth
// pair: the router's side has 10.99.0.1 and 2001:db8:77::1, the host has
// 2001:db8:77::2 and a second global address, 2001:db8:77::22 (as a host
// with a stable and a temporary address has).
type v6LAN struct {
	ns     string
	router string // the router's interface
}

func newV6LAN(t *testing.T) *v6LAN {
	t.Helper()
	ns := testenv.Netns(t)
	ip := testenv.Programs(t, "ip")["ip"]
	l := &v6LAN{ns: ns, router: "pfv" + ns[len(ns)-6:]}
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(ip, args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	for _, k := range []string{"accept_dad", "dad_transmits", "accept_ra"} {
		os.WriteFile("/proc/sys/net/ipv6/conf/default/"+k, []byte("0"), 0)
		exec.Command(ip, "netns", "exec", ns, "sh", "-c", "echo 0 > /proc/sys/net/ipv6/conf/default/"+k).Run()
	}
	run("link", "add", l.router, "type", "veth", "peer", "name", "eth0", "netns", ns)
	t.Cleanup(func() { exec.Command(ip, "link", "del", l.router).Run() })
	run("addr", "add", "10.99.0.1/24", "dev", l.router)
	run("-6", "addr", "add", "2001:db8:77::1/64", "dev", l.router, "nodad")
	run("link", "set", l.router, "up")
	run("-n", ns, "addr", "add", "10.99.0.2/24", "dev", "eth0")
	run("-n", ns, "-6", "addr", "add", "2001:db8:77::2/64", "dev", "eth0", "nodad")
	run("-n", ns, "-6", "addr", "add", "2001:db8:77::22/64", "dev", "eth0", "nodad")
	run("-n", ns, "link", "set", "eth0", "up")
	return l
}

// serveBanner serves TCP on the LAN host's 2001:db8:77::2, writing msg to
// each connection, and returns the port.
func (l *v6LAN) serveBanner(t *testing.T, msg string) uint16 {
	t.Helper()
	var ln net.Listener
	var err error
	l.in(t, func() { ln, err = net.Listen("tcp6", "[2001:db8:77::2]:0") })
	if err != nil {
		t.Fatal(err)
	}
	return serveBanner(t, ln, msg).Port()
}

// waitLinkLocal waits, polling the LAN host's eth0 for at most within,
// until it is up and running with a link-local address.
func (l *v6LAN) waitLinkLocal(t *testing.T, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		ready := false
		l.in(t, func() {
			ifi, err := net.InterfaceByName("eth0")
			if err != nil || ifi.Flags&net.FlagUp == 0 || ifi.Flags&net.FlagRunning == 0 {
				return
			}
			addrs, _ := ifi.Addrs()
			for _, a := range addrs {
				if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() == nil && ipn.IP.IsLinkLocalUnicast() {
					ready = true
				}
			}
		})
		if ready {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the LAN host's eth0 has no link-local address %v after it was set up", within)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// in runs fn on a thread inside the LAN host's namespace; sockets fn
// creates stay there.
func (l *v6LAN) in(t *testing.T, fn func()) {
	t.Helper()
	f, err := os.Open("/run/netns/" + l.ns)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			done <- err
			return
		}
		fn()
		done <- nil
	}()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// firewallClient calls the daemon's WANIPv6FirewallControl from the LAN
// host, its connections bound to from.
func (l *v6LAN) firewallClient(t *testing.T, url, from string) func(action string, args ...string) (upnp.Args, error) {
	t.Helper()
	var dialer net.Dialer
	dialer.LocalAddr = &net.TCPAddr{IP: net.ParseIP(from)}
	// Each call dials from the LAN namespace.
	hc := testHTTPClient(func(ctx context.Context, network, addr string) (c net.Conn, err error) {
		l.in(t, func() { c, err = dialer.DialContext(ctx, network, addr) })
		return c, err
	})
	c := &upnp.Client{HTTP: hc}
	return func(action string, args ...string) (upnp.Args, error) {
		var in upnp.Args
		for i := 0; i < len(args); i += 2 {
			in = append(in, upnp.Arg{Name: args[i], Value: args[i+1]})
		}
		return c.Call(context.Background(), url, igd.ServiceWANIPv6FirewallControl, action, in)
	}
}

func pinholeArgs(client, port string) []string {
	return []string{"RemoteHost", "", "RemotePort", "0", "Protocol", "6", "InternalPort", port,
		"InternalClient", client, "LeaseTime", "3600"}
}

// firewallURLs returns the control URL of the daemon's
// WANIPv6FirewallControl on 2001:db8:77::1 and on 10.99.0.1.
func firewallURLs(t *testing.T, r *running) (url6, url4 string) {
	t.Helper()
	for _, u := range r.DescriptionURLs() {
		if strings.Contains(u, "[2001:db8:77::1]") {
			url6 = strings.TrimSuffix(u, igd.DescriptionPath) + igd.WANIPv6FirewallControlControlPath
		} else if strings.Contains(u, "10.99.0.1") {
			url4 = strings.TrimSuffix(u, igd.DescriptionPath) + igd.WANIPv6FirewallControlControlPath
		}
	}
	if url6 == "" || url4 == "" {
		t.Fatalf("description URLs %v: want one on 2001:db8:77::1 and one on 10.99.0.1", r.DescriptionURLs())
	}
	return url6, url4
}

// TestDaemonPinholesFromAHostWithTwoAddresses runs the daemon for a LAN
// host with two global IPv6 addresses: the host opens pinholes for either
// address from the other (the neighbour table says they are one host),
// another host's address is refused 606, the same request over IPv4 SOAP
// is refused 606, and the pinholes survive a restart with their IDs.
func TestDaemonPinholesFromAHostWithTwoAddresses(t *testing.T) {
	if !testenv.InOwnNetns(t) {
		return
	}
	lan := newV6LAN(t)
	cfg := testConfig(t)
	cfg.Interfaces.Internal = []string{lan.router}
	r := start(t, cfg)
	url6, url4 := firewallURLs(t, r)
	fromTemp := lan.firewallClient(t, url6, "2001:db8:77::22")
	fromStable := lan.firewallClient(t, url6, "2001:db8:77::2")

	out, err := fromTemp("GetFirewallStatus")
	if err != nil || out.Value("FirewallEnabled") != "1" || out.Value("InboundPinholeAllowed") != "1" {
		t.Fatalf("GetFirewallStatus: %+v, %v", out, err)
	}
	// Sent from the temporary address, for the stable one.
	out, err = fromTemp("AddPinhole", pinholeArgs("2001:db8:77::2", "8080")...)
	if err != nil {
		out, _ := exec.Command("ip", "-6", "neigh").CombinedOutput()
		ns, nerr := readNeighbours()
		t.Fatalf("AddPinhole for the host's other address: %v (miniupnpd answers 606 here)\nneighbours:\n%s%v %v", err, out, ns, nerr)
	}
	id := out.Value("UniqueID")
	// The other way round, spelled uncompressed and in upper case.
	if _, err := fromStable("AddPinhole", pinholeArgs("2001:DB8:77:0:0:0:0:22", "8081")...); err != nil {
		t.Fatalf("AddPinhole for the temporary address: %v", err)
	}
	// The same tuple again: the same ID.
	out, err = fromStable("AddPinhole", pinholeArgs("2001:db8:77::2", "8080")...)
	if err != nil || out.Value("UniqueID") != id {
		t.Fatalf("AddPinhole again: %+v, %v; want UniqueID %s", out, err, id)
	}
	// Another host's address.
	if _, err := fromStable("AddPinhole", pinholeArgs("2001:db8:77::99", "8082")...); upnp.ErrorCode(err) != igd.CodeActionNotAuthorized {
		t.Fatalf("AddPinhole for another host: %v; want 606", err)
	}
	// The router's own address.
	if _, err := fromStable("AddPinhole", pinholeArgs("2001:db8:77::1", "8082")...); upnp.ErrorCode(err) != igd.CodeActionNotAuthorized {
		t.Fatalf("AddPinhole for the router: %v; want 606", err)
	}
	// Over IPv4 SOAP, the requester is not an IPv6 address of the host.
	from4 := lan.firewallClient(t, url4, "10.99.0.2")
	if _, err := from4("AddPinhole", pinholeArgs("2001:db8:77::2", "8083")...); upnp.ErrorCode(err) != igd.CodeActionNotAuthorized {
		t.Fatalf("AddPinhole over IPv4: %v; want 606", err)
	}
	if got := r.memory().Pinholes(); len(got) != 2 {
		t.Fatalf("backend holds %+v; want the two pinholes", got)
	}
	if _, err := fromStable("UpdatePinhole", "UniqueID", id, "NewLeaseTime", "600"); err != nil {
		t.Fatalf("UpdatePinhole: %v", err)
	}
	if _, err := fromStable("CheckPinholeWorking", "UniqueID", id); upnp.ErrorCode(err) != 709 {
		t.Fatalf("CheckPinholeWorking before traffic: %v; want 709", err)
	}
	out, err = fromStable("GetOutboundPinholeTimeout", "RemoteHost", "", "RemotePort", "0", "InternalClient", "2001:db8:77::2", "InternalPort", "8080", "Protocol", "6")
	if err != nil || out.Value("OutboundPinholeTimeout") == "" {
		t.Fatalf("GetOutboundPinholeTimeout: %+v, %v", out, err)
	}

	// Restart: the pinholes and their IDs are back.
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	r2 := start(t, cfg)
	url6, _ = firewallURLs(t, r2)
	fromStable = lan.firewallClient(t, url6, "2001:db8:77::2")
	got := r2.core.Pinholes()
	if len(got) != 2 {
		t.Fatalf("after restart: %+v", got)
	}
	if _, err := fromStable("DeletePinhole", "UniqueID", id); err != nil {
		t.Fatalf("DeletePinhole of a pinhole from before the restart: %v", err)
	}
	if _, err := fromStable("DeletePinhole", "UniqueID", id); upnp.ErrorCode(err) != 704 {
		t.Fatalf("DeletePinhole again: %v; want 704", err)
	}
	if left := r2.core.Pinholes(); len(left) != 1 {
		t.Fatalf("left: %+v", left)
	}
}

// TestDaemonPinholeQuotaCountsTheHost: the per-client pinhole quota is the
// host's, whichever of its addresses asks (the neighbour table shows both
// with one link-layer address): a host cannot multiply it by asking from a
// temporary address too. 701 PinholeSpaceExhausted.
func TestDaemonPinholeQuotaCountsTheHost(t *testing.T) {
	if !testenv.InOwnNetns(t) {
		return
	}
	lan := newV6LAN(t)
	cfg := testConfig(t)
	cfg.Interfaces.Internal = []string{lan.router}
	cfg.IPv6.MaxPerClient = 1
	r := start(t, cfg)
	url6, _ := firewallURLs(t, r)
	fromStable := lan.firewallClient(t, url6, "2001:db8:77::2")
	fromTemp := lan.firewallClient(t, url6, "2001:db8:77::22")
	if _, err := fromStable("AddPinhole", pinholeArgs("2001:db8:77::2", "8080")...); err != nil {
		t.Fatalf("the host's first pinhole: %v", err)
	}
	if _, err := fromTemp("AddPinhole", pinholeArgs("2001:db8:77::22", "8081")...); upnp.ErrorCode(err) != 701 {
		t.Fatalf("a second pinhole from the host's other address: %v; want 701 (one pinhole per host)", err)
	}
	if got := r.memory().Pinholes(); len(got) != 1 {
		t.Fatalf("backend holds %+v; want the first pinhole only", got)
	}
}

// pcp6 sends one PCP request from the LAN host's address from to the
// daemon's IPv6 PCP socket and returns the response.
func (l *v6LAN) pcp6(t *testing.T, port int, from string, req pcp.Request) pcp.Response {
	t.Helper()
	pkt, err := pcp.AppendRequest(nil, req)
	if err != nil {
		t.Fatal(err)
	}
	var resp pcp.Response
	var rerr error
	l.in(t, func() {
		c, err := net.DialUDP("udp6", &net.UDPAddr{IP: net.ParseIP(from)}, &net.UDPAddr{IP: net.ParseIP("2001:db8:77::1"), Port: port})
		if err != nil {
			rerr = err
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(3 * time.Second))
		if _, err := c.Write(pkt); err != nil {
			rerr = err
			return
		}
		buf := make([]byte, 1100)
		n, err := c.Read(buf)
		if err != nil {
			rerr = err
			return
		}
		resp, rerr = pcp.ParseResponse(buf[:n])
	})
	if rerr != nil {
		t.Fatalf("PCP over IPv6 from %s: %v", from, rerr)
	}
	return resp
}

func pcpMap(from string, port uint16, lifetime uint32, nonce pcp.Nonce, opts ...pcp.Option) pcp.Request {
	return pcp.Request{Op: pcp.OpMap, Lifetime: lifetime, ClientAddr: netip.MustParseAddr(from),
		Map: &pcp.MapPayload{Nonce: nonce, Protocol: pcp.TCP, InternalPort: port, ExternalPort: 18080}, Options: opts}
}

// TestDaemonPCPOverIPv6 maps a pinhole with PCP over IPv6: the grant is
// the host's own address and port; refresh and delete need the nonce; a
// client address other than the source is ADDRESS_MISMATCH; a FILTER for
// one remote host restricts the pinhole, a wider one is UNSUPP_OPTION;
// PEER is UNSUPP_OPCODE.
func TestDaemonPCPOverIPv6(t *testing.T) {
	if !testenv.InOwnNetns(t) {
		return
	}
	lan := newV6LAN(t)
	cfg := testConfig(t)
	cfg.Interfaces.Internal = []string{lan.router}
	r := start(t, cfg)
	if r.pmpSide.conn6 == nil {
		t.Fatal("no PCP IPv6 socket")
	}
	port := local4Port(r.pmpSide.conn6)
	nonce := pcp.NewNonce()

	resp := lan.pcp6(t, port, "2001:db8:77::2", pcpMap("2001:db8:77::2", 8080, 600, nonce))
	if resp.Result != pcp.ResultSuccess || resp.Map == nil || resp.Map.ExternalAddr != netip.MustParseAddr("2001:db8:77::2") ||
		resp.Map.ExternalPort != 8080 || resp.Lifetime != 600 {
		t.Fatalf("MAP: %+v %+v; want success, [2001:db8:77::2]:8080 for 600 s", resp, resp.Map)
	}
	pins := r.core.Pinholes()
	if len(pins) != 1 || pins[0].Source != gateway.SourcePCP || pins[0].Nonce != nonce {
		t.Fatalf("pinholes %+v", pins)
	}
	other := pcp.NewNonce()
	if resp := lan.pcp6(t, port, "2001:db8:77::2", pcpMap("2001:db8:77::2", 8080, 600, other)); resp.Result != pcp.ResultNotAuthorized {
		t.Fatalf("refresh with another nonce: %v; want NOT_AUTHORIZED", resp.Result)
	}
	if resp := lan.pcp6(t, port, "2001:db8:77::2", pcpMap("2001:db8:77::2", 8080, 0, other)); resp.Result != pcp.ResultNotAuthorized {
		t.Fatalf("delete with another nonce: %v; want NOT_AUTHORIZED", resp.Result)
	}
	if resp := lan.pcp6(t, port, "2001:db8:77::2", pcpMap("2001:db8:77::99", 8081, 600, nonce)); resp.Result != pcp.ResultAddressMismatch {
		t.Fatalf("MAP naming another client address: %v; want ADDRESS_MISMATCH", resp.Result)
	}
	one := pcp.FilterOption(pcp.Filter{Prefix: netip.MustParsePrefix("2001:db8:113::2/128"), Port: 0})
	if resp := lan.pcp6(t, port, "2001:db8:77::22", pcpMap("2001:db8:77::22", 8082, 600, nonce, one)); resp.Result != pcp.ResultSuccess {
		t.Fatalf("MAP with a one-host FILTER: %v", resp.Result)
	}
	wide := pcp.FilterOption(pcp.Filter{Prefix: netip.MustParsePrefix("2001:db8:113::/64")})
	if resp := lan.pcp6(t, port, "2001:db8:77::22", pcpMap("2001:db8:77::22", 8083, 600, nonce, wide)); resp.Result != pcp.ResultUnsuppOption {
		t.Fatalf("MAP with a /64 FILTER: %v; want UNSUPP_OPTION (never ignored)", resp.Result)
	}
	peer := pcp.Request{Op: pcp.OpPeer, Lifetime: 600, ClientAddr: netip.MustParseAddr("2001:db8:77::2"),
		Peer: &pcp.PeerPayload{MapPayload: pcp.MapPayload{Nonce: nonce, Protocol: pcp.TCP, InternalPort: 8080, ExternalPort: 8080},
			RemotePort: 443, RemoteAddr: netip.MustParseAddr("2001:db8:113::2")}}
	if resp := lan.pcp6(t, port, "2001:db8:77::2", peer); resp.Result != pcp.ResultUnsuppOpcode {
		t.Fatalf("PEER: %v; want UNSUPP_OPCODE", resp.Result)
	}
	if resp := lan.pcp6(t, port, "2001:db8:77::2", pcpMap("2001:db8:77::2", 8080, 0, nonce)); resp.Result != pcp.ResultSuccess {
		t.Fatalf("delete: %v", resp.Result)
	}
	if got := r.core.Pinholes(); len(got) != 1 || got[0].InternalPort != 8082 || got[0].RemoteHost != netip.MustParseAddr("2001:db8:113::2") {
		t.Fatalf("after delete: %+v; want only the filtered pinhole of 8082", got)
	}
	if resp := lan.pcp6(t, port, "2001:db8:77::2", pcpMap("2001:db8:77::2", 8080, 0, nonce)); resp.Result != pcp.ResultSuccess {
		t.Fatalf("delete of what is gone: %v; want SUCCESS (RFC 6887 §15)", resp.Result)
	}
}

// TestDaemonSSDPOverIPv6: an IPv6 control point on the LAN finds the
// gateway with an M-SEARCH to ff02::c, and is given a LOCATION on the
// router's global address of that link.
func TestDaemonSSDPOverIPv6(t *testing.T) {
	if !testenv.InOwnNetns(t) {
		return
	}
	lan := newV6LAN(t)
	cfg := testConfig(t)
	cfg.Interfaces.Internal = []string{lan.router}
	cfg.UPnP.SSDP = true // inside the test's own namespaces
	start(t, cfg)
	search := "M-SEARCH * HTTP/1.1\r\nHOST: [FF02::C]:1900\r\nMAN: \"ssdp:discover\"\r\nMX: 1\r\nST: urn:schemas-upnp-org:service:WANIPv6FirewallControl:1\r\n\r\n"
	var got string
	var gerr error
	writeFailures := 0
	deadline := time.Now().Add(10 * time.Second)
	for got == "" && time.Now().Before(deadline) {
		// The LAN's link must be up, with its link-local address (the
		// source of a search to ff02::c), before a search can leave.
		lan.waitLinkLocal(t, 5*time.Second)
		lan.in(t, func() {
			c, err := net.ListenUDP("udp6", &net.UDPAddr{})
			if err != nil {
				gerr = err
				return
			}
			defer c.Close()
			if _, err := c.WriteTo([]byte(search), &net.UDPAddr{IP: net.ParseIP("ff02::c"), Port: 1900, Zone: "eth0"}); err != nil {
				gerr = err
				writeFailures++
				return
			}
			c.SetReadDeadline(time.Now().Add(2 * time.Second))
			buf := make([]byte, 2048)
			if n, _, err := c.ReadFrom(buf); err == nil {
				got = string(buf[:n])
			}
		})
		if writeFailures >= 3 {
			t.Fatalf("cannot send an IPv6 M-SEARCH from a link that is up: %v", gerr)
		}
	}
	if got == "" {
		t.Fatalf("no answer to an IPv6 M-SEARCH (last error: %v)", gerr)
	}
	if !strings.Contains(got, "LOCATION: http://[2001:db8:77::1]:") || !strings.Contains(got, "WANIPv6FirewallControl:1") {
		t.Fatalf("answer to an IPv6 M-SEARCH: %q; want LOCATION on [2001:db8:77::1] and the service's ST", got)
	}
}

// The relay backend relays pinholes from the router's IPv6 addresses to
// the LAN host, and follows them: after rebindPinholes, a pinhole answers
// on the new address and no longer on the old one; a port mapping relayed
// beside it is not disturbed.
func TestRelayBackendPinholesFollowAddresses(t *testing.T) {
	if !testenv.InOwnNetns(t) {
		return
	}
	lan := newV6LAN(t)
	ip := testenv.Programs(t, "ip")["ip"]
	if out, err := exec.Command(ip, "-6", "addr", "add", "2001:db8:77::5/64", "dev", lan.router, "nodad").CombinedOutput(); err != nil {
		t.Fatalf("ip addr add: %v: %s", err, out)
	}
	oldAddr, newAddr := netip.MustParseAddr("2001:db8:77::1"), netip.MustParseAddr("2001:db8:77::5")
	port := lan.serveBanner(t, "lan6")
	b := newRelayBackend(relay.Config{BindAddr: netip.MustParseAddr("127.0.0.1"), PinholeAddrs: []netip.Addr{oldAddr}, Logger: discardLogger()}, discardLogger())
	defer b.Close()
	ctx := context.Background()
	pin := gateway.PinholeRule{PinholeKey: gateway.PinholeKey{Protocol: gateway.TCP, InternalAddr: netip.MustParseAddr("2001:db8:77::2"), InternalPort: port}}
	if err := b.AddPinhole(ctx, pin); err != nil {
		t.Fatal(err)
	}
	internal := banner(t, "inside")
	mapped := freePort(t, netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.2"))
	if err := b.Add(ctx, gateway.Rule{Protocol: gateway.TCP, ExternalPort: mapped, InternalAddr: internal.Addr(), InternalPort: internal.Port()}); err != nil {
		t.Fatal(err)
	}
	read6 := func(a netip.Addr) (string, error) { return read(netip.AddrPortFrom(a, port)) }
	if got, err := read6(oldAddr); err != nil || got != "lan6" {
		t.Fatalf("through the pinhole on %v: %q, %v", oldAddr, got, err)
	}
	if err := b.rebindPinholes(ctx, []netip.Addr{newAddr}); err != nil {
		t.Fatalf("rebindPinholes: %v", err)
	}
	if got := b.PinholeAddrs(); len(got) != 1 || got[0] != newAddr {
		t.Errorf("PinholeAddrs after the move: %v", got)
	}
	if got, err := read6(newAddr); err != nil || got != "lan6" {
		t.Errorf("through the pinhole on the new address %v: %q, %v", newAddr, got, err)
	}
	if _, err := read6(oldAddr); err == nil {
		t.Errorf("the old address %v still relays the pinhole", oldAddr)
	}
	if got, err := read(netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), mapped)); err != nil || got != "inside" {
		t.Errorf("the port mapping after the pinholes moved: %q, %v", got, err)
	}
	if err := b.DeletePinhole(ctx, pin); err != nil {
		t.Fatal(err)
	}
	if _, err := read6(newAddr); err == nil {
		t.Error("the pinhole still relays after DeletePinhole")
	}
}

// TestDaemonPCPOverIPv6WithTheRelay: with the relay backend, a PCP MAP
// over IPv6 is relayed from the external interface's IPv6 address, and
// the answer says so (the assigned external address is the router's, where
// peers reach the pinhole); real TCP goes through until the MAP is
// deleted.
func TestDaemonPCPOverIPv6WithTheRelay(t *testing.T) {
	if !testenv.InOwnNetns(t) {
		return
	}
	lan := newV6LAN(t)
	ip := testenv.Programs(t, "ip")["ip"]
	wan := "pfw" + lan.ns[len(lan.ns)-6:]
	for _, args := range [][]string{
		{"link", "add", wan, "type", "veth", "peer", "name", wan + "p"},
		{"-6", "addr", "add", "2001:db8:113::1/64", "dev", wan, "nodad"},
		{"link", "set", wan, "up"},
		{"link", "set", wan + "p", "up"},
	} {
		if out, err := exec.Command(ip, args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	t.Cleanup(func() { exec.Command(ip, "link", "del", wan).Run() })
	cfg := testConfig(t)
	cfg.Interfaces.Internal = []string{lan.router}
	cfg.Interfaces.External = []string{wan}
	cfg.Interfaces.Force = true // a lab WAN without a route out
	cfg.Backend = BackendRelay
	cfg.Relay.Bind = "127.0.0.1"
	r := start(t, cfg)
	if got := r.relayPinholeAddr(); got != netip.MustParseAddr("2001:db8:113::1") {
		t.Fatalf("the relay relays pinholes from %v; want the external interface's 2001:db8:113::1", got)
	}
	port := lan.serveBanner(t, "via the relay")
	at := netip.AddrPortFrom(netip.MustParseAddr("2001:db8:113::1"), port)
	reach := func() (string, error) { return read(at) }

	pcpPort := local4Port(r.pmpSide.conn6)
	nonce := pcp.NewNonce()
	resp := lan.pcp6(t, pcpPort, "2001:db8:77::2", pcpMap("2001:db8:77::2", port, 600, nonce))
	if resp.Result != pcp.ResultSuccess || resp.Map == nil || resp.Map.ExternalAddr != at.Addr() || resp.Map.ExternalPort != port {
		t.Fatalf("MAP through the relay: %+v %+v; want SUCCESS at %v", resp, resp.Map, at)
	}
	if got, err := reach(); err != nil || got != "via the relay" {
		t.Fatalf("TCP to %v: %q, %v", at, got, err)
	}
	resp = lan.pcp6(t, pcpPort, "2001:db8:77::2", pcpMap("2001:db8:77::2", port, 0, nonce))
	if resp.Result != pcp.ResultSuccess {
		t.Fatalf("MAP delete: %v", resp.Result)
	}
	if _, err := reach(); err == nil {
		t.Errorf("%v still relays after the MAP was deleted", at)
	}
}
