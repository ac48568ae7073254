//go:build linux

package nft

import (
	"context"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/portfwd/portfwd/internal/testenv"
)

// The tests in this package that touch netfilter run only inside network
// namespaces they create, so they never alter the host's ruleset. They need
// root and the ip and nft tools; without them they skip, unless
// PORTFWD_LAB_REQUIRED=1 asks for a failure instead (CI on a lab runner).

func requireLab(t testing.TB) {
	t.Helper()
	testenv.Root(t, "to create network namespaces")
	testenv.Programs(t, "ip", "nft")
}

// netNS is a network namespace created for one test and deleted with it.
type netNS struct {
	name string
	file *os.File // /run/netns/name, for Config.NetNS
}

func (n *netNS) fd() int { return int(n.file.Fd()) }

// lab names the namespaces of one test "pfnft<pid><test hash><n>": unique
// across concurrent test binaries and across the tests of this one.
type lab struct {
	t    testing.TB
	tag  string
	next int
}

func newLab(t testing.TB) *lab {
	requireLab(t)
	h := fnv.New32a()
	io.WriteString(h, t.Name())
	return &lab{t: t, tag: fmt.Sprintf("pfnft%d%04x", os.Getpid(), h.Sum32()&0xffff)}
}

// ns creates a namespace with lo up.
func (l *lab) ns() *netNS {
	l.t.Helper()
	name := fmt.Sprintf("%s%d", l.tag, l.next)
	l.next++
	run(l.t, "ip", "netns", "add", name)
	l.t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			l.t.Errorf("deleting namespace %s: %v: %s", name, err, out)
		}
	})
	f, err := os.Open("/run/netns/" + name)
	if err != nil {
		l.t.Fatalf("opening namespace %s: %v", name, err)
	}
	l.t.Cleanup(func() { f.Close() })
	run(l.t, "ip", "-n", name, "link", "set", "lo", "up")
	return &netNS{name: name, file: f}
}

// run runs a command that must succeed and returns its output.
func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// exec runs a command inside n.
func (n *netNS) exec(t testing.TB, args ...string) string {
	t.Helper()
	return run(t, "ip", append([]string{"netns", "exec", n.name}, args...)...)
}

// nft runs the nft tool inside n, to inspect what the backend did.
func (n *netNS) nft(t testing.TB, args ...string) string {
	t.Helper()
	return n.exec(t, append([]string{"nft"}, args...)...)
}

// newBackend runs New for a namespace and closes the Backend with the test.
func newBackend(t testing.TB, ns *netNS, cfg Config) *Backend {
	t.Helper()
	cfg.NetNS = ns.fd()
	if cfg.Logger == nil {
		cfg.Logger = testenv.Logger(t)
	}
	b, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}
