package gateway_test

import (
	"slices"
	"testing"

	"github.com/portfwd/portfwd/gateway"
)

// A journal that is mostly history (leases made and deleted many times,
// not compacted) opens with exactly its live leases, each as last saved,
// and keeps working: the store keeps only the live leases' bytes, not the
// whole file it read.
func TestFileStoreOpensAJournalThatIsMostlyHistory(t *testing.T) {
	dir := t.TempDir()
	never := &gateway.FileStoreOptions{CompactAt: 1 << 40} // no compaction: all history stays
	s, err := gateway.OpenFileStore(dir, never)
	if err != nil {
		t.Fatal(err)
	}
	const live = 50
	for round := range 400 { // about 4 MB of records for 50 live leases
		for p := uint16(1); p <= live*2; p++ {
			m := fullMapping(p)
			m.InternalPort = uint16(round)
			if err := s.Save([]gateway.Mapping{m}, nil); err != nil {
				t.Fatal(err)
			}
		}
		var del []gateway.Key
		for p := uint16(live + 1); p <= live*2; p++ {
			del = append(del, fullMapping(p).Key())
		}
		if err := s.Save(nil, del); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()

	check := func(s *gateway.FileStore, want int) {
		t.Helper()
		ms, err := s.Load()
		if err != nil {
			t.Fatal(err)
		}
		slices.SortFunc(ms, func(a, b gateway.Mapping) int { return int(a.ExternalPort) - int(b.ExternalPort) })
		if len(ms) != want {
			t.Fatalf("loaded %d leases, want %d", len(ms), want)
		}
		for i, m := range ms {
			w := fullMapping(uint16(i + 1))
			w.InternalPort = 399
			if !sameMapping(m, w) {
				t.Fatalf("lease %d is %+v, want %+v as last saved", i, m, w)
			}
		}
	}
	s, err = gateway.OpenFileStore(dir, never)
	if err != nil {
		t.Fatal(err)
	}
	check(s, live)
	// A change after opening is saved beside them, and a compaction
	// writes them all.
	m := fullMapping(live + 1)
	m.InternalPort = 399
	if err := s.Save([]gateway.Mapping{m}, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Compact(); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = gateway.OpenFileStore(dir, never)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	check(s, live+1)
}
