package natpmp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portfwd/portfwd/internal/testenv"
)

// newFakeGateway starts a scripted NAT-PMP server on 127.0.0.1
// (testenv.UDPFake): for the i-th request it receives (counting from 0)
// it sends back whatever reply returns.
func newFakeGateway(t *testing.T, reply func(i int, from netip.AddrPort, req []byte) [][]byte) *testenv.UDPFake {
	return testenv.NewUDPFake(t, func(i int, d testenv.Datagram) [][]byte { return reply(i, d.From, d.Data) })
}

// answer replies to every request with the packets of fn.
func answer(fn func(req []byte) [][]byte) func(int, netip.AddrPort, []byte) [][]byte {
	return func(_ int, _ netip.AddrPort, req []byte) [][]byte { return fn(req) }
}

func silent(int, netip.AddrPort, []byte) [][]byte { return nil }

func resp(r Response) []byte { return AppendResponse(nil, r) }

// testClient is the client of the tests whose fake answers: it waits 10 s
// before it retransmits, so that exactly one request goes out however
// late a loaded machine runs the fake, and a test that counts requests
// cannot see a retransmission it did not cause. The tests of lost packets
// set a fast schedule of their own.
func testClient(t *testing.T, gw netip.AddrPort) *Client {
	return &Client{Gateway: gw, InitialTimeout: 10 * time.Second, MaxTries: 5, Logger: testenv.Logger(t)}
}

var testExt = netip.MustParseAddr("203.0.113.1")

func TestClientExternalAddress(t *testing.T) {
	g := newFakeGateway(t, answer(func([]byte) [][]byte {
		return [][]byte{resp(Response{Op: OpExternalAddress, Epoch: 2132, ExternalAddr: testExt})}
	}))
	got, err := testClient(t, g.Addr).ExternalAddress(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if want := (ExternalAddress{Addr: testExt, Epoch: 2132}); got != want {
		t.Errorf("ExternalAddress = %+v, want %+v", got, want)
	}
	reqs := g.All()
	if len(reqs) != 1 || !bytes.Equal(reqs[0].Data, []byte{0, 0}) {
		t.Errorf("gateway received %v, want one request 00 00", reqs)
	}
}

func TestClientExternalAddressUnspecified(t *testing.T) {
	g := newFakeGateway(t, answer(func([]byte) [][]byte {
		return [][]byte{resp(Response{Op: OpExternalAddress, Epoch: 1, ExternalAddr: netip.IPv4Unspecified()})}
	}))
	_, err := testClient(t, g.Addr).ExternalAddress(context.Background())
	if !errors.Is(err, ErrNoExternalAddress) {
		t.Errorf("err = %v, want ErrNoExternalAddress", err)
	}
}

// mapServer answers mapping requests by granting the suggested port (or
// 40000 when none is suggested) for the lifetime asked, at epoch 10.
func mapServer(req []byte) [][]byte {
	r, err := ParseRequest(req)
	if err != nil {
		return nil
	}
	ext := r.SuggestedExternalPort
	if ext == 0 {
		ext = 40000
	}
	if r.Lifetime == 0 {
		ext = 0
	}
	return [][]byte{resp(Response{Op: r.Op, Epoch: 10, InternalPort: r.InternalPort, ExternalPort: ext, Lifetime: r.Lifetime})}
}

func TestClientMapRequests(t *testing.T) {
	tests := []struct {
		name     string
		call     func(*Client) (Mapping, error)
		wantReq  string
		wantResp Mapping
	}{
		{
			name:     "map TCP (as captured from natpmpc)",
			call:     func(c *Client) (Mapping, error) { return c.Map(context.Background(), TCP, 19000, 9000, time.Hour) },
			wantReq:  "00 02 0000 4a38 2328 00000e10",
			wantResp: Mapping{Protocol: TCP, InternalPort: 19000, ExternalPort: 9000, Lifetime: time.Hour, Epoch: 10},
		},
		{
			name:     "map UDP, any port",
			call:     func(c *Client) (Mapping, error) { return c.Map(context.Background(), UDP, 53, 0, RecommendedLifetime) },
			wantReq:  "00 01 0000 0035 0000 00001c20",
			wantResp: Mapping{Protocol: UDP, InternalPort: 53, ExternalPort: 40000, Lifetime: 2 * time.Hour, Epoch: 10},
		},
		{
			name:     "lifetime rounds up to whole seconds",
			call:     func(c *Client) (Mapping, error) { return c.Map(context.Background(), UDP, 1, 1, 1500*time.Millisecond) },
			wantReq:  "00 01 0000 0001 0001 00000002",
			wantResp: Mapping{Protocol: UDP, InternalPort: 1, ExternalPort: 1, Lifetime: 2 * time.Second, Epoch: 10},
		},
		{
			name:     "a nanosecond is not a deletion",
			call:     func(c *Client) (Mapping, error) { return c.Map(context.Background(), UDP, 1, 1, 1) },
			wantReq:  "00 01 0000 0001 0001 00000001",
			wantResp: Mapping{Protocol: UDP, InternalPort: 1, ExternalPort: 1, Lifetime: time.Second, Epoch: 10},
		},
		{
			name:     "lifetimes beyond 32 bits are clamped",
			call:     func(c *Client) (Mapping, error) { return c.Map(context.Background(), UDP, 1, 1, 200*365*24*time.Hour) },
			wantReq:  "00 01 0000 0001 0001 ffffffff",
			wantResp: Mapping{Protocol: UDP, InternalPort: 1, ExternalPort: 1, Lifetime: 0xffffffff * time.Second, Epoch: 10},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := newFakeGateway(t, answer(mapServer))
			got, err := tt.call(testClient(t, g.Addr))
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.wantResp {
				t.Errorf("got %+v, want %+v", got, tt.wantResp)
			}
			reqs := g.All()
			if len(reqs) != 1 || !bytes.Equal(reqs[0].Data, mustHex(t, tt.wantReq)) {
				t.Errorf("gateway received %v, want one request %s", reqs, tt.wantReq)
			}
		})
	}
}

func TestClientUnmapRequests(t *testing.T) {
	tests := []struct {
		name    string
		call    func(*Client) error
		wantReq string
	}{
		// RFC 6886 §3.4: lifetime 0 and suggested port 0.
		{"unmap", func(c *Client) error { return c.Unmap(context.Background(), TCP, 19000) }, "00 02 0000 4a38 0000 00000000"},
		{"unmap all", func(c *Client) error { return c.UnmapAll(context.Background(), UDP) }, "00 01 0000 0000 0000 00000000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := newFakeGateway(t, answer(mapServer))
			if err := tt.call(testClient(t, g.Addr)); err != nil {
				t.Fatal(err)
			}
			reqs := g.All()
			if len(reqs) != 1 || !bytes.Equal(reqs[0].Data, mustHex(t, tt.wantReq)) {
				t.Errorf("gateway received %v, want one request %s", reqs, tt.wantReq)
			}
		})
	}
}

func TestClientResultCodes(t *testing.T) {
	tests := []struct {
		name  string
		reply func(req Request) []byte
		code  ResultCode
	}{
		{"unsupported version, opcode 128", func(Request) []byte { return mustHex(t, "00 80 0001 00000001") }, UnsupportedVersion},
		{"unsupported version, opcode 0 (RFC figure)", func(Request) []byte { return mustHex(t, "00 00 0001 00000001") }, UnsupportedVersion},
		{"PCP-only gateway", func(Request) []byte {
			return mustHex(t, "02 80 0001 00000000 00000854 000000000000000000000000")
		}, UnsupportedVersion},
		{"not authorized", func(r Request) []byte {
			return resp(Response{Op: r.Op, Result: NotAuthorized, InternalPort: r.InternalPort})
		}, NotAuthorized},
		{"network failure", func(r Request) []byte {
			return resp(Response{Op: r.Op, Result: NetworkFailure, InternalPort: r.InternalPort})
		}, NetworkFailure},
		{"out of resources, reply cut after the header", func(r Request) []byte {
			return resp(Response{Op: r.Op, Result: OutOfResources})[:8]
		}, OutOfResources},
		{"unsupported opcode", func(r Request) []byte { return resp(Response{Op: r.Op, Result: UnsupportedOpcode}) }, UnsupportedOpcode},
		{"undefined code", func(r Request) []byte { return resp(Response{Op: r.Op, Result: 42, InternalPort: r.InternalPort}) }, 42},
	}
	calls := []struct {
		op   Opcode
		call func(*Client) error
	}{
		{OpExternalAddress, func(c *Client) error { _, err := c.ExternalAddress(context.Background()); return err }},
		{OpMapTCP, func(c *Client) error { _, err := c.Map(context.Background(), TCP, 80, 80, time.Minute); return err }},
		{OpMapUDP, func(c *Client) error { return c.Unmap(context.Background(), UDP, 80) }},
		{OpMapTCP, func(c *Client) error { return c.UnmapAll(context.Background(), TCP) }},
	}
	for _, tt := range tests {
		for i, call := range calls {
			t.Run(fmt.Sprintf("%s/%d %s", tt.name, i, call.op), func(t *testing.T) {
				g := newFakeGateway(t, answer(func(b []byte) [][]byte {
					r, err := ParseRequest(b)
					if err != nil {
						t.Errorf("client sent an invalid request % x: %v", b, err)
						return nil
					}
					return [][]byte{tt.reply(r)}
				}))
				err := call.call(testClient(t, g.Addr))
				var re *ResultError
				if !errors.As(err, &re) {
					t.Fatalf("err = %v, want a *ResultError", err)
				}
				if re.Code != tt.code || re.Op != call.op {
					t.Errorf("ResultError = %+v, want code %d for %s", re, tt.code, call.op)
				}
				if n := len(g.All()); n != 1 {
					t.Errorf("%d requests sent; an error reply is final, want 1", n)
				}
			})
		}
	}
}

func TestClientRetransmitsUntilAnswered(t *testing.T) {
	// The first two requests are "lost"; the third is answered.
	g := newFakeGateway(t, func(i int, _ netip.AddrPort, req []byte) [][]byte {
		if i < 2 {
			return nil
		}
		return mapServer(req)
	})
	waits := testenv.NewDurationLog(testenv.Logger(t).Handler(), "natpmp: no reply, retransmitting", "waited")
	// 100 ms, 200 ms, then 400 ms for the answer to the third: long enough
	// that a loaded machine's late fake is not taken for a lost answer.
	c := &Client{Gateway: g.Addr, InitialTimeout: 100 * time.Millisecond, Logger: slog.New(waits)}
	began := time.Now()
	m, err := c.Map(context.Background(), UDP, 4000, 4000, time.Minute)
	took := time.Since(began)
	if err != nil {
		t.Fatal(err)
	}
	if m.ExternalPort != 4000 {
		t.Errorf("Map = %+v", m)
	}
	reqs := g.All()
	if len(reqs) != 3 {
		t.Fatalf("gateway received %d requests, want 3", len(reqs))
	}
	// RFC 6886 §3.1: the wait doubles after each attempt. The waits are
	// the client's own account; the clock only bounds them from below (the
	// times the gateway reads the requests would not: a loaded machine
	// reads one late and the next on time).
	if w := waits.Durations(); !slices.Equal(w, []time.Duration{100 * time.Millisecond, 200 * time.Millisecond}) {
		t.Errorf("waited %v before retransmitting, want 100ms then 200ms", w)
	}
	if took < 300*time.Millisecond {
		t.Errorf("Map returned after %v, before its waits of 300 ms in all ran out", took)
	}
	// Every retransmission is the same request from the same socket.
	for i := 1; i < len(reqs); i++ {
		if !bytes.Equal(reqs[i].Data, reqs[0].Data) || reqs[i].From != reqs[0].From {
			t.Errorf("retransmission %d differs: % x from %v, first was % x from %v", i, reqs[i].Data, reqs[i].From, reqs[0].Data, reqs[0].From)
		}
	}
}

func TestClientGivesUp(t *testing.T) {
	g := newFakeGateway(t, silent)
	c := &Client{Gateway: g.Addr, InitialTimeout: 10 * time.Millisecond, MaxTries: 3}
	_, err := c.ExternalAddress(context.Background())
	if !errors.Is(err, ErrNoResponse) {
		t.Fatalf("err = %v, want ErrNoResponse", err)
	}
	if !strings.Contains(err.Error(), g.Addr.String()) {
		t.Errorf("error %q does not name the gateway", err)
	}
	// The last try may still be on its way to the fake: flush, then count.
	if n := len(g.Flush(t)); n != 3 {
		t.Errorf("%d requests sent, want MaxTries = 3", n)
	}
}

func TestClientIgnoresUnrelatedReplies(t *testing.T) {
	g := newFakeGateway(t, answer(func(req []byte) [][]byte {
		r, _ := ParseRequest(req)
		return [][]byte{
			mustHex(t, "00 80 0000 00000010 01010101"),           // answers another opcode
			mustHex(t, "00 82 0000 00000010 0001 0001 00000e10"), // another internal port: a stale reply
			mustHex(t, "00 01 0000 1234 1234 00000e10"),          // a request, not a reply
			mustHex(t, "00 81"),                                  // too short
			mustHex(t, "02 81 0000 00000000"),                    // PCP, but not UNSUPP_VERSION
			resp(Response{Op: r.Op, Epoch: 16, InternalPort: r.InternalPort, ExternalPort: 7000, Lifetime: 60}),
		}
	}))
	c := testClient(t, g.Addr)
	m, err := c.Map(context.Background(), UDP, 7000, 7000, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if m.ExternalPort != 7000 || m.Epoch != 16 {
		t.Errorf("Map = %+v, want the one reply that answers the request", m)
	}
	if n := len(g.All()); n != 1 {
		t.Errorf("%d requests sent; the answer came in the first wait, want 1", n)
	}
}

func TestClientIgnoresOtherSources(t *testing.T) {
	// Another host answers first with a different address; the client
	// must take only the gateway's reply (RFC 6886 §3.2).
	other, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	impostor := netip.MustParseAddr("192.0.2.66")
	g := newFakeGateway(t, func(_ int, from netip.AddrPort, _ []byte) [][]byte {
		// Sent before the reply, from this goroutine, over loopback, which
		// delivers in order: it reaches the client first.
		other.WriteToUDPAddrPort(resp(Response{Op: OpExternalAddress, Epoch: 1, ExternalAddr: impostor}), from)
		return [][]byte{resp(Response{Op: OpExternalAddress, Epoch: 1, ExternalAddr: testExt})}
	})
	c := &Client{Gateway: g.Addr, InitialTimeout: time.Second}
	got, err := c.ExternalAddress(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got.Addr != testExt {
		t.Errorf("ExternalAddress = %v, want the gateway's %v", got.Addr, testExt)
	}
}

func TestClientContextEnds(t *testing.T) {
	g := newFakeGateway(t, silent)
	c := &Client{Gateway: g.Addr} // default schedule: minutes before giving up

	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	start := time.Now()
	_, err := c.Map(ctx, TCP, 80, 80, time.Minute)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("cancellation took %v to return", d)
	}

	ctx, cancel = context.WithTimeout(context.Background(), 60*time.Millisecond)
	defer cancel()
	start = time.Now()
	_, err = c.ExternalAddress(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("deadline took %v to return", d)
	}

	// An already-ended context sends nothing.
	before := len(g.All())
	if err := c.Unmap(ctx, TCP, 80); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Unmap with an ended context: %v", err)
	}
	if sent := g.Flush(t)[before:]; len(sent) != 0 {
		t.Errorf("%d request(s) sent with an ended context", len(sent))
	}
}

func TestClientPortUnreachable(t *testing.T) {
	// A port with nothing listening: the kernel answers ICMP port
	// unreachable, which RFC 6886 §3.1 lets the client take as final.
	lo := netip.MustParseAddr("127.0.0.1")
	closed := netip.AddrPortFrom(lo, testenv.FreePort(t, testenv.Bind{Network: "udp4", Addr: lo}))

	c := &Client{Gateway: closed} // default schedule: minutes if it kept retrying
	start := time.Now()
	_, err := c.ExternalAddress(context.Background())
	if !errors.Is(err, ErrNotSupported) {
		t.Fatalf("err = %v, want ErrNotSupported", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("took %v; an ICMP port unreachable should end the exchange at once", d)
	}
}

func TestClientDetectsLostState(t *testing.T) {
	var epoch atomic.Uint32
	g := newFakeGateway(t, answer(func(req []byte) [][]byte {
		r, _ := ParseRequest(req)
		return [][]byte{resp(Response{Op: r.Op, Epoch: epoch.Load(), ExternalAddr: testExt, InternalPort: r.InternalPort, ExternalPort: r.SuggestedExternalPort, Lifetime: r.Lifetime})}
	}))
	c := testClient(t, g.Addr)
	ctx := context.Background()
	if st := c.Epoch(); st.Valid {
		t.Errorf("Epoch() before any reply = %+v, want not Valid", st)
	}

	epoch.Store(100000)
	a, err := c.ExternalAddress(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if a.Rebooted || c.LostState() {
		t.Error("the first reply cannot show a reboot")
	}
	if st := c.Epoch(); !st.Valid || st.Epoch != 100000 || time.Since(st.Received) > time.Minute {
		t.Errorf("Epoch() = %+v", st)
	}

	// Same epoch a moment later, and a small step back within the 2 s
	// slack: no reboot.
	epoch.Store(99998)
	m, err := c.Map(ctx, TCP, 80, 80, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if m.Rebooted || c.LostState() {
		t.Error("an epoch within the RFC's 2 s slack was taken as a reboot")
	}

	// The gateway restarted: its epoch is back near 0.
	epoch.Store(4)
	m, err = c.Map(ctx, TCP, 80, 80, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if !m.Rebooted || !c.LostState() {
		t.Errorf("epoch 99998 -> 4: Rebooted=%v LostState=%v, want true", m.Rebooted, c.LostState())
	}

	// The flag stays up until cleared; the next reply is judged against
	// the new epoch.
	epoch.Store(5)
	a, err = c.ExternalAddress(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if a.Rebooted {
		t.Error("epoch 4 -> 5 taken as a reboot")
	}
	if !c.LostState() {
		t.Error("LostState cleared itself before ClearLostState")
	}
	c.ClearLostState()
	if c.LostState() {
		t.Error("LostState still set after ClearLostState")
	}
	if st := c.Epoch(); st.Epoch != 5 {
		t.Errorf("Epoch() = %+v, want epoch 5", st)
	}

	// Announcements feed the same check.
	if !c.ObserveEpoch(0) || !c.LostState() {
		t.Error("ObserveEpoch(0) right after epoch 5 did not report lost state")
	}
}

func TestClientSerializesConcurrentCalls(t *testing.T) {
	// No request may be sent while another is unanswered (RFC 6886 §3.1).
	// The gateway reads every datagram as it arrives and answers them in
	// turn, slowly: a request for another port arriving while one is
	// unanswered is an overlap (a retransmission of the unanswered one is
	// not). A request leaves the unanswered set before its reply is sent,
	// so a client that waits for the reply is never blamed.
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	type datagram struct {
		from netip.AddrPort
		req  Request
		data []byte
	}
	var (
		mu         sync.Mutex
		unanswered = map[uint16]bool{}
		overlaps   []string
		requests   int
	)
	queue := make(chan datagram, 64)
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		defer close(queue)
		buf := make([]byte, 1500)
		for {
			n, from, err := conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			r, err := ParseRequest(buf[:n])
			if err != nil {
				continue
			}
			mu.Lock()
			requests++
			if len(unanswered) > 0 && !unanswered[r.InternalPort] {
				overlaps = append(overlaps, fmt.Sprintf("port %d while %v unanswered", r.InternalPort, slices.Sorted(maps.Keys(unanswered))))
			}
			unanswered[r.InternalPort] = true
			mu.Unlock()
			queue <- datagram{from, r, bytes.Clone(buf[:n])}
		}
	}()
	answererDone := make(chan struct{})
	go func() {
		defer close(answererDone)
		for d := range queue {
			time.Sleep(2 * time.Millisecond) // a slow gateway: the window an overlap falls into
			mu.Lock()
			delete(unanswered, d.req.InternalPort)
			mu.Unlock()
			for _, p := range mapServer(d.data) {
				conn.WriteToUDPAddrPort(p, d.from)
			}
		}
	}()
	t.Cleanup(func() {
		conn.Close()
		<-readerDone
		<-answererDone
	})

	c := &Client{Gateway: conn.LocalAddr().(*net.UDPAddr).AddrPort(), InitialTimeout: time.Second}
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			port := uint16(10000 + i)
			m, err := c.Map(context.Background(), UDP, port, port, time.Minute)
			if err != nil || m.InternalPort != port || m.ExternalPort != port {
				t.Errorf("Map(%d) = %+v, %v", port, m, err)
			}
		})
	}
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if len(overlaps) > 0 {
		t.Errorf("requests overlapped: %v", overlaps)
	}
	if requests < 20 {
		t.Errorf("%d requests for 20 calls", requests)
	}
}

func TestClientArgumentErrors(t *testing.T) {
	ctx := context.Background()
	g := newFakeGateway(t, answer(mapServer))
	c := testClient(t, g.Addr)
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"no gateway", func() error { _, err := (&Client{}).ExternalAddress(ctx); return err }(), "Client.Gateway is not set"},
		{"IPv6 gateway", func() error {
			_, err := (&Client{Gateway: netip.MustParseAddrPort("[::1]:5351")}).ExternalAddress(ctx)
			return err
		}(), "IPv4 only"},
		{"other protocol", func() error { _, err := c.Map(ctx, Protocol(6), 80, 80, time.Minute); return err }(), "only UDP and TCP"},
		{"internal port 0", func() error { _, err := c.Map(ctx, TCP, 0, 80, time.Minute); return err }(), "internal port 0"},
		{"zero lifetime", func() error { _, err := c.Map(ctx, TCP, 80, 80, 0); return err }(), "use Unmap"},
		{"unmap port 0", c.Unmap(ctx, TCP, 0), "use UnmapAll"},
		{"unmap other protocol", c.Unmap(ctx, Protocol(0), 80), "only UDP and TCP"},
		{"unmap all other protocol", c.UnmapAll(ctx, Protocol(17)), "only UDP and TCP"},
	}
	for _, tt := range tests {
		if tt.err == nil || !strings.Contains(tt.err.Error(), tt.want) {
			t.Errorf("%s: err = %v, want one saying %q", tt.name, tt.err, tt.want)
		}
	}
	if n := len(g.All()); n != 0 {
		t.Errorf("invalid calls sent %d requests", n)
	}
}

func TestClientGatewayDefaultPort(t *testing.T) {
	c := &Client{Gateway: netip.MustParseAddrPort("10.77.0.1:0")}
	if got := c.gateway(); got != netip.MustParseAddrPort("10.77.0.1:5351") {
		t.Errorf("gateway() = %v, want port 5351", got)
	}
	c = &Client{Gateway: netip.MustParseAddrPort("[::ffff:10.77.0.1]:1234")}
	if got := c.gateway(); got != netip.MustParseAddrPort("10.77.0.1:1234") {
		t.Errorf("gateway() = %v, want the IPv4 form", got)
	}
}

func TestClientRejectsSuccessWithoutMapping(t *testing.T) {
	g := newFakeGateway(t, answer(func(req []byte) [][]byte {
		r, _ := ParseRequest(req)
		return [][]byte{resp(Response{Op: r.Op, InternalPort: r.InternalPort})}
	}))
	_, err := testClient(t, g.Addr).Map(context.Background(), TCP, 80, 80, time.Minute)
	if err == nil || !strings.Contains(err.Error(), "granted no mapping") {
		t.Errorf("err = %v, want one saying the router granted no mapping", err)
	}
}
