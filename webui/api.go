package webui

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/portfwd/portfwd/internal/websec"
	"github.com/portfwd/portfwd/portmap"
)

// maxBody bounds a request body: the largest is a delete-many list.
const maxBody = 256 << 10

// maxLeaseSeconds is the longest lease the protocols can carry (a 32-bit
// count of seconds); routers may accept less and say so.
const maxLeaseSeconds = 1<<32 - 1

// maxDescription bounds a description; routers keep far less (miniupnpd 64
// bytes) and truncate the rest themselves.
const maxDescription = 256

func (s *Server) routes() *http.ServeMux {
	mux, api := s.site.Routes(s.handlePage, "no such API route: see docs/api.md")
	api("GET /api/gateways", s.handleGateways)
	api("POST /api/discover", s.handleDiscover)
	api("GET /api/gateway", s.handleGateway)
	api("PUT /api/gateway", s.handleSelect)
	api("GET /api/mappings", s.handleList)
	api("POST /api/mappings", s.handleAdd)
	api("POST /api/mappings/delete", s.handleDeleteMany)
	api("PUT /api/mappings/{proto}/{port}", s.handleEdit)
	api("DELETE /api/mappings/{proto}/{port}", s.handleDelete)
	api("PUT /api/mappings/{proto}/{port}/keep", s.handleKeep)
	api("POST /api/mappings/{proto}/{port}/check", s.handleCheck)
	api("GET /api/events", s.handleEvents)
	api("GET /api/pinholes", s.handlePinholes)
	return mux
}

// decode reads a JSON body into v, refusing unknown fields so that a typo
// in a script is an error rather than an ignored setting.
func decode(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		switch {
		case errors.Is(err, io.EOF):
			return invalid("", "the request needs a JSON body")
		case errors.As(err, &te):
			return invalid(te.Field, "%s must be a %s, not a JSON %s", te.Field, te.Type, te.Value)
		}
		return invalid("", "the request body is not valid JSON for this route: %v", err)
	}
	return nil
}

// target is the gateway a request acts on: ?gateway=ID, else the selected one.
func (s *Server) target(r *http.Request) (*gateway, error) {
	if id := r.URL.Query().Get("gateway"); id != "" {
		if g := s.gatewayByID(id); g != nil {
			return g, nil
		}
		return nil, &badRequest{field: "gateway", msg: fmt.Sprintf("no gateway with id %q: list them with GET /api/gateways", id)}
	}
	if g := s.selectedGateway(); g != nil {
		return g, nil
	}
	return nil, s.noGatewayError()
}

func (s *Server) opCtx(r *http.Request, factor int) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), time.Duration(factor)*s.timeout())
}

// handleGateways is GET /api/gateways.
func (s *Server) handleGateways(w http.ResponseWriter, r *http.Request) {
	s.ensureDiscovery()
	s.mu.Lock()
	p := s.gatewaysPayloadLocked()
	s.mu.Unlock()
	websec.WriteJSON(w, http.StatusOK, p)
}

// handleDiscover is POST /api/discover: it starts a search and answers at
// once; progress arrives as "discovery" events.
func (s *Server) handleDiscover(w http.ResponseWriter, r *http.Request) {
	s.StartDiscovery()
	s.mu.Lock()
	p := s.gatewaysPayloadLocked()
	s.mu.Unlock()
	websec.WriteJSON(w, http.StatusAccepted, p)
}

// handleSelect is PUT /api/gateway {"id": ...}: choose the gateway that
// requests act on by default.
func (s *Server) handleSelect(w http.ResponseWriter, r *http.Request) {
	var req struct {
		ID string `json:"id"`
	}
	if err := decode(w, r, &req); err != nil {
		s.writeErr(w, err)
		return
	}
	g := s.gatewayByID(req.ID)
	if g == nil {
		s.writeErr(w, &badRequest{field: "id", msg: fmt.Sprintf("no gateway with id %q: list them with GET /api/gateways", req.ID)})
		return
	}
	s.mu.Lock()
	s.selected = g
	p := s.gatewaysPayloadLocked()
	s.broadcastLocked("gateways", p)
	s.broadcastLocked("external", s.externalPayloadLocked(g))
	if g.listed {
		s.broadcastLocked("mappings", s.mappingsPayloadLocked(g, time.Now()))
	}
	s.mu.Unlock()
	s.kickPoller()
	websec.WriteJSON(w, http.StatusOK, p)
}

// gatewayDetailJSON is GET /api/gateway's answer.
type gatewayDetailJSON struct {
	gatewayJSON
	Info *portmap.Info `json:"info,omitempty"`
	// Error says which details could not be read.
	Error string `json:"error,omitempty"`
}

// handleGateway is GET /api/gateway: the device details, read afresh, and
// the external address with its class and warning.
func (s *Server) handleGateway(w http.ResponseWriter, r *http.Request) {
	g, err := s.target(r)
	if err != nil {
		s.writeErr(w, err)
		return
	}
	started := time.Now()
	ctx, cancel := s.opCtx(r, 1)
	info, err := g.gw.Info(ctx)
	cancel()
	if err != nil && info.Method == "" {
		s.writeErr(w, err)
		return
	}
	info.UptimeSeconds = int64(info.Uptime / time.Second)
	if info.ExternalIP.IsValid() {
		s.storeExternal(g, info.ExternalIP, nil, started)
	}
	s.mu.Lock()
	g.info = &info
	d := gatewayDetailJSON{gatewayJSON: s.gatewayJSONLocked(g), Info: &info}
	s.mu.Unlock()
	if err != nil {
		d.Error = "some details could not be read: " + s.sentence(err)
	}
	websec.WriteJSON(w, http.StatusOK, d)
}

// handleList is GET /api/mappings: the table, read afresh.
func (s *Server) handleList(w http.ResponseWriter, r *http.Request) {
	g, err := s.target(r)
	if err != nil {
		s.writeErr(w, err)
		return
	}
	started := time.Now()
	ctx, cancel := s.opCtx(r, 10)
	ms, err := g.gw.List(ctx, nil)
	cancel()
	if r.Context().Err() != nil {
		return // the client is gone
	}
	if err != nil && len(ms) == 0 && !errors.Is(err, portmap.ErrNotSupported) {
		s.writeErr(w, err)
		return
	}
	websec.WriteJSON(w, http.StatusOK, s.storeMappings(g, ms, err, started))
}

// addRequest is POST /api/mappings's body.
type addRequest struct {
	// Protocol is tcp, udp or both.
	Protocol     string `json:"protocol"`
	InternalPort int    `json:"internal_port"`
	// ExternalPort 0 means the same as InternalPort.
	ExternalPort int `json:"external_port"`
	// InternalClient "" means this computer.
	InternalClient string `json:"internal_client"`
	// LeaseSeconds 0 means permanent (UPnP) or the protocol's default.
	LeaseSeconds int64  `json:"lease_seconds"`
	Description  string `json:"description"`
	// Enabled defaults to true.
	Enabled    *bool  `json:"enabled"`
	Any        bool   `json:"any"`
	RemoteHost string `json:"remote_host"`
	// Replace replaces a mapping already at the external port, which is
	// otherwise refused (409, naming it).
	Replace bool `json:"replace"`
	// Keep asks the Keeper to keep the new mapping open.
	Keep bool `json:"keep"`
}

// request validates a and returns the requests to make (two for "both").
func (a addRequest) requests() ([]portmap.Request, error) {
	var protos []portmap.Protocol
	switch strings.ToLower(strings.TrimSpace(a.Protocol)) {
	case "tcp":
		protos = []portmap.Protocol{portmap.TCP}
	case "udp":
		protos = []portmap.Protocol{portmap.UDP}
	case "both":
		protos = []portmap.Protocol{portmap.TCP, portmap.UDP}
	default:
		return nil, invalid("protocol", "the protocol must be tcp, udp or both, not %q", a.Protocol)
	}
	if a.InternalPort < 1 || a.InternalPort > 65535 {
		return nil, invalid("internal_port", "the internal port must be a number from 1 to 65535, not %d", a.InternalPort)
	}
	if a.ExternalPort < 0 || a.ExternalPort > 65535 {
		return nil, invalid("external_port", "the external port must be a number from 1 to 65535 (or 0 for the same as the internal port), not %d", a.ExternalPort)
	}
	client, err := parseClient(a.InternalClient)
	if err != nil {
		return nil, err
	}
	lease, err := parseLease(a.LeaseSeconds)
	if err != nil {
		return nil, err
	}
	if err := checkDescription(a.Description); err != nil {
		return nil, err
	}
	if a.RemoteHost != "" {
		if _, err := netip.ParseAddr(a.RemoteHost); err != nil {
			return nil, invalid("remote_host", "the remote host must be an IP address, or empty for any, not %q", a.RemoteHost)
		}
	}
	base := portmap.Request{
		InternalPort: uint16(a.InternalPort), ExternalPort: uint16(a.ExternalPort), InternalClient: client,
		Lease: lease, Description: a.Description, Disabled: a.Enabled != nil && !*a.Enabled, Any: a.Any,
		RemoteHost: a.RemoteHost, Replace: a.Replace,
	}
	out := make([]portmap.Request, len(protos))
	for i, p := range protos {
		out[i] = base
		out[i].Protocol = p
	}
	return out, nil
}

// parseClient checks an internal client address: "" is this computer.
func parseClient(s string) (netip.Addr, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return netip.Addr{}, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, invalid("internal_client", "the internal client must be an IP address on your network, such as 192.168.1.20, not %q", s)
	}
	a = a.Unmap()
	if a.IsUnspecified() || a.IsLoopback() || a.IsMulticast() {
		return netip.Addr{}, invalid("internal_client", "the internal client must be a computer's address on your network, not %s", a)
	}
	return a, nil
}

func parseLease(secs int64) (time.Duration, error) {
	if secs < 0 || secs > maxLeaseSeconds {
		return 0, invalid("lease_seconds", "the lease must be from 0 (permanent) to %d seconds, not %d", int64(maxLeaseSeconds), secs)
	}
	return time.Duration(secs) * time.Second, nil
}

func checkDescription(d string) error {
	if !utf8.ValidString(d) || len(d) > maxDescription {
		return invalid("description", "the description must be text of at most %d bytes", maxDescription)
	}
	for _, r := range d {
		if r < 0x20 || r == 0x7f {
			return invalid("description", "the description must not contain control characters such as line breaks")
		}
	}
	return nil
}

// handleAdd is POST /api/mappings.
func (s *Server) handleAdd(w http.ResponseWriter, r *http.Request) {
	var req addRequest
	if err := decode(w, r, &req); err != nil {
		s.writeErr(w, err)
		return
	}
	reqs, err := req.requests()
	if err != nil {
		s.writeErr(w, err)
		return
	}
	if req.Keep && s.Keeper == nil {
		s.writeErr(w, invalid("keep", "this portfwd ui cannot keep mappings open"))
		return
	}
	g, err := s.target(r)
	if err != nil {
		s.writeErr(w, err)
		return
	}
	type result struct {
		Mappings  []mappingJSON `json:"mappings"`
		KeepError string        `json:"keep_error,omitempty"`
	}
	res := result{Mappings: []mappingJSON{}}
	defer s.kickPoller()
	for _, pr := range reqs {
		ctx, cancel := s.opCtx(r, 2)
		m, err := g.gw.Add(ctx, pr)
		if err == nil && req.Keep {
			if kerr := s.Keeper.Keep(ctx, g.gw, m); kerr != nil {
				res.KeepError = s.sentence(kerr)
			}
		}
		cancel()
		if err != nil {
			e := s.errorResponse(err)
			if len(res.Mappings) > 0 {
				// "both": the first protocol's mapping was made; say so.
				e.Error = fmt.Sprintf("%s (the %s mapping was added; delete it if you wanted both or neither)", e.Error, res.Mappings[0].Protocol)
			}
			websec.WriteJSON(w, e.Code, e)
			return
		}
		res.Mappings = append(res.Mappings, s.single(g, m))
	}
	websec.WriteJSON(w, http.StatusCreated, res)
}

// single converts a mapping just returned by the gateway.
func (s *Server) single(g *gateway, m portmap.Mapping) mappingJSON {
	now := time.Now()
	return toMappingJSON(g, m, now, now, s.keptSet(g))
}

// pathKey reads {proto}/{port} and ?remote= into a mapping key.
func pathKey(r *http.Request) (portmap.Key, error) {
	p, err := portmap.ParseProtocol(r.PathValue("proto"))
	if err != nil {
		return portmap.Key{}, invalid("protocol", "the mapping's protocol in the URL must be tcp or udp, not %q", r.PathValue("proto"))
	}
	port, err := strconv.ParseUint(r.PathValue("port"), 10, 16)
	if err != nil || port == 0 {
		return portmap.Key{}, invalid("external_port", "the mapping's external port in the URL must be a number from 1 to 65535, not %q", r.PathValue("port"))
	}
	return portmap.Key{Protocol: p, ExternalPort: uint16(port), RemoteHost: r.URL.Query().Get("remote")}, nil
}

// editRequest is PUT /api/mappings/{proto}/{port}'s body: fields left out
// keep their value.
type editRequest struct {
	ExternalPort   *int    `json:"external_port"`
	InternalPort   *int    `json:"internal_port"`
	InternalClient *string `json:"internal_client"`
	Description    *string `json:"description"`
	LeaseSeconds   *int64  `json:"lease_seconds"`
	Enabled        *bool   `json:"enabled"`
	Replace        bool    `json:"replace"`
}

func (e editRequest) change() (portmap.Change, error) {
	c := portmap.Change{Replace: e.Replace}
	port := func(field, what string, v *int) (*uint16, error) {
		if v == nil {
			return nil, nil
		}
		if *v < 1 || *v > 65535 {
			return nil, invalid(field, "the %s port must be a number from 1 to 65535, not %d", what, *v)
		}
		p := uint16(*v)
		return &p, nil
	}
	var err error
	if c.ExternalPort, err = port("external_port", "external", e.ExternalPort); err != nil {
		return c, err
	}
	if c.InternalPort, err = port("internal_port", "internal", e.InternalPort); err != nil {
		return c, err
	}
	if e.InternalClient != nil {
		a, err := parseClient(*e.InternalClient)
		if err != nil {
			return c, err
		}
		if !a.IsValid() {
			return c, invalid("internal_client", "give the internal client's address, or leave the field out to keep it")
		}
		c.InternalClient = &a
	}
	if e.Description != nil {
		if err := checkDescription(*e.Description); err != nil {
			return c, err
		}
		c.Description = e.Description
	}
	if e.LeaseSeconds != nil {
		l, err := parseLease(*e.LeaseSeconds)
		if err != nil {
			return c, err
		}
		c.Lease = &l
	}
	c.Enabled = e.Enabled
	return c, nil
}

// handleEdit is PUT /api/mappings/{proto}/{port}.
func (s *Server) handleEdit(w http.ResponseWriter, r *http.Request) {
	key, err := pathKey(r)
	if err != nil {
		s.writeErr(w, err)
		return
	}
	var req editRequest
	if err := decode(w, r, &req); err != nil {
		s.writeErr(w, err)
		return
	}
	c, err := req.change()
	if err != nil {
		s.writeErr(w, err)
		return
	}
	g, err := s.target(r)
	if err != nil {
		s.writeErr(w, err)
		return
	}
	defer s.kickPoller()
	ctx, cancel := s.opCtx(r, 3)
	defer cancel()
	kept := s.isKept(g, key)
	m, err := g.gw.Edit(ctx, key, c)
	if err != nil {
		s.writeErr(w, err)
		return
	}
	res := struct {
		Mapping   mappingJSON `json:"mapping"`
		KeepError string      `json:"keep_error,omitempty"`
	}{}
	if kept {
		// The keeper holds the old settings: hand it the new mapping.
		if m.Key() != key {
			_ = s.Keeper.Release(ctx, g.gw, key)
		}
		if err := s.Keeper.Keep(ctx, g.gw, m); err != nil {
			res.KeepError = s.sentence(err)
		}
	}
	res.Mapping = s.single(g, m)
	websec.WriteJSON(w, http.StatusOK, res)
}

func (s *Server) isKept(g *gateway, key portmap.Key) bool {
	return s.Keeper != nil && s.keptSet(g)[key]
}

// deleteOne releases a kept mapping (else the keeper would put it back)
// and deletes it.
func (s *Server) deleteOne(ctx context.Context, g *gateway, key portmap.Key) error {
	if s.isKept(g, key) {
		if err := s.Keeper.Release(ctx, g.gw, key); err != nil {
			return fmt.Errorf("could not stop keeping %s open: %w", key, err)
		}
	}
	return g.gw.Delete(ctx, key)
}

// handleDelete is DELETE /api/mappings/{proto}/{port}.
func (s *Server) handleDelete(w http.ResponseWriter, r *http.Request) {
	key, err := pathKey(r)
	if err != nil {
		s.writeErr(w, err)
		return
	}
	g, err := s.target(r)
	if err != nil {
		s.writeErr(w, err)
		return
	}
	defer s.kickPoller()
	ctx, cancel := s.opCtx(r, 1)
	defer cancel()
	if err := s.deleteOne(ctx, g, key); err != nil {
		s.writeErr(w, err)
		return
	}
	websec.WriteJSON(w, http.StatusOK, map[string]any{"deleted": []keyJSON{toKeyJSON(key)}, "count": 1})
}

// deleteManyRequest is POST /api/mappings/delete's body.
type deleteManyRequest struct {
	Mappings []keyJSON `json:"mappings"`
	Ranges   []struct {
		Protocol string `json:"protocol"`
		Start    int    `json:"start"`
		End      int    `json:"end"`
	} `json:"ranges"`
}

// handleDeleteMany is POST /api/mappings/delete: delete a list of mappings
// and port ranges, going on past failures and reporting each.
func (s *Server) handleDeleteMany(w http.ResponseWriter, r *http.Request) {
	var req deleteManyRequest
	if err := decode(w, r, &req); err != nil {
		s.writeErr(w, err)
		return
	}
	type rangeKey struct {
		proto      portmap.Protocol
		start, end uint16
	}
	var ranges []rangeKey
	for i, rg := range req.Ranges {
		p, err := portmap.ParseProtocol(rg.Protocol)
		if err != nil {
			s.writeErr(w, invalid("ranges", "range %d: the protocol must be tcp or udp, not %q", i+1, rg.Protocol))
			return
		}
		if rg.Start < 1 || rg.End > 65535 || rg.Start > rg.End {
			s.writeErr(w, invalid("ranges", "range %d: %d-%d is not a port range: give a start and an end from 1 to 65535, start first", i+1, rg.Start, rg.End))
			return
		}
		ranges = append(ranges, rangeKey{p, uint16(rg.Start), uint16(rg.End)})
	}
	for i, k := range req.Mappings {
		if _, err := portmap.ParseProtocol(string(k.Protocol)); err != nil || k.ExternalPort == 0 {
			s.writeErr(w, invalid("mappings", "mapping %d: give a protocol (tcp or udp) and an external port from 1 to 65535", i+1))
			return
		}
	}
	if len(req.Mappings)+len(ranges) == 0 {
		s.writeErr(w, invalid("mappings", "nothing to delete: give mappings or ranges"))
		return
	}
	g, err := s.target(r)
	if err != nil {
		s.writeErr(w, err)
		return
	}
	defer s.kickPoller()
	type failure struct {
		keyJSON
		Error string `json:"error"`
	}
	type rangeResult struct {
		Protocol portmap.Protocol `json:"protocol"`
		Start    uint16           `json:"start"`
		End      uint16           `json:"end"`
		// Deleted are the mappings really removed (read from the router
		// before and after), and Count how many.
		Deleted []keyJSON `json:"deleted"`
		Count   int       `json:"count"`
		Error   string    `json:"error,omitempty"`
	}
	res := struct {
		Deleted []keyJSON     `json:"deleted"`
		Ranges  []rangeResult `json:"ranges,omitempty"`
		Failed  []failure     `json:"failed,omitempty"`
		Count   int           `json:"count"`
		// Set when something failed, as in every error response.
		Error      string `json:"error,omitempty"`
		Code       int    `json:"code,omitempty"`
		RouterCode int    `json:"router_code,omitempty"`
	}{Deleted: []keyJSON{}}
	ctx, cancel := s.opCtx(r, 10)
	defer cancel()
	var firstErr error
	failures := 0
	for _, k := range req.Mappings {
		p, _ := portmap.ParseProtocol(string(k.Protocol))
		key := portmap.Key{Protocol: p, ExternalPort: k.ExternalPort, RemoteHost: k.RemoteHost}
		if err := s.deleteOne(ctx, g, key); err != nil {
			res.Failed = append(res.Failed, failure{toKeyJSON(key), s.sentence(err)})
			failures++
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		res.Deleted = append(res.Deleted, toKeyJSON(key))
		res.Count++
	}
	for _, rg := range ranges {
		gone, err := g.gw.DeleteRange(ctx, rg.proto, rg.start, rg.end)
		rr := rangeResult{Protocol: rg.proto, Start: rg.start, End: rg.end, Deleted: []keyJSON{}, Count: len(gone)}
		for _, m := range gone {
			rr.Deleted = append(rr.Deleted, toKeyJSON(m.Key()))
		}
		if err != nil {
			rr.Error = s.sentence(err)
			failures++
			if firstErr == nil {
				firstErr = err
			}
		}
		res.Count += len(gone)
		res.Ranges = append(res.Ranges, rr)
	}
	if firstErr != nil {
		e := s.errorResponse(firstErr)
		res.Error = fmt.Sprintf("%d of %d deletions failed; the first: %s", failures, len(req.Mappings)+len(ranges), e.Error)
		res.Code, res.RouterCode = e.Code, e.RouterCode
		websec.WriteJSON(w, e.Code, res)
		return
	}
	websec.WriteJSON(w, http.StatusOK, res)
}

// findMapping returns the mapping at key, from a fresh read of the table.
func (s *Server) findMapping(ctx context.Context, g *gateway, key portmap.Key) (portmap.Mapping, error) {
	ms, err := g.gw.List(ctx, nil)
	for _, m := range ms {
		if m.Key() == key {
			return m, nil
		}
	}
	if err != nil {
		return portmap.Mapping{}, err
	}
	return portmap.Mapping{}, &notFound{key}
}

type notFound struct{ key portmap.Key }

func (e *notFound) Error() string {
	return fmt.Sprintf("the router has no mapping %s (any more); reload the list", e.key)
}

// handleKeep is PUT /api/mappings/{proto}/{port}/keep {"keep": bool}.
func (s *Server) handleKeep(w http.ResponseWriter, r *http.Request) {
	if s.Keeper == nil {
		websec.WriteError(w, http.StatusNotFound, "this portfwd ui cannot keep mappings open")
		return
	}
	key, err := pathKey(r)
	if err != nil {
		s.writeErr(w, err)
		return
	}
	var req struct {
		Keep *bool `json:"keep"`
	}
	if err := decode(w, r, &req); err != nil {
		s.writeErr(w, err)
		return
	}
	if req.Keep == nil {
		s.writeErr(w, invalid("keep", `say {"keep": true} or {"keep": false}`))
		return
	}
	g, err := s.target(r)
	if err != nil {
		s.writeErr(w, err)
		return
	}
	ctx, cancel := s.opCtx(r, 10)
	defer cancel()
	if *req.Keep {
		m, err := s.findMapping(ctx, g, key)
		if err == nil {
			err = s.Keeper.Keep(ctx, g.gw, m)
		}
		if err != nil {
			s.writeErr(w, err)
			return
		}
	} else if err := s.Keeper.Release(ctx, g.gw, key); err != nil {
		s.writeErr(w, err)
		return
	}
	s.mu.Lock()
	if g.listed {
		// Push the table again: its "kept" flags changed.
		s.broadcastLocked("mappings", s.mappingsPayloadLocked(g, time.Now()))
	}
	s.mu.Unlock()
	websec.WriteJSON(w, http.StatusOK, map[string]any{"mapping": toKeyJSON(key), "kept": *req.Keep})
}

// handleCheck is POST /api/mappings/{proto}/{port}/check.
func (s *Server) handleCheck(w http.ResponseWriter, r *http.Request) {
	if s.Checker == nil {
		websec.WriteError(w, http.StatusNotFound, "this portfwd ui has no reachability checker")
		return
	}
	key, err := pathKey(r)
	if err != nil {
		s.writeErr(w, err)
		return
	}
	g, err := s.target(r)
	if err != nil {
		s.writeErr(w, err)
		return
	}
	ctx, cancel := s.opCtx(r, 10)
	defer cancel()
	m, err := s.findMapping(ctx, g, key)
	if err != nil {
		s.writeErr(w, err)
		return
	}
	result, err := s.Checker.Check(ctx, g.gw, string(m.Protocol), m.InternalPort, m.ExternalPort)
	if err != nil {
		s.writeErr(w, err)
		return
	}
	summary := ""
	if st, ok := result.(fmt.Stringer); ok {
		summary = st.String()
	}
	websec.WriteJSON(w, http.StatusOK, map[string]any{"mapping": toKeyJSON(key), "summary": summary, "result": result})
}
