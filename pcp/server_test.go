package pcp

import (
	"bytes"
	"context"
	"net/netip"
	"reflect"
	"slices"
	"sync"
	"testing"
)

// memHandler is a mapping table in a map, standing in for the gateway core.
// It implements the Handler contract: nonces are checked, refreshes keep
// their port, PREFER_FAILURE is honoured.
type memHandler struct {
	ext netip.Addr

	mu sync.Mutex
	// result, when not SUCCESS, fails every call (with errLifetime).
	result      ResultCode
	errLifetime uint32
	// noFilters makes the handler refuse FILTER options, as a NAT that
	// cannot filter must.
	noFilters bool
	// ignorePreferFailure makes it hand out another port anyway: a bug
	// HandlePacket must catch.
	ignorePreferFailure bool
	// noAddr makes it succeed without an external address: another bug.
	noAddr bool
	// peers enables PEER.
	peers bool
	// taken are external ports in use by something else.
	taken map[uint16]bool
	m     map[memKey]*memMapping
	calls []MapContext
}

type memKey struct {
	internal netip.Addr
	proto    Protocol
	port     uint16
}

type memMapping struct {
	nonce    Nonce
	ext      uint16
	lifetime uint32
	filters  []Filter
}

func newMemHandler() *memHandler {
	return &memHandler{ext: extAddr, m: map[memKey]*memMapping{}, taken: map[uint16]bool{}}
}

func (h *memHandler) Map(_ context.Context, req MapContext) (MapGrant, ResultCode) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.calls = append(h.calls, req)
	if h.result != ResultSuccess {
		return MapGrant{Lifetime: h.errLifetime}, h.result
	}
	if len(req.Filters) > 0 && h.noFilters {
		return MapGrant{}, ResultUnsuppOption
	}
	key := memKey{req.InternalAddr(), req.Protocol, req.InternalPort}
	cur := h.m[key]
	if cur != nil && cur.nonce != req.Nonce {
		return MapGrant{}, ResultNotAuthorized
	}
	if req.Lifetime == 0 {
		delete(h.m, key)
		if cur == nil {
			return MapGrant{}, ResultSuccess
		}
		return MapGrant{ExternalPort: cur.ext, ExternalAddr: h.ext}, ResultSuccess
	}
	if cur == nil {
		port := cmpOr16(req.SuggestedExternalPort, req.InternalPort)
		for h.inUse(port) {
			if req.PreferFailure && !h.ignorePreferFailure {
				return MapGrant{}, ResultCannotProvideExternal
			}
			port++
		}
		cur = &memMapping{nonce: req.Nonce, ext: port}
		h.m[key] = cur
	}
	cur.lifetime = req.Lifetime
	cur.filters = req.Filters
	g := MapGrant{ExternalPort: cur.ext, ExternalAddr: h.ext}
	if h.noAddr {
		g.ExternalAddr = netip.Addr{}
	}
	return g, ResultSuccess
}

func (h *memHandler) inUse(port uint16) bool {
	if h.taken[port] {
		return true
	}
	for _, m := range h.m {
		if m.ext == port {
			return true
		}
	}
	return false
}

func (h *memHandler) Peer(_ context.Context, req PeerContext) (MapGrant, ResultCode) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.calls = append(h.calls, req.MapContext)
	if !h.peers {
		return MapGrant{}, ResultUnsuppOpcode
	}
	return MapGrant{ExternalPort: req.InternalPort + 1, ExternalAddr: h.ext, Lifetime: 7200}, ResultSuccess
}

func (h *memHandler) lastCall(t *testing.T) MapContext {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.calls) == 0 {
		t.Fatal("the handler was not called")
	}
	return h.calls[len(h.calls)-1]
}

func cmpOr16(v, def uint16) uint16 {
	if v == 0 {
		return def
	}
	return v
}

// mapReq builds a MAP request from lanClient.
func mapReq(t testing.TB, lifetime uint32, p MapPayload, opts ...Option) []byte {
	t.Helper()
	b, err := AppendRequest(nil, Request{Op: OpMap, Lifetime: lifetime, ClientAddr: lanClient, Map: &p, Options: opts})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// serve runs HandlePacket for a request from lanClient and decodes the
// response, failing the test if there is none.
func serve(t *testing.T, h Handler, opts ServerOptions, req []byte) ([]byte, Response) {
	t.Helper()
	b, ok := HandlePacket(context.Background(), req, lanClient, h, 2132, opts)
	if !ok {
		t.Fatalf("HandlePacket dropped % x", req)
	}
	r, err := ParseResponse(b)
	if err != nil {
		t.Fatalf("HandlePacket(% x) answered % x, which does not parse: %v", req, b, err)
	}
	if r.Epoch != 2132 {
		t.Errorf("response epoch %d, want 2132", r.Epoch)
	}
	return b, r
}

var tcp8080 = MapPayload{Nonce: testNonce, Protocol: TCP, InternalPort: 8080, ExternalPort: 19100}

func TestHandlePacketMap(t *testing.T) {
	h := newMemHandler()
	_, r := serve(t, h, ServerOptions{}, mapReq(t, 3600, tcp8080))
	want := Response{Op: OpMap, Lifetime: 3600, Epoch: 2132, Map: &MapPayload{
		Nonce: testNonce, Protocol: TCP, InternalPort: 8080, ExternalPort: 19100, ExternalAddr: extAddr,
	}}
	if !reflect.DeepEqual(r, want) {
		t.Errorf("response %s, want %s", show(r), show(want))
	}
	got := h.lastCall(t)
	wantCall := MapContext{Client: lanClient, Protocol: TCP, InternalPort: 8080, SuggestedExternalPort: 19100,
		SuggestedExternalAddr: netip.IPv4Unspecified(), Lifetime: 3600, Nonce: testNonce}
	if !reflect.DeepEqual(got, wantCall) {
		t.Errorf("handler got %+v, want %+v", got, wantCall)
	}

	// A refresh with the same nonce keeps the port, even suggesting none.
	refresh := tcp8080
	refresh.ExternalPort = 0
	if _, r := serve(t, h, ServerOptions{}, mapReq(t, 600, refresh)); r.Result != ResultSuccess || r.Map.ExternalPort != 19100 || r.Lifetime != 600 {
		t.Errorf("refresh: %s", show(r))
	}

	// Another nonce may neither refresh nor delete it.
	thief := tcp8080
	thief.Nonce = Nonce{0xee}
	for _, lifetime := range []uint32{3600, 0} {
		req := mapReq(t, lifetime, thief)
		b, r := serve(t, h, ServerOptions{}, req)
		if r.Result != ResultNotAuthorized || r.Lifetime != DefaultLongErrorLifetime {
			t.Errorf("lifetime %d with another nonce: %s, want NOT_AUTHORIZED for %ds", lifetime, show(r), DefaultLongErrorLifetime)
		}
		// The error response is the request with the header rewritten.
		if !bytes.Equal(b[headerLen:], req[headerLen:]) || !bytes.Equal(b[12:24], make([]byte, 12)) {
			t.Errorf("error response % x does not echo the request % x", b, req)
		}
	}

	// The owner deletes it: lifetime 0, and the port it had.
	_, r = serve(t, h, ServerOptions{}, mapReq(t, 0, tcp8080))
	if r.Result != ResultSuccess || r.Lifetime != 0 || r.Map.ExternalPort != 19100 {
		t.Errorf("delete: %s", show(r))
	}
	if h.lastCall(t).Lifetime != 0 {
		t.Errorf("the handler saw lifetime %d for a delete", h.lastCall(t).Lifetime)
	}
	if len(h.m) != 0 {
		t.Errorf("table after delete: %v", h.m)
	}
	// Deleting again succeeds, echoing the request.
	if _, r := serve(t, h, ServerOptions{}, mapReq(t, 0, tcp8080)); r.Result != ResultSuccess || r.Map.ExternalPort != 19100 || r.Map.ExternalAddr != netip.IPv4Unspecified() {
		t.Errorf("second delete: %s", show(r))
	}
}

func TestHandlePacketLifetimeClamps(t *testing.T) {
	tests := []struct {
		name      string
		opts      ServerOptions
		requested uint32
		want      uint32 // seen by the handler, and granted
	}{
		{"miniupnpd's minimum", ServerOptions{}, 10, 120},
		{"at the minimum", ServerOptions{}, 120, 120},
		{"within bounds", ServerOptions{}, 7200, 7200},
		{"default maximum", ServerOptions{}, 1 << 31, 86400},
		{"custom minimum", ServerOptions{MinLifetime: 30}, 10, 30},
		{"custom maximum", ServerOptions{MaxLifetime: 600}, 3600, 600},
		{"a maximum below the minimum yields to it", ServerOptions{MinLifetime: 300, MaxLifetime: 60}, 3600, 300},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newMemHandler()
			_, r := serve(t, h, tt.opts, mapReq(t, tt.requested, tcp8080))
			if got := h.lastCall(t).Lifetime; got != tt.want {
				t.Errorf("handler saw lifetime %d, want %d", got, tt.want)
			}
			if r.Lifetime != tt.want {
				t.Errorf("granted %d, want %d", r.Lifetime, tt.want)
			}
		})
	}
	// The handler may grant less than asked.
	h := &fixedHandler{grant: MapGrant{ExternalPort: 1, ExternalAddr: extAddr, Lifetime: 300}}
	if _, r := serve(t, h, ServerOptions{}, mapReq(t, 3600, tcp8080)); r.Lifetime != 300 {
		t.Errorf("handler granted 300 s, response says %d", r.Lifetime)
	}
}

// fixedHandler answers every request the same.
type fixedHandler struct {
	grant MapGrant
	rc    ResultCode
	calls int
}

func (h *fixedHandler) Map(context.Context, MapContext) (MapGrant, ResultCode) {
	h.calls++
	return h.grant, h.rc
}

func (h *fixedHandler) Peer(context.Context, PeerContext) (MapGrant, ResultCode) {
	h.calls++
	return h.grant, h.rc
}

func TestHandlePacketErrors(t *testing.T) {
	peer := func(opts ...Option) []byte {
		b, err := AppendRequest(nil, Request{Op: OpPeer, Lifetime: 60, ClientAddr: lanClient, Options: opts,
			Peer: &PeerPayload{MapPayload: tcp8080, RemotePort: 443, RemoteAddr: remotePeer}})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	spoofed, _ := AppendRequest(nil, Request{Op: OpMap, Lifetime: 60, ClientAddr: netip.MustParseAddr("192.168.1.20"), Map: &tcp8080})
	v1 := mapReq(t, 60, tcp8080)
	v1[0] = 1
	unknownOp := mapReq(t, 60, tcp8080)
	unknownOp[1] = 9
	badOption := append(mapReq(t, 60, tcp8080), 0x01, 0, 0, 4, 0, 0, 0, 0) // THIRD_PARTY of 4 bytes
	noPref := tcp8080
	noPref.ExternalPort = 0
	allProtocols := MapPayload{Nonce: testNonce, Protocol: AllProtocols, InternalPort: 8080}

	tests := []struct {
		name   string
		req    []byte
		opts   ServerOptions
		want   ResultCode
		parsed bool // reserved bits zero, else the request's
		called bool // whether the handler ran
	}{
		{"version 1", v1, ServerOptions{}, ResultUnsuppVersion, false, false},
		{"NAT-PMP request", []byte{0, 0}, ServerOptions{}, ResultUnsuppVersion, false, false},
		{"shorter than a header", mapReq(t, 60, tcp8080)[:20], ServerOptions{}, ResultMalformedRequest, false, false},
		{"not a multiple of 4", append(mapReq(t, 60, tcp8080), 0), ServerOptions{}, ResultMalformedRequest, false, false},
		{"over 1100 bytes", append(mapReq(t, 60, tcp8080), make([]byte, 1100)...), ServerOptions{}, ResultMalformedRequest, false, false},
		{"MAP payload cut short", mapReq(t, 60, tcp8080)[:48], ServerOptions{}, ResultMalformedRequest, false, false},
		{"unknown opcode", unknownOp, ServerOptions{}, ResultUnsuppOpcode, false, false},
		{"malformed option", badOption, ServerOptions{}, ResultMalformedOption, false, false},
		{"address mismatch", spoofed, ServerOptions{}, ResultAddressMismatch, true, false},
		{"unknown mandatory option", mapReq(t, 60, tcp8080, Option{Code: 90}), ServerOptions{}, ResultUnsuppOption, true, false},
		{"THIRD_PARTY not allowed", mapReq(t, 60, tcp8080, ThirdPartyOption(netip.MustParseAddr("10.77.0.9"))), ServerOptions{}, ResultUnsuppOption, true, false},
		{"THIRD_PARTY naming the sender", mapReq(t, 60, tcp8080, ThirdPartyOption(lanClient)), ServerOptions{AllowThirdParty: true}, ResultMalformedRequest, true, false},
		{"PREFER_FAILURE with nothing suggested", mapReq(t, 60, noPref, PreferFailureOption()), ServerOptions{}, ResultMalformedOption, true, false},
		{"PREFER_FAILURE with PEER", peer(PreferFailureOption()), ServerOptions{}, ResultMalformedOption, false, false},
		{"PEER not supported by the handler", peer(), ServerOptions{}, ResultUnsuppOpcode, true, true},
		{"AllProtocols refused by the handler", mapReq(t, 60, allProtocols), ServerOptions{}, ResultUnsuppProtocol, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := &fixedHandler{rc: tt.want}
			b, r := serve(t, h, tt.opts, tt.req)
			if r.Result != tt.want {
				t.Fatalf("result %s, want %s (response % x)", r.Result, tt.want, b)
			}
			if b[0] != Version || b[1] != tt.req[1]|opResponse {
				t.Errorf("response starts % x, want version 2 and the request's opcode with the R bit", b[:2])
			}
			if r.Lifetime != DefaultLongErrorLifetime {
				t.Errorf("error lifetime %d, want the long %d", r.Lifetime, DefaultLongErrorLifetime)
			}
			// RFC 6887 §7.3: a copy of the request, up to 1100 bytes,
			// padded to a multiple of 4, at least a header.
			n := min(len(tt.req), MaxPacketLen)
			if len(b) != max(headerLen, (n+3)/4*4) || (len(tt.req) > headerLen && !bytes.Equal(b[headerLen:n], tt.req[headerLen:n])) {
				t.Errorf("response of %d bytes does not echo the %d-byte request", len(b), len(tt.req))
			}
			reserved := make([]byte, 12)
			if !tt.parsed && len(tt.req) >= headerLen {
				reserved = tt.req[12:24] // the last 96 bits of the client address
			}
			if len(tt.req) >= headerLen && !bytes.Equal(b[12:24], reserved) {
				t.Errorf("reserved bits % x, want % x", b[12:24], reserved)
			}
			if (h.calls > 0) != tt.called {
				t.Errorf("handler called %d times", h.calls)
			}
		})
	}
}

func TestHandlePacketDrops(t *testing.T) {
	resp, _ := AppendResponse(nil, Response{Op: OpAnnounce})
	for name, req := range map[string][]byte{
		"empty":          nil,
		"one byte":       {2},
		"a response":     resp,
		"a NAT-PMP one":  {0, 0x80, 0, 0, 0, 0, 0, 1},
		"R bit, garbage": {7, 0xff},
	} {
		h := &fixedHandler{}
		if b, ok := HandlePacket(context.Background(), req, lanClient, h, 1, ServerOptions{}); ok || b != nil || h.calls != 0 {
			t.Errorf("%s: HandlePacket = % x, %v; want a silent drop", name, b, ok)
		}
	}
}

func TestHandlePacketAnnounce(t *testing.T) {
	req, _ := AppendRequest(nil, Request{Op: OpAnnounce, ClientAddr: lanClient, Options: []Option{{Code: 200, Data: []byte{1}}}})
	h := &fixedHandler{}
	b, r := serve(t, h, ServerOptions{}, req)
	if want := (Response{Op: OpAnnounce, Epoch: 2132}); !reflect.DeepEqual(r, want) || len(b) != headerLen {
		t.Errorf("ANNOUNCE answered %s (%d bytes), want %s alone: unknown optional options are not echoed", show(r), len(b), show(want))
	}
	if h.calls != 0 {
		t.Error("ANNOUNCE reached the handler")
	}
	// The client address is checked for ANNOUNCE too.
	spoofed, _ := AppendRequest(nil, Request{Op: OpAnnounce, ClientAddr: netip.MustParseAddr("192.168.1.20")})
	if _, r := serve(t, h, ServerOptions{}, spoofed); r.Result != ResultAddressMismatch {
		t.Errorf("spoofed ANNOUNCE: %s", show(r))
	}
}

func TestHandlePacketOptions(t *testing.T) {
	third := netip.MustParseAddr("10.77.0.9")
	web := Filter{Prefix: netip.MustParsePrefix("198.51.100.0/24"), Port: 443}

	t.Run("THIRD_PARTY allowed", func(t *testing.T) {
		h := newMemHandler()
		_, r := serve(t, h, ServerOptions{AllowThirdParty: true}, mapReq(t, 600, tcp8080, ThirdPartyOption(third)))
		if r.Result != ResultSuccess || !reflect.DeepEqual(r.Options, []Option{ThirdPartyOption(third)}) {
			t.Fatalf("response %s, want success echoing THIRD_PARTY", show(r))
		}
		if c := h.lastCall(t); c.ThirdParty != third || c.InternalAddr() != third || c.Client != lanClient {
			t.Errorf("handler got %+v, want third party %v", c, third)
		}
	})

	t.Run("unknown optional option ignored", func(t *testing.T) {
		h := newMemHandler()
		_, r := serve(t, h, ServerOptions{}, mapReq(t, 600, tcp8080, Option{Code: 200, Data: []byte{1, 2}}))
		if r.Result != ResultSuccess || len(r.Options) != 0 {
			t.Errorf("response %s, want success without the option", show(r))
		}
	})

	t.Run("PREFER_FAILURE with the port free", func(t *testing.T) {
		h := newMemHandler()
		_, r := serve(t, h, ServerOptions{}, mapReq(t, 600, tcp8080, PreferFailureOption()))
		if r.Result != ResultSuccess || r.Map.ExternalPort != 19100 || !reflect.DeepEqual(r.Options, []Option{PreferFailureOption()}) {
			t.Errorf("response %s, want port 19100 echoing PREFER_FAILURE", show(r))
		}
		if !h.lastCall(t).PreferFailure {
			t.Error("the handler was not told PREFER_FAILURE")
		}
	})

	t.Run("PREFER_FAILURE with the port taken", func(t *testing.T) {
		h := newMemHandler()
		h.taken[19100] = true
		_, r := serve(t, h, ServerOptions{}, mapReq(t, 600, tcp8080, PreferFailureOption()))
		if r.Result != ResultCannotProvideExternal || r.Lifetime != DefaultShortErrorLifetime {
			t.Errorf("response %s, want CANNOT_PROVIDE_EXTERNAL for %ds", show(r), DefaultShortErrorLifetime)
		}
		// Without the option, the handler picks another port.
		_, r = serve(t, h, ServerOptions{}, mapReq(t, 600, tcp8080))
		if r.Result != ResultSuccess || r.Map.ExternalPort != 19101 {
			t.Errorf("without PREFER_FAILURE: %s, want port 19101", show(r))
		}
	})

	t.Run("PREFER_FAILURE ignored by a buggy handler", func(t *testing.T) {
		h := newMemHandler()
		h.taken[19100] = true
		h.ignorePreferFailure = true
		if _, r := serve(t, h, ServerOptions{}, mapReq(t, 600, tcp8080, PreferFailureOption())); r.Result != ResultCannotProvideExternal {
			t.Errorf("response %s, want CANNOT_PROVIDE_EXTERNAL", show(r))
		}
		// A suggested address counts too.
		h = newMemHandler()
		elsewhere := tcp8080
		elsewhere.ExternalAddr = netip.MustParseAddr("203.0.113.99")
		if _, r := serve(t, h, ServerOptions{}, mapReq(t, 600, elsewhere, PreferFailureOption())); r.Result != ResultCannotProvideExternal {
			t.Errorf("suggested address not given: %s, want CANNOT_PROVIDE_EXTERNAL", show(r))
		}
	})

	t.Run("FILTER applied", func(t *testing.T) {
		h := newMemHandler()
		opts := []Option{FilterOption(web), FilterOption(Filter{Prefix: netip.MustParsePrefix("192.0.2.7/32")})}
		_, r := serve(t, h, ServerOptions{}, mapReq(t, 600, tcp8080, opts...))
		if r.Result != ResultSuccess || !reflect.DeepEqual(r.Options, opts) {
			t.Fatalf("response %s, want success echoing both FILTERs", show(r))
		}
		want := []Filter{web, {Prefix: netip.MustParsePrefix("192.0.2.7/32")}}
		if got := h.lastCall(t).Filters; !slices.Equal(got, want) {
			t.Errorf("handler got filters %v, want %v", got, want)
		}
	})

	t.Run("FILTER of the other address family", func(t *testing.T) {
		// An IPv6 peer on an IPv4 mapping can never match: a bad option,
		// answered before the handler (and its firewall) is asked.
		h := newMemHandler()
		v6 := FilterOption(Filter{Prefix: netip.MustParsePrefix("2001:db8::1/128")})
		if _, r := serve(t, h, ServerOptions{}, mapReq(t, 600, tcp8080, v6)); r.Result != ResultMalformedOption {
			t.Errorf("response %s, want MALFORMED_OPTION", show(r))
		}
		if len(h.calls) != 0 {
			t.Error("the handler was called")
		}
		// A zero-length prefix ("no filter") has no family.
		none := FilterOption(Filter{Prefix: netip.MustParsePrefix("::/0")})
		if _, r := serve(t, h, ServerOptions{}, mapReq(t, 600, tcp8080, none)); r.Result != ResultSuccess {
			t.Errorf("a FILTER removing filters: %s, want success", show(r))
		}
	})

	t.Run("FILTER refused by the handler", func(t *testing.T) {
		h := newMemHandler()
		h.noFilters = true
		if _, r := serve(t, h, ServerOptions{}, mapReq(t, 600, tcp8080, FilterOption(web))); r.Result != ResultUnsuppOption {
			t.Errorf("response %s, want UNSUPP_OPTION", show(r))
		}
		if len(h.m) != 0 {
			t.Error("a mapping was made without its filter")
		}
	})
}

func TestHandlePacketGrantChecks(t *testing.T) {
	tests := []struct {
		name  string
		h     *fixedHandler
		req   MapPayload
		want  ResultCode
		wantL uint32
	}{
		{"success without an external address", &fixedHandler{grant: MapGrant{ExternalPort: 19100}}, tcp8080, ResultNetworkFailure, DefaultShortErrorLifetime},
		{"success with 0.0.0.0", &fixedHandler{grant: MapGrant{ExternalPort: 19100, ExternalAddr: netip.IPv4Unspecified()}}, tcp8080, ResultNetworkFailure, DefaultShortErrorLifetime},
		{"success without an external port", &fixedHandler{grant: MapGrant{ExternalAddr: extAddr}}, tcp8080, ResultNoResources, DefaultShortErrorLifetime},
		{"a failure's own lifetime", &fixedHandler{rc: ResultUserExQuota, grant: MapGrant{Lifetime: 90}}, tcp8080, ResultUserExQuota, 90},
		{"all ports need no port", &fixedHandler{grant: MapGrant{ExternalAddr: extAddr}}, MapPayload{Protocol: AllProtocols}, ResultSuccess, DefaultMaxLifetime},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, r := serve(t, tt.h, ServerOptions{}, mapReq(t, 1<<20, tt.req))
			if r.Result != tt.want || r.Lifetime != tt.wantL {
				t.Errorf("response %s, want %s for %ds", show(r), tt.want, tt.wantL)
			}
		})
	}

	// RFC 6887 §11.1: the internal port of an all-protocols request is
	// ignored.
	h := newMemHandler()
	serve(t, h, ServerOptions{}, mapReq(t, 60, MapPayload{Nonce: testNonce, Protocol: AllProtocols, InternalPort: 8080}))
	if c := h.lastCall(t); c.InternalPort != 0 {
		t.Errorf("handler saw internal port %d for all protocols", c.InternalPort)
	}
	// Custom error lifetimes.
	_, r := serve(t, &fixedHandler{rc: ResultNoResources}, ServerOptions{ShortErrorLifetime: 5}, mapReq(t, 60, tcp8080))
	if r.Lifetime != 5 {
		t.Errorf("short error lifetime %d, want 5", r.Lifetime)
	}
	_, r = serve(t, &fixedHandler{rc: ResultNotAuthorized}, ServerOptions{LongErrorLifetime: 600}, mapReq(t, 60, tcp8080))
	if r.Lifetime != 600 {
		t.Errorf("long error lifetime %d, want 600", r.Lifetime)
	}
}

func TestHandlePacketPeer(t *testing.T) {
	h := newMemHandler()
	h.peers = true
	req, _ := AppendRequest(nil, Request{Op: OpPeer, Lifetime: 0, ClientAddr: lanClient,
		Peer: &PeerPayload{MapPayload: MapPayload{Nonce: testNonce, Protocol: UDP, InternalPort: 50000}, RemotePort: 3478, RemoteAddr: remotePeer}})
	_, r := serve(t, h, ServerOptions{}, req)
	want := Response{Op: OpPeer, Lifetime: 7200, Epoch: 2132, Peer: &PeerPayload{
		MapPayload: MapPayload{Nonce: testNonce, Protocol: UDP, InternalPort: 50000, ExternalPort: 50001, ExternalAddr: extAddr},
		RemotePort: 3478, RemoteAddr: remotePeer,
	}}
	if !reflect.DeepEqual(r, want) {
		t.Errorf("response %s, want %s", show(r), show(want))
	}
	// PEER cannot delete: lifetime 0 reaches the handler as the minimum.
	if got := h.lastCall(t).Lifetime; got != DefaultMinLifetime {
		t.Errorf("handler saw lifetime %d, want %d", got, DefaultMinLifetime)
	}
}

func TestIsPCP(t *testing.T) {
	for _, tt := range []struct {
		pkt  []byte
		want bool
	}{
		{nil, false},
		{[]byte{0, 0}, false}, // NAT-PMP
		{[]byte{0, 2, 0, 0, 0x4a, 0x38, 0x23, 0x28, 0, 0, 0x0e, 0x10}, false},
		{mustHex(t, hexAnnounce), true},
		{[]byte{1, 1}, true}, // draft PCP: answered UNSUPP_VERSION by PCP
		{[]byte{3}, true},
	} {
		if got := IsPCP(tt.pkt); got != tt.want {
			t.Errorf("IsPCP(% x) = %v, want %v", tt.pkt, got, tt.want)
		}
	}
}
