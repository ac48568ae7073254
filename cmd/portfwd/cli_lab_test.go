package main

import (
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/portfwd/portfwd/internal/natlab"
)

// lanPacketsOut counts the IPv4 packets the LAN host sends on anything but
// loopback, with an nft counter in its own namespace.
type lanPacketsOut struct {
	t *testing.T
	l *natlab.Lab
}

func countLANPackets(t *testing.T, l *natlab.Lab) lanPacketsOut {
	t.Helper()
	for _, args := range [][]string{
		{"add", "table", "ip", "pfwdcount"},
		{"add", "counter", "ip", "pfwdcount", "sent"},
		{"add", "chain", "ip", "pfwdcount", "out", "{ type filter hook output priority 0; }"},
		{"add", "rule", "ip", "pfwdcount", "out", "oifname", "!=", "lo", "counter", "name", "sent"},
	} {
		if _, err := l.Run(t, natlab.HostLAN, "nft", args...); err != nil {
			t.Fatal(err)
		}
	}
	return lanPacketsOut{t, l}
}

var nftPackets = regexp.MustCompile(`packets (\d+)`)

// reset reads the count and sets it back to zero.
func (c lanPacketsOut) reset() int {
	c.t.Helper()
	out, err := c.l.Run(c.t, natlab.HostLAN, "nft", "reset", "counter", "ip", "pfwdcount", "sent")
	if err != nil {
		c.t.Fatal(err)
	}
	m := nftPackets.FindStringSubmatch(out)
	if m == nil {
		c.t.Fatalf("no counter in %q", out)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// TestLabUsageErrorsSendNothing runs mistaken command lines on the LAN
// host, next to a working router: each exits 1 with one sentence, and the
// host sends not one packet meanwhile. The same count goes up when a
// correct command runs, so the silence means something.
func TestLabUsageErrorsSendNothing(t *testing.T) {
	l := natlab.Start(t, natlab.Options{})
	gw := "http://" + l.RouterLANIP.String() + ":5000/rootDesc.xml"
	count := countLANPackets(t, l)
	ok(t, l, "ip", "--no-cache")
	if n := count.reset(); n == 0 {
		t.Fatal("the counter saw nothing of a discovery: it cannot prove silence")
	}
	for _, args := range [][]string{
		{"add", "0"}, {"add", "70000"}, {"add", "abc"},
		{"add", "8080", "--proto", "xyz"}, {"add", "8080", "--lease", "-5m"}, {"add", "8080", "--lease", "5"},
		{"ip", "--gateway", "not-a-url"}, {"ip", "--timeout", "0s"}, {"edit", "18081/xyz", "--internal", "9"},
		{"ip", "--interface", "nosuch0"}, {"check", "8080", "--probe", "notaurl"},
		{"ip", "--gateway", gw, "--protocol", "natpmp"}, {"list", "--bogus"}, {"lsit"},
	} {
		r := pf(t, l, natlab.HostLAN, args...)
		if r.code != exitUsage || !strings.HasPrefix(r.stderr, "portfwd: ") || strings.Count(r.stderr, "\n") != 1 || r.stdout != "" {
			t.Errorf("portfwd %s: want exit 1 and one line on stderr: %v", strings.Join(args, " "), r)
		}
		if n := count.reset(); n != 0 {
			t.Errorf("portfwd %s: the LAN host sent %d packets for a command line that was wrong", strings.Join(args, " "), n)
		}
	}
}

// TestLabVerboseShowsEveryExchange: -v logs each protocol's requests and
// answers on stderr, against miniupnpd; without it, none.
func TestLabVerboseShowsEveryExchange(t *testing.T) {
	l := natlab.Start(t, natlab.Options{})
	for _, tt := range []struct {
		args  []string
		wants []string
	}{
		{[]string{"ip", "--no-cache", "--protocol", "upnp"}, []string{
			`msg="ssdp: M-SEARCH sent" to=239.255.255.250:1900`, `msg="ssdp: found" location=http://` + l.RouterLANIP.String() + ":5000/rootDesc.xml",
			`msg="upnp: fetching the description"`, `msg="upnp: description"`,
			`msg="igd: SOAP request" action=GetExternalIPAddress`, `msg="igd: SOAP response" action=GetExternalIPAddress`,
			"NewExternalIPAddress=" + l.RouterWANIP.String()}},
		{[]string{"ip", "--protocol", "natpmp"}, []string{`msg="natpmp: request"`, `msg="natpmp: reply"`,
			"reply.external_addr=" + l.RouterWANIP.String()}},
		{[]string{"add", "8080", "--external", "18080", "--protocol", "pcp", "--lease", "10m"}, []string{
			`msg="pcp: request" gateway=` + l.RouterLANIP.String() + ":5351 op=ANNOUNCE", `msg="pcp: request"`,
			"op=MAP request.lifetime=600", "request.protocol=TCP request.internal_port=8080 request.external_port=18080",
			`msg="pcp: reply"`, "reply.result=SUCCESS"}},
	} {
		quiet := ok(t, l, tt.args...)
		if strings.Contains(quiet.stderr, "level=DEBUG") {
			t.Errorf("portfwd %s without -v logs:\n%s", strings.Join(tt.args, " "), quiet.stderr)
		}
		r := ok(t, l, append(tt.args, "-v")...)
		contains(t, "portfwd "+strings.Join(tt.args, " ")+" -v", r.stderr, tt.wants...)
	}
	ok(t, l, "delete", "18080/tcp", "--protocol", "pcp")
}

// TestLabNotesAndSentences: what add says over each protocol, read as a
// stranger would: NAT-PMP and PCP say that they keep no description; a
// gateway that is not there is one sentence naming what was tried.
func TestLabNotesAndSentences(t *testing.T) {
	l := natlab.Start(t, natlab.Options{})
	for _, proto := range []string{"natpmp", "pcp"} {
		r := ok(t, l, "add", "8080", "--external", "18090", "--protocol", proto, "--desc", "web server")
		name := map[string]string{"natpmp": "NAT-PMP", "pcp": "PCP"}[proto]
		contains(t, "add --protocol "+proto, r.stderr, "note: "+name+` has no descriptions: "web server" is kept in this host's records only`)
		j := decode[struct {
			Schema   int `json:"schema"`
			Mappings []struct {
				Note   string `json:"note"`
				Method string `json:"method"`
			} `json:"mappings"`
		}](t, ok(t, l, "add", "8080", "--external", "18090", "--protocol", proto, "--desc", "web server", "--json").stdout)
		if j.Schema != 1 || len(j.Mappings) != 1 || j.Mappings[0].Method != proto || !strings.Contains(j.Mappings[0].Note, "has no descriptions") {
			t.Errorf("add --json over %s: %+v", proto, j)
		}
		ok(t, l, "delete", "18090/tcp", "--protocol", proto)
	}
	// Over UPnP the description is the router's: no such note.
	r := ok(t, l, "add", "8080", "--external", "18091", "--protocol", "upnp", "--desc", "web server")
	if strings.Contains(r.stderr, "has no descriptions") {
		t.Errorf("a note about descriptions over UPnP: %s", r.stderr)
	}
	ok(t, l, "delete", "18091/tcp")

	closed := pf(t, l, natlab.HostLAN, "ip", "--gateway", "http://"+l.RouterLANIP.String()+":9/rootDesc.xml")
	want := "portfwd: no gateway found: UPnP description at http://" + l.RouterLANIP.String() + ":9/rootDesc.xml: connection refused\n"
	if closed.code != exitNoGateway || closed.stderr != want {
		t.Errorf("a --gateway where nothing listens: %v\nwant exit 2 and %q", closed, want)
	}
}
