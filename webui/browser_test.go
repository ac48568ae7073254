package webui_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/portfwd/portfwd/internal/browsertest"
	"github.com/portfwd/portfwd/portmap"
	"github.com/portfwd/portfwd/webui/webuitest"
)

var updateScreenshot = flag.Bool("update-screenshot", false, "write the main page's screenshots to ../docs/screenshot-ui.png and screenshot-ui-phone.png")

// rowSel selects the table row of a mapping.
func rowSel(proto string, port int) string {
	return fmt.Sprintf(`#rows tr[data-key="%s/%d/"]`, proto, port)
}

// TestBrowser drives the page in headless Chromium over the fake gateway:
// add through the form, see a change made behind the UI's back arrive
// without a reload, edit, delete, delete many, read a refusal, and check
// that a request without the token is refused.
func TestBrowser(t *testing.T) {
	b := browsertest.NewBrowser(t, browsertest.BrowserOptions{})
	g := webuitest.New(webuitest.Options{
		ExternalIP: netip.MustParseAddr("192.168.0.2"), // behind another router: the page warns
		Info:       portmap.Info{Method: portmap.UPnP, FriendlyName: "Living-room router", Manufacturer: "Example", ModelName: "AX-1800"},
		Mappings: []portmap.Mapping{
			{Protocol: portmap.TCP, ExternalPort: 8443, InternalClient: "192.168.1.20", InternalPort: 443, Enabled: true, Description: "NAS web interface"},
			{Protocol: portmap.UDP, ExternalPort: 51820, InternalClient: "192.168.1.10", InternalPort: 51820, Enabled: true, Description: "WireGuard", Lease: 2 * time.Hour},
			{Protocol: portmap.TCP, ExternalPort: 25565, InternalClient: "192.168.1.31", InternalPort: 25565, Enabled: false, Description: "<b>Minecraft</b> (paused)", Lease: 45 * time.Minute},
			{Protocol: portmap.UDP, ExternalPort: 3478, InternalClient: "192.168.1.10", InternalPort: 3478, Enabled: true, Description: "STUN"},
		},
	})
	e := newEnv(t, nil, g)

	b.Do("loading the page",
		chromedp.Navigate(e.hs.URL+"/?token="+testToken),
		chromedp.WaitVisible(chromedp.CSS(rowSel("TCP", 8443))),
	)
	b.WaitFor("the live indicator", `document.querySelector('#live').textContent === 'live'`)
	if loc := browsertest.Eval[string](b, `location.href`); strings.Contains(loc, "token") {
		t.Errorf("the token stays in the address bar: %s", loc)
	}
	if w := browsertest.Eval[string](b, `document.querySelector('#external-warning').textContent`); !strings.Contains(w, "double NAT") {
		t.Errorf("no double-NAT warning on the page: %q", w)
	}
	// Markup in a description is shown as text.
	if d := browsertest.Eval[string](b, fmt.Sprintf(`document.querySelector('%s td.desc').textContent`, rowSel("TCP", 25565))); d != "<b>Minecraft</b> (paused)" {
		t.Errorf("the description reads %q", d)
	}
	if n := browsertest.Eval[int](b, `document.querySelectorAll('#rows b').length`); n != 0 {
		t.Errorf("a description became markup")
	}
	// Marks this page load: a reload would lose it.
	browsertest.Eval[bool](b, `window.samePage = true`)

	// Leases count down in the page, without asking the router.
	lease := fmt.Sprintf(`document.querySelector('%s .lease').textContent`, rowSel("UDP", 51820))
	first := browsertest.Eval[string](b, lease)
	b.WaitFor("the lease to tick", lease+" !== "+fmt.Sprintf("%q", first))

	// Sorting by a column.
	b.Do("sorting by description", chromedp.Click(chromedp.CSS(`th[data-sort="description"] button`)))
	if got := browsertest.Eval[string](b, `[...document.querySelectorAll('#rows td.desc')].map(td => td.textContent).join('|')`); got != "<b>Minecraft</b> (paused)|NAS web interface|STUN|WireGuard" {
		t.Errorf("sorted by description: %s", got)
	}
	if s := browsertest.Eval[string](b, `document.querySelector('th[data-sort="description"]').getAttribute('aria-sort')`); s != "ascending" {
		t.Errorf("aria-sort %q", s)
	}
	b.Do("sorting back by port", chromedp.Click(chromedp.CSS(`th[data-sort="external_port"] button`)))

	// The form is keyboard-usable: it opens with the focus in its first
	// field, and Escape closes it.
	b.Do("opening the form", chromedp.Click(chromedp.CSS("#add")), chromedp.WaitVisible(chromedp.CSS("#edit-dialog")))
	if id := browsertest.Eval[string](b, `document.activeElement.id`); id != "f-internal-port" {
		t.Errorf("the form opens with the focus on %q", id)
	}
	b.Do("closing with Escape", chromedp.KeyEvent(kb.Escape))
	b.WaitFor("the form to close", `!document.querySelector('#edit-dialog').open`)

	// Validation in the page: nothing reaches the router.
	b.Do("adding a bad port",
		chromedp.Click(chromedp.CSS("#add")),
		chromedp.SetValue(chromedp.CSS("#f-internal-port"), "70000"),
		chromedp.Click(chromedp.CSS("#edit-submit")),
	)
	b.WaitFor("the form's error", `!document.querySelector('#form-error').hidden`)
	if msg := browsertest.Eval[string](b, `document.querySelector('#form-error').textContent`); !strings.Contains(msg, "1 to 65535") {
		t.Errorf("validation message %q", msg)
	}
	if browsertest.Eval[string](b, `document.querySelector('#f-internal-port').getAttribute('aria-invalid')`) != "true" {
		t.Error("the bad field is not marked invalid")
	}

	// The router's refusal is shown as its sentence.
	b.Do("adding on a taken port",
		chromedp.SetValue(chromedp.CSS("#f-internal-port"), "9000"),
		chromedp.SetValue(chromedp.CSS("#f-external-port"), "8443"),
		chromedp.Click(chromedp.CSS("#edit-submit")),
	)
	b.WaitFor("the refusal", `document.querySelector('#form-error').textContent.includes('already mapped')`)
	_, refusal := g.Add(context.Background(), portmap.Request{Protocol: portmap.TCP, InternalPort: 9000, ExternalPort: 8443})
	var re *portmap.RefusedError
	if !errors.As(refusal, &re) {
		t.Fatalf("the fake did not refuse: %v", refusal)
	}
	var ee *portmap.ExistsError
	if !errors.As(refusal, &ee) {
		t.Fatalf("the fake's refusal names no mapping in the way: %v", refusal)
	}
	// The refusal's sentence, with the page's advice instead of the
	// CLI's --replace.
	if msg := browsertest.Eval[string](b, `document.querySelector('#form-error').textContent`); !strings.HasPrefix(msg, ee.Error()+"; ") || strings.Contains(msg, "--") {
		t.Errorf("the form shows %q, want the refusal's sentence %q with the page's advice", msg, ee.Error())
	}

	// Add through the form.
	b.Do("adding a mapping",
		chromedp.SetValue(chromedp.CSS("#f-internal-port"), "8080"),
		chromedp.SetValue(chromedp.CSS("#f-external-port"), "18080"),
		chromedp.SetValue(chromedp.CSS("#f-description"), "Web server"),
		chromedp.SetValue(chromedp.CSS("#f-lease"), "3h"),
		chromedp.Click(chromedp.CSS("#edit-submit")),
		chromedp.WaitVisible(chromedp.CSS(rowSel("TCP", 18080))),
	)
	b.WaitFor("the form to close", `!document.querySelector('#edit-dialog').open`)
	if !hasMapping(g, portmap.TCP, 18080, func(m portmap.Mapping) bool {
		return m.InternalPort == 8080 && m.Description == "Web server" && m.InternalClient == "192.168.1.10" &&
			m.Lease > 2*time.Hour+59*time.Minute
	}) {
		t.Errorf("the router's table after adding: %+v", g.Mappings())
	}
	if txt := browsertest.Eval[string](b, fmt.Sprintf(`document.querySelector('%s').innerText`, rowSel("TCP", 18080))); !strings.Contains(txt, "this computer") {
		t.Errorf("the new row does not say it is this computer's: %q", txt)
	}

	// Behind the UI's back: the table changes on the router.
	g.SetMappings(append(g.Mappings(), portmap.Mapping{Protocol: portmap.TCP, ExternalPort: 2222, InternalClient: "192.168.1.40",
		InternalPort: 22, Enabled: true, Description: "SSH (added elsewhere)"}))
	b.Do("seeing a change made elsewhere", chromedp.WaitVisible(chromedp.CSS(rowSel("TCP", 2222))))
	g.SetExternalIP(netip.MustParseAddr("198.51.100.7"))
	b.WaitFor("the new external address", `document.querySelector('#external-ip').textContent === '198.51.100.7'`)

	// Edit.
	b.Click("the edit button", rowSel("TCP", 18080)+" button.edit")
	b.Do("editing", chromedp.WaitVisible(chromedp.CSS("#edit-dialog")))
	if v := browsertest.Eval[string](b, `document.querySelector('#f-description').value`); v != "Web server" {
		t.Errorf("the edit form starts with description %q", v)
	}
	b.Do("saving the edit",
		chromedp.SetValue(chromedp.CSS("#f-description"), "Web server (test)"),
		chromedp.SetValue(chromedp.CSS("#f-internal-port"), "8081"),
		chromedp.Click(chromedp.CSS("#edit-submit")),
	)
	b.WaitFor("the edited row", fmt.Sprintf(`document.querySelector('%s td.desc')?.textContent === 'Web server (test)'`, rowSel("TCP", 18080)))
	if !hasMapping(g, portmap.TCP, 18080, func(m portmap.Mapping) bool { return m.InternalPort == 8081 && m.Description == "Web server (test)" }) {
		t.Errorf("the router's table after editing: %+v", g.Mappings())
	}

	// Delete one, with the confirmation.
	b.Click("the delete button", rowSel("TCP", 18080)+" button.delete")
	b.Do("deleting",
		chromedp.WaitVisible(chromedp.CSS("#confirm-dialog")),
		chromedp.Click(chromedp.CSS("#confirm-ok")),
		chromedp.WaitNotPresent(chromedp.CSS(rowSel("TCP", 18080))),
	)
	if hasMapping(g, portmap.TCP, 18080, nil) {
		t.Error("the mapping is still on the router")
	}

	// Delete many with the checkboxes.
	b.Click("a checkbox", rowSel("TCP", 2222)+" input.pick")
	b.Click("another checkbox", rowSel("UDP", 3478)+" input.pick")
	if txt := browsertest.Eval[string](b, `document.querySelector('#delete-selected').textContent`); txt != "Delete selected (2)" {
		t.Errorf("the delete button reads %q", txt)
	}
	b.Do("confirming",
		chromedp.Click(chromedp.CSS("#delete-selected")),
		chromedp.WaitVisible(chromedp.CSS("#confirm-dialog")),
		chromedp.Click(chromedp.CSS("#confirm-ok")),
		chromedp.WaitNotPresent(chromedp.CSS(rowSel("TCP", 2222))),
		chromedp.WaitNotPresent(chromedp.CSS(rowSel("UDP", 3478))),
	)
	if n := len(g.Mappings()); n != 3 {
		t.Errorf("%d mappings left on the router, want 3: %+v", n, g.Mappings())
	}

	// "More information" reads the device details.
	b.Do("opening More information", chromedp.Click(chromedp.CSS("#more summary")))
	b.WaitFor("the details", `document.querySelector('#info dl')?.innerText.includes('AX-1800')`)

	if !browsertest.Eval[bool](b, `window.samePage === true`) {
		t.Error("the page was reloaded: live updates should not need it")
	}

	// From the page, a request without the token header is refused, even
	// though the browser sends the cookie; the page's own requests work.
	status := browsertest.Eval[int](b, `fetch('/api/mappings', {method: 'POST', headers: {'Content-Type': 'application/json'},
		body: JSON.stringify({protocol: 'tcp', internal_port: 1})}).then(r => r.status)`)
	if status != 403 {
		t.Errorf("a POST without the token header: %d, want 403", status)
	}
	status = browsertest.Eval[int](b, `fetch('/api/gateways', {credentials: 'omit'}).then(r => r.status)`)
	if status != 403 {
		t.Errorf("a GET without token or cookie: %d, want 403", status)
	}
	status = browsertest.Eval[int](b, `fetch('/api/gateways').then(r => r.status)`)
	if status != 200 {
		t.Errorf("a GET with the cookie: %d, want 200", status)
	}
	if hasMapping(g, portmap.TCP, 1, nil) {
		t.Error("the refused request made a mapping")
	}

	screenshots(t, b, g)
	b.CheckProblems()
}

// screenshots saves the main page at desktop and phone sizes in the test's
// output directory (and the desktop one in docs/ with -update-screenshot),
// and checks that the phone layout has no horizontal scrolling.
func screenshots(t *testing.T, b *browsertest.Browser, g *webuitest.Gateway) {
	g.SetExternalIP(netip.MustParseAddr("192.168.0.2"))
	g.SetMappings([]portmap.Mapping{
		{Protocol: portmap.TCP, ExternalPort: 8443, InternalClient: "192.168.1.20", InternalPort: 443, Enabled: true, Description: "NAS web interface"},
		{Protocol: portmap.TCP, ExternalPort: 18080, InternalClient: "192.168.1.10", InternalPort: 8080, Enabled: true, Description: "Web server", Lease: 3 * time.Hour},
		{Protocol: portmap.TCP, ExternalPort: 25565, InternalClient: "192.168.1.31", InternalPort: 25565, Enabled: false, Description: "Minecraft (paused)", Lease: 45 * time.Minute},
		{Protocol: portmap.UDP, ExternalPort: 51820, InternalClient: "192.168.1.10", InternalPort: 51820, Enabled: true, Description: "WireGuard", Lease: 2 * time.Hour},
	})
	b.Do("reloading for the screenshot",
		chromedp.Navigate(strings.TrimSuffix(browsertest.Eval[string](b, `location.origin`), "/")+"/"),
		chromedp.WaitVisible(chromedp.CSS(rowSel("TCP", 18080))),
	)
	b.WaitFor("the live indicator", `document.querySelector('#live').textContent === 'live'`)
	b.WaitFor("the details", `document.querySelector('#external-ip').textContent === '192.168.0.2'`)
	browsertest.Eval[bool](b, `document.activeElement.blur(), true`)
	dir := os.Getenv("PORTFWD_SCREENSHOT_DIR")
	if dir == "" {
		dir = t.TempDir()
	}
	shot := func(name string, w, h int64) []byte {
		png := b.Screenshot(w, h)
		if err := os.WriteFile(dir+"/"+name, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot: %s/%s", dir, name)
		return png
	}
	desktop := shot("screenshot-ui.png", 1100, 700)
	phone := shot("screenshot-ui-phone.png", 390, 844)
	if over := browsertest.Eval[int](b, `document.documentElement.scrollWidth - document.documentElement.clientWidth`); over > 0 {
		t.Errorf("on a phone-sized screen the page scrolls sideways by %d px", over)
	}
	if *updateScreenshot {
		for name, png := range map[string][]byte{"screenshot-ui.png": desktop, "screenshot-ui-phone.png": phone} {
			if err := os.WriteFile("../docs/"+name, png, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func hasMapping(g *webuitest.Gateway, p portmap.Protocol, port uint16, ok func(portmap.Mapping) bool) bool {
	for _, m := range g.Mappings() {
		if m.Protocol == p && m.ExternalPort == port {
			return ok == nil || ok(m)
		}
	}
	return false
}
