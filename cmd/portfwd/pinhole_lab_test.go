package main

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/portfwd/portfwd/internal/natlab"
)

// reach6 says whether a TCP connection from the WAN host to the LAN host's
// own IPv6 address and port gets through the router's firewall.
func reach6(t *testing.T, l *natlab.Lab, port uint16, within time.Duration) (string, bool) {
	t.Helper()
	banner, err := l.DialTCP(t, natlab.HostWAN, ap(l.LANIP6, port), within)
	return banner, err == nil
}

// TestLabPinholeUPnPAgainstMiniupnpd: add --ipv6 finds miniupnpd over SSDP
// on ff02::c, opens a WANIPv6FirewallControl pinhole for the LAN host's
// address (SOAP over IPv6 from that address, spelled as miniupnpd's
// strcmp wants it), the WAN host gets through, list shows it from the
// records, keep-style renewal (UpdatePinhole) works, and delete shuts it.
func TestLabPinholeUPnPAgainstMiniupnpd(t *testing.T) {
	l := natlab.Start(t, natlab.Options{IPv6: true})
	l.ServeTCP(t, natlab.HostLAN, ap(l.LANIP6, 8080), "pinhole")
	if _, reached := reach6(t, l, 8080, mustFail); reached {
		t.Fatal("the WAN host reached the LAN host over IPv6 before any pinhole")
	}
	r := ok(t, l, "add", "8080", "--ipv6", "--protocol", "upnp", "--lease", "10m")
	contains(t, "add --ipv6", r.stdout, "opened ["+l.LANIP6.String()+"]:8080/TCP from any (pinhole 1, lease 10m0s, UPnP")
	contains(t, "add --ipv6 note", r.stderr, "stable global address "+l.LANIP6.String())
	if got, reached := reach6(t, l, 8080, mustWork); !reached || got != "pinhole" {
		t.Fatalf("WAN -> [%v]:8080 through the pinhole: %q (reached %v)", l.LANIP6, got, reached)
	}
	rules := strings.Join(l.PinholeRules(t), "\n")
	contains(t, "pinhole chain", rules, "th dport 8080")

	r = ok(t, l, "list", "--ipv6", "--json")
	lj := decode[struct {
		Pinholes []struct {
			Family         string `json:"family"`
			ID             string `json:"id"`
			InternalClient string `json:"internal_client"`
			InternalPort   uint16 `json:"internal_port"`
			Method         string `json:"method"`
			LeaseSeconds   int64  `json:"lease_seconds"`
		} `json:"pinholes"`
	}](t, r.stdout)
	if len(lj.Pinholes) != 1 || lj.Pinholes[0].Family != "ipv6" || lj.Pinholes[0].ID != "1" ||
		lj.Pinholes[0].InternalClient != l.LANIP6.String() || lj.Pinholes[0].Method != "upnp" || lj.Pinholes[0].LeaseSeconds <= 0 {
		t.Errorf("list --ipv6 --json: %+v", lj.Pinholes)
	}
	r = ok(t, l, "list", "--ipv6")
	contains(t, "list --ipv6", r.stdout, "IPv6 pinholes this host opened", "1   TCP", "["+l.LANIP6.String()+"]:8080", "UPnP http://[2001:db8:77::1]:5000/ctl/IP6FCtl")

	// Adding the same tuple again is idempotent (the spec): same ID.
	r = ok(t, l, "add", "8080", "--ipv6", "--protocol", "upnp", "--lease", "20m")
	contains(t, "add --ipv6 again", r.stdout, "(pinhole 1, lease 20m0s")

	r = ok(t, l, "delete", "8080/tcp", "--ipv6", "--protocol", "upnp")
	contains(t, "delete --ipv6", r.stdout, "closed pinhole 1 (["+l.LANIP6.String()+"]:8080/TCP)")
	if _, reached := reach6(t, l, 8080, mustFail); reached {
		t.Fatal("the WAN host still reaches the LAN host after the pinhole was closed")
	}
	if rules := l.PinholeRules(t); len(rules) != 0 {
		t.Errorf("pinhole rules left: %v", rules)
	}
	// Closing an ID the router no longer has: miniupnpd answers 402 (its
	// nftables lookup "finds" any ID), read as already gone.
	r = ok(t, l, "delete", "--id", "1", "--protocol", "upnp")
	contains(t, "delete --id of a closed pinhole", r.stderr, "had no pinhole 1 any more")
	contains(t, "delete --id of a closed pinhole", r.stdout, "pinhole 1 was already gone")

	// --client names another of this host's addresses: the request is
	// sent from it, so miniupnpd accepts it (a body-only address would be
	// refused with 606, miniupnp#600/#731).
	second := "2001:db8:77::22"
	l.AddAddr6(t, natlab.HostLAN, mustPrefix(second+"/64"))
	l.ServeTCP(t, natlab.HostLAN, ap(mustAddr(second), 8081), "second")
	r = ok(t, l, "add", "8081", "--ipv6", "--client", second, "--protocol", "upnp", "--json")
	addj := decode[struct {
		Mappings []struct {
			Family, ID     string
			InternalClient string `json:"internal_client"`
		} `json:"mappings"`
	}](t, r.stdout)
	if len(addj.Mappings) != 1 || addj.Mappings[0].Family != "ipv6" || addj.Mappings[0].InternalClient != second {
		t.Errorf("add --client --json: %+v", addj.Mappings)
	}
	if got, reached := l.DialTCP(t, natlab.HostWAN, ap(mustAddr(second), 8081), mustWork); reached != nil || got != "second" {
		t.Fatalf("WAN -> [%s]:8081: %q, %v", second, got, reached)
	}
	// An address this host does not have is refused before anything is sent.
	r = pf(t, l, natlab.HostLAN, "add", "8082", "--ipv6", "--client", "2001:db8:77::99", "--protocol", "upnp")
	if r.code == 0 || !strings.Contains(r.stderr, "not an address of this host") {
		t.Errorf("add --client of another host: %v", r)
	}
	// miniupnpd refuses ports below 1024 (606): exit 3, refused, with the reason.
	r = pf(t, l, natlab.HostLAN, "add", "80", "--ipv6", "--protocol", "upnp")
	if r.code != exitRefused || !strings.Contains(r.stderr, "606 (ActionNotAuthorized)") || !strings.Contains(r.stderr, "ports 1024 and up") {
		t.Errorf("add 80 --ipv6: %v", r)
	}
	ok(t, l, "delete", "8081/tcp", "--ipv6", "--protocol", "upnp")

	// ip shows both families.
	r = ok(t, l, "ip", "--gateway", l.MiniupnpdURL())
	if lines := strings.Split(strings.TrimSpace(r.stdout), "\n"); len(lines) != 2 || lines[0] != l.RouterWANIP.String() ||
		(lines[1] != second && lines[1] != l.LANIP6.String()) {
		t.Errorf("ip: want the router's IPv4 address and this host's IPv6 one; got %v", r)
	}
}

func mustPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }

// TestLabPinholeKeepRenews: keep --ipv6 renews with UpdatePinhole at half
// the lease; the pinhole stays open past its first lease and closes on exit.
// keep --ipv4 --ipv6 holds a port mapping and a pinhole together.
func TestLabPinholeKeepRenews(t *testing.T) {
	l := natlab.Start(t, natlab.Options{IPv6: true})
	l.ServeTCP(t, natlab.HostLAN, ap(l.LANIP6, 8090), "kept6")
	l.ServeTCP(t, natlab.HostLAN, ap(l.LANIP, 8090), "kept4")
	keep := l.Start(t, natlab.HostLAN, portfwdBinary(t), "keep", "8090", "--ipv4", "--ipv6", "--lease", "4s",
		"--gateway", l.MiniupnpdURL(), "--no-cache")
	if !waitFor(5*time.Second, func() bool { _, ok := reach6(t, l, 8090, 200*time.Millisecond); return ok }) {
		t.Fatalf("keep --ipv6 never opened the pinhole; its output:\n%s", keep.Output())
	}
	if !waitFor(5*time.Second, func() bool { _, ok := reachTCP(t, l, 8090, 200*time.Millisecond); return ok }) {
		t.Fatalf("keep --ipv4 never made the mapping; its output:\n%s", keep.Output())
	}
	// miniupnpd sweeps expired pinholes; past two leases it is still open.
	time.Sleep(9 * time.Second)
	if got, reached := reach6(t, l, 8090, mustWork); !reached || got != "kept6" {
		t.Fatalf("pinhole gone after renewals: %q; keep output:\n%s", got, keep.Output())
	}
	keep.Stop()
	out := keep.Output()
	contains(t, "keep output", out, "mapped pinhole ["+l.LANIP6.String()+"]:8090/TCP (ID 1)", "renewed pinhole", "deleted pinhole")
	if _, reached := reach6(t, l, 8090, mustFail); reached {
		t.Fatalf("pinhole still open after keep exited:\n%s", out)
	}
	if _, reached := reachTCP(t, l, 8090, mustFail); reached {
		t.Fatalf("IPv4 mapping still there after keep exited:\n%s", out)
	}
}

// TestLabPinholeKeepRecreates: a pinhole closed behind keep's back (upnpc
// -6 -D, as a router restart would lose it) is open again at the next
// check: the renewal finds the ID gone and adds the tuple again.
func TestLabPinholeKeepRecreates(t *testing.T) {
	natlab.Require(t, "upnpc")
	l := natlab.Start(t, natlab.Options{IPv6: true})
	l.ServeTCP(t, natlab.HostLAN, ap(l.LANIP6, 8091), "kept6")
	keep := l.Start(t, natlab.HostLAN, portfwdBinary(t), "keep", "8091", "--ipv6", "--lease", "1h", "--check-interval", "300ms")
	if !waitFor(5*time.Second, func() bool { _, ok := reach6(t, l, 8091, 200*time.Millisecond); return ok }) {
		t.Fatalf("keep --ipv6 never opened the pinhole; its output:\n%s", keep.Output())
	}
	deleted := time.Now()
	if out, err := l.Run(t, natlab.HostLAN, "upnpc", "-6", "-i", "-u", l.MiniupnpdURL6(), "-D", "1"); err != nil || !strings.Contains(out, "returned : 0") {
		t.Fatalf("upnpc -6 -D 1: %v\n%s", err, out)
	}
	if !waitFor(5*time.Second, func() bool {
		_, ok := reach6(t, l, 8091, 200*time.Millisecond)
		return ok && strings.Contains(keep.Output(), "recreated")
	}) {
		t.Fatalf("keep did not open the pinhole again; its output:\n%s", keep.Output())
	}
	t.Logf("pinhole back %v after it was deleted (check interval 300 ms)", time.Since(deleted).Round(time.Millisecond))
	keep.Stop()
	out := keep.Output()
	contains(t, "keep output", out, "recreated pinhole", "deleted pinhole")
	t.Logf("keep output:\n%s", out)
	if _, reached := reach6(t, l, 8090, mustFail); reached {
		t.Fatalf("pinhole still open after keep exited:\n%s", out)
	}
	if _, reached := reachTCP(t, l, 8090, mustFail); reached {
		t.Fatalf("IPv4 mapping still there after keep exited:\n%s", out)
	}
}

// TestLabPinholePCPAgainstMiniupnpd: the same through PCP over IPv6: a MAP
// from the host's own address is a pinhole (miniupnpd hands back the
// host's address and port), and a later process closes it with the nonce
// from the records. A pinhole miniupnpd 2.3.1 has refreshed cannot be
// closed (its nftables backend drops the nonce on update): portfwd says
// so, exits non-zero and cuts the lease to the server's minimum instead.
// The nonce check itself and ADDRESS_MISMATCH are proven with the pcp
// package's client in pcp's lab test.
func TestLabPinholePCPAgainstMiniupnpd(t *testing.T) {
	l := natlab.Start(t, natlab.Options{IPv6: true})
	pcpFlags := []string{"--protocol", "pcp", "--natpmp", l.RouterLANIP6.String()}
	l.ServeTCP(t, natlab.HostLAN, ap(l.LANIP6, 8085), "pcp6")
	r := ok(t, l, append([]string{"add", "8085", "--ipv6", "--lease", "10m"}, pcpFlags...)...)
	contains(t, "add --ipv6 pcp", r.stdout, "opened ["+l.LANIP6.String()+"]:8085/TCP from any (pinhole pcp-", "lease 10m0s, PCP")
	if got, reached := reach6(t, l, 8085, mustWork); !reached || got != "pcp6" {
		t.Fatalf("WAN -> [%v]:8085 through the PCP pinhole: %q (reached %v)", l.LANIP6, got, reached)
	}
	r = ok(t, l, append([]string{"delete", "8085/tcp", "--ipv6"}, pcpFlags...)...)
	contains(t, "delete --ipv6 pcp", r.stdout, "closed pinhole pcp-")
	if _, reached := reach6(t, l, 8085, mustFail); reached {
		t.Fatal("PCP pinhole still open after delete")
	}
	if rules := l.PinholeRules(t); len(rules) != 0 {
		t.Errorf("pinhole rules left: %v", rules)
	}

	// Open, refresh from a later process (the same nonce, from the
	// records: one rule, not two), then the delete miniupnpd refuses.
	ok(t, l, append([]string{"add", "8085", "--ipv6", "--lease", "10m"}, pcpFlags...)...)
	ok(t, l, append([]string{"add", "8085", "--ipv6", "--lease", "10m"}, pcpFlags...)...)
	if rules := l.PinholeRules(t); len(rules) != 1 {
		t.Errorf("%d pinhole rules after a refresh, want 1: %v", len(rules), rules)
	}
	r = pf(t, l, natlab.HostLAN, append([]string{"delete", "8085/tcp", "--ipv6"}, pcpFlags...)...)
	if r.code != exitRefused || !strings.Contains(r.stderr, "loses that nonce") || !strings.Contains(r.stderr, "shortened to the router's minimum, 2m0s") {
		t.Errorf("delete of a refreshed PCP pinhole: %v", r)
	}
	r = ok(t, l, "list", "--ipv6")
	contains(t, "list after the cut", r.stdout, "pcp-")
	if strings.Contains(r.stdout, "10m0s") || strings.Contains(r.stdout, "9m") {
		t.Errorf("list still shows the old lease:\n%s", r.stdout)
	}
}
