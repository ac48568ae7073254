package pcp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portfwd/portfwd/internal/testenv"
)

var loopback = netip.MustParseAddr("127.0.0.1")

// newFakeGateway starts a scripted PCP server on 127.0.0.1
// (testenv.UDPFake): for the i-th request it receives (counting from 0)
// it sends back whatever reply returns.
func newFakeGateway(t *testing.T, reply func(i int, req []byte) [][]byte) *testenv.UDPFake {
	return testenv.NewUDPFake(t, func(i int, d testenv.Datagram) [][]byte { return reply(i, d.Data) })
}

// lastRequest decodes the last request the gateway received.
func lastRequest(t *testing.T, g *testenv.UDPFake) Request {
	t.Helper()
	reqs := g.All()
	if len(reqs) == 0 {
		t.Fatal("the gateway received nothing")
	}
	r, err := ParseRequest(reqs[len(reqs)-1].Data)
	if err != nil {
		t.Fatalf("the client sent % x: %v", reqs[len(reqs)-1].Data, err)
	}
	return r
}

// answer replies to every request with the packets of fn.
func answer(fn func(req []byte) [][]byte) func(int, []byte) [][]byte {
	return func(_ int, req []byte) [][]byte { return fn(req) }
}

func silent(int, []byte) [][]byte { return nil }

// grant answers a MAP or PEER request with success: the suggested port (or
// the internal one) on extAddr, for the requested lifetime, at epoch.
func grant(t *testing.T, req []byte, epoch uint32) []byte {
	r, err := ParseRequest(req)
	if err != nil {
		t.Errorf("the client sent % x: %v", req, err)
		return nil
	}
	out := Response{Op: r.Op, Lifetime: r.Lifetime, Epoch: epoch}
	switch r.Op {
	case OpMap:
		m := *r.Map
		m.ExternalPort = cmpOr16(m.ExternalPort, m.InternalPort)
		m.ExternalAddr = extAddr
		out.Map = &m
	case OpPeer:
		p := *r.Peer
		p.ExternalPort = cmpOr16(p.ExternalPort, p.InternalPort)
		p.ExternalAddr = extAddr
		out.Peer = &p
	}
	b, err := AppendResponse(nil, out)
	if err != nil {
		t.Error(err)
	}
	return b
}

// refuse answers a request with code the way RFC 6887 §7.3 says: the
// request echoed with the response header over it.
func refuse(req []byte, code ResultCode, lifetime uint32) []byte {
	return errorResponse(req, code, lifetime, 2132, true)
}

// testClient is the client of the tests whose fake answers: it waits 10 s
// before it retransmits, so that exactly one request goes out however
// late a loaded machine runs the fake, and a test that counts requests
// cannot see a retransmission it did not cause. The tests of lost packets
// set a fast schedule of their own.
func testClient(t *testing.T, gw netip.AddrPort) *Client {
	return &Client{Gateway: gw, InitialTimeout: 10 * time.Second, MaxTries: 5, Logger: testenv.Logger(t)}
}

func TestClientMap(t *testing.T) {
	g := newFakeGateway(t, answer(func(req []byte) [][]byte { return [][]byte{grant(t, req, 2132)} }))
	c := testClient(t, g.Addr)
	web := Filter{Prefix: netip.MustParsePrefix("198.51.100.0/24"), Port: 443}
	got, err := c.Map(context.Background(), MapRequest{
		Protocol: TCP, InternalPort: 8080, SuggestedExternalPort: 19100,
		Lifetime: 1500 * time.Millisecond, PreferFailure: true, Filters: []Filter{web},
	})
	if err != nil {
		t.Fatal(err)
	}
	sent := lastRequest(t, g)
	if got.Nonce.IsZero() || got.Nonce != sent.Map.Nonce {
		t.Errorf("nonce %v, sent %v: want a random one, returned", got.Nonce, sent.Map.Nonce)
	}
	want := MapResult{Nonce: got.Nonce, Protocol: TCP, InternalPort: 8080, ExternalPort: 19100, ExternalAddr: extAddr, Lifetime: 2 * time.Second, Epoch: 2132}
	if got != want {
		t.Errorf("Map = %+v, want %+v", got, want)
	}
	// The request: lifetime rounded up, this host's address, options in order.
	if sent.Lifetime != 2 || sent.ClientAddr != loopback || sent.Map.ExternalPort != 19100 || sent.Map.ExternalAddr != netip.IPv4Unspecified() {
		t.Errorf("sent %s", show(sent))
	}
	if wantOpts := []Option{PreferFailureOption(), FilterOption(web)}; fmt.Sprint(sent.Options) != fmt.Sprint(wantOpts) {
		t.Errorf("sent options %v, want %v", sent.Options, wantOpts)
	}

	// A nonce given is used, and so is a third party.
	third := netip.MustParseAddr("10.77.0.9")
	got, err = c.Map(context.Background(), MapRequest{Protocol: UDP, InternalPort: 53, Lifetime: time.Hour, Nonce: testNonce, ThirdParty: third})
	if err != nil {
		t.Fatal(err)
	}
	sent = lastRequest(t, g)
	if got.Nonce != testNonce || sent.Map.Nonce != testNonce || got.ThirdParty != third || len(sent.Options) != 1 || sent.Options[0].Code != OptionThirdParty {
		t.Errorf("Map with nonce and third party: %+v, sent %s", got, show(sent))
	}
}

func TestClientValidation(t *testing.T) {
	g := newFakeGateway(t, silent)
	c := testClient(t, g.Addr)
	ctx := context.Background()
	for name, r := range map[string]MapRequest{
		"zero lifetime":                     {Protocol: TCP, InternalPort: 80},
		"PREFER_FAILURE without a port":     {Protocol: TCP, InternalPort: 80, Lifetime: time.Hour, PreferFailure: true},
		"a port with all protocols":         {Protocol: AllProtocols, InternalPort: 80, Lifetime: time.Hour},
		"too many filters for one datagram": {Protocol: TCP, InternalPort: 80, Lifetime: time.Hour, Filters: make([]Filter, 50)},
	} {
		if _, err := c.Map(ctx, r); err == nil {
			t.Errorf("%s: Map succeeded", name)
		}
	}
	if err := c.Delete(ctx, TCP, 80, Nonce{}); err == nil || !strings.Contains(err.Error(), "nonce") {
		t.Errorf("Delete without nonce = %v, want an error about the nonce", err)
	}
	if _, err := c.Refresh(ctx, MapResult{Protocol: TCP, InternalPort: 80, Lifetime: time.Hour}, 0); err == nil {
		t.Error("Refresh of a mapping without nonce succeeded")
	}
	if _, err := c.Peer(ctx, PeerRequest{Protocol: TCP, InternalPort: 80, Lifetime: time.Hour}); err == nil {
		t.Error("Peer without remote address succeeded")
	}
	if _, err := (&Client{}).Announce(ctx); err == nil || !strings.Contains(err.Error(), "Gateway") {
		t.Errorf("Announce without Gateway = %v", err)
	}
	if n := len(g.All()); n != 0 {
		t.Errorf("invalid requests sent %d packets", n)
	}
}

// TestClientResultCodes checks that every refusal comes back as a
// *ResultError with its code, the server's error lifetime and a message.
func TestClientResultCodes(t *testing.T) {
	for code := ResultUnsuppVersion; code <= ResultExcessiveRemotePeers+1; code++ {
		t.Run(code.String(), func(t *testing.T) {
			g := newFakeGateway(t, answer(func(req []byte) [][]byte { return [][]byte{refuse(req, code, 45)} }))
			_, err := testClient(t, g.Addr).Map(context.Background(), MapRequest{Protocol: UDP, InternalPort: 5000, Lifetime: time.Minute})
			var re *ResultError
			if !errors.As(err, &re) {
				t.Fatalf("Map = %v, want a *ResultError", err)
			}
			if re.Code != code || re.Op != OpMap || re.Lifetime != 45*time.Second || re.Version != Version {
				t.Errorf("ResultError = %+v", re)
			}
			if !strings.Contains(err.Error(), code.String()) {
				t.Errorf("message %q does not name %s", err, code)
			}
		})
	}
	// A header-only error reply is taken too.
	g := newFakeGateway(t, answer(func(req []byte) [][]byte { return [][]byte{refuse(req, ResultNoResources, 30)[:headerLen]} }))
	var re *ResultError
	if err := testClient(t, g.Addr).Delete(context.Background(), UDP, 5000, testNonce); !errors.As(err, &re) || re.Code != ResultNoResources || !re.Transient() {
		t.Errorf("Delete = %v, want a transient NO_RESOURCES", err)
	}
}

func TestClientNotPCP(t *testing.T) {
	tests := []struct {
		name    string
		reply   string
		version uint8
	}{
		{"NAT-PMP only", "00 80 0001 00000854", 0},
		{"NAT-PMP only, RFC 6886's opcode 0", "00 00 0001 00000854", 0},
		{"draft PCP", "01 80 00 01 00000000 00000854 000000000000000000000000", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := newFakeGateway(t, answer(func([]byte) [][]byte { return [][]byte{mustHex(t, tt.reply)} }))
			c := testClient(t, g.Addr)
			_, err := c.Announce(context.Background())
			var re *ResultError
			if !errors.As(err, &re) || re.Code != ResultUnsuppVersion || re.Version != tt.version {
				t.Fatalf("Announce = %v, want UNSUPP_VERSION from version %d", err, tt.version)
			}
			if len(g.All()) != 1 {
				t.Errorf("%d requests sent, want 1: the answer is final", len(g.All()))
			}
			if c.Epoch().Valid {
				t.Error("a non-PCP epoch was recorded")
			}
		})
	}
}

func TestClientRetransmit(t *testing.T) {
	g := newFakeGateway(t, func(i int, req []byte) [][]byte {
		if i < 2 {
			return nil // lost
		}
		return [][]byte{grant(t, req, 10)}
	})
	waits := testenv.NewDurationLog(testenv.Logger(t).Handler(), "pcp: no reply, retransmitting", "waited")
	// About 100 ms, 200 ms, then 400 ms for the answer to the third: long
	// enough that a loaded machine's late fake is not taken for a lost
	// answer.
	c := &Client{Gateway: g.Addr, InitialTimeout: 100 * time.Millisecond, Logger: slog.New(waits)}
	began := time.Now()
	m, err := c.Map(context.Background(), MapRequest{Protocol: TCP, InternalPort: 22, Lifetime: time.Hour})
	took := time.Since(began)
	if err != nil {
		t.Fatal(err)
	}
	reqs := g.All()
	if len(reqs) != 3 {
		t.Fatalf("gateway received %d requests, want 3", len(reqs))
	}
	for _, r := range reqs[1:] {
		// Same bytes, hence same nonce: a retransmission, not a new mapping.
		if !bytes.Equal(r.Data, reqs[0].Data) {
			t.Errorf("retransmission % x differs from the first request % x", r.Data, reqs[0].Data)
		}
	}
	if got := lastRequest(t, g).Map.Nonce; got != m.Nonce {
		t.Errorf("nonce %v sent, %v returned", got, m.Nonce)
	}
	// RFC 6887 §8.1.1: RT = IRT (1+RAND), then RT = 2 RT (1+RAND), RAND in
	// [-0.1, 0.1]. The waits are the client's own account of them; the
	// clock only bounds them from below, as a loaded machine answers late,
	// never early. TestRetransmitSchedule checks the schedule itself.
	w := waits.Durations()
	if len(w) != 2 || w[0] < 90*time.Millisecond || w[0] > 110*time.Millisecond ||
		float64(w[1]) < 1.8*float64(w[0]) || float64(w[1]) > 2.2*float64(w[0]) {
		t.Errorf("waits %v, want about 100 ms then twice that (±10%% each)", w)
	}
	if len(w) == 2 && took < w[0]+w[1] {
		t.Errorf("Map returned after %v, before its waits %v ran out", took, w)
	}
}

func TestRetransmitSchedule(t *testing.T) {
	s := retransmitSchedule{initial: time.Second, max: 5 * time.Second}
	var prev time.Duration
	for i, want := range []time.Duration{1, 2, 4, 5, 5, 5} {
		got := s.next()
		want *= time.Second
		// Each step is 2 RTprev + RAND RTprev (RAND in ±0.1), capped by
		// MRT + RAND MRT.
		lo, hi := want-want/10, want+want/10
		if i > 0 && i < 3 {
			lo, hi = 2*prev-prev/10, 2*prev+prev/10
		}
		if got < lo || got > hi {
			t.Errorf("wait %d = %v, want within [%v, %v]", i, got, lo, hi)
		}
		prev = got
	}
	d := retransmitSchedule{}
	if got := d.next(); got < DefaultInitialTimeout*9/10 || got > DefaultInitialTimeout*11/10 {
		t.Errorf("default first wait %v", got)
	}
}

func TestClientNoResponse(t *testing.T) {
	g := newFakeGateway(t, silent)
	c := testClient(t, g.Addr)
	c.InitialTimeout, c.MaxTries = 20*time.Millisecond, 3
	start := time.Now()
	_, err := c.Announce(context.Background())
	if !errors.Is(err, ErrNoResponse) {
		t.Fatalf("Announce = %v, want ErrNoResponse", err)
	}
	// The last try may still be on its way to the fake: flush, then count.
	if n := len(g.Flush(t)); n != 3 {
		t.Errorf("%d attempts, want 3", n)
	}
	// 20 + 40 + 80 ms, give or take 10%.
	if d := time.Since(start); d < 120*time.Millisecond || d > 2*time.Second {
		t.Errorf("gave up after %v, want about 140 ms", d)
	}
}

func TestClientContext(t *testing.T) {
	g := newFakeGateway(t, silent)
	c := &Client{Gateway: g.Addr, Logger: testenv.Logger(t)} // default schedule: minutes

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.Map(ctx, MapRequest{Protocol: UDP, InternalPort: 9, Lifetime: time.Minute})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Map = %v, want context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Map returned %v after the deadline", d)
	}

	ctx, cancel = context.WithCancel(context.Background())
	cancel()
	before := len(g.All())
	if err := c.Delete(ctx, UDP, 9, testNonce); !errors.Is(err, context.Canceled) {
		t.Errorf("Delete with a canceled context = %v", err)
	}
	if sent := g.Flush(t)[before:]; len(sent) != 0 {
		t.Errorf("%d request(s) sent with a canceled context", len(sent))
	}
}

func TestClientPortUnreachable(t *testing.T) {
	// A port that was just open and is now closed: ICMP port unreachable
	// comes back on loopback.
	pc, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(loopback, 0)))
	if err != nil {
		t.Fatal(err)
	}
	closed := pc.LocalAddr().(*net.UDPAddr).AddrPort()
	pc.Close()
	c := &Client{Gateway: closed, Logger: testenv.Logger(t)}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Announce(ctx); !errors.Is(err, ErrNotSupported) {
		t.Errorf("Announce = %v, want ErrNotSupported", err)
	}
}

// TestClientIgnoresOtherPackets checks that only a reply to the request in
// flight is taken: not garbage, not a request, not another opcode, not the
// reply to another nonce or port (RFC 6887 §11.3).
func TestClientIgnoresOtherPackets(t *testing.T) {
	g := newFakeGateway(t, answer(func(req []byte) [][]byte {
		r, _ := ParseRequest(req)
		other := *r.Map
		other.Nonce[0] ^= 0xff
		otherNonce := grant(t, mapReq(t, 60, other), 1)
		other = *r.Map
		other.InternalPort++
		otherPort := grant(t, mapReq(t, 60, other), 1)
		announce, _ := AppendResponse(nil, Response{Op: OpAnnounce, Epoch: 1})
		return [][]byte{
			{0xde, 0xad},
			req,
			announce,
			otherNonce,
			otherPort,
			grant(t, req, 50),
		}
	}))
	c := testClient(t, g.Addr)
	c.InitialTimeout = time.Second
	m, err := c.Map(context.Background(), MapRequest{Protocol: UDP, InternalPort: 4000, Lifetime: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if m.Epoch != 50 || m.InternalPort != 4000 {
		t.Errorf("took the wrong reply: %+v", m)
	}
	// The ignored replies' epochs were not recorded either.
	if c.Epoch().Epoch != 50 || c.LostState() {
		t.Errorf("epoch state %+v", c.Epoch())
	}
}

func TestClientMismatchedSuccess(t *testing.T) {
	for name, mutate := range map[string]func(*Response){
		"lifetime 0":          func(r *Response) { r.Lifetime = 0 },
		"no external port":    func(r *Response) { r.Map.ExternalPort = 0 },
		"external 0.0.0.0":    func(r *Response) { r.Map.ExternalAddr = netip.IPv4Unspecified() },
		"external unset (::)": func(r *Response) { r.Map.ExternalAddr = netip.Addr{} },
	} {
		t.Run(name, func(t *testing.T) {
			g := newFakeGateway(t, answer(func(req []byte) [][]byte {
				r, _ := ParseResponse(grant(t, req, 1))
				mutate(&r)
				b, _ := AppendResponse(nil, r)
				return [][]byte{b}
			}))
			_, err := testClient(t, g.Addr).Map(context.Background(), MapRequest{Protocol: TCP, InternalPort: 80, Lifetime: time.Minute})
			if !errors.Is(err, ErrMismatchedReply) {
				t.Errorf("Map = %v, want ErrMismatchedReply", err)
			}
		})
	}
}

func TestClientRefreshAndDelete(t *testing.T) {
	g := newFakeGateway(t, answer(func(req []byte) [][]byte { return [][]byte{grant(t, req, 100)} }))
	c := testClient(t, g.Addr)
	ctx := context.Background()
	m, err := c.Map(ctx, MapRequest{Protocol: TCP, InternalPort: 8080, Lifetime: time.Hour})
	if err != nil {
		t.Fatal(err)
	}

	r, err := c.Refresh(ctx, m, 0)
	if err != nil {
		t.Fatal(err)
	}
	sent := lastRequest(t, g)
	wantSent := MapPayload{Nonce: m.Nonce, Protocol: TCP, InternalPort: 8080, ExternalPort: m.ExternalPort, ExternalAddr: m.ExternalAddr}
	if *sent.Map != wantSent || sent.Lifetime != 3600 {
		t.Errorf("refresh sent %s, want the same nonce suggesting %v:%d for 3600 s", show(sent), m.ExternalAddr, m.ExternalPort)
	}
	if r.Nonce != m.Nonce || r.ExternalPort != m.ExternalPort {
		t.Errorf("Refresh = %+v", r)
	}
	if _, err := c.Refresh(ctx, m, 10*time.Minute); err != nil || lastRequest(t, g).Lifetime != 600 {
		t.Errorf("Refresh for 10 min: %v, sent %d s", err, lastRequest(t, g).Lifetime)
	}

	// RFC 6887 §11.3: the delete carries the mapping's nonce, lifetime 0.
	if err := c.Delete(ctx, TCP, 8080, m.Nonce); err != nil {
		t.Fatal(err)
	}
	sent = lastRequest(t, g)
	if sent.Lifetime != 0 || sent.Map.Nonce != m.Nonce || sent.Map.Protocol != TCP || sent.Map.InternalPort != 8080 {
		t.Errorf("delete sent %s, want lifetime 0 and nonce %v", show(sent), m.Nonce)
	}
}

func TestClientEpoch(t *testing.T) {
	var epoch atomic.Uint32
	epoch.Store(1000)
	g := newFakeGateway(t, answer(func(req []byte) [][]byte { return [][]byte{grant(t, req, epoch.Load())} }))
	c := testClient(t, g.Addr)
	ctx := context.Background()
	mapOnce := func() MapResult {
		t.Helper()
		m, err := c.Map(ctx, MapRequest{Protocol: UDP, InternalPort: 7000, Lifetime: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	if m := mapOnce(); m.Rebooted || c.LostState() {
		t.Errorf("first reply: rebooted %v, lost state %v", m.Rebooted, c.LostState())
	}
	if m := mapOnce(); m.Rebooted {
		t.Error("same epoch a moment later counted as a reboot")
	}
	epoch.Store(3) // the router restarted
	if m := mapOnce(); !m.Rebooted || !c.LostState() {
		t.Errorf("epoch went back: rebooted %v, lost state %v", m.Rebooted, c.LostState())
	}
	if m := mapOnce(); m.Rebooted || !c.LostState() {
		t.Errorf("next reply: rebooted %v (want false), lost state %v (want kept)", m.Rebooted, c.LostState())
	}
	c.ClearLostState()
	if c.LostState() {
		t.Error("ClearLostState did not clear")
	}
	if st := c.Epoch(); !st.Valid || st.Epoch != 3 {
		t.Errorf("Epoch() = %+v", st)
	}
	// An epoch far ahead of our clock is a lost state too.
	epoch.Store(100000)
	if _, err := c.Announce(ctx); err != nil || !c.LostState() {
		t.Errorf("epoch jumped ahead: %v, lost state %v", err, c.LostState())
	}
}

func TestClientAnnounceAndPeer(t *testing.T) {
	g := newFakeGateway(t, answer(func(req []byte) [][]byte {
		if req[1] == byte(OpAnnounce) {
			b, _ := AppendResponse(nil, Response{Op: OpAnnounce, Epoch: 777})
			return [][]byte{b}
		}
		return [][]byte{grant(t, req, 778)}
	}))
	c := testClient(t, g.Addr)
	epoch, err := c.Announce(context.Background())
	if err != nil || epoch != 777 {
		t.Fatalf("Announce = %d, %v", epoch, err)
	}
	if sent := lastRequest(t, g); sent.Op != OpAnnounce || sent.Lifetime != 0 || sent.ClientAddr != loopback {
		t.Errorf("sent %s", show(sent))
	}
	p, err := c.Peer(context.Background(), PeerRequest{Protocol: UDP, InternalPort: 5000, RemotePort: 3478, RemoteAddr: remotePeer, Lifetime: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if p.ExternalPort != 5000 || p.ExternalAddr != extAddr || p.RemoteAddr != remotePeer || p.RemotePort != 3478 || p.Lifetime != time.Minute || p.Epoch != 778 {
		t.Errorf("Peer = %+v", p)
	}
}

// startServer answers PCP with h (HandlePacket, the epoch counting from
// the first packet) on a socket on 127.0.0.1 and returns its address.
func startServer(t *testing.T, h Handler) netip.AddrPort {
	t.Helper()
	conn, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(loopback, 0)))
	if err != nil {
		t.Fatal(err)
	}
	local := conn.LocalAddr().(*net.UDPAddr).AddrPort()
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		var start time.Time
		for {
			n, from, err := conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			if start.IsZero() {
				start = time.Now()
			}
			epoch := uint32(time.Since(start) / time.Second)
			if resp, ok := HandlePacket(context.Background(), buf[:n], from.Addr(), h, epoch, ServerOptions{}); ok {
				conn.WriteToUDPAddrPort(resp, from)
			}
		}
	}()
	t.Cleanup(func() {
		conn.Close()
		<-done
	})
	return local
}

// TestClientWithServer runs the client against this package's own server
// and a map-backed handler: the two halves must agree on the RFC.
func TestClientWithServer(t *testing.T) {
	h := newMemHandler()
	h.taken[443] = true
	h.noFilters = true
	gw := startServer(t, h)
	c := testClient(t, gw)
	ctx := context.Background()

	epoch, err := c.Announce(ctx)
	if err != nil || epoch > 1 {
		t.Fatalf("Announce = %d, %v", epoch, err)
	}

	// Asked for 10 s, the server grants its minimum, 120.
	m, err := c.Map(ctx, MapRequest{Protocol: TCP, InternalPort: 8080, SuggestedExternalPort: 19100, Lifetime: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if m.ExternalPort != 19100 || m.ExternalAddr != extAddr || m.Lifetime != 120*time.Second {
		t.Errorf("Map = %+v, want 19100 on %v for 120 s", m, extAddr)
	}
	if r, err := c.Refresh(ctx, m, time.Hour); err != nil || r.ExternalPort != 19100 || r.Lifetime != time.Hour {
		t.Errorf("Refresh = %+v, %v", r, err)
	}

	codeOf := func(err error) ResultCode {
		t.Helper()
		var re *ResultError
		if !errors.As(err, &re) {
			t.Fatalf("got %v, want a *ResultError", err)
		}
		return re.Code
	}
	// Another nonce may not delete it.
	if code := codeOf(c.Delete(ctx, TCP, 8080, NewNonce())); code != ResultNotAuthorized {
		t.Errorf("delete with another nonce: %s, want NOT_AUTHORIZED", code)
	}
	tests := []struct {
		name string
		r    MapRequest
		want ResultCode
	}{
		{"PREFER_FAILURE on a taken port", MapRequest{Protocol: TCP, InternalPort: 8443, SuggestedExternalPort: 443, PreferFailure: true}, ResultCannotProvideExternal},
		{"FILTER the gateway cannot apply", MapRequest{Protocol: TCP, InternalPort: 22, Filters: []Filter{{Prefix: netip.MustParsePrefix("198.51.100.0/24")}}}, ResultUnsuppOption},
		{"THIRD_PARTY not allowed", MapRequest{Protocol: TCP, InternalPort: 22, ThirdParty: netip.MustParseAddr("127.0.0.2")}, ResultUnsuppOption},
	}
	for _, tt := range tests {
		tt.r.Lifetime = time.Minute
		_, err := c.Map(ctx, tt.r)
		if code := codeOf(err); code != tt.want {
			t.Errorf("%s: %s, want %s", tt.name, code, tt.want)
		}
	}
	// Without PREFER_FAILURE the taken port is replaced.
	if m, err := c.Map(ctx, MapRequest{Protocol: TCP, InternalPort: 8443, SuggestedExternalPort: 443, Lifetime: time.Minute}); err != nil || m.ExternalPort != 444 {
		t.Errorf("Map of a taken port = %+v, %v; want port 444", m, err)
	}

	// A client whose address is rewritten on the way (here: a wrong
	// ClientAddr) is told there is a NAT in between.
	spoofed := testClient(t, gw)
	spoofed.ClientAddr = netip.MustParseAddr("192.168.1.20")
	_, err = spoofed.Map(ctx, MapRequest{Protocol: TCP, InternalPort: 8080, Lifetime: time.Minute})
	if code := codeOf(err); code != ResultAddressMismatch || !strings.Contains(err.Error(), "another NAT") {
		t.Errorf("spoofed client address: %v", err)
	}

	// The owner deletes its mapping.
	if err := c.Delete(ctx, TCP, 8080, m.Nonce); err != nil {
		t.Fatal(err)
	}
	h.mu.Lock()
	_, still := h.m[memKey{loopback, TCP, 8080}]
	h.mu.Unlock()
	if still {
		t.Error("mapping still in the table after Delete")
	}
	if c.LostState() {
		t.Error("LostState set against a server that did not restart")
	}
}

// TestClientConcurrent checks that one Client serves many goroutines.
func TestClientConcurrent(t *testing.T) {
	h := newMemHandler()
	gw := startServer(t, h)
	c := testClient(t, gw)
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := range 20 {
		wg.Go(func() {
			m, err := c.Map(context.Background(), MapRequest{Protocol: UDP, InternalPort: uint16(10000 + i), Lifetime: time.Hour})
			if err == nil && m.ExternalPort != uint16(10000+i) {
				err = fmt.Errorf("port %d mapped to %d", 10000+i, m.ExternalPort)
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}
