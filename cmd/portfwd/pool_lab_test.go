package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portfwd/portfwd/internal/natlab"
	"github.com/portfwd/portfwd/natpmp"
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
// other than the gateway's own, and nothing else there. NAT-PMP from that
// subscriber names its pool address and renews the same mapping; UPnP
// (upnpc) lists the own address's mappings only; and the admin page
// deletes the pool mapping by its address, not the own address's mapping
// of the same port.
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
	text := "[natpmp]\npcp_external_pool = [" + strings.Join(quoted, ", ") + "]\n" +
		"[admin]\naddress = \"127.0.0.1:8900\"\nui = true\n"
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	g := &labGateway{l: l, stateDir: filepath.Join(l.RunDir, "gw"), args: []string{"gateway", "--config", conf,
		"--internal", natlab.RouterLANIf, "--external", natlab.RouterWANIf,
		"--external-ip", l.RouterWANIP.String(), "--backend", "nft",
		"--state-dir", filepath.Join(l.RunDir, "gw")}}
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

	// NAT-PMP from the same subscriber: its external address is its pool
	// address, and renewing its PCP mapping over NAT-PMP renews that one
	// mapping (the same port, still on the pool address), with no second
	// one on the gateway's own address.
	err = l.In(natlab.HostLAN, func() error {
		r, err := natpmpFrom(sub, server, natpmp.Request{Op: natpmp.OpExternalAddress})
		if err != nil {
			return fmt.Errorf("NAT-PMP external address: %w", err)
		}
		if r.Result != natpmp.Success || r.ExternalAddr != gr.tcp.Addr() {
			return fmt.Errorf("NAT-PMP external address for %v: %v %v, want its pool address %v", sub, r.Result, r.ExternalAddr, gr.tcp.Addr())
		}
		r, err = natpmpFrom(sub, server, natpmp.Request{Op: natpmp.OpMapTCP, InternalPort: 8080, SuggestedExternalPort: 8080, Lifetime: 900})
		if err != nil {
			return fmt.Errorf("NAT-PMP renewal: %w", err)
		}
		if r.Result != natpmp.Success || r.ExternalPort != gr.tcp.Port() {
			return fmt.Errorf("NAT-PMP renewal of %v's PCP mapping %v: %v port %d, want port %d", sub, gr.tcp, r.Result, r.ExternalPort, gr.tcp.Port())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	own, _ := l.Run(t, natlab.HostRouter, "nft", "list", "map", "inet", "portfwd", "fwd4")
	if strings.Contains(own, sub.String()+" . 8080") {
		t.Fatalf("the NAT-PMP renewal made a second mapping on the gateway's own address:\n%s", own)
	}
	if got, err := l.DialTCP(t, natlab.HostWAN, gr.tcp, 5*time.Second); err != nil || got != "subscriber-8080" {
		t.Fatalf("WAN -> %v after the NAT-PMP renewal: %q, %v", gr.tcp, got, err)
	}

	// UPnP lists the gateway's own address's mappings only: as many as
	// the subscribers paired with it, and none of the pool's.
	desc := "http://" + l.RouterLANIP.String() + ":5000/rootDesc.xml"
	listed := lanRun(t, l, "upnpc", "-u", desc, "-l")
	onOwn := 2 * perAddr[l.RouterWANIP]
	if n := strings.Count(listed, "PCP"); n != onOwn {
		t.Errorf("upnpc -l lists %d PCP mappings, want the %d on the gateway's own address:\n%s", n, onOwn, listed)
	}
	if strings.Contains(listed, sub.String()+":8080") {
		t.Errorf("upnpc -l lists %v's mapping on pool address %v:\n%s", sub, gr.tcp.Addr(), listed)
	}

	// The admin page lists the pool mapping with its address, and
	// deletes that one: not the own address's mapping of the same port.
	token := adminToken(t, g)
	api := func(method, path string) (int, string) {
		req, _ := http.NewRequest(method, "http://127.0.0.1:8900"+path, nil)
		req.Header.Set("X-Portfwd-Token", token)
		resp, err := routerHTTP(l).Do(req)
		if err != nil {
			t.Fatalf("admin %s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	_, table := api("GET", "/api/mappings")
	contains(t, "the admin page's table", table, fmt.Sprintf(`"external_port":%d,"external_addr":"%s","internal_addr":"%s"`, gr.tcp.Port(), gr.tcp.Addr(), sub))
	ownSame, _ := l.Run(t, natlab.HostRouter, "nft", "list", "map", "inet", "portfwd", "fwd4")
	ownHad := strings.Contains(ownSame, fmt.Sprintf("tcp . %d :", gr.tcp.Port()))
	if code, body := api("DELETE", fmt.Sprintf("/api/mappings/tcp/%d?external_addr=%s", gr.tcp.Port(), gr.tcp.Addr())); code != http.StatusOK {
		t.Fatalf("admin delete of %v: %d %s", gr.tcp, code, body)
	}
	out, _ = l.Run(t, natlab.HostRouter, "nft", "list", "map", "inet", "portfwd", "fwd4pool")
	if strings.Contains(out, fmt.Sprintf("%s . tcp . %d : %s . 8080", gr.tcp.Addr(), gr.tcp.Port(), sub)) {
		t.Fatalf("the admin page's delete left %v in fwd4pool:\n%s", gr.tcp, out)
	}
	if got, err := l.DialTCP(t, natlab.HostWAN, gr.tcp, 500*time.Millisecond); err == nil {
		t.Fatalf("WAN -> %v after the admin page's delete reached %q", gr.tcp, got)
	}
	ownAfter, _ := l.Run(t, natlab.HostRouter, "nft", "list", "map", "inet", "portfwd", "fwd4")
	if ownHad && !strings.Contains(ownAfter, fmt.Sprintf("tcp . %d :", gr.tcp.Port())) {
		t.Fatalf("the admin page's delete of %v removed the own address's TCP %d", gr.tcp, gr.tcp.Port())
	}
	t.Logf("the own address held TCP %d too: %v (kept)", gr.tcp.Port(), ownHad)
}

// natpmpFrom sends one NAT-PMP request from src to server and returns the
// answer.
func natpmpFrom(src netip.Addr, server netip.AddrPort, q natpmp.Request) (natpmp.Response, error) {
	var r natpmp.Response
	err := exchangeFrom(src, server, natpmp.AppendRequest(nil, q), func(b []byte) bool {
		var err error
		r, err = natpmp.ParseResponse(b)
		return err == nil && r.Op == q.Op
	})
	return r, err
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
	nonce := pcp.NewNonce()
	req, err := pcp.AppendRequest(nil, pcp.Request{Op: pcp.OpMap, Lifetime: 600, ClientAddr: src,
		Map: &pcp.MapPayload{Nonce: nonce, Protocol: proto, InternalPort: port}})
	if err != nil {
		return netip.AddrPort{}, err
	}
	var refused error
	var got netip.AddrPort
	err = exchangeFrom(src, server, req, func(b []byte) bool {
		r, err := pcp.ParseResponse(b)
		if err != nil || r.Map == nil || r.Map.Nonce != nonce {
			return false
		}
		if r.Result != pcp.ResultSuccess {
			got = netip.AddrPort{}
			refused = fmt.Errorf("PCP result %v", r.Result)
			return true
		}
		got = netip.AddrPortFrom(r.Map.ExternalAddr.Unmap(), r.Map.ExternalPort)
		return true
	})
	if err == nil && refused != nil {
		err = refused
	}
	return got, err
}

// exchangeFrom sends req from src to server over UDP, as a PCP or NAT-PMP
// client does, retransmitting on the protocols' timer (four tries from
// 250 ms, doubling), until match accepts an answer.
func exchangeFrom(src netip.Addr, server netip.AddrPort, req []byte, match func([]byte) bool) error {
	c, err := net.DialUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(src, 0)), net.UDPAddrFromAddrPort(server))
	if err != nil {
		return err
	}
	defer c.Close()
	buf := make([]byte, 1100)
	var lastErr error
	for try := range 4 {
		if _, err := c.Write(req); err != nil {
			return err
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
			if match(buf[:n]) {
				return nil
			}
		}
	}
	return fmt.Errorf("no answer from %v (last: %v)", server, lastErr)
}
