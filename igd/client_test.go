package igd_test

import (
	"context"
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/portfwd/portfwd/igd"
	"github.com/portfwd/portfwd/igd/igdtest"
	"github.com/portfwd/portfwd/upnp"
)

// reply builds a SOAP response body for Options.Bodies.
func reply(action string, args ...string) []byte {
	var a upnp.Args
	for i := 0; i+1 < len(args); i += 2 {
		a = append(a, upnp.Arg{Name: args[i], Value: args[i+1]})
	}
	return upnp.AppendEnvelope(nil, igd.URNWANIPConnection1, action+"Response", a)
}

func args(kv ...string) upnp.Args {
	var a upnp.Args
	for i := 0; i+1 < len(kv); i += 2 {
		a = append(a, upnp.Arg{Name: kv[i], Value: kv[i+1]})
	}
	return a
}

// TestClientWire checks the action, SOAPAction and the argument names,
// order and values of every request against the service description.
func TestClientWire(t *testing.T) {
	ctx := context.Background()
	srv := igdtest.NewServer(t, igdtest.Options{Version: 2, Mappings: []igd.PortMapping{
		{ExternalPort: 2000, Protocol: "UDP", InternalPort: 2000, InternalClient: "192.168.1.9", Enabled: true},
	}})
	c := srv.Client()
	m := igd.PortMapping{RemoteHost: "", ExternalPort: 8080, Protocol: "tcp", InternalPort: 80, InternalClient: "192.168.1.7",
		Enabled: true, Description: "web & co", LeaseDuration: 90 * time.Minute}
	mappingArgs := args("NewRemoteHost", "", "NewExternalPort", "8080", "NewProtocol", "TCP", "NewInternalPort", "80",
		"NewInternalClient", "192.168.1.7", "NewEnabled", "1", "NewPortMappingDescription", "web & co", "NewLeaseDuration", "5400")
	tests := []struct {
		action string
		call   func() error
		want   upnp.Args
	}{
		{"GetExternalIPAddress", func() error { _, err := c.GetExternalIPAddress(ctx); return err }, nil},
		{"GetStatusInfo", func() error { _, err := c.GetStatusInfo(ctx); return err }, nil},
		{"GetConnectionTypeInfo", func() error { _, _, err := c.GetConnectionTypeInfo(ctx); return err }, nil},
		{"GetNATRSIPStatus", func() error { _, _, err := c.GetNATRSIPStatus(ctx); return err }, nil},
		{"AddPortMapping", func() error { return c.AddPortMapping(ctx, m) }, mappingArgs},
		{"AddAnyPortMapping", func() error { m2 := m; m2.ExternalPort = 8081; _, err := c.AddAnyPortMapping(ctx, m2); return err },
			args("NewRemoteHost", "", "NewExternalPort", "8081", "NewProtocol", "TCP", "NewInternalPort", "80",
				"NewInternalClient", "192.168.1.7", "NewEnabled", "1", "NewPortMappingDescription", "web & co", "NewLeaseDuration", "5400")},
		{"GetGenericPortMappingEntry", func() error { _, err := c.GetGenericPortMappingEntry(ctx, 0); return err },
			args("NewPortMappingIndex", "0")},
		{"GetSpecificPortMappingEntry", func() error { _, err := c.GetSpecificPortMappingEntry(ctx, "", 8080, "tcp"); return err },
			args("NewRemoteHost", "", "NewExternalPort", "8080", "NewProtocol", "TCP")},
		{"GetListOfPortMappings", func() error { _, err := c.GetListOfPortMappings(ctx, 1, 65535, "udp", true, 50); return err },
			args("NewStartPort", "1", "NewEndPort", "65535", "NewProtocol", "UDP", "NewManage", "1", "NewNumberOfPorts", "50")},
		{"DeletePortMapping", func() error { return c.DeletePortMapping(ctx, "", 8080, "TCP") },
			args("NewRemoteHost", "", "NewExternalPort", "8080", "NewProtocol", "TCP")},
		{"DeletePortMappingRange", func() error { return c.DeletePortMappingRange(ctx, 2000, 2001, "UDP", false) },
			args("NewStartPort", "2000", "NewEndPort", "2001", "NewProtocol", "UDP", "NewManage", "0")},
	}
	for i, tt := range tests {
		if err := tt.call(); err != nil {
			t.Fatalf("%s: %v", tt.action, err)
		}
		reqs := srv.Requests()
		if len(reqs) != i+1 {
			t.Fatalf("%s: %d requests so far, want %d", tt.action, len(reqs), i+1)
		}
		r := reqs[i]
		if r.Action != tt.action || r.SOAPAction != srv.ServiceType+"#"+tt.action || r.Path != "/ctl/Conn" {
			t.Errorf("%s: sent %s with SOAPAction %q to %s", tt.action, r.Action, r.SOAPAction, r.Path)
		}
		if !reflect.DeepEqual(r.Args, tt.want) {
			t.Errorf("%s: args\n got  %v\n want %v", tt.action, r.Args, tt.want)
		}
	}
	if _, err := c.GetCommonLinkProperties(ctx, ""); err != nil {
		t.Fatal(err)
	}
	last := srv.Requests()[len(tests)]
	if last.Path != "/ctl/CmnIfCfg" || last.SOAPAction != igd.URNWANCommonInterfaceConfig1+"#GetCommonLinkProperties" || len(last.Args) != 0 {
		t.Errorf("GetCommonLinkProperties sent %+v", last)
	}
}

func TestClientDecodesFakeAnswers(t *testing.T) {
	ctx := context.Background()
	srv := igdtest.NewServer(t, igdtest.Options{Version: 2, ExternalIP: "198.51.100.4", Mappings: []igd.PortMapping{
		{RemoteHost: "203.0.113.9", ExternalPort: 2000, Protocol: "UDP", InternalPort: 2001, InternalClient: "192.168.1.9", Description: "game", LeaseDuration: time.Hour},
	}})
	c := srv.Client()

	ip, err := c.GetExternalIPAddress(ctx)
	if err != nil || ip != netip.MustParseAddr("198.51.100.4") {
		t.Errorf("GetExternalIPAddress = %v, %v", ip, err)
	}
	st, err := c.GetStatusInfo(ctx)
	if err != nil || st != (igd.StatusInfo{ConnectionStatus: "Connected", LastConnectionError: "ERROR_NONE", Uptime: time.Hour}) {
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
	if err != nil || lp != (igd.LinkProperties{AccessType: "Ethernet", UpBps: 100e6, DownBps: 1e9, Status: "Up"}) {
		t.Errorf("GetCommonLinkProperties = %+v, %v", lp, err)
	}
	want := srv.Mappings()[0]
	if got, err := c.GetGenericPortMappingEntry(ctx, 0); err != nil || got != want {
		t.Errorf("GetGenericPortMappingEntry(0) = %+v, %v; want %+v", got, err, want)
	}
	if _, err := c.GetGenericPortMappingEntry(ctx, 1); upnp.ErrorCode(err) != igd.CodeSpecifiedArrayIndexInvalid {
		t.Errorf("GetGenericPortMappingEntry(1) error = %v, want 713", err)
	}
	if _, err := c.GetGenericPortMappingEntry(ctx, -1); err == nil {
		t.Error("GetGenericPortMappingEntry(-1) succeeded")
	}
	if got, err := c.GetSpecificPortMappingEntry(ctx, "203.0.113.9", 2000, "udp"); err != nil || got != want {
		t.Errorf("GetSpecificPortMappingEntry = %+v, %v; want %+v", got, err, want)
	}
	if _, err := c.GetSpecificPortMappingEntry(ctx, "", 2001, "UDP"); upnp.ErrorCode(err) != igd.CodeNoSuchEntryInArray {
		t.Errorf("GetSpecificPortMappingEntry of a missing key: %v, want 714", err)
	}
	list, err := c.GetListOfPortMappings(ctx, 0, 65535, "UDP", true, 0)
	if err != nil || !reflect.DeepEqual(list, []igd.PortMapping{want}) {
		t.Errorf("GetListOfPortMappings = %+v, %v", list, err)
	}
	// 730 (no mapping in range) is an empty list, not an error.
	list, err = c.GetListOfPortMappings(ctx, 0, 65535, "TCP", true, 0)
	if err != nil || list != nil {
		t.Errorf("GetListOfPortMappings of an empty range = %+v, %v; want nil, nil", list, err)
	}
	if _, err := c.GetListOfPortMappings(ctx, 5, 4, "TCP", true, 0); upnp.ErrorCode(err) != igd.CodeInconsistentParameters {
		t.Errorf("reversed range: %v, want 733", err)
	}
	port, err := c.AddAnyPortMapping(ctx, igd.PortMapping{ExternalPort: 2000, Protocol: "UDP", InternalPort: 1, InternalClient: "192.168.1.2"})
	if err != nil || port != 2001 {
		t.Errorf("AddAnyPortMapping on a taken port = %d, %v; want 2001", port, err)
	}
}

func TestGetExternalIPAddressAnswers(t *testing.T) {
	tests := []struct {
		value   string
		want    netip.Addr
		wantErr string
	}{
		{"203.0.113.5", netip.MustParseAddr("203.0.113.5"), ""},
		{" \n 203.0.113.5 \t", netip.MustParseAddr("203.0.113.5"), ""},
		{"0.0.0.0", netip.MustParseAddr("0.0.0.0"), ""}, // WAN down: returned for the caller to warn about
		{"::ffff:203.0.113.5", netip.MustParseAddr("203.0.113.5"), ""},
		{"", netip.Addr{}, "returned no address"},
		{"   ", netip.Addr{}, "returned no address"},
		{"(null)", netip.Addr{}, `"(null)", which is not an IP address`},
		{"203.0.113.256", netip.Addr{}, "not an IP address"},
	}
	for _, tt := range tests {
		srv := igdtest.NewServer(t, igdtest.Options{Version: 1, Bodies: map[string][]byte{
			"GetExternalIPAddress": reply("GetExternalIPAddress", "NewExternalIPAddress", tt.value),
		}})
		got, err := srv.Client().GetExternalIPAddress(context.Background())
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%q: error %v, want %q", tt.value, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("%q: got %v, %v; want %v", tt.value, got, err, tt.want)
		}
	}
	// An answer without the argument at all.
	srv := igdtest.NewServer(t, igdtest.Options{Version: 1, Bodies: map[string][]byte{"GetExternalIPAddress": reply("GetExternalIPAddress")}})
	if _, err := srv.Client().GetExternalIPAddress(context.Background()); err == nil {
		t.Error("empty answer accepted")
	}
}

// TestLenientEntryDecoding feeds GetGenericPortMappingEntry answers in the
// forms routers actually use.
func TestLenientEntryDecoding(t *testing.T) {
	full := func(enabled, lease string) []byte {
		return reply("GetGenericPortMappingEntry", "NewRemoteHost", "", "NewExternalPort", " 8080 ", "NewProtocol", "tcp",
			"NewInternalPort", "80\n", "NewInternalClient", " 192.168.1.7 ", "NewEnabled", enabled,
			"NewPortMappingDescription", "  web ", "NewLeaseDuration", lease)
	}
	base := igd.PortMapping{ExternalPort: 8080, Protocol: "TCP", InternalPort: 80, InternalClient: "192.168.1.7", Description: "web"}
	with := func(enabled bool, lease time.Duration) igd.PortMapping {
		m := base
		m.Enabled, m.LeaseDuration = enabled, lease
		return m
	}
	tests := []struct {
		name    string
		body    []byte
		want    igd.PortMapping
		wantErr string
	}{
		{"1 and 0", full("1", "0"), with(true, 0), ""},
		{"true", full("true", "3600"), with(true, time.Hour), ""},
		{"TRUE spaced", full(" TRUE ", ""), with(true, 0), ""},
		{"yes", full("yes", "1"), with(true, time.Second), ""},
		{"false", full("false", "0"), with(false, 0), ""},
		{"no", full("No", "0"), with(false, 0), ""},
		{"0", full("0", "0"), with(false, 0), ""},
		{"missing optional fields",
			reply("GetGenericPortMappingEntry", "NewExternalPort", "9", "NewProtocol", "UDP"),
			igd.PortMapping{ExternalPort: 9, Protocol: "UDP", Enabled: true}, ""},
		{"names in other case",
			reply("GetGenericPortMappingEntry", "newexternalport", "9", "NEWPROTOCOL", "udp", "NewInternalClient", "10.0.0.2"),
			igd.PortMapping{ExternalPort: 9, Protocol: "UDP", InternalClient: "10.0.0.2", Enabled: true}, ""},
		{"bad boolean", full("enabled", "0"), igd.PortMapping{}, `NewEnabled: "enabled" is not a boolean`},
		{"bad lease", full("1", "-5"), igd.PortMapping{}, "NewLeaseDuration"},
		{"no external port", reply("GetGenericPortMappingEntry", "NewProtocol", "UDP"), igd.PortMapping{}, "NewExternalPort: missing"},
		{"port out of range", reply("GetGenericPortMappingEntry", "NewExternalPort", "65536"), igd.PortMapping{}, "not a port number"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := igdtest.NewServer(t, igdtest.Options{Version: 1, Bodies: map[string][]byte{"GetGenericPortMappingEntry": tt.body}})
			got, err := srv.Client().GetGenericPortMappingEntry(context.Background(), 0)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("got %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}

func TestGetNATRSIPStatusVariants(t *testing.T) {
	tests := []struct {
		name      string
		body      []byte
		rsip, nat bool
		wantErr   bool
	}{
		{"spec", reply("GetNATRSIPStatus", "NewRSIPAvailable", "0", "NewNATEnabled", "1"), false, true, false},
		{"words", reply("GetNATRSIPStatus", "NewRSIPAvailable", "true", "NewNATEnabled", "false"), true, false, false},
		{"misspelt NewNATEEnabled", reply("GetNATRSIPStatus", "NewRSIPAvailable", "0", "NewNATEEnabled", "1"), false, true, false},
		{"no RSIP", reply("GetNATRSIPStatus", "NewNATEnabled", "1"), false, true, false},
		{"no NAT field", reply("GetNATRSIPStatus", "NewRSIPAvailable", "0"), false, false, true},
		{"garbage", reply("GetNATRSIPStatus", "NewNATEnabled", "2"), false, false, true},
	}
	for _, tt := range tests {
		srv := igdtest.NewServer(t, igdtest.Options{Version: 1, Bodies: map[string][]byte{"GetNATRSIPStatus": tt.body}})
		rsip, nat, err := srv.Client().GetNATRSIPStatus(context.Background())
		if (err != nil) != tt.wantErr || rsip != tt.rsip || nat != tt.nat {
			t.Errorf("%s: got %v, %v, %v; want %v, %v, error %v", tt.name, rsip, nat, err, tt.rsip, tt.nat, tt.wantErr)
		}
	}
}

func TestStatusInfoLenient(t *testing.T) {
	srv := igdtest.NewServer(t, igdtest.Options{Version: 1, Bodies: map[string][]byte{
		"GetStatusInfo": reply("GetStatusInfo", "NewConnectionStatus", " Connected\n", "NewUptime", "1 day"),
	}})
	st, err := srv.Client().GetStatusInfo(context.Background())
	if err != nil || st != (igd.StatusInfo{ConnectionStatus: "Connected"}) {
		t.Errorf("got %+v, %v; want Connected with unknown uptime", st, err)
	}
}

// TestV2ActionsOnV1 checks that the IGDv2 actions are refused locally on a
// version 1 service, with nothing sent.
func TestV2ActionsOnV1(t *testing.T) {
	ctx := context.Background()
	srv := igdtest.NewServer(t, igdtest.Options{Version: 1})
	c := srv.Client()
	if c.Version != 1 {
		t.Fatalf("client version %d, want 1", c.Version)
	}
	m := igd.PortMapping{ExternalPort: 1, Protocol: "TCP", InternalPort: 1, InternalClient: "192.168.1.2"}
	_, err1 := c.AddAnyPortMapping(ctx, m)
	err2 := c.DeletePortMappingRange(ctx, 1, 2, "TCP", true)
	_, err3 := c.GetListOfPortMappings(ctx, 1, 2, "TCP", true, 0)
	for i, err := range []error{err1, err2, err3} {
		if !errors.Is(err, igd.ErrNotSupported) {
			t.Errorf("call %d: %v, want ErrNotSupported", i, err)
		}
	}
	if n := len(srv.Requests()); n != 0 {
		t.Errorf("%d requests sent, want none", n)
	}
}

func TestAddPortMappingValidation(t *testing.T) {
	srv := igdtest.NewServer(t, igdtest.Options{})
	c := srv.Client()
	ok := igd.PortMapping{ExternalPort: 1, Protocol: "TCP", InternalPort: 1, InternalClient: "192.168.1.2"}
	bad := map[string]func(*igd.PortMapping){
		"protocol":       func(m *igd.PortMapping) { m.Protocol = "SCTP" },
		"no protocol":    func(m *igd.PortMapping) { m.Protocol = "" },
		"no client":      func(m *igd.PortMapping) { m.InternalClient = "" },
		"negative lease": func(m *igd.PortMapping) { m.LeaseDuration = -time.Second },
	}
	for name, mutate := range bad {
		m := ok
		mutate(&m)
		if err := c.AddPortMapping(context.Background(), m); err == nil {
			t.Errorf("%s: accepted %+v", name, m)
		}
	}
	if n := len(srv.Requests()); n != 0 {
		t.Errorf("%d requests sent for invalid mappings, want none", n)
	}
}

func TestGetCommonLinkPropertiesURL(t *testing.T) {
	ctx := context.Background()
	srv := igdtest.NewServer(t, igdtest.Options{})
	c := &igd.Client{ControlURL: srv.ControlURL, ServiceType: srv.ServiceType, Version: 2}
	if _, err := c.GetCommonLinkProperties(ctx, ""); !errors.Is(err, igd.ErrNotSupported) {
		t.Errorf("without a common config: %v, want ErrNotSupported", err)
	}
	// An explicit URL works without CommonServiceType, which defaults to
	// the standard URN.
	lp, err := c.GetCommonLinkProperties(ctx, srv.CommonControlURL)
	if err != nil || lp.Status != "Up" {
		t.Errorf("explicit URL: %+v, %v", lp, err)
	}
	if r := srv.Requests()[0]; r.SOAPAction != igd.URNWANCommonInterfaceConfig1+"#GetCommonLinkProperties" {
		t.Errorf("SOAPAction %q", r.SOAPAction)
	}
}

func TestNewClient(t *testing.T) {
	ref := igd.ServiceRef{ControlURL: "http://192.0.2.1/c", ServiceType: igd.URNDSLForumWANPPPConnection1, Version: 1, Kind: igd.KindPPP,
		CommonControlURL: "http://192.0.2.1/cic", CommonServiceType: igd.URNDSLForumWANCommonInterfaceConfig1}
	soap := &upnp.Client{}
	c := igd.NewClient(ref, soap)
	want := igd.Client{SOAP: soap, ControlURL: ref.ControlURL, ServiceType: ref.ServiceType, Version: 1,
		CommonControlURL: ref.CommonControlURL, CommonServiceType: ref.CommonServiceType}
	if !reflect.DeepEqual(*c, want) {
		t.Errorf("NewClient = %+v, want %+v", *c, want)
	}
}
