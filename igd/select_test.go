package igd_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/portfwd/portfwd/igd"
	"github.com/portfwd/portfwd/internal/testenv"
	"github.com/portfwd/portfwd/upnp"
)

// routersDir holds the real-router corpus, a sibling of the repository (see
// internal/testenv).
var routersDir = filepath.Join(testenv.SharedDir(), "routers")

// testLocation is where every corpus description is pretended to come from.
const testLocation = "http://192.168.1.1:5000/rootDesc.xml"

// wantRef is the part of a ServiceRef a golden test checks.
type wantRef struct {
	serviceType string
	version     int
	kind        igd.Kind
	control     string
	common      string
	commonType  string
	deviceUDN   string
}

// selectionGolden is the ranked list of connection services of every router
// in the corpus, read by hand from its rootDesc.xml, resolved against
// testLocation (or the description's URLBase where usable).
var selectionGolden = map[string][]wantRef{
	"actiontec-gt784wn": {{
		// URLBase with a trailing slash; colons in the path are not a scheme.
		"urn:schemas-upnp-org:service:WANPPPConnection:1", 1, igd.KindPPP,
		"http://192.168.0.1:5431/uuid:70f196f9-33f5-f533-f996-f170f1f9f50002/WANPPPConnection:1",
		"http://192.168.0.1:5431/uuid:70f196f9-33f5-f533-f996-f170f1f9f50001/WANCommonInterfaceConfig:1",
		igd.URNWANCommonInterfaceConfig1, "uuid:70f196f9-33f5-f533-f996-f170f1f9f50002",
	}},
	"asus-rt-n16-ddwrt": {{
		igd.URNWANIPConnection1, 1, igd.KindIP,
		"http://192.168.1.1:5000/control?WANIPConnection",
		"http://192.168.1.1:5000/control?WANCommonInterfaceConfig",
		igd.URNWANCommonInterfaceConfig1, "uuid:CB2471CC-CF2E-9795-8D9C-E87B34C16800",
	}},
	"avm-fritzbox-7430": {{
		igd.URNWANIPConnection1, 1, igd.KindIP,
		"http://192.168.1.1:5000/igdupnp/control/WANIPConn1",
		"http://192.168.1.1:5000/igdupnp/control/WANCommonIFC1",
		igd.URNWANCommonInterfaceConfig1, "uuid:00000000-0000-0000-0000-000000000000",
	}},
	"avm-fritzbox-fon-wlan-7170": {{
		igd.URNWANIPConnection1, 1, igd.KindIP,
		"http://192.168.1.1:5000/upnp/control/WANIPConn1",
		"http://192.168.1.1:5000/upnp/control/WANCommonIFC1",
		igd.URNWANCommonInterfaceConfig1, "uuid:75802409-bccb-40e7-8e6a-001A4F30547A",
	}},
	"ddwrt-generic-x86": {
		// Both services in one WANConnectionDevice: IP first, PPP kept after it.
		{
			igd.URNWANIPConnection1, 1, igd.KindIP,
			"http://192.168.1.1:5000/uuid:dead-beef-deadbeef0000/WANIPConnection:1",
			"http://192.168.1.1:5000/uuid:000c-29ea-247501c00098/WANCommonInterfaceConfig:1",
			igd.URNWANCommonInterfaceConfig1, "uuid:dead-beef-deadbeef0000",
		},
		{
			igd.URNWANPPPConnection1, 1, igd.KindPPP,
			"http://192.168.1.1:5000/uuid:dead-beef-deadbeef0000/WANPPPConnection:1",
			"http://192.168.1.1:5000/uuid:000c-29ea-247501c00098/WANCommonInterfaceConfig:1",
			igd.URNWANCommonInterfaceConfig1, "uuid:dead-beef-deadbeef0000",
		},
	},
	"dlink-dir-655": {{
		// controlURL "http://%s:%d/wipconn": the path is recovered and
		// resolved against the location (URLBase is loopback, so unused).
		igd.URNWANIPConnection1, 1, igd.KindIP,
		"http://192.168.1.1:5000/wipconn",
		"http://192.168.0.1:4444/wcommifc",
		igd.URNWANCommonInterfaceConfig1, "uuid:8843AAB0-7191-39C5-A763-9592A8C5AB32",
	}},
	"dlink-router-libtorrent": {{
		// URLBase "http://%s:%d" is a template: the location is used.
		igd.URNWANIPConnection1, 1, igd.KindIP,
		"http://192.168.1.1:5000/WANIPConnection",
		"http://192.168.1.1:5000/WANCommonInterfaceConfig",
		igd.URNWANCommonInterfaceConfig1, "uuid:upnp-WANConnectionDevice-1_0-12345678900001",
	}},
	"google-onhub": {{
		igd.URNWANIPConnection2, 2, igd.KindIP,
		"http://192.168.1.1:5000/ctl/IPConn",
		"http://192.168.1.1:5000/ctl/CmnIfCfg",
		igd.URNWANCommonInterfaceConfig1, "uuid:a9708184-a6c0-413a-bbac-11bcf7e30ec0",
	}},
	"huawei-hg531-v1": {{
		// Legacy DSL Forum URNs, kept verbatim for SOAPAction.
		igd.URNDSLForumWANPPPConnection1, 1, igd.KindPPP,
		"http://192.168.1.1:5000/ctrlt/WANPPPConnection_1",
		"http://192.168.1.1:5000/ctrlt/WANCommonInterfaceConfig_1",
		igd.URNDSLForumWANCommonInterfaceConfig1, "uuid:00e0fc37-2626-2828-2603-587f668bdd9a",
	}},
	"linksys-wag200g": {{
		igd.URNWANPPPConnection1, 1, igd.KindPPP,
		"http://192.168.1.1:49152/upnp/control/WANPPPConn1",
		"http://192.168.1.1:49152/upnp/control/WANCommonIFC1",
		igd.URNWANCommonInterfaceConfig1, "uuid:8ca2eb37-1dd2-11b2-86f0-001a709b5aa8",
	}},
	"mikrotik-chr-7.10": {
		// Two WANDevices, each with its own common config.
		{
			igd.URNWANIPConnection1, 1, igd.KindIP,
			"http://192.168.1.1:5000/upnp/control/yomkmsnooi/wanipconn-1",
			"http://192.168.1.1:5000/upnp/control/ivvmxhunyq/wancommonifc-1",
			igd.URNWANCommonInterfaceConfig1, "uuid:UUID-MIKROTIK-WAN-CONNECTION-DEVICE--1",
		},
		{
			igd.URNWANIPConnection1, 1, igd.KindIP,
			"http://192.168.1.1:5000/upnp/control/xstnsgeuyh/wanipconn-7",
			"http://192.168.1.1:5000/upnp/control/vzcyyzzttz/wancommonifc-7",
			igd.URNWANCommonInterfaceConfig1, "uuid:UUID-MIKROTIK-WAN-CONNECTION-DEVICE--7",
		},
	},
	"orange-livebox-new": {{
		"urn:schemas-upnp-org:service:WANPPPConnection:2", 2, igd.KindPPP,
		"http://192.168.1.1:5000/87895a19/upnp/control/WANIPConn1",
		"http://192.168.1.1:5000/87895a19/upnp/control/WANCommonIFC1",
		igd.URNWANCommonInterfaceConfig1, "uuid:44598a08-288e-32c9-8a4d-d3c008ede331",
	}},
	"pannaway-rg-210": nil, // a WANDevice with no connection device at all
	"pfsense-2.5.0": {{
		igd.URNWANIPConnection1, 1, igd.KindIP,
		"http://192.168.1.1:5000/ctl/IPConn",
		"http://192.168.1.1:5000/ctl/CmnIfCfg",
		igd.URNWANCommonInterfaceConfig1, "uuid:bee7052b-49e8-3597-b545-55a1e38ac13",
	}},
	"technicolor-tg784n-v3": {{
		igd.URNWANPPPConnection1, 1, igd.KindPPP,
		"http://192.168.1.254:8000/hou74cq4tw9/IGD/upnp/control/igd/wanpppc_1_1_1",
		"http://192.168.1.254:8000/hou74cq4tw9/IGD/upnp/control/igd/wancic_1",
		igd.URNWANCommonInterfaceConfig1, "uuid:UPnP_Technicolor TG784n v3-1_A4-B1-E9-D8-F4-78_WCD_1_1",
	}},
	"tplink-tl-wr841nd-v9-ddwrt": {{
		igd.URNWANIPConnection1, 1, igd.KindIP,
		"http://192.168.1.1:5000/control?WANIPConnection",
		"http://192.168.1.1:5000/control?WANCommonInterfaceConfig",
		igd.URNWANCommonInterfaceConfig1, "uuid:638DDBC2-4A53-214A-20AC-93B525FF31FA",
	}},
	"unknown-portable-sdk-router": {{
		igd.URNWANIPConnection1, 1, igd.KindIP,
		"http://192.168.1.1:5000/upnp/control/WANIPConn1",
		"http://192.168.1.1:5000/upnp/control/WANCommonIFC1",
		igd.URNWANCommonInterfaceConfig1, "uuid:00000000-0000-0000-0000-000000000000",
	}},
}

func checkRefs(t *testing.T, got []igd.ServiceRef, want []wantRef) {
	t.Helper()
	if len(got) != len(want) {
		for _, g := range got {
			t.Logf("got %s v%d at %s", g.ServiceType, g.Version, g.ControlURL)
		}
		t.Fatalf("got %d services, want %d", len(got), len(want))
	}
	for i, w := range want {
		g := got[i]
		if g.ServiceType != w.serviceType || g.Version != w.version || g.Kind != w.kind {
			t.Errorf("[%d] type %q v%d %v, want %q v%d %v", i, g.ServiceType, g.Version, g.Kind, w.serviceType, w.version, w.kind)
		}
		if g.ControlURL != w.control {
			t.Errorf("[%d] control URL %q, want %q", i, g.ControlURL, w.control)
		}
		if g.CommonControlURL != w.common || g.CommonServiceType != w.commonType {
			t.Errorf("[%d] common config %q (%q), want %q (%q)", i, g.CommonControlURL, g.CommonServiceType, w.common, w.commonType)
		}
		if g.Device == nil || g.Device.UDN != w.deviceUDN {
			t.Errorf("[%d] device %+v, want UDN %q", i, g.Device, w.deviceUDN)
		}
		if g.Root == nil || g.Service.ServiceType != g.ServiceType {
			t.Errorf("[%d] Root or Service not filled in: %+v", i, g)
		}
	}
}

func TestConnectionServicesCorpus(t *testing.T) {
	entries, err := os.ReadDir(testenv.Shared(t, "routers"))
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	for _, e := range entries {
		if !e.IsDir() || strings.HasPrefix(e.Name(), "_") {
			continue
		}
		name := e.Name()
		seen++
		t.Run(name, func(t *testing.T) {
			want, ok := selectionGolden[name]
			if !ok {
				t.Fatalf("router %s has no expected selection: read its rootDesc.xml and add it to selectionGolden", name)
			}
			data, err := os.ReadFile(filepath.Join(routersDir, name, "rootDesc.xml"))
			if err != nil {
				t.Fatal(err)
			}
			root, err := upnp.ParseDescription(data, testLocation)
			if err != nil {
				t.Fatal(err)
			}
			checkRefs(t, igd.ConnectionServices(root), want)
		})
	}
	if seen != len(selectionGolden) {
		t.Errorf("corpus has %d routers, golden table %d: keep them in step", seen, len(selectionGolden))
	}
}

func TestConnectionServicesNatlab(t *testing.T) {
	data, err := os.ReadFile("testdata/natlab/rootDesc.xml")
	if err != nil {
		t.Fatal(err)
	}
	root, err := upnp.ParseDescription(data, "http://10.77.0.1:5000/rootDesc.xml")
	if err != nil {
		t.Fatal(err)
	}
	checkRefs(t, igd.ConnectionServices(root), []wantRef{{
		igd.URNWANIPConnection2, 2, igd.KindIP,
		"http://10.77.0.1:5000/ctl/IPConn", "http://10.77.0.1:5000/ctl/CmnIfCfg",
		igd.URNWANCommonInterfaceConfig1, "uuid:85cf6c3a-62cc-4535-b4ce-0b3ca5a24e2d",
	}})
}

// TestConnectionServicesSynthetic covers layouts the corpus lacks.
func TestConnectionServicesSynthetic(t *testing.T) {
	svc := func(typ, control string) string {
		return "<service><serviceType>" + typ + "</serviceType><serviceId>x</serviceId><SCPDURL>/x.xml</SCPDURL><controlURL>" +
			control + "</controlURL><eventSubURL>/e</eventSubURL></service>"
	}
	dev := func(typ, udn, services, devices string) string {
		return "<device><deviceType>" + typ + "</deviceType><UDN>" + udn + "</UDN><serviceList>" + services +
			"</serviceList><deviceList>" + devices + "</deviceList></device>"
	}
	doc := func(device string) string {
		return `<?xml version="1.0"?><root xmlns="urn:schemas-upnp-org:device-1-0"><specVersion><major>1</major><minor>0</minor></specVersion>` +
			device + "</root>"
	}
	const base = "http://192.168.1.1:5000"
	tests := []struct {
		name string
		xml  string
		want []wantRef
	}{
		{
			name: "IGD:1 root describing WANIPConnection:2, ranked above a v1 and PPP listed earlier",
			xml: doc(dev(igd.URNInternetGatewayDevice1, "uuid:root", "",
				dev(igd.URNWANDevice1, "uuid:wan", svc(igd.URNWANCommonInterfaceConfig1, "/cic"),
					dev(igd.URNWANConnectionDevice1, "uuid:ppp", svc(igd.URNWANPPPConnection1, "/ppp"), "")+
						dev(igd.URNWANConnectionDevice1, "uuid:ip1", svc(igd.URNWANIPConnection1, "/ip1"), "")+
						dev(igd.URNWANConnectionDevice1, "uuid:ip2", svc(igd.URNWANIPConnection2, "/ip2"), "")))),
			want: []wantRef{
				{igd.URNWANIPConnection2, 2, igd.KindIP, base + "/ip2", base + "/cic", igd.URNWANCommonInterfaceConfig1, "uuid:ip2"},
				{igd.URNWANIPConnection1, 1, igd.KindIP, base + "/ip1", base + "/cic", igd.URNWANCommonInterfaceConfig1, "uuid:ip1"},
				{igd.URNWANPPPConnection1, 1, igd.KindPPP, base + "/ppp", base + "/cic", igd.URNWANCommonInterfaceConfig1, "uuid:ppp"},
			},
		},
		{
			name: "PPP:2 after IP:1 but before PPP:1",
			xml: doc(dev(igd.URNInternetGatewayDevice2, "uuid:root", "",
				dev(igd.URNWANDevice2, "uuid:wan", "",
					dev(igd.URNWANConnectionDevice2, "uuid:c", svc(igd.URNWANPPPConnection1, "/ppp1")+
						svc("urn:schemas-upnp-org:service:WANPPPConnection:2", "/ppp2")+
						svc(igd.URNWANIPConnection1, "/ip1"), "")))),
			want: []wantRef{
				{igd.URNWANIPConnection1, 1, igd.KindIP, base + "/ip1", "", "", "uuid:c"},
				{"urn:schemas-upnp-org:service:WANPPPConnection:2", 2, igd.KindPPP, base + "/ppp2", "", "", "uuid:c"},
				{igd.URNWANPPPConnection1, 1, igd.KindPPP, base + "/ppp1", "", "", "uuid:c"},
			},
		},
		{
			name: "service on the root device, common config the only one in the tree",
			xml: doc(dev(igd.URNInternetGatewayDevice1, "uuid:root", svc(igd.URNWANIPConnection1, "/ip"),
				dev("urn:example:device:Other:1", "uuid:other", svc(igd.URNWANCommonInterfaceConfig1, "/cic"), ""))),
			want: []wantRef{
				{igd.URNWANIPConnection1, 1, igd.KindIP, base + "/ip", base + "/cic", igd.URNWANCommonInterfaceConfig1, "uuid:root"},
			},
		},
		{
			name: "duplicate entry listed once; foreign domains, non-service URNs and bad versions ignored",
			xml: doc(dev(igd.URNInternetGatewayDevice1, "uuid:root",
				svc(igd.URNWANIPConnection1, "/ip")+svc(igd.URNWANIPConnection1, "/ip")+
					svc("urn:example-com:service:WANIPConnection:1", "/foreign")+
					svc("urn:schemas-upnp-org:device:WANIPConnection:1", "/notservice")+
					svc("urn:schemas-upnp-org:service:WANIPConnection:x", "/badversion")+
					svc("urn:schemas-upnp-org:service:WANIPConnection:0", "/zero")+
					svc(igd.URNWANPPPConnection1, "")+ // no control URL: unusable
					svc(" URN:Schemas-UPnP-Org:service:wanipconnection:1 ", "/sloppy"), "")),
			want: []wantRef{
				{igd.URNWANIPConnection1, 1, igd.KindIP, base + "/ip", "", "", "uuid:root"},
				{"URN:Schemas-UPnP-Org:service:wanipconnection:1", 1, igd.KindIP, base + "/sloppy", "", "", "uuid:root"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root, err := upnp.ParseDescription([]byte(tt.xml), testLocation)
			if err != nil {
				t.Fatal(err)
			}
			checkRefs(t, igd.ConnectionServices(root), tt.want)
		})
	}
	if got := igd.ConnectionServices(nil); got != nil {
		t.Errorf("ConnectionServices(nil) = %v, want nil", got)
	}
}

func TestParseServiceType(t *testing.T) {
	tests := []struct {
		in          string
		domain, typ string
		version     int
		ok          bool
	}{
		{igd.URNWANIPConnection2, "schemas-upnp-org", "WANIPConnection", 2, true},
		{igd.URNDSLForumWANPPPConnection1, "dslforum-org", "WANPPPConnection", 1, true},
		{"  urn:schemas-upnp-org:service:WANIPConnection:1\n", "schemas-upnp-org", "WANIPConnection", 1, true},
		{"urn:schemas-upnp-org:device:WANDevice:1", "", "", 0, false},
		{"urn:schemas-upnp-org:service:WANIPConnection", "", "", 0, false},
		{"urn:schemas-upnp-org:service:WANIPConnection:-1", "", "", 0, false},
		{"", "", "", 0, false},
	}
	for _, tt := range tests {
		d, typ, v, ok := igd.ParseServiceType(tt.in)
		if d != tt.domain || typ != tt.typ || v != tt.version || ok != tt.ok {
			t.Errorf("ParseServiceType(%q) = %q, %q, %d, %v; want %q, %q, %d, %v", tt.in, d, typ, v, ok, tt.domain, tt.typ, tt.version, tt.ok)
		}
	}
}

func TestKindString(t *testing.T) {
	for k, want := range map[igd.Kind]string{igd.KindIP: "WANIPConnection", igd.KindPPP: "WANPPPConnection", 0: "Kind(0)"} {
		if got := k.String(); got != want {
			t.Errorf("Kind(%d).String() = %q, want %q", int(k), got, want)
		}
	}
}
