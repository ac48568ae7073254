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

	"github.com/portfwd/portfwd/internal/natlab"
	"github.com/portfwd/portfwd/internal/testenv"
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

// TestNatlabMiniupnpd runs Client against miniupnpd, the reference NAT-PMP
// server, on the router of a natlab. The client runs in the lab's LAN
// namespace, so no packet leaves the lab. natlab skips it when the machine
// cannot build the lab (not root); CI sets PORTFWD_LAB_REQUIRED=1 to make
// that a failure.
func TestNatlabMiniupnpd(t *testing.T) {
	l := natlab.Start(t, natlab.Options{})
	gw := netip.AddrPortFrom(l.RouterLANIP, natlab.NATPMPPort)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	inNetns(t, l.LAN, func() {
		c := &Client{Gateway: gw, Logger: testenv.Logger(t)}
		ext, err := c.ExternalAddress(ctx)
		if err != nil {
			t.Errorf("ExternalAddress: %v", err)
			return
		}
		if ext.Addr != l.RouterWANIP {
			t.Errorf("ExternalAddress = %v, want the lab router's %v", ext.Addr, l.RouterWANIP)
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

		if err := c.Unmap(ctx, TCP, 19000); err != nil {
			t.Errorf("Unmap: %v", err)
		}
		if err := c.Unmap(ctx, TCP, 19000); err != nil {
			t.Errorf("second Unmap: %v, want success", err)
		}
		if c.LostState() {
			t.Error("LostState set against a gateway that did not restart")
		}

		// The lab's miniupnpd allows ports 1024-65535 only. It takes
		// seconds to refuse (it tries every other external port first),
		// and it stamps the reply with the epoch of when the request came:
		// a client that retransmitted meanwhile sees the epoch lag the
		// clock by those seconds, which past 2 s (RFC 6886 §3.6's slack)
		// reads as a restart. So this runs last, on a client that waits
		// instead of retransmitting.
		patient := &Client{Gateway: gw, InitialTimeout: 25 * time.Second, MaxTries: 1, Logger: testenv.Logger(t)}
		_, err = patient.Map(ctx, UDP, 80, 80, time.Hour)
		var re *ResultError
		if !errors.As(err, &re) || re.Code != NotAuthorized {
			t.Errorf("Map of port 80 = %v, want a NotAuthorized *ResultError", err)
		}
	})
}
