package igd

import (
	"encoding/xml"
	"errors"
	"io"
	nethttp "net/http"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/portfwd/portfwd/upnp"
)

// scpdDoc is the part of an SCPD the consistency tests read.
type scpdDoc struct {
	XMLName xml.Name `xml:"urn:schemas-upnp-org:service-1-0 scpd"`
	Spec    struct {
		Major int `xml:"major"`
		Minor int `xml:"minor"`
	} `xml:"specVersion"`
	Actions []struct {
		Name string `xml:"name"`
		Args []struct {
			Name      string `xml:"name"`
			Direction string `xml:"direction"`
			Related   string `xml:"relatedStateVariable"`
		} `xml:"argumentList>argument"`
	} `xml:"actionList>action"`
	Vars []scpdVar `xml:"serviceStateTable>stateVariable"`
}

type scpdVar struct {
	Name       string   `xml:"name"`
	SendEvents string   `xml:"sendEvents,attr"`
	DataType   string   `xml:"dataType"`
	Allowed    []string `xml:"allowedValueList>allowedValue"`
}

func (d *scpdDoc) args(action, direction string) []string {
	for _, a := range d.Actions {
		if a.Name == action {
			var out []string
			for _, arg := range a.Args {
				if arg.Direction == direction {
					out = append(out, arg.Name)
				}
			}
			return out
		}
	}
	return nil
}

func parseSCPD(t *testing.T, data []byte) *scpdDoc {
	t.Helper()
	var d scpdDoc
	if err := xml.Unmarshal(data, &d); err != nil {
		t.Fatalf("SCPD does not parse: %v", err)
	}
	return &d
}

// lenientArgs are the in arguments the handler lets a control point leave
// out, with the defaults TestLenientArguments checks.
var lenientArgs = []string{"RemoteHost", "NewRemoteHost", "NewEnabled", "NewPortMappingDescription", "NewLeaseDuration", "NewManage", "NewInternalClient"}

// sampleArgs holds a valid value for every in argument name.
var sampleArgs = map[string]string{
	"NewConnectionType":           "IP_Routed",
	"NewPortMappingIndex":         "0",
	"NewRemoteHost":               "",
	"NewExternalPort":             "8080",
	"NewProtocol":                 "TCP",
	"NewInternalPort":             "80",
	"NewInternalClient":           "127.0.0.1",
	"NewEnabled":                  "1",
	"NewPortMappingDescription":   "scpd test",
	"NewLeaseDuration":            "3600",
	"NewStartPort":                "1",
	"NewEndPort":                  "65535",
	"NewManage":                   "1",
	"NewNumberOfPorts":            "0",
	"NewDefaultConnectionService": "", // filled from the server
	// WANIPv6FirewallControl:1
	"RemoteHost":     "",
	"RemotePort":     "0",
	"InternalClient": "2001:db8:77::2",
	"InternalPort":   "8080",
	"Protocol":       "6",
	"LeaseTime":      "3600",
	"UniqueID":       "1", // the fake's pinhole with traffic
	"NewLeaseTime":   "3600",
}

// TestSCPDMatchesHandler checks each served SCPD against the handler, both
// ways: the same actions; every action, called with its in arguments,
// answers exactly its out arguments in SCPD order; leaving out any in
// argument the handler requires is 402; and every argument relates to a
// declared state variable.
func TestSCPDMatchesHandler(t *testing.T) {
	for _, version := range []int{1, 2} {
		srv, s := newTestServer(t, version, newFake(), nil)
		_, services := s.Paths()
		for i, svc := range services {
			def := &s.services[i]
			resp, err := nethttp.Get(srv.URL + svc.SCPDURL)
			if err != nil {
				t.Fatal(err)
			}
			served, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			doc := parseSCPD(t, served)
			where := svc.ServiceType
			if doc.Spec.Major != 1 {
				t.Errorf("%s: specVersion %d.%d", where, doc.Spec.Major, doc.Spec.Minor)
			}

			var inSCPD, inHandler []string
			for _, a := range doc.Actions {
				inSCPD = append(inSCPD, a.Name)
			}
			for _, a := range def.actions {
				inHandler = append(inHandler, a.name)
			}
			if !slices.Equal(inSCPD, inHandler) {
				t.Errorf("%s: SCPD lists %v\nhandler implements %v", where, inSCPD, inHandler)
			}

			vars := map[string]bool{}
			for _, v := range doc.Vars {
				if vars[v.Name] {
					t.Errorf("%s: state variable %s declared twice", where, v.Name)
				}
				vars[v.Name] = true
				if v.SendEvents != "yes" && v.SendEvents != "no" {
					t.Errorf("%s: %s sendEvents %q", where, v.Name, v.SendEvents)
				}
				if !slices.Contains([]string{"string", "boolean", "ui2", "ui4"}, v.DataType) {
					t.Errorf("%s: %s has data type %q", where, v.Name, v.DataType)
				}
			}
			for _, a := range doc.Actions {
				for _, arg := range a.Args {
					if !vars[arg.Related] {
						t.Errorf("%s: %s argument %s relates to undeclared %q", where, a.Name, arg.Name, arg.Related)
					}
					if arg.Direction != "in" && arg.Direction != "out" {
						t.Errorf("%s: %s argument %s has direction %q", where, a.Name, arg.Name, arg.Direction)
					}
				}
			}

			for _, a := range doc.Actions {
				call := func(skip string) (upnp.Args, error) {
					f := newFake()
					f.table = []PortMapping{{ExternalPort: 8080, Protocol: TCP, InternalPort: 80, InternalClient: "127.0.0.1", Enabled: true}}
					f.owners[f.table[0].Key()] = netip.MustParseAddr("127.0.0.1")
					srv, s := newTestServer(t, version, f, nil)
					var args []string
					for _, name := range doc.args(a.Name, "in") {
						v, ok := sampleArgs[name]
						if !ok {
							t.Fatalf("%s: no sample value for %s", where, name)
						}
						if name == "NewDefaultConnectionService" {
							v = s.defaultConnectionService()
						}
						if name != skip {
							args = append(args, name, v)
						}
					}
					return soapCall(t, srv, def.controlPath, svc.ServiceType, a.Name, args...)
				}
				out, err := call("")
				if err != nil {
					t.Errorf("%s %s with valid arguments: %v", where, a.Name, err)
					continue
				}
				var names []string
				for _, o := range out {
					names = append(names, o.Name)
				}
				if want := doc.args(a.Name, "out"); !slices.Equal(names, want) {
					t.Errorf("%s %s answered %v, SCPD says %v", where, a.Name, names, want)
				}
				for _, in := range doc.args(a.Name, "in") {
					if slices.Contains(lenientArgs, in) {
						continue
					}
					if _, err := call(in); upnp.ErrorCode(err) != CodeInvalidArgs {
						t.Errorf("%s %s without %s: %v, want 402", where, a.Name, in, err)
					}
				}
			}
		}
	}
}

// TestQueryStateVariableMatchesSCPD checks that QueryStateVariable answers
// only variables the SCPD declares, and answers the ones with a value.
func TestQueryStateVariableMatchesSCPD(t *testing.T) {
	answered := map[string][]string{
		URNWANIPConnection1: {"ConnectionType", "PossibleConnectionTypes", "ConnectionStatus", "Uptime", "LastConnectionError",
			"RSIPAvailable", "NATEnabled", "ExternalIPAddress", "PortMappingNumberOfEntries"},
		URNWANIPConnection2: {"ConnectionType", "PossibleConnectionTypes", "ConnectionStatus", "Uptime", "LastConnectionError",
			"RSIPAvailable", "NATEnabled", "ExternalIPAddress", "PortMappingNumberOfEntries", "SystemUpdateID"},
		URNWANCommonInterfaceConfig1: {"WANAccessType", "Layer1UpstreamMaxBitRate", "Layer1DownstreamMaxBitRate", "PhysicalLinkStatus",
			"TotalBytesSent", "TotalBytesReceived", "TotalPacketsSent", "TotalPacketsReceived"},
		URNLayer3Forwarding1:          {"DefaultConnectionService"},
		ServiceWANIPv6FirewallControl: {"FirewallEnabled", "InboundPinholeAllowed"},
	}
	for _, version := range []int{1, 2} {
		srv, s := newTestServer(t, version, newFake(), nil)
		for i := range s.services {
			def := &s.services[i]
			doc := parseSCPD(t, []byte(def.scpd))
			want := answered[def.serviceType()]
			for _, v := range doc.Vars {
				out, err := soapCall(t, srv, def.controlPath, controlURN, "QueryStateVariable", "varName", v.Name)
				switch {
				case slices.Contains(want, v.Name):
					if err != nil || len(out) != 1 || out[0].Name != "return" {
						t.Errorf("%s %s: %+v, %v", def.serviceType(), v.Name, out, err)
					} else if len(v.Allowed) > 0 && !slices.Contains(v.Allowed, out[0].Value) {
						t.Errorf("%s %s = %q, not in its allowed values %v", def.serviceType(), v.Name, out[0].Value, v.Allowed)
					}
				case upnp.ErrorCode(err) != codeInvalidVar:
					t.Errorf("%s %s: %+v, %v; want 404", def.serviceType(), v.Name, out, err)
				}
			}
			for _, name := range want {
				if !slices.ContainsFunc(doc.Vars, func(v scpdVar) bool { return v.Name == name }) {
					t.Errorf("%s: answers %s, which its SCPD does not declare", def.serviceType(), name)
				}
			}
		}
	}
}

// TestSCPDServedVerbatim checks the documents are served as written and
// are well-formed XML throughout, not just where the struct above looks.
func TestSCPDServedVerbatim(t *testing.T) {
	for _, d := range serviceDefs {
		dec := xml.NewDecoder(strings.NewReader(d.scpd))
		for {
			_, err := dec.Token()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", d.serviceType(), err)
			}
		}
	}
}

// TestEventedVariables checks that the initial event of every service
// carries exactly the variables its SCPD marks evented, with their values.
func TestEventedVariables(t *testing.T) {
	for _, version := range []int{1, 2} {
		f := newFake()
		f.table = []PortMapping{{ExternalPort: 1, Protocol: TCP, InternalPort: 1, InternalClient: "127.0.0.1"}}
		f.updateID = 7
		_, s := newTestServer(t, version, f, nil)
		_, services := s.Paths()
		for i, svc := range services {
			var want []string
			for _, v := range parseSCPD(t, []byte(s.services[i].scpd)).Vars {
				if v.SendEvents == "yes" {
					want = append(want, v.Name)
				}
			}
			vars := s.EventedVariables(t.Context(), svc.EventSubURL)
			var got []string
			for _, v := range vars {
				got = append(got, v.Name)
			}
			if !slices.Equal(got, want) {
				t.Errorf("v%d %s: evented %v, SCPD says %v", version, svc.ServiceType, got, want)
			}
			values := upnp.Args(vars)
			switch svc.ServiceType {
			case URNWANIPConnection1, URNWANIPConnection2:
				if values.Value("ConnectionStatus") != "Connected" || values.Value("ExternalIPAddress") != "203.0.113.7" ||
					values.Value("PortMappingNumberOfEntries") != "1" || (version == 2 && values.Value("SystemUpdateID") != "7") {
					t.Errorf("v%d: WANIPConnection initial event %+v", version, vars)
				}
			case URNWANCommonInterfaceConfig1:
				if values.Value("PhysicalLinkStatus") != "Up" {
					t.Errorf("v%d: WANCommonInterfaceConfig initial event %+v", version, vars)
				}
			}
		}
		if s.EventedVariables(t.Context(), "/evt/nothing") != nil {
			t.Errorf("EventedVariables of an unknown path is not nil")
		}
	}
	// Without TableInfo, the table's variables are left out.
	_, s := newTestServer(t, 2, nil, func(c *ServerConfig) { c.Service = plainService{newFake()} })
	for _, v := range s.EventedVariables(t.Context(), WANIPConnectionEventPath) {
		if v.Name == "PortMappingNumberOfEntries" || v.Name == "SystemUpdateID" {
			t.Errorf("evented %s without TableInfo", v.Name)
		}
	}
}

// plainService hides the fake's TableInfo methods.
type plainService struct{ Service }

// TestQueryTableWithoutTableInfo checks that the table's variables are
// 404 when the Service cannot count its table.
func TestQueryTableWithoutTableInfo(t *testing.T) {
	srv, _ := newTestServer(t, 2, nil, func(c *ServerConfig) { c.Service = plainService{newFake()} })
	for _, name := range []string{"PortMappingNumberOfEntries", "SystemUpdateID"} {
		if _, err := soapCall(t, srv, WANIPConnectionControlPath, controlURN, "QueryStateVariable", "varName", name); upnp.ErrorCode(err) != codeInvalidVar {
			t.Errorf("QueryStateVariable %s without TableInfo: %v, want 404", name, err)
		}
	}
}
