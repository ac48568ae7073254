package portmap

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portfwd/portfwd/igd/igdtest"
	"github.com/portfwd/portfwd/internal/testenv"
	"github.com/portfwd/portfwd/upnp"
)

// The watcher hears a router's PCP ANNOUNCEs over IPv6 ([ff02::1]:5350,
// RFC 6887 §14.1.3) as well as over IPv4. A dual-stack router announces
// from an IPv6 address of its own, never its IPv4 one, so the watcher
// takes the router's IPv6 addresses from what it knows: the address it
// watches, when IPv6, and this host's IPv6 default routers on the
// router's link. These tests feed the announcements through loopback
// sockets (WatchOptions.Announcements6) and give the default routes
// (WatchOptions.routes6).

func TestRouterAddrs6(t *testing.T) {
	a := netip.MustParseAddr
	defaults := []route6{
		{gw: a("fe80::1"), ifname: "eth0"},
		{gw: a("2001:db8:77::1"), ifname: "eth0"},
		{gw: a("fe80::9"), ifname: "wlan0"},
	}
	routerMAC := net.HardwareAddr{0x2e, 0x52, 0x1a, 0x50, 0x91, 0x9b}
	for _, tc := range []struct {
		name   string
		host   netip.Addr
		hostIf string
		mac    net.HardwareAddr
		want   []linkAddr
	}{
		{"IPv4 router on eth0 with a known MAC address: its EUI-64 link-local address too", a("192.168.1.1"), "eth0", routerMAC,
			[]linkAddr{{a("fe80::2c52:1aff:fe50:919b"), "eth0"}, {a("fe80::1"), "eth0"}, {a("2001:db8:77::1"), ""}}},
		{"a MAC address but no link to put it on", a("192.168.1.1"), "", routerMAC,
			[]linkAddr{{a("fe80::1"), "eth0"}, {a("2001:db8:77::1"), ""}, {a("fe80::9"), "wlan0"}}},
		{"IPv4 router on eth0: the default routers on eth0 only", a("192.168.1.1"), "eth0", nil,
			[]linkAddr{{a("fe80::1"), "eth0"}, {a("2001:db8:77::1"), ""}}},
		{"router's link unknown: every default router", a("192.168.1.1"), "", nil,
			[]linkAddr{{a("fe80::1"), "eth0"}, {a("2001:db8:77::1"), ""}, {a("fe80::9"), "wlan0"}}},
		{"router on a link without IPv6 default route", a("10.0.0.1"), "eth1", nil, nil},
		{"router watched at a global IPv6 address: itself and the default routers", a("2001:db8:77::1"), "", nil,
			[]linkAddr{{a("2001:db8:77::1"), ""}, {a("fe80::1"), "eth0"}, {a("fe80::9"), "wlan0"}}},
		{"router watched at a link-local address: itself and its link's default routers", a("fe80::1%eth0"), "", nil,
			[]linkAddr{{a("fe80::1"), "eth0"}, {a("2001:db8:77::1"), ""}}},
		{"router of unknown address (a Gateway from outside the package)", netip.Addr{}, "", nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := routerAddrs6(tc.host, tc.hostIf, tc.mac, defaults)
			if !slices.Equal(got, tc.want) {
				t.Errorf("routerAddrs6(%v, %q) = %v, want %v", tc.host, tc.hostIf, got, tc.want)
			}
		})
	}
}

func TestEUI64LinkLocal(t *testing.T) {
	// The lab router's lan0: MAC 2e:52:1a:50:91:9b, where miniupnpd
	// announced from fe80::2c52:1aff:fe50:919b.
	if got := eui64LinkLocal(net.HardwareAddr{0x2e, 0x52, 0x1a, 0x50, 0x91, 0x9b}); got != netip.MustParseAddr("fe80::2c52:1aff:fe50:919b") {
		t.Errorf("got %v", got)
	}
	if got := eui64LinkLocal(net.HardwareAddr{0, 0, 0x5e, 0, 0x53, 1}); got != netip.MustParseAddr("fe80::200:5eff:fe00:5301") {
		t.Errorf("got %v", got)
	}
	for _, mac := range []net.HardwareAddr{nil, make(net.HardwareAddr, 8), make(net.HardwareAddr, 20)} {
		if got := eui64LinkLocal(mac); got.IsValid() {
			t.Errorf("eui64LinkLocal(%v) = %v, want none", mac, got)
		}
	}
}

func TestParseARP(t *testing.T) {
	const arp = `IP address       HW type     Flags       HW address            Mask     Device
192.168.1.1      0x1         0x2         02:00:5e:00:53:01     *        eth0
192.168.1.1      0x1         0x2         02:00:5e:00:53:99     *        wlan0
192.168.1.7      0x1         0x0         00:00:00:00:00:00     *        eth0
192.168.1.8      0x1         0x6         02:00:5e:00:53:08     *        eth0
`
	for _, tc := range []struct {
		ip, ifname, want string
	}{
		{"192.168.1.1", "eth0", "02:00:5e:00:53:01"},
		{"192.168.1.1", "wlan0", "02:00:5e:00:53:99"},
		{"192.168.1.1", "", "02:00:5e:00:53:01"},
		{"192.168.1.7", "eth0", ""}, // incomplete: no answer yet
		{"192.168.1.8", "eth0", "02:00:5e:00:53:08"},
		{"192.168.1.9", "eth0", ""},
		{"192.168.1.1", "eth1", ""},
	} {
		got := parseARP([]byte(arp), netip.MustParseAddr(tc.ip), tc.ifname)
		if (got == nil && tc.want != "") || (got != nil && got.String() != tc.want) {
			t.Errorf("parseARP(%s, %q) = %v, want %q", tc.ip, tc.ifname, got, tc.want)
		}
	}
}

func TestFromAny(t *testing.T) {
	a := netip.MustParseAddr
	router := []linkAddr{{a("fe80::1"), "eth0"}, {a("2001:db8:77::1"), "eth0"}, {a("fe80::5"), ""}}
	for _, tc := range []struct {
		from netip.Addr
		zone string
		want bool
	}{
		{a("fe80::1"), "eth0", true},
		{a("fe80::1"), "", true},       // the interface is not known: the address decides
		{a("fe80::1"), "wlan0", false}, // the same link-local address on another link is another host
		{a("fe80::5"), "wlan0", true},  // the router's link is not known
		{a("2001:db8:77::1"), "", true},
		{a("2001:db8:77::1"), "wlan0", true}, // a global address is one host wherever it is heard
		{a("2001:db8:77::66"), "", false},
		{a("fe80::66"), "eth0", false},
		{a("::1"), "", false},
	} {
		if got := fromAny(announcement{from: tc.from, zone: tc.zone, version: 2}, router); got != tc.want {
			t.Errorf("from %v%%%s: %v, want %v", tc.from, tc.zone, got, tc.want)
		}
	}
}

// watchUPnP6 watches e (a UPnP router on 127.0.0.1) with announcements
// over IPv4 and IPv6 read from loopback sockets it returns, and the
// router's IPv6 default route through router6 on lo.
func watchUPnP6(t *testing.T, e *eventedIGD, router6 string, o Options) (<-chan WatchEvent, net.PacketConn, net.PacketConn) {
	t.Helper()
	wo := WatchOptions{PollInterval: time.Hour, NoGENA: true,
		routes6: func() []route6 { return []route6{{gw: netip.MustParseAddr(router6), ifname: "lo"}} }}
	loopbackAnnouncements(t, &wo)
	o.GatewayURL, o.Methods = e.Location, []Method{UPnP}
	return startWatch(t, o, wo), wo.Announcements, wo.Announcements6
}

// TestWatchPCPAnnouncementOverIPv6: a router watched at its IPv4 address
// announces over IPv6 from the address this host's IPv6 default route
// goes through, and the watcher handles it as it does one over IPv4: a
// reading, which reports what changed and a restart, by the
// announcement. Nothing comes over IPv4.
func TestWatchPCPAnnouncementOverIPv6(t *testing.T) {
	e := newEventedIGD(t, igdtest.Options{Version: 2}, upnp.PublisherConfig{})
	ch, _, ann6 := watchUPnP6(t, e, "::1", testOptions(t))
	ev := expect(t, ch, 3*time.Second, WatchInitial)
	if !slices.Contains(ev.Means, ViaAnnouncement) || !strings.Contains(ev.Reason, "NAT-PMP/PCP announcements over IPv4 and IPv6") {
		t.Errorf("initial %+v", ev)
	}
	a := newAnnouncer(t, "[::1]:0", ann6)

	e.setExternal("198.51.100.70")
	a.pcp(1000)
	if ev := expect(t, ch, time.Second, WatchExternalAddressChanged); ev.Via != ViaAnnouncement || ev.ExternalAddr.String() != "198.51.100.70" {
		t.Errorf("external-address-changed %+v", ev)
	}
	e.reboot(time.Second)
	a.pcp(0)
	if ev := expect(t, ch, time.Second, WatchRouterRestarted); ev.Via != ViaAnnouncement || !strings.Contains(ev.Reason, "uptime") {
		t.Errorf("router-restarted %+v", ev)
	}
	// NAT-PMP is IPv4's alone: its announcement format over IPv6 is not
	// the router's news.
	e.setExternal("198.51.100.71")
	a.natpmp(1, "198.51.100.71")
	quiet(t, ch, 300*time.Millisecond)
}

// TestWatchIgnoresIPv6AnnouncementsOfOtherHosts: the same announcement
// from an address that is not the router's prompts nothing, even when the
// router's state changed meanwhile (a reading would show it).
func TestWatchIgnoresIPv6AnnouncementsOfOtherHosts(t *testing.T) {
	e := newEventedIGD(t, igdtest.Options{Version: 2}, upnp.PublisherConfig{})
	// This host's IPv6 default router is 2001:db8:77::1; ::1 is another
	// host.
	ch, _, ann6 := watchUPnP6(t, e, "2001:db8:77::1", testOptions(t))
	expect(t, ch, 3*time.Second, WatchInitial)
	a := newAnnouncer(t, "[::1]:0", ann6)
	e.setExternal("198.51.100.70")
	e.reboot(time.Second)
	a.pcp(0)
	a.pcp(1000)
	quiet(t, ch, 300*time.Millisecond)
}

// TestWatchLearnsALaterIPv6DefaultRouter: the IPv6 default route may
// come (a router advertisement) after watching began; an announcement
// from an unknown address makes the watcher look again (at most once a
// second), and the router's is heard from then on.
func TestWatchLearnsALaterIPv6DefaultRouter(t *testing.T) {
	e := newEventedIGD(t, igdtest.Options{Version: 2}, upnp.PublisherConfig{})
	var routes atomic.Pointer[[]route6]
	routes.Store(&[]route6{})
	wo := WatchOptions{PollInterval: time.Hour, NoGENA: true, routes6: func() []route6 { return *routes.Load() }}
	loopbackAnnouncements(t, &wo)
	o := testOptions(t)
	o.GatewayURL, o.Methods = e.Location, []Method{UPnP}
	ch := startWatch(t, o, wo)
	expect(t, ch, 3*time.Second, WatchInitial)
	a := newAnnouncer(t, "[::1]:0", wo.Announcements6)
	e.setExternal("198.51.100.70")
	a.pcp(1000)
	quiet(t, ch, 300*time.Millisecond) // no IPv6 default router: nobody's announcement counts

	routes.Store(&[]route6{{gw: netip.MustParseAddr("::1"), ifname: "lo"}})
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(5 * time.Second)
	for {
		a.pcp(1000)
		select {
		case ev := <-ch:
			if ev.Kind != WatchExternalAddressChanged || ev.Via != ViaAnnouncement {
				t.Fatalf("got %+v, want external-address-changed by the announcement", ev)
			}
			return
		case <-deadline:
			t.Fatal("the watcher never learnt the new IPv6 default router")
		case <-tick.C:
		}
	}
}

// TestWatchIPv6AnnouncementsFromTheRouterOnly: in a namespace of its own,
// with a second IPv6 address on loopback for another host, one watcher
// hears the router's announcement and not the other host's.
func TestWatchIPv6AnnouncementsFromTheRouterOnly(t *testing.T) {
	if !testenv.InOwnNetns(t) {
		return
	}
	ip := testenv.Programs(t, "ip")["ip"]
	if out, err := exec.Command(ip, "addr", "add", "2001:db8:77::66/128", "dev", "lo", "nodad").CombinedOutput(); err != nil {
		t.Fatalf("ip addr add: %v: %s", err, out)
	}
	e := newEventedIGD(t, igdtest.Options{Version: 2}, upnp.PublisherConfig{})
	ch, _, ann6 := watchUPnP6(t, e, "::1", testOptions(t))
	expect(t, ch, 3*time.Second, WatchInitial)
	e.setExternal("198.51.100.70")
	newAnnouncer(t, "[2001:db8:77::66]:0", ann6).pcp(1000)
	quiet(t, ch, 300*time.Millisecond)
	newAnnouncer(t, "[::1]:0", ann6).pcp(1000)
	if ev := expect(t, ch, time.Second, WatchExternalAddressChanged); ev.Via != ViaAnnouncement || ev.ExternalAddr.String() != "198.51.100.70" {
		t.Errorf("external-address-changed %+v", ev)
	}
}

// TestWatchWithoutIPv6AnnouncementSocket: when port 5350 over IPv6 is
// taken (by a program that did not share it), the watcher watches by
// IPv4 announcements, says so once in its log, not as an error, and an
// IPv4 announcement still works.
func TestWatchWithoutIPv6AnnouncementSocket(t *testing.T) {
	if !testenv.InOwnNetns(t) {
		return
	}
	taken, err := net.ListenPacket("udp6", "[::]:5350") // no SO_REUSEPORT: nobody can share it
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	var log testenv.SyncBuffer
	o := testOptions(t)
	o.Logger = slog.New(slog.NewTextHandler(&log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	e := newEventedIGD(t, igdtest.Options{Version: 2}, upnp.PublisherConfig{})
	ann, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ann.Close()
	o.GatewayURL, o.Methods = e.Location, []Method{UPnP}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := Watch(ctx, o, WatchOptions{PollInterval: time.Hour, NoGENA: true, Announcements: ann})
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	ev := expect(t, ch, 3*time.Second, WatchInitial)
	if !slices.Contains(ev.Means, ViaAnnouncement) || !strings.Contains(ev.Reason, "NAT-PMP/PCP announcements over IPv4, polling") {
		t.Errorf("initial %+v", ev)
	}
	e.setExternal("198.51.100.70")
	newAnnouncer(t, "127.0.0.1:0", ann).pcp(1000)
	if ev := expect(t, ch, time.Second, WatchExternalAddressChanged); ev.Via != ViaAnnouncement {
		t.Errorf("external-address-changed %+v", ev)
	}
	cancel()
	drain(ch)
	out := log.String()
	if n := strings.Count(out, "not listening for PCP announcements over IPv6"); n != 1 {
		t.Errorf("the log says %d times that IPv6 announcements are not heard, want once:\n%s", n, out)
	}
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "over IPv6") && !strings.Contains(l, "level=INFO") {
			t.Errorf("not an informational line: %s", l)
		}
	}
}
