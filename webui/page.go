package webui

import (
	"embed"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"time"

	"github.com/portfwd/portfwd/internal/webpage"
	"github.com/portfwd/portfwd/portmap"
)

// assets are the page template and script; the style sheet and what the
// pages share are package webpage's. They are plain files: edit them and
// rebuild, there is no build step.
//
//go:embed assets
var assets embed.FS

// page is the page's template. Its head starts with webpage.Head.
var page = template.Must(template.New("").Funcs(templateFuncs).ParseFS(webpage.Sub(assets), "index.html"))

// renderPage is the site's Render: the page for a pageData.
func renderPage(w io.Writer, data any) error { return page.ExecuteTemplate(w, "page", data) }

var templateFuncs = template.FuncMap{
	"head":          func() template.HTML { return template.HTML(webpage.Head) },
	"leaseText":     leaseText,
	"mappingKey":    func(m mappingJSON) string { return fmt.Sprintf("%s/%d/%s", m.Protocol, m.ExternalPort, m.RemoteHost) },
	"deref":         func(b *bool) bool { return b != nil && *b },
	"gatewayLabel":  gatewayLabel,
	"discoveryText": discoveryText,
	"tableStatus":   tableStatus,
	"placeholder":   placeholder,
	"gatewayDetail": gatewayDetail,
}

// placeholder is the router list's line while it is empty (app.js writes
// the same): it never says "none found" while a discovery is finding one.
func placeholder(d discoveryStatus) string {
	switch {
	case d.Running && d.Found > 0:
		return "found, reading its details…"
	case d.Running:
		return "searching…"
	case d.Done:
		return "none found"
	}
	return "searching…"
}

// gatewayDetail is the line under the router list (app.js writes the
// same): the selected router's whole name, protocol and address, which a
// phone-wide list cannot show.
func gatewayDetail(p pageData) string {
	for _, g := range p.Gateways {
		if g.Selected {
			name := g.Name
			if name == "" {
				name = g.Addr
			}
			return fmt.Sprintf("%s: %s at %s", name, methodName(g.Method), g.Addr)
		}
	}
	return ""
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
	Pinholes  pinholesJSON
}

// leaseText is a lease as the table shows it; the script counts it down.
func leaseText(m mappingJSON) string {
	if m.Permanent {
		return "permanent"
	}
	return webpage.FormatSeconds(m.LeaseSeconds)
}

// gatewayLabel names a router in the list (app.js writes the same), short
// enough for a phone: the external address is shown below the list.
func gatewayLabel(g gatewayJSON) string {
	name := g.Name
	if name == "" {
		name = g.Addr
	}
	return fmt.Sprintf("%s (%s)", name, methodName(g.Method))
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

// handlePage serves the page (site.page has checked the token).
func (s *Server) handlePage(w http.ResponseWriter, r *http.Request) {
	s.ensureDiscovery()
	s.mu.Lock()
	d := pageData{Token: s.Token, Features: s.features(), Discovery: s.disc, Pinholes: s.pinholesPayload()}
	gws := s.gatewaysPayloadLocked()
	d.Gateways = gws.Gateways
	if g := s.selected; g != nil {
		d.External = s.externalPayloadLocked(g)
		d.Listed = g.listed
		d.Table = s.mappingsPayloadLocked(g, time.Now())
	}
	s.mu.Unlock()
	s.site.Render(w, http.StatusOK, d)
}
