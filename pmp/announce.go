package pmp

import (
	"net/netip"
	"sync"
	"time"

	"github.com/portfwd/portfwd/natpmp"
	"github.com/portfwd/portfwd/pcp"
)

// Announcements tell the LAN that the gateway started or that its external
// address changed, so that clients re-create or re-read their mappings at
// once instead of at their next renewal. RFC 6886 §3.2.1 asks for 10
// multicast announcements to 224.0.0.1:5350, the first at once, the second
// 250 ms later, each later gap twice the one before (so at 0, 0.25, 0.75,
// 1.75, 3.75 s ... 127.75 s); PCP's unsolicited ANNOUNCE (RFC 6887
// §14.1.3) goes out on the same schedule, to the same address and port.
const (
	announceCount    = 10
	announceFirstGap = 250 * time.Millisecond
)

// announceGap returns how long after announcement i-1 of a burst
// announcement i (1 <= i < announceCount) is sent.
func announceGap(i int) time.Duration {
	return announceFirstGap << (i - 1)
}

// announceOffset returns when announcement i (0 <= i < announceCount) of a
// burst is sent, counted from the start of the burst: 0, 250 ms, 750 ms...
func announceOffset(i int) time.Duration {
	return announceFirstGap * (1<<i - 1)
}

// announcer runs the announcement schedule: Restart sends the first
// announcement of a burst at once and arms a timer for each of the next.
// A Restart during a burst abandons it and starts a new one, so that the
// LAN hears the latest state promptly and as often as after a single
// event. It does not build or send packets itself: send does, with the
// state of the moment it is called (a later announcement of a burst may
// carry a newer epoch), so that the schedule is tested on its own (under
// testing/synctest).
type announcer struct {
	// send sends announcement i of the current burst (0 is the first). It
	// is called without the announcer's lock, on Restart's goroutine for
	// the first and on a timer's for the others.
	send func(i int)

	mu      sync.Mutex
	gen     uint64 // the current burst; timers of older ones do nothing
	next    int    // index of the next announcement of the burst
	timer   *time.Timer
	stopped bool
}

func newAnnouncer(send func(i int)) *announcer {
	return &announcer{send: send}
}

// Restart starts a new burst: the first announcement is sent before
// Restart returns. It does nothing after Stop.
func (a *announcer) Restart() {
	a.mu.Lock()
	if a.stopped {
		a.mu.Unlock()
		return
	}
	a.gen++
	if a.timer != nil {
		a.timer.Stop()
		a.timer = nil
	}
	a.next = 0
	gen := a.gen
	a.mu.Unlock()
	a.fire(gen)
}

// Stop ends the current burst for good.
func (a *announcer) Stop() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.stopped = true
	if a.timer != nil {
		a.timer.Stop()
		a.timer = nil
	}
}

// fire sends the next announcement of burst gen and arms the timer of the
// one after, unless a newer burst or Stop came first.
func (a *announcer) fire(gen uint64) {
	a.mu.Lock()
	if a.stopped || a.gen != gen || a.next >= announceCount {
		a.mu.Unlock()
		return
	}
	i := a.next
	a.next++
	a.timer = nil
	if a.next < announceCount {
		a.timer = time.AfterFunc(announceGap(a.next), func() { a.fire(gen) })
	}
	a.mu.Unlock()
	a.send(i)
}

// allHostsGroup is where announcements go: the all-hosts group, on the
// port NAT-PMP and PCP clients listen on.
var allHostsGroup = netip.AddrPortFrom(netip.AddrFrom4([4]byte{224, 0, 0, 1}), natpmp.ClientPort)

// natpmpAnnouncement is NAT-PMP's announcement: an unsolicited external
// address response (RFC 6886 §3.2.1). Without an external address it
// carries what a request would get then, NETWORK_FAILURE, so that clients
// stop using the old address.
func natpmpAnnouncement(epoch uint32, ext netip.Addr) []byte {
	r := natpmp.Response{Op: natpmp.OpExternalAddress, Result: natpmp.Success, Epoch: epoch, ExternalAddr: ext.Unmap()}
	if !r.ExternalAddr.Is4() {
		r.Result, r.ExternalAddr = natpmp.NetworkFailure, netip.Addr{}
	}
	return natpmp.AppendResponse(nil, r)
}

// pcpAnnouncement is PCP's announcement: an unsolicited ANNOUNCE response
// (RFC 6887 §14.1.3), which carries only the epoch. Clients that see the
// epoch go back re-create their mappings, and learn the external address
// from the answers.
func pcpAnnouncement(epoch uint32) []byte {
	b, err := pcp.AppendResponse(nil, pcp.Response{Op: pcp.OpAnnounce, Result: pcp.ResultSuccess, Epoch: epoch})
	if err != nil {
		panic("pcp: cannot encode an ANNOUNCE response: " + err.Error()) // a fixed 24-byte header
	}
	return b
}
