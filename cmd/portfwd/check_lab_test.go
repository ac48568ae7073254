package main

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/portfwd/portfwd/internal/natlab"
	"github.com/portfwd/portfwd/reach"
)

// TestLabCheck proves "portfwd check" end to end: a probe server
// ("portfwd probe-server") on the WAN host connects back through
// miniupnpd's NAT to the listener "portfwd check" opens on the LAN host,
// over TCP and UDP, and is refused (with the right reason) where the router
// does not forward.
func TestLabCheck(t *testing.T) {
	l := natlab.Start(t, natlab.Options{})
	bin := portfwdBinary(t)
	probeAddr := ap(l.WANIP, 8999)
	ps := l.Start(t, natlab.HostWAN, bin, "probe-server", "--listen", probeAddr.String(), "--rate", "100/min")
	l.WaitTCP(t, natlab.HostWAN, probeAddr, 10*time.Second, ps)
	probe := "http://" + probeAddr.String()
	ext := l.RouterWANIP.String()

	unreachable := func(args ...string) result {
		t.Helper()
		r := pf(t, l, natlab.HostLAN, args...)
		if r.code != exitUnreachable {
			t.Fatalf("portfwd %s: want exit %d (not reachable), got %v", strings.Join(args, " "), exitUnreachable, r)
		}
		return r
	}

	// No mapping: the router resets the connection, and check says why.
	r := unreachable("check", "8080", "--probe", probe)
	contains(t, "check without a mapping", r.stdout, "not reachable: "+ext+":8080/tcp",
		"connection refused", "no mapping for external port 8080/TCP", "portfwd add 8080 --external 8080")

	// With the mapping, the probe reaches the temporary listener through the
	// NAT and gets the token back.
	ok(t, l, "add", "8080", "--external", "18080")
	r = ok(t, l, "check", "8080", "--external", "18080", "--probe", probe)
	contains(t, "check with a mapping", r.stdout, "reachable: "+ext+":18080/tcp leads to port 8080 on this host")
	if !strings.Contains(ps.Output(), "source="+ext) || !strings.Contains(ps.Output(), "reachable=true") {
		t.Errorf("the probe server did not log a check from %s:\n%s", ext, ps.Output())
	}
	// Without --external, the router's table gives the external port.
	j := decode[jsonCheck](t, ok(t, l, "check", "8080", "--probe", probe, "--json").stdout)
	if !j.Reachable || !j.Verified || j.ExternalPort != 18080 || j.Address != ext+":18080" || j.Listener != "temporary" ||
		j.ExternalIP != ext || !j.MappingsListed || j.Mapping == nil || j.Mapping.InternalPort != 8080 {
		t.Errorf("check --json: %+v", j)
	}

	// A mapping to another internal port: the probe is refused on the LAN
	// host, and the router's table says why.
	ok(t, l, "add", "8081", "--external", "18081")
	r = unreachable("check", "8080", "--external", "18081", "--probe", probe)
	contains(t, "check of a mapping to another port", r.stdout, "forwards 18081/TCP to port 8081, not 8080")

	// A program already on the port answers for itself: reachable, but
	// check cannot prove which program answered.
	lanSrv := l.ServeTCP(t, natlab.HostLAN, ap(l.LANIP, 8080), "lan-8080")
	r = ok(t, l, "check", "8080", "--external", "18080", "--probe", probe)
	contains(t, "check with a service on the port", r.stdout, "reachable, unverified: "+ext+":18080/tcp", "not portfwd's listener")

	// UDP likewise: refused without a mapping, answered with one.
	r = unreachable("check", "9090", "--proto", "udp", "--external", "19090", "--probe", probe)
	contains(t, "UDP check without a mapping", r.stdout, "not reachable: "+ext+":19090/udp", "no mapping for external port 19090/UDP")
	ok(t, l, "add", "9090", "--external", "19090", "--proto", "udp")
	r = ok(t, l, "check", "9090", "--proto", "udp", "--external", "19090", "--probe", probe)
	contains(t, "UDP check with a mapping", r.stdout, "reachable: "+ext+":19090/udp leads to port 9090 on this host")

	// NAT-PMP cannot list mappings: check says the router can't tell.
	r = unreachable("check", "7070", "--protocol", "natpmp", "--probe", probe)
	contains(t, "check over NAT-PMP", r.stdout, "not reachable: "+ext+":7070/tcp", "cannot list mappings")

	// The rate limit of --rate holds per source: the router's address here.
	strictAddr := ap(l.WANIP, 8998)
	strict := l.Start(t, natlab.HostWAN, bin, "probe-server", "--listen", strictAddr.String(), "--rate", "1/min")
	l.WaitTCP(t, natlab.HostWAN, strictAddr, 10*time.Second, strict)
	ok(t, l, "check", "8080", "--external", "18080", "--probe", "http://"+strictAddr.String())
	r = pf(t, l, natlab.HostLAN, "check", "8080", "--external", "18080", "--probe", "http://"+strictAddr.String())
	if r.code != exitFailure || !strings.Contains(r.stderr, "429 Too Many Requests") {
		t.Errorf("second check within the 1/min limit: want exit %d with 429, got %v", exitFailure, r)
	}

	// The probe server probes only the address a request comes from. The
	// WAN host asks, naming the router's forwarded port in the body and a
	// header: the server probes the WAN host itself, and nothing reaches
	// the LAN server behind the router's mapping.
	wanSrv := l.ServeTCP(t, natlab.HostWAN, ap(l.WANIP, 18080), "wan-18080")
	lanBefore := len(lanSrv.Peers())
	hc := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return l.DialContext(ctx, natlab.HostWAN, "tcp4", addr)
		},
	}}
	token, err := reach.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	body := `{"protocol":"tcp","port":18080,"token":"` + token + `","host":"` + ext + `","address":"` + ext + `:18080","ip":"` + l.LANIP.String() + `"}`
	req, _ := http.NewRequest(http.MethodPost, probe+reach.Path, strings.NewReader(body))
	req.Header.Set("X-Forwarded-For", ext)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var cr reach.CheckResponse
	if err := json.Unmarshal(b, &cr); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("check from the WAN host: %d %s (%v)", resp.StatusCode, b, err)
	}
	if cr.Address != ap(l.WANIP, 18080).String() || !cr.Answered || cr.Reachable || cr.Code != reach.CodeMismatch {
		t.Errorf("check from the WAN host: %+v; want its own address %v probed, answered by the banner server", cr, ap(l.WANIP, 18080))
	}
	if peers := wanSrv.Peers(); len(peers) != 1 || peers[0].Addr() != l.WANIP {
		t.Errorf("the WAN host's server saw %v, want one probe from %v", peers, l.WANIP)
	}
	if n := len(lanSrv.Peers()); n != lanBefore {
		t.Errorf("the LAN server behind the mapping got %d connection(s) from a probe that named it", n-lanBefore)
	}
}
