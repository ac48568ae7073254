package igd

import (
	nethttp "net/http"
	"strings"
	"testing"

	"github.com/portfwd/portfwd/internal/httpx/httpxtest"
)

// pppLayout is a Linksys-style layout: WANPPPConnection:1, query-style
// control paths, and control and event on one path (AVM's habit).
func pppLayout() *Layout {
	return &Layout{
		DescriptionPath: "/dyndev/uuid:abc",
		Connection: ServiceLayout{Type: "urn:schemas-upnp-org:service:WANPPPConnection:1", ID: "urn:upnp-org:serviceId:WANPPPConn1",
			SCPD: "/pppcfg.xml", Control: "/control?WANPPPConnection", Event: "/control?WANPPPConnection"},
		Common: &ServiceLayout{Type: "urn:schemas-upnp-org:service:WANCommonInterfaceConfig:1", ID: "urn:upnp-org:serviceId:WANCommonIFC1",
			SCPD: "/cmnicfg.xml", Control: "/control?WANCommonInterfaceConfig", Event: "/event?WANCommonInterfaceConfig"},
	}
}

func TestLayoutRoutes(t *testing.T) {
	s, err := NewServer(ServerConfig{Service: newFake(), Version: 1, UUID: testUUID, Layout: pppLayout()})
	if err != nil {
		t.Fatal(err)
	}
	hs := httpxtest.NewServer(s)
	defer hs.Close()
	for _, tc := range []struct {
		method, path string
		status       int
		allow        string
	}{
		{"GET", "/dyndev/uuid:abc", 200, ""},
		{"GET", "/rootDesc.xml", 404, ""}, // moved
		{"GET", "/ctl/IPConn", 404, ""},
		{"GET", "/L3F.xml", 404, ""}, // Layer3Forwarding left out
		{"GET", "/pppcfg.xml", 200, ""},
		{"SUBSCRIBE", "/control?WANPPPConnection", 503, ""},                       // routed to events (none here)
		{"GET", "/control?WANPPPConnection", 405, "POST, SUBSCRIBE, UNSUBSCRIBE"}, // control and event share it
		{"GET", "/control?WANCommonInterfaceConfig", 405, "POST"},                 // the query selects the route
		{"GET", "/control?Nothing", 404, ""},
		{"PUT", "/event?WANCommonInterfaceConfig", 405, "SUBSCRIBE, UNSUBSCRIBE"},
	} {
		req, _ := nethttp.NewRequest(tc.method, hs.URL+tc.path, nil)
		res, err := nethttp.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != tc.status || res.Header.Get("Allow") != tc.allow {
			t.Errorf("%s %s: %d, Allow %q; want %d, %q", tc.method, tc.path, res.StatusCode, res.Header.Get("Allow"), tc.status, tc.allow)
		}
	}
	desc := string(s.Description(""))
	for _, want := range []string{"<serviceType>urn:schemas-upnp-org:service:WANPPPConnection:1</serviceType>", "<controlURL>/control?WANPPPConnection</controlURL>",
		"<serviceId>urn:upnp-org:serviceId:WANPPPConn1</serviceId>"} {
		if !strings.Contains(desc, want) {
			t.Errorf("the description lacks %s:\n%s", want, desc)
		}
	}
	if strings.Contains(desc, "WANIPConnection") || strings.Contains(desc, "Layer3Forwarding") {
		t.Errorf("the description keeps a service the layout left out:\n%s", desc)
	}
	if got := s.defaultConnectionService(); !strings.HasSuffix(got, ",urn:upnp-org:serviceId:WANPPPConn1") {
		t.Errorf("DefaultConnectionService %q names another service", got)
	}
}

func TestLayoutRefused(t *testing.T) {
	for name, edit := range map[string]func(*Layout){
		"dslforum domain":   func(l *Layout) { l.Connection.Type = "urn:dslforum-org:service:WANPPPConnection:1" },
		"other service":     func(l *Layout) { l.Connection.Type = "urn:schemas-upnp-org:service:WANEthernetLinkConfig:1" },
		"common misplaced":  func(l *Layout) { l.Common.Type = "urn:schemas-upnp-org:service:Layer3Forwarding:1" },
		"relative path":     func(l *Layout) { l.Connection.SCPD = "pppcfg.xml" },
		"markup in path":    func(l *Layout) { l.Connection.Control = "/a<b" },
		"no service ID":     func(l *Layout) { l.Connection.ID = "" },
		"two controls":      func(l *Layout) { l.Common.Control = l.Connection.Control },
		"two SCPDs":         func(l *Layout) { l.Common.SCPD = l.Connection.SCPD },
		"SCPD on the root":  func(l *Layout) { l.Common.SCPD = l.DescriptionPath },
		"description space": func(l *Layout) { l.DescriptionPath = "/a b" },
	} {
		l := pppLayout()
		edit(l)
		if _, err := NewServer(ServerConfig{Service: newFake(), Version: 1, UUID: testUUID, Layout: l}); err == nil {
			t.Errorf("%s: accepted", name)
		} else if !strings.HasPrefix(err.Error(), "igd: ") {
			t.Errorf("%s: %v", name, err)
		}
	}
}
