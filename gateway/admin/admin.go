// Package admin is the admin page of "portfwd gateway", what OpenWrt's LuCI
// shows on its UPnP status page: every active mapping, whoever made it and
// through which protocol, with a delete button; the gateway's state
// (interfaces, external address, uptime, backend, request counters, policy,
// warnings) and its audit trail. It updates live, from the gateway's table
// events, as server-sent events.
//
// Server is the page, an http.Handler the daemon mounts on its admin
// address, over a Backend the daemon implements (package gateway/daemon),
// so that this package knows nothing of the daemon. It is guarded exactly
// like the client's web UI, by the same code (internal/websec: a per-run
// token, the Host and Origin checks), and styled by the same sheet
// (internal/webpage); it shares nothing else with the client side.
package admin

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	http "github.com/portfwd/portfwd/internal/httpx"

	"github.com/portfwd/portfwd/internal/addrclass"
	"github.com/portfwd/portfwd/internal/webpage"
	"github.com/portfwd/portfwd/internal/websec"
)

// TokenHeader is the request header that carries the token.
const TokenHeader = websec.TokenHeader

// Backend is the gateway as the admin page sees it. The daemon
// implements it over its mapping table, so that this package does not
// depend on the daemon.
type Backend interface {
	// Mappings returns every mapping in the table, every client's.
	Mappings() []Mapping
	// Delete removes the mapping of proto ("TCP" or "UDP") and
	// externalPort on externalAddr (an external pool address, or the zero
	// Addr for the gateway's own external address) on the operator's
	// authority, whoever made it. An error wrapping ErrNoSuchMapping means
	// there is none.
	Delete(ctx context.Context, proto string, externalAddr netip.Addr, externalPort uint16) error
	// Status returns the gateway's state. It is called for every page and
	// every few seconds while a page is open, so it must answer at once.
	Status() Status
	// Subscribe calls changed after every change to the table until cancel
	// is called. changed does not block.
	Subscribe(changed func()) (cancel func())
}

// PinholeBackend may be implemented by a Backend whose gateway opens IPv6
// pinholes: the page then lists them beside the port mappings, and the
// operator can close any.
type PinholeBackend interface {
	// Pinholes returns every pinhole, every client's.
	Pinholes() []Pinhole
	// DeletePinhole closes pinhole id on the operator's authority. An
	// error wrapping ErrNoSuchMapping means there is none.
	DeletePinhole(ctx context.Context, id uint16) error
}

// Pinhole is an IPv6 pinhole as the page shows it.
type Pinhole struct {
	ID           uint16     `json:"id"`
	Protocol     string     `json:"protocol"`
	InternalAddr netip.Addr `json:"internal_addr"`
	InternalPort uint16     `json:"internal_port"`
	// RemoteHost and RemotePort restrict it to one peer; zero means any.
	RemoteHost netip.Addr `json:"remote_host,omitzero"`
	RemotePort uint16     `json:"remote_port,omitempty"`
	// Client is the address that asked for it.
	Client      netip.Addr `json:"client,omitzero"`
	Source      string     `json:"source"`
	Description string     `json:"description"`
	Expires     time.Time  `json:"-"`
}

// Auditor may be implemented by an Backend that keeps an audit
// trail: the page then shows who opened what, when.
type Auditor interface {
	// AuditTrail returns the last records, newest first.
	AuditTrail() []AuditRecord
	// SubscribeAudit calls changed after every new record until cancel is
	// called. changed does not block.
	SubscribeAudit(changed func()) (cancel func())
}

// AuditRecord is one line of the audit trail: a mapping added,
// renewed, changed, deleted, expired or refused.
type AuditRecord struct {
	Time         time.Time      `json:"time"`
	Event        string         `json:"event"`
	Via          string         `json:"via"`
	Client       netip.Addr     `json:"client,omitzero"`
	Protocol     string         `json:"protocol,omitempty"`
	ExternalPort uint16         `json:"external_port,omitempty"`
	Internal     netip.AddrPort `json:"internal,omitzero"`
	RemoteHost   netip.Addr     `json:"remote_host,omitzero"`
	LeaseSeconds uint32         `json:"lease_s,omitempty"`
	Description  string         `json:"description,omitempty"`
	Action       string         `json:"action,omitempty"`
	Result       string         `json:"result"`
	Reason       string         `json:"reason,omitempty"`
}

// adminAuditShown is how many audit records the page shows.
const adminAuditShown = 200

// ErrNoSuchMapping is what Backend.Delete wraps when there is no
// mapping to delete.
var ErrNoSuchMapping = errors.New("no such mapping")

// Mapping is one row of the admin page's table.
type Mapping struct {
	Protocol     string `json:"protocol"` // "TCP" or "UDP"
	ExternalPort uint16 `json:"external_port"`
	// ExternalAddr is the external pool address the mapping is on; the
	// zero Addr (left out of the JSON) is the gateway's own external
	// address.
	ExternalAddr netip.Addr `json:"external_addr,omitzero"`
	InternalAddr netip.Addr `json:"internal_addr"`
	InternalPort uint16     `json:"internal_port"`
	// Client is the host that asked for the mapping; the zero Addr for
	// one made by the operator.
	Client netip.Addr `json:"client,omitzero"`
	// RemoteHost restricts the mapping to one peer; the zero Addr means any.
	RemoteHost netip.Addr `json:"remote_host,omitzero"`
	// Source is the protocol that made it: "UPnP", "NAT-PMP", "PCP" or
	// "admin".
	Source      string `json:"source"`
	Description string `json:"description"`
	Enabled     bool   `json:"enabled"`
	// Expires is when the lease ends; the zero Time means permanent.
	Expires time.Time `json:"-"`
	Created time.Time `json:"created,omitzero"`
	// Upstream is the mapping's half on the router above (double NAT),
	// nil when it is not chained.
	Upstream *UpstreamHalf `json:"upstream,omitempty"`
}

// UpstreamHalf is a chained mapping's half on the router above: where the
// Internet reaches it, through which protocol, until when.
type UpstreamHalf struct {
	Public  string    `json:"public"` // "203.0.113.1:18080"
	Method  string    `json:"method"` // "pcp", "natpmp", "upnp"
	Expires time.Time `json:"expires,omitzero"`
}

// Upstream is the router above's status (double NAT).
type Upstream struct {
	Mode           string `json:"mode,omitempty"`
	State          string `json:"state"` // "off", "not needed", "searching", "up", "down"
	Method         string `json:"method,omitempty"`
	Server         string `json:"server,omitempty"`
	Public         string `json:"public,omitempty"`
	Since          string `json:"since,omitempty"`
	LastError      string `json:"last_error,omitempty"`
	NextTry        string `json:"next_try,omitempty"`
	Chained        int    `json:"chained"`
	PendingDeletes int    `json:"pending_deletes"`
	Note           string `json:"note,omitempty"`
}

// Text is the one line the page shows for u.
func (u *Upstream) Text() string {
	if u == nil {
		return ""
	}
	s := u.State
	if u.Method != "" {
		s += " (" + u.Method + " to " + u.Server + ")"
	}
	if u.Public != "" {
		s += ", public address " + u.Public
	}
	if u.State == "up" || u.Chained > 0 {
		s += fmt.Sprintf(", %d mappings chained", u.Chained)
	}
	if u.PendingDeletes > 0 {
		s += fmt.Sprintf(", %d deletes waiting", u.PendingDeletes)
	}
	if u.LastError != "" && u.State != "up" {
		s += "; last error: " + u.LastError
	}
	if u.NextTry != "" {
		s += "; next try " + u.NextTry
	}
	if u.Note != "" {
		s += ". " + u.Note
	}
	return s
}

// Status is the gateway's state for the admin page.
type Status struct {
	// Name is the device's friendly name.
	Name    string    `json:"name"`
	Started time.Time `json:"started"`
	Backend string    `json:"backend"`
	// ExternalAddr is the address reported to clients (the zero Addr while
	// none is known); ExternalSource says where it comes from
	// ("interface wan0", "fixed", "stun HOST"), ExternalError why it is
	// unknown.
	ExternalAddr   netip.Addr `json:"external_addr,omitzero"`
	ExternalSource string     `json:"external_source,omitempty"`
	ExternalError  string     `json:"external_error,omitempty"`
	SecureMode     bool       `json:"secure_mode"`
	// Policy says, one sentence each, what clients may map.
	Policy []string `json:"policy"`
	// Warnings are what the operator should know about the gateway's
	// state: saved leases the backend refused at start, a damaged lease
	// journal kept aside.
	Warnings   []string    `json:"warnings,omitempty"`
	Interfaces []Interface `json:"interfaces"`
	// Services are where clients reach the gateway: the UPnP description
	// URLs, the NAT-PMP and PCP addresses.
	Services []Service `json:"services"`
	Requests []Counter `json:"requests"`
	// Errors count the gateway's own failures by kind (backend, store…).
	Errors []Count `json:"errors"`
	// Expired counts the mappings removed because their lease ended.
	Expired uint64 `json:"expired"`
	// Upstream is the router above's status, nil when the daemon has
	// none to report.
	Upstream *Upstream `json:"upstream,omitempty"`
	// UpstreamText is Upstream.Text(), for the page's script.
	UpstreamText string `json:"upstream_text,omitempty"`
}

// Interface is a network interface the gateway serves or forwards
// from.
type Interface struct {
	Name  string         `json:"name"`
	Role  string         `json:"role"` // "internal" or "external"
	Addrs []netip.Prefix `json:"addrs"`
	Up    bool           `json:"up"`
	// Error says why the interface could not be read (it may be missing).
	Error string `json:"error,omitempty"`
}

// Service is one way clients reach the gateway.
type Service struct {
	Name string `json:"name"` // "UPnP IGD", "NAT-PMP", "PCP"
	Addr string `json:"addr"`
}

// Counter counts the requests of one protocol and action that ended
// with one result (the UPnP error code or the NAT-PMP/PCP result code; 0
// is success).
type Counter struct {
	Protocol string `json:"protocol"`
	Action   string `json:"action"`
	Result   int    `json:"result"`
	Count    uint64 `json:"count"`
}

// Count is a named count.
type Count struct {
	Name  string `json:"name"`
	Count uint64 `json:"count"`
}

// Server is the admin page. Set its fields before first use; it is
// then an http.Handler, meant to be mounted at the root of the daemon's
// admin address. Close ends the open event streams.
type Server struct {
	Backend Backend
	// Token is the secret every request must present. If empty, a random
	// one is made on first use; read it back from this field afterwards.
	Token string
	// TokenFile, when set, is where the operator finds the token; the
	// refusal page says so.
	TokenFile string
	// StatusInterval is how often an open page gets the status anew, for
	// the counters and the external address (zero means 5 s). Table
	// changes arrive at once.
	StatusInterval time.Duration
	// Timeout bounds a delete (zero means 10 s).
	Timeout time.Duration
	Logger  *slog.Logger

	once      sync.Once
	mux       *http.ServeMux
	site      *webpage.Site
	done      chan struct{} // closed by Close: ends the event streams
	closeOnce sync.Once
}

func (a *Server) init() {
	a.once.Do(func() {
		if a.Token == "" {
			a.Token = websec.NewToken()
		}
		log := a.Logger
		if log == nil {
			log = slog.New(slog.DiscardHandler)
		}
		from := "printed by portfwd gateway at start"
		advice := "Open the address of the admin page that portfwd gateway printed at start: it ends with ?token= and a secret that changes at each start."
		if a.TokenFile != "" {
			from = "in " + a.TokenFile
			advice = "Open the admin page's address with ?token= and the secret in " + a.TokenFile + " (readable by its owner only) added: it changes at each start of portfwd gateway."
		}
		a.site = webpage.New(webpage.Config{
			Token: a.Token, Who: "portfwd gateway", TokenFrom: from, Advice: advice,
			Files: assets, Render: func(w io.Writer, data any) error { return renderPage(w, data.(adminPageData)) }, Logger: log,
		})
		a.done = make(chan struct{})
		mux, api := a.site.Routes(a.handlePage, "no such admin API route: see docs/gateway.md")
		api("GET /api/mappings", a.handleMappings)
		api("DELETE /api/mappings/{proto}/{port}", a.handleDelete)
		api("DELETE /api/pinholes/{id}", a.handleDeletePinhole)
		api("GET /api/status", a.handleStatus)
		api("GET /api/audit", a.handleAudit)
		api("GET /api/events", a.handleEvents)
		a.mux = mux
	})
}

// ServeHTTP implements http.Handler.
func (a *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.init()
	a.mux.ServeHTTP(w, r)
}

// Close ends the open event streams, so that the HTTP server's shutdown
// need not wait for them (the server's RegisterOnShutdown, net/http's or
// internal/httpserve's, is the place to call it). Pages still open reconnect, and are refused once the server
// is gone.
func (a *Server) Close() error {
	a.init()
	a.closeOnce.Do(func() { close(a.done) })
	return nil
}

// URL returns the address a browser should open for the page served on
// addr, token included.
func (a *Server) URL(addr net.Addr) string {
	a.init()
	return websec.PageURL(addr, a.Token)
}

// adminMappingJSON is a row as the API gives it: the lease as seconds
// left when the answer was made, for the page to count down.
type adminMappingJSON struct {
	Mapping
	Permanent bool  `json:"permanent"`
	ExpiresIn int64 `json:"expires_in"`
}

// adminTableJSON is GET /api/mappings and the "mappings" event.
type adminTableJSON struct {
	Mappings []adminMappingJSON `json:"mappings"`
	// Pinholes are the IPv6 pinholes, by ID (empty when the gateway opens
	// none).
	Pinholes []adminPinholeJSON `json:"pinholes"`
	// BySource counts the mappings by the protocol that made them.
	BySource []Count `json:"by_source"`
}

type adminPinholeJSON struct {
	Pinhole
	ExpiresIn int64 `json:"expires_in"`
}

// adminStatusJSON is GET /api/status and the "status" event.
type adminStatusJSON struct {
	Status
	UptimeSeconds int64 `json:"uptime_seconds"`
	// ExternalClass and ExternalWarning say what the external address
	// means for mappings (a private address: double NAT).
	ExternalClass   string `json:"external_class,omitempty"`
	ExternalWarning string `json:"external_warning,omitempty"`
	// Totals are the request counts by protocol, with how many were
	// answered with an error code (a refusal, or UPnP's end of the list
	// that clients read to the end).
	Totals []adminTotal `json:"totals"`
}

type adminTotal struct {
	Protocol string `json:"protocol"`
	Requests uint64 `json:"requests"`
	Errors   uint64 `json:"error_answers"`
}

// sources are the makers of mappings in the order the page lists them.
var sources = []string{"UPnP", "NAT-PMP", "PCP", "admin"}

// sourceOrder places a protocol's name in the order of sources, unknown
// ones last.
func sourceOrder(name string) int {
	if i := slices.Index(sources, name); i >= 0 {
		return i
	}
	return len(sources)
}

func (a *Server) table(now time.Time) adminTableJSON {
	ms := a.Backend.Mappings()
	sort.Slice(ms, func(i, j int) bool {
		x, y := ms[i], ms[j]
		return cmp.Or(x.ExternalAddr.Compare(y.ExternalAddr), cmp.Compare(x.ExternalPort, y.ExternalPort), cmp.Compare(x.Protocol, y.Protocol)) < 0
	})
	t := adminTableJSON{Mappings: make([]adminMappingJSON, 0, len(ms))}
	count := map[string]uint64{}
	for _, m := range ms {
		j := adminMappingJSON{Mapping: m, Permanent: m.Expires.IsZero()}
		if !j.Permanent {
			j.ExpiresIn = max(0, int64((m.Expires.Sub(now)+time.Second-1)/time.Second))
		}
		t.Mappings = append(t.Mappings, j)
		count[m.Source]++
	}
	for _, s := range sources {
		t.BySource = append(t.BySource, Count{Name: s, Count: count[s]})
	}
	t.Pinholes = []adminPinholeJSON{}
	if pb, ok := a.Backend.(PinholeBackend); ok {
		ps := pb.Pinholes()
		sort.Slice(ps, func(i, j int) bool { return ps[i].ID < ps[j].ID }) // not slices.SortFunc: one sort routine in the router build
		for _, p := range ps {
			t.Pinholes = append(t.Pinholes, adminPinholeJSON{Pinhole: p, ExpiresIn: max(0, int64((p.Expires.Sub(now)+time.Second-1)/time.Second))})
		}
	}
	return t
}

func (a *Server) status(now time.Time) adminStatusJSON {
	st := a.Backend.Status()
	j := adminStatusJSON{Status: st, UptimeSeconds: max(0, int64(now.Sub(st.Started)/time.Second))}
	if st.ExternalAddr.IsValid() {
		c := addrclass.Of(st.ExternalAddr)
		j.ExternalClass = c.String()
		j.ExternalWarning = c.Warning()
	}
	totals := map[string]adminTotal{}
	for _, c := range st.Requests {
		t := totals[c.Protocol]
		t.Protocol = c.Protocol
		t.Requests += c.Count
		if c.Result != 0 {
			t.Errors += c.Count
		}
		totals[c.Protocol] = t
	}
	j.Totals = make([]adminTotal, 0, len(totals))
	for _, t := range totals {
		j.Totals = append(j.Totals, t)
	}
	sort.Slice(j.Totals, func(a, b int) bool {
		x, y := j.Totals[a], j.Totals[b]
		return cmp.Or(cmp.Compare(sourceOrder(x.Protocol), sourceOrder(y.Protocol)), cmp.Compare(x.Protocol, y.Protocol)) < 0
	})
	return j
}

// adminAuditJSON is GET /api/audit and the "audit" event.
type adminAuditJSON struct {
	// Kept is false when the gateway keeps no audit trail.
	Kept    bool          `json:"kept"`
	Records []AuditRecord `json:"records"`
}

func (a *Server) audit() adminAuditJSON {
	au, ok := a.Backend.(Auditor)
	if !ok {
		return adminAuditJSON{Records: []AuditRecord{}}
	}
	recs := au.AuditTrail()
	if len(recs) > adminAuditShown {
		recs = recs[:adminAuditShown]
	}
	if recs == nil {
		recs = []AuditRecord{}
	}
	return adminAuditJSON{Kept: true, Records: recs}
}

// adminPageData is what the page (renderPage) shows before the script takes
// over.
type adminPageData struct {
	Token  string
	Status adminStatusJSON
	Table  adminTableJSON
	Audit  adminAuditJSON
}

func (a *Server) handlePage(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	a.site.Render(w, http.StatusOK, adminPageData{Token: a.Token, Status: a.status(now), Table: a.table(now), Audit: a.audit()})
}

func (a *Server) handleAudit(w http.ResponseWriter, r *http.Request) {
	websec.WriteJSON(w, http.StatusOK, a.audit())
}

func (a *Server) handleMappings(w http.ResponseWriter, r *http.Request) {
	websec.WriteJSON(w, http.StatusOK, a.table(time.Now()))
}

func (a *Server) handleStatus(w http.ResponseWriter, r *http.Request) {
	websec.WriteJSON(w, http.StatusOK, a.status(time.Now()))
}

// handleDelete is DELETE /api/mappings/{proto}/{port}, with
// ?external_addr=A for a mapping on external pool address A: it answers
// with the table as it is afterwards.
func (a *Server) handleDelete(w http.ResponseWriter, r *http.Request) {
	proto := strings.ToUpper(r.PathValue("proto"))
	if proto != "TCP" && proto != "UDP" {
		websec.WriteJSON(w, http.StatusBadRequest, websec.Error{Error: fmt.Sprintf("protocol %q: want tcp or udp", r.PathValue("proto")), Code: http.StatusBadRequest, Field: "protocol"})
		return
	}
	port, err := strconv.ParseUint(r.PathValue("port"), 10, 16)
	if err != nil || port == 0 {
		websec.WriteJSON(w, http.StatusBadRequest, websec.Error{Error: fmt.Sprintf("external port %q: want a number from 1 to 65535", r.PathValue("port")), Code: http.StatusBadRequest, Field: "external_port"})
		return
	}
	var addr netip.Addr
	if s := r.URL.Query().Get("external_addr"); s != "" {
		if addr, err = netip.ParseAddr(s); err != nil || !addr.Is4() {
			websec.WriteJSON(w, http.StatusBadRequest, websec.Error{Error: fmt.Sprintf("external address %q: want an IPv4 address of the external pool", s), Code: http.StatusBadRequest, Field: "external_addr"})
			return
		}
	}
	where := fmt.Sprintf("%s %d", proto, port)
	if addr.IsValid() {
		where = fmt.Sprintf("%s %s:%d", proto, addr, port)
	}
	a.removeAndAnswer(w, r, func(ctx context.Context) error { return a.Backend.Delete(ctx, proto, addr, uint16(port)) },
		"mapping", where, "the mapping could not be deleted",
		fmt.Sprintf("nothing is mapped on %s (any more): it may have expired or been deleted by its client", where))
}

// removeAndAnswer runs remove, which deletes the what named name, within
// the admin page's timeout, and answers with the table as it is afterwards,
// or with failed and the error (404 and missing when there was nothing to
// delete), logging either way.
func (a *Server) removeAndAnswer(w http.ResponseWriter, r *http.Request, remove func(context.Context) error, what string, name any, failed, missing string) {
	ctx, cancel := context.WithTimeout(r.Context(), cmp.Or(a.Timeout, 10*time.Second))
	defer cancel()
	if err := remove(ctx); err != nil {
		status, msg := http.StatusInternalServerError, failed+": "+err.Error()
		if errors.Is(err, ErrNoSuchMapping) {
			status, msg = http.StatusNotFound, missing
		}
		a.site.Logger().Warn("admin page: removing a "+what+" failed", what, name, "err", err)
		websec.WriteError(w, status, msg)
		return
	}
	a.site.Logger().Info("admin page: "+what+" removed", what, name, "by", r.RemoteAddr)
	websec.WriteJSON(w, http.StatusOK, a.table(time.Now()))
}

// handleDeletePinhole is DELETE /api/pinholes/{id}: it answers with the
// table as it is afterwards.
func (a *Server) handleDeletePinhole(w http.ResponseWriter, r *http.Request) {
	pb, ok := a.Backend.(PinholeBackend)
	if !ok {
		websec.WriteError(w, http.StatusNotFound, "this gateway opens no IPv6 pinholes")
		return
	}
	id, err := strconv.ParseUint(r.PathValue("id"), 10, 16)
	if err != nil || id == 0 {
		websec.WriteJSON(w, http.StatusBadRequest, websec.Error{Error: fmt.Sprintf("pinhole ID %q: want a number from 1 to 65535", r.PathValue("id")), Code: http.StatusBadRequest, Field: "id"})
		return
	}
	a.removeAndAnswer(w, r, func(ctx context.Context) error { return pb.DeletePinhole(ctx, uint16(id)) },
		"pinhole", id, "the pinhole could not be closed",
		fmt.Sprintf("there is no pinhole %d (any more): it may have expired or been closed by its client", id))
}

// handleEvents is GET /api/events: the table and the status at once, then
// the table after every change and the status every StatusInterval.
func (a *Server) handleEvents(w http.ResponseWriter, r *http.Request) {
	select {
	case <-a.done:
		websec.WriteError(w, http.StatusServiceUnavailable, "portfwd gateway is stopping")
		return
	default:
	}
	changed := make(chan struct{}, 1)
	cancel := a.Backend.Subscribe(func() {
		select {
		case changed <- struct{}{}:
		default: // one pending notice covers any number of changes
		}
	})
	defer cancel()
	audited := make(chan struct{}, 1)
	if au, ok := a.Backend.(Auditor); ok {
		cancel := au.SubscribeAudit(func() {
			select {
			case audited <- struct{}{}:
			default:
			}
		})
		defer cancel()
	}
	st, err := webpage.StartStream(w)
	if err != nil {
		return
	}
	sendAudit := func() bool {
		data, _ := json.Marshal(a.audit())
		return st.Send("audit", data) == nil
	}
	send := func(table bool) bool {
		now := time.Now()
		// These types always encode; json.Marshal escapes <, > and &.
		if table {
			data, _ := json.Marshal(a.table(now))
			if st.Send("mappings", data) != nil {
				return false
			}
		}
		data, _ := json.Marshal(a.status(now))
		return st.Send("status", data) == nil && st.Flush() == nil
	}
	if !sendAudit() || !send(true) {
		return
	}
	tick := time.NewTicker(cmp.Or(a.StatusInterval, 5*time.Second))
	defer tick.Stop()
	for {
		select {
		case <-changed:
			if !send(true) {
				return
			}
			// A burst of changes (a client mapping a range) is sent as
			// a few tables, not one per change.
			select {
			case <-time.After(adminEventSpacing):
			case <-a.done:
				return
			case <-r.Context().Done():
				return
			}
		case <-audited:
			if !sendAudit() || st.Flush() != nil {
				return
			}
			select {
			case <-time.After(adminEventSpacing):
			case <-a.done:
				return
			case <-r.Context().Done():
				return
			}
		case <-tick.C:
			if !send(false) {
				return
			}
		case <-a.done:
			return
		case <-r.Context().Done():
			return
		}
	}
}

// adminEventSpacing is the least time between two tables sent on one
// stream.
const adminEventSpacing = 200 * time.Millisecond
