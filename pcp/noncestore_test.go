package pcp

import (
	"errors"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	gw4 = netip.MustParseAddr("10.77.0.1")
	gw6 = netip.MustParseAddr("fe80::1%eth0")
)

func TestNonceStore(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "nested", "nonces")
	s := NonceStore{Dir: dir}
	expires := time.Date(2026, 11, 22, 3, 30, 0, 0, time.UTC)
	m := MapResult{Nonce: testNonce, Protocol: TCP, InternalPort: 8080, ExternalPort: 19100, ExternalAddr: extAddr, Lifetime: 2 * time.Hour}
	rec := m.Record(netip.AddrFrom16(gw4.As16()), expires.Add(-2*time.Hour)) // an IPv4-mapped gateway is the same gateway
	want := StoredMapping{Gateway: gw4, Protocol: TCP, InternalPort: 8080, Nonce: testNonce, ExternalPort: 19100, ExternalAddr: extAddr, Expires: expires}
	if rec != want {
		t.Fatalf("Record = %+v, want %+v", rec, want)
	}

	if _, err := s.Load(gw4, TCP, 8080); !errors.Is(err, ErrNotStored) || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load from an empty store = %v, want ErrNotStored and fs.ErrNotExist", err)
	}
	if err := s.Save(rec); err != nil {
		t.Fatal(err)
	}
	got, err := s.Load(gw4, TCP, 8080)
	if err != nil || !got.Expires.Equal(want.Expires) {
		t.Fatalf("Load = %+v, %v", got, err)
	}
	got.Expires = want.Expires // same instant, maybe another *Location
	if got != want {
		t.Errorf("Load = %+v, want %+v", got, want)
	}
	// Another key is another entry.
	if _, err := s.Load(gw4, UDP, 8080); !errors.Is(err, ErrNotStored) {
		t.Errorf("Load of UDP 8080 = %v, want ErrNotStored", err)
	}

	// Owner-only: the nonce lets anyone delete the mapping.
	path := filepath.Join(dir, "pcp-10.77.0.1-tcp-8080.json")
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("%s has mode %v, want 0600", path, fi.Mode().Perm())
	}
	if di, err := os.Stat(dir); err != nil || di.Mode().Perm() != 0o700 {
		t.Errorf("directory mode %v, %v; want 0700", di.Mode().Perm(), err)
	}
	data, _ := os.ReadFile(path)
	if !strings.Contains(string(data), `"nonce": "0102030405060708090a0b0c"`) {
		t.Errorf("file holds %s, want the nonce in hexadecimal", data)
	}

	// Save replaces, atomically: no temporary file is left behind.
	rec.ExternalPort = 19101
	if err := s.Save(rec); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Load(gw4, TCP, 8080); err != nil || got.ExternalPort != 19101 {
		t.Errorf("after a second Save: %+v, %v", got, err)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Errorf("store holds %d files, want 1: %v", len(ents), ents)
	}

	if err := s.Delete(gw4, TCP, 8080); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Load(gw4, TCP, 8080); !errors.Is(err, ErrNotStored) {
		t.Errorf("Load after Delete = %v", err)
	}
	if err := s.Delete(gw4, TCP, 8080); err != nil {
		t.Errorf("second Delete = %v, want nil", err)
	}
}

func TestNonceStoreIPv6AndList(t *testing.T) {
	s := NonceStore{Dir: t.TempDir()}
	entries := []StoredMapping{
		{Gateway: gw6, Protocol: UDP, InternalPort: 53, Nonce: testNonce},
		{Gateway: gw4, Protocol: Protocol(132), InternalPort: 9, Nonce: Nonce{9}},
		{Gateway: gw4, Protocol: UDP, InternalPort: 53, Nonce: Nonce{7}},
	}
	for _, e := range entries {
		if err := s.Save(e); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.Load(gw6, UDP, 53)
	if err != nil || got.Nonce != testNonce || got.Gateway != gw6 {
		t.Errorf("Load via %v = %+v, %v", gw6, got, err)
	}
	for _, e := range []string{"pcp-fe80__1_eth0-udp-53.json", "pcp-10.77.0.1-proto132-9.json"} {
		if _, err := os.Stat(filepath.Join(s.Dir, e)); err != nil {
			t.Errorf("file name: %v", err)
		}
	}
	// A file that is not an entry is not listed.
	os.WriteFile(filepath.Join(s.Dir, "notes.txt"), []byte("hi"), 0o600)
	list, err := s.List()
	if err != nil || len(list) != len(entries) {
		t.Errorf("List = %d entries, %v; want %d", len(list), err, len(entries))
	}
	if list, err := (NonceStore{Dir: filepath.Join(s.Dir, "absent")}).List(); err != nil || len(list) != 0 {
		t.Errorf("List of a missing directory = %v, %v", list, err)
	}
}

func TestNonceStoreErrors(t *testing.T) {
	var empty NonceStore
	if err := empty.Save(StoredMapping{Gateway: gw4}); err == nil || !strings.Contains(err.Error(), "DefaultNonceDir") {
		t.Errorf("Save without Dir = %v", err)
	}
	if _, err := empty.Load(gw4, TCP, 1); err == nil {
		t.Error("Load without Dir succeeded")
	}
	if _, err := empty.List(); err == nil {
		t.Error("List without Dir succeeded")
	}
	s := NonceStore{Dir: t.TempDir()}
	if err := s.Save(StoredMapping{Protocol: TCP, InternalPort: 1}); err == nil {
		t.Error("Save without gateway succeeded")
	}

	path := filepath.Join(s.Dir, "pcp-10.77.0.1-tcp-80.json")
	os.WriteFile(path, []byte("{not json"), 0o600)
	if _, err := s.Load(gw4, TCP, 80); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("Load of a damaged file = %v, want an error naming it", err)
	}
	// A file renamed by hand holds another key.
	if err := s.Save(StoredMapping{Gateway: gw4, Protocol: TCP, InternalPort: 81}); err != nil {
		t.Fatal(err)
	}
	os.Rename(filepath.Join(s.Dir, "pcp-10.77.0.1-tcp-81.json"), path)
	if _, err := s.Load(gw4, TCP, 80); err == nil || !strings.Contains(err.Error(), "not the mapping its name says") {
		t.Errorf("Load of a renamed file = %v", err)
	}
}

// TestNonceStoreConcurrent saves from many goroutines at once, as several
// processes would: every entry must come back whole.
func TestNonceStoreConcurrent(t *testing.T) {
	s := NonceStore{Dir: t.TempDir()}
	var wg sync.WaitGroup
	for i := range 32 {
		wg.Go(func() {
			for range 5 {
				if err := s.Save(StoredMapping{Gateway: gw4, Protocol: UDP, InternalPort: uint16(i % 8), Nonce: Nonce{byte(i % 8)}}); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	for i := range 8 {
		m, err := s.Load(gw4, UDP, uint16(i))
		if err != nil || m.Nonce != (Nonce{byte(i)}) {
			t.Errorf("entry %d: %+v, %v", i, m, err)
		}
	}
	if ents, _ := os.ReadDir(s.Dir); len(ents) != 8 {
		t.Errorf("%d files, want 8 (temporary files left?)", len(ents))
	}
}

func TestDefaultNonceDir(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("XDG_CACHE_HOME is the cache directory on Linux only")
	}
	t.Setenv("XDG_CACHE_HOME", "/tmp/cache-for-test")
	dir, err := DefaultNonceDir()
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join("/tmp/cache-for-test", "portfwd", "pcp-nonces"); dir != want {
		t.Errorf("DefaultNonceDir = %q, want %q", dir, want)
	}
}
