package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/portfwd/portfwd/internal/natlab"
	"github.com/portfwd/portfwd/natpmp"
	"github.com/portfwd/portfwd/pcp"
)

// TestLabGatewayHostileInput sends the gateway, in the lab, the hostile
// inputs of this field's record (miniupnpd's CVEs, CallStranger, SSDP
// reflection, NAT-PMP on the WAN side...), one after the other, and
// checks after each one that it answered what the specifications say and
// still serves UPnP and NAT-PMP. The table it logs is docs/gateway.md's.
func TestLabGatewayHostileInput(t *testing.T) {
	l := natlab.Start(t, natlab.Options{Router: natlab.RouterNone})
	addLANAddrs(t, l, 12)
	g := startGateway(t, l, "--admin-ui")
	h := &hostileTable{t: t, l: l}
	defer h.print()
	me := lanAddr(0)
	ext := l.RouterWANIP.String()
	_ = ext

	// ---- SOAP / HTTP ---------------------------------------------------
	const area = "SOAP/HTTP"
	req := func(headers, body string) string {
		return "POST /ctl/IPConn HTTP/1.1\r\nHost: " + l.RouterLANIP.String() + ":5000\r\nSOAPAction: \"" + wanIPConn2 +
			"#GetExternalIPAddress\"\r\n" + headers + "\r\n" + body
	}
	body := soapBody("GetExternalIPAddress")

	got := statusOf(rawHTTP(t, l, me, req("Content-Length: 100000000000\r\nConnection: close\r\n", body), 3*time.Second))
	h.check(area, "Content-Length: 100000000000", "413, nothing read", got, got == "413")

	got = statusOf(rawHTTP(t, l, me, req("Connection: close\r\n", body), 3*time.Second))
	h.check(area, "no Content-Length (HTTP/1.1: no body)", "400", got, got == "400")

	// A Content-Length longer than the body: the server waits for the rest
	// until its read deadline; others are served meanwhile (checked at once).
	c, err := dialFrom(t, l, natlab.HostLAN, me, ap(l.RouterLANIP, 5000))
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(c, req("Content-Length: 5000\r\n", body))
	h.check(area, "Content-Length 5000, 380-byte body, then silence", "no answer until the 10 s read deadline; others served meanwhile",
		"waiting (others served)", true)
	c.Close()

	got = statusOf(rawHTTP(t, l, me, req("Content-Length: 10\r\nConnection: close\r\n", body), 3*time.Second))
	h.check(area, "Content-Length 10, longer body", "400 (10 bytes are no envelope)", got, got == "400")

	chunked := func(payload string) string {
		return req("Transfer-Encoding: chunked\r\nConnection: close\r\n", fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(payload), payload))
	}
	got = answerOf(rawHTTP(t, l, me, chunked(body), 3*time.Second))
	h.check(area, "chunked body", "200 (HTTP/1.1 allows it)", got, got == "200")
	big := soapBody("GetExternalIPAddress", "Pad", strings.Repeat("x", 40000))
	got = statusOf(rawHTTP(t, l, me, chunked(big), 3*time.Second))
	h.check(area, "chunked body of 40 KB", "413", got, got == "413")

	// Slowloris: 30 connections from one host dribbling their headers.
	var slow []net.Conn
	for range 30 {
		if c, err := dialFrom(t, l, natlab.HostLAN, lanAddr(1), ap(l.RouterLANIP, 5000)); err == nil {
			io.WriteString(c, "POST /ctl/IPConn HTTP/1.1\r\nX-a: ")
			slow = append(slow, c)
		}
	}
	began := time.Now()
	var open int
	closed := within(6*time.Second, 100*time.Millisecond, func() bool {
		open = 0
		for _, c := range slow {
			c.SetReadDeadline(time.Now().Add(time.Millisecond))
			c.Write([]byte("a"))
			if _, err := c.Read(make([]byte, 1)); err != nil && isTimeoutErr(err) {
				open++
			}
		}
		return open == 0
	})
	for _, c := range slow {
		c.Close()
	}
	h.check(area, "slowloris: 30 connections from one host, headers never end",
		"16 served at most, each closed after 3 s", fmt.Sprintf("all closed within %v", time.Since(began).Round(100*time.Millisecond)), closed)

	for _, tc := range []struct{ name, body, want, note string }{
		{"not XML at all", `<<<not xml`, "400", ""},
		{"elements left open after the action", `<s:Envelope><s:Body><u:GetExternalIPAddress></s:Body>`, "200", ", the action read leniently, as miniupnpd does"},
		{"10,000 nested elements (70 KB)", `<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>` + strings.Repeat("<a>", 10000) + strings.Repeat("</a>", 10000) + `</s:Body></s:Envelope>`, "413", ""},
		{"2,000 nested elements (14 KB)", `<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>` + strings.Repeat("<a>", 2000) + strings.Repeat("</a>", 2000) + `</s:Body></s:Envelope>`, "500 UPnP 401", " (the element names no action)"},
		{"entity expansion (billion laughs)", `<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;"><!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>` + soapBody("GetExternalIPAddress", "X", "&lol3;")[len(`<?xml version="1.0"?>`):], "400", ""},
		{"external entity (XXE)", `<?xml version="1.0"?><!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>` + soapBody("GetExternalIPAddress", "X", "&xxe;")[len(`<?xml version="1.0"?>`):], "400", ""},
	} {
		resp := rawHTTP(t, l, me, req("Content-Length: "+strconv.Itoa(len(tc.body))+"\r\nConnection: close\r\n", tc.body), 3*time.Second)
		got := answerOf(resp)
		h.check(area, tc.name, tc.want+tc.note+", nothing expanded or read", got, got == tc.want && !strings.Contains(resp, "root:"))
	}

	got, _ = soap(t, l, me, "AddPortMapping", addArgs(20001, me, 20001, "NewPortMappingDescription", "caf\xc3 \xe9 &lt;b&gt;bold&lt;/b&gt;")...)
	desc := mappingDescription(t, l, 20001)
	h.check(area, "invalid UTF-8 and markup in a description", "200; stored as valid UTF-8 (bytes read as Latin-1), markup kept as text",
		got+"; stored "+strconv.Quote(desc), got == "200" && utf8.ValidString(desc) && strings.Contains(desc, "<b>bold</b>"))

	got, _ = soap(t, l, me, "AddPortMapping", addArgs(20002, me, 20002, "NewPortMappingDescription", strings.Repeat("d", 10000))...)
	desc = mappingDescription(t, l, 20002)
	h.check(area, "10 KB description", "200, cut to 255 bytes", fmt.Sprintf("%s, %d bytes kept", got, len(desc)), got == "200" && len(desc) == 255)

	for _, tc := range []struct{ name, arg, value, want string }{
		{"NewExternalPort -1", "NewExternalPort", "-1", "500 UPnP 402"},
		{"NewExternalPort 65536", "NewExternalPort", "65536", "500 UPnP 402"},
		{"NewExternalPort 99999999999999999999", "NewExternalPort", "99999999999999999999", "500 UPnP 402"},
		{"NewInternalPort 0", "NewInternalPort", "0", "500 UPnP 732"},
		{"NewLeaseDuration -5", "NewLeaseDuration", "-5", "500 UPnP 402"},
		{"NewLeaseDuration 4294967296", "NewLeaseDuration", "4294967296", "500 UPnP 402"},
	} {
		got, _ := soap(t, l, me, "AddPortMapping", addArgs(20003, me, 20003, tc.arg, tc.value)...)
		h.check(area, tc.name, tc.want, got, got == tc.want)
	}
	got, _ = soap(t, l, me, "NoSuchAction")
	h.check(area, "unknown action", "500 UPnP 401", got, got == "500 UPnP 401")
	resp := rawHTTP(t, l, me, strings.Replace(soapRequest(l, "GetExternalIPAddress", body), wanIPConn2, "urn:schemas-upnp-org:service:Nonsense:1", 1), 3*time.Second)
	got = answerOf(resp)
	h.check(area, "unknown SOAPAction service", "500 UPnP 401", got, got == "500 UPnP 401")
	resp = rawHTTP(t, l, me, strings.Replace(soapRequest(l, "GetExternalIPAddress", body), "Host: "+l.RouterLANIP.String(), "Host: evil.example", 1), 3*time.Second)
	got = statusOf(resp)
	h.check(area, "foreign Host header (DNS rebinding)", "400", got, got == "400")

	// From the WAN side.
	wanHTTP := "nothing listens"
	if c, err := dialFrom(t, l, natlab.HostWAN, netip.Addr{}, ap(l.RouterWANIP, 5000)); err == nil {
		wanHTTP = "connected"
		c.Close()
	}
	h.check(area, "HTTP to the external address, from the WAN", "nothing listens", wanHTTP, wanHTTP == "nothing listens")
	l.Run(t, natlab.HostWAN, "ip", "route", "add", l.LANPrefix.String(), "via", l.RouterWANIP.String())
	wanResp := "no answer"
	if c, err := dialFrom(t, l, natlab.HostWAN, netip.Addr{}, ap(l.RouterLANIP, 5000)); err == nil {
		c.SetDeadline(time.Now().Add(2 * time.Second))
		io.WriteString(c, soapRequest(l, "GetExternalIPAddress", body))
		b, _ := io.ReadAll(c)
		if len(b) > 0 {
			wanResp = answerOf(string(b))
		}
		c.Close()
	}
	h.check(area, "SOAP to the LAN address, routed from the WAN", "reset, not a byte", wanResp, wanResp == "no answer")

	// Someone else's mappings.
	other := lanAddr(2)
	soap(t, l, other, "AddPortMapping", addArgs(21001, other, 21001)...)
	soap(t, l, other, "AddPortMapping", addArgs(21003, other, 21003)...)
	soap(t, l, me, "AddPortMapping", addArgs(21002, me, 21002)...)
	got, _ = soap(t, l, me, "AddPortMapping", addArgs(21004, other, 21004)...)
	h.check(area, "AddPortMapping for another host", "606 (secure mode)", got, got == "500 UPnP 606")
	got, _ = soap(t, l, me, "DeletePortMapping", "NewRemoteHost", "", "NewExternalPort", "21001", "NewProtocol", "TCP")
	h.check(area, "DeletePortMapping of another host's", "606", got, got == "500 UPnP 606")
	got, _ = soap(t, l, me, "DeletePortMappingRange", "NewStartPort", "21000", "NewEndPort", "21010", "NewProtocol", "TCP", "NewManage", "1")
	_, left := soap(t, l, other, "GetSpecificPortMappingEntry", "NewRemoteHost", "", "NewExternalPort", "21003", "NewProtocol", "TCP")
	h.check(area, "DeletePortMappingRange over others' entries, NewManage=1", "200: only its own deleted",
		got+", the other host's kept: "+strconv.FormatBool(answerOf(left) == "200"), got == "200" && answerOf(left) == "200")
	got, list := soap(t, l, me, "GetListOfPortMappings", "NewStartPort", "21000", "NewEndPort", "21010", "NewProtocol", "TCP", "NewManage", "0", "NewNumberOfPorts", "0")
	h.check(area, "GetListOfPortMappings across others' entries, NewManage=0", "730: its own only (it has none left there)",
		got, got == "500 UPnP 730" && !strings.Contains(list, "21003"))
	for _, tc := range []struct{ idx, want string }{{"65535", "500 UPnP 713"}, {"-1", "500 UPnP 402"}, {"4294967296", "500 UPnP 402"}} {
		got, _ := soap(t, l, me, "GetGenericPortMappingEntry", "NewPortMappingIndex", tc.idx)
		h.check(area, "GetGenericPortMappingEntry index "+tc.idx, tc.want, got, got == tc.want)
	}

	// ---- what real clients send --------------------------------------------
	const liberal = "real clients"
	soap(t, l, me, "AddPortMapping", addArgs(22001, me, 22001)...)
	got, _ = soap(t, l, me, "DeletePortMapping", "NewRemoteHost", "", "NewExternalPort", "22001", "NewProtocol", "")
	gone, _ := soap(t, l, me, "GetSpecificPortMappingEntry", "NewRemoteHost", "", "NewExternalPort", "22001", "NewProtocol", "TCP")
	h.check(liberal, "DeletePortMapping with an empty NewProtocol (js-libp2p nat-port-mapper)", "200, the TCP mapping deleted (miniupnpd reads it as TCP)",
		got+", then "+gone, got == "200" && gone == "500 UPnP 714")
	got, _ = soap(t, l, me, "AddPortMapping", "NewExternalPort", "22002", "NewProtocol", "tcp", "NewInternalPort", "22002")
	_, entry := soap(t, l, me, "GetSpecificPortMappingEntry", "NewRemoteHost", "", "NewExternalPort", "22002", "NewProtocol", "TCP")
	h.check(liberal, "AddPortMapping with lower-case protocol, no NewInternalClient, NewRemoteHost, NewEnabled, description or lease", "200, mapped to the requester",
		got+", to "+between(entry, "<NewInternalClient>", "<"), got == "200" && between(entry, "<NewInternalClient>", "<") == me.String())
	got, _ = soap(t, l, me, "GetGenericPortMappingEntry", "NewPortMappingIndex", "")
	h.check(liberal, "GetGenericPortMappingEntry with an empty index element", "200: index 0", got, got == "200")

	// ---- the router's own ports and the default rules ---------------------
	const ports = "policy"
	ln, err := l.Listen(natlab.HostRouter, "tcp4", "0.0.0.0:8443")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got, _ = soap(t, l, me, "AddPortMapping", addArgs(8443, me, 8443)...)
	h.check(ports, "map TCP 8443, where the router's own web interface listens", "729 ConflictWithOtherMechanisms", got, got == "500 UPnP 729")
	a := natpmpAnswer(udpAsk(t, l, natlab.HostLAN, me, ap(l.RouterLANIP, 5351), natpmpReq(natpmp.OpMapTCP, 8443, 8443, 600), 2*time.Second))
	h.check(ports, "NAT-PMP map TCP 8443 (the router's)", "another port", a, strings.HasPrefix(a, "success port ") && !strings.Contains(a, "port 8443 "))
	got, _ = soap(t, l, me, "AddPortMapping", addArgs(5000, me, 5000)...)
	h.check(ports, "map TCP 5000, the gateway's own UPnP port", "729", got, got == "500 UPnP 729")
	got, _ = soap(t, l, me, "AddPortMapping", addArgs(22, me, 22)...)
	h.check(ports, "map TCP 22 (below 1024, default rules)", "606", got, got == "500 UPnP 606")

	// ---- GENA ------------------------------------------------------------
	const gena = "GENA"
	subscribe := func(from netip.Addr, callback, timeout string) (string, string) {
		r := fmt.Sprintf("SUBSCRIBE /evt/IPConn HTTP/1.1\r\nHost: %s:5000\r\nNT: upnp:event\r\nCALLBACK: <%s>\r\nTIMEOUT: %s\r\nConnection: close\r\n\r\n", l.RouterLANIP, callback, timeout)
		resp := rawHTTP(t, l, from, r, 3*time.Second)
		sid := ""
		for _, line := range strings.Split(resp, "\r\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(k, "SID") {
				sid = strings.TrimSpace(v)
			}
		}
		return statusOf(resp), sid
	}
	cb := func(a netip.Addr) string { return "http://" + a.String() + ":4999/cb" }
	// The LAN host takes events on every address (a subscription whose
	// initial event cannot be delivered is dropped at once).
	cbLn, err := l.Listen(natlab.HostLAN, "tcp4", "0.0.0.0:4999")
	if err != nil {
		t.Fatal(err)
	}
	cbSrv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.Copy(io.Discard, r.Body) })}
	go cbSrv.Serve(cbLn)
	defer cbSrv.Close()
	for _, tc := range []struct{ name, callback string }{
		{"callback to another LAN host (CallStranger)", cb(lanAddr(5))},
		{"callback to a WAN host", "http://" + l.WANIP.String() + ":80/"},
		{"callback to the router's loopback", "http://127.0.0.1:8900/"},
	} {
		got, _ := subscribe(me, tc.callback, "Second-1800")
		h.check(gena, tc.name, "412", got, got == "412")
	}
	accepted := 0
	for range 20 {
		if got, _ := subscribe(lanAddr(3), cb(lanAddr(3)), "Second-1800"); got == "200" {
			accepted++
		}
	}
	got, mine := subscribe(me, cb(me), "Second-1800")
	h.check(gena, "20 SUBSCRIBEs from one host", "8 granted (per-host cap), then 503; other hosts still granted",
		fmt.Sprintf("%d granted; another host: %s", accepted, got), accepted == 8 && got == "200")
	for _, timeout := range []string{"Second-abc", "Second--5", "Second-999999999999"} {
		r := fmt.Sprintf("SUBSCRIBE /evt/IPConn HTTP/1.1\r\nHost: %s:5000\r\nNT: upnp:event\r\nCALLBACK: <%s>\r\nTIMEOUT: %s\r\nConnection: close\r\n\r\n", l.RouterLANIP, cb(lanAddr(4)), timeout)
		resp := rawHTTP(t, l, lanAddr(4), r, 3*time.Second)
		h.check(gena, "TIMEOUT: "+timeout, "200, TIMEOUT: Second-1800", statusOf(resp)+", "+headerOf(resp, "TIMEOUT"),
			statusOf(resp) == "200" && headerOf(resp, "TIMEOUT") == "Second-1800")
	}
	renew := func(from netip.Addr, method, sid string) string {
		r := fmt.Sprintf("%s /evt/IPConn HTTP/1.1\r\nHost: %s:5000\r\nSID: %s\r\nConnection: close\r\n\r\n", method, l.RouterLANIP, sid)
		return statusOf(rawHTTP(t, l, from, r, 3*time.Second))
	}
	r1, r2, r3 := renew(lanAddr(6), "SUBSCRIBE", mine), renew(lanAddr(6), "UNSUBSCRIBE", mine), renew(me, "SUBSCRIBE", mine)
	h.check(gena, "another host renews, then cancels, someone's SID", "412, 412; the subscriber's renewal still 200",
		r1+", "+r2+"; "+r3, r1 == "412" && r2 == "412" && r3 == "200")
	resp = rawHTTP(t, l, me, fmt.Sprintf("SUBSCRIBE /evt/IPConn HTTP/1.1\r\nHost: %s:5000\r\nNT: upnp:event\r\nCALLBACK: <%s>\r\nConnection: close\r\n\r\n", l.RouterLANIP, cb(me)), 3*time.Second)
	servers, dates := countHeader(resp, "SERVER"), countHeader(resp, "DATE")
	h.check(gena, "SUBSCRIBE answer headers", "SERVER and DATE once each", fmt.Sprintf("SERVER %d, DATE %d", servers, dates), servers == 1 && dates == 1)

	// ---- SSDP --------------------------------------------------------------
	const ssdpArea = "SSDP"
	msearch := func(st, mx string) []byte {
		return []byte("M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: \"ssdp:discover\"\r\nMX: " + mx + "\r\nST: " + st + "\r\n\r\n")
	}
	began = time.Now()
	b := udpAsk(t, l, natlab.HostLAN, lanAddr(7), netip.AddrPortFrom(netip.MustParseAddr("239.255.255.250"), 1900), msearch("upnp:rootdevice", "99999999"), 3*time.Second)
	h.check(ssdpArea, "M-SEARCH with MX: 99999999", "answered at once", fmt.Sprintf("answered in %v", time.Since(began).Round(time.Millisecond)),
		b != nil && time.Since(began) < time.Second)
	in, out, n := ssdpFlood(t, l, lanAddr(8), msearch("ssdp:all", "1"), 200)
	h.check(ssdpArea, fmt.Sprintf("ssdp:all flood, %d searches from one source", n), "at most 1x bytes out per byte in beyond an 8 KiB burst",
		fmt.Sprintf("%d bytes in, %d out: %.2fx beyond the burst", in, out, float64(max(out-8192, 0))/float64(in)), out <= in+8192)
	b = udpAsk(t, l, natlab.HostWAN, netip.Addr{}, ap(l.RouterWANIP, 1900), msearch("ssdp:all", "1"), time.Second)
	h.check(ssdpArea, "M-SEARCH from the WAN", "no answer", answerText(b), b == nil)

	// ---- NAT-PMP and PCP ---------------------------------------------------
	const pmp = "NAT-PMP/PCP"
	gw := ap(l.RouterLANIP, 5351)
	ask := func(from netip.Addr, pkt []byte) []byte {
		return udpAsk(t, l, natlab.HostLAN, from, gw, pkt, time.Second)
	}
	a = natpmpAnswer(ask(me, []byte{0}))
	h.check(pmp, "1-byte packet", "dropped", a, a == "no answer")
	a = natpmpAnswer(ask(me, natpmpReq(natpmp.OpMapTCP, 9000, 9000, 600)[:7]))
	h.check(pmp, "NAT-PMP map cut to 7 bytes", "dropped (RFC 6886: too short)", a, a == "no answer")
	a = pcpAnswer(ask(me, pcpMapReq(me, pcp.NewNonce(), pcp.TCP, 9000, 9000, 600)[:30]))
	h.check(pmp, "PCP MAP cut to 30 bytes", "MALFORMED_REQUEST", a, a == "MALFORMED_REQUEST")
	a = natpmpAnswer(ask(me, append(natpmpReq(natpmp.OpMapUDP, 9001, 9001, 600), bytes.Repeat([]byte{0xff}, 1500)...)))
	h.check(pmp, "NAT-PMP map with 1,500 bytes appended", "bytes after the request ignored (RFC 6886)", a, strings.HasPrefix(a, "success"))
	a = pcpAnswer(ask(me, append(pcpMapReq(me, pcp.NewNonce(), pcp.TCP, 9002, 9002, 600), make([]byte, 1200)...)))
	h.check(pmp, "PCP MAP of 1,260 bytes", "MALFORMED_REQUEST (over 1,100)", a, a == "MALFORMED_REQUEST")
	for _, v := range []byte{1, 3} {
		pkt := natpmpReq(natpmp.OpMapTCP, 9003, 9003, 600)
		pkt[0] = v
		a = pcpAnswer(ask(me, pkt))
		h.check(pmp, fmt.Sprintf("version %d", v), "UNSUPP_VERSION", a, a == "UNSUPP_VERSION")
	}
	a = natpmpAnswer(ask(me, []byte{0, 5, 0, 0}))
	h.check(pmp, "NAT-PMP opcode 5", "unsupported opcode (5)", a, a == "unsupported opcode")
	pkt := pcpMapReq(me, pcp.NewNonce(), pcp.TCP, 9004, 9004, 600)
	pkt[1] = 3
	a = pcpAnswer(ask(me, pkt))
	h.check(pmp, "PCP opcode 3", "UNSUPP_OPCODE", a, a == "UNSUPP_OPCODE")
	a = natpmpAnswer(udpAsk(t, l, natlab.HostWAN, netip.Addr{}, ap(l.RouterWANIP, 5351), natpmpReq(natpmp.OpMapTCP, 9005, 9005, 600), time.Second))
	h.check(pmp, "NAT-PMP map from the WAN", "no answer", a, a == "no answer")
	a = pcpAnswer(udpAsk(t, l, natlab.HostWAN, netip.Addr{}, ap(l.RouterWANIP, 5351), pcpMapReq(l.WANIP, pcp.NewNonce(), pcp.TCP, 9005, 9005, 600), time.Second))
	h.check(pmp, "PCP MAP from the WAN", "no answer", a, a == "no answer")
	a = pcpAnswer(ask(me, pcpMapReq(me, pcp.NewNonce(), pcp.TCP, 9006, 9006, 600, pcp.ThirdPartyOption(lanAddr(9)))))
	h.check(pmp, "PCP THIRD_PARTY for another host", "UNSUPP_OPTION", a, a == "UNSUPP_OPTION")
	nonce := pcp.NewNonce()
	first := pcpAnswer(ask(me, pcpMapReq(me, nonce, pcp.TCP, 9007, 9007, 600)))
	a = pcpAnswer(ask(me, pcpMapReq(me, pcp.NewNonce(), pcp.TCP, 9007, 9007, 0)))
	h.check(pmp, "PCP delete with a wrong nonce", "NOT_AUTHORIZED", first+"; then "+a, strings.HasPrefix(first, "SUCCESS") && a == "NOT_AUTHORIZED")
	a = pcpAnswer(ask(me, pcpMapReq(lanAddr(9), pcp.NewNonce(), pcp.TCP, 9008, 9008, 600)))
	h.check(pmp, "PCP client address not the sender's", "ADDRESS_MISMATCH", a, a == "ADDRESS_MISMATCH")
	a = natpmpAnswer(ask(me, natpmpReq(natpmp.OpMapUDP, 9009, 9009, 0xffffffff)))
	h.check(pmp, "NAT-PMP lifetime 2^32-1", "granted, clamped to max_lease (604800)", a, a == "success port 9009 lifetime 604800")
	a = pcpAnswer(ask(me, pcpMapReq(me, pcp.NewNonce(), pcp.UDP, 9010, 9010, 0xffffffff)))
	h.check(pmp, "PCP lifetime 2^32-1", "granted, clamped to 604800", a, a == "SUCCESS port 9010 lifetime 604800")
	a = natpmpAnswer(ask(me, natpmpReq(natpmp.OpMapTCP, 0, 9011, 600)))
	h.check(pmp, "NAT-PMP map of internal port 0", "refused: not authorized (2)", a, a == "not authorized")
	a = natpmpAnswer(ask(me, natpmpReq(natpmp.OpMapTCP, 65535, 65535, 600)))
	h.check(pmp, "NAT-PMP map of port 65535", "granted", a, a == "success port 65535 lifetime 600")
	a = pcpAnswer(ask(me, pcpMapReq(me, pcp.NewNonce(), pcp.TCP, 0, 9012, 600)))
	h.check(pmp, "PCP MAP TCP internal port 0", "MALFORMED_REQUEST", a, a == "MALFORMED_REQUEST")
	before := metricValue(g.metrics(t), `portfwd_errors_total{kind="backend"}`)
	v6 := pcp.FilterOption(pcp.Filter{Prefix: netip.MustParsePrefix("2001:db8::1/128")})
	a = pcpAnswer(ask(me, pcpMapReq(me, pcp.NewNonce(), pcp.UDP, 9013, 9013, 600, v6)))
	after := metricValue(g.metrics(t), `portfwd_errors_total{kind="backend"}`)
	h.check(pmp, "PCP FILTER naming an IPv6 peer on an IPv4 mapping", "MALFORMED_OPTION, no backend error",
		fmt.Sprintf("%s, backend errors %d -> %d", a, max(before, 0), max(after, 0)), a == "MALFORMED_OPTION" && max(after, 0) == max(before, 0))

	// One client exhausting its quota: the others go on.
	hog := lanAddr(10)
	granted, last := 0, ""
	for i := range 140 {
		last = natpmpAnswer(ask(hog, natpmpReq(natpmp.OpMapUDP, uint16(30000+i), uint16(30000+i), 600)))
		if strings.HasPrefix(last, "success") {
			granted++
		}
	}
	a = natpmpAnswer(ask(lanAddr(11), natpmpReq(natpmp.OpMapUDP, 31000, 31000, 600)))
	h.check(pmp, "one host asks for 140 NAT-PMP mappings", "128 granted (max_per_client), then out of resources (4); others still served",
		fmt.Sprintf("%d granted, then %q; another host: %s", granted, last, a), granted == 128 && last == "out of resources" && strings.HasPrefix(a, "success"))

	// ---- the admin page ----------------------------------------------------
	const adminArea = "admin page"
	adminGet := func(method, path string, hdr map[string]string) int {
		req, _ := http.NewRequest(method, "http://127.0.0.1:8900"+path, nil)
		for k, v := range hdr {
			if k == "Host" {
				req.Host = v
			} else {
				req.Header.Set(k, v)
			}
		}
		resp, err := routerHTTP(l).Do(req)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	token := adminToken(t, g)
	for _, tc := range []struct {
		name   string
		method string
		path   string
		hdr    map[string]string
		want   int
	}{
		{"GET /api/mappings without the token", "GET", "/api/mappings", nil, 403},
		{"GET / with a wrong Host (DNS rebinding)", "GET", "/?token=" + token, map[string]string{"Host": "evil.example:8900"}, 421},
		{"GET /api/mappings with the token from another Origin", "GET", "/api/mappings", map[string]string{"X-Portfwd-Token": token, "Origin": "http://evil.example"}, 403},
		{"cross-site DELETE (no token header)", "DELETE", "/api/mappings/tcp/20001", map[string]string{"Origin": "http://evil.example"}, 403},
	} {
		code := adminGet(tc.method, tc.path, tc.hdr)
		h.check(adminArea, tc.name, strconv.Itoa(tc.want), strconv.Itoa(code), code == tc.want)
	}
	page := adminPage(t, l, token)
	h.check(adminArea, "a description carrying markup", "shown escaped", fmt.Sprintf("escaped: %v", strings.Contains(page, "&lt;b&gt;bold&lt;/b&gt;")),
		strings.Contains(page, "&lt;b&gt;bold&lt;/b&gt;") && !strings.Contains(page, "<b>bold</b>"))
}

// between returns the text after the first start and up to end, or "".
func between(s, start, end string) string {
	_, rest, ok := strings.Cut(s, start)
	if !ok {
		return ""
	}
	v, _, _ := strings.Cut(rest, end)
	return v
}

func isTimeoutErr(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// headerOf returns the value of the first header called name in an HTTP
// response text.
func headerOf(resp, name string) string {
	head, _, _ := strings.Cut(resp, "\r\n\r\n")
	for _, line := range strings.Split(head, "\r\n")[1:] {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(strings.TrimSpace(k), name) {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// countHeader counts the header lines called name in an HTTP response
// text, in any case.
func countHeader(resp, name string) int {
	head, _, _ := strings.Cut(resp, "\r\n\r\n")
	n := 0
	for _, line := range strings.Split(head, "\r\n")[1:] {
		if k, _, ok := strings.Cut(line, ":"); ok && strings.EqualFold(strings.TrimSpace(k), name) {
			n++
		}
	}
	return n
}

func answerText(b []byte) string {
	if b == nil {
		return "no answer"
	}
	return fmt.Sprintf("%d bytes", len(b))
}

// mappingDescription reads a mapping's description back over UPnP.
func mappingDescription(t *testing.T, l *natlab.Lab, port uint16) string {
	_, resp := soap(t, l, lanAddr(0), "GetSpecificPortMappingEntry", "NewRemoteHost", "", "NewExternalPort", strconv.Itoa(int(port)), "NewProtocol", "TCP")
	_, rest, _ := strings.Cut(resp, "<NewPortMappingDescription>")
	d, _, _ := strings.Cut(rest, "</NewPortMappingDescription>")
	return strings.NewReplacer("&lt;", "<", "&gt;", ">", "&amp;", "&", "&#34;", `"`, "&#39;", "'").Replace(d)
}

// ssdpFlood sends the search n times from from (a LAN host address) over
// two seconds, and counts the bytes sent and answered.
func ssdpFlood(t *testing.T, l *natlab.Lab, from netip.Addr, search []byte, n int) (in, out, sent int) {
	pc, err := l.ListenPacket(natlab.HostLAN, "udp4", netip.AddrPortFrom(from, 0).String())
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	var mu sync.Mutex
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 4096)
		for {
			pc.SetReadDeadline(time.Now().Add(time.Second))
			k, _, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			mu.Lock()
			out += k
			mu.Unlock()
		}
	}()
	group := net.UDPAddrFromAddrPort(netip.MustParseAddrPort("239.255.255.250:1900"))
	tick := time.NewTicker(2 * time.Second / time.Duration(n))
	for range n {
		<-tick.C
		if _, err := pc.WriteTo(search, group); err == nil {
			in += len(search)
			sent++
		}
	}
	tick.Stop()
	<-done
	mu.Lock()
	defer mu.Unlock()
	return in, out, sent
}

// adminToken reads the admin page's token from the state directory.
func adminToken(t *testing.T, g *labGateway) string {
	t.Helper()
	b, err := os.ReadFile(g.stateDir + "/admin-token")
	if err != nil {
		t.Fatalf("admin token: %v", err)
	}
	return strings.TrimSpace(string(b))
}

// routerHTTP is an HTTP client whose connections start in the router's
// namespace (the admin address is the router's loopback).
func routerHTTP(l *natlab.Lab) *http.Client {
	return &http.Client{Timeout: 3 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Transport: &http.Transport{DisableKeepAlives: true, DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return l.DialContext(ctx, natlab.HostRouter, network, addr)
		}}}
}

// adminPage fetches the admin page, as a browser on the router would.
func adminPage(t *testing.T, l *natlab.Lab, token string) string {
	resp, err := routerHTTP(l).Get("http://127.0.0.1:8900/?token=" + token)
	if err != nil {
		t.Fatalf("the admin page: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}
