package natpmp

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/ipv4"

	"github.com/portfwd/portfwd/internal/testenv"
)

// memHandler is a mapping table in a map, standing in for the gateway core.
type memHandler struct {
	mu sync.Mutex
	// ext is the external address; extResult, when not Success, is returned
	// instead of it.
	ext       netip.Addr
	extResult ResultCode
	// mapResult, when not Success, fails every Map call.
	mapResult ResultCode
	// maxLifetime caps granted lifetimes when not 0.
	maxLifetime uint32
	m           map[memKey]memMapping
	clients     []netip.Addr // every client address seen, in order
}

type memKey struct {
	client   netip.Addr
	proto    Protocol
	internal uint16
}

type memMapping struct {
	external uint16
	lifetime uint32
}

func (h *memHandler) ExternalAddress(_ context.Context, client netip.Addr) (netip.Addr, ResultCode) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.clients = append(h.clients, client)
	if h.extResult != Success {
		return netip.Addr{}, h.extResult
	}
	return h.ext, Success
}

func (h *memHandler) Map(_ context.Context, client netip.Addr, proto Protocol, internal, suggested uint16, lifetime uint32) (uint16, uint32, ResultCode) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.clients = append(h.clients, client)
	if h.mapResult != Success {
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
		return 0, 0, Success
	}
	if internal == 0 {
		return 0, 0, NotAuthorized
	}
	if h.maxLifetime != 0 && lifetime > h.maxLifetime {
		lifetime = h.maxLifetime
	}
	if old, ok := h.m[key]; ok {
		h.m[key] = memMapping{old.external, lifetime}
		return old.external, lifetime, Success
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
			return 0, 0, OutOfResources
		}
	}
	h.m[key] = memMapping{ext, lifetime}
	return ext, lifetime, Success
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

func TestHandlePacket(t *testing.T) {
	client := netip.MustParseAddr("10.77.0.2")
	const epoch = 0x854
	tests := []struct {
		name    string
		h       *memHandler
		client  netip.Addr
		req     string
		want    string // "" means dropped
		wantMap map[memKey]memMapping
	}{
		{
			name: "external address",
			h:    &memHandler{ext: netip.MustParseAddr("203.0.113.1")},
			req:  "00 00",
			want: "00 80 0000 00000854 cb007101",
		},
		{
			name: "external address failure carries 0.0.0.0",
			h:    &memHandler{ext: netip.MustParseAddr("203.0.113.1"), extResult: NotAuthorized},
			req:  "00 00",
			want: "00 80 0002 00000854 00000000",
		},
		{
			name: "no external address is a network failure",
			h:    &memHandler{ext: netip.IPv4Unspecified()},
			req:  "00 00",
			want: "00 80 0003 00000854 00000000",
		},
		{
			name:    "map TCP (captured request)",
			h:       &memHandler{},
			req:     "00 02 0000 4a38 2328 00000e10",
			want:    "00 82 0000 00000854 4a38 2328 00000e10",
			wantMap: map[memKey]memMapping{{client, TCP, 19000}: {9000, 3600}},
		},
		{
			name:    "granted lifetime is the handler's",
			h:       &memHandler{maxLifetime: 120},
			req:     "00 01 0000 0035 0035 00000e10",
			want:    "00 81 0000 00000854 0035 0035 00000078",
			wantMap: map[memKey]memMapping{{client, UDP, 53}: {53, 120}},
		},
		{
			name:    "the client address is unmapped from IPv6",
			h:       &memHandler{},
			client:  netip.MustParseAddr("::ffff:10.77.0.2"),
			req:     "00 01 0000 0035 0035 00000e10",
			want:    "00 81 0000 00000854 0035 0035 00000e10",
			wantMap: map[memKey]memMapping{{client, UDP, 53}: {53, 3600}},
		},
		{
			name: "delete answers port 0 and lifetime 0 (captured request)",
			h:    &memHandler{m: map[memKey]memMapping{{client, TCP, 19000}: {9000, 3600}}},
			req:  "00 02 0000 4a38 2328 00000000",
			want: "00 82 0000 00000854 4a38 0000 00000000",
		},
		{
			name:    "delete all of one protocol",
			h:       &memHandler{m: map[memKey]memMapping{{client, TCP, 1}: {1, 60}, {client, TCP, 2}: {2, 60}, {client, UDP, 1}: {1, 60}}},
			req:     "00 02 0000 0000 0000 00000000",
			want:    "00 82 0000 00000854 0000 0000 00000000",
			wantMap: map[memKey]memMapping{{client, UDP, 1}: {1, 60}},
		},
		{
			name: "refusal keeps the internal port, zeroes the lifetime",
			h:    &memHandler{mapResult: OutOfResources},
			req:  "00 01 0000 1f90 1f90 00001c20",
			want: "00 81 0004 00000854 1f90 0000 00000000",
		},
		{
			name: "version 1 gets unsupported version with opcode 128",
			h:    &memHandler{},
			req:  "01 00",
			want: "00 80 0001 00000854",
		},
		{
			name: "a PCP request gets unsupported version",
			h:    &memHandler{},
			req:  "02 01 0000 00000258 00000000000000000000ffff0a4d0002",
			want: "00 80 0001 00000854",
		},
		{
			name: "unknown opcode is echoed with result 5",
			h:    &memHandler{},
			req:  "00 03",
			want: "00 83 0005 00000854",
		},
		{
			name: "long unknown opcode keeps its tail",
			h:    &memHandler{},
			req:  "00 7f 0000 11111111 22222222 33",
			want: "00 ff 0005 00000854 22222222 33",
		},
		{name: "one byte is dropped", h: &memHandler{}, req: "00"},
		{name: "short map request is dropped", h: &memHandler{}, req: "00 02 0000 4a38 2328 00000e"},
		{name: "a response is dropped", h: &memHandler{}, req: "00 80 0000 00000854 cb007101"},
		{name: "a PCP response is dropped", h: &memHandler{}, req: "02 81 0000 00000258"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := client
			if tt.client.IsValid() {
				c = tt.client
			}
			got, ok := HandlePacket(context.Background(), mustHex(t, tt.req), c, tt.h, epoch)
			if tt.want == "" {
				if ok {
					t.Fatalf("HandlePacket(%s) replied % x, want drop", tt.req, got)
				}
				return
			}
			if !ok {
				t.Fatalf("HandlePacket(%s) dropped it, want % x", tt.req, mustHex(t, tt.want))
			}
			if want := mustHex(t, tt.want); !bytes.Equal(got, want) {
				t.Errorf("HandlePacket(%s) = % x, want % x", tt.req, got, want)
			}
			if tt.wantMap != nil {
				for k, want := range tt.wantMap {
					if got, ok := tt.h.get(k); !ok || got != want {
						t.Errorf("mapping %+v = %+v (present %v), want %+v", k, got, ok, want)
					}
				}
				if n := tt.h.count(); n != len(tt.wantMap) {
					t.Errorf("%d mappings, want %d", n, len(tt.wantMap))
				}
			}
			for _, seen := range tt.h.seen() {
				if seen != client {
					t.Errorf("handler saw client %v, want %v", seen, client)
				}
			}
		})
	}
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
	gw := startServer(t, &Server{Handler: h, Epoch: epoch.Load, Logger: testLogger(t)}, "127.0.0.1")
	c := &Client{Gateway: gw, InitialTimeout: 50 * time.Millisecond, MaxTries: 4, Logger: testLogger(t)}
	ctx := context.Background()
	self := netip.MustParseAddr("127.0.0.1")

	ext, err := c.ExternalAddress(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ext.Addr != h.ext || ext.Epoch != 5000 || ext.Rebooted {
		t.Errorf("ExternalAddress = %+v, want %v at epoch 5000", ext, h.ext)
	}

	if err := c.UnmapAll(ctx, TCP); err != nil {
		t.Fatalf("UnmapAll: %v", err)
	}
	m, err := c.Map(ctx, TCP, 19000, 9000, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	want := Mapping{Protocol: TCP, InternalPort: 19000, ExternalPort: 9000, Lifetime: time.Hour, Epoch: 5000}
	if m != want {
		t.Errorf("Map = %+v, want %+v", m, want)
	}
	if got, _ := h.get(memKey{self, TCP, 19000}); got != (memMapping{9000, 3600}) {
		t.Errorf("server table has %+v", got)
	}

	// Same internal port, another suggestion: the existing mapping is
	// returned (RFC 6886 §3.3), renewed.
	m2, err := c.Map(ctx, TCP, 19000, 9999, 2*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if m2.ExternalPort != 9000 || m2.Lifetime != 2*time.Hour {
		t.Errorf("renewal = %+v, want external port 9000 for 2h", m2)
	}

	// Port 9000 is taken for TCP but free for UDP.
	mu, err := c.Map(ctx, UDP, 19001, 9000, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if mu.ExternalPort != 9000 || mu.Protocol != UDP {
		t.Errorf("UDP Map = %+v", mu)
	}
	mt, err := c.Map(ctx, TCP, 19002, 9000, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if mt.ExternalPort == 9000 || mt.ExternalPort == 0 {
		t.Errorf("second TCP mapping got external port %d, which is taken", mt.ExternalPort)
	}

	if err := c.Unmap(ctx, TCP, 19000); err != nil {
		t.Fatal(err)
	}
	if _, ok := h.get(memKey{self, TCP, 19000}); ok {
		t.Error("Unmap left the mapping in place")
	}
	if err := c.Unmap(ctx, TCP, 19000); err != nil {
		t.Errorf("deleting a mapping twice: %v, want success (RFC 6886 §3.4)", err)
	}
	if err := c.UnmapAll(ctx, TCP); err != nil {
		t.Fatal(err)
	}
	if h.count() != 1 {
		t.Errorf("after UnmapAll(TCP) %d mappings remain, want the UDP one", h.count())
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
	h.mapResult = NotAuthorized
	h.mu.Unlock()
	_, err = c.Map(ctx, UDP, 5000, 0, time.Minute)
	var re *ResultError
	if !errors.As(err, &re) || re.Code != NotAuthorized || re.Op != OpMapUDP {
		t.Errorf("Map refused by the server: %v, want a NotAuthorized *ResultError", err)
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
			gw := startServer(t, &Server{Handler: h, Interfaces: tt.interfaces, Logger: testLogger(t)}, tt.host)
			c := &Client{Gateway: gw, InitialTimeout: 30 * time.Millisecond, MaxTries: 3}
			got, err := c.ExternalAddress(context.Background())
			if tt.answered {
				if err != nil || got.Addr != ext {
					t.Errorf("ExternalAddress = %v, %v; want %v", got.Addr, err, ext)
				}
				return
			}
			if !errors.Is(err, ErrNoResponse) {
				t.Errorf("ExternalAddress = %v, %v; want ErrNoResponse", got.Addr, err)
			}
			if len(h.seen()) != 0 {
				t.Errorf("the handler was called for a request that should have been dropped")
			}
		})
	}
}

func TestServeErrors(t *testing.T) {
	s := &Server{Handler: &memHandler{}, Addr: "127.0.0.1:notaport"}
	if err := s.Serve(context.Background()); err == nil {
		t.Error("Serve on a bad address succeeded")
	}
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	if err := (&Server{}).ServePacketConn(context.Background(), pc); err == nil {
		t.Error("ServePacketConn without a Handler succeeded")
	}
}

func TestServeListensAndStops(t *testing.T) {
	// Find a free port, then let Serve open it by address.
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().(*net.UDPAddr).AddrPort()
	pc.Close()

	h := &memHandler{ext: netip.MustParseAddr("192.0.2.9")}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- (&Server{Handler: h, Addr: addr.String()}).Serve(ctx) }()

	c := &Client{Gateway: addr, InitialTimeout: 20 * time.Millisecond, MaxTries: 6}
	got, err := c.ExternalAddress(context.Background())
	// Until Serve has opened the socket the port is closed, and the
	// kernel says so at once (ICMP port unreachable).
	for deadline := time.Now().Add(10 * time.Second); errors.Is(err, ErrNotSupported) && time.Now().Before(deadline); {
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

// TestHandlePacketMatchesMiniupnpd replays the requests natpmpc sent to
// miniupnpd in the natlab capture and expects, byte for byte, the replies
// miniupnpd gave, given the same table state and epoch.
func TestHandlePacketMatchesMiniupnpd(t *testing.T) {
	pkts := readHexCapture(t, "testdata/natpmp_exchange.hex")
	h := &memHandler{ext: netip.MustParseAddr("203.0.113.1")}
	client := netip.MustParseAddr("10.77.0.2") // natlab's LAN host
	for i := 0; i+1 < len(pkts); i += 2 {
		req, want := pkts[i], pkts[i+1]
		if req.response || !want.response {
			t.Fatalf("capture packets %d and %d are not a request and its response", i, i+1)
		}
		epoch, err := ParseResponse(want.payload)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := HandlePacket(context.Background(), req.payload, client, h, epoch.Epoch)
		if !ok || !bytes.Equal(got, want.payload) {
			t.Errorf("%s: HandlePacket(% x) = % x, %v; miniupnpd answered % x", req.title, req.payload, got, ok, want.payload)
		}
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

	err = (&Server{Handler: h, Interfaces: []string{"lo"}}).ServePacketConn(context.Background(), plainPacketConn{pc})
	if err == nil || !strings.Contains(err.Error(), "Interfaces") {
		t.Errorf("Interfaces with a socket that cannot tell the interface: %v, want an error", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- (&Server{Handler: h}).ServePacketConn(ctx, plainPacketConn{pc}) }()
	c := &Client{Gateway: pc.LocalAddr().(*net.UDPAddr).AddrPort(), InitialTimeout: 50 * time.Millisecond, MaxTries: 4}
	got, err := c.ExternalAddress(context.Background())
	if err != nil || got.Addr != h.ext {
		t.Errorf("ExternalAddress = %v, %v; want %v", got.Addr, err, h.ext)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("ServePacketConn: %v", err)
	}
}

func TestServerAccept(t *testing.T) {
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
	for _, tt := range tests {
		s := &Server{Interfaces: tt.interfaces}
		if got := s.accept(tt.cm, client, testLogger(t)); got != tt.want {
			t.Errorf("%s: accept = %v, want %v", tt.name, got, tt.want)
		}
	}
}
