package igd_test

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/portfwd/portfwd/igd"
)

// miniupnpdListing is a listing laid out as MiniUPnPd writes it (one line,
// every field, p: prefix).
const miniupnpdListing = `<p:PortMappingList xmlns:p="urn:schemas-upnp-org:gw:WANIPConnection" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:schemaLocation="urn:schemas-upnp-org:gw:WANIPConnection http://www.upnp.org/schemas/gw/WANIPConnection-v2.xsd">` +
	`<p:PortMappingEntry><p:NewRemoteHost></p:NewRemoteHost><p:NewExternalPort>18080</p:NewExternalPort><p:NewProtocol>TCP</p:NewProtocol><p:NewInternalPort>8080</p:NewInternalPort><p:NewInternalClient>10.77.0.2</p:NewInternalClient><p:NewEnabled>1</p:NewEnabled><p:NewDescription>natlab-capture</p:NewDescription><p:NewLeaseTime>604798</p:NewLeaseTime></p:PortMappingEntry>` +
	`<p:PortMappingEntry><p:NewRemoteHost>198.51.100.9</p:NewRemoteHost><p:NewExternalPort>3478</p:NewExternalPort><p:NewProtocol>UDP</p:NewProtocol><p:NewInternalPort>3478</p:NewInternalPort><p:NewInternalClient>10.77.0.3</p:NewInternalClient><p:NewEnabled>0</p:NewEnabled><p:NewDescription>a &amp; b &lt;c&gt;</p:NewDescription><p:NewLeaseTime>0</p:NewLeaseTime></p:PortMappingEntry>` +
	`</p:PortMappingList>`

func TestParsePortMappingList(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []igd.PortMapping
		wantErr string
	}{
		{
			name: "MiniUPnPd layout",
			in:   miniupnpdListing,
			want: []igd.PortMapping{
				{ExternalPort: 18080, Protocol: "TCP", InternalPort: 8080, InternalClient: "10.77.0.2", Enabled: true, Description: "natlab-capture", LeaseDuration: 604798 * time.Second},
				{RemoteHost: "198.51.100.9", ExternalPort: 3478, Protocol: "UDP", InternalPort: 3478, InternalClient: "10.77.0.3", Enabled: false, Description: "a & b <c>"},
			},
		},
		{
			name: "spec layout: declaration, indentation, CRLF",
			in: "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n<p:PortMappingList xmlns:p=\"urn:schemas-upnp-org:gw:WANIPConnection\">\r\n" +
				"  <p:PortMappingEntry>\r\n    <p:NewRemoteHost> </p:NewRemoteHost>\r\n    <p:NewExternalPort> 80 </p:NewExternalPort>\r\n" +
				"    <p:NewProtocol>tcp</p:NewProtocol>\r\n    <p:NewInternalPort>8080</p:NewInternalPort>\r\n" +
				"    <p:NewInternalClient>192.168.1.7</p:NewInternalClient>\r\n    <p:NewEnabled> true </p:NewEnabled>\r\n" +
				"    <p:NewDescription>\r\n web \r\n</p:NewDescription>\r\n    <p:NewLeaseTime>3600</p:NewLeaseTime>\r\n  </p:PortMappingEntry>\r\n</p:PortMappingList>\r\n",
			want: []igd.PortMapping{
				{ExternalPort: 80, Protocol: "TCP", InternalPort: 8080, InternalClient: "192.168.1.7", Enabled: true, Description: "web", LeaseDuration: time.Hour},
			},
		},
		{
			name: "no prefix, odd case, SOAP field names, no NewEnabled, no lease",
			in: `<PortMappingList><portmappingentry><NewExternalPort>53</NewExternalPort><NEWPROTOCOL>UDP</NEWPROTOCOL>` +
				`<NewInternalPort>5353</NewInternalPort><NewInternalClient>192.168.1.2</NewInternalClient>` +
				`<NewPortMappingDescription>dns</NewPortMappingDescription></portmappingentry>` +
				`<PortMappingEntry><NewExternalPort>54</NewExternalPort><NewProtocol>UDP</NewProtocol><NewEnabled>no</NewEnabled><NewLeaseDuration>60</NewLeaseDuration></PortMappingEntry></PortMappingList>`,
			want: []igd.PortMapping{
				{ExternalPort: 53, Protocol: "UDP", InternalPort: 5353, InternalClient: "192.168.1.2", Enabled: true, Description: "dns"},
				{ExternalPort: 54, Protocol: "UDP", Enabled: false, LeaseDuration: time.Minute},
			},
		},
		{
			name: "unknown fields and nested elements are ignored",
			in: `<p:PortMappingList xmlns:p="x"><p:PortMappingEntry><p:NewExternalPort>1<b>9</b></p:NewExternalPort>` +
				`<p:X_Vendor>v</p:X_Vendor><p:NewProtocol>TCP</p:NewProtocol></p:PortMappingEntry></p:PortMappingList>`,
			want: []igd.PortMapping{{ExternalPort: 1, Protocol: "TCP", Enabled: true}},
		},
		{name: "empty input", in: "", want: nil},
		{name: "blank input", in: " \r\n\t", want: nil},
		{name: "empty list", in: `<p:PortMappingList xmlns:p="urn:schemas-upnp-org:gw:WANIPConnection"></p:PortMappingList>`, want: nil},
		{name: "CDATA", in: `<PortMappingList><PortMappingEntry><NewExternalPort><![CDATA[22]]></NewExternalPort><NewDescription><![CDATA[<ssh>]]></NewDescription></PortMappingEntry></PortMappingList>`,
			want: []igd.PortMapping{{ExternalPort: 22, Enabled: true, Description: "<ssh>"}}},
		{name: "missing external port", in: `<l><PortMappingEntry><NewProtocol>TCP</NewProtocol></PortMappingEntry></l>`, wantErr: "entry 1: external port: missing"},
		{name: "bad external port", in: `<l><PortMappingEntry><NewExternalPort>70000</NewExternalPort></PortMappingEntry></l>`, wantErr: `"70000" is not a port number`},
		{name: "bad internal port", in: `<l><PortMappingEntry><NewExternalPort>7</NewExternalPort><NewInternalPort>-1</NewInternalPort></PortMappingEntry></l>`, wantErr: "internal port"},
		{name: "bad boolean", in: `<l><PortMappingEntry><NewExternalPort>7</NewExternalPort><NewEnabled>maybe</NewEnabled></PortMappingEntry></l>`, wantErr: `"maybe" is not a boolean`},
		{name: "bad lease", in: `<l><PortMappingEntry><NewExternalPort>7</NewExternalPort><NewLeaseTime>1h</NewLeaseTime></PortMappingEntry></l>`, wantErr: "lease time"},
		{name: "second entry bad", in: `<l><PortMappingEntry><NewExternalPort>7</NewExternalPort></PortMappingEntry><PortMappingEntry><NewExternalPort>x</NewExternalPort></PortMappingEntry></l>`, wantErr: "entry 2"},
		{name: "not XML", in: "no mappings", wantErr: "no XML element"},
		{name: "malformed", in: `<l><PortMappingEntry><NewExternalPort>7</NewExternalPort></PortMappingEntry></l`, wantErr: "malformed PortMappingList"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := igd.ParsePortMappingList([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestAppendPortMappingListRoundTrip(t *testing.T) {
	list := []igd.PortMapping{
		{ExternalPort: 443, Protocol: "TCP", InternalPort: 8443, InternalClient: "192.168.1.7", Enabled: true, Description: `web "prod" & <test>`, LeaseDuration: 2 * time.Hour},
		{RemoteHost: "198.51.100.1", ExternalPort: 65535, Protocol: "UDP", InternalPort: 1, InternalClient: "192.168.1.8", Description: "line1\nline2\ttab — ünïcödé"},
		{ExternalPort: 1, Protocol: "TCP", InternalPort: 1, InternalClient: "10.0.0.1", Enabled: true},
	}
	doc := igd.AppendPortMappingList([]byte("prefix:"), list)
	if !strings.HasPrefix(string(doc), "prefix:<?xml") {
		t.Fatalf("dst not appended to: %.40q", doc)
	}
	for _, want := range []string{
		`xmlns:p="urn:schemas-upnp-org:gw:WANIPConnection"`,
		"<p:PortMappingEntry><p:NewRemoteHost></p:NewRemoteHost><p:NewExternalPort>443</p:NewExternalPort><p:NewProtocol>TCP</p:NewProtocol>" +
			"<p:NewInternalPort>8443</p:NewInternalPort><p:NewInternalClient>192.168.1.7</p:NewInternalClient><p:NewEnabled>1</p:NewEnabled>" +
			"<p:NewDescription>web &#34;prod&#34; &amp; &lt;test&gt;</p:NewDescription><p:NewLeaseTime>7200</p:NewLeaseTime></p:PortMappingEntry>",
		"<p:NewEnabled>0</p:NewEnabled>",
	} {
		if !strings.Contains(string(doc), want) {
			t.Errorf("document lacks %s\n%s", want, doc)
		}
	}
	got, err := igd.ParsePortMappingList(doc[len("prefix:"):])
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, list) {
		t.Errorf("round trip:\ngot  %+v\nwant %+v", got, list)
	}
	empty, err := igd.ParsePortMappingList(igd.AppendPortMappingList(nil, nil))
	if err != nil || len(empty) != 0 {
		t.Errorf("empty list round trip = %v, %v", empty, err)
	}
}

func TestAppendPortMappingListLease(t *testing.T) {
	// A sub-second lease must not become 0, which would mean permanent.
	doc := string(igd.AppendPortMappingList(nil, []igd.PortMapping{{ExternalPort: 1, LeaseDuration: 1500 * time.Millisecond}}))
	if !strings.Contains(doc, "<p:NewLeaseTime>2</p:NewLeaseTime>") {
		t.Errorf("1.5 s lease written as %s", doc)
	}
}

func FuzzParsePortMappingList(f *testing.F) {
	f.Add([]byte(miniupnpdListing))
	f.Add(igd.AppendPortMappingList(nil, []igd.PortMapping{{ExternalPort: 80, Protocol: "TCP", InternalPort: 80, InternalClient: "192.168.1.2", Enabled: true, Description: "x&y"}}))
	f.Add([]byte(`<PortMappingList><PortMappingEntry><NewExternalPort><![CDATA[22]]></NewExternalPort></PortMappingEntry></PortMappingList>`))
	f.Add([]byte(`<a><PortMappingEntry><PortMappingEntry><NewExternalPort>1</NewExternalPort></PortMappingEntry></PortMappingEntry></a>`))
	f.Add([]byte(""))
	f.Add([]byte("<"))
	f.Fuzz(func(t *testing.T, data []byte) {
		list, err := igd.ParsePortMappingList(data)
		if err != nil {
			return
		}
		again, err := igd.ParsePortMappingList(igd.AppendPortMappingList(nil, list))
		if err != nil {
			t.Fatalf("re-parsing our own rendering of %+v: %v", list, err)
		}
		if len(list) == 0 && len(again) == 0 {
			return
		}
		if !reflect.DeepEqual(list, again) {
			t.Fatalf("round trip changed the list:\nfirst  %+v\nsecond %+v", list, again)
		}
	})
}
