package portmap

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// stateRecord remembers a mapping made by this host over a protocol that
// cannot list mappings (NAT-PMP), so that a later process can delete or edit
// it by its external port: NAT-PMP deletes by internal port.
type stateRecord struct {
	Method       Method    `json:"method"`
	Server       string    `json:"server"`
	Protocol     Protocol  `json:"protocol"`
	ExternalPort uint16    `json:"external_port"`
	InternalPort uint16    `json:"internal_port"`
	Description  string    `json:"description,omitempty"`
	Expires      time.Time `json:"expires"`
}

// stateFile is a small JSON file of stateRecords. It is rewritten whole
// (write to a temporary file, then rename) so a crash never leaves it torn.
type stateFile struct {
	mu   sync.Mutex
	path string
}

func newStateFile(dir string) *stateFile {
	if dir == "" {
		return nil
	}
	return &stateFile{path: filepath.Join(dir, "mappings.json")}
}

func (s *stateFile) load() ([]stateRecord, error) {
	data, err := os.ReadFile(s.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var recs []stateRecord
	if err := json.Unmarshal(data, &recs); err != nil {
		return nil, fmt.Errorf("state file %s is damaged (%v); delete it to start afresh", s.path, err)
	}
	now := time.Now()
	live := recs[:0]
	for _, r := range recs {
		if r.Expires.After(now) {
			live = append(live, r)
		}
	}
	return live, nil
}

func (s *stateFile) save(recs []stateRecord) error {
	if err := os.MkdirAll(filepath.Dir(s.path), 0o700); err != nil {
		return err
	}
	data, err := json.MarshalIndent(recs, "", "  ")
	if err != nil {
		return err
	}
	tmp := s.path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, s.path)
}

// update applies f to the records under the lock and saves the result.
func (s *stateFile) update(f func([]stateRecord) []stateRecord) error {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	recs, err := s.load()
	if err != nil {
		return err
	}
	return s.save(f(recs))
}

// find returns the records matching server and proto with external ports
// in [start, end].
func (s *stateFile) find(server string, proto Protocol, start, end uint16) []stateRecord {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	recs, _ := s.load()
	var out []stateRecord
	for _, r := range recs {
		if r.Server == server && r.Protocol == proto && r.ExternalPort >= start && r.ExternalPort <= end {
			out = append(out, r)
		}
	}
	return out
}
