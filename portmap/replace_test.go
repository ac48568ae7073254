package portmap

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/portfwd/portfwd/igd"
	"github.com/portfwd/portfwd/igd/igdtest"
	"github.com/portfwd/portfwd/internal/testenv"
	"github.com/portfwd/portfwd/natpmp"
	"github.com/portfwd/portfwd/upnp"
)

// miniupnpdLike is igdtest playing miniupnpd 2.3 where it matters here:
// AddPortMapping for a port this host holds re-points the entry whatever
// its internal port (no 718), a permanent request gets 604800 s, and
// NewEnabled=0 is accepted and ignored.
func miniupnpdLike(t *testing.T, mappings ...igd.PortMapping) (*igdtest.Server, Gateway) {
	srv := igdtest.NewServer(t, igdtest.Options{Version: 2, ExternalIP: "198.51.100.7", Mappings: mappings,
		PermanentLease: 604800 * time.Second, IgnoreEnabled: true, SecureMode: true})
	o := testOptions(t)
	o.GatewayURL = srv.Location
	return srv, discoverOne(t, o)
}

func refusal[T error](t *testing.T, err error) T {
	t.Helper()
	var re *RefusedError
	var target T
	if !errors.As(err, &re) || !errors.As(err, &target) {
		t.Fatalf("error %v (%T), want a *RefusedError wrapping a %T", err, err, target)
	}
	return target
}

func TestAddNeverReplacesSilently(t *testing.T) {
	first := igd.PortMapping{ExternalPort: 18085, Protocol: "TCP", InternalPort: 8080, InternalClient: "127.0.0.1", Enabled: true, Description: "first"}
	srv, g := miniupnpdLike(t, first)
	ctx := ctxT(t)

	// Another description, another internal port: refused, naming "first";
	// the router's entry is untouched and no AddPortMapping went out.
	for _, r := range []Request{
		{Protocol: TCP, InternalPort: 8080, ExternalPort: 18085, Description: "second"},
		{Protocol: TCP, InternalPort: 8081, ExternalPort: 18085, Description: "first"},
	} {
		_, err := g.Add(ctx, r)
		ee := refusal[*ExistsError](t, err)
		if ee.Existing.Description != "first" || ee.Existing.InternalPort != 8080 || !strings.Contains(err.Error(), `"first"`) {
			t.Errorf("refusal names %+v: %v", ee.Existing, err)
		}
	}
	if slices.Contains(srv.Actions(), "AddPortMapping") || srv.Mappings()[0] != first {
		t.Fatalf("the router was asked to add, or its entry changed: %v, %+v", srv.Actions(), srv.Mappings())
	}

	// The very same mapping again is a renewal.
	m, err := g.Add(ctx, Request{Protocol: TCP, InternalPort: 8080, ExternalPort: 18085, Description: "first", Lease: time.Hour})
	if err != nil || m.Lease != time.Hour || !m.ReadBack {
		t.Fatalf("renewal: %+v, %v", m, err)
	}

	// Any: another port, found free; "first" stays as it was.
	m, err = g.Add(ctx, Request{Protocol: TCP, InternalPort: 8081, ExternalPort: 18085, Description: "second", Any: true})
	if err != nil || m.ExternalPort != 18086 || m.InternalPort != 8081 {
		t.Fatalf("Any: %+v, %v", m, err)
	}
	// And Any never takes a port this host holds either.
	m, err = g.Add(ctx, Request{Protocol: TCP, InternalPort: 8082, ExternalPort: 18085, Description: "third", Any: true})
	if err != nil || m.ExternalPort != 18087 {
		t.Fatalf("Any past two taken ports: %+v, %v", m, err)
	}
	if got := srv.Mappings(); len(got) != 3 || got[0].Description != "first" || got[0].InternalPort != 8080 {
		t.Fatalf("router table %+v", got)
	}

	// Replace: what the caller asked for.
	m, err = g.Add(ctx, Request{Protocol: TCP, InternalPort: 9090, ExternalPort: 18085, Description: "replaced", Replace: true})
	if err != nil || m.InternalPort != 9090 || m.Description != "replaced" {
		t.Fatalf("Replace: %+v, %v", m, err)
	}
}

func TestEditNeverDestroysTheMappingAtTheNewPort(t *testing.T) {
	srv, g := miniupnpdLike(t,
		igd.PortMapping{ExternalPort: 18085, Protocol: "TCP", InternalPort: 8085, InternalClient: "127.0.0.1", Enabled: true, Description: "at 18085"},
		igd.PortMapping{ExternalPort: 18086, Protocol: "TCP", InternalPort: 8086, InternalClient: "127.0.0.1", Enabled: true, Description: "at 18086"})
	ctx := ctxT(t)
	to := uint16(18085)
	_, err := g.Edit(ctx, Key{Protocol: TCP, ExternalPort: 18086}, Change{ExternalPort: &to})
	if ee := refusal[*ExistsError](t, err); ee.Existing.Description != "at 18085" {
		t.Errorf("refusal names %+v", ee.Existing)
	}
	if got := srv.Mappings(); len(got) != 2 || got[0].Description != "at 18085" || got[1].Description != "at 18086" {
		t.Fatalf("router table after the refused edit: %+v", got)
	}
	m, err := g.Edit(ctx, Key{Protocol: TCP, ExternalPort: 18086}, Change{ExternalPort: &to, Replace: true})
	if err != nil || m.ExternalPort != 18085 || m.Description != "at 18086" {
		t.Fatalf("edit with Replace: %+v, %v", m, err)
	}
	if got := srv.Mappings(); len(got) != 1 || got[0].InternalPort != 8086 {
		t.Errorf("router table after the edit: %+v", got)
	}
}

// TestAddReportsWhatTheRouterHolds: miniupnpd's IGDv2 grants 604800 s for
// a permanent request, and ignores NewEnabled=0. Add and Edit report the
// router's lease, with a note, and refuse to call a mapping disabled that
// the router keeps enabled.
func TestAddReportsWhatTheRouterHolds(t *testing.T) {
	srv, g := miniupnpdLike(t)
	ctx := ctxT(t)
	m, err := g.Add(ctx, Request{Protocol: TCP, InternalPort: 8080, ExternalPort: 18080, Description: "web"})
	if err != nil {
		t.Fatal(err)
	}
	if m.Permanent || m.Lease != 604800*time.Second || !m.ReadBack || !strings.Contains(m.Note, "asked for a permanent mapping") {
		t.Errorf("Add = %+v, want the 604800 s lease granted, read back, with a note", m)
	}
	off := false
	m, err = g.Edit(ctx, Key{Protocol: TCP, ExternalPort: 18080}, Change{Enabled: &off})
	ie := refusal[*IgnoredError](t, err)
	if ie.Field != "enabled" || ie.Got != "yes" || !ie.Mapping.Enabled || !strings.Contains(err.Error(), "still open") {
		t.Errorf("edit --enabled=false on a router that ignores it: %+v, %v", ie, err)
	}
	if m.Enabled != ie.Mapping.Enabled {
		t.Errorf("Edit returned %+v with the error; want the router's mapping", m)
	}
	if got := srv.Mappings(); len(got) != 1 || !got[0].Enabled {
		t.Errorf("router table %+v", got)
	}
	// Adding a disabled mapping: the same.
	_, err = g.Add(ctx, Request{Protocol: UDP, InternalPort: 9000, Disabled: true})
	refusal[*IgnoredError](t, err)
}

// TestRecordedRouterThatCannotReadBack: the TP-Link/DD-WRT router of the
// corpus answers GetSpecificPortMappingEntry with 402. The add goes out
// unchecked, as upnpc's would, and the result says it could not be read
// back rather than pretending it was.
func TestRecordedRouterThatCannotReadBack(t *testing.T) {
	dir := filepath.Join(routersDir, "tplink-tl-wr841nd-v9-ddwrt")
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			testenv.Missing(t, "router corpus file missing (%v): the shared corpus is the directory shared/ beside the repository, or $%s", err, testenv.EnvShared)
		}
		return b
	}
	srv := igdtest.NewServer(t, igdtest.Options{Description: read("rootDesc.xml"), Bodies: map[string][]byte{
		"GetSpecificPortMappingEntry": read("soap-GetSpecificPortMappingEntry.xml"),
		"AddPortMapping":              read("soap-AddPortMapping.xml"),
		"GetExternalIPAddress":        read("soap-GetExternalIPAddress.xml"),
	}})
	o := testOptions(t)
	o.GatewayURL, o.HTTPClient = srv.Location, toFake(srv)
	g := discoverOne(t, o)
	m, err := g.Add(ctxT(t), Request{Protocol: TCP, InternalPort: 8080, InternalClient: netip.MustParseAddr("192.168.1.20"), Lease: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if m.ReadBack || !strings.Contains(m.Note, "would not read the mapping back") || m.ExternalAddr.String() != "1.2.3.4" {
		t.Errorf("Add = %+v", m)
	}
}

// TestSecureModeExplained: the router answers 718 to a mapping for
// another host although nothing holds the port. The error says so, rather
// than blaming a conflict.
func TestSecureModeExplained(t *testing.T) {
	srv, g := miniupnpdLike(t)
	_, err := g.Add(ctxT(t), Request{Protocol: TCP, InternalPort: 8080, ExternalPort: 18090, InternalClient: netip.MustParseAddr("10.77.0.9")})
	var re *RefusedError
	if !errors.As(err, &re) || re.Code != igd.CodeConflictInMappingEntry || !strings.Contains(re.Text, "secure mode") ||
		strings.Contains(re.Text, "already mapped") || !strings.Contains(re.Text, "10.77.0.9") {
		t.Fatalf("Add for another host: %v", err)
	}
	if !slices.Contains(srv.Actions(), "GetSpecificPortMappingEntry") || len(srv.Mappings()) != 0 {
		t.Errorf("actions %v, table %+v", srv.Actions(), srv.Mappings())
	}
	// Any does not go round the ports hoping for another answer.
	_, err = g.Add(ctxT(t), Request{Protocol: TCP, InternalPort: 8080, ExternalPort: 18090, InternalClient: netip.MustParseAddr("10.77.0.9"), Any: true})
	if !errors.As(err, &re) || !strings.Contains(re.Text, "secure mode") {
		t.Fatalf("Add --any for another host: %v", err)
	}
	if n := strings.Count(strings.Join(srv.Actions(), " "), "AddPortMapping"); n != 2 {
		t.Errorf("%d AddPortMapping sent, want one per add", n)
	}
}

// TestNATPMPKeepsOneMappingPerInternalPort: NAT-PMP deletes by internal
// port (miniupnpd deletes every mapping of it), so a second external port
// for the same internal port, or another internal port on a port this host
// holds, is refused unless Replace.
func TestNATPMPKeepsOneMappingPerInternalPort(t *testing.T) {
	addr, h := startPMP(t)
	o := testOptions(t)
	o.NATPMPServer, o.Methods = addr, []Method{NATPMP}
	g := discoverOne(t, o)
	ctx := ctxT(t)
	if _, err := g.Add(ctx, Request{Protocol: TCP, InternalPort: 19000, ExternalPort: 9000, Description: "first"}); err != nil {
		t.Fatal(err)
	}
	_, err := g.Add(ctx, Request{Protocol: TCP, InternalPort: 19000, ExternalPort: 9001})
	if ee := refusal[*ExistsError](t, err); ee.Existing.ExternalPort != 9000 || !strings.Contains(err.Error(), "one mapping per internal port") {
		t.Errorf("second external port for internal 19000: %v", err)
	}
	_, err = g.Add(ctx, Request{Protocol: TCP, InternalPort: 19001, ExternalPort: 9000})
	if ee := refusal[*ExistsError](t, err); ee.Existing.Description != "first" {
		t.Errorf("another internal port at 9000: %v", err)
	}
	h.mu.Lock()
	n := len(h.maps)
	h.mu.Unlock()
	if n != 1 {
		t.Errorf("the router has %d mappings, want the first only", n)
	}
	m, err := g.Add(ctx, Request{Protocol: TCP, InternalPort: 19001, ExternalPort: 9000, Replace: true})
	if err != nil || m.InternalPort != 19001 {
		t.Fatalf("Replace: %+v, %v", m, err)
	}
	h.mu.Lock()
	_, old := h.maps[[2]uint16{uint16(natpmp.TCP), 19000}]
	h.mu.Unlock()
	if old {
		t.Error("Replace left the old mapping")
	}
}

// TestMappingMadeIsNeverReportedFailed: the state directory cannot be
// written (it is a file). The router made the mapping: Add succeeds, and
// its note says the record could not be kept.
func TestMappingMadeIsNeverReportedFailed(t *testing.T) {
	addr, _ := startPMP(t)
	o := testOptions(t)
	file := filepath.Join(t.TempDir(), "a-file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	o.StateDir = filepath.Join(file, "state")
	o.NATPMPServer, o.Methods = addr, []Method{NATPMP}
	g := discoverOne(t, o)
	m, err := g.Add(ctxT(t), Request{Protocol: UDP, InternalPort: 9000})
	if err != nil {
		t.Fatalf("Add reported failure for a mapping the router made: %v", err)
	}
	if m.ExternalPort != 9000 || !strings.Contains(m.Note, "could not be remembered") {
		t.Errorf("Add = %+v", m)
	}
}

// TestEmptyFaultRouter: a router whose faults are HTTP 500 with no
// UPnPError (portfwd gateway --quirks soap-500-no-body) hides 714, so
// GetSpecificPortMappingEntry cannot say "no such entry". The client walks
// the table instead: the add is checked before and read back after, the
// listing ends at the bare 500 past the last entry, and an edit finds the
// entry to change.
func TestEmptyFaultRouter(t *testing.T) {
	pastFirst := func(a upnp.Args) bool { return a.Value("NewPortMappingIndex") != "0" }
	srv := igdtest.NewServer(t, igdtest.Options{Version: 1, Faults: []igdtest.Fault{
		{Action: "GetSpecificPortMappingEntry", HTTPStatus: 500},
		{Action: "GetGenericPortMappingEntry", HTTPStatus: 500, Match: pastFirst},
	}})
	o := testOptions(t)
	o.GatewayURL, o.HTTPClient = srv.Location, toFake(srv)
	g := discoverOne(t, o)
	ctx := ctxT(t)
	m, err := g.Add(ctx, Request{Protocol: TCP, InternalPort: 8080, InternalClient: netip.MustParseAddr("192.168.1.20"), Lease: time.Hour, Description: "web"})
	if err != nil {
		t.Fatal(err)
	}
	if !m.ReadBack || m.Description != "web" {
		t.Errorf("Add = %+v, want it read back from the table walk", m)
	}
	list, err := g.List(ctx, nil)
	if err != nil || len(list) != 1 {
		t.Errorf("List = %+v, %v; want the one mapping, the bare 500 ending the walk", list, err)
	}
	desc := "web2"
	if m, err := g.Edit(ctx, Key{Protocol: TCP, ExternalPort: 8080}, Change{Description: &desc}); err != nil || m.Description != "web2" {
		t.Errorf("Edit = %+v, %v", m, err)
	}
}

// TestUnavailableIsNotTheEnd: an HTTP 503 past the first entry is trouble,
// not the end of the table: the listing says it is incomplete.
func TestUnavailableIsNotTheEnd(t *testing.T) {
	srv := igdtest.NewServer(t, igdtest.Options{Version: 1,
		Mappings: []igd.PortMapping{
			{ExternalPort: 1, Protocol: "TCP", InternalPort: 1, InternalClient: "192.168.1.2", Enabled: true},
			{ExternalPort: 2, Protocol: "TCP", InternalPort: 2, InternalClient: "192.168.1.2", Enabled: true},
		},
		Faults: []igdtest.Fault{{Action: "GetGenericPortMappingEntry", HTTPStatus: 503,
			Match: func(a upnp.Args) bool { return a.Value("NewPortMappingIndex") == "1" }}},
	})
	o := testOptions(t)
	o.GatewayURL, o.HTTPClient = srv.Location, toFake(srv)
	g := discoverOne(t, o)
	list, err := g.List(ctxT(t), nil)
	if err == nil || len(list) != 1 {
		t.Errorf("List = %+v, %v; want one entry and an error", list, err)
	}
}
