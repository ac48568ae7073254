package igd_test

import (
	"bytes"
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/portfwd/portfwd/igd"
	"github.com/portfwd/portfwd/igd/igdtest"
	"github.com/portfwd/portfwd/upnp"
)

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// soapFixture reads a captured SOAP reply from testdata/soap (copied from
// shared/routers).
func soapFixture(t *testing.T, router, file string) []byte {
	return readFile(t, filepath.Join("testdata/soap", router, file))
}

// TestGoldenRouterReplies decodes replies captured from real routers through
// the typed methods, served verbatim by the fake.
func TestGoldenRouterReplies(t *testing.T) {
	ctx := context.Background()
	serve := func(t *testing.T, version int, ppp bool, bodies map[string][]byte) *igd.Client {
		return igdtest.NewServer(t, igdtest.Options{Version: version, PPP: ppp, Bodies: bodies}).Client()
	}

	t.Run("actiontec-gt784wn", func(t *testing.T) {
		c := serve(t, 1, true, map[string][]byte{
			"GetExternalIPAddress":       soapFixture(t, "actiontec-gt784wn", "soap-GetExternalIPAddress.xml"),
			"GetGenericPortMappingEntry": soapFixture(t, "actiontec-gt784wn", "soap-GetGenericPortMappingEntry.xml"),
		})
		if ip, err := c.GetExternalIPAddress(ctx); err != nil || ip != netip.MustParseAddr("11.222.33.111") {
			t.Errorf("GetExternalIPAddress = %v, %v", ip, err)
		}
		want := igd.PortMapping{ExternalPort: 3658, Protocol: "UDP", InternalPort: 3658, InternalClient: "192.168.0.10",
			Enabled: true, Description: "192.168.0.10:3658 to 3658 (UDP)"}
		if m, err := c.GetGenericPortMappingEntry(ctx, 0); err != nil || m != want {
			t.Errorf("GetGenericPortMappingEntry = %+v, %v; want %+v", m, err, want)
		}
		c = serve(t, 1, true, map[string][]byte{
			"GetGenericPortMappingEntry": soapFixture(t, "actiontec-gt784wn", "soap-GetGenericPortMappingEntry-2.xml"),
		})
		if _, err := c.GetGenericPortMappingEntry(ctx, 1); upnp.ErrorCode(err) != igd.CodeSpecifiedArrayIndexInvalid {
			t.Errorf("second entry: %v, want 713", err)
		}
	})

	t.Run("asus-rt-n16-ddwrt", func(t *testing.T) {
		// Un-namespaced children after whitespace before the envelope.
		c := serve(t, 1, false, map[string][]byte{"GetNATRSIPStatus": soapFixture(t, "asus-rt-n16-ddwrt", "soap-GetNATRSIPStatus.xml")})
		if rsip, nat, err := c.GetNATRSIPStatus(ctx); err != nil || rsip || !nat {
			t.Errorf("GetNATRSIPStatus = %v, %v, %v; want false, true", rsip, nat, err)
		}
	})

	t.Run("ddwrt-generic-x86", func(t *testing.T) {
		c := serve(t, 1, false, map[string][]byte{
			"GetExternalIPAddress":       soapFixture(t, "ddwrt-generic-x86", "soap-GetExternalIPAddress.xml"),
			"GetGenericPortMappingEntry": soapFixture(t, "ddwrt-generic-x86", "soap-GetGenericPortMappingEntry.xml"),
		})
		if ip, err := c.GetExternalIPAddress(ctx); err != nil || ip != netip.MustParseAddr("11.222.33.111") {
			t.Errorf("GetExternalIPAddress = %v, %v", ip, err)
		}
		// An empty table: 713 at index 0 ends the walk with no error.
		if list, err := c.ListPortMappings(ctx, nil); err != nil || len(list) != 0 {
			t.Errorf("ListPortMappings = %v, %v; want empty", list, err)
		}
	})

	t.Run("tplink-tl-wr841nd-v9-ddwrt", func(t *testing.T) {
		const r = "tplink-tl-wr841nd-v9-ddwrt"
		c := serve(t, 1, false, map[string][]byte{
			"AddPortMapping":              soapFixture(t, r, "soap-AddPortMapping.xml"),
			"DeletePortMapping":           soapFixture(t, r, "soap-DeletePortMapping.xml"),
			"GetExternalIPAddress":        soapFixture(t, r, "soap-GetExternalIPAddress.xml"),
			"GetGenericPortMappingEntry":  soapFixture(t, r, "soap-GetGenericPortMappingEntry.xml"),
			"GetSpecificPortMappingEntry": soapFixture(t, r, "soap-GetSpecificPortMappingEntry.xml"),
		})
		m := igd.PortMapping{ExternalPort: 5000, Protocol: "TCP", InternalPort: 5000, InternalClient: "192.168.1.100", Enabled: true}
		if err := c.AddPortMapping(ctx, m); err != nil {
			t.Errorf("AddPortMapping: %v", err)
		}
		if err := c.DeletePortMapping(ctx, "", 5000, "TCP"); err != nil {
			t.Errorf("DeletePortMapping: %v", err)
		}
		if ip, err := c.GetExternalIPAddress(ctx); err != nil || ip != netip.MustParseAddr("1.2.3.4") {
			t.Errorf("GetExternalIPAddress = %v, %v", ip, err)
		}
		if _, err := c.GetSpecificPortMappingEntry(ctx, "", 5000, "TCP"); upnp.ErrorCode(err) != igd.CodeInvalidArgs {
			t.Errorf("GetSpecificPortMappingEntry: %v, want 402", err)
		}
		// Out of range is 402 here, not 713: still the end of the table.
		if list, err := c.ListPortMappings(ctx, nil); err != nil || len(list) != 0 {
			t.Errorf("ListPortMappings = %v, %v; want empty", list, err)
		}
	})

	t.Run("tplink-tl-wr940n", func(t *testing.T) {
		// SOAP-ENV: prefix on the envelope.
		c := serve(t, 1, false, map[string][]byte{"GetExternalIPAddress": soapFixture(t, "tplink-tl-wr940n", "soap-GetExternalIPAddress.xml")})
		if ip, err := c.GetExternalIPAddress(ctx); err != nil || ip != netip.MustParseAddr("100.100.100.100") {
			t.Errorf("GetExternalIPAddress = %v, %v", ip, err)
		}
	})

	t.Run("soap-fault-402-invalid-args", func(t *testing.T) {
		srv := igdtest.NewServer(t, igdtest.Options{Version: 1, Bodies: map[string][]byte{
			"AddPortMapping": soapFixture(t, "soap-fault-402-invalid-args", "soap-AddPortMapping-fault-402.xml"),
		}})
		c := srv.Client()
		m := igd.PortMapping{ExternalPort: 41641, Protocol: "UDP", InternalPort: 41641, InternalClient: "192.168.1.5", Enabled: true, LeaseDuration: time.Hour}
		err := c.AddPortMapping(ctx, m)
		if ue, ok := err.(*upnp.Error); !ok || ue.Code != igd.CodeInvalidArgs || ue.Description != "Invalid Args" {
			t.Fatalf("AddPortMapping error = %#v, want the 402 fault", err)
		}
		// AddMapping retries once, permanently, then gives up with the fault.
		_, err = c.AddMapping(ctx, m, igd.AddOptions{})
		if upnp.ErrorCode(err) != igd.CodeInvalidArgs {
			t.Errorf("AddMapping error = %v, want 402", err)
		}
		reqs := srv.Requests()
		if len(reqs) != 3 || reqs[1].Args.Value("NewLeaseDuration") != "3600" || reqs[2].Args.Value("NewLeaseDuration") != "0" {
			t.Errorf("requests %+v; want the plain call, then AddMapping's with lease 3600 and 0", reqs)
		}
	})
}

// natlabExchange returns the SOAP body of a captured natlab request or
// response (an HTTP message with headers).
func natlabExchange(t *testing.T, action, side string) []byte {
	t.Helper()
	data := readFile(t, filepath.Join("testdata/natlab", "soap_"+action+"_"+side+".txt"))
	_, body, ok := bytes.Cut(data, []byte("\r\n\r\n"))
	if !ok {
		t.Fatalf("%s %s: no header/body separator", action, side)
	}
	return body
}

// TestGoldenNatlab replays the miniupnpc/MiniUPnPd exchanges captured in
// the natlab: each reply decodes through the typed method, and the request
// the method sends carries the same arguments, in the same order, as
// miniupnpc's.
func TestGoldenNatlab(t *testing.T) {
	ctx := context.Background()
	actions := []string{"AddPortMapping", "DeletePortMapping", "GetCommonLinkProperties", "GetConnectionTypeInfo",
		"GetExternalIPAddress", "GetGenericPortMappingEntry", "GetSpecificPortMappingEntry", "GetStatusInfo"}
	bodies := make(map[string][]byte)
	for _, a := range actions {
		bodies[a] = natlabExchange(t, a, "response")
	}
	srv := igdtest.NewServer(t, igdtest.Options{Version: 2, Bodies: bodies})
	c := srv.Client()

	m := igd.PortMapping{ExternalPort: 18080, Protocol: "TCP", InternalPort: 8080, InternalClient: "10.77.0.2", Enabled: true, Description: "natlab-capture"}
	if err := c.AddPortMapping(ctx, m); err != nil {
		t.Errorf("AddPortMapping: %v", err)
	}
	if err := c.DeletePortMapping(ctx, "", 18080, "TCP"); err != nil {
		t.Errorf("DeletePortMapping: %v", err)
	}
	if lp, err := c.GetCommonLinkProperties(ctx, ""); err != nil ||
		lp != (igd.LinkProperties{AccessType: "Cable", UpBps: 1410065408, DownBps: 1410065408, Status: "Up"}) {
		t.Errorf("GetCommonLinkProperties = %+v, %v", lp, err)
	}
	if ct, p, err := c.GetConnectionTypeInfo(ctx); err != nil || ct != "IP_Routed" || p != "IP_Routed" {
		t.Errorf("GetConnectionTypeInfo = %q, %q, %v", ct, p, err)
	}
	if ip, err := c.GetExternalIPAddress(ctx); err != nil || ip != netip.MustParseAddr("203.0.113.1") {
		t.Errorf("GetExternalIPAddress = %v, %v", ip, err)
	}
	wantGeneric := m
	wantGeneric.LeaseDuration = 604798 * time.Second
	if got, err := c.GetGenericPortMappingEntry(ctx, 0); err != nil || got != wantGeneric {
		t.Errorf("GetGenericPortMappingEntry = %+v, %v; want %+v", got, err, wantGeneric)
	}
	wantSpecific := m
	wantSpecific.LeaseDuration = 604800 * time.Second
	if got, err := c.GetSpecificPortMappingEntry(ctx, "", 18080, "TCP"); err != nil || got != wantSpecific {
		t.Errorf("GetSpecificPortMappingEntry = %+v, %v; want %+v", got, err, wantSpecific)
	}
	if st, err := c.GetStatusInfo(ctx); err != nil ||
		st != (igd.StatusInfo{ConnectionStatus: "Connected", LastConnectionError: "ERROR_NONE", Uptime: 2126 * time.Second}) {
		t.Errorf("GetStatusInfo = %+v, %v", st, err)
	}

	reqs := srv.Requests()
	if len(reqs) != len(actions) {
		t.Fatalf("%d requests, want %d", len(reqs), len(actions))
	}
	for i, a := range actions {
		name, want, err := upnp.ParseEnvelope(natlabExchange(t, a, "request"))
		if err != nil || name != a {
			t.Fatalf("captured %s request: %q, %v", a, name, err)
		}
		if reqs[i].Action != a || !reflect.DeepEqual(reqs[i].Args, want) {
			t.Errorf("%s: sent %s %v; miniupnpc sent %v", a, reqs[i].Action, reqs[i].Args, want)
		}
	}
}
