package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/portfwd/portfwd/internal/browsertest"
	"github.com/portfwd/portfwd/internal/natlab"
)

var updateScreenshots = flag.Bool("update-screenshot", false,
	"write the lab's screenshots of the web UI and the admin page to ../../docs/")

// browserIn starts a headless Chromium inside host's namespace, where the
// page it is to show is served on loopback: the browser is where the
// user's would be. The test drives it over a pipe, which ip netns exec
// hands on.
func browserIn(t *testing.T, l *natlab.Lab, host string) *browsertest.Browser {
	t.Helper()
	return browsertest.NewBrowser(t, browsertest.BrowserOptions{Command: func(cmd *exec.Cmd) {
		w := l.Cmd(context.Background(), host, cmd.Path, cmd.Args[1:]...)
		cmd.Path, cmd.Args = w.Path, w.Args
		if w.Err != nil {
			cmd.Err = w.Err
		}
		// The browser dies with the test, as chromedp would arrange.
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	}})
}

// saveScreenshot keeps a PNG in the test's output directory (or
// $PORTFWD_SCREENSHOT_DIR), and in docs/ with -update-screenshot.
func saveScreenshot(t *testing.T, name string, png []byte) {
	t.Helper()
	dir := os.Getenv("PORTFWD_SCREENSHOT_DIR")
	if dir == "" {
		dir = t.TempDir()
	}
	dirs := []string{dir}
	if *updateScreenshots {
		dirs = append(dirs, "../../docs")
	}
	for _, d := range dirs {
		if err := os.WriteFile(filepath.Join(d, name), png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot: %s", filepath.Join(d, name))
	}
}

// uiRow and adminRow select a mapping's row in the client UI and on the
// admin page.
func uiRow(proto string, port int) string {
	return fmt.Sprintf(`#rows tr[data-key="%s/%d/"]`, proto, port)
}

func adminRow(proto string, port int) string {
	return fmt.Sprintf(`#rows tr[data-key="%s/%d"]`, proto, port)
}

// TestLabWebUI drives both web pages in a real browser against our
// gateway on the lab router (nft backend): `portfwd ui` on the LAN host's
// loopback with Chromium beside it, and the gateway's admin page on the
// router's loopback with another Chromium there. Mappings made through
// the page carry real traffic from the WAN host; mappings made by upnpc
// and natpmpc, and deletes made on the admin page, show up in both pages
// without a reload.
func TestLabWebUI(t *testing.T) {
	l := natlab.Start(t, natlab.Options{Router: natlab.RouterNone})
	natlab.Require(t, "upnpc", "natpmpc")
	gw := startGateway(t, l, "--admin-ui")
	lan := l.LANIP.String()
	l.ServeTCP(t, natlab.HostLAN, ap(l.LANIP, 8080), "lan-8080")
	l.ServeTCP(t, natlab.HostLAN, ap(l.LANIP, 8081), "lan-8081")

	// portfwd ui on the LAN host, found by SSDP like a user's would be.
	ui := l.Start(t, natlab.HostLAN, portfwdBinary(t), "ui", "--json", "--listen", "127.0.0.1:0",
		"--no-cache", "--state-dir", filepath.Join(l.RunDir, "ui-state"))
	var printed struct{ URL, Token string }
	if !waitFor(10*time.Second, func() bool {
		out := ui.Output() // stderr is in the log too
		i := strings.Index(out, "{")
		return i >= 0 && json.NewDecoder(strings.NewReader(out[i:])).Decode(&printed) == nil && printed.URL != ""
	}) {
		t.Fatalf("portfwd ui printed no address; its output:\n%s", ui.Output())
	}
	if !strings.HasPrefix(printed.URL, "http://127.0.0.1:") || !strings.HasSuffix(printed.URL, "?token="+printed.Token) {
		t.Fatalf("portfwd ui printed %+v", printed)
	}

	b := browserIn(t, l, natlab.HostLAN)
	b.Do("loading the UI", chromedp.Navigate(printed.URL))
	b.WaitFor("our gateway, found", `document.querySelector('#gateway option:checked')?.textContent.includes('natlab portfwd gateway (UPnP')`)
	b.WaitFor("the live indicator", `document.querySelector('#live').textContent === 'live'`)
	b.WaitFor("the empty table", `document.querySelector('#table-status').textContent === 'No mappings.'`)
	if ip := browsertest.Eval[string](b, `document.querySelector('#external-ip').textContent`); ip != l.RouterWANIP.String() {
		t.Errorf("the UI shows the external address %q, want %s", ip, l.RouterWANIP)
	}
	browsertest.Eval[bool](b, `window.samePage = true`)

	// Add through the form: WAN -> 18080 reaches the LAN host's 8080.
	b.Do("adding a mapping",
		chromedp.Click(chromedp.CSS("#add")),
		chromedp.WaitVisible(chromedp.CSS("#edit-dialog")),
		chromedp.SetValue(chromedp.CSS("#f-internal-port"), "8080"),
		chromedp.SetValue(chromedp.CSS("#f-external-port"), "18080"),
		chromedp.SetValue(chromedp.CSS("#f-description"), "lab <ui> & co"),
		chromedp.SetValue(chromedp.CSS("#f-lease"), "1h"),
		chromedp.Click(chromedp.CSS("#edit-submit")),
		chromedp.WaitVisible(chromedp.CSS(uiRow("TCP", 18080))),
	)
	if txt := browsertest.Eval[string](b, fmt.Sprintf(`document.querySelector('%s').innerText`, uiRow("TCP", 18080))); !strings.Contains(txt, lan) || !strings.Contains(txt, "this computer") {
		t.Errorf("the new row reads %q", txt)
	}
	if got, reached := reachTCP(t, l, 18080, mustWork); !reached || got != "lan-8080" {
		t.Fatalf("after adding in the UI, WAN -> 18080 got %q (reached %v)", got, reached)
	}

	// The UI follows the router's UPnP events, as portfwd watch does,
	// rather than polling it: the API says which it does.
	updates := func() string {
		return browsertest.Eval[string](b, `fetch('/api/gateways').then((r) => r.json()).then((j) => (j.gateways.find((g) => g.selected) || {}).updates || '')`)
	}
	if !waitFor(10*time.Second, func() bool { return updates() == "events" }) {
		t.Fatalf("portfwd ui does not follow the router's events (updates %q); its output:\n%s", updates(), ui.Output())
	}

	// Another client maps a port: it appears in the page by itself, on the
	// router's word. The UI still follows the events then: it has not
	// fallen back to polling (which, once it does, it keeps to).
	lanRun(t, l, "upnpc", "-i", "-u", "http://"+l.RouterLANIP.String()+":5000/rootDesc.xml", "-e", "byupnpc", "-a", lan, "9999", "19999", "TCP")
	b.WaitFor("upnpc's mapping in the UI", fmt.Sprintf(`document.querySelector('%s td.desc')?.textContent === 'byupnpc'`, uiRow("TCP", 19999)))
	if u := updates(); u != "events" {
		t.Errorf("after upnpc's mapping showed, the UI reads the router by %q, want events", u)
	}

	// Edit: the traffic follows to 8081.
	b.Click("the edit button", uiRow("TCP", 18080)+" button.edit")
	b.Do("editing",
		chromedp.WaitVisible(chromedp.CSS("#edit-dialog")),
		chromedp.SetValue(chromedp.CSS("#f-internal-port"), "8081"),
		chromedp.SetValue(chromedp.CSS("#f-description"), "lab <ui> & co, edited"),
		chromedp.Click(chromedp.CSS("#edit-submit")),
	)
	b.WaitFor("the edited row", fmt.Sprintf(`document.querySelector('%s td.desc')?.textContent === 'lab <ui> & co, edited'`, uiRow("TCP", 18080)))
	if got, reached := reachTCP(t, l, 18080, mustWork); !reached || got != "lan-8081" {
		t.Fatalf("after editing in the UI, WAN -> 18080 got %q (reached %v), want lan-8081", got, reached)
	}

	// The admin page, in a browser on the router itself.
	tokenFile := filepath.Join(gw.stateDir, "admin-token")
	tok, err := os.ReadFile(tokenFile)
	if err != nil {
		t.Fatalf("the gateway wrote no admin token: %v\n%s", err, gw.proc.Output())
	}
	contains(t, "the gateway's log", gw.proc.Output(), "admin page: open http://127.0.0.1:8900/?token= with the token in "+tokenFile)
	adm := browserIn(t, l, natlab.HostRouter)
	adm.Do("loading the admin page", chromedp.Navigate("http://127.0.0.1:8900/?token="+strings.TrimSpace(string(tok))))
	adm.WaitFor("the admin page's live indicator", `document.querySelector('#live').textContent === 'live'`)
	adm.WaitFor("the UI's mapping", fmt.Sprintf(`document.querySelector('%s .source')?.textContent === 'UPnP'`, adminRow("TCP", 18080)))
	if d := browsertest.Eval[string](adm, fmt.Sprintf(`document.querySelector('%s td.desc').textContent`, adminRow("TCP", 18080))); d != "lab <ui> & co, edited" {
		t.Errorf("the admin page shows the description as %q", d)
	}
	if txt := browsertest.Eval[string](adm, fmt.Sprintf(`document.querySelector('%s').innerText`, adminRow("TCP", 18080))); !strings.Contains(txt, lan+":8081") {
		t.Errorf("the admin page's row reads %q", txt)
	}
	browsertest.Eval[bool](adm, `window.samePage = true`)
	// A NAT-PMP client: its mapping appears on both pages by itself.
	lanRun(t, l, "natpmpc", "-g", l.RouterLANIP.String(), "-a", "9001", "19001", "udp", "3600")
	adm.WaitFor("natpmpc's mapping", fmt.Sprintf(`document.querySelector('%s .source')?.textContent === 'NAT-PMP'`, adminRow("UDP", 9001)))
	b.WaitFor("natpmpc's mapping in the UI", fmt.Sprintf(`!!document.querySelector('%s')`, uiRow("UDP", 9001)))
	adm.WaitFor("the counters", `[...document.querySelectorAll('#counter-rows tr')].some((tr) => [...tr.cells].map((c) => c.textContent).join('|').startsWith('NAT-PMP|map_udp|success|'))`)
	for _, want := range []string{natlab.RouterLANIf, natlab.RouterWANIf, l.RouterWANIP.String(), "nft", "3 mapping(s): 2 by UPnP, 1 by NAT-PMP."} {
		if txt := browsertest.Eval[string](adm, `document.querySelector('main').innerText`); !strings.Contains(txt, want) {
			t.Errorf("the admin page lacks %q", want)
		}
	}

	// Screenshots, with three mappings made three ways.
	// Without the focus ring and the "changed" toast over the table.
	browsertest.Eval[bool](b, `document.activeElement.blur(), document.querySelector('#toast').hidden = true, true`)
	saveScreenshot(t, "screenshot-ui-lab.png", b.Screenshot(1100, 620))
	saveScreenshot(t, "screenshot-admin.png", adm.Screenshot(1100, 760))

	// Delete upnpc's mapping on the admin page: the client UI loses it too.
	adm.Click("the admin page's delete button", adminRow("TCP", 19999)+" button.delete")
	adm.Do("confirming on the admin page", chromedp.WaitVisible(chromedp.CSS("#confirm-dialog")), chromedp.Click(chromedp.CSS("#confirm-ok")))
	adm.WaitFor("the row to go", fmt.Sprintf(`!document.querySelector('%s')`, adminRow("TCP", 19999)))
	b.WaitFor("the UI to lose it", fmt.Sprintf(`!document.querySelector('%s')`, uiRow("TCP", 19999)))
	if out := lanRun(t, l, "upnpc", "-i", "-u", "http://"+l.RouterLANIP.String()+":5000/rootDesc.xml", "-l"); strings.Contains(out, "19999") {
		t.Errorf("upnpc still lists 19999 after the admin page deleted it:\n%s", out)
	}

	// Delete in the UI: the port closes.
	b.Click("the delete button", uiRow("TCP", 18080)+" button.delete")
	b.Do("confirming",
		chromedp.WaitVisible(chromedp.CSS("#confirm-dialog")),
		chromedp.Click(chromedp.CSS("#confirm-ok")),
		chromedp.WaitNotPresent(chromedp.CSS(uiRow("TCP", 18080))),
	)
	if _, reached := reachTCP(t, l, 18080, mustFail); reached {
		t.Fatal("18080 still reachable after deleting it in the UI")
	}
	adm.WaitFor("the admin page to lose it", fmt.Sprintf(`!document.querySelector('%s')`, adminRow("TCP", 18080)))

	// Without the token, both refuse to change anything.
	if st := browsertest.Eval[int](b, `fetch('/api/mappings', {method: 'POST', headers: {'Content-Type': 'application/json'},
		body: JSON.stringify({protocol: 'tcp', internal_port: 8080, external_port: 18090})}).then(r => r.status)`); st != 403 {
		t.Errorf("the UI answered a POST without the token with %d, want 403", st)
	}
	if st := browsertest.Eval[int](adm, `fetch('/api/mappings/udp/9001', {method: 'DELETE'}).then(r => r.status)`); st != 403 {
		t.Errorf("the admin page answered a DELETE without the token with %d, want 403", st)
	}
	adm.WaitFor("natpmpc's mapping, still there", fmt.Sprintf(`!!document.querySelector('%s')`, adminRow("UDP", 9001)))
	if _, reached := reachTCP(t, l, 18090, mustFail); reached {
		t.Error("the refused POST made a mapping")
	}

	for name, br := range map[string]*browsertest.Browser{"the UI": b, "the admin page": adm} {
		if !browsertest.Eval[bool](br, `window.samePage === true`) {
			t.Errorf("%s was reloaded: live updates should not need it", name)
		}
		br.CheckProblems()
	}
	gw.stop(t)
}
