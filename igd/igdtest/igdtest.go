// Package igdtest is a fake UPnP Internet Gateway Device for tests: an
// httptest server on 127.0.0.1 that serves a root description and answers
// SOAP control requests from an in-memory mapping table, with knobs for the
// quirks real routers have and a script of faults. It records every
// request so that tests can check what a client sent.
//
// It listens on loopback only and sends nothing on its own: no SSDP, no
// traffic to a real gateway.
package igdtest

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portfwd/portfwd/igd"
	"github.com/portfwd/portfwd/upnp"
)

// Options configures a fake IGD. The zero value is a well-behaved
// WANIPConnection:2 router with an empty table.
type Options struct {
	// Version is the WANIPConnection (or WANPPPConnection) version served:
	// 1 or 2. Zero means 2. The v2-only actions answer 401 on version 1.
	Version int
	// PPP serves WANPPPConnection instead of WANIPConnection.
	PPP bool
	// ExternalIP is GetExternalIPAddress's answer; "" means 203.0.113.1.
	ExternalIP string
	// Status is GetStatusInfo's NewConnectionStatus; "" means Connected.
	Status string
	// Mappings is the initial table, in index order.
	Mappings []igd.PortMapping

	// OutOfRangeCode is the fault GetGenericPortMappingEntry returns past
	// the end of the table; 0 means 713 (the spec's). DD-WRT answers 402.
	OutOfRangeCode int
	// OnlyPermanentLeases makes AddPortMapping and AddAnyPortMapping answer
	// 725 to any non-zero lease.
	OnlyPermanentLeases bool
	// RejectLeases makes them answer 402 to any non-zero lease, as a router
	// seen in the wild does.
	RejectLeases bool
	// RefuseRenewal makes AddPortMapping answer 718 when the key is
	// already mapped, even to the same internal client, as routers that
	// cannot update an entry in place do.
	RefuseRenewal bool
	// RepeatLastEntry makes GetGenericPortMappingEntry answer every index
	// past the end with the last entry instead of a fault.
	RepeatLastEntry bool
	// Faults are answered before anything else, in order; see Fault.
	Faults []Fault
	// Bodies answers an action with a fixed SOAP envelope, verbatim, such
	// as a reply captured from a real router. A body holding a Fault is
	// sent with status 500, any other with 200. Bodies take precedence over
	// the table but not over Faults.
	Bodies map[string][]byte
	// Description replaces the generated root description. Its control
	// URLs may point anywhere on the server: every POST is answered as a
	// control request for the action in its SOAPAction header.
	Description []byte

	// PermanentLease, when set, is the lease granted to a request for a
	// permanent mapping (lease 0), as miniupnpd's IGDv2 grants 604800 s.
	PermanentLease time.Duration
	// IgnoreEnabled makes AddPortMapping keep every mapping enabled
	// whatever NewEnabled says, as miniupnpd does.
	IgnoreEnabled bool
	// SecureMode refuses, with 718 as miniupnpd does, a mapping whose
	// internal client is not the address the request came from.
	SecureMode bool
}

// Fault is a scripted UPnP error.
type Fault struct {
	// Action is the action it answers.
	Action string
	// Code and Description are the UPnPError's; an empty Description means
	// the code's name.
	Code        int
	Description string
	// Raw, when non-nil, is sent verbatim with status 200 instead of a
	// fault: a truncated or garbage answer.
	Raw []byte
	// Times is how many calls it answers before it stops applying; 0 means
	// every call.
	Times int
	// Match, when non-nil, restricts the fault to calls whose arguments it
	// accepts.
	Match func(upnp.Args) bool
	// HTTPStatus, when set with Code 0 and no Raw, answers with that HTTP
	// status and a body that is no SOAP at all, as a router's web server
	// does for an action it lacks (501 Not Implemented, say).
	HTTPStatus int
}

// Request is one control request the server received.
type Request struct {
	Path       string
	SOAPAction string
	// Action is the element name in the envelope's Body.
	Action string
	Args   upnp.Args
}

// Server is a running fake IGD.
type Server struct {
	// Location is the URL of the root description.
	Location string
	// ControlURL, ServiceType and CommonControlURL are those of the
	// generated description.
	ControlURL       string
	ServiceType      string
	CommonControlURL string

	srv  *httptest.Server
	opts Options

	mu       sync.Mutex
	table    []igd.PortMapping
	requests []Request
	faults   []Fault
	used     []int
}

// NewServer starts a fake IGD and stops it when the test ends.
func NewServer(t testing.TB, opts Options) *Server {
	t.Helper()
	s := Start(opts)
	t.Cleanup(s.Close)
	return s
}

// Start starts a fake IGD; the caller must Close it. Use it where there is
// no testing.TB, as in examples.
func Start(opts Options) *Server {
	if opts.Version == 0 {
		opts.Version = 2
	}
	if opts.ExternalIP == "" {
		opts.ExternalIP = "203.0.113.1"
	}
	if opts.Status == "" {
		opts.Status = "Connected"
	}
	if opts.OutOfRangeCode == 0 {
		opts.OutOfRangeCode = igd.CodeSpecifiedArrayIndexInvalid
	}
	s := &Server{
		opts:   opts,
		table:  slices.Clone(opts.Mappings),
		faults: slices.Clone(opts.Faults),
		used:   make([]int, len(opts.Faults)),
	}
	kind := "WANIPConnection"
	if opts.PPP {
		kind = "WANPPPConnection"
	}
	s.ServiceType = fmt.Sprintf("urn:schemas-upnp-org:service:%s:%d", kind, opts.Version)
	s.srv = httptest.NewServer(http.HandlerFunc(s.serveHTTP))
	s.Location = s.srv.URL + "/rootDesc.xml"
	s.ControlURL = s.srv.URL + "/ctl/Conn"
	s.CommonControlURL = s.srv.URL + "/ctl/CmnIfCfg"
	return s
}

// Close shuts the server down.
func (s *Server) Close() { s.srv.Close() }

// Handler returns the server's HTTP handler, for clients that call it
// without a network (an in-memory http.RoundTripper, as tests under
// testing/synctest need).
func (s *Server) Handler() http.Handler { return http.HandlerFunc(s.serveHTTP) }

// Root returns the parsed root description, as a client would fetch it.
func (s *Server) Root() (*upnp.Root, error) {
	return upnp.ParseDescription(s.description(), s.Location)
}

// Client returns an igd.Client for the best service of the description,
// chosen by igd.ConnectionServices. It panics if there is none, which
// only a custom Description can cause.
func (s *Server) Client() *igd.Client {
	root, err := s.Root()
	if err != nil {
		panic("igdtest: " + err.Error())
	}
	refs := igd.ConnectionServices(root)
	if len(refs) == 0 {
		panic("igdtest: the description has no connection service")
	}
	return igd.NewClient(refs[0], &upnp.Client{Timeout: 5 * time.Second})
}

// Requests returns the control requests received so far, in order.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.requests)
}

// Actions returns the action names of the requests received so far.
func (s *Server) Actions() []string {
	var out []string
	for _, r := range s.Requests() {
		out = append(out, r.Action)
	}
	return out
}

// Mappings returns the current table.
func (s *Server) Mappings() []igd.PortMapping {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.table)
}

// SetMappings replaces the table.
func (s *Server) SetMappings(list []igd.PortMapping) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.table = slices.Clone(list)
}

func (s *Server) description() []byte {
	if s.opts.Description != nil {
		return s.opts.Description
	}
	v := s.opts.Version
	return fmt.Appendf(nil, `<?xml version="1.0"?>
<root xmlns="urn:schemas-upnp-org:device-1-0"><specVersion><major>1</major><minor>1</minor></specVersion>
<device><deviceType>urn:schemas-upnp-org:device:InternetGatewayDevice:%[1]d</deviceType><friendlyName>igdtest</friendlyName>
<manufacturer>portfwd</manufacturer><modelName>igdtest</modelName><UDN>uuid:00000000-0000-0000-0000-000000000001</UDN>
<serviceList><service><serviceType>urn:schemas-upnp-org:service:Layer3Forwarding:1</serviceType><serviceId>urn:upnp-org:serviceId:L3Forwarding1</serviceId><SCPDURL>/L3F.xml</SCPDURL><controlURL>/ctl/L3F</controlURL><eventSubURL>/evt/L3F</eventSubURL></service></serviceList>
<deviceList><device><deviceType>urn:schemas-upnp-org:device:WANDevice:%[1]d</deviceType><friendlyName>WANDevice</friendlyName>
<manufacturer>portfwd</manufacturer><modelName>igdtest</modelName><UDN>uuid:00000000-0000-0000-0000-000000000002</UDN>
<serviceList><service><serviceType>urn:schemas-upnp-org:service:WANCommonInterfaceConfig:1</serviceType><serviceId>urn:upnp-org:serviceId:WANCommonIFC1</serviceId><SCPDURL>/WANCfg.xml</SCPDURL><controlURL>/ctl/CmnIfCfg</controlURL><eventSubURL>/evt/CmnIfCfg</eventSubURL></service></serviceList>
<deviceList><device><deviceType>urn:schemas-upnp-org:device:WANConnectionDevice:%[1]d</deviceType><friendlyName>WANConnectionDevice</friendlyName>
<manufacturer>portfwd</manufacturer><modelName>igdtest</modelName><UDN>uuid:00000000-0000-0000-0000-000000000003</UDN>
<serviceList><service><serviceType>%[2]s</serviceType><serviceId>urn:upnp-org:serviceId:WANConn1</serviceId><SCPDURL>/Conn.xml</SCPDURL><controlURL>/ctl/Conn</controlURL><eventSubURL>/evt/Conn</eventSubURL></service></serviceList>
</device></deviceList></device></deviceList></device></root>
`, v, s.ServiceType)
}

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodGet {
		if r.URL.Path != "/rootDesc.xml" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", `text/xml; charset="utf-8"`)
		w.Write(s.description())
		return
	}
	if r.Method != http.MethodPost {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	action, args, err := upnp.ParseEnvelope(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	soapAction := strings.Trim(r.Header.Get("SOAPAction"), `"`)
	s.mu.Lock()
	s.requests = append(s.requests, Request{Path: r.URL.RequestURI(), SOAPAction: soapAction, Action: action, Args: args})
	serviceType, _, _ := strings.Cut(soapAction, "#")
	from, _, _ := net.SplitHostPort(r.RemoteAddr)
	out, code := s.answer(serviceType, action, args, from)
	s.mu.Unlock()

	if code < -1 { // a bare HTTP status
		http.Error(w, http.StatusText(-code), -code)
		return
	}
	w.Header().Set("Content-Type", `text/xml; charset="utf-8"`)
	switch {
	case code == -1: // verbatim body
		status := http.StatusOK
		if strings.Contains(string(out), ":Fault>") || strings.Contains(string(out), "<Fault>") {
			status = http.StatusInternalServerError
		}
		w.WriteHeader(status)
		w.Write(out)
	case code != 0:
		w.WriteHeader(http.StatusInternalServerError)
		w.Write(upnp.AppendFault(nil, code, string(out)))
	default:
		w.Write(out)
	}
}

// answer returns the response body and 0, a fault description and its
// code, a verbatim body and -1, or nil and minus an HTTP status. from is
// the requester's address. s.mu is held.
func (s *Server) answer(serviceType, action string, args upnp.Args, from string) ([]byte, int) {
	for i, f := range s.faults {
		if f.Action != action || (f.Times > 0 && s.used[i] >= f.Times) || (f.Match != nil && !f.Match(args)) {
			continue
		}
		s.used[i]++
		if f.Raw != nil {
			return f.Raw, -1
		}
		if f.Code == 0 && f.HTTPStatus != 0 {
			return nil, -f.HTTPStatus
		}
		d := f.Description
		if d == "" {
			d = igd.CodeName(f.Code)
		}
		return []byte(d), f.Code
	}
	if b, ok := s.opts.Bodies[action]; ok {
		return b, -1
	}
	respond := func(out upnp.Args) ([]byte, int) {
		return upnp.AppendEnvelope(nil, serviceType, action+"Response", out), 0
	}
	fault := func(code int) ([]byte, int) { return []byte(igd.CodeName(code)), code }

	if s.opts.Description == nil && serviceType != s.ServiceType && serviceType != igd.URNWANCommonInterfaceConfig1 {
		return fault(igd.CodeInvalidAction)
	}
	v2 := s.opts.Version >= 2
	switch action {
	case "GetExternalIPAddress":
		return respond(upnp.Args{{Name: "NewExternalIPAddress", Value: s.opts.ExternalIP}})
	case "GetStatusInfo":
		return respond(upnp.Args{
			{Name: "NewConnectionStatus", Value: s.opts.Status},
			{Name: "NewLastConnectionError", Value: "ERROR_NONE"},
			{Name: "NewUptime", Value: "3600"},
		})
	case "GetConnectionTypeInfo":
		return respond(upnp.Args{{Name: "NewConnectionType", Value: "IP_Routed"}, {Name: "NewPossibleConnectionTypes", Value: "IP_Routed"}})
	case "GetNATRSIPStatus":
		return respond(upnp.Args{{Name: "NewRSIPAvailable", Value: "0"}, {Name: "NewNATEnabled", Value: "1"}})
	case "GetCommonLinkProperties":
		return respond(upnp.Args{
			{Name: "NewWANAccessType", Value: "Ethernet"},
			{Name: "NewLayer1UpstreamMaxBitRate", Value: "100000000"},
			{Name: "NewLayer1DownstreamMaxBitRate", Value: "1000000000"},
			{Name: "NewPhysicalLinkStatus", Value: "Up"},
		})
	case "AddPortMapping", "AddAnyPortMapping":
		if action == "AddAnyPortMapping" && !v2 {
			return fault(igd.CodeInvalidAction)
		}
		m, code := s.parseMapping(args)
		if code != 0 {
			return fault(code)
		}
		if s.opts.SecureMode && from != "" && m.InternalClient != from {
			return fault(igd.CodeConflictInMappingEntry)
		}
		if action == "AddPortMapping" {
			if i := s.find(m.Key()); i >= 0 {
				if s.opts.RefuseRenewal || s.table[i].InternalClient != m.InternalClient {
					return fault(igd.CodeConflictInMappingEntry)
				}
				s.table[i] = m
				return respond(nil)
			}
			s.table = append(s.table, m)
			return respond(nil)
		}
		for range 65536 {
			if s.find(m.Key()) < 0 {
				s.table = append(s.table, m)
				return respond(upnp.Args{{Name: "NewReservedPort", Value: strconv.Itoa(int(m.ExternalPort))}})
			}
			m.ExternalPort++
			if m.ExternalPort == 0 {
				m.ExternalPort = 1024
			}
		}
		return fault(igd.CodeNoPortMapsAvailable)
	case "DeletePortMapping":
		k, code := parseKey(args)
		if code != 0 {
			return fault(code)
		}
		i := s.find(k)
		if i < 0 {
			return fault(igd.CodeNoSuchEntryInArray)
		}
		s.table = slices.Delete(s.table, i, i+1)
		return respond(nil)
	case "GetSpecificPortMappingEntry":
		k, code := parseKey(args)
		if code != 0 {
			return fault(code)
		}
		i := s.find(k)
		if i < 0 {
			return fault(igd.CodeNoSuchEntryInArray)
		}
		m := s.table[i]
		return respond(upnp.Args{
			{Name: "NewInternalPort", Value: strconv.Itoa(int(m.InternalPort))},
			{Name: "NewInternalClient", Value: m.InternalClient},
			{Name: "NewEnabled", Value: boolStr(m.Enabled)},
			{Name: "NewPortMappingDescription", Value: m.Description},
			{Name: "NewLeaseDuration", Value: secs(m.LeaseDuration)},
		})
	case "GetGenericPortMappingEntry":
		idx, err := strconv.Atoi(strings.TrimSpace(args.Value("NewPortMappingIndex")))
		if err != nil || idx < 0 {
			return fault(igd.CodeInvalidArgs)
		}
		if idx >= len(s.table) {
			if !s.opts.RepeatLastEntry || len(s.table) == 0 {
				return fault(s.opts.OutOfRangeCode)
			}
			idx = len(s.table) - 1
		}
		m := s.table[idx]
		return respond(upnp.Args{
			{Name: "NewRemoteHost", Value: m.RemoteHost},
			{Name: "NewExternalPort", Value: strconv.Itoa(int(m.ExternalPort))},
			{Name: "NewProtocol", Value: m.Protocol},
			{Name: "NewInternalPort", Value: strconv.Itoa(int(m.InternalPort))},
			{Name: "NewInternalClient", Value: m.InternalClient},
			{Name: "NewEnabled", Value: boolStr(m.Enabled)},
			{Name: "NewPortMappingDescription", Value: m.Description},
			{Name: "NewLeaseDuration", Value: secs(m.LeaseDuration)},
		})
	case "GetListOfPortMappings", "DeletePortMappingRange":
		if !v2 {
			return fault(igd.CodeInvalidAction)
		}
		start, err1 := strconv.ParseUint(args.Value("NewStartPort"), 10, 16)
		end, err2 := strconv.ParseUint(args.Value("NewEndPort"), 10, 16)
		proto := args.Value("NewProtocol")
		if err1 != nil || err2 != nil || (proto != igd.TCP && proto != igd.UDP) {
			return fault(igd.CodeInvalidArgs)
		}
		if _, ok := args.Get("NewManage"); !ok {
			return fault(igd.CodeInvalidArgs)
		}
		if start > end {
			return fault(igd.CodeInconsistentParameters)
		}
		in := func(m igd.PortMapping) bool {
			return m.Protocol == proto && uint64(m.ExternalPort) >= start && uint64(m.ExternalPort) <= end
		}
		if action == "DeletePortMappingRange" {
			n := len(s.table)
			s.table = slices.DeleteFunc(s.table, in)
			if len(s.table) == n {
				return fault(igd.CodePortMappingNotFound)
			}
			return respond(nil)
		}
		max, err := strconv.Atoi(args.Value("NewNumberOfPorts"))
		if err != nil || max < 0 {
			return fault(igd.CodeInvalidArgs)
		}
		if max == 0 || max > 1000 {
			max = 1000 // as MiniUPnPd
		}
		var list []igd.PortMapping
		for _, m := range s.table {
			if in(m) {
				list = append(list, m)
			}
		}
		if len(list) == 0 {
			return fault(igd.CodePortMappingNotFound)
		}
		slices.SortFunc(list, func(a, b igd.PortMapping) int { return int(a.ExternalPort) - int(b.ExternalPort) })
		if len(list) > max {
			list = list[:max]
		}
		return respond(upnp.Args{{Name: "NewPortListing", Value: string(igd.AppendPortMappingList(nil, list))}})
	}
	return fault(igd.CodeInvalidAction)
}

// parseMapping reads AddPortMapping's arguments the way MiniUPnPd does,
// applying the lease knobs.
func (s *Server) parseMapping(args upnp.Args) (igd.PortMapping, int) {
	for _, name := range []string{"NewRemoteHost", "NewExternalPort", "NewProtocol", "NewInternalPort",
		"NewInternalClient", "NewEnabled", "NewPortMappingDescription", "NewLeaseDuration"} {
		if _, ok := args.Get(name); !ok {
			return igd.PortMapping{}, igd.CodeInvalidArgs
		}
	}
	k, code := parseKey(args)
	if code != 0 {
		return igd.PortMapping{}, code
	}
	ip, err := strconv.ParseUint(args.Value("NewInternalPort"), 10, 16)
	if err != nil {
		return igd.PortMapping{}, igd.CodeInvalidArgs
	}
	if ip == 0 {
		return igd.PortMapping{}, igd.CodeWildCardNotPermittedInIntPort
	}
	lease, err := strconv.ParseUint(args.Value("NewLeaseDuration"), 10, 32)
	if err != nil || args.Value("NewInternalClient") == "" {
		return igd.PortMapping{}, igd.CodeInvalidArgs
	}
	if lease != 0 && s.opts.RejectLeases {
		return igd.PortMapping{}, igd.CodeInvalidArgs
	}
	if lease != 0 && s.opts.OnlyPermanentLeases {
		return igd.PortMapping{}, igd.CodeOnlyPermanentLeasesSupported
	}
	leaseD := time.Duration(lease) * time.Second
	if lease == 0 && s.opts.PermanentLease > 0 {
		leaseD = s.opts.PermanentLease
	}
	enabled := args.Value("NewEnabled") == "1" || s.opts.IgnoreEnabled
	return igd.PortMapping{
		RemoteHost:     k.RemoteHost,
		ExternalPort:   k.ExternalPort,
		Protocol:       k.Protocol,
		InternalPort:   uint16(ip),
		InternalClient: args.Value("NewInternalClient"),
		Enabled:        enabled,
		Description:    args.Value("NewPortMappingDescription"),
		LeaseDuration:  leaseD,
	}, 0
}

func parseKey(args upnp.Args) (igd.Key, int) {
	if _, ok := args.Get("NewRemoteHost"); !ok {
		return igd.Key{}, igd.CodeInvalidArgs
	}
	port, err := strconv.ParseUint(args.Value("NewExternalPort"), 10, 16)
	proto := args.Value("NewProtocol")
	if err != nil || (proto != igd.TCP && proto != igd.UDP) {
		return igd.Key{}, igd.CodeInvalidArgs
	}
	if port == 0 {
		return igd.Key{}, igd.CodeWildCardNotPermittedInExtPort
	}
	return igd.Key{RemoteHost: args.Value("NewRemoteHost"), ExternalPort: uint16(port), Protocol: proto}, 0
}

// find returns the index of the entry for k. As in MiniUPnPd, entries are
// matched on external port and protocol: the remote host is stored and
// reported but does not tell entries apart.
func (s *Server) find(k igd.Key) int {
	return slices.IndexFunc(s.table, func(m igd.PortMapping) bool {
		return m.ExternalPort == k.ExternalPort && m.Protocol == k.Protocol
	})
}

func boolStr(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

func secs(d time.Duration) string { return strconv.FormatInt(int64(d/time.Second), 10) }
