package webui_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/portfwd/portfwd/internal/browsertest"
	"github.com/portfwd/portfwd/portmap"
	"github.com/portfwd/portfwd/webui"
	"github.com/portfwd/portfwd/webui/webuitest"
)

// TestBrowserWhileDiscovering: while a discovery has found a gateway and
// reads its details, the router list says so too, never "none found";
// what needs a gateway is disabled until there is one.
func TestBrowserWhileDiscovering(t *testing.T) {
	b := browsertest.NewBrowser(t, browsertest.BrowserOptions{})
	g := webuitest.New(webuitest.Options{Info: portmap.Info{Method: portmap.UPnP, FriendlyName: "Attic router"}})
	release := make(chan struct{})
	e := newEnv(t, func(s *webui.Server) {
		// The discovery ends when the test says, not at the default 5 s
		// that a loaded machine's browser can take to load the page.
		s.DiscoverTimeout = time.Minute
		s.Discover = func(ctx context.Context, o portmap.Options) ([]portmap.Gateway, error) {
			o.Progress(portmap.Progress{Message: "found upnp gateway at " + g.Addr(), Found: 1})
			select {
			case <-release:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			return []portmap.Gateway{g}, nil
		}
	})
	b.Do("loading the page", chromedp.Navigate(e.hs.URL+"/?token="+testToken))
	b.WaitFor("the progress line", `document.querySelector('#discovery').textContent.includes('found upnp gateway')`)
	if opt := browsertest.Eval[string](b, `document.querySelector('#gateway').selectedOptions[0].textContent`); opt != "found, reading its details…" {
		t.Errorf("while the discovery line says a gateway was found, the router list reads %q", opt)
	}
	for _, id := range []string{"add", "refresh"} {
		if !browsertest.Eval[bool](b, fmt.Sprintf(`document.querySelector('#%s').disabled`, id)) {
			t.Errorf("#%s is enabled with no gateway yet", id)
		}
	}
	close(release)
	b.WaitFor("the router in the list", `document.querySelector('#gateway').selectedOptions[0].textContent.startsWith('Attic router')`)
	b.WaitFor("the Add button", `!document.querySelector('#add').disabled`)
	if d := browsertest.Eval[string](b, `document.querySelector('#gateway-detail').textContent`); !strings.Contains(d, "Attic router: UPnP at ") {
		t.Errorf("the line under the list reads %q", d)
	}
	b.CheckProblems()
}

// TestBrowserNoGateway: with no gateway, the page says why in one
// sentence (no chain of Go errors), and the Add form cannot be opened.
func TestBrowserNoGateway(t *testing.T) {
	b := browsertest.NewBrowser(t, browsertest.BrowserOptions{})
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	probe := fmt.Errorf("UPnP description at http://10.0.0.1:9/rootDesc.xml: %w",
		fmt.Errorf("upnp: fetching device description from http://10.0.0.1:9/rootDesc.xml: %w",
			&url.Error{Op: "Get", URL: "http://10.0.0.1:9/rootDesc.xml", Err: refused}))
	e := newEnv(t, func(s *webui.Server) {
		s.Discover = func(ctx context.Context, o portmap.Options) ([]portmap.Gateway, error) {
			return nil, fmt.Errorf("%w (tried UPnP at http://10.0.0.1:9/rootDesc.xml): %w", portmap.ErrNoGateway, errors.Join(probe))
		}
	})
	b.Do("loading the page", chromedp.Navigate(e.hs.URL+"/?token="+testToken))
	b.WaitFor("the outcome", `document.querySelector('#gateway').selectedOptions[0].textContent === 'none found'`)
	want := "no gateway found: UPnP description at http://10.0.0.1:9/rootDesc.xml: connection refused"
	b.WaitFor("the sentence", fmt.Sprintf(`document.querySelector('#discovery').textContent === %q`, want))
	if !browsertest.Eval[bool](b, `document.querySelector('#add').disabled`) {
		t.Error("Add mapping can be pressed with no gateway")
	}
	b.Do("pressing Add anyway", chromedp.Click(chromedp.CSS("#add")))
	if browsertest.Eval[bool](b, `document.querySelector('#edit-dialog').open`) {
		t.Error("the Add form opened with no gateway")
	}
	// The API says the same in one sentence, for scripts.
	msg := browsertest.Eval[string](b, `fetch('/api/mappings', {method: 'POST', headers: {'Content-Type': 'application/json',
		'X-Portfwd-Token': document.querySelector('meta[name="portfwd-token"]').content},
		body: JSON.stringify({protocol: 'tcp', internal_port: 8080})}).then(r => r.json()).then(j => j.error)`)
	for _, raw := range []string{"dial tcp", "upnp:", "fetching device description"} {
		if strings.Contains(msg, raw) {
			t.Errorf("the API's error shows the raw chain (%q): %s", raw, msg)
		}
	}
	if !strings.Contains(msg, "connection refused") {
		t.Errorf("the API's error does not say why: %s", msg)
	}
	b.CheckProblems()
}

// TestBrowserForms: the lease reads as 7d, not 604676 seconds, and takes
// 2h; leaving it untouched changes nothing; on a phone, a refusal keeps
// the form's buttons in view, and the router's name is not cut.
func TestBrowserForms(t *testing.T) {
	b := browsertest.NewBrowser(t, browsertest.BrowserOptions{})
	week := 604676 * time.Second // 6d 23h 57m 56s left
	g := webuitest.New(webuitest.Options{
		Info: portmap.Info{Method: portmap.UPnP, FriendlyName: "Living-room router AX-1800", Manufacturer: "Example"},
		Mappings: []portmap.Mapping{
			{Protocol: portmap.TCP, ExternalPort: 8443, InternalClient: "192.168.1.20", InternalPort: 443, Enabled: true, Description: "NAS", Lease: week},
		},
	})
	e := newEnv(t, nil, g)
	b.Do("loading the page on a phone",
		chromedp.EmulateViewport(390, 640),
		chromedp.Navigate(e.hs.URL+"/?token="+testToken),
		chromedp.WaitVisible(chromedp.CSS(rowSel("TCP", 8443))),
	)

	// Phone width: the selected router's label fits its list, and the
	// line under it has the whole name.
	fits := browsertest.Eval[bool](b, `(() => {
		const s = document.querySelector('#gateway'), cs = getComputedStyle(s);
		const c = document.createElement('canvas').getContext('2d');
		c.font = cs.font;
		const room = s.clientWidth - parseFloat(cs.paddingLeft) - parseFloat(cs.paddingRight) - 16; // the arrow
		return c.measureText(s.selectedOptions[0].textContent).width <= room;
	})()`)
	if !fits {
		t.Errorf("on a phone the router list is cut: %q in %v px", browsertest.Eval[string](b, `document.querySelector('#gateway').selectedOptions[0].textContent`),
			browsertest.Eval[int](b, `document.querySelector('#gateway').clientWidth`))
	}
	if d := browsertest.Eval[string](b, `document.querySelector('#gateway-detail').textContent`); !strings.HasPrefix(d, "Living-room router AX-1800: UPnP at ") {
		t.Errorf("the line under the router list reads %q", d)
	}
	if over := browsertest.Eval[int](b, `document.documentElement.scrollWidth - document.documentElement.clientWidth`); over > 0 {
		t.Errorf("the page scrolls sideways by %d px on a phone", over)
	}

	// The lease left, as a person writes it.
	b.Click("the edit button", rowSel("TCP", 8443)+" button.edit")
	b.Do("editing", chromedp.WaitVisible(chromedp.CSS("#edit-dialog")))
	if v := browsertest.Eval[string](b, `document.querySelector('#f-lease').value`); v != "7d" {
		t.Errorf("the edit form shows the lease as %q, want 7d", v)
	}
	// Untouched, the lease is not changed (nor rounded up to 7d).
	b.Do("saving a new description",
		chromedp.SetValue(chromedp.CSS("#f-description"), "NAS (renamed)"),
		chromedp.Click(chromedp.CSS("#edit-submit")),
	)
	b.WaitFor("the form to close", `!document.querySelector('#edit-dialog').open`)
	if !hasMapping(g, portmap.TCP, 8443, func(m portmap.Mapping) bool {
		return m.Description == "NAS (renamed)" && m.Lease <= week && m.Lease > week-time.Minute
	}) {
		t.Errorf("after editing the description only: %+v", g.Mappings())
	}

	// A number without a unit is refused in the page, with the fix.
	b.Click("the edit button", rowSel("TCP", 8443)+" button.edit")
	b.Do("a lease without a unit",
		chromedp.WaitVisible(chromedp.CSS("#edit-dialog")),
		chromedp.SetValue(chromedp.CSS("#f-lease"), "2"),
		chromedp.Click(chromedp.CSS("#edit-submit")),
	)
	b.WaitFor("the form's error", `!document.querySelector('#form-error').hidden`)
	if msg := browsertest.Eval[string](b, `document.querySelector('#form-error').textContent`); !strings.Contains(msg, "2h") {
		t.Errorf("a lease of 2 reads %q", msg)
	}
	b.Do("a lease of 2h", chromedp.SetValue(chromedp.CSS("#f-lease"), "2h"), chromedp.Click(chromedp.CSS("#edit-submit")))
	b.WaitFor("the form to close", `!document.querySelector('#edit-dialog').open`)
	if !hasMapping(g, portmap.TCP, 8443, func(m portmap.Mapping) bool { return m.Lease > 2*time.Hour-time.Minute && m.Lease <= 2*time.Hour }) {
		t.Errorf("after setting the lease to 2h: %+v", g.Mappings())
	}

	// A refusal on a small screen: the message shows and the buttons stay
	// in view.
	b.Do("a short phone screen", chromedp.EmulateViewport(390, 560))
	b.Do("adding on a taken port",
		chromedp.Click(chromedp.CSS("#add")),
		chromedp.WaitVisible(chromedp.CSS("#edit-dialog")),
		chromedp.SetValue(chromedp.CSS("#f-internal-port"), "9000"),
		chromedp.SetValue(chromedp.CSS("#f-external-port"), "8443"),
		chromedp.SetValue(chromedp.CSS("#f-description"), "a description long enough to take two lines on a phone-sized screen"),
		chromedp.Click(chromedp.CSS("#edit-submit")),
	)
	b.WaitFor("the refusal", `document.querySelector('#form-error').textContent.includes('already mapped')`)
	inView := func(sel string) string {
		return fmt.Sprintf(`(() => { const r = document.querySelector(%q).getBoundingClientRect(); return r.top >= 0 && r.bottom <= innerHeight && r.height > 0; })()`, sel)
	}
	for _, sel := range []string{"#edit-submit", "#edit-cancel", "#form-error"} {
		if !browsertest.Eval[bool](b, inView(sel)) {
			t.Errorf("after a refusal on a 390x560 screen, %s is out of view", sel)
		}
	}
	if dir := os.Getenv("PORTFWD_SCREENSHOT_DIR"); dir != "" {
		if err := os.WriteFile(dir+"/screenshot-ui-refusal-phone.png", b.Screenshot(390, 560), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b.Do("cancelling", chromedp.Click(chromedp.CSS("#edit-cancel")))
	b.CheckProblems()
}
