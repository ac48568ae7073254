package natpmp

import (
	"bytes"
	"context"
	"net/netip"
	"sync"
	"testing"
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
