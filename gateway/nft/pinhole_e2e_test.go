//go:build linux

package nft

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/portfwd/portfwd/gateway"
)

// topology6 is the IPv6 lab: routed, no NAT66, as an ISP delegates a
// prefix. The router's firewall (table inet filter, as the natlab's and
// miniupnpd's) drops new inbound IPv6 and jumps to chain miniupnpd first,
// where the backend puts its pinhole rules.
//
//	lan (eth0 2001:db8:77::2, ::22) ── lan0 ::1 [router] wan0 2001:db8:113::1 ── wan (eth0 2001:db8:113::2)
type topology6 struct {
	lan, router, wan *netNS
}

const (
	lan6  = "2001:db8:77::2"
	lan6b = "2001:db8:77::22"
	wan6  = "2001:db8:113::2"
)

func newTopology6(t *testing.T) *topology6 {
	top := &topology6{}
	top.lan, top.router, top.wan = newRoutedNamespaces(t, func(n *netNS) {
		for _, k := range []string{"accept_dad", "dad_transmits", "accept_ra", "autoconf", "router_solicitations"} {
			n.sysctl(t, "net/ipv6/conf/default/"+k, "0")
		}
	})
	for _, c := range [][]string{
		{top.router.name, "-6", "addr", "add", "2001:db8:77::1/64", "dev", "lan0", "nodad"},
		{top.router.name, "-6", "addr", "add", "2001:db8:113::1/64", "dev", "wan0", "nodad"},
		{top.router.name, "link", "set", "lan0", "up"},
		{top.router.name, "link", "set", "wan0", "up"},
		{top.lan.name, "-6", "addr", "add", lan6 + "/64", "dev", "eth0", "nodad"},
		{top.lan.name, "-6", "addr", "add", lan6b + "/64", "dev", "eth0", "nodad"},
		{top.lan.name, "link", "set", "eth0", "up"},
		{top.lan.name, "-6", "route", "add", "default", "via", "2001:db8:77::1"},
		{top.wan.name, "-6", "addr", "add", wan6 + "/64", "dev", "eth0", "nodad"},
		{top.wan.name, "link", "set", "eth0", "up"},
		{top.wan.name, "-6", "route", "add", "2001:db8:77::/64", "via", "2001:db8:113::1"},
	} {
		run(t, "ip", append([]string{"-n"}, c...)...)
	}
	top.router.sysctl(t, "net/ipv6/conf/all/forwarding", "1")
	top.router.nft(t, "add table inet filter")
	top.router.nft(t, "add chain inet filter miniupnpd")
	top.router.nft(t, "add chain inet filter forward { type filter hook forward priority filter; policy drop; }")
	top.router.nft(t, "add rule inet filter forward ct state established,related accept")
	top.router.nft(t, `add rule inet filter forward iifname "lan0" oifname "wan0" accept`)
	top.router.nft(t, "add rule inet filter forward jump miniupnpd")
	return top
}

func pinRule(to string, port uint16) gateway.PinholeRule {
	return gateway.PinholeRule{PinholeKey: gateway.PinholeKey{Protocol: gateway.TCP, InternalAddr: netip.MustParseAddr(to), InternalPort: port}, Timeout: time.Hour}
}

// TestPinholesEndToEnd opens, counts, restricts, renews and closes IPv6
// pinholes in the administrator's chain, with real TCP from the WAN host.
func TestPinholesEndToEnd(t *testing.T) {
	top := newTopology6(t)
	top.lan.serveTCP(t, "tcp6", "["+lan6+"]:8080")
	top.lan.serveTCP(t, "tcp6", "["+lan6b+"]:8081")
	cfg := Config{ExternalInterfaces: []string{"wan0"}, ForwardTable: "inet filter", ForwardChain: "miniupnpd"}
	b := newBackend(t, top.router, cfg)
	ctx := context.Background()
	addr := "[" + lan6 + "]:8080"

	if got, err := top.wan.dialTCP("tcp6", addr); err == nil {
		t.Fatalf("reached %s before any pinhole: %q", addr, got)
	}
	web := pinRule(lan6, 8080)
	if err := b.AddPinhole(ctx, web); err != nil {
		t.Fatal(err)
	}
	if got, err := top.wan.dialTCP("tcp6", addr); err != nil || got != "hello "+wan6 {
		t.Fatalf("through the pinhole: %q, %v", got, err)
	}
	t.Run("counter", func(t *testing.T) {
		n, counted, err := b.PinholePackets(ctx, web)
		if err != nil || !counted || n == 0 {
			t.Fatalf("packets %d, counted %v, %v; want the SYN counted", n, counted, err)
		}
	})
	t.Run("the other address of the host is not opened", func(t *testing.T) {
		if got, err := top.wan.dialTCP("tcp6", "["+lan6b+"]:8081"); err == nil {
			t.Fatalf("reached %s:8081 without a pinhole: %q", lan6b, got)
		}
	})
	t.Run("remote host and port restriction", func(t *testing.T) {
		other := pinRule(lan6b, 8081)
		other.RemoteHost = netip.MustParseAddr("2001:db8:113::99")
		if err := b.AddPinhole(ctx, other); err != nil {
			t.Fatal(err)
		}
		if got, err := top.wan.dialTCP("tcp6", "["+lan6b+"]:8081"); err == nil {
			t.Fatalf("pinhole for 2001:db8:113::99 served %s: %q", wan6, got)
		}
		mine := pinRule(lan6b, 8081)
		mine.RemoteHost = netip.MustParseAddr(wan6)
		mine.RemotePort = 1 // no dial comes from port 1
		if err := b.AddPinhole(ctx, mine); err != nil {
			t.Fatal(err)
		}
		if got, err := top.wan.dialTCP("tcp6", "["+lan6b+"]:8081"); err == nil {
			t.Fatalf("pinhole for remote port 1 served another port: %q", got)
		}
		mine.RemotePort = 0
		if err := b.AddPinhole(ctx, mine); err != nil {
			t.Fatal(err)
		}
		if got, err := top.wan.dialTCP("tcp6", "["+lan6b+"]:8081"); err != nil {
			t.Fatalf("pinhole for %s: %q, %v", wan6, got, err)
		}
	})
	t.Run("renewal keeps it open and sets the timeout", func(t *testing.T) {
		renewed := web
		renewed.Timeout = 2 * time.Hour
		if err := b.AddPinhole(ctx, renewed); err != nil {
			t.Fatal(err)
		}
		out := top.router.nft(t, "list set inet filter "+setPin6)
		if !strings.Contains(out, "2001:db8:77::2 . tcp . 8080") || !strings.Contains(out, "timeout 2h") {
			t.Fatalf("set after renewal:\n%s", out)
		}
		if got, err := top.wan.dialTCP("tcp6", addr); err != nil {
			t.Fatalf("after renewal: %q, %v", got, err)
		}
	})
	t.Run("the admin's chain keeps its own rules", func(t *testing.T) {
		top.router.nft(t, `add rule inet filter miniupnpd ip6 daddr 2001:db8:77::99 accept comment "admin's"`)
		b2 := newBackend(t, top.router, cfg) // a restart rewrites our rules only
		if out := top.router.nft(t, "list chain inet filter miniupnpd"); !strings.Contains(out, `comment "admin's"`) {
			t.Fatalf("the admin's rule is gone:\n%s", out)
		}
		got, err := b2.InstalledPinholes(ctx)
		if err != nil || len(got) != 4 {
			t.Fatalf("after restart: %+v, %v; want the 4 pinholes found in the sets", got, err)
		}
		if got, err := top.wan.dialTCP("tcp6", addr); err != nil {
			t.Fatalf("after restart: %q, %v", got, err)
		}
		b = b2
	})
	t.Run("delete", func(t *testing.T) {
		if err := b.DeletePinhole(ctx, web); err != nil {
			t.Fatal(err)
		}
		if got, err := top.wan.dialTCP("tcp6", addr); err == nil {
			t.Fatalf("reached %s after delete: %q", addr, got)
		}
	})
	t.Run("the kernel closes it when the daemon is gone", func(t *testing.T) {
		short := pinRule(lan6, 8080)
		short.Timeout = 300 * time.Millisecond
		if err := b.AddPinhole(ctx, short); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(5 * time.Second)
		for strings.Contains(top.router.nft(t, "list set inet filter "+setPin6), "8080") {
			if time.Now().After(deadline) {
				t.Fatal("the element outlived its timeout")
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	t.Run("firewall reload", func(t *testing.T) {
		// fw4 reload: the admin's table is rebuilt without our objects.
		top.router.nft(t, "delete table inet filter")
		top.router.nft(t, "add table inet filter")
		top.router.nft(t, "add chain inet filter miniupnpd")
		top.router.nft(t, "add chain inet filter forward { type filter hook forward priority filter; policy drop; }")
		top.router.nft(t, "add rule inet filter forward ct state established,related accept")
		top.router.nft(t, "add rule inet filter forward jump miniupnpd")
		if err := b.AddPinhole(ctx, web); err != nil {
			t.Fatalf("after the reload: %v", err)
		}
		if got, err := top.wan.dialTCP("tcp6", addr); err != nil {
			t.Fatalf("after the reload: %q, %v", got, err)
		}
		if got, err := top.wan.dialTCP("tcp6", "["+lan6b+"]:8081"); err != nil {
			t.Fatalf("the other pinhole after the reload: %q, %v", got, err)
		}
	})
	t.Run("destroy leaves the admin's table", func(t *testing.T) {
		if err := b.Destroy(ctx); err != nil {
			t.Fatal(err)
		}
		out := top.router.nft(t, "list table inet filter")
		if strings.Contains(out, "portfwd") {
			t.Fatalf("our objects left in the admin's table:\n%s", out)
		}
		if !strings.Contains(out, "chain miniupnpd") || !strings.Contains(out, "policy drop") {
			t.Fatalf("the admin's table was damaged:\n%s", out)
		}
	})
}

// TestPinholeChainMustExist: naming a chain that is not there fails with
// what to do.
func TestPinholeChainMustExist(t *testing.T) {
	top := newTopology6(t)
	_, err := New(context.Background(), Config{ExternalInterfaces: []string{"wan0"}, ForwardTable: "inet filter", ForwardChain: "nope",
		NetNS: top.router.fd(), Logger: quietLogger()})
	if err == nil || !strings.Contains(err.Error(), "not in table") {
		t.Fatalf("New: %v; want an error naming the missing chain", err)
	}
}
