package gateway_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/portfwd/portfwd/gateway"
)

// journalWith1023 writes 1,023 leases, one Save each, compacts the
// journal (one record per lease, as a long-running gateway's journal
// mostly is) and returns its path.
func journalWith1023(t *testing.T, compact bool) (dir, path string) {
	t.Helper()
	dir = t.TempDir()
	s := openStore(t, dir, nil)
	for p := uint16(1); p <= 1023; p++ {
		if err := s.Save([]gateway.Mapping{tcp(10000+p, "192.168.1.10", p)}, nil); err != nil {
			t.Fatal(err)
		}
	}
	if compact {
		if err := s.Compact(); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	return dir, filepath.Join(dir, "leases.journal")
}

func damagedCopies(t *testing.T, path string) []string {
	t.Helper()
	m, err := filepath.Glob(path + ".damaged-*")
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// A flipped byte anywhere in the journal costs the record it lands in,
// never the records after it: replay resynchronises on the next record,
// and the damaged file is kept aside.
func TestFileStoreResynchronisesAfterFlippedByte(t *testing.T) {
	for _, compact := range []bool{false, true} {
		_, path0 := journalWith1023(t, compact)
		orig, err := os.ReadFile(path0)
		if err != nil {
			t.Fatal(err)
		}
		for _, at := range []int{8, 9, 12, 20, len(orig) / 2, len(orig) - 30, len(orig) - 1} {
			dir := t.TempDir()
			path := filepath.Join(dir, "leases.journal")
			damaged := bytes.Clone(orig)
			damaged[at] ^= 0x40
			if err := os.WriteFile(path, damaged, 0o600); err != nil {
				t.Fatal(err)
			}
			s := openStore(t, dir, nil)
			got := len(loadMap(t, s))
			if got < 1022 {
				t.Errorf("compacted=%v, byte %d of %d flipped: %d of 1,023 leases kept, want at least 1,022", compact, at, len(orig), got)
			}
			if d := s.Damage(); len(d) != 1 || d[0].Stretches != 1 {
				t.Errorf("byte %d flipped: damage reported %+v, want one stretch", at, d)
			}
			copies := damagedCopies(t, path)
			if len(copies) != 1 {
				t.Fatalf("byte %d flipped: copies kept aside %v, want one", at, copies)
			}
			if kept, _ := os.ReadFile(copies[0]); !bytes.Equal(kept, damaged) {
				t.Errorf("the copy kept aside differs from the damaged journal")
			}
			// The rewritten journal is whole: a restart reads the same.
			s.Close()
			s = openStore(t, dir, nil)
			if n := len(loadMap(t, s)); n != got {
				t.Errorf("after the rewrite a restart reads %d leases, want %d", n, got)
			}
			if d := s.Damage(); len(d) != 0 {
				t.Errorf("the rewritten journal is damaged again: %+v", d)
			}
		}
	}
}

// A journal cut in the middle of a record, or with garbage appended, keeps
// every intact lease.
func TestFileStoreKeepsIntactLeasesOfCutOrExtendedJournal(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func([]byte) []byte
		want   int
	}{
		{"cut mid-record", func(b []byte) []byte { return b[:len(b)-7] }, 1022},
		{"garbage appended", func(b []byte) []byte { return append(b, bytes.Repeat([]byte{0xa5, 'P', 'F', 0x5a, 9}, 50)...) }, 1023},
		{"random bytes appended", func(b []byte) []byte { return append(b, []byte("\x00\xffjunk from a bad flash page\x13\x37")...) }, 1023},
		{"file magic overwritten", func(b []byte) []byte { copy(b, "XXXXXXXX"); return b }, 1023},
		{"a stretch zeroed", func(b []byte) []byte { clear(b[4000:4200]); return b }, 1023 - 6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, path0 := journalWith1023(t, true)
			orig, _ := os.ReadFile(path0)
			dir := t.TempDir()
			path := filepath.Join(dir, "leases.journal")
			if err := os.WriteFile(path, tc.damage(bytes.Clone(orig)), 0o600); err != nil {
				t.Fatal(err)
			}
			s := openStore(t, dir, nil)
			if got := len(loadMap(t, s)); got < tc.want {
				t.Errorf("%d leases kept, want at least %d", got, tc.want)
			}
			if len(damagedCopies(t, path)) != 1 {
				t.Error("the damaged journal was not kept aside")
			}
			if err := s.Save([]gateway.Mapping{tcp(99, "192.168.1.10", 99)}, nil); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// Journals written before records had sync markers are still read, and
// rewritten in the current format.
func TestFileStoreReadsVersion1Journal(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "leases.journal")
	if err := os.WriteFile(path, gateway.Version1Journal(tcp(80, "192.168.1.10", 8080), tcp(81, "192.168.1.11", 8081)), 0o600); err != nil {
		t.Fatal(err)
	}
	s := openStore(t, dir, nil)
	if got := loadMap(t, s); len(got) != 2 {
		t.Fatalf("read %d leases from a version 1 journal, want 2", len(got))
	}
	s.Close()
	b, _ := os.ReadFile(path)
	if !bytes.HasPrefix(b, []byte("pfwdlog2")) {
		t.Errorf("the journal was not rewritten as version 2: %q", b[:8])
	}
}

// Copies kept aside are bounded.
func TestFileStoreBoundsDamagedCopies(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "leases.journal")
	for i := range 8 {
		s := openStore(t, dir, nil)
		s.Save([]gateway.Mapping{tcp(uint16(100+i), "192.168.1.10", 80)}, nil)
		s.Close()
		appendBytes(t, path, []byte("garbage"))
	}
	openStore(t, dir, nil)
	if n := len(damagedCopies(t, path)); n != 5 {
		t.Errorf("%d damaged copies kept, want 5", n)
	}
}
