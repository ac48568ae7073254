package ssdp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portfwd/portfwd/internal/testenv"
)

// These tests never multicast: every search is NoMulticast and unicast to a
// fake device on the loopback address.

// fakeDevice stands for a router's SSDP stack on loopback. Searches arrive
// on in; answers leave from out, another port, as several embedded stacks
// do. answer decides what to send back for each search.
type fakeDevice struct {
	in, out *net.UDPConn
	answer  func(st string) []reply

	inbox testenv.Inbox

	done chan struct{}
	wg   sync.WaitGroup
}

type reply struct {
	data  []byte
	delay time.Duration
	sent  chan struct{} // closed once sent, if non-nil
}

func newFakeDevice(t *testing.T, network, host string, answer func(st string) []reply) *fakeDevice {
	t.Helper()
	listen := func() *net.UDPConn {
		c, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(host), 0)))
		if err != nil {
			testenv.Missing(t, "cannot listen on %s %s: %v", network, host, err)
		}
		return c
	}
	d := &fakeDevice{in: listen(), out: listen(), answer: answer, done: make(chan struct{})}
	d.wg.Add(1)
	go d.serve()
	t.Cleanup(func() {
		close(d.done)
		d.in.Close()
		d.wg.Wait()
		d.out.Close()
	})
	return d
}

func (d *fakeDevice) addr() netip.AddrPort    { return d.in.LocalAddr().(*net.UDPAddr).AddrPort() }
func (d *fakeDevice) outAddr() netip.AddrPort { return d.out.LocalAddr().(*net.UDPAddr).AddrPort() }

func (d *fakeDevice) serve() {
	defer d.wg.Done()
	buf := make([]byte, maxDatagram)
	for {
		n, from, err := d.in.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		data := append([]byte(nil), buf[:n]...)
		d.inbox.Add(from, data)
		st, _, err := ParseSearch(data)
		if err != nil || d.answer == nil {
			continue
		}
		for _, r := range d.answer(st) {
			d.wg.Add(1)
			go func() {
				defer d.wg.Done()
				if r.delay > 0 {
					select {
					case <-time.After(r.delay):
					case <-d.done:
						return
					}
				}
				d.out.WriteToUDPAddrPort(r.data, from)
				if r.sent != nil {
					close(r.sent)
				}
			}()
		}
	}
}

func (d *fakeDevice) requests() []testenv.Datagram { return d.inbox.All() }

// flush returns what the fake has received so far, once every datagram
// sent to it before the call has been read.
func (d *fakeDevice) flush(t *testing.T) []testenv.Datagram { return d.inbox.Flush(t, d.addr()) }

// answerFor builds the answer of device n to a search for st.
func answerFor(n int, st string) []byte {
	return AppendResponse(nil, Response{
		Location: fmt.Sprintf("http://192.0.2.1:%d/rootDesc.xml", 5000+n),
		ST:       st,
		USN:      fmt.Sprintf("uuid:device-%d::%s", n, st),
		Server:   "Linux/6 UPnP/1.1 fake/1",
		MaxAge:   1800 * time.Second,
	})
}

func debugLogger(w *testenv.SyncBuffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func TestSearchAcceptsAnswerFromAnotherPort(t *testing.T) {
	dev := newFakeDevice(t, "udp4", "127.0.0.1", func(st string) []reply {
		return []reply{{data: answerFor(1, st)}}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var got []Response
	err := Search(ctx, SearchOptions{
		Targets:     []string{STIGDv1},
		NoMulticast: true,
		Unicast:     []netip.AddrPort{dev.addr()},
	}, func(r Response) bool {
		got = append(got, r)
		return false
	})
	if err != nil {
		t.Fatalf("Search: %v", err)
	}
	if len(got) != 1 {
		t.Fatalf("found called %d times after returning false, want 1", len(got))
	}
	want, _ := ParseResponse(answerFor(1, STIGDv1))
	want.From = dev.outAddr()
	if got[0] != want {
		t.Errorf("found\n%+v\nwant\n%+v", got[0], want)
	}
	if got[0].From.Port() == dev.addr().Port() {
		t.Fatalf("test is broken: the fake answered from the port it was searched on")
	}

	// The search itself: a unicast M-SEARCH naming its destination in HOST.
	reqs := dev.requests()
	if len(reqs) == 0 {
		t.Fatal("fake device received nothing")
	}
	m, err := ParseMessage(reqs[0].Data)
	if err != nil {
		t.Fatal(err)
	}
	if m.Get("HOST") != dev.addr().String() || m.Get("MX") != "1" || m.Get("ST") != STIGDv1 {
		t.Errorf("search headers = %v, want HOST %s, MX 1, ST %s", m.Header, dev.addr(), STIGDv1)
	}
}

func TestSearchSendsAllTargetsAtOnceThreeRounds(t *testing.T) {
	dev := newFakeDevice(t, "udp4", "127.0.0.1", nil) // never answers
	// Rounds far enough apart that the fake reading a round late on a
	// loaded machine does not blur it into the next; a fourth round would
	// come at 3*resend, well within the search.
	const resend = 250 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 5*resend)
	defer cancel()
	err := Search(ctx, SearchOptions{
		NoMulticast: true,
		Unicast:     []netip.AddrPort{dev.addr()},
		Resend:      resend,
	}, func(Response) bool { t.Error("found called with no device answering"); return true })
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Search error = %v, want one wrapping context.DeadlineExceeded", err)
	}

	targets := DefaultTargets()
	reqs := dev.flush(t)
	if len(reqs) != 3*len(targets) {
		t.Fatalf("fake received %d searches, want %d: every target, three rounds", len(reqs), 3*len(targets))
	}
	for round := range 3 {
		batch := reqs[round*len(targets) : (round+1)*len(targets)]
		var sts []string
		for _, r := range batch {
			st, mx, err := ParseSearch(r.Data)
			if err != nil || mx != 1 {
				t.Fatalf("round %d: ParseSearch = %q, %d, %v; want MX 1", round, st, mx, err)
			}
			sts = append(sts, st)
		}
		slices.Sort(sts)
		want := slices.Sorted(slices.Values(targets))
		if !slices.Equal(sts, want) {
			t.Errorf("round %d searched %v, want %v", round, sts, want)
		}
		// All targets of a round go out together, well before the next round.
		if spread := batch[len(batch)-1].At.Sub(batch[0].At); spread > resend/2 {
			t.Errorf("round %d took %v to send, want all targets at once", round, spread)
		}
	}
	if gap := reqs[len(targets)].At.Sub(reqs[0].At); gap < resend/2 {
		t.Errorf("second round came %v after the first, want about %v", gap, resend)
	}
}

func TestSearchClampsMX(t *testing.T) {
	for _, tt := range []struct{ in, want int }{{0, 1}, {-3, 1}, {3, 3}, {9, 5}} {
		t.Run(fmt.Sprint(tt.in), func(t *testing.T) {
			dev := newFakeDevice(t, "udp4", "127.0.0.1", func(st string) []reply { return []reply{{data: answerFor(1, st)}} })
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			Search(ctx, SearchOptions{Targets: []string{STAll}, MX: tt.in, NoMulticast: true, Unicast: []netip.AddrPort{dev.addr()}},
				func(Response) bool { return false })
			reqs := dev.requests()
			if len(reqs) == 0 {
				t.Fatal("no search received")
			}
			if _, mx, err := ParseSearch(reqs[0].Data); err != nil || mx != tt.want {
				t.Errorf("MX %d sent as %d (%v), want %d", tt.in, mx, err, tt.want)
			}
		})
	}
}

func TestSearchDeduplicatesAndSkipsGarbage(t *testing.T) {
	garbage := [][]byte{
		[]byte("\x00\x01\x02\x03 not ssdp"),
		AppendSearch(nil, STAll, 1, ""), // another client's search
		[]byte(strings.Replace(string(answerFor(9, STIGDv1)), "http://192.0.2.1:5009/rootDesc.xml", "/rootDesc.xml", 1)),
		[]byte("HTTP/1.1 500 Internal Server Error\r\n\r\n"),
	}
	dev := newFakeDevice(t, "udp4", "127.0.0.1", func(st string) []reply {
		var rs []reply
		for _, g := range garbage {
			rs = append(rs, reply{data: g})
		}
		// Device 1 answers twice to every search, device 2 once.
		return append(rs, reply{data: answerFor(1, st)}, reply{data: answerFor(1, st)}, reply{data: answerFor(2, st)})
	})
	var logs testenv.SyncBuffer
	ctx, cancel := context.WithTimeout(context.Background(), 400*time.Millisecond)
	defer cancel()
	got, err := SearchAll(ctx, SearchOptions{
		Targets:     []string{STIGDv1},
		NoMulticast: true,
		Unicast:     []netip.AddrPort{dev.addr()},
		Resend:      30 * time.Millisecond,
		Logger:      debugLogger(&logs),
	})
	if err != nil {
		t.Fatalf("SearchAll: %v", err)
	}
	var locs []string
	for _, r := range got {
		locs = append(locs, r.Location)
	}
	slices.Sort(locs)
	want := []string{"http://192.0.2.1:5001/rootDesc.xml", "http://192.0.2.1:5002/rootDesc.xml"}
	if !slices.Equal(locs, want) {
		t.Errorf("SearchAll found %v, want each device once: %v", locs, want)
	}
	if n := strings.Count(logs.String(), "skipping reply"); n < len(garbage) {
		t.Errorf("logged %d skipped replies, want at least %d; log:\n%s", n, len(garbage), logs.String())
	}
}

func TestSearchLateAnswers(t *testing.T) {
	const window = 600 * time.Millisecond
	afterEnd := make(chan struct{})
	var once sync.Once
	dev := newFakeDevice(t, "udp4", "127.0.0.1", func(st string) []reply {
		rs := []reply{{data: answerFor(1, st), delay: 200 * time.Millisecond}} // after the last round
		once.Do(func() {
			rs = append(rs, reply{data: answerFor(2, st), delay: window + 200*time.Millisecond, sent: afterEnd})
		})
		return rs
	})
	ctx, cancel := context.WithTimeout(context.Background(), window)
	defer cancel()
	returned := false
	var got []Response
	err := Search(ctx, SearchOptions{
		Targets:     []string{STIGDv1},
		NoMulticast: true,
		Unicast:     []netip.AddrPort{dev.addr()},
		Resend:      20 * time.Millisecond,
	}, func(r Response) bool {
		if returned {
			t.Errorf("found called after Search returned: %+v", r)
		}
		got = append(got, r)
		return true
	})
	returned = true
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Search error = %v, want DeadlineExceeded", err)
	}
	if len(got) != 1 || got[0].Location != "http://192.0.2.1:5001/rootDesc.xml" {
		t.Errorf("found %+v, want only the answer that came late but within the window", got)
	}
	select {
	case <-afterEnd:
	case <-time.After(2 * time.Second):
		t.Fatal("fake never sent its answer after the end")
	}
}

func TestSearchReturnsPromptlyOnCancel(t *testing.T) {
	dev := newFakeDevice(t, "udp4", "127.0.0.1", nil)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		errc <- Search(ctx, SearchOptions{NoMulticast: true, Unicast: []netip.AddrPort{dev.addr()}}, func(Response) bool { return true })
	}()
	// Cancel while Search waits for answers: its search has gone out.
	for deadline := time.Now().Add(10 * time.Second); len(dev.requests()) == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("Search sent nothing in 10 s")
		}
	}
	testenv.WaitBlocked(t, "ssdp.Search")
	cancel()
	// Search has no end of its own here (its context has no deadline):
	// returning at all is returning because of the cancel, and the bound
	// only keeps a broken Search from hanging the test.
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Search error = %v, want one wrapping context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Search did not return after its context was canceled")
	}

	// A context already done: nothing is sent at all. The first flush waits
	// until the fake has read every search the canceled Search sent, so that
	// none of them is counted against this one; its marker is the +1.
	before := len(dev.flush(t)) + 1
	err := Search(ctx, SearchOptions{NoMulticast: true, Unicast: []netip.AddrPort{dev.addr()}}, func(Response) bool { return true })
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Search with a done context = %v, want context.Canceled", err)
	}
	if sent := dev.flush(t)[before:]; len(sent) != 0 {
		t.Errorf("Search with a done context sent %d searches", len(sent))
	}
}

func TestSearchStopsWhenFoundSaysSo(t *testing.T) {
	dev := newFakeDevice(t, "udp4", "127.0.0.1", func(st string) []reply {
		return []reply{{data: answerFor(1, st)}, {data: answerFor(2, st)}, {data: answerFor(3, st)}}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	calls := 0
	// A nil error is the proof that Search returned before its context
	// ended (it would then say context.DeadlineExceeded), with no clock
	// to misread on a loaded machine.
	err := Search(ctx, SearchOptions{Targets: []string{STIGDv2}, NoMulticast: true, Unicast: []netip.AddrPort{dev.addr()}},
		func(Response) bool { calls++; return false })
	if err != nil || calls != 1 {
		t.Errorf("Search = %v after %d calls, want nil after 1: it returns as soon as found says stop", err, calls)
	}
}

func TestSearchIPv6Unicast(t *testing.T) {
	dev := newFakeDevice(t, "udp6", "::1", func(st string) []reply { return []reply{{data: answerFor(1, st)}} })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var got Response
	err := Search(ctx, SearchOptions{Targets: []string{STIGDv1}, NoMulticast: true, Unicast: []netip.AddrPort{dev.addr()}},
		func(r Response) bool { got = r; return false })
	if err != nil || got.From != dev.outAddr() {
		t.Errorf("Search = %v, found from %v; want an answer from %v", err, got.From, dev.outAddr())
	}
}

func TestSearchRejectsBadOptions(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	never := func(Response) bool { t.Error("found called"); return false }
	lo := []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:9")}
	tests := []struct {
		name    string
		opts    SearchOptions
		mention string
	}{
		{"nowhere to search", SearchOptions{NoMulticast: true}, "Unicast is empty"},
		{"target with a line break", SearchOptions{Targets: []string{"ssdp:all\r\nX: y"}, NoMulticast: true, Unicast: lo}, "control characters"},
		{"blank target", SearchOptions{Targets: []string{" "}, NoMulticast: true, Unicast: lo}, "empty"},
		{"zero unicast destination", SearchOptions{NoMulticast: true, Unicast: []netip.AddrPort{{}}}, "not an address and port"},
		{"unicast destination without port", SearchOptions{NoMulticast: true, Unicast: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")}}, "not an address and port"},
		// A named interface that does not exist: nothing is multicast.
		{"unknown interface", SearchOptions{Interfaces: []string{"pfssdp-none0"}}, "pfssdp-none0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Search(ctx, tt.opts, never)
			if err == nil || !strings.Contains(err.Error(), tt.mention) {
				t.Errorf("Search error = %v, want one mentioning %q", err, tt.mention)
			}
		})
	}
}
