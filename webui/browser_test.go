package webui_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/portfwd/portfwd/portmap"
	"github.com/portfwd/portfwd/webui/webuitest"
)

// chromiumPath is Debian's chromium package; scripts/install-lab-deps.sh
// installs it.
const chromiumPath = "/usr/bin/chromium"

var updateScreenshot = flag.Bool("update-screenshot", false, "write the main page's screenshot to ../docs/screenshot-ui.png")

// headless starts a headless Chromium with a fresh profile, for this test
// only. It skips the test when Chromium is not installed, unless
// PORTFWD_LAB_REQUIRED=1 makes that a failure.
func headless(t *testing.T) *browser {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		if os.Getenv("PORTFWD_LAB_REQUIRED") == "1" {
			t.Fatalf("%s is missing and PORTFWD_LAB_REQUIRED=1: install it with scripts/install-lab-deps.sh (apt-get install chromium)", chromiumPath)
		}
		t.Skipf("browser test skipped: %s is missing (apt-get install chromium, or scripts/install-lab-deps.sh)", chromiumPath)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath),
		chromedp.NoSandbox, // running as root in a container
		chromedp.DisableGPU,
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-domain-reliability", true),
		chromedp.Flag("no-proxy-server", true),
		// Belt and braces against stray traffic: the browser resolves no
		// name at all, so its background services reach nothing; the page
		// is on 127.0.0.1.
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"),
		chromedp.NoFirstRun,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	b := &browser{t: t, ctx: ctx}
	// Record script errors and console errors: the page must have none.
	if err := chromedp.Listen(ctx, func(ev any) {
		switch ev := ev.(type) {
		case *runtime.EventExceptionThrown:
			d := ev.ExceptionDetails
			desc := ""
			if d.Exception != nil {
				desc = d.Exception.Description
			}
			b.problem("script exception at %s:%d: %s %s", d.URL, d.LineNumber+1, d.Text, desc)
		case *runtime.EventConsoleAPICalled:
			if ev.Type == runtime.ConsoleAPICalledTypeError {
				var args []string
				for _, a := range ev.Args {
					args = append(args, string(a.Value))
				}
				b.problem("console.error: %s", strings.Join(args, " "))
			}
		}
	}); err != nil {
		t.Fatalf("starting %s: %v", chromiumPath, err)
	}
	return b
}

// browser drives one tab.
type browser struct {
	t   *testing.T
	ctx context.Context

	mu       sync.Mutex
	problems []string
}

func (b *browser) problem(format string, a ...any) {
	b.mu.Lock()
	b.problems = append(b.problems, fmt.Sprintf(format, a...))
	b.mu.Unlock()
}

// checkProblems fails the test for any script error seen so far.
func (b *browser) checkProblems() {
	b.t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, p := range b.problems {
		b.t.Errorf("in the page: %s", p)
	}
	b.problems = nil
}

// do runs steps, failing the test with what on error.
func (b *browser) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 15*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.checkProblems()
		b.t.Fatalf("%s: %v", what, err)
	}
}

// eval evaluates a JavaScript expression (awaiting a promise).
func eval[T any](b *browser, expr string) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 15*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		b.t.Fatalf("evaluating %s: %v", expr, err)
	}
	return v
}

// waitFor waits until the JavaScript condition holds.
func (b *browser) waitFor(what, cond string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 15*time.Second)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool]("!!("+cond+")", chromedp.WithPollingTimeout(10*time.Second))); err != nil {
		b.checkProblems()
		b.t.Fatalf("waiting for %s (%s): %v\nthe table: %s", what, cond, err, eval[string](b, `document.querySelector('#mappings').innerText`))
	}
}

// rowSel selects the table row of a mapping.
func rowSel(proto string, port int) string {
	return fmt.Sprintf(`#rows tr[data-key="%s/%d/"]`, proto, port)
}

// TestBrowser drives the page in headless Chromium over the fake gateway:
// add through the form, see a change made behind the UI's back arrive
// without a reload, edit, delete, delete many, read a refusal, and check
// that a request without the token is refused.
func TestBrowser(t *testing.T) {
	b := headless(t)
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

	b.do("loading the page",
		chromedp.Navigate(e.hs.URL+"/?token="+testToken),
		chromedp.WaitVisible(chromedp.CSS(rowSel("TCP", 8443))),
	)
	b.waitFor("the live indicator", `document.querySelector('#live').textContent === 'live'`)
	if loc := eval[string](b, `location.href`); strings.Contains(loc, "token") {
		t.Errorf("the token stays in the address bar: %s", loc)
	}
	if w := eval[string](b, `document.querySelector('#external-warning').textContent`); !strings.Contains(w, "double NAT") {
		t.Errorf("no double-NAT warning on the page: %q", w)
	}
	// Markup in a description is shown as text.
	if d := eval[string](b, fmt.Sprintf(`document.querySelector('%s td.desc').textContent`, rowSel("TCP", 25565))); d != "<b>Minecraft</b> (paused)" {
		t.Errorf("the description reads %q", d)
	}
	if n := eval[int](b, `document.querySelectorAll('#rows b').length`); n != 0 {
		t.Errorf("a description became markup")
	}
	// Marks this page load: a reload would lose it.
	eval[bool](b, `window.samePage = true`)

	// Leases count down in the page, without asking the router.
	lease := fmt.Sprintf(`document.querySelector('%s .lease').textContent`, rowSel("UDP", 51820))
	first := eval[string](b, lease)
	b.waitFor("the lease to tick", lease+" !== "+fmt.Sprintf("%q", first))

	// Sorting by a column.
	b.do("sorting by description", chromedp.Click(chromedp.CSS(`th[data-sort="description"] button`)))
	if got := eval[string](b, `[...document.querySelectorAll('#rows td.desc')].map(td => td.textContent).join('|')`); got != "<b>Minecraft</b> (paused)|NAS web interface|STUN|WireGuard" {
		t.Errorf("sorted by description: %s", got)
	}
	if s := eval[string](b, `document.querySelector('th[data-sort="description"]').getAttribute('aria-sort')`); s != "ascending" {
		t.Errorf("aria-sort %q", s)
	}
	b.do("sorting back by port", chromedp.Click(chromedp.CSS(`th[data-sort="external_port"] button`)))

	// The form is keyboard-usable: it opens with the focus in its first
	// field, and Escape closes it.
	b.do("opening the form", chromedp.Click(chromedp.CSS("#add")), chromedp.WaitVisible(chromedp.CSS("#edit-dialog")))
	if id := eval[string](b, `document.activeElement.id`); id != "f-internal-port" {
		t.Errorf("the form opens with the focus on %q", id)
	}
	b.do("closing with Escape", chromedp.KeyEvent(kb.Escape))
	b.waitFor("the form to close", `!document.querySelector('#edit-dialog').open`)

	// Validation in the page: nothing reaches the router.
	b.do("adding a bad port",
		chromedp.Click(chromedp.CSS("#add")),
		chromedp.SetValue(chromedp.CSS("#f-internal-port"), "70000"),
		chromedp.Click(chromedp.CSS("#edit-submit")),
	)
	b.waitFor("the form's error", `!document.querySelector('#form-error').hidden`)
	if msg := eval[string](b, `document.querySelector('#form-error').textContent`); !strings.Contains(msg, "1 to 65535") {
		t.Errorf("validation message %q", msg)
	}
	if eval[string](b, `document.querySelector('#f-internal-port').getAttribute('aria-invalid')`) != "true" {
		t.Error("the bad field is not marked invalid")
	}

	// The router's refusal is shown as its sentence.
	b.do("adding on a taken port",
		chromedp.SetValue(chromedp.CSS("#f-internal-port"), "9000"),
		chromedp.SetValue(chromedp.CSS("#f-external-port"), "8443"),
		chromedp.Click(chromedp.CSS("#edit-submit")),
	)
	b.waitFor("the refusal", `document.querySelector('#form-error').textContent.includes('718')`)
	_, refusal := g.Add(context.Background(), portmap.Request{Protocol: portmap.TCP, InternalPort: 9000, ExternalPort: 8443})
	var re *portmap.RefusedError
	if !errors.As(refusal, &re) {
		t.Fatalf("the fake did not refuse: %v", refusal)
	}
	if msg := eval[string](b, `document.querySelector('#form-error').textContent`); msg != re.Text {
		t.Errorf("the form shows %q, want the router's sentence %q", msg, re.Text)
	}

	// Add through the form.
	b.do("adding a mapping",
		chromedp.SetValue(chromedp.CSS("#f-internal-port"), "8080"),
		chromedp.SetValue(chromedp.CSS("#f-external-port"), "18080"),
		chromedp.SetValue(chromedp.CSS("#f-description"), "Web server"),
		chromedp.SetValue(chromedp.CSS("#f-lease"), "3"),
		chromedp.Click(chromedp.CSS("#edit-submit")),
		chromedp.WaitVisible(chromedp.CSS(rowSel("TCP", 18080))),
	)
	b.waitFor("the form to close", `!document.querySelector('#edit-dialog').open`)
	if !hasMapping(g, portmap.TCP, 18080, func(m portmap.Mapping) bool {
		return m.InternalPort == 8080 && m.Description == "Web server" && m.InternalClient == "192.168.1.10" &&
			m.Lease > 2*time.Hour+59*time.Minute
	}) {
		t.Errorf("the router's table after adding: %+v", g.Mappings())
	}
	if txt := eval[string](b, fmt.Sprintf(`document.querySelector('%s').innerText`, rowSel("TCP", 18080))); !strings.Contains(txt, "this computer") {
		t.Errorf("the new row does not say it is this computer's: %q", txt)
	}

	// Behind the UI's back: the table changes on the router.
	g.SetMappings(append(g.Mappings(), portmap.Mapping{Protocol: portmap.TCP, ExternalPort: 2222, InternalClient: "192.168.1.40",
		InternalPort: 22, Enabled: true, Description: "SSH (added elsewhere)"}))
	b.do("seeing a change made elsewhere", chromedp.WaitVisible(chromedp.CSS(rowSel("TCP", 2222))))
	g.SetExternalIP(netip.MustParseAddr("198.51.100.7"))
	b.waitFor("the new external address", `document.querySelector('#external-ip').textContent === '198.51.100.7'`)

	// Edit.
	b.do("editing",
		chromedp.Click(chromedp.CSS(rowSel("TCP", 18080)+" button.edit")),
		chromedp.WaitVisible(chromedp.CSS("#edit-dialog")),
	)
	if v := eval[string](b, `document.querySelector('#f-description').value`); v != "Web server" {
		t.Errorf("the edit form starts with description %q", v)
	}
	b.do("saving the edit",
		chromedp.SetValue(chromedp.CSS("#f-description"), "Web server (test)"),
		chromedp.SetValue(chromedp.CSS("#f-internal-port"), "8081"),
		chromedp.Click(chromedp.CSS("#edit-submit")),
	)
	b.waitFor("the edited row", fmt.Sprintf(`document.querySelector('%s td.desc')?.textContent === 'Web server (test)'`, rowSel("TCP", 18080)))
	if !hasMapping(g, portmap.TCP, 18080, func(m portmap.Mapping) bool { return m.InternalPort == 8081 && m.Description == "Web server (test)" }) {
		t.Errorf("the router's table after editing: %+v", g.Mappings())
	}

	// Delete one, with the confirmation.
	b.do("deleting",
		chromedp.Click(chromedp.CSS(rowSel("TCP", 18080)+" button.delete")),
		chromedp.WaitVisible(chromedp.CSS("#confirm-dialog")),
		chromedp.Click(chromedp.CSS("#confirm-ok")),
		chromedp.WaitNotPresent(chromedp.CSS(rowSel("TCP", 18080))),
	)
	if hasMapping(g, portmap.TCP, 18080, nil) {
		t.Error("the mapping is still on the router")
	}

	// Delete many with the checkboxes.
	b.do("deleting two",
		chromedp.Click(chromedp.CSS(rowSel("TCP", 2222)+" input.pick")),
		chromedp.Click(chromedp.CSS(rowSel("UDP", 3478)+" input.pick")),
	)
	if txt := eval[string](b, `document.querySelector('#delete-selected').textContent`); txt != "Delete selected (2)" {
		t.Errorf("the delete button reads %q", txt)
	}
	b.do("confirming",
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
	b.do("opening More information", chromedp.Click(chromedp.CSS("#more summary")))
	b.waitFor("the details", `document.querySelector('#info dl')?.innerText.includes('AX-1800')`)

	if !eval[bool](b, `window.samePage === true`) {
		t.Error("the page was reloaded: live updates should not need it")
	}

	// From the page, a request without the token header is refused, even
	// though the browser sends the cookie; the page's own requests work.
	status := eval[int](b, `fetch('/api/mappings', {method: 'POST', headers: {'Content-Type': 'application/json'},
		body: JSON.stringify({protocol: 'tcp', internal_port: 1})}).then(r => r.status)`)
	if status != 403 {
		t.Errorf("a POST without the token header: %d, want 403", status)
	}
	status = eval[int](b, `fetch('/api/gateways', {credentials: 'omit'}).then(r => r.status)`)
	if status != 403 {
		t.Errorf("a GET without token or cookie: %d, want 403", status)
	}
	status = eval[int](b, `fetch('/api/gateways').then(r => r.status)`)
	if status != 200 {
		t.Errorf("a GET with the cookie: %d, want 200", status)
	}
	if hasMapping(g, portmap.TCP, 1, nil) {
		t.Error("the refused request made a mapping")
	}

	screenshots(t, b, g)
	b.checkProblems()
}

// screenshots saves the main page at desktop and phone sizes in the test's
// output directory (and the desktop one in docs/ with -update-screenshot),
// and checks that the phone layout has no horizontal scrolling.
func screenshots(t *testing.T, b *browser, g *webuitest.Gateway) {
	g.SetExternalIP(netip.MustParseAddr("192.168.0.2"))
	g.SetMappings([]portmap.Mapping{
		{Protocol: portmap.TCP, ExternalPort: 8443, InternalClient: "192.168.1.20", InternalPort: 443, Enabled: true, Description: "NAS web interface"},
		{Protocol: portmap.TCP, ExternalPort: 18080, InternalClient: "192.168.1.10", InternalPort: 8080, Enabled: true, Description: "Web server", Lease: 3 * time.Hour},
		{Protocol: portmap.TCP, ExternalPort: 25565, InternalClient: "192.168.1.31", InternalPort: 25565, Enabled: false, Description: "Minecraft (paused)", Lease: 45 * time.Minute},
		{Protocol: portmap.UDP, ExternalPort: 51820, InternalClient: "192.168.1.10", InternalPort: 51820, Enabled: true, Description: "WireGuard", Lease: 2 * time.Hour},
	})
	b.do("reloading for the screenshot",
		chromedp.Navigate(strings.TrimSuffix(eval[string](b, `location.origin`), "/")+"/"),
		chromedp.WaitVisible(chromedp.CSS(rowSel("TCP", 18080))),
	)
	b.waitFor("the live indicator", `document.querySelector('#live').textContent === 'live'`)
	b.waitFor("the details", `document.querySelector('#external-ip').textContent === '192.168.0.2'`)
	eval[bool](b, `document.activeElement.blur(), true`)
	dir := os.Getenv("PORTFWD_SCREENSHOT_DIR")
	if dir == "" {
		dir = t.TempDir()
	}
	shot := func(name string, w, h int64) []byte {
		ctx, cancel := context.WithTimeout(b.ctx, 15*time.Second)
		defer cancel()
		if err := chromedp.Do(ctx, chromedp.EmulateViewport(w, h)); err != nil {
			t.Fatalf("resizing to %dx%d: %v", w, h, err)
		}
		time.Sleep(200 * time.Millisecond) // let the layout settle
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot: %v", err)
		}
		if err := os.WriteFile(dir+"/"+name, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot: %s/%s", dir, name)
		return png
	}
	desktop := shot("screenshot-ui.png", 1100, 700)
	shot("screenshot-ui-phone.png", 390, 844)
	if over := eval[int](b, `document.documentElement.scrollWidth - document.documentElement.clientWidth`); over > 0 {
		t.Errorf("on a phone-sized screen the page scrolls sideways by %d px", over)
	}
	if *updateScreenshot {
		if err := os.WriteFile("../docs/screenshot-ui.png", desktop, 0o644); err != nil {
			t.Fatal(err)
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
