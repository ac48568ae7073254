package ssdp

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// crlf turns the readable "\n" of a test message into the "\r\n" of the wire.
func crlf(s string) string { return strings.ReplaceAll(s, "\n", "\r\n") }

const miniupnpdReply = `HTTP/1.1 200 OK
CACHE-CONTROL: max-age=120
ST: urn:schemas-upnp-org:device:InternetGatewayDevice:1
USN: uuid:85cf6c3a-62cc-4535-b4ce-0b3ca5a24e2b::urn:schemas-upnp-org:device:InternetGatewayDevice:1
EXT:
SERVER: Debian/12 UPnP/1.1 MiniUPnPd/2.3.1
LOCATION: http://10.77.0.1:5000/rootDesc.xml
BOOTID.UPNP.ORG: 17
CONFIGID.UPNP.ORG: 1337

`

var miniupnpdWant = Response{
	Location: "http://10.77.0.1:5000/rootDesc.xml",
	ST:       STIGDv1,
	USN:      "uuid:85cf6c3a-62cc-4535-b4ce-0b3ca5a24e2b::" + STIGDv1,
	Server:   "Debian/12 UPnP/1.1 MiniUPnPd/2.3.1",
	MaxAge:   120 * time.Second,
	BootID:   17,
	ConfigID: 1337,
}

func TestParseResponseTolerates(t *testing.T) {
	// with returns miniupnpdWant changed by f.
	with := func(f func(*Response)) Response {
		r := miniupnpdWant
		f(&r)
		return r
	}
	tests := []struct {
		name string
		in   string
		want Response
	}{
		{"CRLF as on the wire", crlf(miniupnpdReply), miniupnpdWant},
		{"LF-only lines", miniupnpdReply, miniupnpdWant},
		{"no final blank line", strings.TrimSuffix(crlf(miniupnpdReply), "\r\n"), miniupnpdWant},
		{"no line end at all after the last header", strings.TrimRight(crlf(miniupnpdReply), "\r\n"), miniupnpdWant},
		{"blank lines and spaces before the status line", "\r\n  \r\n  " + crlf(miniupnpdReply), miniupnpdWant},
		{"header names in any case", strings.NewReplacer("LOCATION:", "Location:", "ST:", "st:", "CACHE-CONTROL", "Cache-Control").Replace(miniupnpdReply), miniupnpdWant},
		{"blanks around the colon and indented headers", strings.NewReplacer("LOCATION: ", "  LOCATION  :   ", "ST: ", "\tST:\t").Replace(miniupnpdReply), miniupnpdWant},
		{"HTTP/1.0 and no reason phrase", strings.Replace(miniupnpdReply, "HTTP/1.1 200 OK", "HTTP/1.0 200", 1), miniupnpdWant},
		{
			"max-age with blanks around =, as some devices send it",
			strings.Replace(miniupnpdReply, "max-age=120", "max-age = 1800", 1),
			with(func(r *Response) { r.MaxAge = 1800 * time.Second }),
		},
		{
			"max-age among other directives, quoted",
			strings.Replace(miniupnpdReply, "max-age=120", `no-cache="Ext", MAX-AGE="60"`, 1),
			with(func(r *Response) { r.MaxAge = 60 * time.Second }),
		},
		{
			"no CACHE-CONTROL means MaxAge 0",
			strings.Replace(miniupnpdReply, "CACHE-CONTROL: max-age=120\n", "", 1),
			with(func(r *Response) { r.MaxAge = 0 }),
		},
		{
			"unusable max-age means MaxAge 0",
			strings.Replace(miniupnpdReply, "max-age=120", "max-age=-5", 1),
			with(func(r *Response) { r.MaxAge = 0 }),
		},
		{
			"empty SERVER (Sagemcom)",
			strings.Replace(miniupnpdReply, "SERVER: Debian/12 UPnP/1.1 MiniUPnPd/2.3.1", "SERVER: ", 1),
			with(func(r *Response) { r.Server = "" }),
		},
		{
			"comma-separated SERVER tokens (Portable SDK)",
			strings.Replace(miniupnpdReply, "Debian/12 UPnP/1.1 MiniUPnPd/2.3.1", "Linux/4.4.240, UPnP/1.0, Portable SDK for UPnP devices/1.12.1", 1),
			with(func(r *Response) { r.Server = "Linux/4.4.240, UPnP/1.0, Portable SDK for UPnP devices/1.12.1" }),
		},
		{
			"extra and vendor headers",
			strings.Replace(miniupnpdReply, "EXT:\n", "EXT:\nOPT: \"http://schemas.upnp.org/upnp/1/0/\"; ns=01\n01-NLS: 1\nX-User-Agent: redsonic\nDATE: Fri, 25 Nov 2022 07:04:37 GMT\n", 1),
			miniupnpdWant,
		},
		{
			"no USN, no BOOTID, no CONFIGID",
			strings.NewReplacer("USN: uuid:85cf6c3a-62cc-4535-b4ce-0b3ca5a24e2b::urn:schemas-upnp-org:device:InternetGatewayDevice:1\n", "", "BOOTID.UPNP.ORG: 17\n", "", "CONFIGID.UPNP.ORG: 1337\n", "").Replace(miniupnpdReply),
			with(func(r *Response) { r.USN, r.BootID, r.ConfigID = "", 0, 0 }),
		},
		{
			"a repeated header keeps its first value",
			strings.Replace(miniupnpdReply, "EXT:\n", "EXT:\nST: urn:schemas-upnp-org:service:WANIPConnection:1\n", 1),
			miniupnpdWant,
		},
		{
			"bytes after the blank line are ignored",
			miniupnpdReply + "\x00\x01garbage",
			miniupnpdWant,
		},
		{
			"scheme in upper case",
			strings.Replace(miniupnpdReply, "http://", "HTTP://", 1),
			with(func(r *Response) { r.Location = "HTTP://10.77.0.1:5000/rootDesc.xml" }),
		},
		{
			"NOTIFY ssdp:alive, NT read as ST",
			crlf(`NOTIFY * HTTP/1.1
HOST: 239.255.255.250:1900
CACHE-CONTROL: max-age=1800
LOCATION: http://192.168.1.1:5000/rootDesc.xml
NT: urn:schemas-upnp-org:service:WANIPConnection:2
NTS: ssdp:alive
SERVER: Linux/6 UPnP/1.1 portfwd/0.1
USN: uuid:abc::urn:schemas-upnp-org:service:WANIPConnection:2
BOOTID.UPNP.ORG: 3

`),
			Response{
				Location: "http://192.168.1.1:5000/rootDesc.xml",
				ST:       STWANIPConnectionv2,
				USN:      "uuid:abc::" + STWANIPConnectionv2,
				Server:   "Linux/6 UPnP/1.1 portfwd/0.1",
				MaxAge:   1800 * time.Second,
				BootID:   3,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseResponse([]byte(tt.in))
			if err != nil {
				t.Fatalf("ParseResponse: %v\ninput:\n%q", err, tt.in)
			}
			if got != tt.want {
				t.Errorf("ParseResponse =\n%+v\nwant\n%+v", got, tt.want)
			}
		})
	}
}

func TestParseResponseRejects(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		is      error  // errors.Is target, or nil
		mention string // substring the error must hold, to be actionable
	}{
		{"empty datagram", "", ErrNotSSDP, "empty"},
		{"only blanks", " \r\n\r\n", ErrNotSSDP, "empty"},
		{"binary garbage", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", ErrNotSSDP, "control character"},
		{"not HTTP", "hello world\r\n\r\n", ErrNotSSDP, "neither a request nor a status line"},
		{"HTTP/2 status line", strings.Replace(miniupnpdReply, "HTTP/1.1", "HTTP/2", 1), ErrNotSSDP, "version"},
		{"status code not a number", strings.Replace(miniupnpdReply, "200 OK", "2x0 OK", 1), ErrNotSSDP, "status code"},
		{"header line without colon", strings.Replace(miniupnpdReply, "EXT:", "EXT", 1), ErrNotSSDP, "no colon"},
		{"header with a blank name", strings.Replace(miniupnpdReply, "EXT:", ": x", 1), ErrNotSSDP, "invalid name"},
		{"header name with a space", strings.Replace(miniupnpdReply, "EXT:", "E XT:", 1), ErrNotSSDP, "invalid name"},
		{"NUL in a header", strings.Replace(miniupnpdReply, "EXT:", "EXT:\x00", 1), ErrNotSSDP, "control character"},
		{"bare CR inside a header", strings.Replace(miniupnpdReply, "SERVER: Debian", "SERVER: De\rbian", 1), ErrNotSSDP, "control character"},
		{"status other than 200", strings.Replace(miniupnpdReply, "200 OK", "404 Not Found", 1), nil, "404"},
		{"M-SEARCH request", crlf("M-SEARCH * HTTP/1.1\nHOST: 239.255.255.250:1900\nMAN: \"ssdp:discover\"\nMX: 1\nST: ssdp:all\n\n"), nil, "M-SEARCH"},
		{"no ST", strings.Replace(miniupnpdReply, "ST: urn:schemas-upnp-org:device:InternetGatewayDevice:1\n", "", 1), nil, "no ST"},
		{"empty ST", strings.Replace(miniupnpdReply, "ST: urn:schemas-upnp-org:device:InternetGatewayDevice:1", "ST:  ", 1), nil, "no ST"},
		{"no LOCATION", strings.Replace(miniupnpdReply, "LOCATION: http://10.77.0.1:5000/rootDesc.xml\n", "", 1), nil, "no LOCATION"},
		{"relative LOCATION", strings.Replace(miniupnpdReply, "http://10.77.0.1:5000/rootDesc.xml", "/rootDesc.xml", 1), nil, "absolute http://"},
		{"https LOCATION", strings.Replace(miniupnpdReply, "http://", "https://", 1), nil, "absolute http://"},
		{"LOCATION without host", strings.Replace(miniupnpdReply, "http://10.77.0.1:5000/rootDesc.xml", "http:///rootDesc.xml", 1), nil, "absolute http://"},
		{"LOCATION with an upstream template left in", strings.Replace(miniupnpdReply, "10.77.0.1:5000", "{{listenAddr}}", 1), nil, "LOCATION"},
		{"NOTIFY byebye", crlf("NOTIFY * HTTP/1.1\nHOST: 239.255.255.250:1900\nNT: upnp:rootdevice\nNTS: ssdp:byebye\nUSN: uuid:abc::upnp:rootdevice\n\n"), ErrByeBye, "uuid:abc::upnp:rootdevice"},
		{"NOTIFY update", crlf("NOTIFY * HTTP/1.1\nNT: upnp:rootdevice\nNTS: ssdp:update\nLOCATION: http://h/\n\n"), nil, "ssdp:update"},
		{"NOTIFY without NT", crlf("NOTIFY * HTTP/1.1\nNTS: ssdp:alive\nLOCATION: http://h/\n\n"), nil, "no NT"},
		{"other request", crlf("SUBSCRIBE /evt HTTP/1.1\nHOST: h\n\n"), nil, "SUBSCRIBE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := ParseResponse([]byte(tt.in))
			if err == nil {
				t.Fatalf("ParseResponse = %+v, want an error", r)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("error %q does not wrap %q", err, tt.is)
			}
			if !strings.Contains(err.Error(), tt.mention) {
				t.Errorf("error %q does not mention %q", err, tt.mention)
			}
		})
	}
}

func TestParseMessage(t *testing.T) {
	m, err := ParseMessage([]byte("NOTIFY * HTTP/1.1\r\nHost: 239.255.255.250:1900\r\nnts: ssdp:alive\r\n\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	if m.Method != MethodNotify || m.Target != "*" || m.StatusCode != 0 {
		t.Errorf("start line parsed as %q %q %d, want NOTIFY * 0", m.Method, m.Target, m.StatusCode)
	}
	if _, ok := m.Header["HOST"]; !ok {
		t.Errorf("Header keys %v are not upper-cased", m.Header)
	}
	if got := m.Get("Nts"); got != NTSAlive {
		t.Errorf("Get(Nts) = %q, want %q", got, NTSAlive)
	}

	m, err = ParseMessage([]byte("HTTP/1.1 503 Service Unavailable\n"))
	if err != nil {
		t.Fatal(err)
	}
	if m.Method != "" || m.StatusCode != 503 || m.Reason != "Service Unavailable" {
		t.Errorf("status line parsed as %q %d %q", m.Method, m.StatusCode, m.Reason)
	}
}

func TestParseSearch(t *testing.T) {
	const base = "M-SEARCH * HTTP/1.1\nHOST: 239.255.255.250:1900\nMAN: \"ssdp:discover\"\nMX: 2\nST: urn:schemas-upnp-org:device:InternetGatewayDevice:1\n\n"
	tests := []struct {
		name    string
		in      string
		st      string
		mx      int
		mention string // non-empty: an error holding this is expected
	}{
		{"as miniupnpc sends it", crlf(base), STIGDv1, 2, ""},
		{"LF only, lower-case names", strings.NewReplacer("MX:", "mx:", "ST:", "st:").Replace(base), STIGDv1, 2, ""},
		{"MAN unquoted", strings.Replace(base, `"ssdp:discover"`, "ssdp:discover", 1), STIGDv1, 2, ""},
		{"no MX (unicast search)", strings.Replace(base, "MX: 2\n", "", 1), STIGDv1, 0, ""},
		{"MX above 5 is passed on for the caller to cap", strings.Replace(base, "MX: 2", "MX: 120", 1), STIGDv1, 120, ""},
		{"ssdp:all", strings.Replace(base, STIGDv1, STAll, 1), STAll, 2, ""},
		{"MX not a number", strings.Replace(base, "MX: 2", "MX: two", 1), "", 0, "MX"},
		{"negative MX", strings.Replace(base, "MX: 2", "MX: -1", 1), "", 0, "MX"},
		{"no MAN", strings.Replace(base, "MAN: \"ssdp:discover\"\n", "", 1), "", 0, "MAN"},
		{"wrong MAN", strings.Replace(base, "ssdp:discover", "ssdp:alive", 1), "", 0, "MAN"},
		{"no ST", strings.Replace(base, "ST: urn:schemas-upnp-org:device:InternetGatewayDevice:1\n", "", 1), "", 0, "no ST"},
		{"request-URI not *", strings.Replace(base, "M-SEARCH *", "M-SEARCH /", 1), "", 0, "request-URI"},
		{"a response", crlf(miniupnpdReply), "", 0, "response"},
		{"a NOTIFY", crlf("NOTIFY * HTTP/1.1\nNT: upnp:rootdevice\nNTS: ssdp:alive\n\n"), "", 0, "NOTIFY"},
		{"garbage", "\x00\x01\x02", "", 0, "not an SSDP message"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, mx, err := ParseSearch([]byte(tt.in))
			if tt.mention != "" {
				if err == nil || !strings.Contains(err.Error(), tt.mention) {
					t.Fatalf("ParseSearch = %q, %d, %v; want an error mentioning %q", st, mx, err, tt.mention)
				}
				return
			}
			if err != nil || st != tt.st || mx != tt.mx {
				t.Errorf("ParseSearch = %q, %d, %v; want %q, %d, nil", st, mx, err, tt.st, tt.mx)
			}
		})
	}
}

func TestAppendSearch(t *testing.T) {
	prefix := []byte("kept")
	b := AppendSearch(prefix, STIGDv2, 3, "")
	if !strings.HasPrefix(string(b), "kept") {
		t.Fatalf("AppendSearch did not append to dst: %q", b)
	}
	b = b[len(prefix):]
	if !strings.HasSuffix(string(b), "\r\n\r\n") || strings.Contains(strings.ReplaceAll(string(b), "\r\n", ""), "\n") {
		t.Errorf("AppendSearch = %q, want CRLF lines ending in a blank line", b)
	}
	m, err := ParseMessage(b)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"HOST":       "239.255.255.250:1900",
		"MAN":        `"ssdp:discover"`,
		"MX":         "3",
		"ST":         STIGDv2,
		"USER-AGENT": userAgent,
	}
	for k, v := range want {
		if m.Header[k] != v {
			t.Errorf("header %s = %q, want %q", k, m.Header[k], v)
		}
	}
	if !strings.Contains(m.Header["USER-AGENT"], "portfwd") {
		t.Errorf("USER-AGENT %q does not name portfwd", m.Header["USER-AGENT"])
	}

	// Unicast: HOST names the destination and MX may be left out.
	m, err = ParseMessage(AppendSearch(nil, STAll, 0, "192.0.2.1:1900"))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := m.Header["MX"]; ok || m.Header["HOST"] != "192.0.2.1:1900" {
		t.Errorf("unicast search headers = %v, want HOST 192.0.2.1:1900 and no MX", m.Header)
	}

	// A line break in a caller's string must not split the message.
	b = AppendSearch(nil, "ssdp:all\r\nMAN: \"evil\"\r\n\r\nX", 1, "")
	st, _, err := ParseSearch(b)
	if err != nil || st != `ssdp:allMAN: "evil"X` {
		t.Errorf("ParseSearch(AppendSearch(st with CRLF)) = %q, %v; want the line breaks dropped", st, err)
	}
}

func TestResponseRoundTrip(t *testing.T) {
	in := miniupnpdWant
	got, err := ParseResponse(AppendResponse(nil, in))
	if err != nil || got != in {
		t.Errorf("ParseResponse(AppendResponse(r)) = %+v, %v; want %+v", got, err, in)
	}
	m, _ := ParseMessage(AppendResponse(nil, in))
	if _, ok := m.Header["EXT"]; !ok {
		t.Errorf("response has no EXT header, which UDA requires: %v", m.Header)
	}

	got, err = ParseResponse(AppendNotify(nil, in, NTSAlive, ""))
	if err != nil || got != in {
		t.Errorf("ParseResponse(AppendNotify(alive)) = %+v, %v; want %+v", got, err, in)
	}
	m, _ = ParseMessage(AppendNotify(nil, in, NTSAlive, "239.255.255.250:1901"))
	if m.Method != MethodNotify || m.Get("NTS") != NTSAlive || m.Get("NT") != in.ST || m.Get("HOST") != "239.255.255.250:1901" {
		t.Errorf("alive NOTIFY = %+v", m)
	}

	bye := AppendNotify(nil, in, NTSByeBye, "")
	if _, err := ParseResponse(bye); !errors.Is(err, ErrByeBye) {
		t.Errorf("ParseResponse(byebye) error = %v, want ErrByeBye", err)
	}
	m, _ = ParseMessage(bye)
	for _, h := range []string{"LOCATION", "SERVER", "CACHE-CONTROL"} {
		if _, ok := m.Header[h]; ok {
			t.Errorf("byebye carries %s, which UDA leaves out", h)
		}
	}
	if m.Get("USN") != in.USN || m.Get("NT") != in.ST {
		t.Errorf("byebye NT/USN = %q/%q, want %q/%q", m.Get("NT"), m.Get("USN"), in.ST, in.USN)
	}
}

// An IPv6 search names its group in HOST as a bracketed literal, and the
// families select which searches go out.
func TestSearchHost6(t *testing.T) {
	if got := searchHost6(LinkLocalGroup6); got != "[FF02::C]:1900" {
		t.Errorf("link-local HOST = %q", got)
	}
	if got := searchHost6(SiteLocalGroup6); got != "[FF05::C]:1900" {
		t.Errorf("site-local HOST = %q", got)
	}
	msg := string(AppendSearch(nil, STIGDv2, 2, searchHost6(LinkLocalGroup6)))
	if !strings.Contains(msg, "\r\nHOST: [FF02::C]:1900\r\n") {
		t.Errorf("M-SEARCH over IPv6:\n%s", msg)
	}
	for f, want := range map[Family][2]bool{BothFamilies: {true, true}, IPv4Only: {true, false}, IPv6Only: {false, true}} {
		if f.v4() != want[0] || f.v6() != want[1] {
			t.Errorf("Family %d: v4 %v v6 %v", f, f.v4(), f.v6())
		}
	}
}
