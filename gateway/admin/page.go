package admin

import (
	"bufio"
	"embed"
	"fmt"
	"html"
	"io"
	"net/netip"
	"strings"

	"github.com/portfwd/portfwd/internal/webpage"
)

// assets are the page's script; the style sheet and what the two web
// pages share are package webpage's. They are plain files: edit them and
// rebuild, there is no build step.
//
//go:embed assets
var assets embed.FS

// The page is written in Go, not with html/template: html/template makes
// the linker keep every exported method of every type (it calls methods
// by name), 2.7 MB of the gateway-only build for a router's flash. Every
// value from a client or the router goes through html.EscapeString (esc),
// in text and in quoted attributes alike.

var esc = html.EscapeString

// pageWriter writes the page; the first write error sticks and ends it.
type pageWriter struct {
	w   *bufio.Writer
	err error
}

func (p *pageWriter) s(parts ...string) {
	for _, s := range parts {
		if p.err == nil {
			_, p.err = p.w.WriteString(s)
		}
	}
}

// gatewayName is the gateway's name as the page's title shows it.
func gatewayName(s Status) string {
	if s.Name == "" {
		return "portfwd gateway"
	}
	return s.Name
}

// hiddenIf is the hidden attribute when cond holds.
func hiddenIf(cond bool) string {
	if cond {
		return " hidden"
	}
	return ""
}

// addrText is a valid address as text, or what an invalid one is shown
// as.
func addrText(a netip.Addr, invalid string) string {
	if !a.IsValid() {
		return invalid
	}
	return a.String()
}

// renderPage writes the admin page: what the server knows, before the
// script (admin.js) takes over and keeps it live.
func renderPage(w io.Writer, d adminPageData) error {
	p := &pageWriter{w: bufio.NewWriter(w)}
	st := d.Status
	p.s(`<!doctype html>
<html lang="en">
<head>
`, webpage.Head, `
<meta name="portfwd-token" content="`, esc(d.Token), `">
<title>`, esc(gatewayName(st.Status)), `: admin page</title>
<script src="/static/admin.js" defer></script>
</head>
<body>
<a class="skip" href="#mappings-heading">Skip to the mappings</a>
<header class="top">
  <h1 id="gw-name">`, esc(gatewayName(st.Status)), `</h1>
  <span class="muted">admin page</span>
  <span id="live" class="live" role="status" aria-live="polite">connecting…</span>
</header>
<main>
<div id="notice" class="notice" role="alert" hidden><span id="notice-text"></span><button type="button" id="notice-close" class="link" aria-label="Dismiss this message">Dismiss</button></div>
`)
	writeStatus(p, st)
	writeMappings(p, d.Table)
	writePinholes(p, d.Table)
	writeAudit(p, d.Audit)
	writeNetwork(p, st)
	p.s(`</main>

<dialog id="confirm-dialog" aria-labelledby="confirm-title" aria-describedby="confirm-text">
  <form id="confirm-form" method="dialog">
    <h2 id="confirm-title">Delete the mapping?</h2>
    <p id="confirm-text"></p>
    <div class="buttons">
      <button type="button" id="confirm-cancel">Cancel</button>
      <button type="submit" id="confirm-ok" class="danger">Delete</button>
    </div>
  </form>
</dialog>

<footer class="muted">Deleting a mapping closes its port at once; the client that made it may ask for it again.</footer>
</body>
</html>
`)
	if p.err != nil {
		return p.err
	}
	return p.w.Flush()
}

func writeStatus(p *pageWriter, st adminStatusJSON) {
	class, source := "", ""
	if st.ExternalClass != "" {
		class = "(" + st.ExternalClass + ")"
	}
	if st.ExternalSource != "" {
		source = "from " + st.ExternalSource
	}
	secure := "off: any client may map to any host"
	if st.SecureMode {
		secure = "on: clients may map ports only to themselves"
	}
	p.s(`
<section class="card" aria-labelledby="status-heading">
  <h2 id="status-heading">Status</h2>
  <dl class="info">
    <dt>Uptime</dt><dd><span id="uptime" class="lease" data-seconds="`, fmt.Sprint(st.UptimeSeconds), `">`, webpage.FormatSeconds(st.UptimeSeconds), `</span></dd>
    <dt>External address</dt>
    <dd><strong id="external-ip">`, esc(addrText(st.ExternalAddr, "unknown")), `</strong>
      <span id="external-class" class="muted">`, esc(class), `</span>
      <span id="external-source" class="muted">`, esc(source), `</span>
      <span id="external-error" class="error">`, esc(st.ExternalError), `</span></dd>
    <dt>Router above</dt><dd id="upstream">`, upstreamText(st.Upstream), `</dd>
    <dt>Backend</dt><dd id="backend">`, esc(st.Backend), `</dd>
    <dt>Secure mode</dt><dd id="secure-mode">`, secure, `</dd>
    <dt>Requests</dt><dd id="totals">`, esc(totalsText(st.Totals)), `</dd>
    <dt>Leases expired</dt><dd id="expired">`, fmt.Sprint(st.Expired), `</dd>
    <dt>Errors</dt><dd id="errors">`, esc(countsText(st.Errors)), `</dd>
  </dl>
  <p id="external-warning" class="warning"`, hiddenIf(st.ExternalWarning == ""), `>`, esc(st.ExternalWarning), `</p>
  <ul id="warnings" class="warning"`, hiddenIf(len(st.Warnings) == 0), `>`)
	for _, w := range st.Warnings {
		p.s(`<li>`, esc(w), `</li>`)
	}
	p.s(`</ul>
  <h3 id="policy-heading">Policy in force</h3>
  <ul id="policy" aria-labelledby="policy-heading">`)
	for _, line := range st.Policy {
		p.s(`<li>`, esc(line), `</li>`)
	}
	p.s(`</ul>
</section>
`)
}

func writeMappings(p *pageWriter, t adminTableJSON) {
	p.s(`
<section class="card" aria-labelledby="mappings-heading">
  <h2 id="mappings-heading" tabindex="-1">Active port mappings</h2>
  <p id="table-status" class="muted" aria-live="polite">`, esc(countText(t)), `</p>
  <div class="table-wrap">
  <table id="mappings" class="plain">
    <caption class="visually-hidden">Every port mapping of every client, with the protocol that made it.</caption>
    <thead>
      <tr>
        <th scope="col">Client</th>
        <th scope="col">Forwards to</th>
        <th scope="col">External port</th>
        <th scope="col">Protocol</th>
        <th scope="col">Made by</th>
        <th scope="col">Description</th>
        <th scope="col">Expires in</th>
        <th scope="col"><span class="visually-hidden">Actions</span></th>
      </tr>
    </thead>
    <tbody id="rows">`)
	for _, m := range t.Mappings {
		off, disabled, only := "", "", ""
		if !m.Enabled {
			off, disabled = ` class="off"`, ` <span class="muted">(disabled)</span>`
		}
		if m.RemoteHost.IsValid() {
			only = ` <span class="muted">only from ` + esc(m.RemoteHost.String()) + `</span>`
		}
		if u := m.Upstream; u != nil {
			only += ` <span class="muted upstream">⇐ ` + esc(u.Public) + ` (` + esc(u.Method) + ` upstream)</span>`
		}
		expires := "never"
		if !m.Permanent {
			expires = webpage.FormatSeconds(m.ExpiresIn)
		}
		port, proto := fmt.Sprint(m.ExternalPort), esc(m.Protocol)
		key, name := proto+`/`+port, port+`/`+proto
		if m.ExternalAddr.IsValid() {
			// On an external pool address: named by it, deleted by it.
			a := esc(m.ExternalAddr.String())
			key, name = key+`/`+a, a+`:`+name
			only = ` <span class="muted">on ` + a + `</span>` + only
		}
		p.s(`
      <tr data-key="`, key, `"`, off, `>
        <td data-label="Client">`, esc(addrText(m.Client, "operator")), `</td>
        <td data-label="Forwards to">`, esc(netip.AddrPortFrom(m.InternalAddr, m.InternalPort).String()), disabled, `</td>
        <td data-label="External port">`, port, only, `</td>
        <td data-label="Protocol">`, proto, `</td>
        <td data-label="Made by"><span class="badge source">`, esc(m.Source), `</span></td>
        <td data-label="Description" class="desc">`, esc(m.Description), `</td>
        <td data-label="Expires in"><span class="lease">`, expires, `</span></td>
        <td class="actions"><button type="button" class="delete danger" aria-label="Delete `, name, `">Delete</button></td>
      </tr>`)
	}
	p.s(`
    </tbody>
  </table>
  </div>
</section>
`)
}

// upstreamText is the status line's "Router above" value.
func upstreamText(u *Upstream) string {
	if u == nil {
		return `<span class="muted">not chained</span>`
	}
	return esc(u.Text())
}

// pinCountText is the pinhole table's summary line.
func pinCountText(t adminTableJSON) string {
	if len(t.Pinholes) == 0 {
		return "No IPv6 pinholes."
	}
	return fmt.Sprintf("%d IPv6 pinhole(s).", len(t.Pinholes))
}

func writePinholes(p *pageWriter, t adminTableJSON) {
	p.s(`
<section class="card" aria-labelledby="pinholes-heading">
  <h2 id="pinholes-heading">IPv6 pinholes</h2>
  <p id="pin-status" class="muted" aria-live="polite">`, esc(pinCountText(t)), `</p>
  <div class="table-wrap">
  <table id="pinholes" class="plain">
    <caption class="visually-hidden">Every IPv6 pinhole: inbound traffic the firewall lets through to a LAN host's own address.</caption>
    <thead>
      <tr>
        <th scope="col">ID</th>
        <th scope="col">Client</th>
        <th scope="col">Open to</th>
        <th scope="col">Protocol</th>
        <th scope="col">From</th>
        <th scope="col">Made by</th>
        <th scope="col">Expires in</th>
        <th scope="col"><span class="visually-hidden">Actions</span></th>
      </tr>
    </thead>
    <tbody id="pin-rows">`)
	for _, ph := range t.Pinholes {
		id := fmt.Sprint(ph.ID)
		from := "any host"
		if ph.RemoteHost.IsValid() {
			from = ph.RemoteHost.String()
		}
		if ph.RemotePort != 0 {
			from += fmt.Sprintf(", port %d", ph.RemotePort)
		}
		p.s(`
      <tr data-id="`, id, `">
        <td data-label="ID">`, id, `</td>
        <td data-label="Client">`, esc(addrText(ph.Client, "operator")), `</td>
        <td data-label="Open to">`, esc(netip.AddrPortFrom(ph.InternalAddr, ph.InternalPort).String()), `</td>
        <td data-label="Protocol">`, esc(ph.Protocol), `</td>
        <td data-label="From">`, esc(from), `</td>
        <td data-label="Made by"><span class="badge source">`, esc(ph.Source), `</span></td>
        <td data-label="Expires in"><span class="lease">`, webpage.FormatSeconds(ph.ExpiresIn), `</span></td>
        <td class="actions"><button type="button" class="delete danger" aria-label="Close pinhole `, id, `">Close</button></td>
      </tr>`)
	}
	p.s(`
    </tbody>
  </table>
  </div>
</section>
`)
}

func writeAudit(p *pageWriter, a adminAuditJSON) {
	status := fmt.Sprintf("The last %d change(s) and refusal(s), newest first; audit.jsonl in the state directory has them all.", len(a.Records))
	switch {
	case !a.Kept:
		status = "This gateway keeps no audit trail."
	case len(a.Records) == 0:
		status = "Nothing yet."
	}
	p.s(`
<section class="card" aria-labelledby="audit-heading">
  <h2 id="audit-heading">Who opened what, when</h2>
  <p id="audit-status" class="muted" aria-live="polite">`, status, `</p>
  <div class="table-wrap">
  <table id="audit" class="plain">
    <caption class="visually-hidden">Every mapping added, renewed, changed, deleted, expired or refused, with who asked and the answer.</caption>
    <thead>
      <tr>
        <th scope="col">Time</th>
        <th scope="col">Event</th>
        <th scope="col">Client</th>
        <th scope="col">Via</th>
        <th scope="col">Mapping</th>
        <th scope="col">Description</th>
        <th scope="col">Result</th>
      </tr>
    </thead>
    <tbody id="audit-rows">`)
	for _, r := range a.Records {
		via := r.Via
		if r.Action != "" {
			via += " " + r.Action
		}
		mapping := ""
		if r.ExternalPort != 0 {
			mapping = fmt.Sprintf("%d/%s", r.ExternalPort, r.Protocol)
		}
		if r.Internal.IsValid() {
			mapping += " → " + r.Internal.String()
		}
		result := r.Result
		if r.Reason != "" {
			result += ": " + r.Reason
		}
		p.s(`
      <tr class="audit-`, esc(r.Event), `">
        <td data-label="Time"><time datetime="`, r.Time.Format("2006-01-02T15:04:05Z07:00"), `">`, r.Time.Local().Format("2006-01-02 15:04:05"), `</time></td>
        <td data-label="Event">`, esc(r.Event), `</td>
        <td data-label="Client">`, esc(addrText(r.Client, "gateway")), `</td>
        <td data-label="Via">`, esc(via), `</td>
        <td data-label="Mapping">`, esc(strings.TrimSpace(mapping)), `</td>
        <td data-label="Description" class="desc">`, esc(r.Description), `</td>
        <td data-label="Result">`, esc(result), `</td>
      </tr>`)
	}
	p.s(`
    </tbody>
  </table>
  </div>
</section>
`)
}

func writeNetwork(p *pageWriter, st adminStatusJSON) {
	p.s(`
<section class="card" aria-labelledby="net-heading">
  <h2 id="net-heading">Network</h2>
  <div class="table-wrap">
  <table id="interfaces" class="plain">
    <caption class="visually-hidden">The interfaces the gateway serves (internal) and forwards from (external).</caption>
    <thead><tr><th scope="col">Interface</th><th scope="col">Role</th><th scope="col">Addresses</th><th scope="col">State</th></tr></thead>
    <tbody id="interface-rows">`)
	for _, i := range st.Interfaces {
		addrs := `<span class="muted">none</span>`
		if len(i.Addrs) > 0 {
			parts := make([]string, len(i.Addrs))
			for k, a := range i.Addrs {
				parts[k] = a.String()
			}
			addrs = esc(strings.Join(parts, ", "))
		}
		state := "down"
		switch {
		case i.Error != "":
			state = `<span class="error">` + esc(i.Error) + `</span>`
		case i.Up:
			state = "up"
		}
		p.s(`
      <tr>
        <td data-label="Interface">`, esc(i.Name), `</td>
        <td data-label="Role">`, esc(i.Role), `</td>
        <td data-label="Addresses">`, addrs, `</td>
        <td data-label="State">`, state, `</td>
      </tr>`)
	}
	p.s(`
    </tbody>
  </table>
  </div>
  <h3>Clients reach the gateway at</h3>
  <ul id="services">`)
	for _, s := range st.Services {
		p.s(`
    <li>`, esc(s.Name), `: <code>`, esc(s.Addr), `</code></li>`)
	}
	if len(st.Services) == 0 {
		p.s(`
    <li class="muted">nothing: UPnP and NAT-PMP are both turned off</li>`)
	}
	p.s(`
  </ul>
  <details id="counters">
    <summary>Request counters</summary>
    <table class="plain">
      <thead><tr><th scope="col">Protocol</th><th scope="col">Request</th><th scope="col">Result</th><th scope="col">Count</th></tr></thead>
      <tbody id="counter-rows">`)
	for _, c := range st.Requests {
		result := "success"
		if c.Result != 0 {
			result = fmt.Sprint(c.Result)
		}
		p.s(`
        <tr><td data-label="Protocol">`, esc(c.Protocol), `</td><td data-label="Request">`, esc(c.Action), `</td><td data-label="Result">`, result, `</td><td data-label="Count">`, fmt.Sprint(c.Count), `</td></tr>`)
	}
	p.s(`
      </tbody>
    </table>
  </details>
</section>
`)
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
