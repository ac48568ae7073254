package webui

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/portfwd/portfwd/internal/explain"
	"github.com/portfwd/portfwd/internal/websec"
	"github.com/portfwd/portfwd/portmap"
)

// The JSON shapes of the API, documented in docs/api.md. encoding/json
// escapes <, > and & in strings, so a description holding markup cannot
// become markup in a page that mishandles it.

// mappingJSON is a mapping as the API gives it.
type mappingJSON struct {
	portmap.Mapping
	// LeaseSeconds is the lease left when the response was made; 0 with
	// Permanent.
	LeaseSeconds int64 `json:"lease_seconds"`
	// ThisHost is true when the internal client is this computer.
	ThisHost bool `json:"this_host"`
	// Kept is whether the mapping is being kept open; absent without a Keeper.
	Kept *bool `json:"kept,omitempty"`
}

// keyJSON names a mapping.
type keyJSON struct {
	Protocol     portmap.Protocol `json:"protocol"`
	ExternalPort uint16           `json:"external_port"`
	RemoteHost   string           `json:"remote_host,omitempty"`
}

func toKeyJSON(k portmap.Key) keyJSON {
	return keyJSON{Protocol: k.Protocol, ExternalPort: k.ExternalPort, RemoteHost: k.RemoteHost}
}

// mappingsJSON is the table of one gateway.
type mappingsJSON struct {
	Gateway string `json:"gateway"`
	// Supported is false for a gateway whose protocol cannot list
	// (NAT-PMP, PCP).
	Supported bool          `json:"supported"`
	Mappings  []mappingJSON `json:"mappings"`
	// Error says why the list may be stale or incomplete.
	Error  string    `json:"error,omitempty"`
	ReadAt time.Time `json:"read_at,omitzero"`
}

// externalJSON is a gateway's external address and what it means.
type externalJSON struct {
	Gateway    string `json:"gateway"`
	ExternalIP string `json:"external_ip,omitempty"`
	Class      string `json:"class,omitempty"`
	Warning    string `json:"warning,omitempty"`
	Error      string `json:"error,omitempty"`
}

// gatewayJSON is a found gateway.
type gatewayJSON struct {
	ID        string         `json:"id"`
	Method    portmap.Method `json:"method"`
	Addr      string         `json:"addr"`
	LocalAddr string         `json:"local_addr,omitempty"`
	// Name is the router's friendly name, when it gave one.
	Name       string `json:"name,omitempty"`
	Selected   bool   `json:"selected"`
	ExternalIP string `json:"external_ip,omitempty"`
	Class      string `json:"class,omitempty"`
	Warning    string `json:"warning,omitempty"`
	// CanList is false when the protocol cannot read the table (NAT-PMP,
	// PCP).
	CanList bool `json:"can_list"`
	// Connected and Problem are the gateway's state when its details were
	// read: a gateway whose address request fails is listed all the same,
	// with the failure as its problem.
	Connected bool   `json:"connected"`
	Problem   string `json:"problem,omitempty"`
	// Updates says how the server keeps the gateway's table and address
	// up to date while a page listens for events: "events" when it
	// follows the router's own events (a Watcher), "polling" when it reads
	// the router every PollInterval; empty when it is not reading it.
	Updates string `json:"updates,omitempty"`
}

// gatewaysJSON is the discovery state and what it found.
type gatewaysJSON struct {
	Discovery discoveryStatus `json:"discovery"`
	Selected  string          `json:"selected,omitempty"`
	Gateways  []gatewayJSON   `json:"gateways"`
	Features  featuresJSON    `json:"features"`
}

// featuresJSON says which optional parts are configured.
type featuresJSON struct {
	Keep    bool `json:"keep"`
	Check   bool `json:"check"`
	Watcher bool `json:"watch"`
}

// errorJSON is every error response.
type errorJSON struct {
	Error string `json:"error"`
	// Code is the HTTP status.
	Code int `json:"code"`
	// RouterCode is the router's own code (UPnP error, NAT-PMP or PCP result)
	// when it refused.
	RouterCode int `json:"router_code,omitempty"`
	// Field names the request field that is wrong, for a form to point at.
	Field string `json:"field,omitempty"`
}

// badRequest is a mistake in a request: a sentence for the user and the
// field it is about.
type badRequest struct {
	field, msg string
}

func (e *badRequest) Error() string { return e.msg }

func invalid(field, format string, a ...any) error {
	return &badRequest{field: field, msg: fmt.Sprintf(format, a...)}
}

// writeErr answers with err as the user should read it, and the status
// that fits it.
func (s *Server) writeErr(w http.ResponseWriter, err error) {
	e := s.errorResponse(err)
	if errors.Is(err, errNoGatewayYet) {
		w.Header().Set("Retry-After", "1")
	}
	s.logger().Debug("request failed", "status", e.Code, "err", err)
	websec.WriteJSON(w, e.Code, e)
}

// errorResponse classifies err.
func (s *Server) errorResponse(err error) errorJSON {
	var br *badRequest
	var re *portmap.RefusedError
	switch {
	case errors.As(err, &br):
		return errorJSON{Error: br.msg, Code: http.StatusBadRequest, Field: br.field}
	case errors.As(err, &re):
		var ee *portmap.ExistsError
		if errors.As(err, &ee) {
			// The library's advice names the CLI's --replace; the page
			// has none.
			advice := "; choose another external port (or tick \"accept another one\"), or delete it first"
			if ee.Existing.ExternalPort != ee.Key.ExternalPort {
				advice = "; delete it first"
			}
			return errorJSON{Error: ee.Error() + advice, Code: http.StatusConflict}
		}
		code := http.StatusConflict
		if re.Method == portmap.UPnP && (re.Code == 714 || re.Code == 730) {
			code = http.StatusNotFound // NoSuchEntryInArray, PortMappingNotFound
		}
		return errorJSON{Error: re.Text, Code: code, RouterCode: re.Code}
	case errors.As(err, new(*notFound)):
		return errorJSON{Error: err.Error(), Code: http.StatusNotFound}
	case errors.Is(err, errNoGatewayYet):
		return errorJSON{Error: err.Error(), Code: http.StatusServiceUnavailable}
	case errors.Is(err, portmap.ErrNoGateway):
		return errorJSON{Error: explain.Sentence(err, ""), Code: http.StatusServiceUnavailable}
	case errors.Is(err, portmap.ErrNotSupported):
		return errorJSON{Error: err.Error(), Code: http.StatusNotImplemented}
	case errors.Is(err, context.DeadlineExceeded):
		return errorJSON{Error: fmt.Sprintf("the router did not answer within %v: it may be busy or unreachable; try again, and run discovery again if it persists", s.timeout()),
			Code: http.StatusGatewayTimeout}
	case errors.Is(err, context.Canceled):
		return errorJSON{Error: "the request was cancelled (portfwd ui is stopping, or the browser gave up)", Code: http.StatusServiceUnavailable}
	}
	// Anything else is one sentence, as the CLI prints it, never the
	// whole chain.
	return errorJSON{Error: explain.Sentence(err, ""), Code: http.StatusBadGateway}
}

// sentence is err as the user should read it.
func (s *Server) sentence(err error) string { return s.errorResponse(err).Error }

// keptSet returns the keys kept open on g, or nil without a Keeper.
func (s *Server) keptSet(g *gateway) map[portmap.Key]bool {
	if s.Keeper == nil {
		return nil
	}
	out := map[portmap.Key]bool{}
	for _, k := range s.Keeper.Kept(g.gw) {
		out[k] = true
	}
	return out
}

// toMappingJSON converts m, read at readAt, as seen at now.
func toMappingJSON(g *gateway, m portmap.Mapping, readAt, now time.Time, kept map[portmap.Key]bool) mappingJSON {
	j := mappingJSON{Mapping: m}
	if !m.Permanent {
		left := m.Lease - now.Sub(readAt)
		if left < 0 {
			left = 0
		}
		j.LeaseSeconds = int64((left + time.Second - 1) / time.Second)
	}
	if la := g.gw.LocalAddr(); la.IsValid() && m.InternalClient == la.String() {
		j.ThisHost = true
	}
	if kept != nil {
		k := kept[m.Key()]
		j.Kept = &k
	}
	return j
}

// mappingsPayloadLocked is g's cached table; s.mu is held.
func (s *Server) mappingsPayloadLocked(g *gateway, now time.Time) mappingsJSON {
	p := mappingsJSON{Gateway: g.id, Supported: !g.unsupported, Error: g.listErr, ReadAt: g.readAt, Mappings: []mappingJSON{}}
	kept := s.keptSet(g)
	for _, m := range g.mappings {
		p.Mappings = append(p.Mappings, toMappingJSON(g, m, g.readAt, now, kept))
	}
	return p
}

func (s *Server) externalPayloadLocked(g *gateway) externalJSON {
	p := externalJSON{Gateway: g.id, Error: g.extErr}
	if g.extKnown && g.ext.IsValid() {
		c := portmap.Classify(g.ext)
		p.ExternalIP, p.Class, p.Warning = g.ext.String(), c.String(), c.Warning()
	}
	return p
}

func (s *Server) gatewayJSONLocked(g *gateway) gatewayJSON {
	j := gatewayJSON{ID: g.id, Method: g.gw.Method(), Addr: g.gw.Addr(), Selected: g == s.selected,
		CanList: !g.unsupported && g.gw.Method() != portmap.NATPMP && g.gw.Method() != portmap.PCP}
	if la := g.gw.LocalAddr(); la.IsValid() {
		j.LocalAddr = la.String()
	}
	if g.info != nil {
		j.Name = g.info.FriendlyName
		j.Connected, j.Problem = g.info.Connected, g.info.Problem
	}
	e := s.externalPayloadLocked(g)
	j.ExternalIP, j.Class, j.Warning = e.ExternalIP, e.Class, e.Warning
	switch {
	case s.stopPolling == nil:
	case g == s.following:
		j.Updates = "events"
	case g == s.selected:
		j.Updates = "polling"
	}
	return j
}

func (s *Server) gatewaysPayloadLocked() gatewaysJSON {
	p := gatewaysJSON{Discovery: s.disc, Gateways: []gatewayJSON{}, Features: s.features()}
	if s.selected != nil {
		p.Selected = s.selected.id
	}
	for _, g := range s.gateways {
		p.Gateways = append(p.Gateways, s.gatewayJSONLocked(g))
	}
	return p
}

func (s *Server) features() featuresJSON {
	return featuresJSON{Keep: s.Keeper != nil, Check: s.Checker != nil, Watcher: s.Watcher != nil}
}

// sortMappings orders a table for display: by external port, then protocol.
func sortMappings(ms []portmap.Mapping) {
	slices.SortStableFunc(ms, func(a, b portmap.Mapping) int {
		if a.ExternalPort != b.ExternalPort {
			return int(a.ExternalPort) - int(b.ExternalPort)
		}
		switch {
		case a.Protocol < b.Protocol:
			return -1
		case a.Protocol > b.Protocol:
			return 1
		}
		return 0
	})
}
