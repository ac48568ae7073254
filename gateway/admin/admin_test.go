package admin_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portfwd/portfwd/internal/httpx/httpxtest"

	"github.com/chromedp/chromedp"

	"github.com/portfwd/portfwd/gateway/admin"
	"github.com/portfwd/portfwd/internal/browsertest"
)

// fakeAdmin is a gateway's table and status in memory, for the admin
// page's tests.
type fakeAdmin struct {
	mu      sync.Mutex
	ms      []admin.Mapping
	status  admin.Status
	subs    map[int]func()
	nextSub int
	deletes []string // "TCP/9999", in order
}

func newFakeAdmin(ms ...admin.Mapping) *fakeAdmin {
	return &fakeAdmin{ms: ms, subs: map[int]func(){}, status: admin.Status{
		Name: "test gateway", Started: time.Now().Add(-90 * time.Minute), Backend: "memory",
		ExternalAddr: netip.MustParseAddr("203.0.113.5"), ExternalSource: "interface wan0", SecureMode: true,
		Interfaces: []admin.Interface{
			{Name: "lan0", Role: "internal", Addrs: []netip.Prefix{netip.MustParsePrefix("10.77.0.1/24")}, Up: true},
			{Name: "wan0", Role: "external", Addrs: []netip.Prefix{netip.MustParsePrefix("203.0.113.5/24")}, Up: true},
		},
		Services: []admin.Service{{Name: "UPnP IGD", Addr: "http://10.77.0.1:5000/rootDesc.xml"}},
		Requests: []admin.Counter{
			{Protocol: "UPnP", Action: "AddPortMapping", Result: 0, Count: 4},
			{Protocol: "UPnP", Action: "AddPortMapping", Result: 718, Count: 1},
			{Protocol: "NAT-PMP", Action: "map", Result: 0, Count: 2},
		},
		Errors: []admin.Count{{Name: "backend", Count: 0}},
	}}
}

func (f *fakeAdmin) Mappings() []admin.Mapping {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.ms)
}

func (f *fakeAdmin) Delete(ctx context.Context, proto string, addr netip.Addr, port uint16) error {
	f.mu.Lock()
	i := slices.IndexFunc(f.ms, func(m admin.Mapping) bool {
		return m.Protocol == proto && m.ExternalPort == port && m.ExternalAddr == addr
	})
	name := fmt.Sprintf("%s/%d", proto, port)
	if addr.IsValid() {
		name = fmt.Sprintf("%s/%v:%d", proto, addr, port)
	}
	if i < 0 {
		f.mu.Unlock()
		return fmt.Errorf("%w: %s", admin.ErrNoSuchMapping, name)
	}
	f.ms = slices.Delete(f.ms, i, i+1)
	f.deletes = append(f.deletes, name)
	f.mu.Unlock()
	f.notify()
	return nil
}

func (f *fakeAdmin) Status() admin.Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.status
}

func (f *fakeAdmin) Subscribe(changed func()) func() {
	f.mu.Lock()
	defer f.mu.Unlock()
	id := f.nextSub
	f.nextSub++
	f.subs[id] = changed
	return func() {
		f.mu.Lock()
		delete(f.subs, id)
		f.mu.Unlock()
	}
}

// add puts m in the table as a client would, and tells the subscribers.
func (f *fakeAdmin) add(m admin.Mapping) {
	f.mu.Lock()
	f.ms = append(f.ms, m)
	f.mu.Unlock()
	f.notify()
}

func (f *fakeAdmin) notify() {
	f.mu.Lock()
	subs := make([]func(), 0, len(f.subs))
	for _, s := range f.subs {
		subs = append(subs, s)
	}
	f.mu.Unlock()
	for _, s := range subs {
		s()
	}
}

func (f *fakeAdmin) subscribers() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.subs)
}

func (f *fakeAdmin) deleted() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.deletes)
}

// upnpMapping is a mapping a LAN client made over UPnP.
func upnpMapping(port uint16, desc string) admin.Mapping {
	return admin.Mapping{Protocol: "TCP", ExternalPort: port, InternalAddr: netip.MustParseAddr("10.77.0.2"), InternalPort: 8080,
		Client: netip.MustParseAddr("10.77.0.2"), Source: "UPnP", Description: desc, Enabled: true, Expires: time.Now().Add(time.Hour)}
}

// newAdminEnv serves an admin page over backend on 127.0.0.1.
func newAdminEnv(t *testing.T, backend admin.Backend) (*env, *admin.Server) {
	t.Helper()
	a := &admin.Server{
		Backend: backend, Token: testToken, TokenFile: "/var/lib/portfwd/admin-token",
		StatusInterval: 100 * time.Millisecond,
		Logger:         slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	hs := httpxtest.NewServer(a)
	t.Cleanup(hs.Close)
	t.Cleanup(func() { a.Close() }) // runs first: ends the event streams
	return &env{t: t, hs: hs}, a
}

// adminTable is GET /api/mappings as a script reads it.
type adminTable struct {
	Mappings []struct {
		Protocol     string `json:"protocol"`
		ExternalPort int    `json:"external_port"`
		ExternalAddr string `json:"external_addr"`
		InternalAddr string `json:"internal_addr"`
		InternalPort int    `json:"internal_port"`
		Client       string `json:"client"`
		Source       string `json:"source"`
		Description  string `json:"description"`
		Permanent    bool   `json:"permanent"`
		ExpiresIn    int64  `json:"expires_in"`
	} `json:"mappings"`
	BySource []struct {
		Name  string `json:"name"`
		Count int    `json:"count"`
	} `json:"by_source"`
}

func (tb adminTable) ports() []int {
	var out []int
	for _, m := range tb.Mappings {
		out = append(out, m.ExternalPort)
	}
	return out
}

func TestAdminShowsTheTable(t *testing.T) {
	permanent := admin.Mapping{Protocol: "UDP", ExternalPort: 51820, InternalAddr: netip.MustParseAddr("10.77.0.9"), InternalPort: 51820,
		Source: "admin", Description: "static", Enabled: true}
	pmp := upnpMapping(9001, "")
	pmp.Source, pmp.Protocol, pmp.Expires = "NAT-PMP", "UDP", time.Now().Add(90*time.Second)
	e, _ := newAdminEnv(t, newFakeAdmin(permanent, upnpMapping(18080, "web"), pmp))

	var tb adminTable
	e.call("GET", "/api/mappings", nil, http.StatusOK, &tb)
	if got := tb.ports(); !slices.Equal(got, []int{9001, 18080, 51820}) {
		t.Errorf("the table is ordered %v, want by external port", got)
	}
	m := tb.Mappings[0]
	if m.Source != "NAT-PMP" || m.Client != "10.77.0.2" || m.InternalAddr != "10.77.0.2" || m.Permanent ||
		m.ExpiresIn < 89 || m.ExpiresIn > 90 {
		t.Errorf("the NAT-PMP row: %+v", m)
	}
	if m := tb.Mappings[2]; !m.Permanent || m.ExpiresIn != 0 || m.Client != "" {
		t.Errorf("the operator's permanent row: %+v", m)
	}
	counts := map[string]int{}
	for _, c := range tb.BySource {
		counts[c.Name] = c.Count
	}
	if counts["UPnP"] != 1 || counts["NAT-PMP"] != 1 || counts["PCP"] != 0 || counts["admin"] != 1 {
		t.Errorf("counts by source: %+v", tb.BySource)
	}

	_, page := e.request("GET", "/?token="+testToken, nil, nil)
	for _, want := range []string{"test gateway", "10.77.0.2:8080", ">NAT-PMP<", ">UPnP<", "1h 30m", "lan0", "internal", "10.77.0.1/24",
		"http://10.77.0.1:5000/rootDesc.xml", "3 mapping(s): 1 by UPnP, 1 by NAT-PMP, 1 by admin.", "UPnP 5 (1 with an error code), NAT-PMP 2",
		`data-key="UDP/51820"`, ">never<", "operator", "203.0.113.5"} {
		if !strings.Contains(string(page), want) {
			t.Errorf("the page lacks %q", want)
		}
	}
}

func TestAdminStatus(t *testing.T) {
	f := newFakeAdmin()
	f.status.ExternalAddr = netip.MustParseAddr("192.168.0.2") // behind another router
	e, _ := newAdminEnv(t, f)
	var st struct {
		Name            string `json:"name"`
		Backend         string `json:"backend"`
		UptimeSeconds   int64  `json:"uptime_seconds"`
		ExternalAddr    string `json:"external_addr"`
		ExternalClass   string `json:"external_class"`
		ExternalWarning string `json:"external_warning"`
		Totals          []struct {
			Protocol string `json:"protocol"`
			Requests int    `json:"requests"`
			Errors   int    `json:"error_answers"`
		} `json:"totals"`
	}
	e.call("GET", "/api/status", nil, http.StatusOK, &st)
	if st.Name != "test gateway" || st.Backend != "memory" || st.UptimeSeconds < 90*60 || st.UptimeSeconds > 90*60+5 {
		t.Errorf("status: %+v", st)
	}
	if st.ExternalAddr != "192.168.0.2" || st.ExternalClass == "" || !strings.Contains(st.ExternalWarning, "double NAT") {
		t.Errorf("a private external address is not explained: %+v", st)
	}
	if len(st.Totals) != 2 || st.Totals[0].Protocol != "UPnP" || st.Totals[0].Requests != 5 || st.Totals[0].Errors != 1 ||
		st.Totals[1].Protocol != "NAT-PMP" || st.Totals[1].Requests != 2 || st.Totals[1].Errors != 0 {
		t.Errorf("totals: %+v", st.Totals)
	}
}

// TestAdminEscapes: a client chooses its description; the page must show
// it as text, and the JSON must not carry it raw.
func TestAdminEscapes(t *testing.T) {
	const script = `<script>alert(1)</script>`
	f := newFakeAdmin(upnpMapping(18080, script))
	f.status.Name = `"><img src=x onerror=alert(2)>`
	e, _ := newAdminEnv(t, f)

	_, page := e.request("GET", "/?token="+testToken, nil, nil)
	if bytes.Contains(page, []byte(script)) || bytes.Contains(page, []byte("<img")) {
		t.Errorf("the page carries a client's markup raw:\n%s", page)
	}
	if !bytes.Contains(page, []byte("&lt;script&gt;alert(1)&lt;/script&gt;")) {
		t.Errorf("the description is not in the page as text:\n%s", page)
	}
	for _, path := range []string{"/api/mappings", "/api/status"} {
		raw := e.call("GET", path, nil, http.StatusOK, nil)
		if bytes.Contains(raw, []byte("<script>")) || bytes.Contains(raw, []byte("<img")) {
			t.Errorf("%s carries markup raw: %s", path, raw)
		}
	}
	var tb adminTable
	e.call("GET", "/api/mappings", nil, http.StatusOK, &tb)
	if tb.Mappings[0].Description != script {
		t.Errorf("the description decodes to %q, want it unchanged", tb.Mappings[0].Description)
	}
	st, _ := e.events(withToken())
	ev := next[json.RawMessage](st, "mappings", nil)
	if bytes.Contains(ev, []byte("<script>")) {
		t.Errorf("the event carries markup raw: %s", ev)
	}
}

func TestAdminRefusals(t *testing.T) {
	f := newFakeAdmin(upnpMapping(18080, "web"))
	e, _ := newAdminEnv(t, f)
	cookie := e.pageCookie()

	// Every API route wants the token; the cookie lets a page read, never
	// delete.
	for _, r := range []route{{"GET", "/api/mappings", nil}, {"GET", "/api/status", nil}, {"GET", "/api/events", nil}, {"DELETE", "/api/mappings/tcp/18080", nil}} {
		for name, h := range map[string]http.Header{
			"no token":    {},
			"wrong token": {admin.TokenHeader: {testToken + "x"}},
		} {
			res, body := e.request(r.method, r.path, nil, h)
			if res.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "/var/lib/portfwd/admin-token") {
				t.Errorf("%s %s with %s: %d %s, want 403 saying where the token is", r.method, r.path, name, res.StatusCode, body)
			}
		}
	}
	h := http.Header{"Cookie": {cookie.String()}}
	if res, _ := e.request("DELETE", "/api/mappings/tcp/18080", nil, h); res.StatusCode != http.StatusForbidden {
		t.Errorf("DELETE with only the cookie: %d, want 403", res.StatusCode)
	}
	if res, _ := e.request("GET", "/api/mappings", nil, h); res.StatusCode != http.StatusOK {
		t.Errorf("GET with the cookie: %d, want 200", res.StatusCode)
	}

	// DNS rebinding: another name for our address.
	_, port, _ := strings.Cut(strings.TrimPrefix(e.hs.URL, "http://"), ":")
	for _, path := range []string{"/?token=" + testToken, "/api/mappings", "/static/admin.js"} {
		h := withToken()
		h.Set("Host", "evil.example:"+port)
		if res, _ := e.request("GET", path, nil, h); res.StatusCode != http.StatusMisdirectedRequest {
			t.Errorf("GET %s with a foreign Host: %d, want 421", path, res.StatusCode)
		}
	}
	h = withToken()
	h.Set("Host", "evil.example:"+port)
	if res, _ := e.request("DELETE", "/api/mappings/tcp/18080", nil, h); res.StatusCode != http.StatusMisdirectedRequest {
		t.Errorf("DELETE with a foreign Host: %d, want 421", res.StatusCode)
	}
	// Another site's page, even with the token (say it leaked).
	h = withToken()
	h.Set("Origin", "http://evil.example")
	if res, _ := e.request("DELETE", "/api/mappings/tcp/18080", nil, h); res.StatusCode != http.StatusForbidden {
		t.Errorf("DELETE from another origin: %d, want 403", res.StatusCode)
	}
	if d := f.deleted(); len(d) != 0 {
		t.Errorf("refused requests deleted %v", d)
	}

	// The page: token in the URL or the cookie, and a refusal that says
	// where the token is without giving it away.
	for _, path := range []string{"/", "/?token=guess"} {
		res, body := e.request("GET", path, nil, nil)
		if res.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "/var/lib/portfwd/admin-token") ||
			strings.Contains(string(body), testToken) {
			t.Errorf("GET %s: %d\n%s", path, res.StatusCode, body)
		}
	}
	for _, p := range []string{"/static/admin.html", "/static/common.html", "/static/"} {
		if res, _ := e.request("GET", p, nil, nil); res.StatusCode == http.StatusOK {
			t.Errorf("GET %s: %d, want the templates hidden", p, res.StatusCode)
		}
	}
}

func TestAdminDelete(t *testing.T) {
	f := newFakeAdmin(upnpMapping(18080, "web"), upnpMapping(18081, "other"))
	e, _ := newAdminEnv(t, f)

	var tb adminTable
	e.call("DELETE", "/api/mappings/tcp/18080", nil, http.StatusOK, &tb)
	if got := tb.ports(); !slices.Equal(got, []int{18081}) {
		t.Errorf("the answer's table: %v, want [18081]", got)
	}
	if d := f.deleted(); !slices.Equal(d, []string{"TCP/18080"}) {
		t.Errorf("the backend deleted %v", d)
	}
	var ae apiError
	json.Unmarshal(e.call("DELETE", "/api/mappings/tcp/18080", nil, http.StatusNotFound, nil), &ae)
	if !strings.Contains(ae.Error, "nothing is mapped on TCP 18080") {
		t.Errorf("deleting it again: %q", ae.Error)
	}
	e.call("DELETE", "/api/mappings/sctp/18081", nil, http.StatusBadRequest, nil)
	e.call("DELETE", "/api/mappings/tcp/0", nil, http.StatusBadRequest, nil)
	e.call("DELETE", "/api/mappings/tcp/70000", nil, http.StatusBadRequest, nil)
	if d := f.deleted(); len(d) != 1 {
		t.Errorf("bad requests reached the backend: %v", d)
	}
}

// TestAdminDeletePool: a mapping on an external pool address is listed
// with that address and deleted by it, never the gateway's own address's
// mapping of the same port.
func TestAdminDeletePool(t *testing.T) {
	own := upnpMapping(18080, "own")
	pooled := upnpMapping(18080, "pool")
	pooled.Source, pooled.ExternalAddr = "PCP", netip.MustParseAddr("198.51.100.2")
	f := newFakeAdmin(own, pooled)
	e, _ := newAdminEnv(t, f)

	var tb adminTable
	e.call("GET", "/api/mappings", nil, http.StatusOK, &tb)
	if len(tb.Mappings) != 2 || tb.Mappings[0].ExternalAddr != "" || tb.Mappings[1].ExternalAddr != "198.51.100.2" {
		t.Fatalf("the table: %+v, want the own address's 18080 (no external_addr), then the pool's", tb.Mappings)
	}
	_, page := e.request("GET", "/?token="+testToken, nil, nil)
	for _, want := range []string{`data-key="TCP/18080"`, `data-key="TCP/18080/198.51.100.2"`, `on 198.51.100.2`, `aria-label="Delete 198.51.100.2:18080/TCP"`} {
		if !strings.Contains(string(page), want) {
			t.Errorf("the page lacks %q", want)
		}
	}
	e.call("DELETE", "/api/mappings/tcp/18080?external_addr=198.51.100.2", nil, http.StatusOK, &tb)
	if len(tb.Mappings) != 1 || tb.Mappings[0].Description != "own" {
		t.Errorf("after deleting the pool's 18080: %+v, want the own address's kept", tb.Mappings)
	}
	var ae apiError
	json.Unmarshal(e.call("DELETE", "/api/mappings/tcp/18080?external_addr=198.51.100.2", nil, http.StatusNotFound, nil), &ae)
	if !strings.Contains(ae.Error, "nothing is mapped on TCP 198.51.100.2:18080") {
		t.Errorf("deleting it again: %q", ae.Error)
	}
	e.call("DELETE", "/api/mappings/tcp/18080?external_addr=2001:db8::1", nil, http.StatusBadRequest, nil)
	e.call("DELETE", "/api/mappings/tcp/18080?external_addr=pool", nil, http.StatusBadRequest, nil)
	if d := f.deleted(); !slices.Equal(d, []string{"TCP/198.51.100.2:18080"}) {
		t.Errorf("the backend deleted %v", d)
	}
	_, page = e.request("GET", "/?token="+testToken, nil, nil)
	if !strings.Contains(string(page), `data-key="TCP/18080"`) || strings.Contains(string(page), `198.51.100.2`) {
		t.Errorf("the page after the delete should list the own address's 18080 only")
	}
}

// TestAdminEvents: a page gets the table at once and again after each
// change, the status on a timer, and the stream ends with Close.
func TestAdminEvents(t *testing.T) {
	f := newFakeAdmin(upnpMapping(18080, "web"))
	e, a := newAdminEnv(t, f)
	st, res := e.events(withToken())
	if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		t.Fatalf("events: Content-Type %q", ct)
	}
	if got := next[adminTable](st, "mappings", nil).ports(); !slices.Equal(got, []int{18080}) {
		t.Errorf("the first table: %v", got)
	}
	next[json.RawMessage](st, "status", nil)

	f.add(upnpMapping(9999, "added by a client"))
	next[adminTable](st, "mappings", func(tb adminTable) bool { return slices.Contains(tb.ports(), 9999) })
	// The status comes again by itself (StatusInterval is 100 ms here).
	next[json.RawMessage](st, "status", nil)
	next[json.RawMessage](st, "status", nil)

	a.Close()
	for range st.events { // drains until the stream ends
	}
	if !eventually(func() bool { return f.subscribers() == 0 }) {
		t.Errorf("%d subscriptions left after the stream ended", f.subscribers())
	}
	if res, _ := e.request("GET", "/api/events", nil, withToken()); res.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("events after Close: %d, want 503", res.StatusCode)
	}
}

// TestAdminBrowser drives the admin page in headless Chromium: the table,
// a mapping a client adds appearing without a reload, a description with
// markup shown as text, a delete, and the status.
func TestAdminBrowser(t *testing.T) {
	b := browsertest.NewBrowser(t, browsertest.BrowserOptions{})
	f := newFakeAdmin(upnpMapping(18080, "web <b>server</b>"))
	f.status.Name = "portfwd gateway" // the daemon's default friendly name
	e, _ := newAdminEnv(t, f)

	row := func(proto string, port int) string { return fmt.Sprintf(`#rows tr[data-key="%s/%d"]`, proto, port) }
	b.Do("loading the page",
		chromedp.Navigate(e.hs.URL+"/?token="+testToken),
		chromedp.WaitVisible(chromedp.CSS(row("TCP", 18080))),
	)
	b.WaitFor("the live indicator", `document.querySelector('#live').textContent === 'live'`)
	if loc := browsertest.Eval[string](b, `location.href`); strings.Contains(loc, "token") {
		t.Errorf("the token stays in the address bar: %s", loc)
	}
	if d := browsertest.Eval[string](b, `document.querySelector('#rows td.desc').textContent`); d != "web <b>server</b>" {
		t.Errorf("the description reads %q", d)
	}
	browsertest.Eval[bool](b, `window.samePage = true`)
	// The header names the gateway once.
	if h := browsertest.Eval[string](b, `document.querySelector('header').innerText`); strings.Count(h, "portfwd gateway") != 1 {
		t.Errorf("the header reads %q: the gateway's name once, please", h)
	}

	// A client maps a port: the row appears, made by NAT-PMP, counting down.
	pmp := upnpMapping(9999, "game")
	pmp.Source, pmp.Protocol, pmp.Expires = "NAT-PMP", "UDP", time.Now().Add(2*time.Minute)
	f.add(pmp)
	b.WaitFor("the new row", fmt.Sprintf(`document.querySelector('%s .source')?.textContent === 'NAT-PMP'`, row("UDP", 9999)))
	lease := fmt.Sprintf(`document.querySelector('%s .lease').textContent`, row("UDP", 9999))
	first := browsertest.Eval[string](b, lease)
	b.WaitFor("the lease to tick", lease+" !== "+fmt.Sprintf("%q", first))
	if s := browsertest.Eval[string](b, `document.querySelector('#table-status').textContent`); s != "2 mapping(s): 1 by UPnP, 1 by NAT-PMP." {
		t.Errorf("the summary reads %q", s)
	}

	// Delete asks first, naming what closes; Cancel deletes nothing.
	b.Click("the delete button", row("TCP", 18080)+" button.delete")
	b.Do("reading the question", chromedp.WaitVisible(chromedp.CSS("#confirm-dialog")))
	if q := browsertest.Eval[string](b, `document.querySelector('#confirm-dialog').innerText`); !strings.Contains(q, "Delete 18080/TCP?") ||
		!strings.Contains(q, "10.77.0.2:8080") || !strings.Contains(q, "made by UPnP") {
		t.Errorf("the confirmation reads %q", q)
	}
	if id := browsertest.Eval[string](b, `document.activeElement.id`); id != "confirm-cancel" {
		t.Errorf("the confirmation opens with the focus on %q, want Cancel", id)
	}
	b.Do("cancelling", chromedp.Click(chromedp.CSS("#confirm-cancel")))
	b.WaitFor("the question to close", `!document.querySelector('#confirm-dialog').open`)
	if d := f.deleted(); len(d) != 0 {
		t.Errorf("cancelled, yet the backend deleted %v", d)
	}
	b.Click("the delete button", row("TCP", 18080)+" button.delete")
	b.Do("confirming", chromedp.WaitVisible(chromedp.CSS("#confirm-dialog")), chromedp.Click(chromedp.CSS("#confirm-ok")))
	b.WaitFor("the row to go", fmt.Sprintf(`!document.querySelector('%s')`, row("TCP", 18080)))
	if d := f.deleted(); !slices.Equal(d, []string{"TCP/18080"}) {
		t.Errorf("the backend deleted %v", d)
	}
	// A mapping on an external pool address: shown and deleted by its
	// address, whatever the own address holds on that port.
	pooled := upnpMapping(18080, "pool")
	pooled.Source, pooled.ExternalAddr = "PCP", netip.MustParseAddr("198.51.100.2")
	f.add(pooled)
	poolRow := `#rows tr[data-key="TCP/18080/198.51.100.2"]`
	b.WaitFor("the pool row", fmt.Sprintf(`document.querySelector('%s')?.innerText.includes('on 198.51.100.2')`, poolRow))
	b.Click("the pool row's delete button", poolRow+" button.delete")
	b.Do("confirming", chromedp.WaitVisible(chromedp.CSS("#confirm-dialog")))
	if q := browsertest.Eval[string](b, `document.querySelector('#confirm-dialog').innerText`); !strings.Contains(q, "Delete 198.51.100.2:18080/TCP?") {
		t.Errorf("the pool mapping's confirmation reads %q", q)
	}
	b.Do("confirming", chromedp.Click(chromedp.CSS("#confirm-ok")))
	b.WaitFor("the pool row to go", fmt.Sprintf(`!document.querySelector('%s')`, poolRow))
	if d := f.deleted(); !slices.Equal(d, []string{"TCP/18080", "TCP/198.51.100.2:18080"}) {
		t.Errorf("the backend deleted %v", d)
	}
	// A mapping that went meanwhile: the page says so.
	f.mu.Lock()
	f.ms = nil
	f.mu.Unlock()
	b.Click("the delete button", row("UDP", 9999)+" button.delete")
	b.Do("confirming", chromedp.WaitVisible(chromedp.CSS("#confirm-dialog")), chromedp.Click(chromedp.CSS("#confirm-ok")))
	b.WaitFor("the notice", `document.querySelector('#notice-text').textContent.includes('nothing is mapped on UDP 9999')`)
	b.WaitFor("the stale row to go", fmt.Sprintf(`!document.querySelector('%s')`, row("UDP", 9999)))

	if !browsertest.Eval[bool](b, `window.samePage === true`) {
		t.Error("the page was reloaded: live updates should not need it")
	}
	if up := browsertest.Eval[string](b, `document.querySelector('#uptime').textContent`); !strings.HasPrefix(up, "1h 30m") {
		t.Errorf("uptime reads %q", up)
	}
	status := browsertest.Eval[int](b, `fetch('/api/mappings/tcp/1', {method: 'DELETE'}).then(r => r.status)`)
	if status != http.StatusForbidden {
		t.Errorf("a DELETE from the page without the token header: %d, want 403", status)
	}
	dir := os.Getenv("PORTFWD_SCREENSHOT_DIR")
	if dir == "" {
		dir = t.TempDir()
	}
	for _, size := range []struct {
		name string
		w, h int64
	}{{"screenshot-admin-test.png", 1100, 700}, {"screenshot-admin-phone.png", 390, 844}} {
		if err := os.WriteFile(filepath.Join(dir, size.name), b.Screenshot(size.w, size.h), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if over := browsertest.Eval[int](b, `document.documentElement.scrollWidth - document.documentElement.clientWidth`); over > 0 {
		t.Errorf("on a phone-sized screen the page scrolls sideways by %d px", over)
	}
	b.CheckProblems()
}

// auditingAdmin is a fakeAdmin with an audit trail.
type auditingAdmin struct {
	*fakeAdmin
	recs []admin.AuditRecord
}

func (a *auditingAdmin) AuditTrail() []admin.AuditRecord      { return slices.Clone(a.recs) }
func (a *auditingAdmin) SubscribeAudit(changed func()) func() { return func() {} }

// TestAdminAuditTrail: the page says who opened what, when, and which
// policy is in force; a client's markup in a description stays text.
func TestAdminAuditTrail(t *testing.T) {
	const script = `<script>alert(3)</script>`
	f := newFakeAdmin(upnpMapping(18080, "web"))
	f.status.Policy = []string{"secure mode: a client may map ports only to itself", "ports: external and internal ports 1024-65535 only"}
	f.status.Warnings = []string{"1 saved lease(s) refused by the nft backend at start"}
	a := &auditingAdmin{fakeAdmin: f, recs: []admin.AuditRecord{
		{Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Event: "refused", Via: "UPnP", Action: "AddPortMapping",
			Client: netip.MustParseAddr("10.77.0.3"), Protocol: "TCP", ExternalPort: 22, Result: "606 ActionNotAuthorized",
			Reason: "no permission rule allows mapping TCP port 22", Description: script},
		{Time: time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC), Event: "added", Via: "NAT-PMP",
			Client: netip.MustParseAddr("10.77.0.2"), Protocol: "UDP", ExternalPort: 9000,
			Internal: netip.MustParseAddrPort("10.77.0.2:9000"), LeaseSeconds: 3600, Result: "ok"},
	}}
	e, _ := newAdminEnv(t, a)
	_, page := e.request("GET", "/?token="+testToken, nil, nil)
	for _, want := range []string{"Who opened what, when", "refused", "10.77.0.3", "UPnP AddPortMapping", "22/TCP",
		"606 ActionNotAuthorized: no permission rule allows mapping TCP port 22", "9000/UDP → 10.77.0.2:9000",
		"Policy in force", "ports: external and internal ports 1024-65535 only", "refused by the nft backend at start",
		"&lt;script&gt;alert(3)&lt;/script&gt;"} {
		if !strings.Contains(string(page), want) {
			t.Errorf("the page lacks %q", want)
		}
	}
	if bytes.Contains(page, []byte(script)) {
		t.Error("the page carries a description's markup raw")
	}
	var au struct {
		Kept    bool `json:"kept"`
		Records []struct {
			Event  string `json:"event"`
			Client string `json:"client"`
			Port   int    `json:"external_port"`
		} `json:"records"`
	}
	raw := e.call("GET", "/api/audit", nil, http.StatusOK, &au)
	if !au.Kept || len(au.Records) != 2 || au.Records[0].Event != "refused" || au.Records[0].Client != "10.77.0.3" || au.Records[1].Port != 9000 {
		t.Errorf("/api/audit: %+v", au)
	}
	if bytes.Contains(raw, []byte("<script>")) {
		t.Errorf("/api/audit carries markup raw: %s", raw)
	}
	// Without a trail, the page says so.
	e2, _ := newAdminEnv(t, newFakeAdmin())
	_, page = e2.request("GET", "/?token="+testToken, nil, nil)
	if !strings.Contains(string(page), "keeps no audit trail") {
		t.Error("a gateway without a trail does not say so")
	}
}
