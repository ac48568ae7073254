package upnp

import (
	"bufio"
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	http "github.com/portfwd/portfwd/internal/httpx"
	"github.com/portfwd/portfwd/internal/httpx/httpxtest"

	"github.com/portfwd/portfwd/internal/testenv"
)

// readHTTPResponse reads a captured HTTP response and returns its status
// and body.
func readHTTPResponse(t testing.TB, path string) (int, []byte) {
	t.Helper()
	raw := readShared(t, path)
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(raw)), nil)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return resp.StatusCode, body
}

// envelopeGolden describes what ParseEnvelope must make of one real
// response: either a name and arguments, or a UPnPError. Values were read
// off the files by hand.
type envelopeGolden struct {
	file string
	name string
	args Args
	code int // non-zero: a fault with this code
	desc string
}

var soapGolden = []envelopeGolden{
	// miniupnpd 2.3.1, natlab captures (HTTP responses with headers).
	{file: capturesDir + "/soap_AddPortMapping_response.txt", name: "AddPortMappingResponse"},
	{file: capturesDir + "/soap_DeletePortMapping_response.txt", name: "DeletePortMappingResponse"},
	{file: capturesDir + "/soap_GetCommonLinkProperties_response.txt", name: "GetCommonLinkPropertiesResponse", args: Args{
		{"NewWANAccessType", "Cable"},
		{"NewLayer1UpstreamMaxBitRate", "1410065408"},
		{"NewLayer1DownstreamMaxBitRate", "1410065408"},
		{"NewPhysicalLinkStatus", "Up"},
	}},
	{file: capturesDir + "/soap_GetConnectionTypeInfo_response.txt", name: "GetConnectionTypeInfoResponse", args: Args{
		{"NewConnectionType", "IP_Routed"},
		{"NewPossibleConnectionTypes", "IP_Routed"},
	}},
	{file: capturesDir + "/soap_GetExternalIPAddress_response.txt", name: "GetExternalIPAddressResponse", args: Args{
		{"NewExternalIPAddress", "203.0.113.1"},
	}},
	{file: capturesDir + "/soap_GetGenericPortMappingEntry_response.txt", name: "GetGenericPortMappingEntryResponse", args: Args{
		{"NewRemoteHost", ""},
		{"NewExternalPort", "18080"},
		{"NewProtocol", "TCP"},
		{"NewInternalPort", "8080"},
		{"NewInternalClient", "10.77.0.2"},
		{"NewEnabled", "1"},
		{"NewPortMappingDescription", "natlab-capture"},
		{"NewLeaseDuration", "604798"},
	}},
	{file: capturesDir + "/soap_GetSpecificPortMappingEntry_response.txt", name: "GetSpecificPortMappingEntryResponse", args: Args{
		{"NewInternalPort", "8080"},
		{"NewInternalClient", "10.77.0.2"},
		{"NewEnabled", "1"},
		{"NewPortMappingDescription", "natlab-capture"},
		{"NewLeaseDuration", "604800"},
	}},
	{file: capturesDir + "/soap_GetStatusInfo_response.txt", name: "GetStatusInfoResponse", args: Args{
		{"NewConnectionStatus", "Connected"},
		{"NewLastConnectionError", "ERROR_NONE"},
		{"NewUptime", "2126"},
	}},

	// Router corpus (bodies only). m: prefix on Broadcom stacks.
	{file: routersDir + "/actiontec-gt784wn/soap-GetExternalIPAddress.xml", name: "GetExternalIPAddressResponse", args: Args{
		{"NewExternalIPAddress", "11.222.33.111"},
	}},
	{file: routersDir + "/actiontec-gt784wn/soap-GetGenericPortMappingEntry.xml", name: "GetGenericPortMappingEntryResponse", args: Args{
		{"NewRemoteHost", ""},
		{"NewExternalPort", "3658"},
		{"NewProtocol", "UDP"},
		{"NewInternalPort", "3658"},
		{"NewInternalClient", "192.168.0.10"},
		{"NewEnabled", "1"},
		{"NewPortMappingDescription", "192.168.0.10:3658 to 3658 (UDP)"},
		{"NewLeaseDuration", "0"},
	}},
	{file: routersDir + "/actiontec-gt784wn/soap-GetGenericPortMappingEntry-2.xml", name: "Fault", code: 713, desc: "SpecifiedArrayIndexInvalid"},
	// Indented, no XML declaration, un-namespaced arguments.
	{file: routersDir + "/asus-rt-n16-ddwrt/soap-GetNATRSIPStatus.xml", name: "GetNATRSIPStatusResponse", args: Args{
		{"NewRSIPAvailable", "0"},
		{"NewNATEnabled", "1"},
	}},
	{file: routersDir + "/ddwrt-generic-x86/soap-GetExternalIPAddress.xml", name: "GetExternalIPAddressResponse", args: Args{
		{"NewExternalIPAddress", "11.222.33.111"},
	}},
	{file: routersDir + "/ddwrt-generic-x86/soap-GetGenericPortMappingEntry.xml", name: "Fault", code: 713, desc: "SpecifiedArrayIndexInvalid"},
	{file: routersDir + "/tplink-tl-wr841nd-v9-ddwrt/soap-AddPortMapping.xml", name: "AddPortMappingResponse"},
	{file: routersDir + "/tplink-tl-wr841nd-v9-ddwrt/soap-DeletePortMapping.xml", name: "DeletePortMappingResponse"},
	{file: routersDir + "/tplink-tl-wr841nd-v9-ddwrt/soap-GetExternalIPAddress.xml", name: "GetExternalIPAddressResponse", args: Args{
		{"NewExternalIPAddress", "1.2.3.4"},
	}},
	// Out-of-range index answered with 402, not 713.
	{file: routersDir + "/tplink-tl-wr841nd-v9-ddwrt/soap-GetGenericPortMappingEntry.xml", name: "Fault", code: 402, desc: "Invalid Argument"},
	{file: routersDir + "/tplink-tl-wr841nd-v9-ddwrt/soap-GetSpecificPortMappingEntry.xml", name: "Fault", code: 402, desc: "Invalid Argument"},
	// SOAP: prefix with xsd/xsi namespaces.
	{file: routersDir + "/_partial/soap-fault-402-invalid-args/soap-AddPortMapping-fault-402.xml", name: "Fault", code: 402, desc: "Invalid Args"},
	// SOAP-ENV: prefix.
	{file: routersDir + "/_partial/tplink-tl-wr940n/soap-GetExternalIPAddress.xml", name: "GetExternalIPAddressResponse", args: Args{
		{"NewExternalIPAddress", "100.100.100.100"},
	}},
}

func envelopeBody(t testing.TB, file string) []byte {
	t.Helper()
	if strings.HasSuffix(file, ".txt") {
		_, body := readHTTPResponse(t, file)
		return body
	}
	return readShared(t, file)
}

func TestParseEnvelopeCorpus(t *testing.T) {
	for _, tc := range soapGolden {
		t.Run(filepath.Base(filepath.Dir(tc.file))+"/"+filepath.Base(tc.file), func(t *testing.T) {
			name, args, err := ParseEnvelope(envelopeBody(t, tc.file))
			if name != tc.name {
				t.Errorf("name = %q, want %q", name, tc.name)
			}
			if tc.code != 0 {
				var ue *Error
				if !errors.As(err, &ue) {
					t.Fatalf("error %v, want *Error", err)
				}
				if ue.Code != tc.code || ue.Description != tc.desc {
					t.Errorf("fault %d %q, want %d %q", ue.Code, ue.Description, tc.code, tc.desc)
				}
				if ErrorCode(fmt.Errorf("wrapped: %w", err)) != tc.code {
					t.Errorf("ErrorCode does not see through wrapping")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(args, tc.args) {
				t.Errorf("args\n got %q\nwant %q", args, tc.args)
			}
		})
	}
}

// TestParseEnvelopeEveryFixture guards against a SOAP fixture added to the
// corpus without a golden row.
func TestParseEnvelopeEveryFixture(t *testing.T) {
	var files []string
	for _, g := range []string{
		"routers/*/soap-*.xml",
		"routers/_partial/*/soap-*.xml",
		"natlab/captures/soap_*_response.txt",
	} {
		files = append(files, testenv.GlobShared(t, g)...)
	}
	known := map[string]bool{}
	for _, tc := range soapGolden {
		known[filepath.Clean(tc.file)] = true
	}
	for _, f := range files {
		if !known[filepath.Clean(f)] {
			t.Errorf("%s has no row in soapGolden", f)
		}
	}
}

func TestParseEnvelopeEdgeCases(t *testing.T) {
	const env = `<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>%s</s:Body></s:Envelope>`
	tests := []struct {
		name     string
		doc      string
		wantName string
		wantArgs Args
		wantErr  string // substring; "" means success
		wantCode int
	}{
		{
			name:     "no namespace at all",
			doc:      `<Envelope><Body><XResponse><A>1</A></XResponse></Body></Envelope>`,
			wantName: "XResponse", wantArgs: Args{{"A", "1"}},
		},
		{
			name:     "header before body",
			doc:      `<s:Envelope xmlns:s="x"><s:Header><h:T xmlns:h="y"><V>no</V></h:T></s:Header><s:Body><u:XResponse xmlns:u="z"><A>1</A></u:XResponse></s:Body></s:Envelope>`,
			wantName: "XResponse", wantArgs: Args{{"A", "1"}},
		},
		{
			name:     "only the first element of Body",
			doc:      fmt.Sprintf(env, `<u:XResponse xmlns:u="z"><A>1</A></u:XResponse><u:Other xmlns:u="z"><B>2</B></u:Other>`),
			wantName: "XResponse", wantArgs: Args{{"A", "1"}},
		},
		{
			name:     "nested elements inside an argument are skipped",
			doc:      fmt.Sprintf(env, `<u:XResponse xmlns:u="z"><A>x<i>inner</i>y</A><B>2</B></u:XResponse>`),
			wantName: "XResponse", wantArgs: Args{{"A", "xy"}, {"B", "2"}},
		},
		{
			name:     "escaped XML document as a value",
			doc:      fmt.Sprintf(env, `<u:GetListOfPortMappingsResponse xmlns:u="z"><NewPortListing>&lt;p:PortMappingList&gt;&lt;/p:PortMappingList&gt;</NewPortListing></u:GetListOfPortMappingsResponse>`),
			wantName: "GetListOfPortMappingsResponse", wantArgs: Args{{"NewPortListing", "<p:PortMappingList></p:PortMappingList>"}},
		},
		{
			name:     "CDATA and whitespace around values",
			doc:      fmt.Sprintf(env, "<u:XResponse xmlns:u=\"z\">\r\n <A>\r\n  <![CDATA[a<b]]>  \r\n</A></u:XResponse>"),
			wantName: "XResponse", wantArgs: Args{{"A", "a<b"}},
		},
		{
			name:     "latin-1 description",
			doc:      `<?xml version="1.0" encoding="ISO-8859-1"?>` + fmt.Sprintf(env, "<u:XResponse xmlns:u=\"z\"><D>M\xfcller</D></u:XResponse>"),
			wantName: "XResponse", wantArgs: Args{{"D", "Müller"}},
		},
		{
			name:     "undeclared latin-1",
			doc:      fmt.Sprintf(env, "<u:XResponse xmlns:u=\"z\"><D>M\xfcller</D></u:XResponse>"),
			wantName: "XResponse", wantArgs: Args{{"D", "Müller"}},
		},
		{
			name:     "fault code with whitespace",
			doc:      fmt.Sprintf(env, "<s:Fault><detail><UPnPError><errorCode>\n 718 \n</errorCode><errorDescription> ConflictInMappingEntry </errorDescription></UPnPError></detail></s:Fault>"),
			wantName: "Fault", wantCode: 718, wantErr: "718",
		},
		{
			name:     "fault code split by a comment",
			doc:      fmt.Sprintf(env, "<s:Fault><detail><UPnPError><errorCode>7<!-- -->13</errorCode></UPnPError></detail></s:Fault>"),
			wantName: "Fault", wantCode: 713, wantErr: "713",
		},
		{
			name:     "fault followed by a sibling",
			doc:      fmt.Sprintf(env, "<s:Fault><detail><UPnPError><errorCode>501</errorCode></UPnPError></detail></s:Fault><X><errorCode>1</errorCode></X>"),
			wantName: "Fault", wantCode: 501, wantErr: "501",
		},
		{
			name:     "fault without UPnPError",
			doc:      fmt.Sprintf(env, "<s:Fault><faultcode>s:Server</faultcode><faultstring>Invalid Action</faultstring></s:Fault>"),
			wantName: "Fault", wantErr: `"Invalid Action" without a UPnPError code`,
		},
		{
			name:    "non-numeric fault code",
			doc:     fmt.Sprintf(env, "<s:Fault><detail><UPnPError><errorCode>7x3</errorCode></UPnPError></detail></s:Fault>"),
			wantErr: "non-numeric errorCode",
		},
		{name: "no body", doc: `<s:Envelope xmlns:s="x"></s:Envelope>`, wantErr: "no element inside its Body"},
		{name: "empty body", doc: fmt.Sprintf(env, "  "), wantErr: "no element inside its Body"},
		{name: "not XML", doc: "HTTP/1.1 500 Internal Server Error", wantErr: "no element inside its Body"},
		{name: "empty", doc: "", wantErr: "no element inside its Body"},
		{name: "truncated", doc: `<s:Envelope xmlns:s="x"><s:Body><u:XResponse><A>1`, wantErr: "malformed"},
		{name: "DTD entities", doc: `<!DOCTYPE Envelope [<!ENTITY a "b">]><Envelope><Body><X><A>&a;</A></X></Body></Envelope>`, wantErr: "DTD entities"},
		{name: "end tag before any start", doc: `</A><Envelope><Body><X/></Body></Envelope>`, wantErr: "malformed"},
		{
			// Non-strict decoding closes <A> at the wrong end tag, as
			// browsers do, rather than losing the whole answer.
			name:     "mismatched end tag forgiven",
			doc:      fmt.Sprintf(env, "<u:XResponse><A>1</B></u:XResponse>"),
			wantName: "XResponse", wantArgs: Args{{"A", "1"}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			name, args, err := ParseEnvelope([]byte(tc.doc))
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
			} else if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
			}
			if got := ErrorCode(err); got != tc.wantCode {
				t.Errorf("ErrorCode = %d, want %d", got, tc.wantCode)
			}
			if name != tc.wantName {
				t.Errorf("name %q, want %q", name, tc.wantName)
			}
			if !reflect.DeepEqual(args, tc.wantArgs) {
				t.Errorf("args %q, want %q", args, tc.wantArgs)
			}
		})
	}
}

func TestParseEnvelopeManyArgs(t *testing.T) {
	var b strings.Builder
	b.WriteString(`<Envelope><Body><XResponse>`)
	for i := range 1000 {
		fmt.Fprintf(&b, "<A%d>%d</A%d>", i, i, i)
	}
	b.WriteString(`</XResponse></Body></Envelope>`)
	_, args, err := ParseEnvelope([]byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	if len(args) != maxArgs || args[maxArgs-1].Name != fmt.Sprintf("A%d", maxArgs-1) {
		t.Errorf("kept %d arguments, want the first %d", len(args), maxArgs)
	}
}

// xmlShape reduces a document to what a SOAP peer sees: namespace-resolved
// element names, attributes other than namespace declarations, and
// non-blank text.
func xmlShape(t *testing.T, doc []byte) []string {
	t.Helper()
	d := xml.NewDecoder(bytes.NewReader(doc))
	var out []string
	for {
		tok, err := d.Token()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("%v in %s", err, doc)
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			s := "<" + tok.Name.Space + " " + tok.Name.Local
			for _, a := range tok.Attr {
				if a.Name.Space != "xmlns" && a.Name.Local != "xmlns" {
					s += " " + a.Name.Space + ":" + a.Name.Local + "=" + a.Value
				}
			}
			out = append(out, s+">")
		case xml.EndElement:
			out = append(out, "</"+tok.Name.Local+">")
		case xml.CharData:
			if s := strings.TrimSpace(string(tok)); s != "" {
				out = append(out, s)
			}
		}
	}
}

func TestAppendEnvelopeMatchesCapture(t *testing.T) {
	raw := readShared(t, filepath.Join(capturesDir, "soap_AddPortMapping_request.txt"))
	req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(raw)))
	if err != nil {
		t.Fatal(err)
	}
	want, err := io.ReadAll(req.Body)
	if err != nil {
		t.Fatal(err)
	}
	got := AppendEnvelope(nil, wanIP2, "AddPortMapping", []Arg{
		{"NewRemoteHost", ""},
		{"NewExternalPort", "18080"},
		{"NewProtocol", "TCP"},
		{"NewInternalPort", "8080"},
		{"NewInternalClient", "10.77.0.2"},
		{"NewEnabled", "1"},
		{"NewPortMappingDescription", "natlab-capture"},
		{"NewLeaseDuration", "0"},
	})
	if g, w := xmlShape(t, got), xmlShape(t, want); !reflect.DeepEqual(g, w) {
		t.Errorf("AppendEnvelope differs from what miniupnpc sent:\n got %q\nwant %q", g, w)
	}
	if !bytes.HasPrefix(got, []byte(`<?xml version="1.0"?>`)) {
		t.Errorf("no XML declaration: %s", got)
	}
}

func TestAppendEnvelopeEscapes(t *testing.T) {
	const nasty = `a<b&c>d"e'f`
	out := AppendEnvelope([]byte("prefix"), `urn:x"<&>`, "AddPortMapping", []Arg{{"NewPortMappingDescription", nasty}})
	if !bytes.HasPrefix(out, []byte("prefix<?xml")) {
		t.Errorf("AppendEnvelope did not append to dst: %.20q", out)
	}
	if bytes.Contains(out, []byte(nasty)) || bytes.Contains(out, []byte(`urn:x"<&>`)) {
		t.Errorf("unescaped value in %s", out)
	}
	if !bytes.Contains(out, []byte(`a&lt;b&amp;c&gt;d&#34;e&#39;f`)) {
		t.Errorf("value not escaped as expected in %s", out)
	}
	// The service type lands in an attribute and must come back intact.
	d := xml.NewDecoder(bytes.NewReader(out[len("prefix"):]))
	for {
		tok, err := d.Token()
		if err != nil {
			t.Fatalf("service type not found: %v", err)
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "AddPortMapping" {
			if se.Name.Space != `urn:x"<&>` {
				t.Errorf("namespace %q", se.Name.Space)
			}
			break
		}
	}
}

func TestEnvelopeRoundTrip(t *testing.T) {
	tests := [][]Arg{
		nil,
		{{"NewRemoteHost", ""}},
		{{"NewPortMappingDescription", `<&>"'`}, {"NewProtocol", "UDP"}},
		{{"NewPortMappingDescription", "Grüße ✓ 日本"}, {"NewEnabled", "1"}},
		{{"NewPortListing", "<p:PortMappingList xmlns:p=\"urn:x\">\n<p:PortMappingEntry/>\n</p:PortMappingList>"}},
		{{"A", "line1\nline2\ttab"}, {"A", "repeated name"}},
	}
	for _, args := range tests {
		body := AppendEnvelope(nil, wanIP1, "XResponse", args)
		name, got, err := ParseEnvelope(body)
		if err != nil || name != "XResponse" {
			t.Fatalf("ParseEnvelope(%s) = %q, %v", body, name, err)
		}
		if !reflect.DeepEqual(got, Args(args)) {
			t.Errorf("round trip of %q gave %q", args, got)
		}
	}
}

func TestFaultRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		code int
		desc string
	}{
		{718, "ConflictInMappingEntry"},
		{402, "Invalid Args"},
		{606, `Action not authorized <&>"'`},
		{501, ""},
	} {
		body := AppendFault(nil, tc.code, tc.desc)
		name, args, err := ParseEnvelope(body)
		var ue *Error
		if !errors.As(err, &ue) {
			t.Fatalf("ParseEnvelope(%s): %v, want *Error", body, err)
		}
		if name != "Fault" || args != nil || ue.Code != tc.code || ue.Description != tc.desc {
			t.Errorf("got %q %q %+v, want Fault %d %q", name, args, ue, tc.code, tc.desc)
		}
	}
	// Code 0 is not a UPnP error, so it must not read back as one.
	if _, _, err := ParseEnvelope(AppendFault(nil, 0, "x")); err == nil || ErrorCode(err) != 0 {
		t.Errorf("fault with code 0: %v", err)
	}
}

func TestErrorString(t *testing.T) {
	for _, tc := range []struct {
		e    Error
		want string
	}{
		{Error{Code: 718, Description: "ConflictInMappingEntry", Action: "AddPortMapping"}, "AddPortMapping: UPnP error 718 (ConflictInMappingEntry)"},
		{Error{Code: 501, Action: "GetStatusInfo"}, "GetStatusInfo: UPnP error 501"},
		{Error{Code: 402, Description: "Invalid Args"}, "UPnP error 402 (Invalid Args)"},
	} {
		if got := tc.e.Error(); got != tc.want {
			t.Errorf("%+v.Error() = %q, want %q", tc.e, got, tc.want)
		}
	}
	if ErrorCode(nil) != 0 || ErrorCode(errors.New("x")) != 0 {
		t.Error("ErrorCode of a non-UPnP error is not 0")
	}
}

func TestArgs(t *testing.T) {
	a := Args{{"A", "1"}, {"B", ""}, {"A", "2"}}
	if v, ok := a.Get("A"); v != "1" || !ok {
		t.Errorf("Get(A) = %q, %v; want the first", v, ok)
	}
	if v, ok := a.Get("B"); v != "" || !ok {
		t.Errorf("Get(B) = %q, %v; want present and empty", v, ok)
	}
	if v, ok := a.Get("a"); ok {
		t.Errorf("Get is case-insensitive: %q", v)
	}
	if a.Value("C") != "" || a.Value("A") != "1" {
		t.Error("Value")
	}
}

func TestReadLimited(t *testing.T) {
	for _, tc := range []struct {
		n, max int64
		ok     bool
	}{{0, 0, true}, {10, 10, true}, {11, 10, false}, {1 << 20, 1<<20 - 1, false}} {
		data, err := ReadLimited(bytes.NewReader(make([]byte, tc.n)), tc.max)
		if tc.ok && (err != nil || int64(len(data)) != tc.n) {
			t.Errorf("%d bytes, limit %d: %d, %v", tc.n, tc.max, len(data), err)
		}
		if !tc.ok && !errors.Is(err, ErrBodyTooLarge) {
			t.Errorf("%d bytes, limit %d: %v, want ErrBodyTooLarge", tc.n, tc.max, err)
		}
	}
	boom := errors.New("boom")
	if _, err := ReadLimited(io.MultiReader(strings.NewReader("x"), iotestErr{boom}), 10); !errors.Is(err, boom) {
		t.Errorf("read error lost: %v", err)
	}
}

type iotestErr struct{ err error }

func (r iotestErr) Read([]byte) (int, error) { return 0, r.err }

// rawServer accepts HTTP requests on loopback and records each request's
// header block exactly as sent, which net/http would canonicalise away.
type rawServer struct {
	ln       net.Listener
	requests chan rawRequest
}

type rawRequest struct {
	head []string // request line and header lines, as sent
	body []byte
	err  error
}

// newRawServer answers every request with respond(request).
func newRawServer(t *testing.T, respond func(rawRequest) []byte) *rawServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &rawServer{ln: ln, requests: make(chan rawRequest, 16)}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go s.serve(c, respond)
		}
	}()
	return s
}

func (s *rawServer) serve(c net.Conn, respond func(rawRequest) []byte) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	var req rawRequest
	length := 0
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			req.err = err
			break
		}
		line = strings.TrimRight(line, "\r\n")
		if line == "" {
			break
		}
		req.head = append(req.head, line)
		if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(k, "Content-Length") {
			length, _ = strconv.Atoi(strings.TrimSpace(v))
		}
	}
	if req.err == nil {
		req.body = make([]byte, length)
		_, req.err = io.ReadFull(br, req.body)
	}
	s.requests <- req
	c.Write(respond(req))
}

func (s *rawServer) url(path string) string { return "http://" + s.ln.Addr().String() + path }

func httpResponse(status string, body []byte) []byte {
	return fmt.Appendf(nil, "HTTP/1.1 %s\r\nContent-Type: text/xml; charset=\"utf-8\"\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", status, len(body), body)
}

func TestClientCallWire(t *testing.T) {
	_, reply := readHTTPResponse(t, filepath.Join(capturesDir, "soap_AddPortMapping_response.txt"))
	srv := newRawServer(t, func(rawRequest) []byte { return httpResponse("200 OK", reply) })
	in := []Arg{
		{"NewRemoteHost", ""}, {"NewExternalPort", "18080"}, {"NewProtocol", "TCP"},
		{"NewInternalPort", "8080"}, {"NewInternalClient", "10.77.0.2"}, {"NewEnabled", "1"},
		{"NewPortMappingDescription", "natlab-capture"}, {"NewLeaseDuration", "0"},
	}
	c := &Client{}
	out, err := c.Call(context.Background(), srv.url("/ctl/IPConn"), wanIP2, "AddPortMapping", in)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 0 {
		t.Errorf("out = %q, want none", out)
	}
	req := <-srv.requests
	if req.err != nil {
		t.Fatal(req.err)
	}
	if req.head[0] != "POST /ctl/IPConn HTTP/1.1" {
		t.Errorf("request line %q", req.head[0])
	}
	headers := map[string]string{}
	for _, h := range req.head[1:] {
		k, v, _ := strings.Cut(h, ":")
		headers[k] = strings.TrimSpace(v)
	}
	for k, want := range map[string]string{
		// Exact case: some routers compare header names byte for byte.
		"SOAPAction":     `"urn:schemas-upnp-org:service:WANIPConnection:2#AddPortMapping"`,
		"Content-Type":   `text/xml; charset="utf-8"`,
		"Content-Length": strconv.Itoa(len(req.body)),
		"User-Agent":     "portfwd",
	} {
		if got, ok := headers[k]; !ok || got != want {
			t.Errorf("header %s = %q (present %v), want %q; request:\n%s", k, got, ok, want, strings.Join(req.head, "\n"))
		}
	}
	if _, chunked := headers["Transfer-Encoding"]; chunked {
		t.Error("request is chunked")
	}
	name, args, err := ParseEnvelope(req.body)
	if err != nil || name != "AddPortMapping" || !reflect.DeepEqual(args, Args(in)) {
		t.Errorf("request body parses as %q %q %v", name, args, err)
	}

	c.UserAgent = "test-agent/1"
	if _, err := c.Call(context.Background(), srv.url("/ctl/IPConn"), wanIP2, "AddPortMapping", in); err != nil {
		t.Fatal(err)
	}
	req = <-srv.requests
	if !containsLine(req.head, "User-Agent: test-agent/1") {
		t.Errorf("custom User-Agent not sent: %q", req.head)
	}
}

func containsLine(lines []string, want string) bool {
	for _, l := range lines {
		if l == want {
			return true
		}
	}
	return false
}

// TestClientCallReplay replays whole HTTP responses captured from routers,
// status line and headers included.
func TestClientCallReplay(t *testing.T) {
	tests := []struct {
		file     string
		action   string
		wantArgs Args
		code     int
		status   int
	}{
		{routersDir + "/actiontec-gt784wn/soap-GetExternalIPAddress.http.txt", "GetExternalIPAddress", Args{{"NewExternalIPAddress", "11.222.33.111"}}, 0, 0},
		{routersDir + "/actiontec-gt784wn/soap-GetGenericPortMappingEntry-2.http.txt", "GetGenericPortMappingEntry", nil, 713, 500},
		{routersDir + "/ddwrt-generic-x86/soap-GetExternalIPAddress.http.txt", "GetExternalIPAddress", Args{{"NewExternalIPAddress", "11.222.33.111"}}, 0, 0},
		{routersDir + "/ddwrt-generic-x86/soap-GetGenericPortMappingEntry.http.txt", "GetGenericPortMappingEntry", nil, 713, 500},
		{routersDir + "/_partial/tplink-tl-wr940n/soap-GetExternalIPAddress.http.txt", "GetExternalIPAddress", Args{{"NewExternalIPAddress", "100.100.100.100"}}, 0, 0},
		{capturesDir + "/soap_GetStatusInfo_response.txt", "GetStatusInfo", Args{{"NewConnectionStatus", "Connected"}, {"NewLastConnectionError", "ERROR_NONE"}, {"NewUptime", "2126"}}, 0, 0},
	}
	for _, tc := range tests {
		t.Run(filepath.Base(tc.file), func(t *testing.T) {
			raw := readShared(t, tc.file)
			srv := newRawServer(t, func(rawRequest) []byte { return raw })
			out, err := (&Client{}).Call(context.Background(), srv.url("/ctl"), wanIP1, tc.action, nil)
			if tc.code == 0 {
				if err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(out, tc.wantArgs) {
					t.Errorf("out %q, want %q", out, tc.wantArgs)
				}
				return
			}
			var ue *Error
			if !errors.As(err, &ue) {
				t.Fatalf("error %v, want *Error", err)
			}
			if ue.Code != tc.code || ue.HTTPStatus != tc.status || ue.Action != tc.action {
				t.Errorf("got %+v, want code %d status %d action %s", ue, tc.code, tc.status, tc.action)
			}
		})
	}
}

func TestClientCallResponses(t *testing.T) {
	fault := AppendFault(nil, 718, "ConflictInMappingEntry")
	tests := []struct {
		name    string
		status  int
		body    []byte
		code    int    // expected UPnP code; 0 means not an *Error
		wantErr string // substring of the error; "" means success
	}{
		{name: "fault under 500", status: 500, body: fault, code: 718, wantErr: "718"},
		{name: "fault under 200", status: 200, body: fault, code: 718, wantErr: "718"},
		{name: "fault under 400", status: 400, body: fault, code: 718, wantErr: "718"},
		{name: "500 without fault", status: 500, body: []byte("Internal Server Error"), wantErr: "HTTP 500 Internal Server Error with no UPnPError"},
		{name: "500 with SOAP fault but no UPnPError", status: 500, body: []byte(`<Envelope><Body><Fault><faultstring>Invalid Action</faultstring></Fault></Body></Envelope>`), wantErr: "Invalid Action"},
		{name: "404", status: 404, body: []byte("not found"), wantErr: "HTTP 404"},
		{name: "200 with garbage", status: 200, body: []byte("<html>"), wantErr: "bad response"},
		{name: "wrong response element", status: 200, body: AppendEnvelope(nil, wanIP1, "GetStatusInfoResponse", nil), wantErr: "<GetStatusInfoResponse>, not <AddPortMappingResponse>"},
		{name: "response element in other case", status: 200, body: AppendEnvelope(nil, wanIP1, "addportmappingresponse", nil)},
		{name: "right response", status: 200, body: AppendEnvelope(nil, wanIP1, "AddPortMappingResponse", nil)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := httpxtest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(tc.status)
				w.Write(tc.body)
			}))
			defer srv.Close()
			_, err := (&Client{}).Call(context.Background(), srv.URL+"/ctl", wanIP1, "AddPortMapping", nil)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
			}
			var ue *Error
			if tc.code != 0 {
				if !errors.As(err, &ue) || ue.Code != tc.code || ue.HTTPStatus != tc.status || ue.Action != "AddPortMapping" {
					t.Errorf("got %#v, want *Error code %d status %d", err, tc.code, tc.status)
				}
			} else if errors.As(err, &ue) {
				t.Errorf("got *Error %+v, want a plain error", ue)
			}
		})
	}
}

func TestClientCallLimits(t *testing.T) {
	release := make(chan struct{})
	srv := httpxtest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/big":
			w.Write(AppendEnvelope(nil, wanIP1, "XResponse", []Arg{{"A", strings.Repeat("x", 4096)}}))
		case "/slow":
			select {
			case <-r.Context().Done():
			case <-release:
			}
		}
	}))
	defer srv.Close()
	defer close(release)
	ctx := context.Background()

	_, err := (&Client{MaxBody: 1024}).Call(ctx, srv.URL+"/big", wanIP1, "X", nil)
	if !errors.Is(err, ErrBodyTooLarge) {
		t.Errorf("oversized response: %v, want ErrBodyTooLarge", err)
	}
	if _, err := (&Client{MaxBody: 8192}).Call(ctx, srv.URL+"/big", wanIP1, "X", nil); err != nil {
		t.Errorf("response under MaxBody: %v", err)
	}

	start := time.Now()
	_, err = (&Client{Timeout: 100 * time.Millisecond}).Call(ctx, srv.URL+"/slow", wanIP1, "X", nil)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Timeout: %v, want context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Timeout not honoured: took %v", d)
	}

	cctx, cancel := context.WithCancel(ctx)
	time.AfterFunc(100*time.Millisecond, cancel)
	start = time.Now()
	_, err = (&Client{Timeout: time.Minute}).Call(cctx, srv.URL+"/slow", wanIP1, "X", nil)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("cancel: %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("cancel not honoured: took %v", d)
	}

	dctx, dcancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer dcancel()
	start = time.Now()
	_, err = (&Client{Timeout: time.Minute}).Call(dctx, srv.URL+"/slow", wanIP1, "X", nil)
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 3*time.Second {
		t.Errorf("context deadline shorter than Timeout: %v after %v", err, time.Since(start))
	}

	if _, err := (&Client{}).Call(ctx, "http://%s:%d/ctl", wanIP1, "X", nil); err == nil {
		t.Error("unusable control URL accepted")
	}
}

var simpleName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.-]*$`)

func FuzzParseEnvelope(f *testing.F) {
	for _, tc := range soapGolden {
		for _, data := range readSharedSeeds(f, tc.file) {
			if strings.HasSuffix(tc.file, ".txt") {
				_, data, _ = bytes.Cut(data, []byte("\r\n\r\n"))
			}
			f.Add(data)
		}
	}
	f.Add(AppendEnvelope(nil, wanIP1, "AddPortMapping", []Arg{{"NewPortMappingDescription", `<&>"'`}}))
	f.Add(AppendFault(nil, 718, "ConflictInMappingEntry"))
	f.Add([]byte("<?xml version=\"1.0\" encoding=\"latin1\"?><Envelope><Body><X><A>\xe9</A></X></Body></Envelope>"))
	f.Fuzz(func(t *testing.T, data []byte) {
		name, args, err := ParseEnvelope(data)
		var ue *Error
		switch {
		case errors.As(err, &ue):
			_, _, err2 := ParseEnvelope(AppendFault(nil, ue.Code, ue.Description))
			var ue2 *Error
			if !errors.As(err2, &ue2) || ue2.Code != ue.Code || ue2.Description != ue.Description {
				t.Fatalf("fault %+v does not round-trip: %v", ue, err2)
			}
		case err != nil:
			return
		default:
			if name == "" {
				t.Fatal("success without a name")
			}
			if len(args) > maxArgs {
				t.Fatalf("%d args", len(args))
			}
			if !simpleName.MatchString(name) {
				return
			}
			for _, a := range args {
				if !simpleName.MatchString(a.Name) {
					return
				}
			}
			name2, args2, err := ParseEnvelope(AppendEnvelope(nil, wanIP1, name, args))
			if err != nil || name2 != name || !reflect.DeepEqual(args2, args) {
				t.Fatalf("round trip: %q %q -> %q %q %v", name, args, name2, args2, err)
			}
		}
	})
}
