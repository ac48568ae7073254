package webui_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portfwd/portfwd/igd/igdtest"
	"github.com/portfwd/portfwd/portmap"
	"github.com/portfwd/portfwd/webui"
	"github.com/portfwd/portfwd/webui/webuitest"
)

// someMappings is a table with one mapping to another host and one to
// this one (the fake's 192.168.1.10).
func someMappings() []portmap.Mapping {
	return []portmap.Mapping{
		{Protocol: portmap.TCP, ExternalPort: 8443, InternalClient: "192.168.1.20", InternalPort: 443, Enabled: true, Description: "nas"},
		{Protocol: portmap.UDP, ExternalPort: 51820, InternalClient: "192.168.1.10", InternalPort: 51820, Enabled: true, Description: "wireguard", Lease: time.Hour},
	}
}

func TestGatewaysAndSelection(t *testing.T) {
	a := webuitest.New(webuitest.Options{Info: portmap.Info{Method: portmap.UPnP, FriendlyName: "Upstairs"}, Mappings: someMappings()})
	b := webuitest.New(webuitest.Options{Addr: "http://10.0.0.1:1900/ctl", ExternalIP: netip.MustParseAddr("100.64.3.4"),
		Info: portmap.Info{Method: portmap.UPnP, FriendlyName: "Downstairs"}})
	e := newEnv(t, nil, a, b)

	g := e.waitDiscovered()
	if len(g.Gateways) != 2 || g.Discovery.Error != "" {
		t.Fatalf("gateways: %+v", g)
	}
	if g.Selected != g.Gateways[0].ID || !g.Gateways[0].Selected || g.Gateways[1].Selected {
		t.Errorf("the first gateway found should be selected: %+v", g)
	}
	if g.Gateways[0].Name != "Upstairs" || g.Gateways[1].Name != "Downstairs" {
		t.Errorf("names %q, %q: discovery should read each gateway's details", g.Gateways[0].Name, g.Gateways[1].Name)
	}
	if g.Gateways[1].ExternalIP != "100.64.3.4" || g.Gateways[1].Class != "CGNAT" || g.Gateways[1].Warning == "" {
		t.Errorf("second gateway's address: %+v; want the CGNAT class and warning", g.Gateways[1])
	}
	if g.Gateways[0].ID == g.Gateways[1].ID || g.Gateways[0].LocalAddr != "192.168.1.10" || !g.Gateways[0].CanList {
		t.Errorf("gateways: %+v", g.Gateways)
	}

	var tb table
	e.call("GET", "/api/mappings", nil, http.StatusOK, &tb)
	if len(tb.Mappings) != 2 {
		t.Fatalf("first gateway's table: %+v", tb)
	}
	// ?gateway= reads another one without changing the selection.
	e.call("GET", "/api/mappings?gateway="+g.Gateways[1].ID, nil, http.StatusOK, &tb)
	if len(tb.Mappings) != 0 || tb.Gateway != g.Gateways[1].ID {
		t.Errorf("?gateway= gave %+v, want the second gateway's empty table", tb)
	}

	var sel gateways
	e.call("PUT", "/api/gateway", map[string]string{"id": g.Gateways[1].ID}, http.StatusOK, &sel)
	if sel.Selected != g.Gateways[1].ID {
		t.Errorf("after selecting the second gateway: %+v", sel)
	}
	var d struct {
		gateway
		Info portmap.Info `json:"info"`
	}
	e.call("GET", "/api/gateway", nil, http.StatusOK, &d)
	if d.ID != g.Gateways[1].ID || d.Info.FriendlyName != "Downstairs" || d.Info.ExternalIP.String() != "100.64.3.4" {
		t.Errorf("GET /api/gateway after selecting: %+v", d)
	}

	// Searching again keeps the selection, while a browser is polling.
	st, _ := e.events(withToken())
	next(st, "mappings", func(tb table) bool { return tb.Gateway == g.Gateways[1].ID })
	e.call("POST", "/api/discover", nil, http.StatusAccepted, nil)
	if again := e.waitDiscovered(); again.Selected != g.Gateways[1].ID || len(again.Gateways) != 2 {
		t.Errorf("after searching again: %+v, want the same two gateways and the selection kept", again)
	}

	var bad apiError
	e.call("PUT", "/api/gateway", map[string]string{"id": "nope"}, http.StatusBadRequest, &bad)
	if bad.Field != "id" || !strings.Contains(bad.Error, "nope") {
		t.Errorf("selecting an unknown gateway: %+v", bad)
	}
	e.call("GET", "/api/mappings?gateway=nope", nil, http.StatusBadRequest, &bad)
}

func TestDoubleNATWarning(t *testing.T) {
	g := webuitest.New(webuitest.Options{ExternalIP: netip.MustParseAddr("192.168.0.2")})
	e := newEnv(t, nil, g)
	var d struct {
		ExternalIP string `json:"external_ip"`
		Class      string `json:"class"`
		Warning    string `json:"warning"`
		Info       struct {
			Method       string `json:"method"`
			FriendlyName string `json:"friendly_name"`
		} `json:"info"`
	}
	e.call("GET", "/api/gateway", nil, http.StatusOK, &d)
	want := portmap.Classify(netip.MustParseAddr("192.168.0.2")).Warning()
	if d.ExternalIP != "192.168.0.2" || d.Class != "private" || d.Warning != want {
		t.Errorf("GET /api/gateway: %+v; want the private class and its warning %q", d, want)
	}
	if d.Info.Method != "upnp" || d.Info.FriendlyName != "Fake Router" {
		t.Errorf("info: %+v", d.Info)
	}
	_, page := e.request("GET", "/?token="+testToken, nil, nil)
	if !strings.Contains(string(page), "double NAT") {
		t.Errorf("the page does not show the double-NAT warning:\n%s", page)
	}
}

func TestAddEditDelete(t *testing.T) {
	g := webuitest.New(webuitest.Options{})
	e := newEnv(t, nil, g)

	var added struct {
		Mappings []mapping `json:"mappings"`
	}
	e.call("POST", "/api/mappings", map[string]any{
		"protocol": "both", "internal_port": 8080, "external_port": 18080, "description": "game", "lease_seconds": 3600,
	}, http.StatusCreated, &added)
	if len(added.Mappings) != 2 || added.Mappings[0].Protocol != "TCP" || added.Mappings[1].Protocol != "UDP" {
		t.Fatalf("adding both protocols: %+v", added)
	}
	m := added.Mappings[0]
	if m.ExternalPort != 18080 || m.InternalPort != 8080 || m.InternalClient != "192.168.1.10" || !m.ThisHost ||
		m.LeaseSeconds != 3600 || m.Permanent || !m.Enabled || m.Description != "game" {
		t.Errorf("added %+v", m)
	}
	if got := g.Mappings(); len(got) != 2 {
		t.Fatalf("the router's table after adding: %+v", got)
	}

	var tb table
	e.call("GET", "/api/mappings", nil, http.StatusOK, &tb)
	if len(tb.Mappings) != 2 || !tb.Supported || tb.Mappings[0].LeaseSeconds < 3590 {
		t.Errorf("listing: %+v", tb)
	}

	var edited struct {
		Mapping mapping `json:"mapping"`
	}
	e.call("PUT", "/api/mappings/tcp/18080", map[string]any{"internal_port": 8081, "description": "game 2", "enabled": false},
		http.StatusOK, &edited)
	if edited.Mapping.InternalPort != 8081 || edited.Mapping.Description != "game 2" || edited.Mapping.Enabled {
		t.Errorf("edited: %+v", edited.Mapping)
	}
	e.call("PUT", "/api/mappings/TCP/18080", map[string]any{"external_port": 18081, "lease_seconds": 0}, http.StatusOK, &edited)
	if edited.Mapping.ExternalPort != 18081 || !edited.Mapping.Permanent {
		t.Errorf("moved: %+v", edited.Mapping)
	}
	var del struct {
		Deleted []struct {
			Protocol     string `json:"protocol"`
			ExternalPort int    `json:"external_port"`
		} `json:"deleted"`
		Count int `json:"count"`
	}
	e.call("DELETE", "/api/mappings/tcp/18081", nil, http.StatusOK, &del)
	if del.Count != 1 || del.Deleted[0].ExternalPort != 18081 || del.Deleted[0].Protocol != "TCP" {
		t.Errorf("deleted: %+v", del)
	}
	if got := g.Mappings(); len(got) != 1 || got[0].Protocol != portmap.UDP {
		t.Errorf("the router's table after deleting: %+v", got)
	}

	// The router's refusals arrive as its sentence, with its code.
	var ae apiError
	e.call("DELETE", "/api/mappings/tcp/18081", nil, http.StatusNotFound, &ae)
	if ae.RouterCode != 714 || !strings.Contains(ae.Error, "no such mapping") || ae.Code != http.StatusNotFound {
		t.Errorf("deleting a missing mapping: %+v", ae)
	}
	e.call("PUT", "/api/mappings/udp/1", map[string]any{"description": "x"}, http.StatusNotFound, &ae)
	if ae.RouterCode != 714 {
		t.Errorf("editing a missing mapping: %+v", ae)
	}
}

func TestAddRefusedShowsTheRoutersSentence(t *testing.T) {
	g := webuitest.New(webuitest.Options{Mappings: someMappings()})
	e := newEnv(t, nil, g)
	var ae apiError
	e.call("POST", "/api/mappings", map[string]any{"protocol": "tcp", "internal_port": 9000, "external_port": 8443},
		http.StatusConflict, &ae)
	// The sentence is the refusal's, with the page's advice instead of
	// the CLI's (--replace).
	_, want := g.Add(context.Background(), portmap.Request{Protocol: portmap.TCP, InternalPort: 9000, ExternalPort: 8443})
	var re *portmap.RefusedError
	if !errors.As(want, &re) {
		t.Fatalf("the fake did not refuse: %v", want)
	}
	// portmap refuses before the router would: the existing mapping is
	// named, and no router code is involved.
	var ee *portmap.ExistsError
	if !errors.As(want, &ee) {
		t.Fatalf("the refusal names no mapping in the way: %v", want)
	}
	if !strings.HasPrefix(ae.Error, ee.Error()+"; choose another external port") || strings.Contains(ae.Error, "--replace") ||
		ae.RouterCode != 0 || ae.Code != http.StatusConflict || !strings.Contains(ae.Error, "192.168.1.20:443") {
		t.Errorf("refusal: %+v, want the sentence %q naming the mapping in the way", ae, ee.Error())
	}
	// With "any", the router picks another port.
	var added struct {
		Mappings []mapping `json:"mappings"`
	}
	e.call("POST", "/api/mappings", map[string]any{"protocol": "tcp", "internal_port": 9000, "external_port": 8443, "any": true},
		http.StatusCreated, &added)
	if added.Mappings[0].ExternalPort != 8444 {
		t.Errorf("with any: %+v, want the next free port", added.Mappings)
	}
}

func TestAddValidation(t *testing.T) {
	g := webuitest.New(webuitest.Options{})
	e := newEnv(t, nil, g)
	tests := []struct {
		body  any
		field string
	}{
		{map[string]any{"protocol": "sctp", "internal_port": 80}, "protocol"},
		{map[string]any{"protocol": "tcp"}, "internal_port"},
		{map[string]any{"protocol": "tcp", "internal_port": 70000}, "internal_port"},
		{map[string]any{"protocol": "tcp", "internal_port": -1}, "internal_port"},
		{map[string]any{"protocol": "tcp", "internal_port": 80, "external_port": 65536}, "external_port"},
		{map[string]any{"protocol": "tcp", "internal_port": 80, "internal_client": "192.168.1.300"}, "internal_client"},
		{map[string]any{"protocol": "tcp", "internal_port": 80, "internal_client": "router.lan"}, "internal_client"},
		{map[string]any{"protocol": "tcp", "internal_port": 80, "internal_client": "0.0.0.0"}, "internal_client"},
		{map[string]any{"protocol": "tcp", "internal_port": 80, "internal_client": "127.0.0.1"}, "internal_client"},
		{map[string]any{"protocol": "tcp", "internal_port": 80, "lease_seconds": -5}, "lease_seconds"},
		{map[string]any{"protocol": "tcp", "internal_port": 80, "lease_seconds": int64(1) << 33}, "lease_seconds"},
		{map[string]any{"protocol": "tcp", "internal_port": 80, "description": "two\nlines"}, "description"},
		{map[string]any{"protocol": "tcp", "internal_port": 80, "description": strings.Repeat("x", 300)}, "description"},
		{map[string]any{"protocol": "tcp", "internal_port": 80, "remote_host": "anywhere"}, "remote_host"},
		{map[string]any{"protocol": "tcp", "internal_port": "80"}, "internal_port"},
		{map[string]any{"protocol": "tcp", "internal_port": 80, "keep": true}, "keep"}, // no Keeper
		{map[string]any{"protocol": "tcp", "internal_port": 80, "colour": "red"}, ""},
	}
	for _, tt := range tests {
		var ae apiError
		e.call("POST", "/api/mappings", tt.body, http.StatusBadRequest, &ae)
		if ae.Field != tt.field || ae.Error == "" || ae.Code != http.StatusBadRequest {
			t.Errorf("%v: %+v, want a sentence about %q", tt.body, ae, tt.field)
		}
	}
	if n := g.Calls("Add"); n != 0 {
		t.Errorf("invalid requests reached the router %d times", n)
	}

	for _, path := range []string{"/api/mappings/sctp/80", "/api/mappings/tcp/0", "/api/mappings/tcp/65536", "/api/mappings/tcp/http"} {
		var ae apiError
		e.call("PUT", path, map[string]any{"description": "x"}, http.StatusBadRequest, &ae)
		e.call("DELETE", path, nil, http.StatusBadRequest, &ae)
	}
	for _, body := range []map[string]any{
		{"internal_port": 0}, {"external_port": 65536}, {"internal_client": "nope"}, {"internal_client": ""},
		{"lease_seconds": -1}, {"description": "a\tb"},
	} {
		var ae apiError
		e.call("PUT", "/api/mappings/tcp/80", body, http.StatusBadRequest, &ae)
		if ae.Field == "" {
			t.Errorf("edit %v: %+v, want the field named", body, ae)
		}
	}
	if n := g.Calls("Edit"); n != 0 {
		t.Errorf("invalid edits reached the router %d times", n)
	}
}

func TestDeleteMany(t *testing.T) {
	g := webuitest.New(webuitest.Options{})
	g.SetMappings([]portmap.Mapping{
		{Protocol: portmap.TCP, ExternalPort: 1000, InternalClient: "192.168.1.10", InternalPort: 1000},
		{Protocol: portmap.TCP, ExternalPort: 1001, InternalClient: "192.168.1.10", InternalPort: 1001},
		{Protocol: portmap.UDP, ExternalPort: 1001, InternalClient: "192.168.1.10", InternalPort: 1001},
		{Protocol: portmap.UDP, ExternalPort: 2000, InternalClient: "192.168.1.10", InternalPort: 2000},
		{Protocol: portmap.UDP, ExternalPort: 2001, InternalClient: "192.168.1.10", InternalPort: 2001},
		{Protocol: portmap.TCP, ExternalPort: 3000, InternalClient: "192.168.1.10", InternalPort: 3000},
	})
	e := newEnv(t, nil, g)
	type result struct {
		Deleted []struct {
			Protocol     string `json:"protocol"`
			ExternalPort int    `json:"external_port"`
		} `json:"deleted"`
		Ranges []struct {
			Count int    `json:"count"`
			Error string `json:"error"`
		} `json:"ranges"`
		Failed []struct {
			ExternalPort int    `json:"external_port"`
			Error        string `json:"error"`
		} `json:"failed"`
		Count      int    `json:"count"`
		Error      string `json:"error"`
		RouterCode int    `json:"router_code"`
	}
	var r result
	e.call("POST", "/api/mappings/delete", map[string]any{
		"mappings": []map[string]any{{"protocol": "TCP", "external_port": 1000}, {"protocol": "udp", "external_port": 1001}},
		"ranges":   []map[string]any{{"protocol": "udp", "start": 2000, "end": 2999}},
	}, http.StatusOK, &r)
	// The range's count is what was really removed: 2000 and 2001/UDP.
	if r.Count != 4 || len(r.Deleted) != 2 || len(r.Ranges) != 1 || r.Ranges[0].Count != 2 || r.Error != "" {
		t.Errorf("delete many: %+v", r)
	}
	left := g.Mappings()
	if len(left) != 2 || left[0].ExternalPort != 1001 || left[0].Protocol != portmap.TCP || left[1].ExternalPort != 3000 {
		t.Errorf("left on the router: %+v", left)
	}

	// One failure does not stop the others, and is reported.
	r = result{}
	e.call("POST", "/api/mappings/delete", map[string]any{
		"mappings": []map[string]any{{"protocol": "tcp", "external_port": 9}, {"protocol": "tcp", "external_port": 3000}},
	}, http.StatusNotFound, &r)
	if r.Count != 1 || len(r.Failed) != 1 || r.Failed[0].ExternalPort != 9 || r.RouterCode != 714 ||
		!strings.HasPrefix(r.Error, "1 of 2 deletions failed") {
		t.Errorf("partial failure: %+v", r)
	}
	if left := g.Mappings(); len(left) != 1 {
		t.Errorf("left on the router: %+v", left)
	}

	for _, body := range []map[string]any{
		{},
		{"mappings": []map[string]any{{"protocol": "tcp"}}},
		{"ranges": []map[string]any{{"protocol": "tcp", "start": 10, "end": 5}}},
		{"ranges": []map[string]any{{"protocol": "tcp", "start": 0, "end": 5}}},
		{"ranges": []map[string]any{{"protocol": "icmp", "start": 1, "end": 5}}},
	} {
		var ae apiError
		e.call("POST", "/api/mappings/delete", body, http.StatusBadRequest, &ae)
	}
}

func TestNATPMPGatewayCannotList(t *testing.T) {
	g := webuitest.New(webuitest.Options{Method: portmap.NATPMP})
	e := newEnv(t, nil, g)
	gws := e.waitDiscovered()
	if gws.Gateways[0].CanList || gws.Gateways[0].Method != "natpmp" {
		t.Errorf("NAT-PMP gateway: %+v", gws.Gateways[0])
	}
	var tb table
	e.call("GET", "/api/mappings", nil, http.StatusOK, &tb)
	if tb.Supported || len(tb.Mappings) != 0 {
		t.Errorf("NAT-PMP table: %+v, want supported=false", tb)
	}
	var added struct {
		Mappings []mapping `json:"mappings"`
	}
	e.call("POST", "/api/mappings", map[string]any{"protocol": "udp", "internal_port": 4000}, http.StatusCreated, &added)
	var ae apiError
	e.call("POST", "/api/mappings", map[string]any{"protocol": "udp", "internal_port": 4000, "internal_client": "192.168.1.99"},
		http.StatusConflict, &ae)
	if !strings.Contains(ae.Error, "only map ports to the host that asks") {
		t.Errorf("NAT-PMP for another host: %+v", ae)
	}
}

func TestNoGateway(t *testing.T) {
	e := newEnv(t, nil) // discovery finds nothing
	deadline := time.Now().Add(5 * time.Second)
	var g gateways
	for {
		e.call("GET", "/api/gateways", nil, http.StatusOK, &g)
		if g.Discovery.Done || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if g.Discovery.Error == "" || len(g.Gateways) != 0 {
		t.Fatalf("discovery that found nothing: %+v", g)
	}
	var ae apiError
	e.call("GET", "/api/mappings", nil, http.StatusServiceUnavailable, &ae)
	if !strings.Contains(ae.Error, portmap.ErrNoGateway.Error()) {
		t.Errorf("no gateway: %+v, want discovery's reason", ae)
	}
	e.call("POST", "/api/mappings", map[string]any{"protocol": "tcp", "internal_port": 80}, http.StatusServiceUnavailable, &ae)
	e.call("GET", "/api/gateway", nil, http.StatusServiceUnavailable, &ae)
}

// TestDiscoveryRunsInTheBackground: a slow discovery blocks no page, its
// progress streams to the browser, and the result arrives as events.
func TestDiscoveryRunsInTheBackground(t *testing.T) {
	// Each search waits for its own release: the first, then every later one.
	release, releaseLater := make(chan struct{}), make(chan struct{})
	var searches atomic.Int32
	fake := webuitest.New(webuitest.Options{Mappings: someMappings()})
	e := newEnv(t, func(s *webui.Server) {
		s.Discover = func(ctx context.Context, o portmap.Options) ([]portmap.Gateway, error) {
			gate := release
			if searches.Add(1) > 1 {
				gate = releaseLater
			}
			o.Progress(portmap.Progress{Message: "searching (test)..."})
			select {
			case <-gate:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			o.Progress(portmap.Progress{Message: "found upnp gateway at test", Found: 1})
			return []portmap.Gateway{fake}, nil
		}
	})
	st, _ := e.events(withToken())
	d := next(st, "discovery", func(d struct {
		Running bool   `json:"running"`
		Message string `json:"message"`
	}) bool {
		return d.Running && d.Message == "searching (test)..."
	})
	_ = d

	// Discovery waits for release, so these would hang if they waited
	// for it (request gives up after 10 s).
	res, page := e.request("GET", "/?token="+testToken, nil, nil)
	if res.StatusCode != http.StatusOK || !strings.Contains(string(page), "searching (test)...") {
		t.Errorf("the page during discovery: %d\n%s", res.StatusCode, page)
	}
	var ae apiError
	h := withToken()
	res, body := e.request("GET", "/api/mappings", nil, h)
	if res.StatusCode != http.StatusServiceUnavailable || res.Header.Get("Retry-After") == "" {
		t.Errorf("mappings during discovery: %d %s, want 503 with Retry-After", res.StatusCode, body)
	}
	json.Unmarshal(body, &ae)
	if !strings.Contains(ae.Error, "still searching") {
		t.Errorf("mappings during discovery: %+v", ae)
	}

	close(release)
	gws := next(st, "gateways", func(g gateways) bool { return len(g.Gateways) == 1 })
	if gws.Selected == "" || !gws.Discovery.Done {
		t.Errorf("gateways event: %+v", gws)
	}
	tb := next(st, "mappings", func(tb table) bool { return len(tb.Mappings) == 2 })
	if tb.Gateway != gws.Selected {
		t.Errorf("mappings event for %q, want %q", tb.Gateway, gws.Selected)
	}

	// Searching again starts a search; asking while it runs starts
	// nothing new.
	for range 2 {
		var p gateways
		e.call("POST", "/api/discover", nil, http.StatusAccepted, &p)
		if !p.Discovery.Running {
			t.Errorf("POST /api/discover: %+v, want running", p.Discovery)
		}
	}
	close(releaseLater)
	next(st, "discovery", func(d struct {
		Done    bool `json:"done"`
		Running bool `json:"running"`
	}) bool {
		return d.Done && !d.Running
	})
	if n := searches.Load(); n != 2 {
		t.Errorf("%d searches; want 2: the first, and one for both POSTs", n)
	}
}

func TestEventsDeliverChanges(t *testing.T) {
	g := webuitest.New(webuitest.Options{Mappings: someMappings()})
	e := newEnv(t, nil, g)
	st, res := e.events(withToken())
	if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		t.Fatalf("Content-Type %q", ct)
	}
	next(st, "mappings", func(tb table) bool { return len(tb.Mappings) == 2 })

	// Behind the UI's back: another program adds a mapping.
	g.SetMappings(append(someMappings(), portmap.Mapping{Protocol: portmap.TCP, ExternalPort: 2222,
		InternalClient: "192.168.1.30", InternalPort: 22, Enabled: true, Description: "ssh"}))
	tb := next(st, "mappings", func(tb table) bool { return len(tb.Mappings) == 3 })
	found := false
	for _, m := range tb.Mappings {
		found = found || (m.ExternalPort == 2222 && m.Description == "ssh")
	}
	if !found {
		t.Errorf("the new mapping is not in the event: %+v", tb)
	}

	g.SetExternalIP(netip.MustParseAddr("10.1.2.3"))
	ex := next(st, "external", func(x external) bool { return x.ExternalIP == "10.1.2.3" })
	if ex.Class != "private" || !strings.Contains(ex.Warning, "double NAT") {
		t.Errorf("external event: %+v", ex)
	}

	// A change made through the API reaches other listeners too.
	e.call("DELETE", "/api/mappings/tcp/2222", nil, http.StatusOK, nil)
	next(st, "mappings", func(tb table) bool { return len(tb.Mappings) == 2 })
}

// TestLeasesRunningDownAreNoChange: the poller must not push a table whose
// only difference is time passing, or every browser would redraw every
// few seconds.
func TestLeasesRunningDownAreNoChange(t *testing.T) {
	g := webuitest.New(webuitest.Options{Mappings: someMappings()})
	e := newEnv(t, func(s *webui.Server) { s.PollInterval = 20 * time.Millisecond }, g)
	st, _ := e.events(withToken())
	next[table](st, "mappings", nil)
	before := g.Calls("List")
	deadline := time.After(1500 * time.Millisecond) // spans a second boundary of the leases
	for {
		select {
		case ev := <-st.events:
			if ev.name == "mappings" {
				t.Fatalf("a mappings event without a change: %s", ev.data)
			}
			continue
		case <-deadline:
		}
		break
	}
	if g.Calls("List")-before < 5 {
		t.Errorf("the poller read the table only %d times in 1.5 s at a 20 ms interval", g.Calls("List")-before)
	}
}

// TestPollingOnlyWhileListening: with no event stream open the router is
// left alone; with one it is polled; when it closes, polling stops.
func TestPollingOnlyWhileListening(t *testing.T) {
	g := webuitest.New(webuitest.Options{})
	e := newEnv(t, func(s *webui.Server) { s.PollInterval = 10 * time.Millisecond }, g)
	n0 := g.Calls("List")
	time.Sleep(150 * time.Millisecond)
	if n := g.Calls("List") - n0; n != 0 {
		t.Errorf("%d reads of the table with no browser listening", n)
	}
	st, _ := e.events(withToken())
	next[table](st, "mappings", nil)
	if !eventually(func() bool { return g.Calls("List")-n0 >= 5 }) {
		t.Errorf("only %d reads at a 10 ms interval while a browser listens", g.Calls("List")-n0)
	}
	st.close()
	// Once the server notices the closed stream, the reads stop.
	stable := eventually(func() bool {
		n := g.Calls("List")
		time.Sleep(100 * time.Millisecond) // ten poll intervals
		return g.Calls("List") == n
	})
	if !stable {
		t.Errorf("the table is still read after the last browser left")
	}
}

// eventually reports whether cond becomes true within 5 s.
func eventually(cond func() bool) bool {
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}

// watcher is a Watcher that reports when told to.
type watcher struct {
	mu      sync.Mutex
	changed func()
	started chan struct{}
}

func (w *watcher) Watch(ctx context.Context, g portmap.Gateway, changed func()) error {
	w.mu.Lock()
	w.changed = changed
	w.mu.Unlock()
	select {
	case w.started <- struct{}{}:
	default:
	}
	<-ctx.Done()
	return ctx.Err()
}

func (w *watcher) notify() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.changed()
}

func TestWatcherReplacesPolling(t *testing.T) {
	g := webuitest.New(webuitest.Options{})
	w := &watcher{started: make(chan struct{}, 1)}
	e := newEnv(t, func(s *webui.Server) {
		s.PollInterval = time.Hour // a change can only come from the watcher
		s.Watcher = w
	}, g)
	st, _ := e.events(withToken())
	next(st, "gateways", func(gw gateways) bool { return len(gw.Gateways) == 1 && gw.Gateways[0].Updates == "events" })
	next[table](st, "mappings", nil)
	select {
	case <-w.started:
	case <-time.After(5 * time.Second):
		t.Fatal("the watcher was not started")
	}
	g.SetMappings(someMappings())
	w.notify()
	next(st, "mappings", func(tb table) bool { return len(tb.Mappings) == 2 })
}

// PortmapWatcher follows what the router pushes; a router that pushes
// nothing (the in-memory gateway has no events) is polled instead, and its
// changes still show.
func TestPortmapWatcherFallsBackToPolling(t *testing.T) {
	g := webuitest.New(webuitest.Options{})
	w := &webui.PortmapWatcher{Options: portmap.Options{NoMulticast: true, NoDefaultGateway: true}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := w.Watch(ctx, g, func() { t.Error("a change reported by a watch that cannot follow the router") }); !errors.Is(err, webui.ErrNoRouterEvents) {
		t.Fatalf("Watch of a router without events: %v, want ErrNoRouterEvents", err)
	}

	e := newEnv(t, func(s *webui.Server) { s.Watcher = w }, g)
	st, _ := e.events(withToken())
	next(st, "gateways", func(gw gateways) bool { return len(gw.Gateways) == 1 && gw.Gateways[0].Updates == "polling" })
	g.SetMappings(someMappings())
	next(st, "mappings", func(tb table) bool { return len(tb.Mappings) == 2 })
}

// TestSlowGatewayBlocksNothingElse: while the router sits on an Add, the
// page, the gateway list, the table and the event stream still answer,
// and the Add ends with a timeout sentence.
func TestSlowGatewayBlocksNothingElse(t *testing.T) {
	g := webuitest.New(webuitest.Options{Mappings: someMappings()})
	entered := make(chan struct{}, 1)
	g.SetHook(func(ctx context.Context, op string) error {
		if op != "Add" {
			return nil
		}
		entered <- struct{}{}
		<-ctx.Done()
		return ctx.Err()
	})
	e := newEnv(t, func(s *webui.Server) { s.Timeout = time.Second }, g)
	done := make(chan apiError, 1)
	go func() {
		h := withToken()
		res, body := e.request("POST", "/api/mappings", map[string]any{"protocol": "tcp", "internal_port": 80}, h)
		var ae apiError
		json.Unmarshal(body, &ae)
		ae.Code = res.StatusCode
		done <- ae
	}()
	<-entered
	e.call("GET", "/api/gateways", nil, http.StatusOK, nil)
	e.call("GET", "/api/mappings", nil, http.StatusOK, nil)
	e.call("GET", "/api/gateway", nil, http.StatusOK, nil)
	if res, _ := e.request("GET", "/?token="+testToken, nil, nil); res.StatusCode != http.StatusOK {
		t.Errorf("page: %d", res.StatusCode)
	}
	st, _ := e.events(withToken())
	next[gateways](st, "gateways", nil)
	select {
	case <-done:
		t.Fatal("the Add ended before the other requests were answered: they waited for it")
	default:
	}
	ae := <-done
	if ae.Code != http.StatusGatewayTimeout || !strings.Contains(ae.Error, "did not answer") {
		t.Errorf("the slow Add: %+v, want 504 and a sentence", ae)
	}
}

// keeper is a Keeper that remembers.
type keeper struct {
	mu   sync.Mutex
	kept map[portmap.Key]bool
}

func (k *keeper) Keep(ctx context.Context, g portmap.Gateway, m portmap.Mapping) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.kept[m.Key()] = true
	return nil
}

func (k *keeper) Release(ctx context.Context, g portmap.Gateway, key portmap.Key) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.kept, key)
	return nil
}

func (k *keeper) Kept(g portmap.Gateway) []portmap.Key {
	k.mu.Lock()
	defer k.mu.Unlock()
	var out []portmap.Key
	for key := range k.kept {
		out = append(out, key)
	}
	return out
}

func (k *keeper) has(key portmap.Key) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.kept[key]
}

// checker is a Checker that says what it was asked.
type checker struct{}

type checkResult struct {
	Reachable bool   `json:"reachable"`
	Asked     string `json:"asked"`
}

func (c checkResult) String() string { return "reachable: " + c.Asked }

func (checker) Check(ctx context.Context, g portmap.Gateway, proto string, internalPort, externalPort uint16) (any, error) {
	return checkResult{true, fmt.Sprintf("%s %d->%d", proto, externalPort, internalPort)}, nil
}

func TestKeepAndCheck(t *testing.T) {
	g := webuitest.New(webuitest.Options{Mappings: someMappings()})
	k := &keeper{kept: map[portmap.Key]bool{}}
	e := newEnv(t, func(s *webui.Server) { s.Keeper, s.Checker = k, checker{} }, g)

	var gws gateways
	e.call("GET", "/api/gateways", nil, http.StatusOK, &gws)
	if !gws.Features.Keep || !gws.Features.Check {
		t.Errorf("features: %+v", gws.Features)
	}
	_, page := e.request("GET", "/?token="+testToken, nil, nil)
	if !strings.Contains(string(page), `data-keep="true"`) || !strings.Contains(string(page), "Keep open") {
		t.Errorf("the page does not offer keeping open")
	}

	var added struct {
		Mappings []mapping `json:"mappings"`
	}
	e.call("POST", "/api/mappings", map[string]any{"protocol": "tcp", "internal_port": 7000, "keep": true}, http.StatusCreated, &added)
	key := portmap.Key{Protocol: portmap.TCP, ExternalPort: 7000}
	if !k.has(key) || added.Mappings[0].Kept == nil || !*added.Mappings[0].Kept {
		t.Errorf("add with keep: kept=%v, %+v", k.has(key), added.Mappings[0])
	}
	var tb table
	e.call("GET", "/api/mappings", nil, http.StatusOK, &tb)
	for _, m := range tb.Mappings {
		if m.Kept == nil || *m.Kept != (m.ExternalPort == 7000) {
			t.Errorf("listed %d/%s with kept=%v", m.ExternalPort, m.Protocol, m.Kept)
		}
	}

	e.call("PUT", "/api/mappings/udp/51820/keep", map[string]any{"keep": true}, http.StatusOK, nil)
	if !k.has(portmap.Key{Protocol: portmap.UDP, ExternalPort: 51820}) {
		t.Error("keep did not reach the keeper")
	}
	e.call("PUT", "/api/mappings/udp/51820/keep", map[string]any{"keep": false}, http.StatusOK, nil)
	if k.has(portmap.Key{Protocol: portmap.UDP, ExternalPort: 51820}) {
		t.Error("release did not reach the keeper")
	}
	var ae apiError
	e.call("PUT", "/api/mappings/udp/9/keep", map[string]any{"keep": true}, http.StatusNotFound, &ae)
	e.call("PUT", "/api/mappings/udp/51820/keep", map[string]any{}, http.StatusBadRequest, &ae)

	// Deleting a kept mapping releases it first, or the keeper would put it back.
	e.call("DELETE", "/api/mappings/tcp/7000", nil, http.StatusOK, nil)
	if k.has(key) {
		t.Error("a deleted mapping is still kept")
	}

	var cr struct {
		Summary string      `json:"summary"`
		Result  checkResult `json:"result"`
	}
	e.call("POST", "/api/mappings/tcp/8443/check", nil, http.StatusOK, &cr)
	if cr.Summary != "reachable: TCP 8443->443" || !cr.Result.Reachable {
		t.Errorf("check: %+v", cr)
	}
	e.call("POST", "/api/mappings/tcp/9/check", nil, http.StatusNotFound, &ae)
}

func TestWithoutKeeperOrChecker(t *testing.T) {
	g := webuitest.New(webuitest.Options{Mappings: someMappings()})
	e := newEnv(t, nil, g)
	var ae apiError
	e.call("PUT", "/api/mappings/tcp/8443/keep", map[string]any{"keep": true}, http.StatusNotFound, &ae)
	e.call("POST", "/api/mappings/tcp/8443/check", nil, http.StatusNotFound, &ae)
	var tb table
	e.call("GET", "/api/mappings", nil, http.StatusOK, &tb)
	if tb.Mappings[0].Kept != nil {
		t.Errorf("kept is given without a keeper: %+v", tb.Mappings[0])
	}
	_, page := e.request("GET", "/?token="+testToken, nil, nil)
	if strings.Contains(string(page), "Keep open") || !strings.Contains(string(page), `data-check="false"`) {
		t.Error("the page offers features that are not configured")
	}
}

func TestUnknownAPIRoute(t *testing.T) {
	e := newEnv(t, nil, webuitest.New(webuitest.Options{}))
	var ae apiError
	e.call("GET", "/api/nothing", nil, http.StatusNotFound, &ae)
	if ae.Code != http.StatusNotFound || ae.Error == "" {
		t.Errorf("unknown route: %+v", ae)
	}
	// Even an unknown route wants the token.
	if res, _ := e.request("GET", "/api/nothing", nil, nil); res.StatusCode != http.StatusForbidden {
		t.Errorf("unknown route without token: %d", res.StatusCode)
	}
}

// TestAgainstPortmapOverIGD drives the UI over portmap's real UPnP client
// and igdtest's router on 127.0.0.1, with the server's own discovery: the
// same path a real router takes.
func TestAgainstPortmapOverIGD(t *testing.T) {
	igdSrv := igdtest.NewServer(t, igdtest.Options{ExternalIP: "192.168.100.2"})
	srv := &webui.Server{
		Token:   testToken,
		Options: portmap.Options{Methods: []portmap.Method{portmap.UPnP}, GatewayURL: igdSrv.Location, NoDefaultGateway: true, NoCache: true, NoMulticast: true},
	}
	e := &env{t: t, srv: srv}
	e.hs = newHTTPServer(t, srv)
	g := e.waitDiscovered()
	if len(g.Gateways) != 1 || g.Gateways[0].Class != "private" {
		t.Fatalf("gateways: %+v", g)
	}
	e.call("POST", "/api/mappings", map[string]any{"protocol": "tcp", "internal_port": 8080, "internal_client": "192.168.1.20", "description": "<b>web</b>"},
		http.StatusCreated, nil)
	var ae apiError
	e.call("POST", "/api/mappings", map[string]any{"protocol": "tcp", "internal_port": 8080, "internal_client": "192.168.1.21"},
		http.StatusConflict, &ae)
	if !strings.Contains(ae.Error, "already mapped to 192.168.1.20:8080") {
		t.Errorf("conflict over real UPnP: %+v", ae)
	}
	var tb table
	e.call("GET", "/api/mappings", nil, http.StatusOK, &tb)
	if len(tb.Mappings) != 1 || tb.Mappings[0].Description != "<b>web</b>" {
		t.Errorf("table over real UPnP: %+v", tb)
	}
	e.call("DELETE", "/api/mappings/tcp/8080", nil, http.StatusOK, nil)
	if n := len(igdSrv.Mappings()); n != 0 {
		t.Errorf("%d mappings left on the router", n)
	}
}
