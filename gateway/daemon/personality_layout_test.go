package daemon

import (
	"context"
	"io"
	nethttp "net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	http "github.com/portfwd/portfwd/internal/httpx"
	"github.com/portfwd/portfwd/internal/httpx/httpxtest"

	"github.com/portfwd/portfwd/gateway"
	"github.com/portfwd/portfwd/igd"
	"github.com/portfwd/portfwd/internal/testenv"
	"github.com/portfwd/portfwd/upnp"
)

// layoutEntry is one service of a description, as a control point sees
// it: its type and ID, and the path and query its URLs resolve to.
type layoutEntry struct {
	Type, ID, SCPD, Control, Event string
}

// connectionLayout reads from a parsed description the first
// WANIPConnection or WANPPPConnection, WANCommonInterfaceConfig and
// Layer3Forwarding of the schemas-upnp-org domain, in document order,
// keyed by "conn", "common" and "l3f".
func connectionLayout(t *testing.T, root *upnp.Root) map[string]layoutEntry {
	t.Helper()
	out := map[string]layoutEntry{}
	root.Walk(func(_ []*upnp.Device, s *upnp.Service) bool {
		domain, typ, _, ok := igd.ParseServiceType(s.ServiceType)
		if !ok || domain != "schemas-upnp-org" {
			return true
		}
		role := map[string]string{"WANIPConnection": "conn", "WANPPPConnection": "conn", "WANCommonInterfaceConfig": "common", "Layer3Forwarding": "l3f"}[typ]
		if role == "" || out[role].Type != "" {
			return true
		}
		path := func(ref string) string {
			abs, err := root.Resolve(ref)
			if err != nil {
				t.Fatalf("%s: %v", s.ServiceType, err)
			}
			u, _ := url.Parse(abs)
			return u.RequestURI()
		}
		out[role] = layoutEntry{Type: s.ServiceType, ID: s.ServiceID, SCPD: path(s.SCPDURL), Control: path(s.ControlURL), Event: path(s.EventSubURL)}
		return true
	})
	return out
}

// TestPersonalityLayoutsMatchCorpus serves every personality's
// description and checks, through the upnp package's parser, that a
// control point finds there the services of the real device's description
// in shared/routers: the same types, service IDs and URL paths (what
// --personality promises); and that the paths answer: the SCPD to GET,
// the control URL to a SOAP action in the service's own namespace, the
// event URL to SUBSCRIBE.
func TestPersonalityLayoutsMatchCorpus(t *testing.T) {
	for _, p := range Personalities {
		t.Run(p.Slug, func(t *testing.T) {
			layout, ok := personalityLayouts[p.Slug]
			if p.Unservable != "" {
				if ok {
					t.Fatalf("unservable, yet it has a layout")
				}
				return
			}
			if !ok {
				t.Fatalf("no layout")
			}
			data, err := os.ReadFile(testenv.Shared(t, "routers", p.Slug, "rootDesc.xml"))
			if err != nil {
				t.Fatal(err)
			}
			// The DIR-655's fixture has an unfilled printf template as its
			// control URL's host; only the path matters here.
			data = []byte(strings.ReplaceAll(string(data), "%s:%d", "192.168.0.1:80"))
			descPath := layout.DescriptionPath
			if descPath == "" {
				descPath = igd.DescriptionPath
			}
			want, err := upnp.ParseDescription(data, "http://192.168.1.1:5000"+descPath)
			if err != nil {
				t.Fatalf("corpus: %v", err)
			}

			srv, err := igd.NewServer(igd.ServerConfig{
				Service: &upnpService{core: nil}, Version: p.IGD, UUID: "uuid:2f402f80-da50-11e1-9b23-001788255acc",
				FriendlyName: p.FriendlyName, Manufacturer: p.Manufacturer, ModelName: p.ModelName, ModelNumber: p.ModelNumber,
				Layout: &layout,
			})
			if err != nil {
				t.Fatal(err)
			}
			hs := httpxtest.NewServer(srv)
			defer hs.Close()
			gotPath, _ := srv.Paths()
			if gotPath != descPath {
				t.Errorf("description served at %s, want %s", gotPath, descPath)
			}
			got, err := upnp.FetchDescription(context.Background(), hs.Client(), hs.URL+descPath)
			if err != nil {
				t.Fatalf("served description: %v", err)
			}
			gl, wl := connectionLayout(t, got), connectionLayout(t, want)
			for _, role := range []string{"conn", "common", "l3f"} {
				if gl[role] != wl[role] {
					t.Errorf("%s:\n served %+v\n device %+v", role, gl[role], wl[role])
				}
			}
			if got.Device.DeviceType != want.Device.DeviceType {
				t.Errorf("root device type %s, the device's %s", got.Device.DeviceType, want.Device.DeviceType)
			}

			for role, e := range gl {
				res, err := nethttp.Get(hs.URL + e.SCPD)
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(res.Body)
				res.Body.Close()
				if res.StatusCode != http.StatusOK || !strings.Contains(string(body), "<scpd") {
					t.Errorf("%s: GET %s: %s", role, e.SCPD, res.Status)
				}
				req, _ := nethttp.NewRequest("SUBSCRIBE", hs.URL+e.Event, nil)
				res, err = nethttp.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				res.Body.Close()
				if res.StatusCode != http.StatusServiceUnavailable { // no Events handler: eventing refused, but routed
					t.Errorf("%s: SUBSCRIBE %s: %s", role, e.Event, res.Status)
				}
			}
			conn := gl["conn"]
			if strings.Contains(conn.Type, "WANPPPConnection") {
				res, err := nethttp.Get(hs.URL + conn.SCPD)
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(res.Body)
				res.Body.Close()
				if !strings.Contains(string(body), "PPPoE_Relay") {
					t.Errorf("WANPPPConnection's SCPD lists IP connection types")
				}
			}
			for _, tc := range []struct {
				serviceType string
				status      int
			}{
				{conn.Type, http.StatusOK},
				// Another service's namespace on this control URL is 401.
				{strings.NewReplacer("WANPPPConnection", "WANIPConnection", "WANIPConnection", "WANPPPConnection").Replace(conn.Type), http.StatusInternalServerError},
			} {
				body := `<?xml version="1.0"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" s:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"><s:Body>` +
					`<u:GetNATRSIPStatus xmlns:u="` + tc.serviceType + `"></u:GetNATRSIPStatus></s:Body></s:Envelope>`
				req, _ := nethttp.NewRequest(http.MethodPost, hs.URL+conn.Control, strings.NewReader(body))
				req.Header.Set("Content-Type", `text/xml; charset="utf-8"`)
				req.Header.Set("SOAPAction", `"`+tc.serviceType+`#GetNATRSIPStatus"`)
				res, err := nethttp.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				out, _ := io.ReadAll(res.Body)
				res.Body.Close()
				if res.StatusCode != tc.status {
					t.Errorf("POST %s as %s: %s %s", conn.Control, tc.serviceType, res.Status, out)
				}
				if tc.status == http.StatusOK && !strings.Contains(string(out), `xmlns:u="`+tc.serviceType+`"`) {
					t.Errorf("the answer is not in the service's namespace: %s", out)
				}
			}
		})
	}
}

// TestDefaultLayoutUnchanged pins what a gateway without a personality
// serves: miniupnpd's paths and WANIPConnection.
func TestDefaultLayoutUnchanged(t *testing.T) {
	for _, v := range []int{1, 2} {
		srv, err := igd.NewServer(igd.ServerConfig{Service: &upnpService{}, Version: v, UUID: "uuid:2f402f80-da50-11e1-9b23-001788255acc"})
		if err != nil {
			t.Fatal(err)
		}
		desc, svcs := srv.Paths()
		if desc != "/rootDesc.xml" {
			t.Errorf("IGD:%d: description at %s", v, desc)
		}
		var conn upnp.Service
		for _, s := range svcs {
			if strings.Contains(s.ServiceType, "Connection:") {
				conn = s
			}
		}
		want := upnp.Service{ServiceType: "urn:schemas-upnp-org:service:WANIPConnection:" + string(rune('0'+v)), ServiceID: "urn:upnp-org:serviceId:WANIPConn1",
			SCPDURL: "/WANIPCn.xml", ControlURL: "/ctl/IPConn", EventSubURL: "/evt/IPConn"}
		if conn.ServiceType != want.ServiceType || conn.ServiceID != want.ServiceID || conn.SCPDURL != want.SCPDURL || conn.ControlURL != want.ControlURL || conn.EventSubURL != want.EventSubURL {
			t.Errorf("IGD:%d: connection %+v, want %+v", v, conn, want)
		}
	}
}

// TestDaemonServesEveryPersonality runs the whole daemon as every
// personality that can be served: a client finds its connection service
// at the device's description path, maps a port through it (the backend
// sees the rule), and a GENA subscription on the device's event path gets
// the initial event and the one the new mapping causes.
func TestDaemonServesEveryPersonality(t *testing.T) {
	needQuirks(t)
	for _, p := range Personalities {
		if p.Unservable != "" {
			continue
		}
		t.Run(p.Slug, func(t *testing.T) {
			cfg := testConfig(t)
			cfg.Personality = p.Slug
			cfg.QuirksOnPublic = true
			r := start(t, cfg)
			layout := personalityLayouts[p.Slug]
			u := r.DescriptionURLs()[0]
			if layout.DescriptionPath != "" && !strings.HasSuffix(u, layout.DescriptionPath) {
				t.Errorf("description URL %s, want the path %s", u, layout.DescriptionPath)
			}
			c := r.igdClient(t, "127.0.0.1")
			if c.ServiceType != layout.Connection.Type || !strings.HasSuffix(c.ControlURL, layout.Connection.Control) {
				t.Errorf("client found %s at %s, want %s at %s", c.ServiceType, c.ControlURL, layout.Connection.Type, layout.Connection.Control)
			}

			events := make(chan []upnp.Arg, 8)
			cb := httpxtest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
				body, _ := io.ReadAll(req.Body)
				if vars, err := upnp.ParsePropertySet(body); err == nil {
					events <- vars
				}
			}))
			defer cb.Close()
			base, _ := url.Parse(u)
			req, _ := nethttp.NewRequest("SUBSCRIBE", base.Scheme+"://"+base.Host+layout.Connection.Event, nil)
			req.Header.Set("CALLBACK", "<"+cb.URL+"/>")
			req.Header.Set("NT", "upnp:event")
			res, err := nethttp.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if res.StatusCode != http.StatusOK {
				t.Fatalf("SUBSCRIBE %s: %s", layout.Connection.Event, res.Status)
			}
			entries := func() string {
				select {
				case vars := <-events:
					for _, v := range vars {
						if v.Name == "PortMappingNumberOfEntries" {
							return v.Value
						}
					}
					return "(absent)"
				case <-time.After(5 * time.Second):
					return "(no event)"
				}
			}
			if n := entries(); n != "0" {
				t.Errorf("initial event: PortMappingNumberOfEntries %s", n)
			}
			m := igd.PortMapping{ExternalPort: 20000, Protocol: "TCP", InternalPort: 8080, InternalClient: "127.0.0.1", Enabled: true, Description: "persona"}
			if !slices.Contains(p.Quirks, "permanent-only") {
				m.LeaseDuration = time.Hour
			}
			if err := c.AddPortMapping(context.Background(), m); err != nil {
				t.Fatalf("AddPortMapping through %s: %v", layout.Connection.Type, err)
			}
			if rule, ok := r.memory().Rule(gateway.Key{Protocol: gateway.TCP, ExternalPort: 20000}); !ok || rule.InternalPort != 8080 {
				t.Errorf("backend rule = %v, %v", rule, ok)
			}
			if n := entries(); n != "1" {
				t.Errorf("event after the mapping: PortMappingNumberOfEntries %s", n)
			}
		})
	}
}
