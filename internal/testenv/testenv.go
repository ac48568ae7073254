// Package testenv tells portfwd's tests whether this machine has what they
// need beyond Go: root, programs such as ip, nft, natpmpc or Chromium, and
// the shared corpus of real routers' replies and lab captures that sits
// beside the repository. When something is missing a test calls Missing,
// which skips it with a sentence naming what is missing and how to get it,
// or fails it when PORTFWD_LAB_REQUIRED=1 says the run must be complete, as
// CI does: a required run cannot pass by skipping.
//
// Every test that depends on something a fresh clone may lack goes through
// this package, so that no test skips silently.
//
// It also keeps tests hermetic and in step with what they watch: Main runs
// a package's tests away from the user's home and temporary directories;
// UDPFake, Inbox and FlushUDP let a test count what a client sent once the
// fake has read all of it; SyncBuffer and Logger take what a component
// logs from its goroutines.
package testenv

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// EnvRequired names the environment variable that turns a missing
// requirement from a skip into a failure. CI sets it to 1.
const EnvRequired = "PORTFWD_LAB_REQUIRED"

// EnvShared names the environment variable that points at the shared
// corpus when it is not the directory "shared" beside the repository.
const EnvShared = "PORTFWD_SHARED"

// Required reports whether PORTFWD_LAB_REQUIRED=1.
func Required() bool { return os.Getenv(EnvRequired) == "1" }

// Missing skips t because something it needs is absent, or fails it when
// the run is required to be complete (PORTFWD_LAB_REQUIRED=1). The message
// should name what is missing and how to get it.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if Required() {
		t.Fatalf("%s (%s=1: this test must run here)", msg, EnvRequired)
	}
	t.Skipf("skipped: %s (set %s=1 to make this a failure)", msg, EnvRequired)
}

// Root calls Missing unless the test runs as root; why says what root is
// for.
func Root(t testing.TB, why string) {
	t.Helper()
	if os.Geteuid() != 0 {
		Missing(t, "needs root %s; run the tests as root through scripts/test.sh", why)
	}
}

// Programs returns the paths of the named programs, and calls Missing
// naming those that are not installed.
func Programs(t testing.TB, names ...string) map[string]string {
	t.Helper()
	paths := map[string]string{}
	var missing []string
	for _, n := range names {
		p, err := LookPath(n)
		if err != nil {
			missing = append(missing, n)
			continue
		}
		paths[n] = p
	}
	if len(missing) > 0 {
		Missing(t, "missing %s; install with scripts/install-lab-deps.sh", strings.Join(missing, ", "))
	}
	return paths
}

// LookPath finds a program in PATH or in the sbin directories, which a
// non-login root shell may not have in PATH.
func LookPath(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/bin", "/bin"} {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", exec.ErrNotFound
}

// SharedDir returns the shared corpus directory: $PORTFWD_SHARED if set,
// else "shared" beside the repository's root (the directory holding
// go.mod). It does not check that the directory exists; see Shared.
func SharedDir() string {
	if d := os.Getenv(EnvShared); d != "" {
		return d
	}
	root, err := repoRoot()
	if err != nil {
		return filepath.Join("..", "shared") // reported by Shared
	}
	return filepath.Join(filepath.Dir(root), "shared")
}

// Shared returns the path of elem inside the shared corpus, and calls
// Missing when it does not exist.
func Shared(t testing.TB, elem ...string) string {
	t.Helper()
	p := filepath.Join(append([]string{SharedDir()}, elem...)...)
	if _, err := os.Stat(p); err != nil {
		Missing(t, "%s is missing: the shared corpus (real routers' replies, lab captures) is the directory shared/ beside the repository, or $%s", p, EnvShared)
	}
	return p
}

// ReadShared returns the contents of a file inside the shared corpus, and
// calls Missing when it does not exist.
func ReadShared(t testing.TB, elem ...string) []byte {
	t.Helper()
	data, err := os.ReadFile(Shared(t, elem...))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// GlobShared returns the files matching pattern inside the shared corpus,
// and calls Missing when there are none.
func GlobShared(t testing.TB, pattern string) []string {
	t.Helper()
	dir := SharedDir()
	m, err := filepath.Glob(filepath.Join(dir, pattern))
	if err != nil {
		t.Fatal(err)
	}
	if len(m) == 0 {
		Missing(t, "nothing matches %s in %s: the shared corpus (real routers' replies, lab captures) is the directory shared/ beside the repository, or $%s", pattern, dir, EnvShared)
	}
	return m
}

// repoRoot returns the nearest directory above the working directory (a
// test's package directory) that holds go.mod.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("testenv: no go.mod above the working directory")
		}
		dir = parent
	}
}

// Netns creates a network namespace holding only loopback, up, deletes it
// when t ends, and returns its name. It calls Missing when the machine
// cannot provide one: not root, no ip(8), or namespaces refused (an
// unprivileged container).
func Netns(t testing.TB) string {
	t.Helper()
	Root(t, "to create a network namespace")
	ip := Programs(t, "ip")["ip"]
	var r [4]byte
	rand.Read(r[:])
	name := fmt.Sprintf("pft%d-%x", os.Getpid(), r)
	if out, err := exec.Command(ip, "netns", "add", name).CombinedOutput(); err != nil {
		Missing(t, "cannot create a network namespace here (ip netns add: %v: %s)", err, bytes.TrimSpace(out))
	}
	t.Cleanup(func() {
		if out, err := exec.Command(ip, "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("testenv: deleting network namespace %s: %v: %s", name, err, bytes.TrimSpace(out))
		}
	})
	if out, err := exec.Command(ip, "-n", name, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("testenv: ip -n %s link set lo up: %v: %s", name, err, bytes.TrimSpace(out))
	}
	return name
}

// WaitBlocked waits until a goroutine is parked (on I/O, a channel, a
// lock, a timer: any state but running) with fn, a function name such as
// "(*addrWatcher).next", on its stack, and fails t after a minute without
// one. It lets a test act at the moment another goroutine is provably
// waiting, such as ending a context while a read is blocked, instead of
// sleeping and hoping.
func WaitBlocked(t testing.TB, fn string) {
	t.Helper()
	if !Blocked(fn, time.Minute) {
		t.Fatalf("testenv: no goroutine blocked in %s after a minute", fn)
	}
}

// Blocked is WaitBlocked for goroutines other than the test's: it reports
// whether a goroutine parked in fn appeared within limit.
func Blocked(fn string, limit time.Duration) bool {
	deadline := time.Now().Add(limit)
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n == len(buf) {
			buf = make([]byte, 2*len(buf))
			continue
		}
		for g := range strings.SplitSeq(string(buf[:n]), "\n\n") {
			header, _, _ := strings.Cut(g, "\n")
			if strings.Contains(g, fn+"(") && parked(header) {
				return true
			}
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(time.Millisecond)
	}
}

// parked reports whether a goroutine header ("goroutine 7 [IO wait]:")
// shows a goroutine that is waiting rather than running or about to.
func parked(header string) bool {
	_, state, ok := strings.Cut(header, "[")
	if !ok {
		return false
	}
	state, _, _ = strings.Cut(state, "]")
	state, _, _ = strings.Cut(state, ",") // "[select, 2 minutes]"
	switch state {
	case "running", "runnable", "syscall", "":
		return false
	}
	return true
}

// MissingPart reports something absent that a test can do without, such
// as fuzz seeds from the shared corpus: a log line, or a failure (the test
// goes on) when the run is required to be complete.
func MissingPart(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if Required() {
		t.Errorf("%s (%s=1: required here)", msg, EnvRequired)
		return
	}
	t.Logf("testenv: %s; the test goes on without it (set %s=1 to make this a failure)", msg, EnvRequired)
}

// FlushUDP sends a marker datagram to addr from a socket of its own and
// waits, for up to ten seconds, until read reports that the receiver has
// read it. Loopback delivers in order, so whatever was sent to addr before
// FlushUDP was called has been read by then: a test can check that
// nothing was sent without sleeping first.
func FlushUDP(t testing.TB, addr netip.AddrPort, read func(marker []byte) bool) {
	t.Helper()
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var r [8]byte
	rand.Read(r[:])
	marker := fmt.Appendf(nil, "testenv-flush-%x", r)
	if _, err := c.Write(marker); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); !read(marker); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("testenv: %v never read the flush marker", addr)
		}
	}
}

// DurationLog is a slog.Handler that records the value of one duration
// attribute of one message, such as the wait a client logs before each
// retransmission, and passes every record on. Loggers derived from it
// with With or WithGroup record into the same list.
type DurationLog struct {
	slog.Handler
	msg, key string
	rec      *durations
}

type durations struct {
	mu sync.Mutex
	d  []time.Duration
}

// NewDurationLog records attribute key of the records whose message is
// msg, and passes every record on to h.
func NewDurationLog(h slog.Handler, msg, key string) *DurationLog {
	return &DurationLog{Handler: h, msg: msg, key: key, rec: &durations{}}
}

func (l *DurationLog) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == l.msg {
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == l.key {
				l.rec.mu.Lock()
				l.rec.d = append(l.rec.d, a.Value.Duration())
				l.rec.mu.Unlock()
			}
			return true
		})
	}
	return l.Handler.Handle(ctx, r)
}

func (l *DurationLog) WithAttrs(as []slog.Attr) slog.Handler {
	c := *l
	c.Handler = l.Handler.WithAttrs(as)
	return &c
}

func (l *DurationLog) WithGroup(name string) slog.Handler {
	c := *l
	c.Handler = l.Handler.WithGroup(name)
	return &c
}

// Durations returns the values recorded so far.
func (l *DurationLog) Durations() []time.Duration {
	l.rec.mu.Lock()
	defer l.rec.mu.Unlock()
	return slices.Clone(l.rec.d)
}

// Outcome is what Record saw of a function's Fatal and Skip calls.
type Outcome struct{ Fatal, Skip string }

// recorder is a testing.TB whose Fatal and Skip are recorded instead of
// ending the real test. Everything else, Cleanup and Failed included,
// goes to the real test.
type recorder struct {
	testing.TB
	out Outcome
}

func (r *recorder) Fatal(args ...any) { r.out.Fatal = fmt.Sprint(args...); runtime.Goexit() }
func (r *recorder) Fatalf(format string, args ...any) {
	r.out.Fatal = fmt.Sprintf(format, args...)
	runtime.Goexit()
}
func (r *recorder) Skip(args ...any) { r.out.Skip = fmt.Sprint(args...); runtime.Goexit() }
func (r *recorder) Skipf(format string, args ...any) {
	r.out.Skip = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// Record runs f with a testing.TB around t whose Fatal and Skip end f but
// not t, and returns their messages: a test of test helpers (a skip policy,
// a failure path) can then check what they would have said.
func Record(t testing.TB, f func(tb testing.TB)) Outcome {
	r := &recorder{TB: t}
	done := make(chan struct{})
	go func() { // Goexit needs a goroutine of its own
		defer close(done)
		f(r)
	}()
	<-done
	return r.out
}

// ownNetnsEnv names the test a child process started by InOwnNetns runs.
const ownNetnsEnv = "PORTFWD_TEST_OWN_NETNS"

// InOwnNetns reports whether t, a top-level test, runs in a network
// namespace of its own.
// When it does not, it runs t again, alone, in a fresh namespace (the test
// binary started by ip netns exec, naming only t), logs the child's
// output, fails t if the child did not pass, and returns false: the caller
// returns at once.
//
// A test that adds links or addresses, or changes sysctls, in the
// namespace it runs in needs it: the test packages of a run share one
// namespace (scripts/test.sh), and other tests in it are disturbed by the
// changes. Chromium, which the page tests drive, aborts fetches in flight
// when the machine's network changes ("Failed to fetch").
func InOwnNetns(t *testing.T) bool {
	t.Helper()
	if os.Getenv(ownNetnsEnv) == t.Name() {
		return true
	}
	ns := Netns(t)
	ip := Programs(t, "ip")["ip"]
	cmd := exec.Command(ip, "netns", "exec", ns, os.Args[0], "-test.run=^"+regexp.QuoteMeta(t.Name())+"$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), ownNetnsEnv+"="+t.Name())
	out, err := cmd.CombinedOutput()
	t.Logf("in namespace %s:\n%s", ns, out)
	if err != nil || !strings.Contains(string(out), "--- PASS: "+t.Name()) {
		t.Fatalf("%s in its own namespace: %v", t.Name(), err)
	}
	return false
}
