package main

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portfwd/portfwd/internal/natlab"
)

// TestLabPersonalityLayouts runs `portfwd gateway --personality SLUG` for
// devices whose layouts break assumptions (a WANPPPConnection:1 with
// colons in its paths, a WANPPPConnection:2 on IGD:2, query-style DD-WRT
// URLs, AVM's shared control and event URLs) and proves that both
// portfwd's client and upnpc find the device by SSDP at its description
// path, read its identity, and add, list and delete a mapping through its
// connection service, with real traffic from the WAN host.
func TestLabPersonalityLayouts(t *testing.T) {
	natlab.Require(t, "upnpc")
	portfwdBinary(t)
	l := natlab.Start(t, natlab.Options{Router: natlab.RouterNone})
	for i, tc := range []struct {
		slug, descPath, control, conn, name string
	}{
		{"linksys-wag200g", "/rootDesc.xml", "/upnp/control/WANPPPConn1", "urn:schemas-upnp-org:service:WANPPPConnection:1", "LINKSYS WAG200G Gateway"},
		{"actiontec-gt784wn", "/dyndev/uuid:deadbeef-dead-beef-dead-beefdeadbeef00", "/uuid:70f196f9-33f5-f533-f996-f170f1f9f50002/WANPPPConnection:1",
			"urn:schemas-upnp-org:service:WANPPPConnection:1", "Actiontec GT784WN"},
		{"orange-livebox-new", "/rootDesc.xml", "/87895a19/upnp/control/WANIPConn1", "urn:schemas-upnp-org:service:WANPPPConnection:2", "Orange Livebox"},
		{"tplink-tl-wr841nd-v9-ddwrt", "/InternetGatewayDevice.xml", "/control?WANIPConnection", "urn:schemas-upnp-org:service:WANIPConnection:1", "TP-Link TL-WR841ND v9:DD-WRT"},
		{"avm-fritzbox-7430", "/igddesc.xml", "/igdupnp/control/WANIPConn1", "urn:schemas-upnp-org:service:WANIPConnection:1", "FRITZ!Box 7430"},
	} {
		t.Run(tc.slug, func(t *testing.T) {
			state := filepath.Join(l.RunDir, "personality-"+tc.slug)
			g := startGateway(t, l, "--admin", "off", "--state-dir", filepath.Join(state, "gw"), "--flush-on-exit", "--personality", tc.slug)
			defer g.stop(t)
			port := uint16(18700 + 10*i)
			l.ServeTCP(t, natlab.HostLAN, ap(l.LANIP, port), "persona")
			l.ServeTCP(t, natlab.HostLAN, ap(l.LANIP, port+1), "persona-upnpc")
			desc := "http://" + l.RouterLANIP.String() + ":5000" + tc.descPath

			// SSDP answers a search for the device's connection service, and
			// none for the other kind, which the device does not have.
			group := netip.MustParseAddrPort("239.255.255.250:1900")
			// HTTP answers before SSDP has joined its group: wait for it.
			if !waitFor(5*time.Second, func() bool { return strings.Contains(g.proc.Output(), "ssdp: responder serving") }) {
				t.Fatalf("the gateway's SSDP responder did not start:\n%s", g.proc.Output())
			}
			if _, _, ok := ssdpAsk(t, l, group, tc.conn, 2*time.Second); !ok {
				t.Errorf("no SSDP answer to a search for %s", tc.conn)
			}
			other := strings.NewReplacer("WANPPPConnection", "WANIPConnection", "WANIPConnection", "WANPPPConnection").Replace(tc.conn)
			if _, _, ok := ssdpAsk(t, l, group, other, 1500*time.Millisecond); ok {
				t.Errorf("an SSDP answer to a search for %s, which the device does not have", other)
			}

			// portfwd's client: SSDP discovery, identity, add, list, delete.
			c := &cellRunner{t: t, l: l, state: filepath.Join(state, "client"), proto: "upnp"}
			for _, cmd := range [][]string{{"discover", "--no-cache"}, {"info"}} {
				r := c.run(cmd...)
				if !r.ok {
					t.Fatalf("%s: %s\n%s", cmd[0], r.msg, r.detail)
				}
				t.Logf("$ portfwd %s\n%s", cmd[0], r.out)
				if cmd[0] == "info" && !strings.Contains(r.out, tc.name) {
					t.Errorf("info does not name the device %q:\n%s", tc.name, r.out)
				}
				if cmd[0] == "discover" && !strings.Contains(r.out+r.detail, tc.descPath) {
					t.Errorf("discover does not show the description at %s:\n%s", tc.descPath, r.detail)
				}
			}
			p := fmt.Sprint(port)
			if r := c.run("add", p, "--lease", "1h", "--desc", "persona"); !r.ok {
				t.Fatalf("add: %s\n%s", r.msg, r.detail)
			}
			if got, reached := reachTCP(t, l, port, mustWork); !reached || got != "persona" {
				t.Fatalf("after portfwd add, the WAN host reached %q (reached %v)", got, reached)
			}
			if r := c.run("list"); !r.ok || listed(r.out, p) != 1 {
				t.Errorf("list (ok %v) shows the mapping %d times:\n%s", r.ok, listed(r.out, p), r.detail)
			}
			if r := c.run("delete", p+"/tcp"); !r.ok {
				t.Errorf("delete: %s\n%s", r.msg, r.detail)
			}
			if _, reached := reachTCP(t, l, port, mustFail); reached {
				t.Errorf("the port still forwards after portfwd delete")
			}

			// upnpc: discovery by SSDP, then add, list, delete on what it found
			// (-i: the lab's WAN address is a documentation one, which upnpc
			// otherwise takes for a gateway without a public address).
			out, _ := l.Run(t, natlab.HostLAN, "upnpc", "-i", "-s")
			root := "http://" + l.RouterLANIP.String() + ":5000"
			if !strings.Contains(out, "desc: "+desc) || !strings.Contains(out, "IGD : "+root+tc.control+"\n") {
				t.Errorf("upnpc -s did not find the IGD at %s with its connection at %s:\n%s", desc, tc.control, out)
			}
			up := fmt.Sprint(port + 1)
			out, err := l.Run(t, natlab.HostLAN, "upnpc", "-i", "-a", l.LANIP.String(), up, up, "TCP", "3600")
			if err != nil || !strings.Contains(out, "is redirected") {
				t.Fatalf("upnpc -a: %v\n%s", err, out)
			}
			if got, reached := reachTCP(t, l, port+1, mustWork); !reached || got != "persona-upnpc" {
				t.Errorf("after upnpc -a, the WAN host reached %q (reached %v)", got, reached)
			}
			out, _ = l.Run(t, natlab.HostLAN, "upnpc", "-i", "-l")
			if !strings.Contains(out, up+"->"+l.LANIP.String()+":"+up) {
				t.Errorf("upnpc -l does not list %s:\n%s", up, out)
			}
			if out, err := l.Run(t, natlab.HostLAN, "upnpc", "-i", "-d", up, "TCP"); err != nil || strings.Contains(out, "failed") {
				t.Errorf("upnpc -d: %v\n%s", err, out)
			}
			if _, reached := reachTCP(t, l, port+1, mustFail); reached {
				t.Errorf("the port still forwards after upnpc -d")
			}
		})
	}
}
