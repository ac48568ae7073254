package portmap

import (
	"context"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/portfwd/portfwd/igd"
	"github.com/portfwd/portfwd/igd/igdtest"
	"github.com/portfwd/portfwd/internal/testenv"
	"github.com/portfwd/portfwd/upnp"
)

// routersDir holds the descriptions and SOAP answers of real routers.
var routersDir = filepath.Join(testenv.SharedDir(), "routers") // see internal/testenv

// toFake is an HTTP client that takes every request, whatever host its URL
// names, to the fake on loopback: real descriptions carry their routers'
// own addresses (URLBase, absolute control URLs), and nothing may leave
// this host.
func toFake(srv *igdtest.Server) *http.Client {
	addr := strings.TrimPrefix(strings.TrimSuffix(srv.Location, "/rootDesc.xml"), "http://")
	return &http.Client{Transport: &http.Transport{
		Proxy: nil,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
	}}
}

// envelope is a SOAP answer carrying one argument.
func envelope(serviceType, action, name, value string) []byte {
	return upnp.AppendEnvelope(nil, serviceType, action+"Response", upnp.Args{{Name: name, Value: value}})
}

// addressFault is a way GetExternalIPAddress fails on real routers.
type addressFault struct {
	name  string
	fault igdtest.Fault
	// problem is what Info.Problem must say.
	problem string
}

var addressFaults = []addressFault{
	// A WAN link that is down: miniupnpd, and many others, fault with 501.
	{"UPnPError 501 under HTTP 500", igdtest.Fault{Action: "GetExternalIPAddress", Code: 501}, "501"},
	// A router that lacks the action (or names it otherwise).
	{"UPnPError 401", igdtest.Fault{Action: "GetExternalIPAddress", Code: 401}, "401"},
	// A web server that answers the action with a bare HTTP error.
	{"HTTP 501 without SOAP", igdtest.Fault{Action: "GetExternalIPAddress", HTTPStatus: 501}, "501"},
	{"HTTP 500 without SOAP", igdtest.Fault{Action: "GetExternalIPAddress", HTTPStatus: 500}, "500"},
	// miniupnpd without a usable WAN address answers an empty one.
	{"empty address", igdtest.Fault{Action: "GetExternalIPAddress",
		Raw: envelope(igd.URNWANIPConnection1, "GetExternalIPAddress", "NewExternalIPAddress", "")}, "no address"},
}

// TestRealRoutersWhoseAddressRequestFailsAreKept serves each real router's
// description, with GetExternalIPAddress failing in each way real routers
// fail, and requires what upnpc does ("Found a (not connected?) IGD"), and
// more: the gateway is found, Info gives the whole description and says
// what failed, and listing and adding are still attempted.
func TestRealRoutersWhoseAddressRequestFailsAreKept(t *testing.T) {
	entries, err := os.ReadDir(testenv.Shared(t, "routers"))
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	for _, e := range entries {
		if !e.IsDir() || strings.HasPrefix(e.Name(), "_") {
			continue
		}
		desc, err := os.ReadFile(filepath.Join(routersDir, e.Name(), "rootDesc.xml"))
		if err != nil {
			t.Fatal(err)
		}
		root, err := upnp.ParseDescription(desc, "http://192.0.2.1/rootDesc.xml")
		if err != nil {
			t.Fatalf("%s: %v", e.Name(), err)
		}
		if len(igd.ConnectionServices(root)) == 0 {
			continue // no connection service: not an Internet gateway (pannaway-rg-210)
		}
		seen++
		cases := append([]addressFault{{name: "recorded answer"}}, addressFaults...)
		for _, fc := range cases {
			t.Run(e.Name()+"/"+fc.name, func(t *testing.T) {
				opts := igdtest.Options{Description: desc}
				if fc.fault.Action != "" {
					opts.Faults = []igdtest.Fault{fc.fault}
				} else if b, err := os.ReadFile(filepath.Join(routersDir, e.Name(), "soap-GetExternalIPAddress.xml")); err == nil {
					opts.Bodies = map[string][]byte{"GetExternalIPAddress": b}
				}
				srv := igdtest.NewServer(t, opts)
				o := testOptions(t)
				o.GatewayURL, o.HTTPClient = srv.Location, toFake(srv)
				gws, err := Discover(ctxT(t), o)
				if err != nil {
					t.Fatalf("Discover: %v; the router answers, so it must be kept", err)
				}
				g := gws[0]
				info, err := g.Info(ctxT(t))
				if err != nil {
					t.Fatalf("Info: %v", err)
				}
				if info.FriendlyName != root.Device.FriendlyName || info.ModelName != root.Device.ModelName || info.UDN != root.Device.UDN || len(info.Services) == 0 {
					t.Errorf("Info lost the description: %+v", info)
				}
				if fc.fault.Action == "" {
					if !info.Connected || info.Problem != "" || !info.ExternalIP.IsValid() {
						t.Errorf("a router that answers is connected: %+v", info)
					}
				} else if info.Connected || !strings.Contains(info.Problem, "GetExternalIPAddress") || !strings.Contains(info.Problem, fc.problem) {
					t.Errorf("Info.Problem = %q (connected %v), want the failed request and %q", info.Problem, info.Connected, fc.problem)
				}
				before := len(srv.Requests())
				if _, err := g.List(ctxT(t), nil); err != nil {
					t.Errorf("List: %v", err)
				}
				client := netip.MustParseAddr("192.168.1.20")
				m, err := g.Add(ctxT(t), Request{Protocol: TCP, InternalPort: 8080, ExternalPort: 18080, InternalClient: client, Description: "t"})
				if err != nil {
					t.Errorf("Add: %v", err)
				} else if !m.ReadBack || m.InternalClient != "192.168.1.20" {
					t.Errorf("Add = %+v, want it read back", m)
				}
				acts := actionsSince(srv, before)
				if !slices.Contains(acts, "AddPortMapping") ||
					!(slices.Contains(acts, "GetGenericPortMappingEntry") || slices.Contains(acts, "GetListOfPortMappings")) {
					t.Errorf("listing and adding were not attempted: %v", acts)
				}
			})
		}
	}
	if seen < 15 {
		t.Errorf("only %d routers with a connection service in the corpus", seen)
	}
}

func actionsSince(srv *igdtest.Server, n int) []string {
	var out []string
	for _, r := range srv.Requests()[n:] {
		out = append(out, r.Action)
	}
	return out
}

// TestOptionalActionsNeverFatal: GetStatusInfo, GetConnectionTypeInfo and
// WANCommonInterfaceConfig's GetCommonLinkProperties fail; the gateway is
// connected all the same, and the fields they would fill stay empty.
func TestOptionalActionsNeverFatal(t *testing.T) {
	srv := igdtest.NewServer(t, igdtest.Options{Version: 1, ExternalIP: "198.51.100.7", Faults: []igdtest.Fault{
		{Action: "GetStatusInfo", Code: 401},
		{Action: "GetConnectionTypeInfo", Code: 602},
		{Action: "GetCommonLinkProperties", HTTPStatus: 500},
	}})
	o := testOptions(t)
	o.GatewayURL = srv.Location
	gws, err := Discover(ctxT(t), o)
	if err != nil {
		t.Fatal(err)
	}
	info, err := gws[0].Info(ctxT(t))
	if err != nil || !info.Connected || info.Problem != "" || info.ExternalIP.String() != "198.51.100.7" ||
		info.ConnectionStatus != "" || info.ConnectionType != "" || info.LinkType != "" {
		t.Errorf("Info = %+v, %v", info, err)
	}
}

// TestFailingGatewayRankedBelowWorkingOnes: a UPnP router whose address
// request fails and a working NAT-PMP router answer; the working one comes
// first, and the failing one is still returned.
func TestFailingGatewayRankedBelowWorkingOnes(t *testing.T) {
	srv := igdtest.NewServer(t, igdtest.Options{Faults: []igdtest.Fault{{Action: "GetExternalIPAddress", Code: 501}}})
	pmp, _ := startPMP(t)
	o := testOptions(t)
	o.GatewayURL, o.NATPMPServer = srv.Location, pmp
	o.Methods = []Method{UPnP, NATPMP}
	gws, err := Discover(ctxT(t), o)
	if err != nil {
		t.Fatal(err)
	}
	if len(gws) != 2 || gws[0].Method() != NATPMP || gws[1].Method() != UPnP {
		var got []Method
		for _, g := range gws {
			got = append(got, g.Method())
		}
		t.Fatalf("gateways %v, want the working NAT-PMP one, then the failing UPnP one", got)
	}
	// A failing gateway alone is still found, promptly.
	o.Methods, o.NATPMPServer = []Method{UPnP}, netip.AddrPort{}
	start := time.Now()
	if gws, err := Discover(ctxT(t), o); err != nil || len(gws) != 1 {
		t.Fatalf("failing gateway alone: %v, %v", gws, err)
	}
	if d := time.Since(start); d > natpmpGrace+time.Second {
		t.Errorf("Discover took %v", d)
	}
}
