package daemon

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	http "github.com/portfwd/portfwd/internal/httpx"
	"github.com/portfwd/portfwd/internal/httpx/httpxtest"

	"github.com/portfwd/portfwd/igd"
	"github.com/portfwd/portfwd/internal/testenv"
	"github.com/portfwd/portfwd/upnp"
)

func TestParseQuirks(t *testing.T) {
	q, err := ParseQuirks([]string{"permanent-only, table-full:3", "forgetful:10", "stale-718", "no-external-ip:501"})
	if err != nil {
		t.Fatal(err)
	}
	want := Quirks{PermanentOnly: true, TableFull: 3, Forgetful: 10 * time.Second, Stale718Port: DefaultStale718Port, NoExternalIP: true, NoExternalIP501: true}
	if q != want {
		t.Errorf("got %+v, want %+v", q, want)
	}
	if got := strings.Join(q.Names(), ","); got != "permanent-only,no-external-ip:501,stale-718:6881,table-full:3,forgetful:10" {
		t.Errorf("Names() = %s", got)
	}
	if again, err := ParseQuirks(q.Names()); err != nil || again != q {
		t.Errorf("Names() does not read back: %+v, %v", again, err)
	}
	if q, err := ParseQuirks(nil); err != nil || q.Any() {
		t.Errorf("no quirks: %+v, %v", q, err)
	}
}

func TestParseQuirksErrors(t *testing.T) {
	for in, want := range map[string]string{
		"permanant-only":            `unknown quirk "permanant-only": did you mean "permanent-only"?`,
		"ssdp-slwo":                 `did you mean "ssdp-slow"?`,
		"table-full:0":              "table-full:0: the parameter is a number of mappings",
		"forgetful:x":               "forgetful:x: the parameter is a number of seconds",
		"upper-proto:1":             "quirk upper-proto takes no parameter",
		"stale-718:70000":           "the parameter is a port",
		"no-external-ip:404":        "no-external-ip takes no parameter or :501",
		"permanent-only,lease-402":  "choose one",
		"no-list,duplicate-entries": "choose one",
	} {
		_, err := ParseQuirks([]string{in})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v, want %q", in, err, want)
		}
	}
}

// Every quirk has a help line, and every name parses.
func TestQuirkHelpCoversEveryQuirk(t *testing.T) {
	help := QuirkHelp()
	if len(help) != len(quirkDefs) || len(help) < 16 {
		t.Fatalf("%d help lines for %d quirks", len(help), len(quirkDefs))
	}
	for _, n := range QuirkNames() {
		q, err := ParseQuirks([]string{n})
		if err != nil || !q.Any() {
			t.Errorf("%s: %+v %v", n, q, err)
		}
	}
}

func TestConfigQuirks(t *testing.T) {
	needQuirks(t)
	cfg := DefaultConfig()
	cfg.Interfaces.Internal = []string{"lan0"}
	cfg.ExternalAddress = ExternalAddressConfig{Source: SourceFixed, IP: "10.0.0.1"}
	cfg.Backend = BackendMemory
	cfg.Quirks = []string{"no-sutch"}
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "unknown quirk") {
		t.Errorf("unknown quirk: %v", err)
	}
	cfg.Quirks = nil
	cfg.Personality = "mikrotik"
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), `did you mean "mikrotik-chr-7.10"`) {
		t.Errorf("unknown personality: %v", err)
	}
	cfg.Personality = "pannaway-rg-210"
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "cannot be served") {
		t.Errorf("unservable personality: %v", err)
	}
	cfg.Personality = "mikrotik-chr-7.10"
	cfg.Quirks = []string{"table-full:2"}
	q, err := cfg.EffectiveQuirks()
	if err != nil || !q.PermanentOnly || q.TableFull != 2 {
		t.Errorf("personality and quirks together: %+v, %v", q, err)
	}
	c2, err := ParseConfig([]byte("quirks = [\"lease-402\"]\nquirks_on_public = true\npersonality = \"google-onhub\"\n"))
	if err != nil || !slices.Equal(c2.Quirks, []string{"lease-402"}) || !c2.QuirksOnPublic || c2.Personality != "google-onhub" {
		t.Errorf("from TOML: %+v, %v", c2, err)
	}
}

// A quirk is refused on a public external address, unless asked.
func TestQuirksRefusedOnPublic(t *testing.T) {
	needQuirks(t)
	cfg := DefaultConfig()
	cfg.ExternalAddress = ExternalAddressConfig{Source: SourceFixed, IP: "8.8.8.8"}
	cfg.Quirks = []string{"no-list"}
	d := &Daemon{cfg: cfg}
	err := d.setupQuirks()
	if err == nil || !strings.Contains(err.Error(), "quirks no-list are refused on a gateway whose external side has the public address 8.8.8.8") {
		t.Errorf("public: %v", err)
	}
	d = &Daemon{cfg: cfg}
	d.cfg.QuirksOnPublic = true
	if err := d.setupQuirks(); err != nil {
		t.Errorf("--quirks-on-public: %v", err)
	}
	d = &Daemon{cfg: cfg}
	d.cfg.ExternalAddress.IP = "203.0.113.1"
	if err := d.setupQuirks(); err != nil {
		t.Errorf("TEST-NET is not public: %v", err)
	}
}

// soapCall posts action with args through h and returns the status, the
// UPnP error code (0 for none) and the body.
// needQuirks skips a test of the router emulation in the router build
// (tag gatewayonly), which leaves it out.
func needQuirks(t *testing.T) {
	t.Helper()
	if !QuirksBuilt {
		t.Skip("the router build (tag gatewayonly) has no quirks or personalities")
	}
}

func soapCall(t *testing.T, h http.Handler, action string, args ...upnp.Arg) (int, int, string) {
	t.Helper()
	body := upnp.AppendEnvelope(nil, "urn:schemas-upnp-org:service:WANIPConnection:1", action, args)
	r := httpxtest.NewRequest(http.MethodPost, "/ctl/IPConn", strings.NewReader(string(body)))
	r.Header.Set("SOAPAction", `"urn:schemas-upnp-org:service:WANIPConnection:1#`+action+`"`)
	w := httpxtest.NewRecorder()
	h.ServeHTTP(w, r)
	code := 0
	if m := regexp.MustCompile(`<errorCode>(\d+)</errorCode>`).FindStringSubmatch(w.Body.String()); m != nil {
		code = atoi(m[1])
	}
	return w.Code, code, w.Body.String()
}

func atoi(s string) int {
	n := 0
	for _, c := range s {
		n = n*10 + int(c-'0')
	}
	return n
}

func TestQuirkHandler(t *testing.T) {
	needQuirks(t)
	passed := 0
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		passed++
		if _, _, _, err := upnp.ReadRequest(r, 0); err != nil {
			t.Errorf("the request reached the server unreadable: %v", err)
		}
		upnp.WriteFault(w, 714, "NoSuchEntryInArray")
	})
	add := func(proto, lease string) []upnp.Arg {
		return []upnp.Arg{{Name: "NewProtocol", Value: proto}, {Name: "NewLeaseDuration", Value: lease}}
	}
	for _, tc := range []struct {
		quirks, action string
		args           []upnp.Arg
		status, code   int
	}{
		{"permanent-only", "AddPortMapping", add("TCP", "3600"), 500, igd.CodeOnlyPermanentLeasesSupported},
		{"permanent-only", "AddPortMapping", add("TCP", "0"), 500, 714}, // passed on
		{"lease-402", "AddAnyPortMapping", add("UDP", "60"), 500, igd.CodeInvalidArgs},
		{"lease-402", "AddPortMapping", add("UDP", ""), 500, 714},
		{"upper-proto", "AddPortMapping", add("tcp", "0"), 500, igd.CodeInvalidArgs},
		{"upper-proto", "GetSpecificPortMappingEntry", []upnp.Arg{{Name: "NewProtocol", Value: "Udp"}}, 500, igd.CodeInvalidArgs},
		{"upper-proto", "AddPortMapping", add("TCP", "0"), 500, 714},
		{"no-list", "GetListOfPortMappings", nil, 500, igd.CodeInvalidAction},
		{"soap-500-no-body", "DeletePortMapping", nil, 500, 0},
		{"soap-500-no-body,permanent-only", "AddPortMapping", add("TCP", "1"), 500, 0},
	} {
		q, err := ParseQuirks([]string{tc.quirks})
		if err != nil {
			t.Fatal(err)
		}
		h := wrapQuirks(next, q, discardLogger(), newMetrics())
		status, code, body := soapCall(t, h, tc.action, tc.args...)
		if status != tc.status || code != tc.code {
			t.Errorf("%s %s: HTTP %d code %d, want %d %d\n%s", tc.quirks, tc.action, status, code, tc.status, tc.code, body)
		}
		if strings.Contains(tc.quirks, "soap-500-no-body") && body != "" {
			t.Errorf("%s: a body was sent: %q", tc.quirks, body)
		}
	}
	if passed == 0 {
		t.Error("nothing reached the server")
	}
	if _, wrapped := wrapQuirks(next, Quirks{}, discardLogger(), newMetrics()).(*quirkHandler); wrapped {
		t.Error("without quirks the server is not wrapped")
	}
}

// TestPersonalitiesMatchCorpus checks the personality table against the
// real descriptions it was derived from (shared/routers): every device
// has a personality, and every personality says what its description
// says.
func TestPersonalitiesMatchCorpus(t *testing.T) {
	descs := testenv.GlobShared(t, filepath.Join("routers", "*", "rootDesc.xml"))
	var slugs []string
	for _, path := range descs {
		slug := filepath.Base(filepath.Dir(path))
		slugs = append(slugs, slug)
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		i := slices.IndexFunc(Personalities, func(p Personality) bool { return p.Slug == slug })
		if i < 0 {
			t.Errorf("%s: a device of the corpus without a personality", slug)
			continue
		}
		p := Personalities[i]
		s := string(data)
		first := func(tag string) string {
			m := regexp.MustCompile(`(?s)<` + tag + `>(.*?)</` + tag + `>`).FindStringSubmatch(s)
			if m == nil {
				return ""
			}
			return strings.TrimSpace(m[1])
		}
		for _, f := range []struct{ name, got, want string }{
			{"friendlyName", p.FriendlyName, first("friendlyName")},
			{"manufacturer", p.Manufacturer, first("manufacturer")},
			{"modelName", p.ModelName, first("modelName")},
			{"modelNumber", p.ModelNumber, first("modelNumber")},
		} {
			if f.got != f.want {
				t.Errorf("%s: %s %q, the description says %q", slug, f.name, f.got, f.want)
			}
		}
		if dt := first("deviceType"); !strings.HasSuffix(dt, ":InternetGatewayDevice:"+string(rune('0'+p.IGD))) {
			t.Errorf("%s: IGD:%d, the description says %s", slug, p.IGD, dt)
		}
		var conn, ctl string
		for _, m := range regexp.MustCompile(`(?s)<service>(.*?)</service>`).FindAllStringSubmatch(s, -1) {
			st := regexp.MustCompile(`<serviceType>(.*?)</serviceType>`).FindStringSubmatch(m[1])
			if st != nil && (strings.Contains(st[1], "WANIPConnection") || strings.Contains(st[1], "WANPPPConnection")) {
				conn = st[1]
				if c := regexp.MustCompile(`(?s)<controlURL>(.*?)</controlURL>`).FindStringSubmatch(m[1]); c != nil {
					ctl = strings.TrimSpace(c[1])
				}
				break
			}
		}
		if conn != p.Connection || ctl != p.Control {
			t.Errorf("%s: connection %q at %q, the description has %q at %q", slug, p.Connection, p.Control, conn, ctl)
		}
		if (conn == "" || !strings.HasPrefix(conn, "urn:schemas-upnp-org:")) != (p.Unservable != "") {
			t.Errorf("%s: unservable %q, but its connection service is %q", slug, p.Unservable, conn)
		}
		for _, q := range p.Quirks {
			if _, err := ParseQuirks([]string{q}); err != nil {
				t.Errorf("%s: %v", slug, err)
			}
		}
	}
	for _, p := range Personalities {
		if !slices.Contains(slugs, p.Slug) {
			t.Errorf("personality %s has no description in the corpus", p.Slug)
		}
	}
}
