package main

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portfwd/portfwd/internal/natlab"
	"github.com/portfwd/portfwd/pcp"
)

// poolSubscriberNet numbers the subscribers of TestLabGatewayPCPPool:
// addresses of the LAN host, routed to it by the router, as a carrier's
// subscribers sit behind its access network.
var poolSubscriberNet = netip.MustParsePrefix("10.78.0.0/16")

// TestLabGatewayPCPPool runs the gateway as a carrier's PCP server with an
// external address pool of four addresses (its own and three more on the
// WAN interface) for 200 subscriber addresses on the LAN host: every
// subscriber gets its PCP mappings on one address of the pool, the
// subscribers are spread over all four, and real TCP and UDP from the WAN
// host reach a subscriber's server through a mapping on a pool address
// other than the gateway's own, and nothing else there.
func TestLabGatewayPCPPool(t *testing.T) {
	const subscribers = 200
	l := natlab.Start(t, natlab.Options{Router: natlab.RouterNone})
	wanBits := l.RouterWANIP.As4()
	pool := []netip.Addr{l.RouterWANIP}
	for i := range 3 {
		b := wanBits
		b[3] = byte(51 + i)
		a := netip.AddrFrom4(b)
		pool = append(pool, a)
		if _, err := l.Run(t, natlab.HostRouter, "ip", "addr", "add", a.String()+"/32", "dev", natlab.RouterWANIf); err != nil {
			t.Fatal(err)
		}
	}
	// The subscribers: addresses of the LAN host, routed from the router.
	var batch strings.Builder
	subs := make([]netip.Addr, subscribers)
	a := poolSubscriberNet.Addr().Next()
	for i := range subs {
		subs[i] = a
		fmt.Fprintf(&batch, "address add %s/32 dev %s\n", a, natlab.HostIf)
		a = a.Next()
	}
	batchFile := filepath.Join(l.RunDir, "subscribers.batch")
	if err := os.WriteFile(batchFile, []byte(batch.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	lanRun(t, l, "ip", "-batch", batchFile)
	if _, err := l.Run(t, natlab.HostRouter, "ip", "route", "add", poolSubscriberNet.String(), "via", l.LANIP.String(), "dev", natlab.RouterLANIf); err != nil {
		t.Fatal(err)
	}

	var quoted []string
	for _, a := range pool {
		quoted = append(quoted, `"`+a.String()+`"`)
	}
	conf := filepath.Join(l.RunDir, "pool.toml")
	text := "[natpmp]\npcp_external_pool = [" + strings.Join(quoted, ", ") + "]\n"
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	g := &labGateway{l: l, stateDir: filepath.Join(l.RunDir, "gw"), args: []string{"gateway", "--config", conf,
		"--internal", natlab.RouterLANIf, "--external", natlab.RouterWANIf,
		"--external-ip", l.RouterWANIP.String(), "--backend", "nft",
		"--state-dir", filepath.Join(l.RunDir, "gw"), "--admin", "off"}}
	g.start(t)
	defer g.stop(t)

	// Each subscriber maps TCP 8080 and UDP 9000 over PCP, from its own
	// address, as a PCP client behind a carrier's access network does.
	server := netip.AddrPortFrom(l.RouterLANIP, 5351)
	grants := make([]poolGrant, subscribers)
	began := time.Now()
	err := l.In(natlab.HostLAN, func() error {
		for i, sub := range subs {
			for _, proto := range []pcp.Protocol{pcp.TCP, pcp.UDP} {
				port := uint16(8080)
				if proto == pcp.UDP {
					port = 9000
				}
				got, err := pcpMapFrom(sub, server, proto, port)
				if err != nil {
					return fmt.Errorf("subscriber %v, %v port %d: %w", sub, proto, port, err)
				}
				if proto == pcp.TCP {
					grants[i].tcp = got
				} else {
					grants[i].udp = got
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("timing: %d PCP MAP requests from %d subscribers in %v", 2*subscribers, subscribers, time.Since(began).Round(time.Millisecond))

	perAddr := map[netip.Addr]int{}
	inPool := map[netip.Addr]bool{}
	for _, a := range pool {
		inPool[a] = true
	}
	pick := -1
	for i, g := range grants {
		if g.tcp.Addr() != g.udp.Addr() {
			t.Fatalf("subscriber %v was given two external addresses: %v and %v", subs[i], g.tcp, g.udp)
		}
		if !inPool[g.tcp.Addr()] {
			t.Fatalf("subscriber %v was given %v, outside the pool %v", subs[i], g.tcp.Addr(), pool)
		}
		perAddr[g.tcp.Addr()]++
		if pick < 0 && g.tcp.Addr() != l.RouterWANIP {
			pick = i
		}
	}
	if len(perAddr) != len(pool) {
		t.Fatalf("subscribers were spread over %d addresses, want all %d: %v", len(perAddr), len(pool), perAddr)
	}
	t.Logf("subscribers per pool address: %v", perAddr)

	// Real traffic from the WAN host to a mapping on a pool address
	// other than the gateway's own.
	sub, gr := subs[pick], grants[pick]
	l.ServeTCP(t, natlab.HostLAN, ap(sub, 8080), "subscriber-8080")
	l.ServeUDPEcho(t, natlab.HostLAN, ap(sub, 9000))
	if got, err := l.DialTCP(t, natlab.HostWAN, gr.tcp, 5*time.Second); err != nil || got != "subscriber-8080" {
		t.Fatalf("WAN -> %v (subscriber %v's TCP mapping): %q, %v", gr.tcp, sub, got, err)
	}
	if got, err := l.ProbeUDP(t, natlab.HostWAN, gr.udp, "ping", 5*time.Second); err != nil || got != "ping" {
		t.Fatalf("WAN -> %v (subscriber %v's UDP mapping): %q, %v", gr.udp, sub, got, err)
	}
	// The same port on another pool address is not that mapping.
	for _, other := range pool[1:] {
		if other == gr.tcp.Addr() || hasGrant(grants, netip.AddrPortFrom(other, gr.tcp.Port())) {
			continue
		}
		if got, err := l.DialTCP(t, natlab.HostWAN, netip.AddrPortFrom(other, gr.tcp.Port()), 500*time.Millisecond); err == nil {
			t.Fatalf("WAN -> %v:%d reached %q: a mapping answered on an address it is not on", other, gr.tcp.Port(), got)
		}
		break
	}
	out, _ := l.Run(t, natlab.HostRouter, "nft", "list", "map", "inet", "portfwd", "fwd4pool")
	contains(t, "nft list map fwd4pool", out, fmt.Sprintf("%s . tcp . %d : %s . 8080", gr.tcp.Addr(), gr.tcp.Port(), sub))
}

// poolGrant is what one subscriber was given.
type poolGrant struct{ tcp, udp netip.AddrPort }

// hasGrant reports whether some subscriber was given ap for TCP.
func hasGrant(grants []poolGrant, ap netip.AddrPort) bool {
	for _, g := range grants {
		if g.tcp == ap {
			return true
		}
	}
	return false
}

// pcpMapFrom sends one PCP MAP from src to server and returns the external
// address and port granted.
func pcpMapFrom(src netip.Addr, server netip.AddrPort, proto pcp.Protocol, port uint16) (netip.AddrPort, error) {
	c, err := net.DialUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(src, 0)), net.UDPAddrFromAddrPort(server))
	if err != nil {
		return netip.AddrPort{}, err
	}
	defer c.Close()
	nonce := pcp.NewNonce()
	req, err := pcp.AppendRequest(nil, pcp.Request{Op: pcp.OpMap, Lifetime: 600, ClientAddr: src,
		Map: &pcp.MapPayload{Nonce: nonce, Protocol: proto, InternalPort: port}})
	if err != nil {
		return netip.AddrPort{}, err
	}
	buf := make([]byte, 1100)
	var lastErr error
	for try := range 4 {
		if _, err := c.Write(req); err != nil {
			return netip.AddrPort{}, err
		}
		deadline := time.Now().Add(time.Duration(250<<try) * time.Millisecond)
		c.SetReadDeadline(deadline)
		for time.Now().Before(deadline) {
			n, err := c.Read(buf)
			if err != nil {
				lastErr = err
				if ne, ok := err.(net.Error); ok && ne.Timeout() {
					break // timed out: send again
				}
				// An ICMP error (ECONNREFUSED) is reported once; like a
				// PCP client (RFC 6887 §8.1.1), keep to the retransmission
				// timer rather than resend at once.
				continue
			}
			r, err := pcp.ParseResponse(buf[:n])
			if err != nil || r.Map == nil || r.Map.Nonce != nonce {
				continue
			}
			if r.Result != pcp.ResultSuccess {
				return netip.AddrPort{}, fmt.Errorf("PCP result %v", r.Result)
			}
			return netip.AddrPortFrom(r.Map.ExternalAddr.Unmap(), r.Map.ExternalPort), nil
		}
	}
	return netip.AddrPort{}, fmt.Errorf("no answer from %v (last: %v)", server, lastErr)
}
