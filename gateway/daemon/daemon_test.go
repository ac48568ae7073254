package daemon

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"

	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/portfwd/portfwd/internal/httpx"

	"github.com/portfwd/portfwd/gateway"
	"github.com/portfwd/portfwd/igd"
	"github.com/portfwd/portfwd/internal/testenv"
	"github.com/portfwd/portfwd/natpmp"
	"github.com/portfwd/portfwd/pcp"
	"github.com/portfwd/portfwd/upnp"
)

// These tests run the whole daemon on the loopback interface: loopback is
// its "LAN", every port is picked free, SSDP is off (nothing multicast
// leaves the test), and the memory backend records what would be
// forwarded.

// loopback returns the loopback interface's name, or skips.
func loopback(t *testing.T) string {
	t.Helper()
	ifs, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	for _, ifi := range ifs {
		if ifi.Flags&net.FlagLoopback != 0 && ifi.Flags&net.FlagUp != 0 {
			return ifi.Name
		}
	}
	testenv.Missing(t, "no loopback interface is up")
	return ""
}

// testConfig is a daemon on loopback with the memory backend.
func testConfig(t *testing.T) Config {
	cfg := DefaultConfig()
	cfg.Interfaces.Internal = []string{loopback(t)}
	cfg.ExternalAddress = ExternalAddressConfig{Source: SourceFixed, IP: "198.51.100.1"}
	cfg.Backend = BackendMemory
	cfg.StateDir = t.TempDir()
	cfg.UPnP.HTTPPort = 0
	cfg.UPnP.SSDP = false
	cfg.NATPMP.Port = 0
	cfg.Admin.Address = "127.0.0.1:0"
	cfg.Logger = slog.New(slog.DiscardHandler)
	// The tests map low ports (internal port 1) from many loopback
	// clients: no rules, no quota. TestDefaultPolicy covers the defaults.
	cfg.Policy.Rules = nil
	cfg.Policy.MaxPerClient = 0
	return cfg
}

// running is a daemon serving in the background.
type running struct {
	*Daemon
	stop func() error
}

func start(t *testing.T, cfg Config) *running {
	t.Helper()
	d, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Serve(ctx) }()
	stopped := false
	var serr error
	r := &running{Daemon: d}
	r.stop = func() error {
		if !stopped {
			stopped = true
			cancel()
			serr = <-done
		}
		return serr
	}
	t.Cleanup(func() { r.stop() })
	return r
}

func (r *running) memory() *gateway.Memory { return r.backend.(*gateway.Memory) }

// igdClient returns a client of the daemon's WANIPConnection whose
// connections come from the local address from (127.0.0.1, 127.0.0.2...).
func (r *running) igdClient(t *testing.T, from string) *igd.Client {
	t.Helper()
	hc := testHTTPClient((&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}).DialContext)
	root, err := upnp.FetchDescription(context.Background(), hc, r.DescriptionURLs()[0])
	if err != nil {
		t.Fatalf("fetching the description: %v", err)
	}
	refs := igd.ConnectionServices(root)
	if len(refs) == 0 {
		t.Fatal("the description offers no connection service")
	}
	return igd.NewClient(refs[0], &upnp.Client{HTTP: hc})
}

func TestDaemonUPnP(t *testing.T) {
	r := start(t, testConfig(t))
	ctx := context.Background()
	c := r.igdClient(t, "127.0.0.1")
	if c.Version != 2 {
		t.Errorf("service version %d, want 2 (WANIPConnection:2)", c.Version)
	}
	if ip, err := c.GetExternalIPAddress(ctx); err != nil || ip != netip.MustParseAddr("198.51.100.1") {
		t.Errorf("GetExternalIPAddress = %v, %v", ip, err)
	}

	// A lease of 0 on IGDv2 is a week.
	m := igd.PortMapping{ExternalPort: 20000, Protocol: "TCP", InternalPort: 8080, InternalClient: "127.0.0.1",
		Enabled: true, Description: "web"}
	if err := c.AddPortMapping(ctx, m); err != nil {
		t.Fatalf("AddPortMapping: %v", err)
	}
	got, err := c.GetSpecificPortMappingEntry(ctx, "", 20000, "TCP")
	if err != nil {
		t.Fatal(err)
	}
	if got.InternalPort != 8080 || got.Description != "web" || got.LeaseDuration <= 604790*time.Second || got.LeaseDuration > 604800*time.Second {
		t.Errorf("entry = %+v, want internal port 8080, lease about 604800 s", got)
	}
	if rule, ok := r.memory().Rule(gateway.Key{Protocol: gateway.TCP, ExternalPort: 20000}); !ok || rule.InternalPort != 8080 {
		t.Errorf("backend rule = %v, %v", rule, ok)
	}

	// NewEnabled=0: in the table, not in the backend.
	off := igd.PortMapping{ExternalPort: 20001, Protocol: "UDP", InternalPort: 9000, InternalClient: "127.0.0.1", Enabled: false, LeaseDuration: time.Hour}
	if err := c.AddPortMapping(ctx, off); err != nil {
		t.Fatalf("AddPortMapping disabled: %v", err)
	}
	if e, err := c.GetSpecificPortMappingEntry(ctx, "", 20001, "UDP"); err != nil || e.Enabled {
		t.Errorf("disabled entry = %+v, %v", e, err)
	}
	if _, ok := r.memory().Rule(gateway.Key{Protocol: gateway.UDP, ExternalPort: 20001}); ok {
		t.Error("a disabled mapping was installed in the backend")
	}

	// Another client: a conflict (718), and secure mode (606).
	c2 := r.igdClient(t, "127.0.0.2")
	m2 := m
	m2.InternalClient = "127.0.0.2"
	if err := c2.AddPortMapping(ctx, m2); upnp.ErrorCode(err) != igd.CodeConflictInMappingEntry {
		t.Errorf("another client on a held port: %v, want 718", err)
	}
	m3 := m
	m3.ExternalPort = 20002
	if err := c2.AddPortMapping(ctx, m3); upnp.ErrorCode(err) != igd.CodeActionNotAuthorized {
		t.Errorf("mapping to another host in secure mode: %v, want 606", err)
	}
	if err := c2.DeletePortMapping(ctx, "", 20000, "TCP"); upnp.ErrorCode(err) != igd.CodeActionNotAuthorized {
		t.Errorf("deleting another client's mapping: %v, want 606", err)
	}
	// GetListOfPortMappings: without manage only one's own.
	if l, err := c2.GetListOfPortMappings(ctx, 0, 65535, "TCP", false, 0); err != nil || len(l) != 0 {
		t.Errorf("client 2's own list = %v, %v; want empty", l, err)
	}
	if l, err := c2.GetListOfPortMappings(ctx, 0, 65535, "TCP", true, 0); err != nil || len(l) != 1 || l[0].ExternalPort != 20000 {
		t.Errorf("client 2's managed list = %v, %v; want 20000", l, err)
	}

	// AddAnyPortMapping on a held port reserves another.
	m4 := m2
	m4.LeaseDuration = time.Hour
	if port, err := c2.AddAnyPortMapping(ctx, m4); err != nil || port == 20000 || port == 0 {
		t.Errorf("AddAnyPortMapping on a held port = %d, %v; want another port", port, err)
	} else if err := c2.DeletePortMappingRange(ctx, port, port, "TCP", false); err != nil {
		t.Errorf("DeletePortMappingRange of its own: %v", err)
	}
	if err := c2.DeletePortMappingRange(ctx, 19000, 21000, "TCP", false); upnp.ErrorCode(err) != igd.CodeActionNotAuthorized {
		t.Errorf("DeletePortMappingRange over another client's mapping: %v, want 606", err)
	}
	// The daemon does not manage the WAN link; clients may not cut it.
	if _, err := c2.SOAP.Call(ctx, c2.ControlURL, c2.ServiceType, "ForceTermination", nil); upnp.ErrorCode(err) != igd.CodeActionNotAuthorized {
		t.Errorf("ForceTermination: %v, want 606", err)
	}

	all, err := c.ListPortMappings(ctx, nil)
	if err != nil || len(all) != 2 {
		t.Errorf("ListPortMappings = %v, %v; want 2 entries", all, err)
	}
	if err := c.DeletePortMapping(ctx, "", 20000, "TCP"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetSpecificPortMappingEntry(ctx, "", 20000, "TCP"); upnp.ErrorCode(err) != igd.CodeNoSuchEntryInArray {
		t.Errorf("after delete: %v, want 714", err)
	}
	if r.memory().Len() != 0 {
		t.Errorf("backend still holds %v", r.memory().Rules())
	}
}

// IGDv1 control points get the v1 codes: a quota is 501 there, 728 on v2.
func TestDaemonErrorCodesPerVersion(t *testing.T) {
	for _, tc := range []struct {
		v1   bool
		want int
	}{{false, igd.CodeNoPortMapsAvailable}, {true, igd.CodeActionFailed}} {
		cfg := testConfig(t)
		cfg.UPnP.ForceIGDv1 = tc.v1
		cfg.Policy.MaxPerClient = 1
		r := start(t, cfg)
		c := r.igdClient(t, "127.0.0.1")
		ctx := context.Background()
		m := igd.PortMapping{ExternalPort: 21000, Protocol: "TCP", InternalPort: 80, InternalClient: "127.0.0.1", Enabled: true, LeaseDuration: time.Hour}
		if err := c.AddPortMapping(ctx, m); err != nil {
			t.Fatal(err)
		}
		m.ExternalPort++
		if err := c.AddPortMapping(ctx, m); upnp.ErrorCode(err) != tc.want {
			t.Errorf("v1=%v: over quota: %v, want %d", tc.v1, err, tc.want)
		}
	}
}

// pmp sends one NAT-PMP request to the daemon and returns the answer.
func (r *running) pmp(t *testing.T, req natpmp.Request) natpmp.Response {
	t.Helper()
	c, err := net.Dial("udp4", r.NATPMPAddrs()[0].String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := c.Write(natpmp.AppendRequest(nil, req)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("NAT-PMP %v: %v", req, err)
	}
	resp, err := natpmp.ParseResponse(buf[:n])
	if err != nil {
		t.Fatalf("NAT-PMP answer % x: %v", buf[:n], err)
	}
	return resp
}

func TestDaemonNATPMP(t *testing.T) {
	cfg := testConfig(t)
	r := start(t, cfg)

	if a := r.pmp(t, natpmp.Request{Op: natpmp.OpExternalAddress}); a.Result != natpmp.Success || a.ExternalAddr != netip.MustParseAddr("198.51.100.1") {
		t.Errorf("external address answer %+v", a)
	}
	// A lifetime below min_lease (120 s) is raised to it.
	m := r.pmp(t, natpmp.Request{Op: natpmp.OpMapTCP, InternalPort: 7000, SuggestedExternalPort: 27000, Lifetime: 10})
	if m.Result != natpmp.Success || m.ExternalPort != 27000 || m.Lifetime != 120 {
		t.Fatalf("map = %+v, want 27000 for 120 s", m)
	}
	// A renewal suggesting another port keeps the one granted.
	if again := r.pmp(t, natpmp.Request{Op: natpmp.OpMapTCP, InternalPort: 7000, SuggestedExternalPort: 27500, Lifetime: 3600}); again.ExternalPort != 27000 || again.Lifetime != 3600 {
		t.Errorf("renewal = %+v, want 27000 for 3600 s", again)
	}
	// A port held by another client yields another one, not a refusal.
	other := gateway.Requester{Addr: netip.MustParseAddr("127.0.0.9"), Source: gateway.SourceUPnP}
	if _, err := r.Core().Add(context.Background(), other, gateway.Mapping{Protocol: gateway.UDP, ExternalPort: 27001,
		InternalAddr: other.Addr, InternalPort: 1, Enabled: true}); err != nil {
		t.Fatal(err)
	}
	u := r.pmp(t, natpmp.Request{Op: natpmp.OpMapUDP, InternalPort: 7001, SuggestedExternalPort: 27001, Lifetime: 600})
	if u.Result != natpmp.Success || u.ExternalPort == 27001 || u.ExternalPort == 0 {
		t.Errorf("map on a held port = %+v, want another port", u)
	}
	if rule, ok := r.memory().Rule(gateway.Key{Protocol: gateway.UDP, ExternalPort: u.ExternalPort}); !ok ||
		rule.InternalAddr != netip.MustParseAddr("127.0.0.1") || rule.InternalPort != 7001 {
		t.Errorf("backend rule for %d = %v, %v", u.ExternalPort, rule, ok)
	}

	// Lifetime 0 deletes; the answer is port 0, lifetime 0.
	if d := r.pmp(t, natpmp.Request{Op: natpmp.OpMapTCP, InternalPort: 7000}); d.Result != natpmp.Success || d.ExternalPort != 0 || d.Lifetime != 0 {
		t.Errorf("delete = %+v", d)
	}
	if _, ok := r.Core().FindByInternal(netip.MustParseAddr("127.0.0.1"), gateway.TCP, 7000); ok {
		t.Error("mapping still there after delete")
	}
	// Deleting what is not there succeeds too.
	if d := r.pmp(t, natpmp.Request{Op: natpmp.OpMapTCP, InternalPort: 7000}); d.Result != natpmp.Success {
		t.Errorf("second delete = %+v", d)
	}
	// Internal port 0 with lifetime 0: all of the client's UDP mappings,
	// not the other client's.
	r.pmp(t, natpmp.Request{Op: natpmp.OpMapUDP, InternalPort: 7002, Lifetime: 600})
	if d := r.pmp(t, natpmp.Request{Op: natpmp.OpMapUDP}); d.Result != natpmp.Success {
		t.Errorf("delete all = %+v", d)
	}
	if n := r.Core().Len(); n != 1 {
		t.Errorf("%d mappings left after delete-all, want the other client's 1", n)
	}
}

// The epoch counts from the store's origin: a restart that keeps the
// leases does not reset it, and neither do the leases nor the UUID change.
func TestDaemonRestartKeepsStateAndEpoch(t *testing.T) {
	cfg := testConfig(t)
	r := start(t, cfg)
	uuid := r.UUID()
	if m := r.pmp(t, natpmp.Request{Op: natpmp.OpMapUDP, InternalPort: 5000, Lifetime: 3600}); m.Result != natpmp.Success {
		t.Fatal(m)
	}
	origin := r.epoch
	if err := r.stop(); err != nil {
		t.Fatalf("Serve returned %v", err)
	}

	r2 := start(t, cfg)
	if r2.Core().Len() != 1 || r2.memory().Len() != 1 {
		t.Errorf("after restart: %d mappings, %d rules; want the one lease restored and re-applied", r2.Core().Len(), r2.memory().Len())
	}
	if r2.UUID() != uuid {
		t.Errorf("UUID changed across restart: %s -> %s", uuid, r2.UUID())
	}
	if !r2.epoch.Equal(origin) {
		t.Errorf("epoch origin changed across restart: %v -> %v", origin, r2.epoch)
	}
	a := r2.pmp(t, natpmp.Request{Op: natpmp.OpExternalAddress})
	if want := uint32(time.Since(origin) / time.Second); a.Epoch+1 < want {
		t.Errorf("epoch %d after restart, want about %d (seconds since the store's origin)", a.Epoch, want)
	}
}

func TestDaemonFlushOnExit(t *testing.T) {
	cfg := testConfig(t)
	cfg.FlushOnExit = true
	r := start(t, cfg)
	r.pmp(t, natpmp.Request{Op: natpmp.OpMapTCP, InternalPort: 5000, Lifetime: 3600})
	mem := r.memory()
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	if mem.Len() != 0 {
		t.Errorf("rules left after flush on exit: %v", mem.Rules())
	}
	cfg.FlushOnExit = false
	if r2 := start(t, cfg); r2.Core().Len() != 0 {
		t.Errorf("%d leases came back after flush on exit", r2.Core().Len())
	}
}

func TestDaemonAdmin(t *testing.T) {
	r := start(t, testConfig(t))
	r.pmp(t, natpmp.Request{Op: natpmp.OpMapTCP, InternalPort: 5000, Lifetime: 3600})
	r.pmp(t, natpmp.Request{Op: natpmp.OpMapTCP, InternalPort: 0, Lifetime: 3600}) // refused: internal port 0
	base := "http://" + r.AdminAddr().String()
	get := func(path string) string {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Errorf("%s: %s", path, resp.Status)
		}
		return string(b)
	}
	if h := get("/healthz"); h != "ok\n" {
		t.Errorf("/healthz = %q", h)
	}
	m := get("/metrics")
	for _, want := range []string{
		`portfwd_mappings{protocol="TCP",source="natpmp"} 1`,
		`portfwd_mappings{protocol="UDP",source="upnp"} 0`,
		`portfwd_requests_total{protocol="natpmp",action="map_tcp",result="0"} 1`,
		`portfwd_requests_total{protocol="natpmp",action="map_tcp",result="2"} 1`,
		`portfwd_errors_total{kind="backend"} 0`,
		`portfwd_leases_expired_total 0`,
		`portfwd_info{backend="memory"} 1`,
		"# TYPE portfwd_requests_total counter",
	} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %q:\n%s", want, m)
		}
	}
	// The mux is exported for the admin page.
	r.AdminMux().HandleFunc("/extra", func(w httpx.ResponseWriter, _ *httpx.Request) { io.WriteString(w, "mounted") })
	if got := get("/extra"); got != "mounted" {
		t.Errorf("a handler mounted on AdminMux answered %q", got)
	}
}

// With refuse_private_external and a private address, the gateway reports
// no address and refuses mappings.
func TestDaemonRefusePrivateExternal(t *testing.T) {
	cfg := testConfig(t)
	cfg.ExternalAddress.IP = "10.1.2.3"
	cfg.ExternalAddress.RefusePrivateExternal = true
	r := start(t, cfg)
	c := r.igdClient(t, "127.0.0.1")
	ctx := context.Background()
	if ip, err := c.GetExternalIPAddress(ctx); ip.IsValid() && !ip.IsUnspecified() {
		t.Errorf("GetExternalIPAddress = %v, %v; want none", ip, err)
	}
	err := c.AddPortMapping(ctx, igd.PortMapping{ExternalPort: 22000, Protocol: "TCP", InternalPort: 1, InternalClient: "127.0.0.1", Enabled: true})
	if upnp.ErrorCode(err) != igd.CodeActionFailed {
		t.Errorf("AddPortMapping: %v, want 501", err)
	}
	if a := r.pmp(t, natpmp.Request{Op: natpmp.OpExternalAddress}); a.Result != natpmp.NetworkFailure {
		t.Errorf("NAT-PMP external address: %+v, want network failure", a)
	}
	if m := r.pmp(t, natpmp.Request{Op: natpmp.OpMapTCP, InternalPort: 1, Lifetime: 60}); m.Result != natpmp.NetworkFailure {
		t.Errorf("NAT-PMP map: %+v, want network failure", m)
	}
	if r.Core().Len() != 0 {
		t.Error("a mapping was made")
	}
}

// Without refuse_private_external a private address is reported and used.
func TestDaemonPrivateExternalForwards(t *testing.T) {
	cfg := testConfig(t)
	cfg.ExternalAddress.IP = "100.64.0.1"
	r := start(t, cfg)
	if a := r.pmp(t, natpmp.Request{Op: natpmp.OpExternalAddress}); a.ExternalAddr != netip.MustParseAddr("100.64.0.1") {
		t.Errorf("external address %+v", a)
	}
	if m := r.pmp(t, natpmp.Request{Op: natpmp.OpMapTCP, InternalPort: 1, Lifetime: 600}); m.Result != natpmp.Success {
		t.Errorf("map behind CGNAT: %+v", m)
	}
}

// A panic in a request costs that request, never the server.
func TestNATPMPHandlerPanicIsAnswered(t *testing.T) {
	m := newMetrics()
	h := &natpmpHandler{pmpAdapter{core: nil, ext: newExternalAddr(ExternalAddressConfig{Source: SourceFixed, IP: "192.0.2.1"}, nil, discardLogger()),
		metrics: m, log: discardLogger()}}
	_, _, rc := h.Map(context.Background(), netip.MustParseAddr("127.0.0.1"), natpmp.TCP, 1, 1, 60)
	if rc != natpmp.NetworkFailure {
		t.Errorf("result %v, want network failure", rc)
	}
	if m.errors[errKindPanic] != 1 {
		t.Errorf("panics counted: %d", m.errors[errKindPanic])
	}
}

// The HTTP listener drops peers outside the LAN without a byte.
func TestLANListenerDropsOutsiders(t *testing.T) {
	for _, allow := range []bool{false, true} {
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ll := &lanListener{Listener: ln, allow: func(netip.Addr) bool { return allow }, log: discardLogger()}
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "hello") })}
		go srv.Serve(ll)
		resp, err := (&http.Client{Timeout: 3 * time.Second}).Get("http://" + ln.Addr().String() + "/")
		switch {
		case allow && err != nil:
			t.Errorf("allowed peer: %v", err)
		case !allow && err == nil:
			b, _ := io.ReadAll(resp.Body)
			t.Errorf("refused peer got %s %q", resp.Status, b)
		}
		if resp != nil {
			resp.Body.Close()
		}
		srv.Close()
	}
}

func TestLANPeers(t *testing.T) {
	l, err := newLANPeers([]string{loopback(t)})
	if err != nil {
		t.Fatal(err)
	}
	for a, want := range map[string]bool{"127.0.0.1": true, "127.9.9.9": true, "::ffff:127.0.0.1": true, "192.0.2.77": false} {
		if got := l.allowed(netip.MustParseAddr(a)); got != want {
			t.Errorf("allowed(%s) = %v, want %v", a, got, want)
		}
	}
	if _, err := newLANPeers([]string{"nosuchif0"}); err == nil {
		t.Error("a missing internal interface was accepted")
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	cfg := testConfig(t)
	cfg.Interfaces.Internal = nil
	if _, err := New(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "internal interface") {
		t.Errorf("New without internal interfaces: %v", err)
	}
	// SSDP on an interface without multicast (loopback) cannot work.
	cfg = testConfig(t)
	cfg.UPnP.SSDP = true
	if ifi, err := net.InterfaceByName(cfg.Interfaces.Internal[0]); err == nil && ifi.Flags&net.FlagMulticast == 0 {
		if _, err := New(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "cannot do multicast") {
			t.Errorf("New with SSDP on %s: %v", ifi.Name, err)
		}
	}
	// A port in use is reported with what to do, and nothing stays open.
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cfg = testConfig(t)
	cfg.UPnP.HTTPPort = ln.Addr().(*net.TCPAddr).Port
	_, err = New(context.Background(), cfg)
	if err == nil || !strings.Contains(err.Error(), "upnp.http_port") {
		t.Fatalf("New on a used port: %v", err)
	}
	// The state directory was released: a daemon can start on it now.
	cfg.UPnP.HTTPPort = 0
	d, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("New after a failed New: %v", err)
	}
	if err := d.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}

// GENA: a subscriber to WANIPConnection's events gets the initial state,
// then an event for each change of the table.
func TestDaemonEvents(t *testing.T) {
	r := start(t, testConfig(t))
	events := make(chan []upnp.Arg, 8)
	cb, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		vars, err := upnp.ParsePropertySet(body)
		if err != nil {
			t.Errorf("event body: %v\n%s", err, body)
		}
		events <- vars
	})}
	go srv.Serve(cb)
	defer srv.Close()

	u := strings.TrimSuffix(r.DescriptionURLs()[0], igd.DescriptionPath) + igd.WANIPConnectionEventPath
	req, _ := http.NewRequest("SUBSCRIBE", u, nil)
	req.Header.Set("CALLBACK", "<http://"+cb.Addr().String()+"/>")
	req.Header.Set("NT", "upnp:event")
	req.Header.Set("TIMEOUT", "Second-1800")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("SID") == "" {
		t.Fatalf("SUBSCRIBE: %s, SID %q", resp.Status, resp.Header.Get("SID"))
	}
	value := func(vars []upnp.Arg, name string) string {
		for _, v := range vars {
			if v.Name == name {
				return v.Value
			}
		}
		return "(absent)"
	}
	next := func() []upnp.Arg {
		select {
		case v := <-events:
			return v
		case <-time.After(5 * time.Second):
			t.Fatal("no event within 5 s")
			return nil
		}
	}
	initial := next()
	if value(initial, "PortMappingNumberOfEntries") != "0" || value(initial, "ExternalIPAddress") != "198.51.100.1" ||
		value(initial, "ConnectionStatus") != "Connected" {
		t.Errorf("initial event: %v", initial)
	}
	r.pmp(t, natpmp.Request{Op: natpmp.OpMapTCP, InternalPort: 5000, Lifetime: 3600})
	change := next()
	if value(change, "PortMappingNumberOfEntries") != "1" || value(change, "SystemUpdateID") == "(absent)" {
		t.Errorf("event after a mapping was added: %v", change)
	}
}

// pcpCode returns the PCP result code err carries, or -1.
func pcpCode(err error) int {
	var re *pcp.ResultError
	if errors.As(err, &re) {
		return int(re.Code)
	}
	return -1
}

func TestDaemonPCP(t *testing.T) {
	r := start(t, testConfig(t))
	ctx := context.Background()
	c := &pcp.Client{Gateway: r.NATPMPAddrs()[0]}
	m, err := c.Map(ctx, pcp.MapRequest{Protocol: pcp.TCP, InternalPort: 8000, SuggestedExternalPort: 28000, Lifetime: time.Hour})
	if err != nil {
		t.Fatalf("PCP MAP: %v", err)
	}
	if m.ExternalPort != 28000 || m.ExternalAddr != netip.MustParseAddr("198.51.100.1") || m.Lifetime != time.Hour {
		t.Errorf("MAP result %+v", m)
	}
	held, ok := r.Core().FindByInternal(netip.MustParseAddr("127.0.0.1"), gateway.TCP, 8000)
	if !ok || held.Source != gateway.SourcePCP || held.Nonce != m.Nonce {
		t.Errorf("table entry %+v, %v: want a PCP mapping with the request's nonce", held, ok)
	}
	// Another nonce (another application) may neither refresh nor delete it.
	if _, err := c.Map(ctx, pcp.MapRequest{Protocol: pcp.TCP, InternalPort: 8000, Lifetime: time.Hour, Nonce: pcp.NewNonce()}); pcpCode(err) != int(pcp.ResultNotAuthorized) {
		t.Errorf("MAP with another nonce: %v, want NOT_AUTHORIZED", err)
	}
	if err := c.Delete(ctx, pcp.TCP, 8000, pcp.NewNonce()); pcpCode(err) != int(pcp.ResultNotAuthorized) {
		t.Errorf("delete with another nonce: %v, want NOT_AUTHORIZED", err)
	}
	// A refresh keeps the port.
	if again, err := c.Refresh(ctx, m, 2*time.Hour); err != nil || again.ExternalPort != 28000 {
		t.Errorf("refresh = %+v, %v", again, err)
	}
	// PREFER_FAILURE on a port held by someone else fails rather than
	// moving; without it another port is given.
	other := gateway.Requester{Addr: netip.MustParseAddr("127.0.0.9"), Source: gateway.SourceUPnP}
	if _, err := r.Core().Add(ctx, other, gateway.Mapping{Protocol: gateway.UDP, ExternalPort: 28500, InternalAddr: other.Addr, InternalPort: 1, Enabled: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Map(ctx, pcp.MapRequest{Protocol: pcp.UDP, InternalPort: 2, SuggestedExternalPort: 28500, Lifetime: time.Hour, PreferFailure: true}); pcpCode(err) != int(pcp.ResultCannotProvideExternal) {
		t.Errorf("PREFER_FAILURE on a held port: %v, want CANNOT_PROVIDE_EXTERNAL", err)
	}
	if moved, err := c.Map(ctx, pcp.MapRequest{Protocol: pcp.UDP, InternalPort: 2, SuggestedExternalPort: 28500, Lifetime: time.Hour}); err != nil || moved.ExternalPort == 28500 {
		t.Errorf("MAP on a held port = %+v, %v; want another port", moved, err)
	}
	// A FILTER naming one remote host becomes the mapping's remote host;
	// a filter on a range cannot be applied and is refused.
	f, err := c.Map(ctx, pcp.MapRequest{Protocol: pcp.UDP, InternalPort: 8001, Lifetime: time.Hour,
		Filters: []pcp.Filter{{Prefix: netip.MustParsePrefix("192.0.2.7/32")}}})
	if err != nil {
		t.Fatalf("MAP with a one-host filter: %v", err)
	}
	if e, _ := r.Core().Get(gateway.Requester{}, gateway.UDP, f.ExternalPort, netip.Addr{}); e.RemoteHost != netip.MustParseAddr("192.0.2.7") {
		t.Errorf("filtered mapping's remote host = %v", e.RemoteHost)
	}
	if _, err := c.Map(ctx, pcp.MapRequest{Protocol: pcp.UDP, InternalPort: 8002, Lifetime: time.Hour,
		Filters: []pcp.Filter{{Prefix: netip.MustParsePrefix("192.0.2.0/24")}}}); pcpCode(err) != int(pcp.ResultUnsuppOption) {
		t.Errorf("MAP with a range filter: %v, want UNSUPP_OPTION", err)
	}
	// Delete with the nonce; deleting again succeeds.
	if err := c.Delete(ctx, pcp.TCP, 8000, m.Nonce); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if err := c.Delete(ctx, pcp.TCP, 8000, m.Nonce); err != nil {
		t.Errorf("second delete: %v", err)
	}
	if _, ok := r.Core().FindByInternal(netip.MustParseAddr("127.0.0.1"), gateway.TCP, 8000); ok {
		t.Error("the mapping survived its deletion")
	}
	// PEER is not supported.
	if _, err := c.Peer(ctx, pcp.PeerRequest{Protocol: pcp.TCP, InternalPort: 1, Lifetime: time.Minute,
		RemoteAddr: netip.MustParseAddr("192.0.2.1"), RemotePort: 80}); pcpCode(err) != int(pcp.ResultUnsuppOpcode) {
		t.Errorf("PEER: %v, want UNSUPP_OPCODE", err)
	}
}

// With PCP off, a PCP client is told to use NAT-PMP.
func TestDaemonPCPDisabled(t *testing.T) {
	cfg := testConfig(t)
	cfg.NATPMP.PCP = false
	r := start(t, cfg)
	c := &pcp.Client{Gateway: r.NATPMPAddrs()[0]}
	_, err := c.Map(context.Background(), pcp.MapRequest{Protocol: pcp.TCP, InternalPort: 8000, Lifetime: time.Hour})
	if pcpCode(err) != int(pcp.ResultUnsuppVersion) {
		t.Errorf("PCP with PCP disabled: %v, want UNSUPP_VERSION", err)
	}
}

// Made-up SOAP action names are counted together, so that a client cannot
// grow the metrics without bound.
func TestMetricsBoundActionNames(t *testing.T) {
	m := newMetrics()
	for i := range 1000 {
		m.request("upnp", "Bogus"+strconv.Itoa(i), 401)
	}
	m.request("upnp", "AddPortMapping", 0)
	if len(m.requests) != 2 || m.requests[requestKey{"upnp", "other", 401}] != 1000 {
		t.Errorf("request series: %v", m.requests)
	}
}

// With an external address pool, a PCP client's mappings are on its
// paired pool address, which the answer names. NAT-PMP tells the client
// that address and maps there too, and a NAT-PMP renewal of the PCP
// mapping renews it where it is, without a second mapping on the
// gateway's own address. UPnP sees the gateway's own address only: the
// pool mappings are in none of its lists, counts or lookups, and its
// delete of the same port cannot reach them.
func TestDaemonPCPPool(t *testing.T) {
	cfg := testConfig(t)
	cfg.NATPMP.PCPExternalPool = []string{"198.51.100.7"}
	r := start(t, cfg)
	ctx := context.Background()
	pool := netip.MustParseAddr("198.51.100.7")
	c := &pcp.Client{Gateway: r.NATPMPAddrs()[0]}
	m, err := c.Map(ctx, pcp.MapRequest{Protocol: pcp.TCP, InternalPort: 8000, SuggestedExternalPort: 28000, Lifetime: time.Hour})
	if err != nil {
		t.Fatalf("PCP MAP: %v", err)
	}
	if m.ExternalAddr != pool || m.ExternalPort != 28000 {
		t.Fatalf("MAP result %+v, want %v:28000", m, pool)
	}
	held, ok := r.Core().FindByInternal(netip.MustParseAddr("127.0.0.1"), gateway.TCP, 8000)
	if !ok || held.ExternalAddr != pool {
		t.Fatalf("table entry %+v, %v: want it on %v", held, ok, pool)
	}
	// NAT-PMP: the client's external address is its pool address.
	if a := r.pmp(t, natpmp.Request{Op: natpmp.OpExternalAddress}); a.Result != natpmp.Success || a.ExternalAddr != pool {
		t.Errorf("NAT-PMP external address: %v %v, want %v", a.Result, a.ExternalAddr, pool)
	}
	// A NAT-PMP renewal of the PCP mapping: the same port, the same
	// mapping, still on the pool address.
	nat := r.pmp(t, natpmp.Request{Op: natpmp.OpMapTCP, InternalPort: 8000, SuggestedExternalPort: 1234, Lifetime: 7200})
	if nat.Result != natpmp.Success || nat.ExternalPort != 28000 {
		t.Errorf("NAT-PMP renewal of the PCP mapping: %v port %d, want port 28000", nat.Result, nat.ExternalPort)
	}
	if n := r.Core().Len(); n != 1 {
		t.Errorf("after the NAT-PMP renewal the table holds %d mappings, want 1: %+v", n, r.Core().All())
	}
	if again, ok := r.Core().FindByInternal(netip.MustParseAddr("127.0.0.1"), gateway.TCP, 8000); !ok || again.ExternalAddr != pool || again.ExternalPort != 28000 {
		t.Errorf("after the NAT-PMP renewal: %+v, want it on %v:28000", again, pool)
	}
	// A new NAT-PMP mapping goes on the pool address too (28000 is
	// taken there: the next port).
	nat = r.pmp(t, natpmp.Request{Op: natpmp.OpMapTCP, InternalPort: 8001, SuggestedExternalPort: 28000, Lifetime: 3600})
	if nat.Result != natpmp.Success || nat.ExternalPort == 28000 {
		t.Errorf("NAT-PMP map of 8001: %v port %d, want another port than 28000", nat.Result, nat.ExternalPort)
	}
	if pm, ok := r.Core().FindByInternal(netip.MustParseAddr("127.0.0.1"), gateway.TCP, 8001); !ok || pm.ExternalAddr != pool {
		t.Errorf("the NAT-PMP mapping %+v is not on %v", pm, pool)
	}
	// UPnP: the same port on the gateway's own address is another
	// mapping, and the only one UPnP sees.
	u := r.igdClient(t, "127.0.0.2")
	if err := u.AddPortMapping(ctx, igd.PortMapping{ExternalPort: 28000, Protocol: "TCP", InternalPort: 80, InternalClient: "127.0.0.2",
		Enabled: true, Description: "own", LeaseDuration: 3600}); err != nil {
		t.Fatalf("UPnP AddPortMapping of 28000 on the own address: %v", err)
	}
	if n := r.Core().OwnAddrLen(); n != 1 {
		t.Errorf("PortMappingNumberOfEntries = %d; want 1 (the pool's are not UPnP's)", n)
	}
	if e, err := u.GetGenericPortMappingEntry(ctx, 0); err != nil || e.Description != "own" {
		t.Errorf("GetGenericPortMappingEntry(0) = %+v, %v; want the own address's mapping", e, err)
	}
	if _, err := u.GetGenericPortMappingEntry(ctx, 1); err == nil {
		t.Error("GetGenericPortMappingEntry(1) answered: the pool mappings are listed over UPnP")
	}
	if e, err := u.GetSpecificPortMappingEntry(ctx, "", 28000, "TCP"); err != nil || e.Description != "own" {
		t.Errorf("GetSpecificPortMappingEntry(28000) = %+v, %v; want the own address's", e, err)
	}
	if l, err := u.GetListOfPortMappings(ctx, 0, 65535, "TCP", false, 100); err != nil || len(l) != 1 || l[0].Description != "own" {
		t.Errorf("GetListOfPortMappings = %+v, %v; want the own address's one", l, err)
	}
	if err := u.DeletePortMapping(ctx, "", 28000, "TCP"); err != nil {
		t.Errorf("UPnP delete of 28000: %v", err)
	}
	if _, ok := r.Core().FindByInternal(netip.MustParseAddr("127.0.0.1"), gateway.TCP, 8000); !ok {
		t.Error("UPnP's delete of the own address's 28000 removed the pool's")
	}
	// A refresh stays on the pool address; PREFER_FAILURE suggesting the
	// own address cannot be served.
	if again, err := c.Refresh(ctx, m, 2*time.Hour); err != nil || again.ExternalAddr != pool || again.ExternalPort != 28000 {
		t.Errorf("refresh = %+v, %v", again, err)
	}
	if _, err := c.Map(ctx, pcp.MapRequest{Protocol: pcp.UDP, InternalPort: 9, SuggestedExternalPort: 29000, SuggestedExternalAddr: netip.MustParseAddr("198.51.100.1"),
		Lifetime: time.Hour, PreferFailure: true}); pcpCode(err) != int(pcp.ResultCannotProvideExternal) {
		t.Errorf("PREFER_FAILURE for the own address: %v, want CANNOT_PROVIDE_EXTERNAL", err)
	}
	if err := c.Delete(ctx, pcp.TCP, 8000, m.Nonce); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if _, ok := r.Core().FindByInternal(netip.MustParseAddr("127.0.0.1"), gateway.TCP, 8000); ok {
		t.Error("the pool mapping survived its deletion")
	}
	if _, ok := r.Core().FindByInternal(netip.MustParseAddr("127.0.0.1"), gateway.TCP, 8001); !ok {
		t.Error("the NAT-PMP mapping went with it")
	}
}
