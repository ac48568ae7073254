package igd

import (
	"context"
	"errors"
	"io"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	nethttp "net/http"

	http "github.com/portfwd/portfwd/internal/httpx"

	"github.com/portfwd/portfwd/upnp"
)

// The server is tested end to end: a real HTTP server on 127.0.0.1, found
// and driven by this package's own client, over the fake Service.

func TestNewServerRejectsBadConfig(t *testing.T) {
	f := newFake()
	for name, cfg := range map[string]ServerConfig{
		"no service":  {UUID: testUUID},
		"no uuid":     {Service: f},
		"bad uuid":    {Service: f, UUID: "uuid:not-a-uuid"},
		"short uuid":  {Service: f, UUID: "3c2e5c4a-9d1b-4f2e-8a7c-0b1d2e3f4a5"},
		"version 3":   {Service: f, UUID: testUUID, Version: 3},
		"version -1":  {Service: f, UUID: testUUID, Version: -1},
		"hex garbage": {Service: f, UUID: "3c2e5c4a-9d1b-4f2e-8a7c-0b1d2e3f4azz"},
	} {
		if _, err := NewServer(cfg); err == nil {
			t.Errorf("%s: NewServer accepted %+v", name, cfg)
		}
	}
	for _, u := range []string{testUUID, strings.TrimPrefix(testUUID, "uuid:"), "UUID:3C2E5C4A-9D1B-4F2E-8A7C-0B1D2E3F4A5B"} {
		if _, err := NewServer(ServerConfig{Service: f, UUID: u}); err != nil {
			t.Errorf("NewServer refused UUID %q: %v", u, err)
		}
	}
}

// TestDescription fetches and parses the description as a control point
// does, and checks the device tree of each version.
func TestDescription(t *testing.T) {
	for _, tc := range []struct {
		version               int
		igd, wan, wcd, ipConn string
		spec                  upnp.SpecVersion
		wantL3F, wantConfigID bool
	}{
		{1, URNInternetGatewayDevice1, URNWANDevice1, URNWANConnectionDevice1, URNWANIPConnection1, upnp.SpecVersion{Major: 1, Minor: 0}, true, false},
		{2, URNInternetGatewayDevice2, URNWANDevice2, URNWANConnectionDevice2, URNWANIPConnection2, upnp.SpecVersion{Major: 1, Minor: 1}, false, true},
	} {
		srv, s := newTestServer(t, tc.version, newFake(), nil)
		root, err := upnp.FetchDescription(context.Background(), srv.Client(), srv.URL+DescriptionPath)
		if err != nil {
			t.Fatalf("v%d: %v", tc.version, err)
		}
		if root.SpecVersion != tc.spec {
			t.Errorf("v%d: specVersion %+v, want %+v", tc.version, root.SpecVersion, tc.spec)
		}
		if root.URLBase != "" {
			t.Errorf("v%d: URLBase %q, want none", tc.version, root.URLBase)
		}
		if (root.ConfigID != "") != tc.wantConfigID {
			t.Errorf("v%d: configId %q", tc.version, root.ConfigID)
		}
		d := root.Device
		if d.DeviceType != tc.igd || d.UDN != testUUID || d.FriendlyName != "test gateway" {
			t.Errorf("v%d: root device %s %s %q", tc.version, d.DeviceType, d.UDN, d.FriendlyName)
		}
		hasL3F := len(d.Services) == 1 && d.Services[0].ServiceType == URNLayer3Forwarding1
		if hasL3F != tc.wantL3F || (!tc.wantL3F && len(d.Services) != 0) {
			t.Errorf("v%d: root services %+v", tc.version, d.Services)
		}
		if len(d.Devices) != 1 || d.Devices[0].DeviceType != tc.wan {
			t.Fatalf("v%d: root's embedded devices %+v, want one %s", tc.version, d.Devices, tc.wan)
		}
		wan := d.Devices[0]
		if len(wan.Services) != 1 || wan.Services[0].ServiceType != URNWANCommonInterfaceConfig1 {
			t.Errorf("v%d: WANDevice services %+v", tc.version, wan.Services)
		}
		if len(wan.Devices) != 1 || wan.Devices[0].DeviceType != tc.wcd {
			t.Fatalf("v%d: WANDevice's embedded devices %+v", tc.version, wan.Devices)
		}
		wcd := wan.Devices[0]
		// IGDv2 adds WANIPv6FirewallControl:1 beside the connection.
		wantWCD := []string{tc.ipConn}
		if tc.version == 2 {
			wantWCD = append(wantWCD, ServiceWANIPv6FirewallControl)
		}
		var gotWCD []string
		for _, svc := range wcd.Services {
			gotWCD = append(gotWCD, svc.ServiceType)
		}
		if !slices.Equal(gotWCD, wantWCD) {
			t.Errorf("v%d: WANConnectionDevice services %+v; want %v", tc.version, wcd.Services, wantWCD)
		}
		udns := []string{d.UDN, wan.UDN, wcd.UDN}
		if len(slices.Compact(slices.Sorted(slices.Values(udns)))) != 3 {
			t.Errorf("v%d: UDNs not distinct: %v", tc.version, udns)
		}
		for _, u := range udns {
			if _, err := parseUUID(u); err != nil {
				t.Errorf("v%d: UDN %q: %v", tc.version, u, err)
			}
		}

		// Every URL in it is served, with the right kind of answer.
		desc, services := s.Paths()
		if desc != DescriptionPath {
			t.Errorf("Paths description %q", desc)
		}
		var described []upnp.Service
		root.Walk(func(_ []*upnp.Device, svc *upnp.Service) bool {
			described = append(described, *svc)
			return true
		})
		if !reflect.DeepEqual(described, services) {
			t.Errorf("v%d: Paths services %+v\ndescription has %+v", tc.version, services, described)
		}
		for _, svc := range described {
			u, err := root.Resolve(svc.SCPDURL)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := nethttp.Get(u)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != `text/xml; charset="utf-8"` || !strings.Contains(string(body), "<scpd") {
				t.Errorf("v%d: GET %s: %s %q", tc.version, svc.SCPDURL, resp.Status, resp.Header.Get("Content-Type"))
			}
		}

		// The embedded UUIDs follow from the root's: a restart with the
		// same UUID describes the same devices, another UUID others.
		again, err := NewServer(ServerConfig{Service: newFake(), Version: tc.version, UUID: testUUID, FriendlyName: "test gateway", FirewallControl: newFakeFirewall()})
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(again.Root(), s.Root()) || again.ConfigID() != s.ConfigID() {
			t.Errorf("v%d: the same configuration describes different devices", tc.version)
		}
		other, err := NewServer(ServerConfig{Service: newFake(), Version: tc.version, UUID: "11111111-2222-3333-4444-555555555555"})
		if err != nil {
			t.Fatal(err)
		}
		if o := other.Root(); o.Device.Devices[0].UDN == wan.UDN || o.Device.Devices[0].Devices[0].UDN == wcd.UDN {
			t.Errorf("v%d: another root UUID kept the embedded UUIDs", tc.version)
		}
		if tc.wantConfigID && other.ConfigID() == s.ConfigID() {
			t.Errorf("v%d: different descriptions share configId %d", tc.version, s.ConfigID())
		}
	}
}

// TestConnectionServicesRanksServer checks that the client picks the
// server's connection service, WANIPConnection:2 first on an IGDv2, with
// the WANCommonInterfaceConfig of its WANDevice.
func TestConnectionServicesRanksServer(t *testing.T) {
	for _, version := range []int{1, 2} {
		srv, _ := newTestServer(t, version, newFake(), nil)
		c, refs := discover(t, srv)
		if len(refs) != 1 {
			t.Fatalf("v%d: %d connection services, want 1", version, len(refs))
		}
		if refs[0].Kind != KindIP || refs[0].Version != version {
			t.Errorf("v%d: best service %v:%d", version, refs[0].Kind, refs[0].Version)
		}
		if c.ControlURL != srv.URL+WANIPConnectionControlPath || c.CommonControlURL != srv.URL+WANCommonInterfaceConfigControlPath {
			t.Errorf("v%d: control URLs %q, %q", version, c.ControlURL, c.CommonControlURL)
		}
	}
}

func TestPresentationURL(t *testing.T) {
	for _, tc := range []struct{ tmpl, host, want string }{
		{"", "127.0.0.1:5000", ""},
		{"/", "127.0.0.1:5000", "/"},
		{"http://{host}:8080/", "192.168.1.1:5000", "http://192.168.1.1:8080/"},
		{"http://{host}:8080/", "192.168.1.1", "http://192.168.1.1:8080/"},
		{"http://{host}:8080/", "[fe80::1%25eth0]:5000", "http://[fe80::1]:8080/"},
		{"http://{host}:8080/", "[::ffff:192.168.1.1]:5000", "http://192.168.1.1:8080/"},
		{"http://{host}:8080/", "router.lan:5000", "http://router.lan:8080/"},
		{"http://{host}:8080/", "", ""},
		{"http://{host}:8080/", "a\"><script>:1", ""},
	} {
		if got := presentationURL(tc.tmpl, tc.host); got != tc.want {
			t.Errorf("presentationURL(%q, %q) = %q, want %q", tc.tmpl, tc.host, got, tc.want)
		}
	}
	srv, s := newTestServer(t, 2, newFake(), func(c *ServerConfig) { c.PresentationURL = "http://{host}:8080/" })
	root, err := upnp.FetchDescription(context.Background(), srv.Client(), srv.URL+DescriptionPath)
	if err != nil {
		t.Fatal(err)
	}
	if want := "http://127.0.0.1:8080/"; root.Device.PresentationURL != want {
		t.Errorf("served presentationURL %q, want %q", root.Device.PresentationURL, want)
	}
	if s.Root().Device.PresentationURL != "" {
		t.Errorf("Root() kept a host-dependent presentation URL")
	}
	if p, err := upnp.ParseDescription(s.Description("10.0.0.1:5000"), ""); err != nil || p.Device.PresentationURL != "http://10.0.0.1:8080/" {
		t.Errorf("Description(10.0.0.1:5000): %v, %+v", err, p)
	}
}

// TestClientAgainstServer drives every action the client has, on both
// versions, and checks both what the client got and what the Service was
// asked.
func TestClientAgainstServer(t *testing.T) {
	for _, version := range []int{1, 2} {
		t.Run(map[int]string{1: "v1", 2: "v2"}[version], func(t *testing.T) {
			ctx := context.Background()
			f := newFake()
			srv, _ := newTestServer(t, version, f, nil)
			c, _ := discover(t, srv)
			local := netip.MustParseAddr("127.0.0.1")

			ip, err := c.GetExternalIPAddress(ctx)
			if err != nil || ip != f.ext {
				t.Errorf("GetExternalIPAddress = %v, %v", ip, err)
			}
			st, err := c.GetStatusInfo(ctx)
			if err != nil || st != (StatusInfo{ConnectionStatus: "Connected", LastConnectionError: "ERROR_NONE", Uptime: 90 * time.Minute}) {
				t.Errorf("GetStatusInfo = %+v, %v", st, err)
			}
			ct, possible, err := c.GetConnectionTypeInfo(ctx)
			if err != nil || ct != "IP_Routed" || possible != "IP_Routed" {
				t.Errorf("GetConnectionTypeInfo = %q, %q, %v", ct, possible, err)
			}
			rsip, nat, err := c.GetNATRSIPStatus(ctx)
			if err != nil || rsip || !nat {
				t.Errorf("GetNATRSIPStatus = %v, %v, %v", rsip, nat, err)
			}
			lp, err := c.GetCommonLinkProperties(ctx, "")
			if err != nil || lp != f.link {
				t.Errorf("GetCommonLinkProperties = %+v, %v", lp, err)
			}

			web := PortMapping{ExternalPort: 8080, Protocol: TCP, InternalPort: 80, InternalClient: "127.0.0.1",
				Enabled: true, Description: "web", LeaseDuration: time.Hour}
			if err := c.AddPortMapping(ctx, web); err != nil {
				t.Fatalf("AddPortMapping: %v", err)
			}
			got, ok := f.lastCall("AddPortMapping")
			if !ok || got.client != local || got.mapping != web {
				t.Errorf("Service got AddPortMapping(%v, %+v), want (%v, %+v)", got.client, got.mapping, local, web)
			}
			m, err := c.GetSpecificPortMappingEntry(ctx, "", 8080, "tcp")
			if err != nil || m != web {
				t.Errorf("GetSpecificPortMappingEntry = %+v, %v; want %+v", m, err, web)
			}
			m, err = c.GetGenericPortMappingEntry(ctx, 0)
			if err != nil || m != web {
				t.Errorf("GetGenericPortMappingEntry(0) = %+v, %v", m, err)
			}
			if _, err := c.GetGenericPortMappingEntry(ctx, 1); upnp.ErrorCode(err) != CodeSpecifiedArrayIndexInvalid {
				t.Errorf("GetGenericPortMappingEntry(1) past the end: %v, want 713", err)
			}

			// The high-level methods, with their fallbacks, work too.
			dns := PortMapping{ExternalPort: 5353, Protocol: UDP, InternalPort: 53, InternalClient: "127.0.0.1", Enabled: true, Description: "dns"}
			made, err := c.AddMapping(ctx, dns, AddOptions{})
			if err != nil {
				t.Fatalf("AddMapping: %v", err)
			}
			if version == 2 {
				dns.LeaseDuration = maxLeaseV2 // 0 asks for permanent, which IGDv2 turns into a week
			}
			if stored := f.mappings(); len(stored) != 2 || stored[1] != dns {
				t.Errorf("table after AddMapping: %+v", stored)
			}
			if made.ExternalPort != 5353 {
				t.Errorf("AddMapping made %+v", made)
			}
			list, err := c.ListPortMappings(ctx, nil)
			if err != nil || len(list) != 2 {
				t.Errorf("ListPortMappings = %+v, %v", list, err)
			}
			if _, ok := f.lastCall("GetListOfPortMappings"); ok != (version == 2) {
				t.Errorf("ListPortMappings used GetListOfPortMappings: %v, on version %d", ok, version)
			}

			if version == 2 {
				// 8080/TCP is taken by this client: AddAnyPortMapping to
				// another client gets another port.
				other := web
				other.InternalClient = "127.0.0.2"
				port, err := c.AddAnyPortMapping(ctx, other)
				if err != nil || port == 8080 || port == 0 {
					t.Errorf("AddAnyPortMapping = %d, %v; want a port other than 8080", port, err)
				}
				if removed, err := c.RemoveRange(ctx, 8000, 9000, TCP); err != nil || len(removed) == 0 {
					t.Errorf("RemoveRange = %v, %v; want the mappings in 8000-9000", removed, err)
				}
				if got, _ := f.lastCall("DeletePortMappingRange"); got.start != 8000 || got.end != 9000 || got.proto != TCP || !got.manage {
					t.Errorf("Service got DeletePortMappingRange %+v", got)
				}
			} else {
				if _, err := c.AddAnyPortMapping(ctx, web); !errors.Is(err, ErrNotSupported) {
					t.Errorf("client AddAnyPortMapping on v1: %v", err)
				}
				if err := c.DeletePortMapping(ctx, "", 8080, TCP); err != nil {
					t.Errorf("DeletePortMapping: %v", err)
				}
			}
			if err := c.DeletePortMapping(ctx, "", 5353, UDP); err != nil {
				t.Errorf("DeletePortMapping: %v", err)
			}
			if err := c.DeletePortMapping(ctx, "", 5353, UDP); upnp.ErrorCode(err) != CodeNoSuchEntryInArray {
				t.Errorf("second DeletePortMapping: %v, want 714", err)
			}
			if left := f.mappings(); len(left) != 0 {
				t.Errorf("table not empty at the end: %+v", left)
			}
			if list, err := c.ListPortMappings(ctx, nil); err != nil || len(list) != 0 {
				t.Errorf("ListPortMappings of an empty table = %+v, %v", list, err)
			}
		})
	}
}

// TestRawActions calls the actions the client has no method for, as a
// plain UPnP control point would.
func TestRawActions(t *testing.T) {
	for _, version := range []int{1, 2} {
		f := newFake()
		f.counters = LinkCounters{BytesSent: 1<<32 + 5, BytesReceived: 7, PacketsSent: 11, PacketsReceived: 13}
		f.link.UpBps = 10_000_000_000 // over a ui4: saturates
		srv, s := newTestServer(t, version, f, nil)
		ipConn := "urn:schemas-upnp-org:service:WANIPConnection:" + map[int]string{1: "1", 2: "2"}[version]
		for _, tc := range []struct {
			path, serviceType, action string
			in                        []string
			want                      upnp.Args
		}{
			{WANIPConnectionControlPath, ipConn, "RequestConnection", nil, nil},
			{WANIPConnectionControlPath, ipConn, "ForceTermination", nil, nil},
			{WANIPConnectionControlPath, ipConn, "SetConnectionType", []string{"NewConnectionType", "IP_Routed"}, nil},
			{WANCommonInterfaceConfigControlPath, URNWANCommonInterfaceConfig1, "GetTotalBytesSent", nil, upnp.Args{{Name: "NewTotalBytesSent", Value: "5"}}},
			{WANCommonInterfaceConfigControlPath, URNWANCommonInterfaceConfig1, "GetTotalBytesReceived", nil, upnp.Args{{Name: "NewTotalBytesReceived", Value: "7"}}},
			{WANCommonInterfaceConfigControlPath, URNWANCommonInterfaceConfig1, "GetTotalPacketsSent", nil, upnp.Args{{Name: "NewTotalPacketsSent", Value: "11"}}},
			{WANCommonInterfaceConfigControlPath, URNWANCommonInterfaceConfig1, "GetTotalPacketsReceived", nil, upnp.Args{{Name: "NewTotalPacketsReceived", Value: "13"}}},
			{WANCommonInterfaceConfigControlPath, URNWANCommonInterfaceConfig1, "GetCommonLinkProperties", nil, upnp.Args{
				{Name: "NewWANAccessType", Value: "Cable"}, {Name: "NewLayer1UpstreamMaxBitRate", Value: "4294967295"},
				{Name: "NewLayer1DownstreamMaxBitRate", Value: "100000000"}, {Name: "NewPhysicalLinkStatus", Value: "Up"}}},
			{WANIPConnectionControlPath, controlURN, "QueryStateVariable", []string{"varName", "ConnectionStatus"}, upnp.Args{{Name: "return", Value: "Connected"}}},
			{WANIPConnectionControlPath, controlURN, "QueryStateVariable", []string{"varName", "ExternalIPAddress"}, upnp.Args{{Name: "return", Value: "203.0.113.7"}}},
			{WANIPConnectionControlPath, controlURN, "QueryStateVariable", []string{"varName", "PortMappingNumberOfEntries"}, upnp.Args{{Name: "return", Value: "0"}}},
			{WANCommonInterfaceConfigControlPath, controlURN, "QueryStateVariable", []string{"varName", "TotalPacketsSent"}, upnp.Args{{Name: "return", Value: "11"}}},
		} {
			out, err := soapCall(t, srv, tc.path, tc.serviceType, tc.action, tc.in...)
			if err != nil || !reflect.DeepEqual(out, tc.want) {
				t.Errorf("v%d %s %v: %+v, %v; want %+v", version, tc.action, tc.in, out, err, tc.want)
			}
		}
		for _, m := range []string{"RequestConnection", "ForceTermination"} {
			if got, ok := f.lastCall(m); !ok || got.client != netip.MustParseAddr("127.0.0.1") {
				t.Errorf("v%d: Service %s called: %v by %v", version, m, ok, got.client)
			}
		}
		if version == 1 {
			want := s.dev.wcdUDN + ":WANConnectionDevice:1," + ServiceIDWANIPConnection
			out, err := soapCall(t, srv, Layer3ForwardingControlPath, URNLayer3Forwarding1, "GetDefaultConnectionService")
			if err != nil || out.Value("NewDefaultConnectionService") != want {
				t.Errorf("GetDefaultConnectionService = %+v, %v; want %q", out, err, want)
			}
			if _, err := soapCall(t, srv, Layer3ForwardingControlPath, URNLayer3Forwarding1, "SetDefaultConnectionService",
				"NewDefaultConnectionService", want); err != nil {
				t.Errorf("SetDefaultConnectionService(own value): %v", err)
			}
			for value, code := range map[string]int{
				"uuid:00000000-0000-0000-0000-000000000000:WANConnectionDevice:1," + ServiceIDWANIPConnection: codeInvalidDeviceUUID,
				s.dev.wcdUDN + ":WANConnectionDevice:1,urn:upnp-org:serviceId:WANPPPConn1":                    codeInvalidServiceID,
				"garbage": CodeInvalidArgs,
			} {
				if _, err := soapCall(t, srv, Layer3ForwardingControlPath, URNLayer3Forwarding1, "SetDefaultConnectionService",
					"NewDefaultConnectionService", value); upnp.ErrorCode(err) != code {
					t.Errorf("SetDefaultConnectionService(%q): %v, want %d", value, err, code)
				}
			}
		} else if resp, err := nethttp.Get(srv.URL + Layer3ForwardingSCPDPath); err != nil || resp.StatusCode != http.StatusNotFound {
			t.Errorf("IGDv2 serves Layer3Forwarding: %v %v", resp.Status, err)
		}
	}
}

// TestLeaseHandling checks the lease the Service receives: IGDv2 turns 0
// into a week and caps longer leases at a week; IGDv1 passes 0
// (permanent) through.
func TestLeaseHandling(t *testing.T) {
	for _, tc := range []struct {
		version int
		lease   string
		want    time.Duration
	}{
		{1, "0", 0},
		{1, "3600", time.Hour},
		{1, "4294967295", 4294967295 * time.Second},
		{1, "", 0},
		{2, "0", 604800 * time.Second},
		{2, "", 604800 * time.Second},
		{2, "1", time.Second},
		{2, "604800", 604800 * time.Second},
		{2, "604801", 604800 * time.Second},
		{2, " 3600 ", time.Hour},
	} {
		f := newFake()
		srv, _ := newTestServer(t, tc.version, f, nil)
		_, err := soapCall(t, srv, WANIPConnectionControlPath, URNWANIPConnection1, "AddPortMapping",
			"NewRemoteHost", "", "NewExternalPort", "4000", "NewProtocol", "UDP", "NewInternalPort", "4000",
			"NewInternalClient", "127.0.0.1", "NewEnabled", "1", "NewPortMappingDescription", "x", "NewLeaseDuration", tc.lease)
		got, _ := f.lastCall("AddPortMapping")
		if err != nil || got.mapping.LeaseDuration != tc.want {
			t.Errorf("v%d lease %q: Service got %v (%v), want %v", tc.version, tc.lease, got.mapping.LeaseDuration, err, tc.want)
		}
	}
}

// TestLenientArguments checks what the handler accepts beyond the letter
// of the spec, because real control points send it.
func TestLenientArguments(t *testing.T) {
	f := newFake()
	srv, _ := newTestServer(t, 2, f, nil)
	// Missing NewRemoteHost, NewEnabled, NewPortMappingDescription and
	// NewLeaseDuration; lower-case protocol; "*" remote host elsewhere.
	_, err := soapCall(t, srv, WANIPConnectionControlPath, URNWANIPConnection2, "AddPortMapping",
		"NewExternalPort", "4000", "NewProtocol", "udp", "NewInternalPort", "4001", "NewInternalClient", " 127.0.0.1 ")
	want := PortMapping{ExternalPort: 4000, Protocol: UDP, InternalPort: 4001, InternalClient: "127.0.0.1", Enabled: true, LeaseDuration: maxLeaseV2}
	if got, _ := f.lastCall("AddPortMapping"); err != nil || got.mapping != want {
		t.Errorf("minimal AddPortMapping: Service got %+v (%v), want %+v", got.mapping, err, want)
	}
	// A v1 service type on a v2 service is answered in its namespace.
	if _, err := soapCall(t, srv, WANIPConnectionControlPath, URNWANIPConnection1, "GetSpecificPortMappingEntry",
		"NewRemoteHost", "*", "NewExternalPort", "4000", "NewProtocol", "UDP"); err != nil {
		t.Errorf("GetSpecificPortMappingEntry with remote host *: %v", err)
	}
	if got, _ := f.lastCall("GetSpecificPortMappingEntry"); got.remoteHost != "" {
		t.Errorf("remote host * reached the Service as %q", got.remoteHost)
	}
	// Argument names in another case.
	if _, err := soapCall(t, srv, WANIPConnectionControlPath, URNWANIPConnection2, "GetGenericPortMappingEntry",
		"newportmappingindex", "0"); err != nil {
		t.Errorf("GetGenericPortMappingEntry with a lower-case argument name: %v", err)
	}

	// What miniupnpd accepts from real clients. An empty NewProtocol is
	// TCP: js-libp2p's nat-port-mapper deletes that way.
	if _, err := soapCall(t, srv, WANIPConnectionControlPath, URNWANIPConnection2, "DeletePortMapping",
		"NewRemoteHost", "", "NewExternalPort", "4000", "NewProtocol", ""); upnp.ErrorCode(err) != CodeNoSuchEntryInArray {
		t.Errorf("DeletePortMapping TCP 4000 (empty protocol) where only UDP 4000 exists: %v, want 714", err)
	}
	if got, _ := f.lastCall("DeletePortMapping"); got.proto != TCP {
		t.Errorf("an empty protocol reached the Service as %q, want TCP", got.proto)
	}
	// No NewInternalClient, or an empty one: the requester itself.
	for _, args := range [][]string{
		{"NewExternalPort", "4002", "NewProtocol", "TCP", "NewInternalPort", "4002"},
		{"NewExternalPort", "4003", "NewProtocol", "TCP", "NewInternalPort", "4003", "NewInternalClient", ""},
	} {
		if _, err := soapCall(t, srv, WANIPConnectionControlPath, URNWANIPConnection2, "AddPortMapping", args...); err != nil {
			t.Errorf("AddPortMapping %v: %v", args, err)
		}
		if got, _ := f.lastCall("AddPortMapping"); got.mapping.InternalClient != "127.0.0.1" {
			t.Errorf("AddPortMapping %v: internal client %q, want the requester 127.0.0.1", args, got.mapping.InternalClient)
		}
	}
	// An index sent as an empty element is the first entry.
	if _, err := soapCall(t, srv, WANIPConnectionControlPath, URNWANIPConnection2, "GetGenericPortMappingEntry",
		"NewPortMappingIndex", ""); upnp.ErrorCode(err) == CodeInvalidArgs {
		t.Errorf("GetGenericPortMappingEntry with an empty index: %v", err)
	}
}

// TestOnRequest checks the metrics hook sees every answered action with
// its code.
func TestOnRequest(t *testing.T) {
	type rec struct {
		action string
		code   int
	}
	var got []rec
	f := newFake()
	srv, _ := newTestServer(t, 2, f, func(c *ServerConfig) {
		c.OnRequest = func(a string, code int) { got = append(got, rec{a, code}) }
	})
	soapCall(t, srv, WANIPConnectionControlPath, URNWANIPConnection2, "GetExternalIPAddress")
	soapCall(t, srv, WANIPConnectionControlPath, URNWANIPConnection2, "GetGenericPortMappingEntry", "NewPortMappingIndex", "0")
	soapCall(t, srv, WANIPConnectionControlPath, URNWANIPConnection2, "NoSuchAction")
	want := []rec{{"GetExternalIPAddress", 0}, {"GetGenericPortMappingEntry", 713}, {"NoSuchAction", 401}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("OnRequest saw %+v, want %+v", got, want)
	}
}

func TestExternalIPAddressForms(t *testing.T) {
	for _, tc := range []struct {
		addr netip.Addr
		want string
	}{
		{netip.MustParseAddr("198.51.100.1"), "198.51.100.1"},
		{netip.MustParseAddr("::ffff:198.51.100.1"), "198.51.100.1"},
		{netip.MustParseAddr("0.0.0.0"), ""},
		{netip.Addr{}, ""},
		{netip.MustParseAddr("2001:db8::1"), ""},
	} {
		f := newFake()
		f.ext = tc.addr
		srv, _ := newTestServer(t, 2, f, nil)
		out, err := soapCall(t, srv, WANIPConnectionControlPath, URNWANIPConnection2, "GetExternalIPAddress")
		if v, ok := out.Get("NewExternalIPAddress"); err != nil || !ok || v != tc.want {
			t.Errorf("ExternalIPAddress %v sent as %q (%v), want %q", tc.addr, v, err, tc.want)
		}
	}
}

// TestAddAnyPortMappingWildcard checks that AddAnyPortMapping with
// external port 0, "any port", reaches the Service as 0 and is answered
// with the port the Service reserved.
func TestAddAnyPortMappingWildcard(t *testing.T) {
	f := newFake()
	srv, _ := newTestServer(t, 2, f, nil)
	out, err := soapCall(t, srv, WANIPConnectionControlPath, URNWANIPConnection2, "AddAnyPortMapping", addArgs("NewExternalPort", "0")...)
	if err != nil || out.Value("NewReservedPort") != "1024" {
		t.Errorf("AddAnyPortMapping(0) = %+v, %v; want reserved port 1024", out, err)
	}
	if got, _ := f.lastCall("AddAnyPortMapping"); got.mapping.ExternalPort != 0 {
		t.Errorf("Service got external port %d, want 0", got.mapping.ExternalPort)
	}
}

// TestQueryStateVariableNamespaces checks QueryStateVariable in UDA's
// namespace and in the service's, and refuses it in another service's.
func TestQueryStateVariableNamespaces(t *testing.T) {
	srv, _ := newTestServer(t, 2, newFake(), nil)
	for st, code := range map[string]int{
		controlURN:                   0,
		URNWANIPConnection2:          0,
		URNWANCommonInterfaceConfig1: CodeInvalidAction,
	} {
		out, err := soapCall(t, srv, WANIPConnectionControlPath, st, "QueryStateVariable", "varName", "ConnectionType")
		if upnp.ErrorCode(err) != code || (code == 0 && out.Value("return") != "IP_Routed") {
			t.Errorf("QueryStateVariable in %s: %+v, %v; want code %d", st, out, err, code)
		}
	}
}

// TestOnFault: every fault reaches the hook with who asked, the code and
// why, for the daemon's log and audit trail.
func TestOnFault(t *testing.T) {
	var got []Fault
	f := newFake()
	srv, _ := newTestServer(t, 2, f, func(c *ServerConfig) {
		c.OnFault = func(x Fault) { got = append(got, x) }
	})
	soapCall(t, srv, WANIPConnectionControlPath, URNWANIPConnection2, "GetExternalIPAddress")
	soapCall(t, srv, WANIPConnectionControlPath, URNWANIPConnection2, "AddPortMapping", "NewExternalPort", "99999")
	if len(got) != 1 || got[0].Action != "AddPortMapping" || got[0].Code != CodeInvalidArgs ||
		got[0].Client != netip.MustParseAddr("127.0.0.1") || got[0].Reason == nil || len(got[0].Args) != 1 {
		t.Errorf("OnFault saw %+v", got)
	}
}
