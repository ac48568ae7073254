package igd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"

	http "github.com/portfwd/portfwd/internal/httpx"

	"runtime/debug"
	"strconv"
	"strings"
	"time"

	productversion "github.com/portfwd/portfwd/internal/version"
	"github.com/portfwd/portfwd/upnp"
)

// Service is what a Server needs from the daemon behind it: the WAN
// connection's state and the port mapping table. The Server calls it only
// with arguments it has validated (see the methods), and with client, the
// address of the TCP peer that sent the request, never an address taken
// from the request itself.
//
// Errors carry their UPnP code as an *upnp.Error, returned as is or
// wrapped; the Server answers with that code (and, for the codes the
// specifications name, their standard description). Any other error, and a
// panic, is answered 501 (Action Failed) and logged, so that nothing of
// the daemon's internals reaches the network. On a version 2 service the
// codes 724 to 727 are deprecated and should not be used.
//
// Every method may be called concurrently.
type Service interface {
	// ExternalIPAddress returns the WAN address. An invalid or unspecified
	// address, or one that is not IPv4, is sent as the empty string, which
	// is what WANIPConnection:2 says a gateway without an address answers.
	ExternalIPAddress(ctx context.Context) (netip.Addr, error)
	// ConnectionStatus returns the WAN connection's status ("Connected",
	// "Disconnected", "Connecting", ...; "" is sent as "Unconfigured"), how
	// long it has been up, and the last connection error ("" is sent as
	// "ERROR_NONE").
	ConnectionStatus(ctx context.Context) (status string, uptime time.Duration, lastError string)
	// LinkProperties returns the physical link's properties and traffic
	// counters, for WANCommonInterfaceConfig. An empty AccessType is sent
	// as "Ethernet" and an empty Status as "Unavailable".
	LinkProperties(ctx context.Context) (LinkProperties, LinkCounters)

	// AddPortMapping creates m, or updates the mapping with its key when
	// client may. m is validated: Protocol is "TCP" or "UDP", ExternalPort
	// and InternalPort are not 0, InternalClient is a canonical IPv4
	// address other than 0.0.0.0, RemoteHost is "" (any) or a canonical
	// IPv4 address, Description is cleaned (see ServerConfig.MaxDescription)
	// and, on version 2, LeaseDuration is between 1s and 604800s (a request
	// for 0, "permanent", arrives as 604800s as the spec requires). On
	// version 1 a LeaseDuration of 0 means permanent.
	AddPortMapping(ctx context.Context, client netip.Addr, m PortMapping) error
	// AddAnyPortMapping (version 2) creates m on m.ExternalPort or, if that
	// is taken, on another port it chooses, and returns the port reserved.
	// m is validated as for AddPortMapping, except that ExternalPort may be
	// 0, meaning that the control point has no preference.
	AddAnyPortMapping(ctx context.Context, client netip.Addr, m PortMapping) (reserved uint16, err error)
	// DeletePortMapping removes the mapping with the given key (714 when
	// there is none). remoteHost is "" (any) or a canonical IPv4 address,
	// externalPort is not 0 and proto is "TCP" or "UDP".
	DeletePortMapping(ctx context.Context, client netip.Addr, remoteHost string, externalPort uint16, proto string) error
	// DeletePortMappingRange (version 2) removes the mappings of proto with
	// an external port in [start, end] (start <= end) that client may
	// remove: with manage false only its own. It returns 730 when it
	// removed none.
	DeletePortMappingRange(ctx context.Context, client netip.Addr, start, end uint16, proto string, manage bool) error
	// GetGenericPortMappingEntry returns the entry at index (0 to 65535) of
	// the table as client may see it, or 713 past its end.
	GetGenericPortMappingEntry(ctx context.Context, client netip.Addr, index int) (PortMapping, error)
	// GetSpecificPortMappingEntry returns the mapping with the given key
	// (validated as for DeletePortMapping), or 714. Only the non-key fields
	// of the result are sent.
	GetSpecificPortMappingEntry(ctx context.Context, client netip.Addr, remoteHost string, externalPort uint16, proto string) (PortMapping, error)
	// GetListOfPortMappings (version 2) returns up to max (0 means no limit)
	// mappings of proto with an external port in [start, end], those of
	// client only unless manage is set. An empty list is answered 730, as
	// the spec requires; entries beyond max are dropped.
	GetListOfPortMappings(ctx context.Context, client netip.Addr, start, end uint16, proto string, manage bool, max int) ([]PortMapping, error)
	// RequestConnection and ForceTermination bring the WAN connection up
	// and down. A daemon that does not manage the connection answers 606
	// (Action not authorized), as miniupnpd does.
	RequestConnection(ctx context.Context, client netip.Addr) error
	ForceTermination(ctx context.Context, client netip.Addr) error
}

// TableInfo may be implemented by a Service that can read the size and
// change counter of its mapping table cheaply. Only then does the Server
// answer QueryStateVariable for PortMappingNumberOfEntries and (version 2)
// SystemUpdateID; without it those variables get 404 (Invalid Var).
type TableInfo interface {
	// PortMappingNumberOfEntries returns how many entries the table has.
	PortMappingNumberOfEntries(ctx context.Context) int
	// SystemUpdateID returns the counter IGDv2 increments on every change
	// to the table.
	SystemUpdateID(ctx context.Context) uint32
}

// LinkCounters are the WAN interface's traffic totals. They are sent as
// the ui4 values WANCommonInterfaceConfig:1 defines, so they wrap at 2^32
// as the spec says they roll over.
type LinkCounters struct {
	BytesSent, BytesReceived     uint64
	PacketsSent, PacketsReceived uint64
}

// Defaults of ServerConfig.
const (
	// DefaultMaxSOAPBody bounds a SOAP request. The largest legitimate one,
	// an AddPortMapping with a long description, is under 2 KiB.
	DefaultMaxSOAPBody = 16 << 10
	// DefaultMaxDescription bounds NewPortMappingDescription in bytes.
	// miniupnpd keeps 1024 bytes (64 on small builds); descriptions are
	// labels shown in lists, and a bound keeps a full table small.
	DefaultMaxDescription = 256
)

// ServerConfig configures a Server.
type ServerConfig struct {
	// Service answers the actions. Required.
	Service Service
	// Version is the IGD version served, 1 or 2; 0 means 2. Version 1
	// serves InternetGatewayDevice:1 with WANIPConnection:1 and
	// Layer3Forwarding:1, for control points that do not recognize IGDv2.
	Version int
	// UUID is the root device's UUID ("uuid:" prefix optional). It must be
	// stable across restarts, since control points remember devices by it;
	// the embedded devices' UUIDs are derived from it.
	UUID string

	// The root device's description fields. Empty FriendlyName,
	// Manufacturer and ModelName, which UPnP requires, get defaults.
	FriendlyName, Manufacturer, ManufacturerURL string
	ModelName, ModelNumber, ModelDescription    string
	ModelURL, SerialNumber                      string
	// PresentationURL is the device's web page, written as given. The
	// token "{host}" in it is replaced by the address the control point
	// used to reach the description, so that a web UI on another port of
	// the same address can be named: "http://{host}:8080/".
	PresentationURL string

	// AllowedHosts decides whether to serve a request whose Host header is
	// host (as sent, port included). Nil means the default rule: the Host
	// must be an IP literal equal to the address the request arrived on
	// (and, when it has a port, to that port), or absent. This refuses DNS
	// rebinding, where a web page makes a browser on the LAN send requests
	// to the gateway under the attacker's name. Set it when the gateway is
	// reached under a name or through a port redirect.
	AllowedHosts func(host string) bool
	// Events answers requests to the event subscription URLs (GENA
	// SUBSCRIBE and UNSUBSCRIBE). Nil answers SUBSCRIBE and UNSUBSCRIBE
	// with 503 Service Unavailable, telling control points that eventing
	// is not available rather than pretending to accept a subscription.
	Events http.Handler

	// MaxBody bounds a SOAP request body; 0 means DefaultMaxSOAPBody.
	// Larger requests get 413.
	MaxBody int64
	// MaxDescription bounds NewPortMappingDescription in bytes, after
	// control characters are removed; 0 means DefaultMaxDescription.
	// Longer descriptions are cut at a UTF-8 boundary, not refused.
	MaxDescription int
	// ServerHeader is the SERVER header, "OS/version UPnP/1.x
	// product/version"; empty means one naming runtime.GOOS and portfwd.
	ServerHeader string
	// Layout, if set, serves the description and the services on other
	// paths and under other names (a WANPPPConnection, say), as a real
	// router has them; see Layout.
	Layout *Layout
	// Logger receives records about refused and failed requests; nil
	// means slog.Default().
	Logger *slog.Logger
	// OnRequest, if set, is called after every SOAP action answered, with
	// the action's name ("" when it could not be read) and the UPnP error
	// code sent, or 0 on success. It must not block.
	OnRequest func(action string, code int)
	// FirewallControl, if set, answers WANIPv6FirewallControl:1, which
	// the server then offers (IGDv2 only) in the WANConnectionDevice:
	// IPv6 pinholes. Nil leaves the service out of the description.
	FirewallControl FirewallService
	// OnFault, if set, is also called for every SOAP action answered with
	// a fault: who asked what, the code sent and why. The daemon logs
	// refusals and keeps its audit trail with it. It must not block.
	OnFault func(Fault)
}

// Fault describes a SOAP action answered with a UPnP error.
type Fault struct {
	Action string
	Client netip.Addr // the zero Addr when the peer could not be read
	Code   int
	// Reason says why: the Service's error, or what was wrong with the
	// request.
	Reason error
	// Args are the request's arguments, as sent.
	Args upnp.Args
}

// Server is the HTTP side of a UPnP Internet Gateway Device: it serves the
// root description, the SCPDs, and SOAP control, and hands the event URLs
// to ServerConfig.Events. It implements http.Handler; serve it on the LAN
// addresses only (IGDv2 requires that the WAN side never reach it), with
// read and write timeouts (the gateway serves it with internal/httpserve).
type Server struct {
	svc            Service
	fw             FirewallService
	version        int
	log            *slog.Logger
	onRequest      func(string, int)
	onFault        func(Fault)
	allowedHosts   func(string) bool
	events         http.Handler
	maxBody        int64
	maxDescription int
	serverHeader   string

	dev      deviceInfo
	descPath string           // where the root description is served
	services []serviceDef     // the services served, in description order
	routes   map[string]route // by URL path (and query; see routeKey)
	desc     []byte           // the description, when it does not depend on the host
	configID int
}

// route is what a URL path serves, by method: a document (the root
// description, or a service's SCPD) to GET, SOAP control to POST, GENA to
// SUBSCRIBE and UNSUBSCRIBE. A router may serve control and events on one
// path.
type route struct {
	description bool
	scpd        *serviceDef
	control     *serviceDef
	event       *serviceDef
}

// allow returns the methods r answers, for a 405's Allow header.
func (r route) allow() string {
	var m []string
	if r.description || r.scpd != nil {
		m = append(m, "GET", "HEAD")
	}
	if r.control != nil {
		m = append(m, "POST")
	}
	if r.event != nil {
		m = append(m, "SUBSCRIBE", "UNSUBSCRIBE")
	}
	return strings.Join(m, ", ")
}

// NewServer returns a Server for cfg. It fails when cfg lacks the Service
// or a valid UUID, or names a version other than 1 or 2.
func NewServer(cfg ServerConfig) (*Server, error) {
	if cfg.Service == nil {
		return nil, errors.New("igd: ServerConfig.Service is nil; the server needs the daemon's mapping table to answer")
	}
	version := cfg.Version
	if version == 0 {
		version = 2
	}
	if version != 1 && version != 2 {
		return nil, fmt.Errorf("igd: ServerConfig.Version %d: IGD versions 1 and 2 exist", cfg.Version)
	}
	root, err := parseUUID(cfg.UUID)
	if err != nil {
		return nil, fmt.Errorf("igd: ServerConfig.UUID: %w; generate one once and keep it in the daemon's state", err)
	}
	s := &Server{
		svc:            cfg.Service,
		fw:             cfg.FirewallControl,
		version:        version,
		log:            cfg.Logger,
		onRequest:      cfg.OnRequest,
		onFault:        cfg.OnFault,
		allowedHosts:   cfg.AllowedHosts,
		events:         cfg.Events,
		maxBody:        cfg.MaxBody,
		maxDescription: cfg.MaxDescription,
		serverHeader:   cfg.ServerHeader,
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.maxBody <= 0 {
		s.maxBody = DefaultMaxSOAPBody
	}
	if s.maxDescription <= 0 {
		s.maxDescription = DefaultMaxDescription
	}
	if s.serverHeader == "" {
		s.serverHeader = productversion.Server
		if version == 1 {
			s.serverHeader = productversion.ServerUPnP10
		}
	}
	s.dev = newDeviceInfo(cfg, root)
	s.descPath = DescriptionPath
	for i := range serviceDefs {
		d := &serviceDefs[i]
		// A layout with Layer3Forwarding keeps it on IGDv2 too, as
		// miniupnpd's description (Google's OnHub) has it.
		keepL3F := cfg.Layout != nil && cfg.Layout.L3F != nil && d.name == "Layer3Forwarding"
		if version >= d.minIGD && version <= d.maxIGD || keepL3F {
			s.services = append(s.services, *d)
		}
	}
	if s.fw != nil && version >= firewallServiceDef.minIGD {
		s.services = append(s.services, firewallServiceDef)
	}
	if cfg.Layout != nil {
		if err := s.applyLayout(cfg.Layout); err != nil {
			return nil, err
		}
	}
	s.routes = map[string]route{s.descPath: {description: true}}
	for i := range s.services {
		if err := s.addRoutes(&s.services[i]); err != nil {
			return nil, err
		}
	}
	if err := s.initDescription(); err != nil {
		return nil, err
	}
	return s, nil
}

// addRoutes puts d's SCPD, control and event on their paths, refusing a
// path that would serve two documents, two controls or two event sources.
func (s *Server) addRoutes(d *serviceDef) error {
	for _, p := range []struct {
		path string
		slot func(*route) **serviceDef
	}{
		{d.scpdPath, func(r *route) **serviceDef { return &r.scpd }},
		{d.controlPath, func(r *route) **serviceDef { return &r.control }},
		{d.eventPath, func(r *route) **serviceDef { return &r.event }},
	} {
		r := s.routes[p.path]
		slot := p.slot(&r)
		if *slot != nil || r.description && slot == &r.scpd {
			return fmt.Errorf("igd: two services on the path %s", p.path)
		}
		*slot = d
		s.routes[p.path] = r
	}
	return nil
}

// ServeHTTP answers one request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Server", s.serverHeader)
	if !s.hostAllowed(r) {
		s.log.Info("igd: refused a request naming a foreign host (DNS rebinding?)",
			"host", r.Host, "path", r.URL.Path, "peer", r.RemoteAddr)
		http.Error(w, "igd: the Host header must be this gateway's address; requests under other names are refused", http.StatusBadRequest)
		return
	}
	key := routeKey(r.URL.Path, r.URL.RawQuery)
	rt, ok := s.routes[key]
	if !ok && r.URL.RawQuery != "" {
		key = r.URL.Path
		rt, ok = s.routes[key]
	}
	if !ok {
		http.NotFound(w, r)
		return
	}
	switch {
	case (r.Method == http.MethodGet || r.Method == http.MethodHead) && (rt.description || rt.scpd != nil):
		var body []byte
		if rt.description {
			body = s.description(r.Host)
		} else {
			body = []byte(rt.scpd.scpd)
		}
		if body == nil {
			http.Error(w, "igd: the device description could not be rendered; see the daemon's log", http.StatusInternalServerError)
			return
		}
		writeXML(w, body)
	case r.Method == http.MethodPost && rt.control != nil:
		s.serveControl(w, r, rt.control)
	case rt.event != nil && (r.Method == "SUBSCRIBE" || r.Method == "UNSUBSCRIBE" || rt.control == nil && !rt.description && rt.scpd == nil):
		if s.events != nil {
			if key != r.URL.Path {
				// The events handler knows the path by its route key.
				r2 := *r
				u := *r.URL
				u.Path, u.RawQuery = key, ""
				r2.URL = &u
				r = &r2
			}
			s.events.ServeHTTP(w, r)
			return
		}
		if r.Method != "SUBSCRIBE" && r.Method != "UNSUBSCRIBE" {
			methodNotAllowed(w, rt.allow())
			return
		}
		http.Error(w, "igd: this gateway does not offer event subscriptions; poll the state with the control actions instead", http.StatusServiceUnavailable)
	default:
		methodNotAllowed(w, rt.allow())
	}
}

func methodNotAllowed(w http.ResponseWriter, allow string) {
	w.Header().Set("Allow", allow)
	http.Error(w, "igd: method not allowed here; use "+allow, http.StatusMethodNotAllowed)
}

// writeXML sends a description document with an explicit length: small
// control points cannot read chunked responses.
func writeXML(w http.ResponseWriter, body []byte) {
	h := w.Header()
	h.Set("Content-Type", `text/xml; charset="utf-8"`)
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body) // an error means the control point went away
}

// hostAllowed applies ServerConfig.AllowedHosts, or the default rule.
func (s *Server) hostAllowed(r *http.Request) bool {
	if s.allowedHosts != nil {
		return s.allowedHosts(r.Host)
	}
	if r.Host == "" {
		// Only HTTP/1.0 requests can omit it, and browsers never do.
		return true
	}
	host, port := splitHost(r.Host)
	a, err := netip.ParseAddr(host)
	if err != nil {
		return false
	}
	local, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	if !ok {
		return true // not served by net/http: an IP literal is all we can check
	}
	lap, err := netip.ParseAddrPort(local.String())
	if err != nil {
		return true
	}
	if normAddr(a) != normAddr(lap.Addr()) {
		return false
	}
	return port == "" || port == strconv.Itoa(int(lap.Port()))
}

// splitHost splits a Host header into host and optional port, removing
// the brackets of an IPv6 literal.
func splitHost(h string) (host, port string) {
	if hh, p, err := net.SplitHostPort(h); err == nil {
		return hh, p
	}
	return strings.TrimSuffix(strings.TrimPrefix(h, "["), "]"), ""
}

// normAddr makes addresses from different sources comparable: the
// IPv4-mapped form a dual-stack socket reports becomes plain IPv4, and
// zones are dropped.
func normAddr(a netip.Addr) netip.Addr { return a.Unmap().WithZone("") }

// controlURN is the namespace of QueryStateVariable, which UDA defines
// for every service.
const controlURN = "urn:schemas-upnp-org:control-1-0"

// errPanic stands for a panic in the Service, recovered.
var errPanic = errors.New("igd: the service panicked")

// serveControl answers a SOAP POST to the control URL of d.
func (s *Server) serveControl(w http.ResponseWriter, r *http.Request, d *serviceDef) {
	// EXT: is required in control responses for UPnP 1.0 control points.
	// Set directly, as http.Header.Set would write "Ext".
	w.Header()["EXT"] = []string{""}
	r.Body = http.MaxBytesReader(w, r.Body, s.maxBody)
	serviceType, action, args, err := upnp.ReadRequest(r, s.maxBody)
	if err != nil {
		var tooBig *http.MaxBytesError
		switch {
		case errors.Is(err, upnp.ErrBodyTooLarge) || errors.As(err, &tooBig):
			s.log.Info("igd: refused an oversized SOAP request", "peer", r.RemoteAddr, "limit", s.maxBody)
			http.Error(w, fmt.Sprintf("igd: SOAP request over the %d-byte limit", s.maxBody), http.StatusRequestEntityTooLarge)
		case upnp.ErrorCode(err) == CodeInvalidAction:
			s.log.Debug("igd: SOAP request names no action, or two", "peer", r.RemoteAddr, "err", err)
			s.writeFault(w, "", CodeInvalidAction)
			client, _ := peerAddr(r.RemoteAddr)
			s.fault(Fault{Client: client, Code: CodeInvalidAction, Reason: err})
		default:
			s.log.Debug("igd: malformed SOAP request", "peer", r.RemoteAddr, "err", err)
			http.Error(w, "igd: the request is not a SOAP action call; send a SOAP 1.1 envelope with a SOAPAction header", http.StatusBadRequest)
		}
		return
	}
	client, err := peerAddr(r.RemoteAddr)
	if err != nil {
		// Only possible when not served by net/http over TCP; without
		// the peer no decision about ownership can be made.
		s.log.Warn("igd: cannot tell who sent a SOAP request", "remote", r.RemoteAddr, "err", err)
		s.writeFault(w, action, CodeActionFailed)
		return
	}
	out, err := s.dispatch(r.Context(), d, serviceType, action, args, client)
	if err != nil {
		var code int
		var desc string
		if d.name == firewallServiceDef.name {
			code, desc = s.firewallFaultFor(action, client, err)
		} else {
			code, desc = s.faultFor(action, client, err)
		}
		upnp.WriteFault(w, code, desc)
		s.report(action, code)
		s.fault(Fault{Action: action, Client: client, Code: code, Reason: err, Args: args})
		return
	}
	upnp.WriteResponse(w, serviceType, action, out)
	s.report(action, 0)
}

func (s *Server) writeFault(w http.ResponseWriter, action string, code int) {
	upnp.WriteFault(w, code, faultText(code))
	s.report(action, code)
}

func (s *Server) fault(f Fault) {
	if s.onFault != nil {
		s.onFault(f)
	}
}

func (s *Server) report(action string, code int) {
	if s.onRequest != nil {
		s.onRequest(action, code)
	}
}

// peerAddr parses http.Request.RemoteAddr.
func peerAddr(remote string) (netip.Addr, error) {
	ap, err := netip.ParseAddrPort(remote)
	if err != nil {
		return netip.Addr{}, err
	}
	return normAddr(ap.Addr()), nil
}

// dispatch runs action, recovering a panic of the Service into errPanic.
func (s *Server) dispatch(ctx context.Context, d *serviceDef, serviceType, action string, args upnp.Args, client netip.Addr) (out upnp.Args, err error) {
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("igd: panic while answering a SOAP action; answered 501",
				"action", action, "client", client, "panic", p, "stack", string(debug.Stack()))
			out, err = nil, errPanic
		}
	}()
	// UDA puts QueryStateVariable in its own namespace; a few control
	// points send it in the service's, which is just as unambiguous.
	if action == "QueryStateVariable" && (strings.EqualFold(strings.TrimSpace(serviceType), controlURN) || d.accepts(serviceType)) {
		return s.queryStateVariable(ctx, d, args)
	}
	if !d.accepts(serviceType) {
		return nil, fault(CodeInvalidAction)
	}
	a := d.action(action)
	if a == nil {
		return nil, fault(CodeInvalidAction)
	}
	return a.fn(s, ctx, &call{client: client, args: args, version: s.version})
}

// faultFor turns an error into the fault to send: the UPnP code an
// *upnp.Error carries, else 501.
func (s *Server) faultFor(action string, client netip.Addr, err error) (int, string) {
	var ue *upnp.Error
	if errors.As(err, &ue) && ue.Code >= 400 && ue.Code < 900 {
		s.log.Debug("igd: SOAP action refused", "action", action, "client", client, "code", ue.Code, "err", err)
		desc := faultText(ue.Code)
		if desc == "" {
			desc = ue.Description
		}
		return ue.Code, desc
	}
	if !errors.Is(err, errPanic) {
		s.log.Warn("igd: SOAP action failed; answered 501", "action", action, "client", client, "err", err)
	}
	return CodeActionFailed, faultText(CodeActionFailed)
}

// UPnP Device Architecture and service codes the server sends that
// clients have no use for naming.
const (
	codeInvalidVar                      = 404
	codeArgumentValueOutOfRange         = 601
	codeInvalidDeviceUUID               = 720
	codeInvalidServiceID                = 721
	codeReadOnly                        = 731
	codeInactiveConnectionStateRequired = 703
)

// faultText is the errorDescription sent with code: UDA's wording for its
// codes, the service templates' names for theirs.
func faultText(code int) string {
	switch code {
	case CodeInvalidAction:
		return "Invalid Action"
	case CodeInvalidArgs:
		return "Invalid Args"
	case codeInvalidVar:
		return "Invalid Var"
	case CodeActionFailed:
		return "Action Failed"
	case codeArgumentValueOutOfRange:
		return "Argument Value Out of Range"
	case CodeOptionalActionNotImplemented:
		return "Optional Action Not Implemented"
	case CodeActionNotAuthorized:
		return "Action not authorized"
	case codeInactiveConnectionStateRequired:
		return "InactiveConnectionStateRequired"
	case 704:
		return "ConnectionSetupFailed"
	case 705:
		return "ConnectionSetupInProgress"
	case 706:
		return "ConnectionNotConfigured"
	case 707:
		return "DisconnectInProgress"
	case 709:
		return "InternetAccessDisabled"
	case 710:
		return "InvalidConnectionType"
	case 711:
		return "ConnectionAlreadyTerminated"
	case codeInvalidDeviceUUID:
		return "InvalidDeviceUUID"
	case codeInvalidServiceID:
		return "InvalidServiceID"
	case codeReadOnly:
		return "ReadOnly"
	}
	return CodeName(code)
}

// fault returns the error a handler returns to answer code.
func fault(code int) error {
	return &upnp.Error{Code: code, Description: faultText(code)}
}
