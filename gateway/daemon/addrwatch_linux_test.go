//go:build linux

package daemon

import (
	"context"
	"encoding/binary"
	"errors"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/portfwd/portfwd/internal/testenv"
)

// addrMsg builds the payload of an RTM_NEWADDR/RTM_DELADDR message.
func addrMsg(t testing.TB, family uint8, bits uint8, index uint32, attrs map[uint16][]byte) []byte {
	t.Helper()
	b := make([]byte, unix.SizeofIfAddrmsg)
	b[0], b[1] = family, bits
	binary.NativeEndian.PutUint32(b[4:], index)
	ae := netlink.NewAttributeEncoder()
	for _, typ := range []uint16{unix.IFA_ADDRESS, unix.IFA_LOCAL, unix.IFA_LABEL} {
		if v, ok := attrs[typ]; ok {
			ae.Bytes(typ, v)
		}
	}
	enc, err := ae.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return append(b, enc...)
}

func ip4(s string) []byte { a := netip.MustParseAddr(s).As4(); return a[:] }

func TestParseAddrMessage(t *testing.T) {
	label := append([]byte("wan0"), 0)
	for _, tc := range []struct {
		name string
		typ  uint16
		b    []byte
		want addrEvent
		ok   bool
	}{
		{"new address", unix.RTM_NEWADDR,
			addrMsg(t, unix.AF_INET, 24, 7, map[uint16][]byte{unix.IFA_ADDRESS: ip4("203.0.113.9"), unix.IFA_LOCAL: ip4("203.0.113.9"), unix.IFA_LABEL: label}),
			addrEvent{Index: 7, Label: "wan0", Prefix: netip.MustParsePrefix("203.0.113.9/24")}, true},
		{"deleted address", unix.RTM_DELADDR,
			addrMsg(t, unix.AF_INET, 24, 7, map[uint16][]byte{unix.IFA_LOCAL: ip4("203.0.113.1"), unix.IFA_LABEL: label}),
			addrEvent{Index: 7, Label: "wan0", Prefix: netip.MustParsePrefix("203.0.113.1/24"), Deleted: true}, true},
		// On a point-to-point link IFA_ADDRESS is the peer: the interface's
		// own address is IFA_LOCAL.
		{"point-to-point", unix.RTM_NEWADDR,
			addrMsg(t, unix.AF_INET, 32, 9, map[uint16][]byte{unix.IFA_ADDRESS: ip4("198.51.100.1"), unix.IFA_LOCAL: ip4("100.64.3.4"), unix.IFA_LABEL: append([]byte("ppp0"), 0)}),
			addrEvent{Index: 9, Label: "ppp0", Prefix: netip.MustParsePrefix("100.64.3.4/32")}, true},
		{"IFA_ADDRESS only", unix.RTM_NEWADDR,
			addrMsg(t, unix.AF_INET, 8, 1, map[uint16][]byte{unix.IFA_ADDRESS: ip4("10.0.0.1")}),
			addrEvent{Index: 1, Prefix: netip.MustParsePrefix("10.0.0.1/8")}, true},
		{"IPv6", unix.RTM_NEWADDR,
			addrMsg(t, unix.AF_INET6, 64, 7, map[uint16][]byte{unix.IFA_ADDRESS: netip.MustParseAddr("2001:db8::1").AsSlice()}),
			addrEvent{}, false},
		{"a link message", unix.RTM_NEWLINK,
			addrMsg(t, unix.AF_INET, 24, 7, map[uint16][]byte{unix.IFA_LOCAL: ip4("203.0.113.9")}),
			addrEvent{}, false},
		{"no address", unix.RTM_NEWADDR, addrMsg(t, unix.AF_INET, 24, 7, nil), addrEvent{}, false},
		{"prefix too long", unix.RTM_NEWADDR,
			addrMsg(t, unix.AF_INET, 33, 7, map[uint16][]byte{unix.IFA_LOCAL: ip4("203.0.113.9")}), addrEvent{}, false},
		{"short header", unix.RTM_NEWADDR, []byte{unix.AF_INET, 24, 0}, addrEvent{}, false},
		{"cut attribute", unix.RTM_NEWADDR,
			addrMsg(t, unix.AF_INET, 24, 7, map[uint16][]byte{unix.IFA_LOCAL: ip4("203.0.113.9")})[:unix.SizeofIfAddrmsg+6], addrEvent{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := parseAddrMessage(tc.typ, tc.b)
			if ok != tc.ok || got != tc.want {
				t.Errorf("parseAddrMessage = %+v, %v; want %+v, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}

func FuzzParseAddrMessage(f *testing.F) {
	f.Add(uint16(unix.RTM_NEWADDR), addrMsg(f, unix.AF_INET, 24, 7, map[uint16][]byte{unix.IFA_LOCAL: ip4("203.0.113.9"), unix.IFA_LABEL: []byte("wan0\x00")}))
	f.Add(uint16(unix.RTM_DELADDR), addrMsg(f, unix.AF_INET, 32, 1, map[uint16][]byte{unix.IFA_ADDRESS: ip4("10.0.0.1")}))
	f.Add(uint16(unix.RTM_NEWADDR), []byte{2, 24, 0, 0, 1, 0, 0, 0, 8, 0})
	f.Fuzz(func(t *testing.T, typ uint16, b []byte) {
		ev, ok := parseAddrMessage(typ, b)
		if ok && (!ev.Prefix.IsValid() || !ev.Prefix.Addr().Is4()) {
			t.Errorf("accepted an event without an IPv4 prefix: %+v", ev)
		}
		if !ok && ev != (addrEvent{}) {
			t.Errorf("refused, yet returned %+v", ev)
		}
	})
}

// testNetns creates a network namespace holding a veth pair, d0 and d1,
// up, and returns its name and a handle on it. It skips without root,
// unless PORTFWD_LAB_REQUIRED=1 says the test must run (see testenv).
func testNetns(t *testing.T) (string, *os.File) {
	t.Helper()
	name := testenv.Netns(t)
	ipIn(t, name, "link", "add", "d0", "type", "veth", "peer", "name", "d1")
	ipIn(t, name, "link", "set", "d0", "up")
	ipIn(t, name, "link", "set", "d1", "up")
	f, err := os.Open("/run/netns/" + name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return name, f
}

// ipIn runs ip(8) in the namespace ns.
func ipIn(t *testing.T, ns string, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", append([]string{"-n", ns}, args...)...).CombinedOutput(); err != nil {
		t.Fatalf("ip -n %s %s: %v: %s", ns, strings.Join(args, " "), err, out)
	}
}

// The watcher reports each address added to or removed from an interface
// as it happens, in the namespace it was opened in.
func TestAddrWatcherInNetns(t *testing.T) {
	ns, f := testNetns(t)
	w, err := openAddrWatcher(int(f.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// wait returns the first event about prefix, skipping others (the
	// kernel may report more, such as a promoted secondary address).
	wait := func(prefix string, deleted bool) (addrEvent, time.Duration) {
		t.Helper()
		began := time.Now()
		for {
			evs, err := w.next(ctx)
			if err != nil {
				t.Fatalf("waiting for the event of %s: %v", prefix, err)
			}
			for _, ev := range evs {
				if ev.Prefix.String() == prefix && ev.Deleted == deleted {
					return ev, time.Since(began)
				}
			}
		}
	}
	ipIn(t, ns, "addr", "add", "203.0.113.1/24", "dev", "d0")
	ev, took := wait("203.0.113.1/24", false)
	if ev.Label != "d0" || ev.Index <= 0 {
		t.Errorf("event %+v: want label d0 and an interface index", ev)
	}
	t.Logf("address added: reported %v after ip(8) returned", took)

	// As the lab test does: the new address first, then the old one goes.
	ipIn(t, ns, "addr", "add", "203.0.113.9/24", "dev", "d0")
	wait("203.0.113.9/24", false)
	ipIn(t, ns, "addr", "del", "203.0.113.1/24", "dev", "d0")
	if ev, _ := wait("203.0.113.1/24", true); ev.Label != "d0" {
		t.Errorf("deletion event %+v", ev)
	}

	// next returns once its context ends.
	cctx, ccancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { _, err := w.next(cctx); done <- err }()
	testenv.WaitBlocked(t, "(*addrWatcher).next") // in its read, not before it
	ccancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("next after cancel: %v", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("next did not return after its context ended")
	}
}

// followAddrEvents calls back for the interfaces it is asked about only.
func TestFollowAddrEventsFilters(t *testing.T) {
	ns, f := testNetns(t)
	w, err := openAddrWatcher(int(f.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	ctx, cancel := context.WithCancel(context.Background())
	calls := make(chan []addrEvent, 16)
	done := make(chan error, 1)
	go func() {
		// The interface is named by label here: net.InterfaceByIndex
		// would look in the test's own namespace, not ns.
		concerns := func(ev addrEvent) bool { return matchInterface(ev.Label, []string{"d0"}) }
		done <- followAddrEvents(ctx, w, concerns, func(evs []addrEvent) { calls <- evs })
	}()

	ipIn(t, ns, "addr", "add", "192.0.2.1/24", "dev", "d1") // not ours
	ipIn(t, ns, "addr", "add", "198.51.100.7/24", "dev", "d0")
	select {
	case evs := <-calls:
		if len(evs) != 1 || evs[0].Label != "d0" || evs[0].Prefix != netip.MustParsePrefix("198.51.100.7/24") {
			t.Errorf("called back with %+v; want the d0 address only", evs)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no callback for the address added to d0")
	}
	select {
	case evs := <-calls:
		t.Errorf("a second callback, for %+v", evs)
	case <-time.After(100 * time.Millisecond):
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("followAddrEvents returned %v after its context ended, want nil", err)
	}
}

func TestMatchInterface(t *testing.T) {
	for _, tc := range []struct {
		name     string
		patterns []string
		want     bool
	}{
		{"wan0", []string{"wan0"}, true},
		{"wan0", []string{"lan0", "wan0"}, true},
		{"wan01", []string{"wan0"}, false},
		{"ppp3", []string{"ppp*"}, true},
		{"pp", []string{"ppp*"}, false},
		{"anything", []string{"*"}, true},
		{"wan0", nil, false},
	} {
		if got := matchInterface(tc.name, tc.patterns); got != tc.want {
			t.Errorf("matchInterface(%q, %q) = %v, want %v", tc.name, tc.patterns, got, tc.want)
		}
	}
}
