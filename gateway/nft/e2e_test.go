//go:build linux

package nft

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// topology is a three-namespace network:
//
//	lan (eth0 10.88.0.2) ── lan0 10.88.0.1 [router] wan0 203.0.113.1 ── wan (eth0 203.0.113.2)
//
// The lan host routes through the router; the wan host has only its
// connected route, so it can reach the LAN only through a mapping.
type topology struct {
	lan, router, wan *netNS
}

const (
	routerWAN = "203.0.113.1"
	wanHost   = "203.0.113.2"
	routerLAN = "10.88.0.1"
)

func newTopology(t *testing.T) *topology {
	top := &topology{}
	top.lan, top.router, top.wan = newRoutedNamespaces(t, nil)
	for _, c := range [][]string{
		{top.router.name, "addr", "add", routerLAN + "/24", "dev", "lan0"},
		{top.router.name, "addr", "add", routerWAN + "/24", "dev", "wan0"},
		{top.router.name, "link", "set", "lan0", "up"},
		{top.router.name, "link", "set", "wan0", "up"},
		{top.lan.name, "addr", "add", lanHost.String() + "/24", "dev", "eth0"},
		{top.lan.name, "link", "set", "eth0", "up"},
		{top.lan.name, "route", "add", "default", "via", routerLAN},
		{top.wan.name, "addr", "add", wanHost + "/24", "dev", "eth0"},
		{top.wan.name, "link", "set", "eth0", "up"},
	} {
		run(t, "ip", append([]string{"-n"}, c...)...)
	}
	top.router.sysctl(t, "net/ipv4/ip_forward", "1")
	top.router.sysctl(t, "net/ipv4/conf/all/rp_filter", "0")
	top.router.sysctl(t, "net/ipv4/conf/default/rp_filter", "0")
	return top
}

// newRoutedNamespaces makes the namespaces of a router between a LAN host
// and a WAN host, each set up by prepare first (nil: nothing), and joins
// them: the router's lan0 to the LAN host's eth0, its wan0 to the WAN
// host's eth0. The links are down and have no address.
func newRoutedNamespaces(t *testing.T, prepare func(*netNS)) (lan, router, wan *netNS) {
	l := newLab(t)
	lan, router, wan = l.ns(), l.ns(), l.ns()
	if prepare != nil {
		for _, n := range []*netNS{lan, router, wan} {
			prepare(n)
		}
	}
	run(t, "ip", "link", "add", "lan0", "netns", router.name, "type", "veth", "peer", "name", "eth0", "netns", lan.name)
	run(t, "ip", "link", "add", "wan0", "netns", router.name, "type", "veth", "peer", "name", "eth0", "netns", wan.name)
	return lan, router, wan
}

func (n *netNS) sysctl(t testing.TB, name, value string) {
	t.Helper()
	err := inNetNS(n.fd(), func() error {
		return os.WriteFile(filepath.Join("/proc/sys", name), []byte(value), 0o644)
	})
	if err != nil {
		t.Fatalf("sysctl %s=%s in %s: %v", name, value, n.name, err)
	}
}

// serveTCP listens on addr inside n (network "tcp4" or "tcp6") and
// answers each connection with one line naming the peer address it sees,
// then closes it.
func (n *netNS) serveTCP(t *testing.T, network, addr string) {
	t.Helper()
	var ln net.Listener
	err := inNetNS(n.fd(), func() (err error) {
		ln, err = net.Listen(network, addr)
		return err
	})
	if err != nil {
		t.Fatalf("listen %s in %s: %v", addr, n.name, err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fmt.Fprintf(c, "hello %s\n", c.RemoteAddr().(*net.TCPAddr).IP)
			c.Close()
		}
	}()
}

// serveUDP answers each datagram on addr inside n with "pong <peer ip>".
func (n *netNS) serveUDP(t *testing.T, addr string) {
	t.Helper()
	var pc net.PacketConn
	err := inNetNS(n.fd(), func() (err error) {
		pc, err = net.ListenPacket("udp4", addr)
		return err
	})
	if err != nil {
		t.Fatalf("listen udp %s in %s: %v", addr, n.name, err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			_, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo([]byte("pong "+from.(*net.UDPAddr).IP.String()), from)
		}
	}()
}

// dialTCP connects from n to addr (network "tcp4" or "tcp6") and returns
// the line the server sent.
func (n *netNS) dialTCP(network, addr string) (string, error) {
	var line string
	err := inNetNS(n.fd(), func() error {
		c, err := net.DialTimeout(network, addr, time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(2 * time.Second))
		line, err = bufio.NewReader(c).ReadString('\n')
		line = strings.TrimSpace(line)
		return err
	})
	return line, err
}

// pingUDP sends one datagram from a fresh socket in n to addr and returns
// the reply.
func (n *netNS) pingUDP(addr string) (string, error) {
	var reply string
	err := inNetNS(n.fd(), func() error {
		c, err := net.Dial("udp4", addr)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(time.Second))
		if _, err := c.Write([]byte("ping")); err != nil {
			return err
		}
		buf := make([]byte, 1500)
		k, err := c.Read(buf)
		reply = string(buf[:k])
		return err
	})
	return reply, err
}

// TestForwardingEndToEnd sends real TCP and UDP traffic through the
// mappings between namespaces.
func TestForwardingEndToEnd(t *testing.T) {
	top := newTopology(t)
	top.lan.serveTCP(t, "tcp4", lanHost.String()+":8080")
	top.lan.serveUDP(t, lanHost.String()+":5353")
	b := newBackend(t, top.router, Config{ExternalInterfaces: []string{"wan0"}, InternalInterfaces: []string{"lan0"}})
	ctx := context.Background()
	ext := routerWAN + ":18080"

	if _, err := top.wan.dialTCP("tcp4", ext); err == nil {
		t.Fatal("port 18080 reachable before any mapping")
	}

	web := tcpRule(18080, lanHost, 8080)
	if err := b.Add(ctx, web); err != nil {
		t.Fatal(err)
	}
	t.Run("tcp", func(t *testing.T) {
		got, err := top.wan.dialTCP("tcp4", ext)
		// DNAT keeps the client's address, unlike a relay.
		if want := "hello " + wanHost; err != nil || got != want {
			t.Fatalf("wan -> %s: %q, %v; want %q", ext, got, err, want)
		}
	})

	t.Run("udp", func(t *testing.T) {
		dns := udpRule(15353, lanHost, 5353)
		if err := b.Add(ctx, dns); err != nil {
			t.Fatal(err)
		}
		got, err := top.wan.pingUDP(routerWAN + ":15353")
		if want := "pong " + wanHost; err != nil || got != want {
			t.Fatalf("udp: %q, %v; want %q", got, err, want)
		}
		if err := b.Delete(ctx, dns); err != nil {
			t.Fatal(err)
		}
		// A fresh socket: the old flow's conntrack entry would still be
		// DNATed (see the package documentation).
		if got, err := top.wan.pingUDP(routerWAN + ":15353"); err == nil {
			t.Fatalf("udp after Delete got %q", got)
		}
	})

	restricted := tcpRule(18081, lanHost, 8080)
	restricted.RemoteHost = netip.MustParseAddr(wanHost)
	t.Run("remote host restriction", func(t *testing.T) {
		other := restricted
		other.RemoteHost = netip.MustParseAddr("203.0.113.99")
		if err := b.Add(ctx, other); err != nil {
			t.Fatal(err)
		}
		if got, err := top.wan.dialTCP("tcp4", routerWAN+":18081"); err == nil {
			t.Fatalf("mapping for 203.0.113.99 served %s: %q", wanHost, got)
		}
		if err := b.Add(ctx, restricted); err != nil {
			t.Fatal(err)
		}
		if got, err := top.wan.dialTCP("tcp4", routerWAN+":18081"); err != nil || got != "hello "+wanHost {
			t.Fatalf("mapping for %s: %q, %v", wanHost, got, err)
		}
	})

	t.Run("hairpin", func(t *testing.T) {
		got, err := top.lan.dialTCP("tcp4", ext)
		// Masqueraded, so that the server answers through the router.
		if want := "hello " + routerLAN; err != nil || got != want {
			t.Fatalf("lan -> %s: %q, %v; want %q", ext, got, err, want)
		}
		// The router's own LAN address keeps its own ports.
		if got, err := top.lan.dialTCP("tcp4", routerLAN+":18080"); err == nil {
			t.Fatalf("lan -> router's LAN address was DNATed: %q", got)
		}
	})

	t.Run("another table's forward policy drop", func(t *testing.T) {
		top.router.nft(t, "add table inet adminfw")
		t.Cleanup(func() { top.router.nft(t, "delete table inet adminfw") })
		top.router.nft(t, "add chain inet adminfw forward { type filter hook forward priority filter; policy drop; }")
		top.router.nft(t, "add rule inet adminfw forward ct state established,related accept")
		if got, err := top.wan.dialTCP("tcp4", ext); err == nil {
			t.Fatalf("got %q although adminfw drops new forwarded connections; our own accept cannot override it", got)
		}
		top.router.nft(t, "insert rule inet adminfw forward ct status dnat accept")
		if got, err := top.wan.dialTCP("tcp4", ext); err != nil {
			t.Fatalf("with ct status dnat accept in adminfw: %q, %v", got, err)
		}
	})

	t.Run("delete", func(t *testing.T) {
		if err := b.Delete(ctx, web); err != nil {
			t.Fatal(err)
		}
		// The SYN now reaches the router itself, where nothing listens.
		if got, err := top.wan.dialTCP("tcp4", ext); !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("dial after Delete: %q, %v; want connection refused by the router", got, err)
		}
	})

	t.Run("restart keeps traffic flowing", func(t *testing.T) {
		if err := b.Add(ctx, web); err != nil {
			t.Fatal(err)
		}
		b.Close()
		b2 := newBackend(t, top.router, Config{ExternalInterfaces: []string{"wan0"}, InternalInterfaces: []string{"lan0"}})
		if got, err := top.wan.dialTCP("tcp4", ext); err != nil || got != "hello "+wanHost {
			t.Fatalf("after restart: %q, %v", got, err)
		}
		wantRules(t, b2, web, restricted)
	})
}
