package portmap

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portfwd/portfwd/igd"
	"github.com/portfwd/portfwd/igd/igdtest"
	"github.com/portfwd/portfwd/internal/testenv"
	"github.com/portfwd/portfwd/natpmp"
	"github.com/portfwd/portfwd/pmp"
	"github.com/portfwd/portfwd/ssdp"
)

// Every test here talks to fakes on 127.0.0.1 with explicit addresses, and
// sets NoDefaultGateway and NoMulticast: nothing may reach a real router.

func testOptions(t *testing.T) Options {
	return Options{NoDefaultGateway: true, NoMulticast: true, StateDir: t.TempDir(), RequestTimeout: 2 * time.Second}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func discoverOne(t *testing.T, o Options) Gateway {
	t.Helper()
	gws, err := Discover(ctxT(t), o)
	if err != nil {
		t.Fatalf("Discover: %v", err)
	}
	return gws[0]
}

func TestDiscoverByGatewayURLAndMapLifecycle(t *testing.T) {
	srv := igdtest.NewServer(t, igdtest.Options{Version: 2, ExternalIP: "198.51.100.7"})
	o := testOptions(t)
	o.GatewayURL = srv.Location
	g := discoverOne(t, o)
	if g.Method() != UPnP || g.Addr() != srv.ControlURL {
		t.Fatalf("gateway = %s %s, want upnp %s", g.Method(), g.Addr(), srv.ControlURL)
	}
	if g.LocalAddr() != netip.MustParseAddr("127.0.0.1") {
		t.Errorf("LocalAddr = %v, want 127.0.0.1 (the address that reaches the fake router)", g.LocalAddr())
	}
	ctx := ctxT(t)
	ip, err := g.ExternalIP(ctx)
	if err != nil || ip.String() != "198.51.100.7" {
		t.Fatalf("ExternalIP = %v, %v", ip, err)
	}

	m, err := g.Add(ctx, Request{Protocol: TCP, InternalPort: 8080, ExternalPort: 18080, Description: "web", Lease: time.Hour})
	if err != nil {
		t.Fatalf("Add: %v", err)
	}
	if m.ExternalPort != 18080 || m.InternalClient != "127.0.0.1" || m.InternalPort != 8080 || m.Method != UPnP ||
		m.ExternalAddr.String() != "198.51.100.7" || m.Permanent {
		t.Errorf("Add returned %+v", m)
	}
	// The zero InternalClient means this host; the zero ExternalPort means
	// the internal port.
	if _, err := g.Add(ctx, Request{Protocol: UDP, InternalPort: 9000}); err != nil {
		t.Fatalf("Add UDP: %v", err)
	}
	list, err := g.List(ctx, nil)
	if err != nil || len(list) != 2 {
		t.Fatalf("List = %+v, %v", list, err)
	}

	newPort := uint16(8081)
	desc := "web2"
	m, err = g.Edit(ctx, Key{Protocol: TCP, ExternalPort: 18080}, Change{InternalPort: &newPort, Description: &desc})
	if err != nil || m.InternalPort != 8081 || m.Description != "web2" || m.ExternalPort != 18080 {
		t.Fatalf("Edit = %+v, %v", m, err)
	}
	if got := srv.Mappings(); len(got) != 2 {
		t.Fatalf("router table after edit: %+v", got)
	}

	if err := g.Delete(ctx, Key{Protocol: TCP, ExternalPort: 18080}); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	// A refusal carries the router's code and a sentence, and is a RefusedError.
	err = g.Delete(ctx, Key{Protocol: TCP, ExternalPort: 18080})
	var re *RefusedError
	if !errors.As(err, &re) || re.Code != igd.CodeNoSuchEntryInArray || re.Text == "" {
		t.Fatalf("second Delete: %v, want a RefusedError with 714", err)
	}
	gone, err := g.DeleteRange(ctx, UDP, 1, 65535)
	if err != nil {
		t.Fatalf("DeleteRange: %v", err)
	}
	if len(srv.Mappings()) != 0 || len(gone) != 1 || gone[0].ExternalPort != 9000 || gone[0].Protocol != UDP {
		t.Errorf("DeleteRange left %+v, reported %+v", srv.Mappings(), gone)
	}
}

func TestAddConflictNamesTheHolder(t *testing.T) {
	srv := igdtest.NewServer(t, igdtest.Options{Version: 1, ExternalIP: "198.51.100.7",
		Mappings: []igd.PortMapping{{ExternalPort: 18080, Protocol: "TCP", InternalPort: 80, InternalClient: "192.168.1.7", Enabled: true, Description: "nas"}}})
	o := testOptions(t)
	o.GatewayURL = srv.Location
	g := discoverOne(t, o)
	_, err := g.Add(ctxT(t), Request{Protocol: TCP, InternalPort: 8080, ExternalPort: 18080})
	var re *RefusedError
	var ee *ExistsError
	if !errors.As(err, &re) || !errors.As(err, &ee) {
		t.Fatalf("Add over another client's port: %v, want a RefusedError wrapping an ExistsError", err)
	}
	if ee.Existing.InternalClient != "192.168.1.7" || ee.Existing.Description != "nas" || !strings.Contains(re.Text, "192.168.1.7:80") {
		t.Errorf("the refusal should name the holder: %q (%+v)", re.Text, ee.Existing)
	}
	if slices.Contains(srv.Actions(), "AddPortMapping") {
		t.Errorf("an AddPortMapping was sent for a port known to be taken: %v", srv.Actions())
	}
}

func TestInfoFromDescriptionAndActions(t *testing.T) {
	srv := igdtest.NewServer(t, igdtest.Options{Version: 2, ExternalIP: "198.51.100.7"})
	o := testOptions(t)
	o.GatewayURL = srv.Location
	info, err := discoverOne(t, o).Info(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	root, _ := srv.Root()
	if info.FriendlyName != root.Device.FriendlyName || info.ConnectionStatus != "Connected" ||
		info.ExternalIP.String() != "198.51.100.7" || info.Location != srv.Location || len(info.Services) == 0 {
		t.Errorf("Info = %+v", info)
	}
}

// fakeSSDP answers every M-SEARCH on a loopback port with one reply.
func fakeSSDP(t *testing.T, location string, delay time.Duration) netip.AddrPort {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			st, _, err := ssdp.ParseSearch(buf[:n])
			if err != nil {
				continue
			}
			reply := ssdp.AppendResponse(nil, ssdp.Response{Location: location, ST: st, USN: "uuid:fake::" + st, Server: "fake/1 UPnP/1.1 test/1", MaxAge: time.Minute})
			time.AfterFunc(delay, func() { pc.WriteTo(reply, from) })
		}
	}()
	return pc.LocalAddr().(*net.UDPAddr).AddrPort()
}

func TestDiscoverBySSDP(t *testing.T) {
	srv := igdtest.NewServer(t, igdtest.Options{Version: 1, ExternalIP: "198.51.100.7"})
	o := testOptions(t)
	o.SSDPUnicast = []netip.AddrPort{fakeSSDP(t, srv.Location, 0)}
	var progress []string
	var mu sync.Mutex
	o.Progress = func(p Progress) { mu.Lock(); progress = append(progress, p.Message); mu.Unlock() }
	g := discoverOne(t, o)
	if g.Addr() != srv.ControlURL {
		t.Fatalf("found %s, want %s", g.Addr(), srv.ControlURL)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(progress) < 2 || !strings.Contains(progress[0], "searching") || !strings.Contains(progress[len(progress)-1], "found upnp") {
		t.Errorf("progress = %q", progress)
	}
}

func TestDiscoverNothingAnswers(t *testing.T) {
	// A UDP port with nobody behind it: SSDP gets no answer and discovery
	// ends with the context, saying what it tried.
	lo := netip.MustParseAddr("127.0.0.1")
	dead := netip.AddrPortFrom(lo, testenv.FreePort(t, testenv.Bind{Network: "udp4", Addr: lo}))
	o := testOptions(t)
	o.SSDPUnicast = []netip.AddrPort{dead}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := Discover(ctx, o)
	if !errors.Is(err, ErrNoGateway) || !strings.Contains(err.Error(), "SSDP") {
		t.Fatalf("err = %v, want ErrNoGateway naming SSDP", err)
	}
	if time.Since(start) > 2*time.Second {
		t.Errorf("Discover took %v after its context ended", time.Since(start))
	}
	if _, err := Discover(ctxT(t), Options{NoDefaultGateway: true, NoMulticast: true, Methods: []Method{UPnP}}); !errors.Is(err, ErrNoGateway) {
		t.Errorf("nothing to try: %v", err)
	}
}

// pmpHandler is a NAT-PMP router in memory.
type pmpHandler struct {
	mu    sync.Mutex
	maps  map[[2]uint16]uint16 // (proto, internal) -> external
	epoch atomic.Uint32        // seconds since start of epoch, advanced by the test
}

func (h *pmpHandler) ExternalAddress(ctx context.Context, client netip.Addr) (netip.Addr, natpmp.ResultCode) {
	return netip.MustParseAddr("198.51.100.9"), natpmp.Success
}

func (h *pmpHandler) Map(ctx context.Context, client netip.Addr, proto natpmp.Protocol, internal, ext uint16, life uint32) (uint16, uint32, natpmp.ResultCode) {
	h.mu.Lock()
	defer h.mu.Unlock()
	k := [2]uint16{uint16(proto), internal}
	if life == 0 {
		delete(h.maps, k)
		return 0, 0, natpmp.Success
	}
	for kk, e := range h.maps {
		if e == ext && kk != k {
			ext++ // taken: offer the next port, as routers do
		}
	}
	h.maps[k] = ext
	return ext, life, natpmp.Success
}

func startPMP(t *testing.T) (netip.AddrPort, *pmpHandler) {
	h := &pmpHandler{maps: map[[2]uint16]uint16{}}
	h.epoch.Store(1000)
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &pmp.Server{NATPMP: h, NATPMPEpoch: h.epoch.Load}
	done := make(chan struct{})
	go func() { s.ServePacketConn(ctx, pc); close(done) }()
	t.Cleanup(func() { cancel(); pc.Close(); <-done })
	return pc.LocalAddr().(*net.UDPAddr).AddrPort(), h
}

func TestNATPMPGateway(t *testing.T) {
	addr, h := startPMP(t)
	o := testOptions(t)
	o.NATPMPServer = addr
	o.Methods = []Method{NATPMP}
	g := discoverOne(t, o)
	ctx := ctxT(t)
	if g.Method() != NATPMP || g.Addr() != addr.String() {
		t.Fatalf("gateway %s %s", g.Method(), g.Addr())
	}
	info, err := g.Info(ctx)
	if err != nil || info.ExternalIP.String() != "198.51.100.9" || info.Epoch == 0 {
		t.Fatalf("Info = %+v, %v", info, err)
	}
	m, err := g.Add(ctx, Request{Protocol: TCP, InternalPort: 8080, ExternalPort: 18080, Description: "x"})
	if err != nil || m.ExternalPort != 18080 || m.Lease != DefaultNATPMPLease {
		t.Fatalf("Add = %+v, %v", m, err)
	}
	if _, err := g.List(ctx, nil); !errors.Is(err, ErrNotSupported) {
		t.Errorf("List over NAT-PMP: %v, want ErrNotSupported", err)
	}
	// A port the router cannot give is refused unless Any is set, and the
	// mapping it offered instead is not left behind.
	h.mu.Lock()
	h.maps[[2]uint16{uint16(natpmp.TCP), 7000}] = 18081
	h.mu.Unlock()
	if _, err := g.Add(ctx, Request{Protocol: TCP, InternalPort: 8081, ExternalPort: 18081}); err == nil || !strings.Contains(err.Error(), "--any") {
		t.Errorf("Add of a taken port: %v", err)
	}
	h.mu.Lock()
	_, left := h.maps[[2]uint16{uint16(natpmp.TCP), 8081}]
	h.mu.Unlock()
	if left {
		t.Error("the port offered instead was not given back")
	}
	if m, err := g.Add(ctx, Request{Protocol: TCP, InternalPort: 8081, ExternalPort: 18081, Any: true}); err != nil || m.ExternalPort == 18081 {
		t.Errorf("Add --any = %+v, %v", m, err)
	}
	// NAT-PMP maps only to the asking host.
	if _, err := g.Add(ctx, Request{Protocol: TCP, InternalPort: 1, InternalClient: netip.MustParseAddr("192.168.1.50")}); err == nil {
		t.Error("NAT-PMP Add for another host succeeded")
	}

	// Edit has no NAT-PMP request: the mapping is replaced, keeping its
	// external port, and now leads to the new internal port.
	newInternal := uint16(8090)
	em, err := g.Edit(ctx, Key{Protocol: TCP, ExternalPort: 18080}, Change{InternalPort: &newInternal})
	if err != nil || em.ExternalPort != 18080 || em.InternalPort != 8090 {
		t.Fatalf("Edit = %+v, %v", em, err)
	}
	h.mu.Lock()
	_, oldThere := h.maps[[2]uint16{uint16(natpmp.TCP), 8080}]
	ext, newThere := h.maps[[2]uint16{uint16(natpmp.TCP), 8090}]
	h.mu.Unlock()
	if oldThere || !newThere || ext != 18080 {
		t.Fatalf("after Edit: old mapping present %v, new %v at %d", oldThere, newThere, ext)
	}
	newInternal = 8080 // and back, for the delete below
	if _, err := g.Edit(ctx, Key{Protocol: TCP, ExternalPort: 18080}, Change{InternalPort: &newInternal}); err != nil {
		t.Fatal(err)
	}

	// A new gateway value (a later process) deletes by external port thanks
	// to the state directory: NAT-PMP itself deletes by internal port.
	g2 := discoverOne(t, o)
	if err := g2.Delete(ctx, Key{Protocol: TCP, ExternalPort: 18080}); err != nil {
		t.Fatal(err)
	}
	h.mu.Lock()
	_, still := h.maps[[2]uint16{uint16(natpmp.TCP), 8080}]
	h.mu.Unlock()
	if still {
		t.Error("Delete by external port did not remove internal port 8080's mapping")
	}
}

func TestUPnPPreferredOverNATPMPWhenBothAnswer(t *testing.T) {
	srv := igdtest.NewServer(t, igdtest.Options{Version: 2, ExternalIP: "198.51.100.7"})
	pmp, _ := startPMP(t)
	o := testOptions(t)
	o.NATPMPServer = pmp
	// SSDP answers 50 ms after NAT-PMP: within the grace period.
	o.SSDPUnicast = []netip.AddrPort{fakeSSDP(t, srv.Location, 50*time.Millisecond)}
	g := discoverOne(t, o)
	if g.Method() != UPnP {
		t.Fatalf("got %s, want the UPnP gateway", g.Method())
	}
	o.Wait = true
	ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
	defer cancel()
	gws, err := Discover(ctx, o)
	if err != nil || len(gws) != 2 || gws[0].Method() != UPnP || gws[1].Method() != NATPMP {
		t.Fatalf("Wait: %d gateways, %v", len(gws), err)
	}
}

func TestDiscoveryCache(t *testing.T) {
	st := newStore(t.TempDir(), nil)
	gw := netip.MustParseAddr("192.0.2.1")
	if st.cachedLocation(gw) != "" {
		t.Fatal("empty cache returned a location")
	}
	st.rememberLocation(gw, "http://192.0.2.1:5000/rootDesc.xml")
	st.rememberLocation(netip.MustParseAddr("192.0.2.99"), "http://192.0.2.99/d.xml")
	if got := newStore(st.dir, nil).cachedLocation(gw); got != "http://192.0.2.1:5000/rootDesc.xml" {
		t.Errorf("cachedLocation = %q", got)
	}
	if got := st.cachedLocation(netip.MustParseAddr("192.0.2.2")); got != "" {
		t.Errorf("another default gateway got %q", got)
	}
}
