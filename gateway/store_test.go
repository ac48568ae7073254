package gateway_test

import (
	"bufio"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/portfwd/portfwd/gateway"
	"github.com/portfwd/portfwd/gateway/clocktest"
	"github.com/portfwd/portfwd/internal/testenv"
)

func openStore(t testing.TB, dir string, opts *gateway.FileStoreOptions) *gateway.FileStore {
	t.Helper()
	s, err := gateway.OpenFileStore(dir, opts)
	if err != nil {
		t.Fatalf("OpenFileStore: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// loadMap returns a store's leases by key.
func loadMap(t testing.TB, s *gateway.FileStore) map[gateway.Key]gateway.Mapping {
	t.Helper()
	ms, err := s.Load()
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	out := make(map[gateway.Key]gateway.Mapping, len(ms))
	for _, m := range ms {
		out[m.Key()] = m
	}
	return out
}

// fullMapping sets every field, so that a round trip checks them all.
func fullMapping(port uint16) gateway.Mapping {
	return gateway.Mapping{
		Protocol: gateway.UDP, ExternalPort: port,
		InternalAddr: addr("fd00::10"), InternalPort: port + 1,
		RemoteHost: addr("203.0.113.9"), Enabled: true, Description: "héllo wörld",
		Expires: t0.Add(time.Hour + 123*time.Nanosecond), Owner: addr("fd00::10"),
		Source: gateway.SourcePCP, Nonce: [12]byte{9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 1, 2},
		Created: t0.Add(-time.Minute),
	}
}

func TestFileStoreRoundTrip(t *testing.T) {
	for _, sync := range []bool{false, true} {
		t.Run(fmt.Sprintf("SyncWrites=%v", sync), func(t *testing.T) {
			testFileStoreRoundTrip(t, &gateway.FileStoreOptions{SyncWrites: sync})
		})
	}
}

func testFileStoreRoundTrip(t *testing.T, opts *gateway.FileStoreOptions) {
	dir := t.TempDir()
	s := openStore(t, dir, opts)
	a, b, c := fullMapping(1000), tcp(2000, "192.168.1.10", 80), tcp(3000, "192.168.1.11", 81)
	if err := s.Save([]gateway.Mapping{a, b, c}, nil); err != nil {
		t.Fatal(err)
	}
	b.Description = "replaced"
	if err := s.Save([]gateway.Mapping{b}, []gateway.Key{c.Key()}); err != nil {
		t.Fatal(err)
	}
	s.Close()

	got := loadMap(t, openStore(t, dir, nil))
	if len(got) != 2 || !sameMapping(got[a.Key()], a) || !sameMapping(got[b.Key()], b) {
		t.Errorf("reloaded %v\nwant %v and %v", got, a, b)
	}
}

func TestFileStoreIgnoresTornTail(t *testing.T) {
	for _, tc := range []struct {
		name     string
		damage   func(path string, size int64)
		lostLast bool // whether the last complete Save is lost with the damage
	}{
		{"garbage after the last frame", func(path string, _ int64) {
			appendBytes(t, path, []byte{200, 0, 0, 0, 1, 2, 3, 4, 1, 6, 0})
		}, false},
		{"last frame cut short", func(path string, size int64) {
			if err := os.Truncate(path, size-3); err != nil {
				t.Fatal(err)
			}
		}, true},
		{"last frame corrupted", func(path string, size int64) {
			flipByte(t, path, size-2)
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s := openStore(t, dir, nil)
			for p := uint16(1); p <= 11; p++ {
				if err := s.Save([]gateway.Mapping{tcp(p, "192.168.1.10", p)}, nil); err != nil {
					t.Fatal(err)
				}
			}
			s.Close()
			path := filepath.Join(dir, "leases.journal")
			tc.damage(path, fileSize(t, path))

			s = openStore(t, dir, nil)
			want := 11
			if tc.lostLast {
				want = 10
			}
			got := loadMap(t, s)
			if len(got) != want {
				t.Fatalf("reloaded %d leases, want %d", len(got), want)
			}
			if _, ok := got[gateway.Key{Protocol: gateway.TCP, ExternalPort: 10}]; !ok {
				t.Fatal("a lease before the damage was lost")
			}
			// The store is usable, and later records are not hidden behind the damage.
			if err := s.Save([]gateway.Mapping{tcp(99, "192.168.1.10", 99)}, nil); err != nil {
				t.Fatal(err)
			}
			s.Close()
			if got := loadMap(t, openStore(t, dir, nil)); len(got) != want+1 {
				t.Errorf("after a further Save and reopen: %d leases, want %d", len(got), want+1)
			}
		})
	}
}

func TestFileStoreIdentity(t *testing.T) {
	dir := t.TempDir()
	clock := clocktest.New(t0)
	s := openStore(t, dir, &gateway.FileStoreOptions{Clock: clock})
	uuid, epoch := s.UUID(), s.EpochOrigin()
	if len(uuid) != 36 || uuid[14] != '4' {
		t.Errorf("UUID %q is not a version 4 UUID", uuid)
	}
	if !epoch.Equal(t0) {
		t.Errorf("epoch origin %v, want the first open's time %v", epoch, t0)
	}
	s.Save([]gateway.Mapping{tcp(80, "192.168.1.10", 80)}, nil)
	s.Close()

	clock.Advance(time.Hour)
	s = openStore(t, dir, &gateway.FileStoreOptions{Clock: clock})
	if s.UUID() != uuid || !s.EpochOrigin().Equal(epoch) {
		t.Errorf("after reopen: UUID %s epoch %v, want %s %v", s.UUID(), s.EpochOrigin(), uuid, epoch)
	}
	s.Close()

	// Losing the journal is losing state: new epoch, same UUID.
	os.Remove(filepath.Join(dir, "leases.journal"))
	s = openStore(t, dir, &gateway.FileStoreOptions{Clock: clock})
	if s.UUID() != uuid || !s.EpochOrigin().Equal(t0.Add(time.Hour)) {
		t.Errorf("after journal loss: UUID %s epoch %v, want %s %v", s.UUID(), s.EpochOrigin(), uuid, t0.Add(time.Hour))
	}
}

func TestFileStoreDirectoryLock(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, nil)
	if _, err := gateway.OpenFileStore(dir, nil); err == nil {
		t.Fatal("a second store opened the same directory")
	}
	s.Close()
	openStore(t, dir, nil) // released on Close
}

func TestFileStoreMovesAsideForeignFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "leases.journal")
	if err := os.WriteFile(path, []byte("this is not a journal at all"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := openStore(t, dir, nil)
	if got := loadMap(t, s); len(got) != 0 {
		t.Errorf("loaded %d leases from a foreign file", len(got))
	}
	aside, _ := filepath.Glob(path + ".damaged-*")
	if len(aside) != 1 {
		t.Errorf("foreign file not kept aside: %v", aside)
	}
}

func TestFileStoreCompaction(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, &gateway.FileStoreOptions{CompactAt: 16 << 10})
	path := filepath.Join(dir, "leases.journal")
	// 100 leases refreshed 100 times each: 10,000 records.
	for round := 0; round < 100; round++ {
		for p := uint16(1); p <= 100; p++ {
			m := tcp(p, "192.168.1.10", p)
			m.Expires = t0.Add(time.Duration(round) * time.Second)
			if err := s.Save([]gateway.Mapping{m}, nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	if size := fileSize(t, path); size > 64<<10 {
		t.Errorf("journal is %d bytes after compaction should have kept it near 16 KiB", size)
	}
	s.Close()
	got := loadMap(t, openStore(t, dir, nil))
	if len(got) != 100 || !got[gateway.Key{Protocol: gateway.TCP, ExternalPort: 50}].Expires.Equal(t0.Add(99*time.Second)) {
		t.Errorf("after compaction: %d leases, lease 50 expires %v; want 100 with the last refresh", len(got), got[gateway.Key{Protocol: gateway.TCP, ExternalPort: 50}].Expires)
	}
}

func TestFileStoreIgnoresUnfinishedCompaction(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, nil)
	s.Save([]gateway.Mapping{tcp(80, "192.168.1.10", 80)}, nil)
	s.Close()
	// A crash between writing the temporary file and renaming it.
	if err := os.WriteFile(filepath.Join(dir, "leases.journal.tmp"), []byte("pfwdlog1garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := loadMap(t, openStore(t, dir, nil)); len(got) != 1 {
		t.Errorf("loaded %d leases, want the journal's 1", len(got))
	}
	if _, err := os.Stat(filepath.Join(dir, "leases.journal.tmp")); !os.IsNotExist(err) {
		t.Errorf("temporary file still there: %v", err)
	}
}

// TestFileStoreLoadsTenThousandLeases: a journal of 10,000 leases written
// one Save at a time opens again with every lease, each as it was saved.
// How fast it opens is BenchmarkFileStoreOpen10k's to say (scripts/bench.sh),
// not a bound in a test that a loaded machine would miss.
func TestFileStoreLoadsTenThousandLeases(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, nil)
	want := make(map[uint16]gateway.Mapping, 10000)
	for p := uint16(1); p <= 10000; p++ {
		m := fullMapping(p)
		want[p] = m
		if err := s.Save([]gateway.Mapping{m}, nil); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	s = openStore(t, dir, nil)
	ms, err := s.Load()
	if err != nil || len(ms) != len(want) {
		t.Fatalf("Load = %d leases, %v; want %d", len(ms), err, len(want))
	}
	for _, m := range ms {
		w, ok := want[m.ExternalPort]
		if !ok || !reflect.DeepEqual(m, w) {
			t.Fatalf("loaded %+v, saved %+v", m, w)
		}
	}
}

// TestFileStoreSurvivesKill kills a process writing leases at random
// moments (including during compactions) and checks that every Save it
// acknowledged is there afterwards and that the journal still opens.
func TestFileStoreSurvivesKill(t *testing.T) {
	if testing.Short() {
		t.Skip("starts subprocesses")
	}
	exe, err := os.Executable()
	if err != nil {
		testenv.Missing(t, "cannot find the test binary to re-run as the writer: %v", err)
	}
	for round, killAfter := range []int{1, 300, 2000, 5000} {
		dir := t.TempDir()
		cmd := exec.Command(exe, "-test.run=^TestFileStoreKillHelper$")
		cmd.Env = append(os.Environ(), "PORTFWD_KILL_HELPER_DIR="+dir)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(out)
		acked := -1
		for sc.Scan() {
			if n, err := strconv.Atoi(strings.TrimPrefix(sc.Text(), "ack ")); err == nil {
				acked = n
				if acked == killAfter {
					cmd.Process.Signal(syscall.SIGKILL)
				}
			}
		}
		cmd.Wait()
		if acked < killAfter {
			t.Fatalf("round %d: writer stopped after %d acks, before the kill at %d", round, acked, killAfter)
		}

		s := openStore(t, dir, nil)
		got := loadMap(t, s)
		// Replay the writer's acknowledged operations; the one after the
		// last ack may or may not have landed.
		want := make(map[gateway.Key]gateway.Mapping)
		for i := 0; i <= acked; i++ {
			helperOp(i, want)
		}
		maybe := maps.Clone(want)
		helperOp(acked+1, maybe)
		if !sameLeases(got, want) && !sameLeases(got, maybe) {
			t.Errorf("round %d (killed after ack %d): store holds %d leases, want %d (or %d with the unacknowledged op)",
				round, acked, len(got), len(want), len(maybe))
		}
		s.Close()
	}
}

// TestFileStoreKillHelper is the writer TestFileStoreSurvivesKill runs in a
// subprocess; on its own it does nothing.
func TestFileStoreKillHelper(t *testing.T) {
	dir := os.Getenv("PORTFWD_KILL_HELPER_DIR")
	if dir == "" {
		t.Skip("subprocess of TestFileStoreSurvivesKill")
	}
	s, err := gateway.OpenFileStore(dir, &gateway.FileStoreOptions{CompactAt: 32 << 10})
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(1)
	}
	for i := 0; i < 1_000_000; i++ {
		put, del := helperChange(i)
		if err := s.Save(put, del); err != nil {
			fmt.Println("save:", err)
			os.Exit(1)
		}
		fmt.Printf("ack %d\n", i)
	}
	os.Exit(0)
}

// helperChange is the writer's i-th change: mostly puts over 500 keys,
// with a delete every fifth operation.
func helperChange(i int) ([]gateway.Mapping, []gateway.Key) {
	port := uint16(1 + (i*7919)%500)
	if i%5 == 4 {
		return nil, []gateway.Key{{Protocol: gateway.TCP, ExternalPort: port}}
	}
	m := tcp(port, "192.168.1.10", uint16(i))
	m.Description = fmt.Sprintf("op %d", i)
	m.Expires = t0.Add(time.Duration(i) * time.Second)
	return []gateway.Mapping{m}, nil
}

func helperOp(i int, state map[gateway.Key]gateway.Mapping) {
	put, del := helperChange(i)
	for _, m := range put {
		state[m.Key()] = m
	}
	for _, k := range del {
		delete(state, k)
	}
}

func sameLeases(a, b map[gateway.Key]gateway.Mapping) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || !sameMapping(v, w) {
			return false
		}
	}
	return true
}

func fileSize(t testing.TB, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

func appendBytes(t testing.TB, path string, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
}

func flipByte(t testing.TB, path string, off int64) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[off] ^= 0xff
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func BenchmarkFileStoreSave(b *testing.B) {
	for _, sync := range []bool{false, true} {
		b.Run(fmt.Sprintf("SyncWrites=%v", sync), func(b *testing.B) {
			s, err := gateway.OpenFileStore(b.TempDir(), &gateway.FileStoreOptions{SyncWrites: sync})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			i := 0
			for b.Loop() {
				i++
				m := fullMapping(uint16(1 + i%10000))
				if err := s.Save([]gateway.Mapping{m}, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkFileStoreOpen10k(b *testing.B) {
	dir := b.TempDir()
	s, err := gateway.OpenFileStore(dir, nil)
	if err != nil {
		b.Fatal(err)
	}
	for p := uint16(1); p <= 10000; p++ {
		s.Save([]gateway.Mapping{fullMapping(p)}, nil)
	}
	s.Close()
	for b.Loop() {
		s, err := gateway.OpenFileStore(dir, nil)
		if err != nil {
			b.Fatal(err)
		}
		if ms, err := s.Load(); err != nil || len(ms) != 10000 {
			b.Fatalf("Load = %d, %v", len(ms), err)
		}
		s.Close()
	}
}
