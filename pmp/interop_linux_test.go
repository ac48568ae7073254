//go:build linux

package pmp

import (
	"context"
	"os"
	"runtime"

	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/portfwd/portfwd/natpmp"

	"github.com/portfwd/portfwd/internal/testenv"
)

// newNetns creates an empty network namespace with only lo, up, and removes
// it when the test ends. Without root or iproute2 the test skips, or fails
// under PORTFWD_LAB_REQUIRED=1 (see testenv); -short skips it.
func newNetns(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("skipping a network namespace test in -short mode")
	}
	return testenv.Netns(t)
}

// inNetns runs fn on a thread inside network namespace ns. The thread is
// not handed back to the scheduler afterwards (no UnlockOSThread): it
// exits with the goroutine instead of running other goroutines inside ns.
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

// listenInNetns opens a UDP socket on addr inside network namespace ns.
func listenInNetns(t *testing.T, ns, addr string) net.PacketConn {
	t.Helper()
	var pc net.PacketConn
	var err error
	inNetns(t, ns, func() { pc, err = net.ListenPacket("udp4", addr) })
	if err != nil {
		t.Fatalf("listening on %s in namespace %s: %v", addr, ns, err)
	}
	t.Cleanup(func() { pc.Close() })
	return pc
}

// TestInteropNatpmpc runs libnatpmp's natpmpc, the client used for the
// natlab captures, against Server inside a private network namespace, where
// the server can own the real port 5351 on a loopback no one else sees.
func TestInteropNatpmpc(t *testing.T) {
	natpmpc := testenv.Programs(t, "natpmpc")["natpmpc"]
	ns := newNetns(t)
	pc := listenInNetns(t, ns, fmt.Sprintf("127.0.0.1:%d", natpmp.ServerPort))

	h := &memHandler{ext: netip.MustParseAddr("203.0.113.1"), maxLifetime: 86400}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- (&Server{NATPMP: h, NATPMPEpoch: func() uint32 { return 2132 }, Logger: testenv.Logger(t)}).ServePacketConn(ctx, pc)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("ServePacketConn: %v", err)
		}
	})

	natpmpcRun := func(args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		args = append([]string{"netns", "exec", ns, natpmpc, "-g", "127.0.0.1"}, args...)
		out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
		if err != nil {
			t.Fatalf("natpmpc %s: %v\n%s", strings.Join(args[4:], " "), err, out)
		}
		return string(out)
	}
	self := netip.MustParseAddr("127.0.0.1")

	out := natpmpcRun()
	for _, want := range []string{"Public IP address : 203.0.113.1", "epoch = 2132"} {
		if !strings.Contains(out, want) {
			t.Errorf("natpmpc output lacks %q:\n%s", want, out)
		}
	}

	out = natpmpcRun("-a", "9000", "19000", "tcp", "3600")
	if !strings.Contains(out, "Mapped public port 9000 protocol TCP to local port 19000") {
		t.Errorf("natpmpc output does not report the mapping:\n%s", out)
	}
	if got, ok := h.get(memKey{self, natpmp.TCP, 19000}); !ok || got != (memMapping{9000, 3600}) {
		t.Errorf("after natpmpc -a: table has %+v (present %v)", got, ok)
	}

	// natpmpc deletes with lifetime 0 but, unlike RFC 6886 §3.4 asks,
	// keeps the public port in the request (see the natlab capture).
	natpmpcRun("-a", "9000", "19000", "tcp", "0")
	if _, ok := h.get(memKey{self, natpmp.TCP, 19000}); ok {
		t.Error("natpmpc's deletion left the mapping in place")
	}

	natpmpcRun("-a", "5000", "5000", "udp", "60")
	natpmpcRun("-a", "5001", "5001", "udp", "60")
	natpmpcRun("-a", "0", "0", "udp", "0") // "remove all mappings for your machine"
	if n := h.count(); n != 0 {
		t.Errorf("natpmpc's delete-all left %d mappings", n)
	}
}
