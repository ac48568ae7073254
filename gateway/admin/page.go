package admin

import (
	"embed"
	"fmt"
	"html/template"
	"net/netip"
	"strings"

	"github.com/portfwd/portfwd/internal/webpage"
)

// assets are the page's template and script; the style sheet and what the
// two web pages share are package webpage's. They are plain files: edit
// them and rebuild, there is no build step.
//
//go:embed assets
var assets embed.FS

// templateFuncs are what the page's template calls.
var templateFuncs = template.FuncMap{
	"seconds":    webpage.FormatSeconds,
	"addrPort":   netip.AddrPortFrom,
	"totalsText": totalsText,
	"countsText": countsText,
	"countText":  countText,
	"pinCountText": func(t adminTableJSON) string {
		if len(t.Pinholes) == 0 {
			return "No IPv6 pinholes."
		}
		return fmt.Sprintf("%d IPv6 pinhole(s).", len(t.Pinholes))
	},
}

// totalsText sums up the request counters as the admin page shows them
// (admin.js writes the same).
func totalsText(ts []adminTotal) string {
	if len(ts) == 0 {
		return "none yet"
	}
	parts := make([]string, len(ts))
	for i, t := range ts {
		parts[i] = fmt.Sprintf("%s %d", t.Protocol, t.Requests)
		if t.Errors > 0 {
			parts[i] += fmt.Sprintf(" (%d with an error code)", t.Errors)
		}
	}
	return strings.Join(parts, ", ")
}

// countsText lists the counts that are not zero, or says there are none.
func countsText(cs []Count) string {
	var parts []string
	for _, c := range cs {
		if c.Count > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", c.Name, c.Count))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// countText is the admin table's summary line.
func countText(t adminTableJSON) string {
	if len(t.Mappings) == 0 {
		return "No mappings."
	}
	var parts []string
	for _, c := range t.BySource {
		if c.Count > 0 {
			parts = append(parts, fmt.Sprintf("%d by %s", c.Count, c.Name))
		}
	}
	return fmt.Sprintf("%d mapping(s): %s.", len(t.Mappings), strings.Join(parts, ", "))
}
