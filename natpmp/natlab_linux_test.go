//go:build linux

package natpmp

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// inNetns runs fn on a thread inside network namespace ns, so that the
// sockets fn opens belong to ns, and waits for it. fn runs on another
// goroutine, so it must report failures with t.Error, not t.Fatal. The
// thread is not handed back to the scheduler afterwards (no
// UnlockOSThread): it exits with the goroutine instead of running other
// goroutines inside ns.
func inNetns(t *testing.T, ns string, fn func()) {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		f, err := os.Open("/run/netns/" + ns)
		if err != nil {
			errc <- err
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", ns, err)
			return
		}
		defer func() { errc <- nil }()
		fn()
	}()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// TestNatlabMiniupnpd runs Client against miniupnpd 2.3.1 in a natlab that is
// already up (shared/natlab/natlab.sh up). It is opt-in: set
// PORTFWD_NATLAB_PREFIX to the lab's NATLAB_PREFIX (nl by default). The
// client runs in the lab's LAN namespace, so no packet leaves the lab.
func TestNatlabMiniupnpd(t *testing.T) {
	prefix := os.Getenv("PORTFWD_NATLAB_PREFIX")
	if prefix == "" {
		t.Skip("set PORTFWD_NATLAB_PREFIX to the prefix of a running natlab to test against miniupnpd")
	}
	lanNS := prefix + "-lan"
	if _, err := os.Stat("/run/netns/" + lanNS); err != nil {
		t.Fatalf("natlab namespace %s not found (%v); start it with NATLAB_PREFIX=%s natlab.sh up", lanNS, err, prefix)
	}
	gw := netip.MustParseAddrPort("10.77.0.1:5351") // natlab's router, inside the lab
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	inNetns(t, lanNS, func() {
		c := &Client{Gateway: gw, Logger: testLogger(t)}
		ext, err := c.ExternalAddress(ctx)
		if err != nil {
			t.Errorf("ExternalAddress: %v", err)
			return
		}
		if ext.Addr != netip.MustParseAddr("203.0.113.1") {
			t.Errorf("ExternalAddress = %v, want natlab's 203.0.113.1", ext.Addr)
		}

		if err := c.UnmapAll(ctx, TCP); err != nil {
			t.Errorf("UnmapAll: %v", err)
		}
		m, err := c.Map(ctx, TCP, 19000, 19100, time.Hour)
		if err != nil {
			t.Errorf("Map: %v", err)
			return
		}
		if m.ExternalPort != 19100 || m.InternalPort != 19000 || m.Lifetime != time.Hour {
			t.Errorf("Map = %+v, want 19100 -> 19000 for 1h", m)
		}
		// A renewal with another lifetime keeps the port and takes the new
		// lifetime (RFC 6886 §3.3: never more than asked).
		m, err = c.Map(ctx, TCP, 19000, 19100, 30*time.Second)
		if err != nil {
			t.Errorf("renewal: %v", err)
			return
		}
		if m.ExternalPort != 19100 || m.Lifetime <= 0 || m.Lifetime > 30*time.Second {
			t.Errorf("renewal = %+v, want 19100 for at most 30s", m)
		}

		// natlab allows ports 1024-65535 only. miniupnpd takes seconds to
		// refuse (it tries every other external port first), so the
		// client retransmits meanwhile and miniupnpd works through the
		// queued copies before it answers the next request.
		_, err = c.Map(ctx, UDP, 80, 80, time.Hour)
		var re *ResultError
		if !errors.As(err, &re) || re.Code != NotAuthorized {
			t.Errorf("Map of port 80 = %v, want a NotAuthorized *ResultError", err)
		}

		if err := c.Unmap(ctx, TCP, 19000); err != nil {
			t.Errorf("Unmap: %v", err)
		}
		if err := c.Unmap(ctx, TCP, 19000); err != nil {
			t.Errorf("second Unmap: %v, want success", err)
		}
		if c.LostState() {
			t.Error("LostState set against a gateway that did not restart")
		}
	})
}
