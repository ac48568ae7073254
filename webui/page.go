package webui

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"time"

	"github.com/portfwd/portfwd/portmap"
)

// assets are the page template, script and style sheet. They are plain
// files: edit them and rebuild, there is no build step.
//
//go:embed assets
var assets embed.FS

var templateFuncs = template.FuncMap{
	"leaseText":     leaseText,
	"mappingKey":    func(m mappingJSON) string { return fmt.Sprintf("%s/%d/%s", m.Protocol, m.ExternalPort, m.RemoteHost) },
	"deref":         func(b *bool) bool { return b != nil && *b },
	"gatewayLabel":  gatewayLabel,
	"discoveryText": discoveryText,
	"tableStatus":   tableStatus,
}

// pageData is what the page template shows before the script takes over:
// whatever the server already knows, so that the page appears at once even
// when the router is slow.
type pageData struct {
	Token     string
	Features  featuresJSON
	Discovery discoveryStatus
	Gateways  []gatewayJSON
	External  externalJSON
	Listed    bool
	Table     mappingsJSON
}

// leaseText is a lease as the table shows it; the script counts it down.
func leaseText(m mappingJSON) string {
	if m.Permanent {
		return "permanent"
	}
	return formatSeconds(m.LeaseSeconds)
}

// formatSeconds writes a duration the way the script does: 1h 02m 03s.
func formatSeconds(s int64) string {
	if s <= 0 {
		return "expired"
	}
	d, h, m, sec := s/86400, s/3600%24, s/60%60, s%60
	switch {
	case d > 0:
		return fmt.Sprintf("%dd %02dh %02dm", d, h, m)
	case h > 0:
		return fmt.Sprintf("%dh %02dm %02ds", h, m, sec)
	case m > 0:
		return fmt.Sprintf("%dm %02ds", m, sec)
	}
	return fmt.Sprintf("%ds", sec)
}

func gatewayLabel(g gatewayJSON) string {
	name := g.Name
	if name == "" {
		name = g.Addr
	}
	s := fmt.Sprintf("%s (%s", name, methodName(g.Method))
	if g.ExternalIP != "" {
		s += ", " + g.ExternalIP
	}
	return s + ")"
}

// methodName is a protocol as people write it.
func methodName(m portmap.Method) string {
	switch m {
	case portmap.UPnP:
		return "UPnP"
	case portmap.NATPMP:
		return "NAT-PMP"
	case portmap.PCP:
		return "PCP"
	}
	return string(m)
}

func discoveryText(d discoveryStatus) string {
	switch {
	case d.Running && d.Message != "":
		return d.Message
	case d.Running:
		return "Searching for gateways…"
	case d.Error != "":
		return d.Error
	case d.Message != "":
		return d.Message
	}
	return "Searching for gateways…"
}

func tableStatus(p pageData) string {
	switch {
	case len(p.Gateways) == 0:
		return "The table appears once a gateway is found."
	case !p.Listed:
		return "Reading the table…"
	case !p.Table.Supported:
		return "This router's protocol cannot list its mappings (only UPnP can)."
	case p.Table.Error != "":
		return p.Table.Error
	case len(p.Table.Mappings) == 0:
		return "No mappings."
	}
	return fmt.Sprintf("%d mapping(s).", len(p.Table.Mappings))
}

// handlePage serves the page: to a request carrying the token in its URL
// (which also gets the cookie) or in the cookie.
func (s *Server) handlePage(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	setSecurityHeaders(h)
	h.Set("Cache-Control", "no-store")
	switch {
	case !hostAllowed(r):
		s.refusePage(w, http.StatusMisdirectedRequest, "This server only answers to its own address; the page was asked for under another name.")
		return
	case !originAllowed(r):
		s.refusePage(w, http.StatusForbidden, "Requests from other web sites are refused.")
		return
	}
	if t := r.URL.Query().Get("token"); t != "" {
		if !s.tokenEqual(t) {
			s.refusePage(w, http.StatusForbidden, "The token in this address is wrong, perhaps from an earlier run of portfwd ui.")
			return
		}
		// SameSite=Strict: no other site can make the browser send it;
		// HttpOnly: no script can read it. The event stream, which cannot
		// send headers, relies on it.
		http.SetCookie(w, &http.Cookie{Name: s.cookieName, Value: s.Token, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode})
	} else if !s.cookieToken(r) {
		s.refusePage(w, http.StatusForbidden, "This page needs the secret token of this run of portfwd ui.")
		return
	}
	s.ensureDiscovery()
	s.mu.Lock()
	d := pageData{Token: s.Token, Features: s.features(), Discovery: s.disc}
	gws := s.gatewaysPayloadLocked()
	d.Gateways = gws.Gateways
	if g := s.selected; g != nil {
		d.External = s.externalPayloadLocked(g)
		d.Listed = g.listed
		d.Table = s.mappingsPayloadLocked(g, time.Now())
	}
	s.mu.Unlock()
	s.render(w, http.StatusOK, "page", d)
}

func (s *Server) refusePage(w http.ResponseWriter, status int, msg string) {
	s.render(w, status, "refused", msg)
}

func (s *Server) render(w http.ResponseWriter, status int, name string, data any) {
	var buf bytes.Buffer
	if err := s.page.ExecuteTemplate(&buf, name, data); err != nil {
		s.logger().Error("cannot render the page", "template", name, "err", err)
		http.Error(w, "internal error: the page could not be rendered", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// staticHandler serves the script and style sheet. They hold no secret,
// but the Host check still applies so that a rebinding page learns nothing.
func (s *Server) staticHandler() http.Handler {
	sub, err := fs.Sub(assets, "assets")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	files := http.StripPrefix("/static/", http.FileServerFS(sub))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		setSecurityHeaders(w.Header())
		if !hostAllowed(r) {
			http.Error(w, "wrong Host", http.StatusMisdirectedRequest)
			return
		}
		if r.URL.Path == "/static/index.html" || r.URL.Path == "/static/" {
			http.NotFound(w, r) // the template is not a page of its own
			return
		}
		w.Header().Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	})
}
