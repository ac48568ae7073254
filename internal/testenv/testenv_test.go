package testenv_test

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portfwd/portfwd/internal/testenv"
)

// Something missing skips with a message that names it, and fails instead
// when the run is required: CI cannot go green by skipping.
func TestMissingPolicy(t *testing.T) {
	for _, tc := range []struct {
		env       string
		wantFatal bool
	}{{"", false}, {"0", false}, {"1", true}} {
		t.Run(testenv.EnvRequired+"="+tc.env, func(t *testing.T) {
			t.Setenv(testenv.EnvRequired, tc.env)
			r := testenv.Record(t, func(tb testing.TB) { testenv.Programs(tb, "sh", "testenv-no-such-program") })
			got, other := r.Skip, r.Fatal
			if tc.wantFatal {
				got, other = r.Fatal, r.Skip
			}
			if got == "" || other != "" {
				t.Fatalf("fatal %q, skip %q; want only a %s", r.Fatal, r.Skip, map[bool]string{true: "failure", false: "skip"}[tc.wantFatal])
			}
			if !strings.Contains(got, "testenv-no-such-program") || strings.Contains(got, "missing sh") || !strings.Contains(got, "install-lab-deps.sh") {
				t.Errorf("message %q should name exactly the missing program and how to install it", got)
			}
			if !strings.Contains(got, testenv.EnvRequired) {
				t.Errorf("message %q should name %s", got, testenv.EnvRequired)
			}
		})
	}
}

func TestProgramsFound(t *testing.T) {
	paths := testenv.Programs(t, "sh")
	if !filepath.IsAbs(paths["sh"]) {
		t.Errorf("Programs(sh) = %v, want an absolute path", paths)
	}
}

// The corpus is found beside the repository root from any package
// directory, or where PORTFWD_SHARED says.
func TestShared(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "routers", "r1"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "routers", "r1", "rootDesc.xml"), []byte("<root/>"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv(testenv.EnvShared, dir)
	t.Setenv(testenv.EnvRequired, "1")
	if got := string(testenv.ReadShared(t, "routers", "r1", "rootDesc.xml")); got != "<root/>" {
		t.Errorf("ReadShared = %q", got)
	}
	if m := testenv.GlobShared(t, "routers/*/rootDesc.xml"); len(m) != 1 {
		t.Errorf("GlobShared = %v, want the one file", m)
	}
	r := testenv.Record(t, func(tb testing.TB) { testenv.Shared(tb, "routers", "r2") })
	if !strings.Contains(r.Fatal, filepath.Join(dir, "routers", "r2")) {
		t.Errorf("missing file under PORTFWD_LAB_REQUIRED=1: fatal %q, skip %q; want a failure naming the path", r.Fatal, r.Skip)
	}
	r = testenv.Record(t, func(tb testing.TB) { testenv.GlobShared(tb, "captures/*.hex") })
	if !strings.Contains(r.Fatal, "captures/*.hex") {
		t.Errorf("empty glob under PORTFWD_LAB_REQUIRED=1: fatal %q, skip %q; want a failure naming the pattern", r.Fatal, r.Skip)
	}

	t.Setenv(testenv.EnvShared, "")
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	// This package is internal/testenv: the root is two levels up.
	want := filepath.Join(filepath.Dir(filepath.Dir(filepath.Dir(wd))), "shared")
	if got := testenv.SharedDir(); got != want {
		t.Errorf("SharedDir() = %q, want %q", got, want)
	}
}

//go:noinline
func blockedReading(c net.Conn, done chan<- error) {
	_, err := c.Read(make([]byte, 1))
	done <- err
}

// WaitBlocked returns once the goroutine is parked in its read, so the
// close below ends a read in progress.
func TestWaitBlocked(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	done := make(chan error, 1)
	go blockedReading(a, done)
	testenv.WaitBlocked(t, "testenv_test.blockedReading")
	a.Close()
	if err := <-done; !errors.Is(err, io.ErrClosedPipe) {
		t.Errorf("read: %v, want io.ErrClosedPipe", err)
	}
}

// A DurationLog records through derived loggers too, and passes every
// record on.
func TestDurationLog(t *testing.T) {
	var out strings.Builder
	l := testenv.NewDurationLog(slog.NewTextHandler(&out, nil), "retrying", "waited")
	log := slog.New(l).With("gateway", "x").WithGroup("g")
	log.Info("retrying", "waited", 20*time.Millisecond)
	log.Info("other", "waited", time.Second)
	slog.New(l).Info("retrying", "waited", 40*time.Millisecond, "try", 2)
	if got, want := l.Durations(), []time.Duration{20 * time.Millisecond, 40 * time.Millisecond}; !slices.Equal(got, want) {
		t.Errorf("Durations() = %v, want %v", got, want)
	}
	if n := strings.Count(out.String(), "\n"); n != 3 {
		t.Errorf("%d records passed on, want 3:\n%s", n, out.String())
	}
}

// FlushUDP returns once the receiver has read its marker, after what was
// sent before it.
func TestFlushUDP(t *testing.T) {
	pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	var mu sync.Mutex
	var got []string
	go func() {
		buf := make([]byte, 100)
		for {
			n, _, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			mu.Lock()
			got = append(got, string(buf[:n]))
			mu.Unlock()
		}
	}()
	c, err := net.DialUDP("udp4", nil, pc.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("first"))
	testenv.FlushUDP(t, pc.LocalAddr().(*net.UDPAddr).AddrPort(), func(marker []byte) bool {
		mu.Lock()
		defer mu.Unlock()
		return slices.Contains(got, string(marker))
	})
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 2 || got[0] != "first" {
		t.Errorf("read %q, want first, then the marker", got)
	}
}
