package upnp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"

	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/portfwd/portfwd/internal/httpx"

	"github.com/portfwd/portfwd/internal/testenv"
)

// The real-router corpus lives next to the repository; see INDEX.md there.
// A test that reads it skips when it is missing, and fails under
// PORTFWD_LAB_REQUIRED=1 (see internal/testenv).
var (
	routersDir  = filepath.Join(testenv.SharedDir(), "routers")
	capturesDir = filepath.Join(testenv.SharedDir(), "natlab", "captures")
)

func readShared(t testing.TB, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		testenv.Missing(t, "fixture %s is missing: the shared corpus (real routers' replies, lab captures) is the directory shared/ beside the repository, or $%s", path, testenv.EnvShared)
	}
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// readSharedSeeds returns the files of the corpus that exist, for fuzz
// seeds: a missing one is reported through testenv.MissingPart.
func readSharedSeeds(f *testing.F, paths ...string) [][]byte {
	f.Helper()
	var out [][]byte
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			testenv.MissingPart(f, "fuzz seed %s: %v", p, err)
			continue
		}
		out = append(out, data)
	}
	return out
}

// connService is the golden view of one WANIPConnection or WANPPPConnection
// service: where it sits and where a client must send its requests.
type connService struct {
	serviceType string
	owner       string // deviceType of the device holding the service
	depth       int    // len(chain) as given by Walk
	control     string // resolved controlURL; "" when resolving must fail
	scpd        string // resolved SCPDURL
}

const (
	igdWANConn1 = "urn:schemas-upnp-org:device:WANConnectionDevice:1"
	igdWANConn2 = "urn:schemas-upnp-org:device:WANConnectionDevice:2"
	wanIP1      = "urn:schemas-upnp-org:service:WANIPConnection:1"
	wanIP2      = "urn:schemas-upnp-org:service:WANIPConnection:2"
	wanPPP1     = "urn:schemas-upnp-org:service:WANPPPConnection:1"
	wanPPP2     = "urn:schemas-upnp-org:service:WANPPPConnection:2"
)

// Every value below was read off the XML by hand, not produced by the code
// under test. Locations come from the device's own SSDP reply when the
// corpus has one, else a plausible address.
var routerGolden = []struct {
	file         string
	location     string
	rootType     string
	friendlyName string
	modelName    string
	modelNumber  string
	udn          string
	spec         SpecVersion
	urlBase      string
	services     int // every service in the tree
	devices      int // the root device and every embedded one
	presentation string
	conns        []connService
}{
	{
		file:         "actiontec-gt784wn/rootDesc.xml",
		location:     "http://192.168.0.1:5431/dyndev/uuid:deadbeef-dead-beef-dead-beefdeadbeef00",
		rootType:     "urn:schemas-upnp-org:device:InternetGatewayDevice:1",
		friendlyName: "Actiontec GT784WN",
		modelName:    "GT784WN",
		modelNumber:  "1.0",
		udn:          "uuid:deadbeef-dead-beef-dead-beefdeadbeef00",
		spec:         SpecVersion{1, 0},
		urlBase:      "http://192.168.0.1:5431/",
		services:     3,
		devices:      3,
		presentation: "http://192.168.0.1:80/",
		conns: []connService{{
			serviceType: wanPPP1, owner: igdWANConn1, depth: 3,
			control: "http://192.168.0.1:5431/uuid:70f196f9-33f5-f533-f996-f170f1f9f50002/WANPPPConnection:1",
			scpd:    "http://192.168.0.1:5431/dynsvc/WANPPPConnection:1.xml",
		}},
	},
	{
		file:         "asus-rt-n16-ddwrt/rootDesc.xml",
		location:     "http://192.168.1.1:5000/rootDesc.xml",
		rootType:     "urn:schemas-upnp-org:device:InternetGatewayDevice:1",
		friendlyName: "Asus RT-N16:DD-WRT",
		modelName:    "Asus RT-N16",
		modelNumber:  "V24",
		udn:          "uuid:A13AB4C3-3A14-E386-DE6A-EFEA923A06FE",
		spec:         SpecVersion{1, 0},
		services:     4,
		devices:      4,
		conns: []connService{{
			serviceType: wanIP1, owner: igdWANConn1, depth: 3,
			control: "http://192.168.1.1:5000/control?WANIPConnection",
			scpd:    "http://192.168.1.1:5000/x_wanipconnection.xml",
		}},
	},
	{
		file:         "avm-fritzbox-7430/rootDesc.xml",
		location:     "http://192.168.178.1:49000/igddesc.xml",
		rootType:     "urn:schemas-upnp-org:device:InternetGatewayDevice:1",
		friendlyName: "FRITZ!Box 7430",
		modelName:    "FRITZ!Box 7430",
		modelNumber:  "avm",
		udn:          "uuid:00000000-0000-0000-0000-000000000000",
		spec:         SpecVersion{1, 0},
		services:     5,
		devices:      3,
		presentation: "http://fritz.box",
		conns: []connService{{
			serviceType: wanIP1, owner: igdWANConn1, depth: 3,
			control: "http://192.168.178.1:49000/igdupnp/control/WANIPConn1",
			scpd:    "http://192.168.178.1:49000/igdconnSCPD.xml",
		}},
	},
	{
		file:         "avm-fritzbox-fon-wlan-7170/rootDesc.xml",
		location:     "http://192.168.178.1:49000/igddesc.xml",
		rootType:     "urn:schemas-upnp-org:device:InternetGatewayDevice:1",
		friendlyName: "radon UPnP/1.0 AVM FRITZ!Box Fon WLAN 7170 29.04.87",
		modelName:    "FRITZ!Box Fon WLAN 7170",
		modelNumber:  "avm",
		udn:          "uuid:75802409-bccb-40e7-8e6c-001A4F30547A",
		spec:         SpecVersion{1, 0},
		services:     4,
		devices:      3,
		conns: []connService{{
			serviceType: wanIP1, owner: igdWANConn1, depth: 3,
			control: "http://192.168.178.1:49000/upnp/control/WANIPConn1",
			scpd:    "http://192.168.178.1:49000/igdconnSCPD.xml",
		}},
	},
	{
		file:         "ddwrt-generic-x86/rootDesc.xml",
		location:     "http://192.168.1.1:5431/dyndev/uuid:dead-beef-deadbeef2222",
		rootType:     "urn:schemas-upnp-org:device:InternetGatewayDevice:1",
		friendlyName: "DD-WRT Router (192.168.1.1)",
		modelName:    "Generic X86",
		modelNumber:  "DD-WRT v24 (05/20/08)",
		udn:          "uuid:dead-beef-deadbeef2222",
		spec:         SpecVersion{1, 0},
		services:     4,
		devices:      3,
		conns: []connService{
			{
				serviceType: wanIP1, owner: igdWANConn1, depth: 3,
				control: "http://192.168.1.1:5431/uuid:dead-beef-deadbeef0000/WANIPConnection:1",
				scpd:    "http://192.168.1.1:5431/dynsvc/WANIPConnection:1.xml",
			},
			{
				serviceType: wanPPP1, owner: igdWANConn1, depth: 3,
				control: "http://192.168.1.1:5431/uuid:dead-beef-deadbeef0000/WANPPPConnection:1",
				scpd:    "http://192.168.1.1:5431/dynsvc/WANPPPConnection:1.xml",
			},
		},
	},
	{
		// URLBase is http://127.0.0.1 and the WANIPConnection controlURL is
		// the unfilled template "http://%s:%d/wipconn".
		file:         "dlink-dir-655/rootDesc.xml",
		location:     "http://192.168.0.1:8080/rootDesc.xml",
		rootType:     "urn:schemas-upnp-org:device:InternetGatewayDevice:1",
		friendlyName: "Xtreme N GIGABIT Router",
		modelName:    "Xtreme N GIGABIT Router",
		modelNumber:  "DIR-655",
		udn:          "uuid:E17FAEB7-CABB-3BCC-9C36-7207D5397C0E",
		spec:         SpecVersion{1, 0},
		urlBase:      "http://127.0.0.1",
		services:     4,
		devices:      4,
		presentation: "http://192.168.0.1:8080/",
		conns: []connService{{
			serviceType: wanIP1, owner: igdWANConn1, depth: 3,
			control: "",
			scpd:    "http://192.168.0.1/WANIPConn1.xml",
		}},
	},
	{
		file:         "dlink-router-libtorrent/rootDesc.xml",
		location:     "http://192.168.1.1:5000/rootDesc.xml",
		rootType:     "urn:schemas-upnp-org:device:InternetGatewayDevice:1",
		friendlyName: "D-Link Router",
		modelName:    "D-Link Router",
		modelNumber:  "",
		udn:          "uuid:upnp-InternetGatewayDevice-1_0-12345678900001",
		spec:         SpecVersion{1, 0},
		urlBase:      "http://%s:%d",
		services:     3,
		devices:      3,
		presentation: "http://192.168.0.1:80",
		conns: []connService{{
			serviceType: wanIP1, owner: igdWANConn1, depth: 3,
			control: "http://192.168.1.1:5000/WANIPConnection",
			scpd:    "http://192.168.1.1:5000/WANIPConnection.xml",
		}},
	},
	{
		file:         "google-onhub/rootDesc.xml",
		location:     "http://192.168.86.1:5000/rootDesc.xml",
		rootType:     "urn:schemas-upnp-org:device:InternetGatewayDevice:2",
		friendlyName: "OnHub",
		modelName:    "OnHub",
		modelNumber:  "1",
		udn:          "uuid:a9708184-a6c0-413a-bbac-11bcf7e30ece",
		spec:         SpecVersion{1, 0},
		services:     4,
		devices:      3,
		presentation: "http://testwifi.here/",
		conns: []connService{{
			serviceType: wanIP2, owner: igdWANConn2, depth: 3,
			control: "http://192.168.86.1:5000/ctl/IPConn",
			scpd:    "http://192.168.86.1:5000/WANIPCn.xml",
		}},
	},
	{
		file:         "huawei-hg531-v1/rootDesc.xml",
		location:     "http://192.168.1.1:5000/rootDesc.xml",
		rootType:     "urn:dslforum-org:device:InternetGatewayDevice:1",
		friendlyName: "HG531 V1",
		modelName:    "HG531 V1",
		modelNumber:  "Huawei Model",
		udn:          "uuid:00e0fc37-2626-2828-2600-587f668bdd9a",
		spec:         SpecVersion{1, 0},
		services:     13,
		devices:      4,
		presentation: "http://127.0.0.1",
		conns: []connService{{
			serviceType: "urn:dslforum-org:service:WANPPPConnection:1",
			owner:       "urn:dslforum-org:device:WANConnectionDevice:1", depth: 3,
			control: "http://192.168.1.1:5000/ctrlt/WANPPPConnection_1",
			scpd:    "http://192.168.1.1:5000/desc/WanPppConn.xml",
		}},
	},
	{
		file:         "linksys-wag200g/rootDesc.xml",
		location:     "http://192.168.1.1:5000/rootDesc.xml",
		rootType:     "urn:schemas-upnp-org:device:InternetGatewayDevice:1",
		friendlyName: "LINKSYS WAG200G Gateway",
		modelName:    "Wireless-G ADSL Home Gateway",
		modelNumber:  "WAG200G",
		udn:          "uuid:8ca2eb37-1dd2-11b2-86f1-001a709b5aa8",
		spec:         SpecVersion{1, 0},
		urlBase:      "http://192.168.1.1:49152",
		services:     5,
		devices:      4,
		presentation: "http://192.168.1.1/index.htm",
		conns: []connService{{
			serviceType: wanPPP1, owner: igdWANConn1, depth: 3,
			control: "http://192.168.1.1:49152/upnp/control/WANPPPConn1",
			scpd:    "http://192.168.1.1:49152/pppcfg.xml",
		}},
	},
	{
		file:         "mikrotik-chr-7.10/rootDesc.xml",
		location:     "http://192.168.88.1:2828/rootDesc.xml",
		rootType:     "urn:schemas-upnp-org:device:InternetGatewayDevice:1",
		friendlyName: "MikroTik Router",
		modelName:    "Router OS",
		modelNumber:  "",
		udn:          "uuid:UUID-MIKROTIK-INTERNET-GATEWAY-DEVICE-",
		spec:         SpecVersion{1, 0},
		services:     5,
		devices:      5,
		presentation: "http://127.0.0.1/",
		conns: []connService{
			{
				serviceType: wanIP1, owner: igdWANConn1, depth: 3,
				control: "http://192.168.88.1:2828/upnp/control/yomkmsnooi/wanipconn-1",
				scpd:    "http://192.168.88.1:2828/wanipconn-1.xml",
			},
			{
				serviceType: wanIP1, owner: igdWANConn1, depth: 3,
				control: "http://192.168.88.1:2828/upnp/control/xstnsgeuyh/wanipconn-7",
				scpd:    "http://192.168.88.1:2828/wanipconn-7.xml",
			},
		},
	},
	{
		file:         "orange-livebox-new/rootDesc.xml",
		location:     "http://192.168.1.1:49152/87895a19/gatedesc.xml",
		rootType:     "urn:schemas-upnp-org:device:InternetGatewayDevice:2",
		friendlyName: "Orange Livebox",
		modelName:    "Residential Livebox,(DSL,WAN Ethernet)",
		modelNumber:  "3",
		udn:          "uuid:87895a19-50f9-3736-a87f-115c230155f8",
		spec:         SpecVersion{1, 0},
		services:     3,
		devices:      3,
		presentation: "http://192.168.1.1",
		conns: []connService{{
			serviceType: wanPPP2, owner: igdWANConn2, depth: 3,
			control: "http://192.168.1.1:49152/87895a19/upnp/control/WANIPConn1",
			scpd:    "http://192.168.1.1:49152/87895a19/gateconnSCPD_PPP.xml",
		}},
	},
	{
		file:         "pannaway-rg-210/rootDesc.xml",
		location:     "http://192.168.1.254:80/upnp/IGD.xml",
		rootType:     "urn:schemas-upnp-org:device:InternetGatewayDevice:1",
		friendlyName: "SpeedTouch 5x6 (0320FJ2PZ)",
		modelName:    "Pannaway",
		modelNumber:  "RG-210",
		udn:          "",
		spec:         SpecVersion{1, 0},
		urlBase:      "http://127.0.0.1:{port}",
		services:     3,
		devices:      3,
		presentation: "http://192.168.1.254:80/",
		conns:        nil,
	},
	{
		file:         "pfsense-2.5.0/rootDesc.xml",
		location:     "http://192.168.1.1:2189/rootDesc.xml",
		rootType:     "urn:schemas-upnp-org:device:InternetGatewayDevice:1",
		friendlyName: "FreeBSD router",
		modelName:    "FreeBSD router",
		modelNumber:  "2.5.0-RELEASE",
		udn:          "uuid:bee7052b-49e8-3597-b545-55a1e38ac11",
		spec:         SpecVersion{1, 1},
		services:     3,
		devices:      3,
		presentation: "https://192.168.1.1/",
		conns: []connService{{
			serviceType: wanIP1, owner: igdWANConn1, depth: 3,
			control: "http://192.168.1.1:2189/ctl/IPConn",
			scpd:    "http://192.168.1.1:2189/WANIPCn.xml",
		}},
	},
	{
		file:         "technicolor-tg784n-v3/rootDesc.xml",
		location:     "http://192.168.1.254:5000/rootDesc.xml",
		rootType:     "urn:schemas-upnp-org:device:InternetGatewayDevice:1",
		friendlyName: "Technicolor TG784n v3 (1321RAWMS)",
		modelName:    "Technicolor TG",
		modelNumber:  "784n v3",
		udn:          "uuid:UPnP_Technicolor TG784n v3-1_A4-B1-E9-D8-F4-78",
		spec:         SpecVersion{1, 0},
		urlBase:      "http://192.168.1.254:8000",
		services:     5,
		devices:      4,
		presentation: "http://192.168.1.254:8000/",
		conns: []connService{{
			serviceType: wanPPP1, owner: igdWANConn1, depth: 3,
			control: "http://192.168.1.254:8000/hou74cq4tw9/IGD/upnp/control/igd/wanpppc_1_1_1",
			scpd:    "http://192.168.1.254:8000/hou74cq4tw9/IGD/upnp/WANPPPConnection.xml",
		}},
	},
	{
		file:         "tplink-tl-wr841nd-v9-ddwrt/rootDesc.xml",
		location:     "http://192.168.1.1:1780/InternetGatewayDevice.xml",
		rootType:     "urn:schemas-upnp-org:device:InternetGatewayDevice:1",
		friendlyName: "TP-Link TL-WR841ND v9:DD-WRT",
		modelName:    "TP-Link TL-WR841ND v9",
		modelNumber:  "V24",
		udn:          "uuid:C8032011-43C8-CD28-13A8-7F60317255C4",
		spec:         SpecVersion{1, 0},
		services:     4,
		devices:      4,
		presentation: "http://192.168.1.1",
		conns: []connService{{
			serviceType: wanIP1, owner: igdWANConn1, depth: 3,
			control: "http://192.168.1.1:1780/control?WANIPConnection",
			scpd:    "http://192.168.1.1:1780/x_wanipconnection.xml",
		}},
	},
	{
		file:         "unknown-portable-sdk-router/rootDesc.xml",
		location:     "http://192.168.1.1:5000/rootDesc.xml",
		rootType:     "urn:schemas-upnp-org:device:InternetGatewayDevice:1",
		friendlyName: "",
		modelName:    "",
		modelNumber:  "",
		udn:          "uuid:00000000-0000-0000-0000-000000000000",
		spec:         SpecVersion{1, 0},
		services:     2,
		devices:      3,
		presentation: "http://192.168.1.1",
		conns: []connService{{
			serviceType: wanIP1, owner: igdWANConn1, depth: 3,
			control: "http://192.168.1.1:5000/upnp/control/WANIPConn1",
			scpd:    "http://192.168.1.1:5000/332b484d/wanipconnSCPD.xml",
		}},
	},
}

func isConnService(serviceType string) bool {
	return strings.Contains(serviceType, ":service:WANIPConnection:") ||
		strings.Contains(serviceType, ":service:WANPPPConnection:")
}

func countDevices(d *Device) int {
	n := 1
	for i := range d.Devices {
		n += countDevices(&d.Devices[i])
	}
	return n
}

func TestParseDescriptionRouters(t *testing.T) {
	for _, tc := range routerGolden {
		t.Run(filepath.Dir(tc.file), func(t *testing.T) {
			data := readShared(t, filepath.Join(routersDir, tc.file))
			r, err := ParseDescription(data, tc.location)
			if err != nil {
				t.Fatalf("ParseDescription: %v", err)
			}
			d := r.Device
			for _, c := range []struct{ field, got, want string }{
				{"deviceType", d.DeviceType, tc.rootType},
				{"friendlyName", d.FriendlyName, tc.friendlyName},
				{"modelName", d.ModelName, tc.modelName},
				{"modelNumber", d.ModelNumber, tc.modelNumber},
				{"UDN", d.UDN, tc.udn},
				{"URLBase", r.URLBase, tc.urlBase},
				{"Location", r.Location, tc.location},
			} {
				if c.got != c.want {
					t.Errorf("%s = %q, want %q", c.field, c.got, c.want)
				}
			}
			if r.SpecVersion != tc.spec {
				t.Errorf("specVersion = %+v, want %+v", r.SpecVersion, tc.spec)
			}
			if n := countDevices(&r.Device); n != tc.devices {
				t.Errorf("%d devices, want %d", n, tc.devices)
			}
			if tc.presentation != "" {
				got, err := r.Resolve(d.PresentationURL)
				if err != nil || got != tc.presentation {
					t.Errorf("Resolve(presentationURL %q) = %q, %v; want %q", d.PresentationURL, got, err, tc.presentation)
				}
			}

			services := 0
			var conns []connService
			r.Walk(func(chain []*Device, s *Service) bool {
				services++
				if chain[0] != &r.Device {
					t.Errorf("chain for %s does not start at the root device", s.ServiceID)
				}
				if !isConnService(s.ServiceType) {
					return true
				}
				c := connService{serviceType: s.ServiceType, owner: chain[len(chain)-1].DeviceType, depth: len(chain)}
				if u, err := r.Resolve(s.ControlURL); err == nil {
					c.control = u
				} else if !strings.Contains(err.Error(), s.ControlURL) {
					t.Errorf("Resolve(%q) error %q does not quote the bad URL", s.ControlURL, err)
				}
				if u, err := r.Resolve(s.SCPDURL); err == nil {
					c.scpd = u
				} else {
					t.Errorf("Resolve(SCPDURL %q): %v", s.SCPDURL, err)
				}
				conns = append(conns, c)
				return true
			})
			if services != tc.services {
				t.Errorf("Walk visited %d services, want %d", services, tc.services)
			}
			if !reflect.DeepEqual(conns, tc.conns) {
				t.Errorf("connection services:\n got %+v\nwant %+v", conns, tc.conns)
			}
		})
	}
}

func TestParseDescriptionCapture(t *testing.T) {
	// miniupnpd 2.3.1 in the natlab, as captured on the wire.
	data := readShared(t, filepath.Join(capturesDir, "rootDesc.xml"))
	r, err := ParseDescription(data, "http://10.77.0.1:5000/rootDesc.xml")
	if err != nil {
		t.Fatal(err)
	}
	if r.ConfigID != "1337" || r.SpecVersion != (SpecVersion{1, 1}) {
		t.Errorf("configId %q, specVersion %+v; want 1337, 1.1", r.ConfigID, r.SpecVersion)
	}
	if r.Device.FriendlyName != "natlab nl router" || r.Device.ModelName != "natlab miniupnpd" {
		t.Errorf("friendlyName %q, modelName %q", r.Device.FriendlyName, r.Device.ModelName)
	}
	var types []string
	var control string
	r.Walk(func(chain []*Device, s *Service) bool {
		types = append(types, s.ServiceType)
		if s.ServiceType == wanIP2 {
			if chain[len(chain)-1].DeviceType != igdWANConn2 || len(chain) != 3 {
				t.Errorf("WANIPConnection:2 owned by %q at depth %d", chain[len(chain)-1].DeviceType, len(chain))
			}
			control, err = r.Resolve(s.ControlURL)
		}
		return true
	})
	wantTypes := []string{
		"urn:schemas-upnp-org:service:Layer3Forwarding:1",
		"urn:schemas-upnp-org:service:DeviceProtection:1",
		"urn:schemas-upnp-org:service:WANCommonInterfaceConfig:1",
		wanIP2,
		"urn:schemas-upnp-org:service:WANIPv6FirewallControl:1",
	}
	if !reflect.DeepEqual(types, wantTypes) {
		t.Errorf("Walk order %q, want %q", types, wantTypes)
	}
	if err != nil || control != "http://10.77.0.1:5000/ctl/IPConn" {
		t.Errorf("control URL %q, %v", control, err)
	}
}

// TestParseDescriptionEveryFixture guards against a fixture added to the
// corpus without a golden row: it must at least parse.
func TestParseDescriptionEveryFixture(t *testing.T) {
	files := testenv.GlobShared(t, filepath.Join("routers", "*", "rootDesc.xml"))
	known := map[string]bool{}
	for _, tc := range routerGolden {
		known[tc.file] = true
	}
	for _, f := range files {
		rel, _ := filepath.Rel(routersDir, f)
		if !known[filepath.ToSlash(rel)] {
			t.Errorf("%s has no row in routerGolden", rel)
		}
		if _, err := ParseDescription(readShared(t, f), "http://192.168.1.1:5000/rootDesc.xml"); err != nil {
			t.Errorf("%s: %v", rel, err)
		}
	}
}

func TestParseDescriptionQuirks(t *testing.T) {
	const body = `<device><deviceType>urn:schemas-upnp-org:device:InternetGatewayDevice:1</deviceType>` +
		`<friendlyName>%s</friendlyName><UDN>uuid:1</UDN></device></root>`
	root := `<root xmlns="urn:schemas-upnp-org:device-1-0">`
	tests := []struct {
		name string
		doc  string
		want string // friendlyName
	}{
		{"latin-1 declared", `<?xml version="1.0" encoding="ISO-8859-1"?>` + root + fmt.Sprintf(body, "Routeur \xe9t\xe9"), "Routeur été"},
		{"windows-1252 declared", `<?xml version="1.0" encoding="windows-1252"?>` + root + fmt.Sprintf(body, "\x93Box\x94 \x80"), "“Box” €"},
		{"latin-1 undeclared", root + fmt.Sprintf(body, "Stra\xdfe"), "Straße"},
		{"utf-8 declared but latin-1", `<?xml version="1.0" encoding="UTF-8"?>` + root + fmt.Sprintf(body, "Caf\xe9"), "Café"},
		{"utf-8 undeclared", root + fmt.Sprintf(body, "Café ✓"), "Café ✓"},
		{"utf-8 labelled latin-1", `<?xml version="1.0" encoding="iso-8859-1"?>` + root + fmt.Sprintf(body, "Café ✓"), "Café ✓"},
		{"unknown charset passes through", `<?xml version="1.0" encoding="x-vendor-charset"?>` + root + fmt.Sprintf(body, "Café"), "Café"},
		{"BOM and blank lines first", "\ufeff\r\n\t <?xml version=\"1.0\"?>\r\n" + root + fmt.Sprintf(body, "x"), "x"},
		{"control character", root + fmt.Sprintf(body, "a\x01b"), "a\ufffdb"},
		{"newline inside text", root + fmt.Sprintf(body, "\r\n  Gateway\r\n"), "Gateway"},
		{"stray CR inside text", root + fmt.Sprintf(body, "Gate\rway"), "Gate\nway"},
		{"unknown entity kept as text", root + fmt.Sprintf(body, "AT&T"), "AT&T"},
		{"no namespace", `<root>` + fmt.Sprintf(body, "x"), "x"},
		{"other namespace", `<root xmlns="urn:vendor">` + fmt.Sprintf(body, "x"), "x"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := ParseDescription([]byte(tc.doc), "")
			if err != nil {
				t.Fatal(err)
			}
			if r.Device.FriendlyName != tc.want {
				t.Errorf("friendlyName = %q, want %q", r.Device.FriendlyName, tc.want)
			}
		})
	}
}

func TestParseDescriptionLenientNumbers(t *testing.T) {
	doc := `<root><specVersion><major> 1 </major><minor>0a</minor></specVersion>` +
		`<device><deviceType>t</deviceType><UDN>u</UDN><iconList><icon><mimetype>image/png</mimetype>` +
		`<width>16px</width><height>16</height><depth></depth><url> /i.png </url></icon></iconList></device></root>`
	r, err := ParseDescription([]byte(doc), "")
	if err != nil {
		t.Fatal(err)
	}
	if r.SpecVersion != (SpecVersion{1, 0}) {
		t.Errorf("specVersion %+v, want 1.0", r.SpecVersion)
	}
	want := []Icon{{MIMEType: "image/png", Width: 0, Height: 16, Depth: 0, URL: "/i.png"}}
	if !reflect.DeepEqual(r.Device.Icons, want) {
		t.Errorf("icons %+v, want %+v", r.Device.Icons, want)
	}
}

func TestParseDescriptionRejects(t *testing.T) {
	big := append([]byte(`<root><device><deviceType>t</deviceType><friendlyName>`), bytes.Repeat([]byte("a"), MaxDescriptionSize)...)
	big = append(big, `</friendlyName></device></root>`...)
	tests := []struct {
		name    string
		doc     []byte
		wantErr string
	}{
		{"too large", big, "limit"},
		{"entity declaration", []byte(`<?xml version="1.0"?><!DOCTYPE root [<!ENTITY x "y">]><root><device><deviceType>&x;</deviceType></device></root>`), "entities"},
		{"external entity", []byte(`<!DOCTYPE root SYSTEM "http://evil/" [<!ENTITY x SYSTEM "file:///etc/passwd">]><root><device><deviceType>&x;</deviceType></device></root>`), "entities"},
		{"html", []byte(`<html><body>Login</body></html>`), "<html>"},
		{"scpd", []byte(`<?xml version="1.0"?><scpd xmlns="urn:schemas-upnp-org:service-1-0"></scpd>`), "<scpd>"},
		{"empty", nil, "not XML"},
		{"truncated", []byte(`<root><device><deviceType>x</deviceType>`), "malformed"},
		{"no device", []byte(`<root><specVersion><major>1</major></specVersion></root>`), "no <device>"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := ParseDescription(tc.doc, "http://192.168.1.1/")
			if err == nil {
				t.Fatalf("parsed %+v, want an error", r)
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error %q does not mention %q", err, tc.wantErr)
			}
		})
	}
	if _, err := ParseDescription(big, ""); !errors.Is(err, ErrBodyTooLarge) {
		t.Errorf("oversized description: %v, want ErrBodyTooLarge", err)
	}
	// A plain DOCTYPE declares nothing and is harmless.
	if _, err := ParseDescription([]byte(`<!DOCTYPE root><root><device><deviceType>t</deviceType></device></root>`), ""); err != nil {
		t.Errorf("plain DOCTYPE: %v", err)
	}
}

func TestResolve(t *testing.T) {
	tests := []struct {
		name     string
		urlBase  string
		location string
		ref      string
		want     string // "" means an error
	}{
		{"absolute path", "", "http://192.168.1.1:5000/rootDesc.xml", "/ctl/IPConn", "http://192.168.1.1:5000/ctl/IPConn"},
		{"relative to location dir", "", "http://192.168.1.1:5000/desc/root.xml", "ctl/IPConn", "http://192.168.1.1:5000/desc/ctl/IPConn"},
		{"dot segments", "", "http://192.168.1.1:5000/a/b/root.xml", "../ctl", "http://192.168.1.1:5000/a/ctl"},
		{"query style", "", "http://192.168.1.1:1780/InternetGatewayDevice.xml", "/control?WANIPConnection", "http://192.168.1.1:1780/control?WANIPConnection"},
		{"colons in absolute path", "", "http://192.168.0.1:5431/dyndev/uuid:x", "/uuid:abc/WANPPPConnection:1", "http://192.168.0.1:5431/uuid:abc/WANPPPConnection:1"},
		{"colons in relative path", "", "http://192.168.0.1:5431/root.xml", "uuid:abc/WANPPPConnection:1", "http://192.168.0.1:5431/uuid:abc/WANPPPConnection:1"},
		{"colon in file name", "", "http://192.168.0.1:5431/", "dynsvc/WANPPPConnection:1.xml", "http://192.168.0.1:5431/dynsvc/WANPPPConnection:1.xml"},
		{"surrounding whitespace", "", "http://192.168.1.1:5000/", "\r\n\t/ctl/IPConn \n", "http://192.168.1.1:5000/ctl/IPConn"},
		{"URLBase wins over location", "http://192.168.1.1:49152", "http://192.168.1.1:5000/rootDesc.xml", "/upnp/control/WANPPPConn1", "http://192.168.1.1:49152/upnp/control/WANPPPConn1"},
		{"URLBase with path and slash", "http://192.168.1.1:49152/base/", "", "ctl", "http://192.168.1.1:49152/base/ctl"},
		{"URLBase with spaces", " http://192.168.1.1:49152/ ", "", "/ctl", "http://192.168.1.1:49152/ctl"},
		{"URLBase printf template", "http://%s:%d", "http://192.168.1.1:5000/rootDesc.xml", "/WANIPConnection", "http://192.168.1.1:5000/WANIPConnection"},
		{"URLBase port template", "http://127.0.0.1:{port}", "http://192.168.1.254/IGD.xml", "/upnp/control/wancic", "http://192.168.1.254/upnp/control/wancic"},
		{"URLBase host template", "http://{{listenAddr}}", "http://192.168.1.1:5000/rootDesc.xml", "/ctl", "http://192.168.1.1:5000/ctl"},
		{"URLBase without scheme", "192.168.1.1:5000", "http://192.168.1.1:5001/", "/ctl", "http://192.168.1.1:5001/ctl"},
		{"URLBase out-of-range port", "http://192.168.1.1:99999", "http://192.168.1.1:5001/", "/ctl", "http://192.168.1.1:5001/ctl"},
		{"URLBase loopback, location LAN", "http://127.0.0.1", "http://192.168.0.1:8080/rootDesc.xml", "/", "http://192.168.0.1:8080/"},
		{"URLBase loopback, location loopback", "http://127.0.0.1:2000", "http://127.0.0.1:1900/rootDesc.xml", "/ctl", "http://127.0.0.1:2000/ctl"},
		{"URLBase loopback, no location", "http://127.0.0.1:2000", "", "/ctl", "http://127.0.0.1:2000/ctl"},
		{"absolute other port", "", "http://192.168.0.1/rootDesc.xml", "http://192.168.0.1:4444/l3fw", "http://192.168.0.1:4444/l3fw"},
		{"absolute ignores broken URLBase", "http://%s:%d", "", "http://192.168.0.1:9393/wipconn", "http://192.168.0.1:9393/wipconn"},
		{"absolute https", "", "http://192.168.1.1/", "https://192.168.1.1/", "https://192.168.1.1/"},
		{"absolute upper-case scheme", "", "http://192.168.1.1/", "HTTP://192.168.1.1:80/x", "http://192.168.1.1:80/x"},
		{"IPv6 location", "", "http://[fe80::1%25eth0]:5000/rootDesc.xml", "/ctl/IPConn", "http://[fe80::1%25eth0]:5000/ctl/IPConn"},
		{"absolute printf template", "", "http://192.168.0.1/", "http://%s:%d/wipconn", ""},
		{"absolute host template", "", "http://192.168.1.1/", "http://{{listenAddr}}", ""},
		{"absolute non-http", "", "http://192.168.1.1/", "ftp://192.168.1.1/x", ""},
		{"empty", "", "http://192.168.1.1/", "  ", ""},
		{"no base at all", "", "", "/ctl", ""},
		{"no usable base", "http://%s:%d", "", "/ctl", ""},
		{"unusable location", "", "http://{ip}/rootDesc.xml", "/ctl", ""},
		{"bad escape in relative", "", "http://192.168.1.1/", "/%zz", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := &Root{URLBase: tc.urlBase, Location: tc.location}
			got, err := r.Resolve(tc.ref)
			if tc.want == "" {
				if err == nil {
					t.Fatalf("Resolve(%q) = %q, want an error", tc.ref, got)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("Resolve(%q) = %q, %v; want %q", tc.ref, got, err, tc.want)
			}
		})
	}
}

func TestWalkStops(t *testing.T) {
	r := &Root{Device: Device{
		DeviceType: "root",
		Services:   []Service{{ServiceID: "a"}},
		Devices: []Device{
			{DeviceType: "d1", Services: []Service{{ServiceID: "b"}, {ServiceID: "c"}},
				Devices: []Device{{DeviceType: "d11", Services: []Service{{ServiceID: "d"}}}}},
			{DeviceType: "d2", Services: []Service{{ServiceID: "e"}}},
		},
	}}
	var all []string
	r.Walk(func(chain []*Device, s *Service) bool {
		var types []string
		for _, d := range chain {
			types = append(types, d.DeviceType)
		}
		all = append(all, s.ServiceID+"@"+strings.Join(types, "/"))
		return true
	})
	want := []string{"a@root", "b@root/d1", "c@root/d1", "d@root/d1/d11", "e@root/d2"}
	if !reflect.DeepEqual(all, want) {
		t.Errorf("Walk order %q, want %q", all, want)
	}
	for stopAt := range want {
		var seen []string
		r.Walk(func(_ []*Device, s *Service) bool {
			seen = append(seen, s.ServiceID)
			return len(seen) <= stopAt
		})
		if len(seen) != stopAt+1 {
			t.Errorf("returning false after %d services: Walk went on to %q", stopAt+1, seen)
		}
	}
	// Services are handed out by reference, so a caller can fix one up.
	r.Walk(func(_ []*Device, s *Service) bool { s.ControlURL = "/x"; return true })
	if r.Device.Devices[0].Devices[0].Services[0].ControlURL != "/x" {
		t.Error("Walk passed a copy of the service")
	}
	// A chain kept past its call is not overwritten by later ones.
	var kept [][]*Device
	r.Walk(func(chain []*Device, _ *Service) bool { kept = append(kept, chain); return true })
	if kept[3][2].DeviceType != "d11" || kept[4][1].DeviceType != "d2" {
		t.Errorf("kept chains were overwritten: %q, %q", kept[3][2].DeviceType, kept[4][1].DeviceType)
	}
}

func gatewayRoot() *Root {
	return &Root{
		ConfigID:    "7",
		SpecVersion: SpecVersion{1, 1},
		Device: Device{
			DeviceType:   "urn:schemas-upnp-org:device:InternetGatewayDevice:2",
			FriendlyName: `portfwd <gateway> & "friends"`,
			Manufacturer: "portfwd",
			ModelName:    "portfwd gateway",
			UDN:          "uuid:11111111-2222-3333-4444-555555555555",
			Icons:        []Icon{{MIMEType: "image/png", Width: 48, Height: 48, Depth: 24, URL: "/icon.png"}},
			Services: []Service{{
				ServiceType: "urn:schemas-upnp-org:service:Layer3Forwarding:1",
				ServiceID:   "urn:upnp-org:serviceId:L3Forwarding1",
				SCPDURL:     "/L3F.xml", ControlURL: "/ctl/L3F", EventSubURL: "/evt/L3F",
			}},
			Devices: []Device{{
				DeviceType: "urn:schemas-upnp-org:device:WANDevice:2",
				ModelName:  "WAN", UDN: "uuid:2",
				Devices: []Device{{
					DeviceType: igdWANConn2, ModelName: "WANConn", UDN: "uuid:3",
					Services: []Service{{
						ServiceType: wanIP2, ServiceID: "urn:upnp-org:serviceId:WANIPConn1",
						SCPDURL: "/WANIPCn.xml", ControlURL: "/ctl/IPConn", EventSubURL: "/evt/IPConn",
					}},
				}},
			}},
			PresentationURL: "/",
		},
	}
}

func TestMarshalRoundTrip(t *testing.T) {
	r := gatewayRoot()
	out, err := r.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`<?xml version="1.0" encoding="UTF-8"?>`,
		`<root xmlns="urn:schemas-upnp-org:device-1-0" configId="7">`,
		`<specVersion><major>1</major><minor>1</minor></specVersion>`,
		`<friendlyName>portfwd &lt;gateway&gt; &amp; &#34;friends&#34;</friendlyName>`,
		`<serviceList><service><serviceType>urn:schemas-upnp-org:service:Layer3Forwarding:1</serviceType>`,
	} {
		if !bytes.Contains(out, []byte(want)) {
			t.Errorf("output lacks %s:\n%s", want, out)
		}
	}
	for _, unwanted := range []string{"<URLBase>", "xmlns=\"\"", "Location"} {
		if bytes.Contains(out, []byte(unwanted)) {
			t.Errorf("output has %s:\n%s", unwanted, out)
		}
	}
	back, err := ParseDescription(out, "http://10.0.0.1:5000/rootDesc.xml")
	if err != nil {
		t.Fatalf("output does not parse back: %v\n%s", err, out)
	}
	if back.XMLName.Space != DeviceNamespace {
		t.Errorf("namespace %q, want %q", back.XMLName.Space, DeviceNamespace)
	}
	back.XMLName, back.Location = r.XMLName, r.Location
	if !reflect.DeepEqual(back, r) {
		t.Errorf("round trip changed the description:\n got %+v\nwant %+v", back, r)
	}
}

func TestMarshalRouters(t *testing.T) {
	// Every real description that has what UDA requires survives a trip
	// through Marshal unchanged.
	for _, tc := range routerGolden {
		data := readShared(t, filepath.Join(routersDir, tc.file))
		r, err := ParseDescription(data, tc.location)
		if err != nil {
			t.Fatal(err)
		}
		out, err := r.Marshal()
		if err != nil {
			// Pannaway's empty UDN and friends: Marshal must say why.
			if !strings.Contains(err.Error(), "needs") {
				t.Errorf("%s: Marshal error %q does not name the missing field", tc.file, err)
			}
			continue
		}
		back, err := ParseDescription(out, tc.location)
		if err != nil {
			t.Fatalf("%s: re-parse: %v", tc.file, err)
		}
		back.XMLName = r.XMLName
		if !reflect.DeepEqual(back, r) {
			t.Errorf("%s: round trip changed the description", tc.file)
		}
	}
}

func TestMarshalValidates(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Root)
	}{
		{"no specVersion", func(r *Root) { r.SpecVersion = SpecVersion{} }},
		{"no deviceType", func(r *Root) { r.Device.DeviceType = "" }},
		{"no UDN", func(r *Root) { r.Device.UDN = "" }},
		{"embedded without UDN", func(r *Root) { r.Device.Devices[0].Devices[0].UDN = "" }},
		{"service without controlURL", func(r *Root) { r.Device.Devices[0].Devices[0].Services[0].ControlURL = "" }},
		{"service without SCPDURL", func(r *Root) { r.Device.Services[0].SCPDURL = "" }},
	}
	for _, tc := range tests {
		r := gatewayRoot()
		tc.mutate(r)
		if out, err := r.Marshal(); err == nil {
			t.Errorf("%s: Marshal succeeded:\n%s", tc.name, out)
		}
	}
}

func TestFetchDescription(t *testing.T) {
	desc := readShared(t, filepath.Join(routersDir, "pfsense-2.5.0/rootDesc.xml"))
	mux := http.NewServeMux()
	mux.HandleFunc("/rootDesc.xml", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			t.Errorf("method %s", r.Method)
		}
		w.Header().Set("Content-Type", "application/octet-stream") // as Broadcom stacks send it
		w.Write(desc)
	})
	mux.HandleFunc("/moved", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/desc/rootDesc.xml", http.StatusFound)
	})
	mux.HandleFunc("/desc/rootDesc.xml", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`<root><device><deviceType>t</deviceType><UDN>u</UDN></device></root>`))
	})
	mux.HandleFunc("/missing", http.NotFound)
	mux.HandleFunc("/huge", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("<root><device><deviceType>"))
		chunk := bytes.Repeat([]byte("x"), 64<<10)
		for range (MaxDescriptionSize / len(chunk)) + 2 {
			w.Write(chunk)
		}
	})
	mux.HandleFunc("/html", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.Write([]byte("<html><body>Router login</body></html>"))
	})
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()

	ctx := context.Background()
	r, err := FetchDescription(ctx, nil, srv.URL+"/rootDesc.xml")
	if err != nil {
		t.Fatal(err)
	}
	if r.Device.FriendlyName != "FreeBSD router" || r.Location != srv.URL+"/rootDesc.xml" {
		t.Errorf("got %q from %q", r.Device.FriendlyName, r.Location)
	}
	if u, _ := r.Resolve("/ctl/IPConn"); u != srv.URL+"/ctl/IPConn" {
		t.Errorf("control URL %q", u)
	}

	r, err = FetchDescription(ctx, &httpx.Client{}, srv.URL+"/moved")
	if err != nil {
		t.Fatal(err)
	}
	if u, _ := r.Resolve("ctl"); u != srv.URL+"/desc/ctl" {
		t.Errorf("after a redirect, relative URLs resolve to %q; want them against the final address", u)
	}

	for _, tc := range []struct {
		path, want string
		is         error
	}{
		{"/missing", "404", nil},
		{"/huge", "", ErrBodyTooLarge},
		{"/html", "<html>", nil},
	} {
		_, err := FetchDescription(ctx, nil, srv.URL+tc.path)
		if err == nil {
			t.Errorf("%s: no error", tc.path)
			continue
		}
		if tc.is != nil && !errors.Is(err, tc.is) {
			t.Errorf("%s: error %v, want %v", tc.path, err, tc.is)
		}
		if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), srv.URL) {
			t.Errorf("%s: error %q should mention %q and the location", tc.path, err, tc.want)
		}
	}

	tctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := FetchDescription(tctx, nil, srv.URL+"/slow"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("slow server: %v, want context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("context deadline not honoured: took %v", d)
	}

	for _, loc := range []string{"", "192.168.1.1:5000/rootDesc.xml", "http://%s:%d/rootDesc.xml", "file:///etc/passwd"} {
		if _, err := FetchDescription(ctx, nil, loc); err == nil || !strings.Contains(err.Error(), "not a usable http URL") {
			t.Errorf("location %q: %v", loc, err)
		}
	}
}

func FuzzParseDescription(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join(routersDir, "*", "rootDesc.xml"))
	if len(files) == 0 {
		testenv.MissingPart(f, "no router descriptions in %s for fuzz seeds", routersDir)
	}
	files = append(files, filepath.Join(capturesDir, "rootDesc.xml"))
	for _, data := range readSharedSeeds(f, files...) {
		f.Add(data)
	}
	if out, err := gatewayRoot().Marshal(); err == nil {
		f.Add(out)
	}
	f.Add([]byte(`<?xml version="1.0" encoding="iso-8859-1"?><root><device><deviceType>t</deviceType><friendlyName>caf\xe9</friendlyName></device></root>`))
	f.Add([]byte(`<root><URLBase>http://%s:%d</URLBase><device><deviceType>t</deviceType><serviceList><service><controlURL>uuid:x/y:1</controlURL></service></serviceList></device></root>`))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := ParseDescription(data, "http://192.168.1.1:5000/rootDesc.xml")
		if err != nil {
			return
		}
		r.Walk(func(_ []*Device, s *Service) bool {
			for _, ref := range []string{s.ControlURL, s.SCPDURL, s.EventSubURL} {
				if u, err := r.Resolve(ref); err == nil {
					if _, err := usableHTTPURL(u); err != nil {
						t.Fatalf("Resolve(%q) = %q, which is not usable: %v", ref, u, err)
					}
				}
			}
			return true
		})
		out, err := r.Marshal()
		if err != nil {
			return
		}
		back, err := ParseDescription(out, r.Location)
		if err != nil {
			t.Fatalf("Marshal output does not parse: %v\n%s", err, out)
		}
		back.XMLName = r.XMLName
		if !reflect.DeepEqual(back, r) {
			t.Fatalf("round trip changed the description:\n got %+v\nwant %+v", back, r)
		}
	})
}

// isAbsoluteRef is the hand-written form of ^[A-Za-z][A-Za-z0-9+.-]*://:
// a scheme, then "://"; colons in a relative path are not a scheme.
func TestIsAbsoluteRef(t *testing.T) {
	for ref, want := range map[string]bool{
		"http://192.168.1.1:5000/ctl":       true,
		"HTTPS://router/ctl":                true,
		"svn+ssh.x-y://h/p":                 true,
		"uuid:abc/WANPPPConnection:1":       false,
		"/uuid:abc/WANPPPConnection:1":      false,
		"uuid:abc://x":                      false,
		"1http://h/":                        false,
		"://h/":                             false,
		"ctl":                               false,
		"/upnp/control?x=http://elsewhere/": false,
		"http:/one-slash":                   false,
		"h ttp://h/":                        false,
	} {
		if got := isAbsoluteRef(ref); got != want {
			t.Errorf("isAbsoluteRef(%q) = %v, want %v", ref, got, want)
		}
	}
}
