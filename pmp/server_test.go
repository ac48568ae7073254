package pmp

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

	"golang.org/x/net/ipv4"

	"github.com/portfwd/portfwd/internal/testenv"
	"github.com/portfwd/portfwd/natpmp"
	"github.com/portfwd/portfwd/pcp"
)

// memHandler is a mapping table in a map, standing in for the gateway core.
type memHandler struct {
	mu sync.Mutex
	// ext is the external address; extResult, when not natpmp.Success, is returned
	// instead of it.
	ext       netip.Addr
	extResult natpmp.ResultCode
	// mapResult, when not natpmp.Success, fails every Map call.
	mapResult natpmp.ResultCode
	// maxLifetime caps granted lifetimes when not 0.
	maxLifetime uint32
	m           map[memKey]memMapping
	clients     []netip.Addr // every client address seen, in order
}

type memKey struct {
	client   netip.Addr
	proto    natpmp.Protocol
	internal uint16
}

type memMapping struct {
	external uint16
	lifetime uint32
}

func (h *memHandler) ExternalAddress(_ context.Context, client netip.Addr) (netip.Addr, natpmp.ResultCode) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.clients = append(h.clients, client)
	if h.extResult != natpmp.Success {
		return netip.Addr{}, h.extResult
	}
	return h.ext, natpmp.Success
}

func (h *memHandler) Map(_ context.Context, client netip.Addr, proto natpmp.Protocol, internal, suggested uint16, lifetime uint32) (uint16, uint32, natpmp.ResultCode) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.clients = append(h.clients, client)
	if h.mapResult != natpmp.Success {
		return 0, 0, h.mapResult
	}
	if h.m == nil {
		h.m = map[memKey]memMapping{}
	}
	key := memKey{client, proto, internal}
	if lifetime == 0 {
		for k := range h.m {
			if k.client == client && k.proto == proto && (internal == 0 || k.internal == internal) {
				delete(h.m, k)
			}
		}
		return 0, 0, natpmp.Success
	}
	if internal == 0 {
		return 0, 0, natpmp.NotAuthorized
	}
	if h.maxLifetime != 0 && lifetime > h.maxLifetime {
		lifetime = h.maxLifetime
	}
	if old, ok := h.m[key]; ok {
		h.m[key] = memMapping{old.external, lifetime}
		return old.external, lifetime, natpmp.Success
	}
	taken := func(port uint16) bool {
		for k, v := range h.m {
			if k.proto == proto && v.external == port {
				return true
			}
		}
		return false
	}
	ext := suggested
	if ext == 0 || taken(ext) {
		ext = 0
		for p := 49152; p <= 65535; p++ {
			if !taken(uint16(p)) {
				ext = uint16(p)
				break
			}
		}
		if ext == 0 {
			return 0, 0, natpmp.OutOfResources
		}
	}
	h.m[key] = memMapping{ext, lifetime}
	return ext, lifetime, natpmp.Success
}

func (h *memHandler) get(k memKey) (memMapping, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	m, ok := h.m[k]
	return m, ok
}

func (h *memHandler) seen() []netip.Addr {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]netip.Addr(nil), h.clients...)
}

func (h *memHandler) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.m)
}

// startServer runs s on a fresh 127.0.0.1 socket until the test ends and
// returns the address it listens on.
func startServer(t *testing.T, s *Server, host string) netip.AddrPort {
	t.Helper()
	pc, err := net.ListenPacket("udp4", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.ServePacketConn(ctx, pc) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("ServePacketConn: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("ServePacketConn did not return after its context ended")
		}
		pc.Close()
	})
	return pc.LocalAddr().(*net.UDPAddr).AddrPort()
}

func TestClientAgainstServer(t *testing.T) {
	h := &memHandler{ext: netip.MustParseAddr("198.51.100.20")}
	var epoch atomic.Uint32
	epoch.Store(5000)
	gw := startServer(t, &Server{NATPMP: h, NATPMPEpoch: epoch.Load, Logger: testenv.Logger(t)}, "127.0.0.1")
	c := &natpmp.Client{Gateway: gw, InitialTimeout: 50 * time.Millisecond, MaxTries: 4, Logger: testenv.Logger(t)}
	ctx := context.Background()
	self := netip.MustParseAddr("127.0.0.1")

	ext, err := c.ExternalAddress(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ext.Addr != h.ext || ext.Epoch != 5000 || ext.Rebooted {
		t.Errorf("ExternalAddress = %+v, want %v at epoch 5000", ext, h.ext)
	}

	if err := c.UnmapAll(ctx, natpmp.TCP); err != nil {
		t.Fatalf("UnmapAll: %v", err)
	}
	m, err := c.Map(ctx, natpmp.TCP, 19000, 9000, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	want := natpmp.Mapping{Protocol: natpmp.TCP, InternalPort: 19000, ExternalPort: 9000, Lifetime: time.Hour, Epoch: 5000}
	if m != want {
		t.Errorf("Map = %+v, want %+v", m, want)
	}
	if got, _ := h.get(memKey{self, natpmp.TCP, 19000}); got != (memMapping{9000, 3600}) {
		t.Errorf("server table has %+v", got)
	}

	// Same internal port, another suggestion: the existing mapping is
	// returned (RFC 6886 §3.3), renewed.
	m2, err := c.Map(ctx, natpmp.TCP, 19000, 9999, 2*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if m2.ExternalPort != 9000 || m2.Lifetime != 2*time.Hour {
		t.Errorf("renewal = %+v, want external port 9000 for 2h", m2)
	}

	// Port 9000 is taken for natpmp.TCP but free for natpmp.UDP.
	mu, err := c.Map(ctx, natpmp.UDP, 19001, 9000, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if mu.ExternalPort != 9000 || mu.Protocol != natpmp.UDP {
		t.Errorf("natpmp.UDP Map = %+v", mu)
	}
	mt, err := c.Map(ctx, natpmp.TCP, 19002, 9000, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if mt.ExternalPort == 9000 || mt.ExternalPort == 0 {
		t.Errorf("second natpmp.TCP mapping got external port %d, which is taken", mt.ExternalPort)
	}

	if err := c.Unmap(ctx, natpmp.TCP, 19000); err != nil {
		t.Fatal(err)
	}
	if _, ok := h.get(memKey{self, natpmp.TCP, 19000}); ok {
		t.Error("Unmap left the mapping in place")
	}
	if err := c.Unmap(ctx, natpmp.TCP, 19000); err != nil {
		t.Errorf("deleting a mapping twice: %v, want success (RFC 6886 §3.4)", err)
	}
	if err := c.UnmapAll(ctx, natpmp.TCP); err != nil {
		t.Fatal(err)
	}
	if h.count() != 1 {
		t.Errorf("after UnmapAll(natpmp.TCP) %d mappings remain, want the natpmp.UDP one", h.count())
	}

	// The gateway "reboots": its epoch restarts from 0.
	epoch.Store(3)
	ext, err = c.ExternalAddress(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !ext.Rebooted || !c.LostState() {
		t.Errorf("after the epoch went from 5000 to 3: Rebooted=%v LostState=%v, want both true", ext.Rebooted, c.LostState())
	}

	h.mu.Lock()
	h.mapResult = natpmp.NotAuthorized
	h.mu.Unlock()
	_, err = c.Map(ctx, natpmp.UDP, 5000, 0, time.Minute)
	var re *natpmp.ResultError
	if !errors.As(err, &re) || re.Code != natpmp.NotAuthorized || re.Op != natpmp.OpMapUDP {
		t.Errorf("Map refused by the server: %v, want a natpmp.NotAuthorized *natpmp.ResultError", err)
	}
}

func TestServerInterfaces(t *testing.T) {
	ext := netip.MustParseAddr("192.0.2.1")
	tests := []struct {
		name       string
		interfaces []string
		host       string // address the server listens on and the client sends to
		answered   bool
	}{
		{"no restriction", nil, "127.0.0.1", true},
		{"arrives on a listed interface", []string{"eth-none", "lo"}, "127.0.0.1", true},
		{"arrives on another interface", []string{"eth-none"}, "127.0.0.1", false},
		// 127.0.0.2 reaches lo through its 127/8 route, but is not lo's
		// address: like a LAN packet addressed to the router's WAN address,
		// which RFC 6886 §3.3 says must not be accepted.
		{"addressed to an address the interface does not have", []string{"lo"}, "127.0.0.2", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := &memHandler{ext: ext}
			gw := startServer(t, &Server{NATPMP: h, Interfaces: tt.interfaces, Logger: testenv.Logger(t)}, tt.host)
			c := &natpmp.Client{Gateway: gw, InitialTimeout: 30 * time.Millisecond, MaxTries: 3}
			got, err := c.ExternalAddress(context.Background())
			if tt.answered {
				if err != nil || got.Addr != ext {
					t.Errorf("ExternalAddress = %v, %v; want %v", got.Addr, err, ext)
				}
				return
			}
			if !errors.Is(err, natpmp.ErrNoResponse) {
				t.Errorf("ExternalAddress = %v, %v; want natpmp.ErrNoResponse", got.Addr, err)
			}
			if len(h.seen()) != 0 {
				t.Errorf("the handler was called for a request that should have been dropped")
			}
		})
	}
}

func TestServeErrors(t *testing.T) {
	s := &Server{NATPMP: &memHandler{}, Addr: "127.0.0.1:notaport"}
	if err := s.Serve(context.Background()); err == nil {
		t.Error("Serve on a bad address succeeded")
	}
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	if err := (&Server{}).ServePacketConn(context.Background(), pc); err == nil {
		t.Error("ServePacketConn without a NATPMP handler succeeded")
	}
}

func TestServeListensAndStops(t *testing.T) {
	// Find a free port, then let Serve open it by address.
	lo := netip.MustParseAddr("127.0.0.1")
	addr := netip.AddrPortFrom(lo, testenv.FreePort(t, testenv.Bind{Network: "udp4", Addr: lo}))

	h := &memHandler{ext: netip.MustParseAddr("192.0.2.9")}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- (&Server{NATPMP: h, Addr: addr.String()}).Serve(ctx) }()

	c := &natpmp.Client{Gateway: addr, InitialTimeout: 20 * time.Millisecond, MaxTries: 6}
	got, err := c.ExternalAddress(context.Background())
	// Until Serve has opened the socket the port is closed, and the
	// kernel says so at once (ICMP port unreachable).
	for deadline := time.Now().Add(10 * time.Second); errors.Is(err, natpmp.ErrNotSupported) && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
		got, err = c.ExternalAddress(context.Background())
	}
	if err != nil || got.Addr != h.ext {
		t.Errorf("ExternalAddress via Serve = %v, %v", got.Addr, err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve returned %v after its context ended, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after its context ended")
	}
}

// plainPacketConn hides the *net.UDPConn behind the net.PacketConn
// interface, as a wrapper or a test double would.
type plainPacketConn struct{ net.PacketConn }

func TestServeGenericPacketConn(t *testing.T) {
	h := &memHandler{ext: netip.MustParseAddr("192.0.2.44")}
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()

	err = (&Server{NATPMP: h, Interfaces: []string{"lo"}}).ServePacketConn(context.Background(), plainPacketConn{pc})
	if err == nil || !strings.Contains(err.Error(), "Interfaces") {
		t.Errorf("Interfaces with a socket that cannot tell the interface: %v, want an error", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- (&Server{NATPMP: h}).ServePacketConn(ctx, plainPacketConn{pc}) }()
	c := &natpmp.Client{Gateway: pc.LocalAddr().(*net.UDPAddr).AddrPort(), InitialTimeout: 50 * time.Millisecond, MaxTries: 4}
	got, err := c.ExternalAddress(context.Background())
	if err != nil || got.Addr != h.ext {
		t.Errorf("ExternalAddress = %v, %v; want %v", got.Addr, err, h.ext)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("ServePacketConn: %v", err)
	}
}

func TestCheckIngress(t *testing.T) {
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		testenv.Missing(t, "no lo interface: %v", err)
	}
	client := netip.MustParseAddrPort("127.0.0.1:40000")
	tests := []struct {
		name       string
		interfaces []string
		cm         *ipv4.ControlMessage
		want       bool
	}{
		{"unknown arrival, no restriction", nil, nil, true},
		{"unicast", nil, &ipv4.ControlMessage{Dst: net.IPv4(127, 0, 0, 1), IfIndex: lo.Index}, true},
		{"multicast", nil, &ipv4.ControlMessage{Dst: net.IPv4(224, 0, 0, 1), IfIndex: lo.Index}, false},
		{"limited broadcast", nil, &ipv4.ControlMessage{Dst: net.IPv4bcast, IfIndex: lo.Index}, false},
		{"unknown arrival, restricted", []string{"lo"}, nil, false},
		{"listed interface, its address", []string{"lo"}, &ipv4.ControlMessage{Dst: net.IPv4(127, 0, 0, 1), IfIndex: lo.Index}, true},
		{"listed interface, another address", []string{"lo"}, &ipv4.ControlMessage{Dst: net.IPv4(203, 0, 113, 1), IfIndex: lo.Index}, false},
		{"unlisted interface", []string{"br-lan"}, &ipv4.ControlMessage{Dst: net.IPv4(127, 0, 0, 1), IfIndex: lo.Index}, false},
	}
	var cache ingressCache
	for _, tt := range tests {
		_, why := CheckIngress(tt.cm, tt.interfaces)
		if got := why == ""; got != tt.want {
			t.Errorf("%s from %v: accepted = %v (%s), want %v", tt.name, client, got, why, tt.want)
		}
		// The server's cached check decides alike, first and second time.
		for range 2 {
			if _, why := cache.check(tt.cm, tt.interfaces); (why == "") != tt.want {
				t.Errorf("%s, cached: accepted = %v (%s), want %v", tt.name, why == "", why, tt.want)
			}
		}
	}
}

// A cached view that would drop a request is never trusted: an interface
// that gained its address (or was re-created) since is looked up again.
func TestIngressCacheLooksAgainBeforeDropping(t *testing.T) {
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		testenv.Missing(t, "no lo interface: %v", err)
	}
	var cache ingressCache
	cache.byIx = map[int]ingressEntry{lo.Index: {info: ifaceInfo{name: "lo"}, at: time.Now()}} // stale: no addresses
	cm := &ipv4.ControlMessage{Dst: net.IPv4(127, 0, 0, 1), IfIndex: lo.Index}
	if _, why := cache.check(cm, []string{"lo"}); why != "" {
		t.Fatalf("request to lo's own address dropped on a stale cache: %s", why)
	}
	if got := cache.byIx[lo.Index].info.addrs; !slices.Contains(got, netip.MustParseAddr("127.0.0.1")) {
		t.Errorf("cache after a fresh look-up holds %v, want 127.0.0.1 among them", got)
	}
	// An entry older than ingressTTL is not trusted even to accept: lo
	// is not br-lan, whatever an old look-up said.
	cache.byIx[lo.Index] = ingressEntry{info: ifaceInfo{name: "br-lan", addrs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}}, at: time.Now().Add(-2 * ingressTTL)}
	if _, why := cache.check(cm, []string{"br-lan"}); why == "" {
		t.Errorf("a request on lo was accepted for br-lan on an expired cache entry")
	}
}

// pcpHandler grants every PCP mapping on the suggested port, or the
// internal one, from one external address.
type pcpHandler struct{ ext netip.Addr }

func (h pcpHandler) Map(_ context.Context, req pcp.MapContext) (pcp.MapGrant, pcp.ResultCode) {
	port := req.SuggestedExternalPort
	if port == 0 {
		port = req.InternalPort
	}
	return pcp.MapGrant{ExternalPort: port, ExternalAddr: h.ext}, pcp.ResultSuccess
}

func (pcpHandler) Peer(context.Context, pcp.PeerContext) (pcp.MapGrant, pcp.ResultCode) {
	return pcp.MapGrant{}, pcp.ResultUnsuppOpcode
}

// answers records what Server.Answered reports.
type answers struct {
	mu  sync.Mutex
	got []Answer
}

func (a *answers) add(_ context.Context, x Answer) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.got = append(a.got, x)
}

func (a *answers) last() Answer {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.got) == 0 {
		return Answer{}
	}
	return a.got[len(a.got)-1]
}

// One socket, both protocols: each packet goes to the protocol its version
// byte names, and with one protocol off the other one says so, in the
// form its clients read.
func TestServerDispatchesOnVersion(t *testing.T) {
	ext := netip.MustParseAddr("192.0.2.7")
	ctx := context.Background()
	quick := func(gw netip.AddrPort) (*natpmp.Client, *pcp.Client) {
		return &natpmp.Client{Gateway: gw, InitialTimeout: 50 * time.Millisecond, MaxTries: 4},
			&pcp.Client{Gateway: gw, InitialTimeout: 50 * time.Millisecond, MaxTries: 4}
	}

	t.Run("both", func(t *testing.T) {
		var seen answers
		gw := startServer(t, &Server{NATPMP: &memHandler{ext: ext}, PCP: pcpHandler{ext}, Logger: testenv.Logger(t),
			NATPMPEpoch: func() uint32 { return 1000 }, PCPEpoch: func() uint32 { return 7 }, Answered: seen.add}, "127.0.0.1")
		nc, pc := quick(gw)
		a, err := nc.ExternalAddress(ctx)
		if err != nil || a.Addr != ext || a.Epoch != 1000 {
			t.Fatalf("NAT-PMP external address: %+v, %v", a, err)
		}
		if got := seen.last(); got.Protocol() != "natpmp" || got.Action() != "external_address" || got.Result != 0 || got.Mapping() {
			t.Errorf("answered %+v (%s %s)", got, got.Protocol(), got.Action())
		}
		m, err := pc.Map(ctx, pcp.MapRequest{Protocol: pcp.TCP, InternalPort: 8080, Lifetime: time.Hour})
		if err != nil || m.ExternalAddr != ext || m.ExternalPort != 8080 || m.Epoch != 7 {
			t.Fatalf("PCP MAP: %+v, %v", m, err)
		}
		if got := seen.last(); got.Protocol() != "pcp" || got.Action() != "map" || got.Result != 0 || !got.Mapping() || got.ResultName() != "SUCCESS" {
			t.Errorf("answered %+v (%s %s %s)", got, got.Protocol(), got.Action(), got.ResultName())
		}
	})

	t.Run("PCP off", func(t *testing.T) {
		gw := startServer(t, &Server{NATPMP: &memHandler{ext: ext}, Logger: testenv.Logger(t)}, "127.0.0.1")
		_, pc := quick(gw)
		_, err := pc.Announce(ctx)
		var re *pcp.ResultError
		if !errors.As(err, &re) || re.Code != pcp.ResultUnsuppVersion || re.Version != natpmp.Version {
			t.Errorf("PCP ANNOUNCE to a NAT-PMP-only server: %v, want NAT-PMP's unsupported version", err)
		}
	})

	t.Run("NAT-PMP off", func(t *testing.T) {
		gw := startServer(t, &Server{PCP: pcpHandler{ext}, Logger: testenv.Logger(t)}, "127.0.0.1")
		nc, pc := quick(gw)
		_, err := nc.ExternalAddress(ctx)
		var re *natpmp.ResultError
		if !errors.As(err, &re) || re.Code != natpmp.UnsupportedVersion {
			t.Errorf("NAT-PMP request to a PCP-only server: %v, want unsupported version", err)
		}
		// The epoch counts from the start of serving.
		if e, err := pc.Announce(ctx); err != nil || e > 1 {
			t.Errorf("PCP ANNOUNCE: epoch %d, %v; want about 0", e, err)
		}
	})
}

// Packets that are not requests get nothing: too short, or answers
// themselves. (A client has at most two requests in progress, so a burst
// of them may crowd out a request: the client's retransmission gets it
// through.)
func TestServerAnswersRequestsOnly(t *testing.T) {
	h := &memHandler{ext: netip.MustParseAddr("192.0.2.8")}
	var seen answers
	gw := startServer(t, &Server{NATPMP: h, PCP: pcpHandler{h.ext}, Answered: seen.add, Logger: testenv.Logger(t)}, "127.0.0.1")
	c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(gw))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, pkt := range [][]byte{{2}, {0}, natpmp.AppendResponse(nil, natpmp.Response{Op: natpmp.OpExternalAddress})} {
		c.Write(pkt)
	}
	nc := &natpmp.Client{Gateway: gw, InitialTimeout: 50 * time.Millisecond, MaxTries: 5}
	if a, err := nc.ExternalAddress(context.Background()); err != nil || a.Addr != h.ext {
		t.Fatalf("ExternalAddress: %+v, %v", a, err)
	}
	seen.mu.Lock()
	defer seen.mu.Unlock()
	for _, a := range seen.got {
		if a.Action() != "external_address" {
			t.Errorf("answered % x with % x", a.Request, a.Response)
		}
	}
	for _, c := range h.seen() {
		if c != netip.MustParseAddr("127.0.0.1") {
			t.Errorf("the handler saw %v", c)
		}
	}
}
