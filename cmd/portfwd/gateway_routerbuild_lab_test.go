//go:build linux

package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/portfwd/portfwd/internal/natlab"
)

// TestLabGatewayRouterBuild runs the router build, portfwd-gateway as
// scripts/release.sh makes it for a router's flash (tags gatewayonly and
// nethttpomithttp2: its HTTP is internal/httpx's own, not net/http's),
// on the lab's router, and proves its HTTP with peers we did not write:
// upnpc and python3-miniupnpc (SSDP, description, SOAP), curl (GENA
// SUBSCRIBE, a chunked SOAP call) with its initial event delivered to a
// net/http server, our own CLI on net/http's client, hostile requests
// answered as the spec says, the admin page's /metrics, and a clean stop.
// (PORTFWD_LAB_ROUTER_BUILD=1 runs every gateway lab test on this build.)
func TestLabGatewayRouterBuild(t *testing.T) {
	l := natlab.Start(t, natlab.Options{Router: natlab.RouterNone})
	natlab.Require(t, "upnpc", "natpmpc", "curl")
	ext := l.RouterWANIP.String()
	lan := l.LANIP.String()
	g := &labGateway{l: l, bin: routerGatewayBinary(t), args: gatewayArgs(t, l), stateDir: l.RunDir + "/gw"}
	g.start(t)
	l.ServeTCP(t, natlab.HostLAN, ap(l.LANIP, 8080), "lan-8080")
	l.ServeUDPEcho(t, natlab.HostLAN, ap(l.LANIP, 19001))

	t.Run("upnpc", func(t *testing.T) {
		out := lanRun(t, l, "upnpc", "-i", "-l")
		contains(t, "upnpc -l", out, "desc: http://"+l.RouterLANIP.String()+":5000/rootDesc.xml", "ExternalIPAddress = "+ext)
		lanRun(t, l, "upnpc", "-i", "-e", "router build", "-a", lan, "8080", "18080", "TCP")
		if got, reached := reachTCP(t, l, 18080, mustWork); !reached || got != "lan-8080" {
			t.Fatalf("after upnpc -a, WAN -> %s:18080 got %q (reached %v)", ext, got, reached)
		}
		contains(t, "upnpc -l after add", lanRun(t, l, "upnpc", "-i", "-l"), "18080->"+lan+":8080", "'router build'")
		lanRun(t, l, "upnpc", "-i", "-d", "18080", "TCP")
		if _, reached := reachTCP(t, l, 18080, mustFail); reached {
			t.Fatal("18080 still reachable after upnpc -d")
		}
		out, _ = l.Run(t, natlab.HostLAN, "upnpc", "-i", "-a", lan, "8080", "80", "TCP")
		contains(t, "upnpc -a on a denied port", out, "failed with code 606")
	})

	t.Run("python-miniupnpc", func(t *testing.T) {
		out := lanRun(t, l, "/usr/bin/python3", "-c", `
import miniupnpc
u = miniupnpc.UPnP(); u.discoverdelay = 200
print('devices', u.discover())
print('igd', u.selectigd())
print('extip', u.externalipaddress())
print('add', u.addportmapping(18081, 'TCP', u.lanaddr, 8080, 'python', ''))
print('entry', u.getgenericportmapping(0))
print('delete', u.deleteportmapping(18081, 'TCP'))
print('after', u.getgenericportmapping(0))`)
		contains(t, "python", out, "igd http://"+l.RouterLANIP.String()+":5000/ctl/IPConn", "extip "+ext,
			"add True", "(18081, 'TCP', ('"+lan+"', 8080), 'python'", "delete True", "after None")
	})

	t.Run("portfwd-client", func(t *testing.T) {
		contains(t, "discover", ok(t, l, "discover", "--protocol", "upnp").stdout,
			"http://"+l.RouterLANIP.String()+":5000/ctl/IPConn", "external IP: "+ext)
		ok(t, l, "add", "8080", "--external", "18082", "--desc", "ours", "--lease", "1h")
		if got, reached := reachTCP(t, l, 18082, mustWork); !reached || got != "lan-8080" {
			t.Fatalf("after add, got %q (reached %v)", got, reached)
		}
		contains(t, "list", ok(t, l, "list").stdout, "18082", lan+":8080", "ours")
		ok(t, l, "delete", "18082/tcp")
		if _, reached := reachTCP(t, l, 18082, mustFail); reached {
			t.Fatal("18082 still reachable after delete")
		}
		out := lanRun(t, l, "natpmpc", "-g", l.RouterLANIP.String(), "-a", "9001", "19001", "udp", "60")
		contains(t, "natpmpc -a", out, "Mapped public port 9001 protocol UDP to local port 19001")
	})

	t.Run("gena", func(t *testing.T) {
		cb := serveGENACallback(t, l, ap(l.LANIP, 4000))
		out := lanRun(t, l, "curl", "-s", "-o", "/dev/null", "-D", "-", "-w", "code=%{http_code}\n", "-X", "SUBSCRIBE",
			"-H", fmt.Sprintf("CALLBACK: <http://%s/>", cb.addr), "-H", "NT: upnp:event", "-H", "TIMEOUT: Second-1800",
			fmt.Sprintf("http://%s/evt/IPConn", ap(l.RouterLANIP, 5000)))
		contains(t, "SUBSCRIBE", out, "code=200", "SID: uuid:", "TIMEOUT: Second-1800")
		select {
		case ev := <-cb.events:
			if ev["ExternalIPAddress"] != ext {
				t.Errorf("initial event %v: want ExternalIPAddress %v", ev, ext)
			}
		case <-time.After(5 * time.Second):
			t.Error("no initial event within 5 s of subscribing")
		}
	})

	t.Run("soap-chunked", func(t *testing.T) {
		body := `<?xml version="1.0"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" s:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"><s:Body><u:GetExternalIPAddress xmlns:u="urn:schemas-upnp-org:service:WANIPConnection:1"/></s:Body></s:Envelope>`
		out := lanRun(t, l, "curl", "-s", "-D", "-", "-H", "Transfer-Encoding: chunked", "-H", `Content-Type: text/xml; charset="utf-8"`,
			"-H", `SOAPAction: "urn:schemas-upnp-org:service:WANIPConnection:1#GetExternalIPAddress"`, "--data-binary", body,
			fmt.Sprintf("http://%s/ctl/IPConn", ap(l.RouterLANIP, 5000)))
		contains(t, "chunked SOAP call", out, "HTTP/1.1 200 OK", "<NewExternalIPAddress>"+ext+"</NewExternalIPAddress>")
	})

	t.Run("hostile-http", func(t *testing.T) {
		host := l.RouterLANIP.String() + ":5000"
		for _, tc := range []struct{ name, req, status string }{
			{"a header over the limit", "GET /rootDesc.xml HTTP/1.1\r\nHost: " + host + "\r\nX-Big: " + strings.Repeat("a", 128<<10) + "\r\n\r\n", "431"},
			{"HTTP/1.1 without Host", "GET /rootDesc.xml HTTP/1.1\r\n\r\n", "400"},
			{"two Hosts", "GET /rootDesc.xml HTTP/1.1\r\nHost: " + host + "\r\nHost: other\r\n\r\n", "400"},
			{"both framings", "POST /ctl/IPConn HTTP/1.1\r\nHost: " + host + "\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "400"},
			{"bad chunk size", "POST /ctl/IPConn HTTP/1.1\r\nHost: " + host + "\r\nTransfer-Encoding: chunked\r\nSOAPAction: \"urn:schemas-upnp-org:service:WANIPConnection:1#GetExternalIPAddress\"\r\n\r\nzz\r\n", "400"},
			{"an unknown coding", "POST /ctl/IPConn HTTP/1.1\r\nHost: " + host + "\r\nTransfer-Encoding: gzip\r\n\r\n", "501"},
			{"HTTP/2.0", "GET /rootDesc.xml HTTP/2.0\r\nHost: " + host + "\r\n\r\n", "505"},
			{"a space in a field name", "GET /rootDesc.xml HTTP/1.1\r\nHost: " + host + "\r\nX Bad: 1\r\n\r\n", "400"},
		} {
			if got := statusOf(rawHTTP(t, l, l.LANIP, tc.req, 3*time.Second)); got != tc.status {
				t.Errorf("%s: %s, want %s", tc.name, got, tc.status)
			}
		}
		// And the server still answers.
		if got := statusOf(rawHTTP(t, l, l.LANIP, "GET /rootDesc.xml HTTP/1.1\r\nHost: "+host+"\r\nConnection: close\r\n\r\n", 3*time.Second)); got != "200" {
			t.Errorf("the description after hostile requests: %s", got)
		}
	})

	t.Run("admin-metrics", func(t *testing.T) {
		m := g.metrics(t)
		if n := metricValue(m, `portfwd_requests_total{protocol="upnp",action="AddPortMapping",result="0"}`); n < 1 {
			t.Errorf("no successful AddPortMapping counted:\n%s", m)
		}
	})

	g.stop(t)
}
