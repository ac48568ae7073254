package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/portfwd/portfwd/internal/natlab"
	"github.com/portfwd/portfwd/natpmp"
	"github.com/portfwd/portfwd/pcp"
)

// Helpers of the hostile-input lab tests: raw HTTP, SOAP, GENA, SSDP,
// NAT-PMP and PCP from the LAN host (from any of its addresses) or the
// WAN host, and a check that the gateway still serves.

// lanAddr is the LAN host's i-th address: 10.77.0.2 is its own, and
// addLANAddrs gives it 10.77.0.3 and up, to play several clients.
func lanAddr(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 77, 0, byte(2 + i)}) }

// addLANAddrs gives the LAN host n more addresses.
func addLANAddrs(t *testing.T, l *natlab.Lab, n int) {
	t.Helper()
	for i := 1; i <= n; i++ {
		if out, err := l.Run(t, natlab.HostLAN, "ip", "addr", "add", lanAddr(i).String()+"/24", "dev", natlab.HostIf); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
	}
}

// dialFrom opens a TCP connection from host's address from (the zero
// Addr: any) to to.
func dialFrom(t testing.TB, l *natlab.Lab, host string, from netip.Addr, to netip.AddrPort) (net.Conn, error) {
	var c net.Conn
	err := l.In(host, func() (err error) {
		d := net.Dialer{Timeout: 2 * time.Second}
		if from.IsValid() {
			d.LocalAddr = net.TCPAddrFromAddrPort(netip.AddrPortFrom(from, 0))
		}
		c, err = d.Dial("tcp4", to.String())
		return err
	})
	return c, err
}

// rawHTTP sends req (a whole HTTP request, as bytes on the wire) from the
// LAN host's address from to the gateway's UPnP port, and returns what
// came back until the server closed or wait passed.
func rawHTTP(t testing.TB, l *natlab.Lab, from netip.Addr, req string, wait time.Duration) string {
	t.Helper()
	c, err := dialFrom(t, l, natlab.HostLAN, from, ap(l.RouterLANIP, 5000))
	if err != nil {
		return "dial: " + err.Error()
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(wait))
	io.WriteString(c, req)
	b, _ := io.ReadAll(io.LimitReader(c, 1<<20))
	return string(b)
}

// statusOf is the status code of an HTTP response text, or "no answer".
func statusOf(resp string) string {
	line, _, _ := strings.Cut(resp, "\r\n")
	if f := strings.Fields(line); len(f) >= 2 && strings.HasPrefix(f[0], "HTTP/") {
		return f[1]
	}
	return "no answer"
}

// upnpErrorOf is the UPnP error code in a SOAP fault, or "".
func upnpErrorOf(resp string) string {
	_, rest, ok := strings.Cut(resp, "<errorCode>")
	if !ok {
		return ""
	}
	code, _, _ := strings.Cut(rest, "<")
	return code
}

// answerOf sums up a SOAP answer: "200", or "500 UPnP 606", or "400".
func answerOf(resp string) string {
	if code := upnpErrorOf(resp); code != "" {
		return statusOf(resp) + " UPnP " + code
	}
	return statusOf(resp)
}

const wanIPConn2 = "urn:schemas-upnp-org:service:WANIPConnection:2"

// soapBody is a SOAP envelope calling action with args (name, value
// pairs, written as given: no escaping, for hostile values).
func soapBody(action string, args ...string) string {
	var b strings.Builder
	b.WriteString(`<?xml version="1.0"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" s:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"><s:Body>`)
	fmt.Fprintf(&b, `<u:%s xmlns:u="%s">`, action, wanIPConn2)
	for i := 0; i+1 < len(args); i += 2 {
		fmt.Fprintf(&b, "<%s>%s</%s>", args[i], args[i+1], args[i])
	}
	fmt.Fprintf(&b, "</u:%s></s:Body></s:Envelope>", action)
	return b.String()
}

// soapRequest is a whole SOAP POST to the WANIPConnection control URL.
func soapRequest(l *natlab.Lab, action, body string) string {
	return fmt.Sprintf("POST /ctl/IPConn HTTP/1.1\r\nHost: %s:5000\r\nContent-Type: text/xml; charset=\"utf-8\"\r\nSOAPAction: \"%s#%s\"\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s",
		l.RouterLANIP, wanIPConn2, action, len(body), body)
}

// soap calls action from the LAN host's address from and sums up the answer.
func soap(t testing.TB, l *natlab.Lab, from netip.Addr, action string, args ...string) (string, string) {
	t.Helper()
	resp := rawHTTP(t, l, from, soapRequest(l, action, soapBody(action, args...)), 3*time.Second)
	return answerOf(resp), resp
}

// addArgs are AddPortMapping's arguments for ext -> client:internal.
func addArgs(ext uint16, client netip.Addr, internal uint16, extra ...string) []string {
	args := []string{"NewRemoteHost", "", "NewExternalPort", strconv.Itoa(int(ext)), "NewProtocol", "TCP",
		"NewInternalPort", strconv.Itoa(int(internal)), "NewInternalClient", client.String(), "NewEnabled", "1",
		"NewPortMappingDescription", "hostile test", "NewLeaseDuration", "3600"}
	for i := 0; i+1 < len(extra); i += 2 {
		replaced := false
		for j := 0; j < len(args); j += 2 {
			if args[j] == extra[i] {
				args[j+1], replaced = extra[i+1], true
			}
		}
		if !replaced {
			args = append(args, extra[i], extra[i+1])
		}
	}
	return args
}

// udpAsk sends pkt from host's address from (the zero Addr: any) to to,
// and returns the first reply within wait, or nil.
func udpAsk(t testing.TB, l *natlab.Lab, host string, from netip.Addr, to netip.AddrPort, pkt []byte, wait time.Duration) []byte {
	t.Helper()
	local := "0.0.0.0:0"
	if from.IsValid() {
		local = netip.AddrPortFrom(from, 0).String()
	}
	pc, err := l.ListenPacket(host, "udp4", local)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	if _, err := pc.WriteTo(pkt, net.UDPAddrFromAddrPort(to)); err != nil {
		return nil
	}
	pc.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 2048)
	n, _, err := pc.ReadFrom(buf)
	if err != nil {
		return nil
	}
	return buf[:n]
}

// natpmpReq is a NAT-PMP request.
func natpmpReq(op natpmp.Opcode, internal, suggested uint16, lifetime uint32) []byte {
	return natpmp.AppendRequest(nil, natpmp.Request{Op: op, InternalPort: internal, SuggestedExternalPort: suggested, Lifetime: lifetime})
}

// natpmpAnswer sums up a NAT-PMP reply: "no answer", or the result, and
// for a mapping the port and lifetime granted.
func natpmpAnswer(b []byte) string {
	if b == nil {
		return "no answer"
	}
	r, err := natpmp.ParseResponse(b)
	if err != nil {
		return fmt.Sprintf("unreadable reply % x (%v)", b, err)
	}
	if r.Result != natpmp.Success || r.Op == natpmp.OpExternalAddress {
		return r.Result.String()
	}
	return fmt.Sprintf("%s port %d lifetime %d", r.Result, r.ExternalPort, r.Lifetime)
}

// pcpMapReq is a PCP MAP request from client.
func pcpMapReq(client netip.Addr, nonce pcp.Nonce, proto pcp.Protocol, internal, suggested uint16, lifetime uint32, opts ...pcp.Option) []byte {
	b, err := pcp.AppendRequest(nil, pcp.Request{Op: pcp.OpMap, Lifetime: lifetime, ClientAddr: client,
		Map: &pcp.MapPayload{Nonce: nonce, Protocol: proto, InternalPort: internal, ExternalPort: suggested}, Options: opts})
	if err != nil {
		panic(err)
	}
	return b
}

// pcpAnswer sums up a PCP reply.
func pcpAnswer(b []byte) string {
	if b == nil {
		return "no answer"
	}
	r, err := pcp.ParseResponse(b)
	if err != nil {
		return fmt.Sprintf("unreadable reply (%v)", err)
	}
	if r.Result != pcp.ResultSuccess || r.Map == nil {
		return r.Result.String()
	}
	return fmt.Sprintf("%s port %d lifetime %d", r.Result, r.Map.ExternalPort, r.Lifetime)
}

// gatewayServes checks, from the LAN host, that UPnP and NAT-PMP still
// answer, and says what failed.
func gatewayServes(t testing.TB, l *natlab.Lab) error {
	t.Helper()
	got, resp := soap(t, l, lanAddr(0), "GetExternalIPAddress")
	if got != "200" || !strings.Contains(resp, l.RouterWANIP.String()) {
		return fmt.Errorf("UPnP GetExternalIPAddress answered %s", got)
	}
	if a := natpmpAnswer(udpAsk(t, l, natlab.HostLAN, lanAddr(0), ap(l.RouterLANIP, 5351), natpmpReq(natpmp.OpExternalAddress, 0, 0, 0), 2*time.Second)); a != "success" {
		return fmt.Errorf("NAT-PMP external address: %s", a)
	}
	return nil
}

// hostileRow is one line of the hostile-input table in docs/gateway.md.
type hostileRow struct {
	area, input, want, got string
	ok, serving            bool
}

// hostileTable collects the rows and prints them as Markdown at the end.
type hostileTable struct {
	t    *testing.T
	l    *natlab.Lab
	rows []hostileRow
}

// check records one case: its answer got against want (ok says whether
// it is right), then checks that the gateway still serves.
func (h *hostileTable) check(area, input, want, got string, ok bool) {
	h.t.Helper()
	row := hostileRow{area: area, input: input, want: want, got: got, ok: ok}
	err := gatewayServes(h.t, h.l)
	row.serving = err == nil
	if !ok {
		h.t.Errorf("%s: %s: got %s, want %s", area, input, got, want)
	}
	if err != nil {
		h.t.Errorf("%s: %s: the gateway stopped serving: %v", area, input, err)
	}
	h.rows = append(h.rows, row)
}

func (h *hostileTable) print() {
	var b strings.Builder
	b.WriteString("| area | input | the spec's answer | got | still serving |\n|---|---|---|---|---|\n")
	for _, r := range h.rows {
		mark := "yes"
		if !r.serving {
			mark = "NO"
		}
		got := r.got
		if !r.ok {
			got = "**" + got + "** (wrong)"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", r.area, r.input, r.want, got, mark)
	}
	h.t.Logf("hostile-input table (%d cases):\n%s", len(h.rows), b.String())
	if f := os.Getenv("PORTFWD_HOSTILE_TABLE"); f != "" {
		os.WriteFile(f, []byte(b.String()), 0o644)
	}
}

// procStatus reads a field of /proc/PID/status (such as VmRSS, in kB).
func procStatus(pid int, field string) int {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && k == field {
			n, _ := strconv.Atoi(strings.Fields(v)[0])
			return n
		}
	}
	return -1
}

// openFDs counts the open file descriptors of pid.
func openFDs(pid int) int {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return -1
	}
	return len(ents)
}

// within runs f until it reports true, every tick, for at most d.
func within(d, tick time.Duration, f func() bool) bool {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	tk := time.NewTicker(tick)
	defer tk.Stop()
	for {
		if f() {
			return true
		}
		select {
		case <-ctx.Done():
			return f()
		case <-tk.C:
		}
	}
}
