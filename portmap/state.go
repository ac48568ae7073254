package portmap

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/portfwd/portfwd/pcp"
)

// The client state store: everything the client remembers between runs,
// in one file of one directory.
//
//   - Mappings this host made over protocols that cannot read a mapping
//     back or delete it by its external port: NAT-PMP deletes by internal
//     port, and PCP only for the nonce that made the mapping (RFC 6887
//     §11.3). A later process (portfwd delete, edit, forget) finds them
//     here by external port.
//   - Mappings held open by a Keeper, over any protocol, with the keeping
//     process named, so that the next Keeper deletes what a crashed one
//     left behind.
//   - The discovery cache: where the UPnP gateway's description was last
//     found, per default gateway (see cache.go).
//
// The file is shared by every process of the user: each change takes an
// exclusive lock on a lock file (flock), reads the file, writes the new
// contents to a temporary file of a unique name, flushes it to disk and
// renames it over the old one, then flushes the directory. A crash at any
// point leaves the old file or the new one, never a torn one, and no
// process's change is lost to another's. A damaged file is set aside
// (renamed, never deleted) and a new one started.

const (
	stateFile     = "state.json"
	stateLockFile = ".lock"
	stateVersion  = 1
	// forgetExpiredAfter is how long a record is kept after its lease
	// ended. Routers drop a mapping when its lease ends, but a lease can be
	// renewed by another program, and deleting a mapping that is gone
	// costs one packet: the record is worth a little longer.
	forgetExpiredAfter = 24 * time.Hour
)

// DefaultStateDir is the client's state directory when Options.StateDir is
// empty: $XDG_STATE_HOME/portfwd, else ~/.local/state/portfwd. It returns
// "" when neither can be told (no HOME).
func DefaultStateDir() string {
	if d := os.Getenv("XDG_STATE_HOME"); d != "" && filepath.IsAbs(d) {
		return filepath.Join(d, "portfwd")
	}
	if h, err := os.UserHomeDir(); err == nil && h != "" {
		return filepath.Join(h, ".local", "state", "portfwd")
	}
	return ""
}

// Record is a mapping this host remembers making. Its fields are as the
// gateway granted them when the record was written (external port, lease),
// except Description, which NAT-PMP and PCP do not carry: that one is as
// requested.
type Record struct {
	Method Method `json:"method"`
	// Gateway is the Addr of the gateway the mapping was made through: its
	// control URL (UPnP) or host:port (NAT-PMP, PCP).
	Gateway        string     `json:"gateway"`
	Protocol       Protocol   `json:"protocol"`
	ExternalPort   uint16     `json:"external_port"`
	InternalClient string     `json:"internal_client,omitempty"`
	InternalPort   uint16     `json:"internal_port"`
	Description    string     `json:"description,omitempty"`
	ExternalAddr   netip.Addr `json:"external_addr,omitzero"`
	// Nonce is the PCP nonce the mapping was made with: refreshing or
	// deleting it needs the same one.
	Nonce pcp.Nonce `json:"nonce,omitzero"`
	// Made is when the mapping was made or last renewed.
	Made time.Time `json:"made"`
	// Expires is when its lease ends unless renewed; zero for a permanent
	// mapping.
	Expires time.Time `json:"expires,omitzero"`
	// Keeper names the process keeping the mapping open (a Keeper), nil
	// for a mapping made by a plain Add. A Keeper whose process is gone
	// left it behind: the next Keeper on the same gateway deletes it.
	Keeper *Process `json:"keeper,omitempty"`
}

// Process identifies a running process across PID reuse: its ID and, where
// the system tells, its start time.
type Process struct {
	PID   int    `json:"pid"`
	Start string `json:"start,omitempty"`
}

// Key returns the record's mapping key.
func (r Record) Key() Key { return Key{Protocol: r.Protocol, ExternalPort: r.ExternalPort} }

// Expired reports whether the record's lease ended before now.
func (r Record) Expired(now time.Time) bool { return !r.Expires.IsZero() && !r.Expires.After(now) }

// stateData is the file's contents.
type stateData struct {
	Version  int          `json:"version"`
	Mappings []Record     `json:"mappings"`
	Gateways []cacheEntry `json:"gateways,omitempty"`
	// Pinholes are the IPv6 pinholes this host opened (pinhole.go):
	// routers have no action to list them.
	Pinholes []PinholeRecord `json:"pinholes,omitempty"`
}

// store is the state directory of one set of Options. The zero Dir keeps
// the state in memory, for this store only.
type store struct {
	dir string
	log *slog.Logger

	mu  sync.Mutex // serialises this process's users; flock serialises processes
	mem stateData  // the state when dir is ""
}

func newStore(dir string, log *slog.Logger) *store {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &store{dir: dir, log: log}
}

// stateDirOf returns the state directory Options select.
func (o *Options) stateDir() string {
	if o.NoState {
		return ""
	}
	if o.StateDir != "" {
		return o.StateDir
	}
	return DefaultStateDir()
}

// errStateDamaged marks a state file that could not be parsed.
var errStateDamaged = errors.New("damaged state file")

// view calls f with the current state, under a shared lock.
func (s *store) view(f func(*stateData)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dir == "" {
		f(&s.mem)
		return nil
	}
	if _, err := os.Stat(s.dir); errors.Is(err, fs.ErrNotExist) {
		f(&stateData{})
		return nil
	}
	unlock, err := lockState(s.dir, false)
	if err != nil {
		return err
	}
	defer unlock()
	d, err := s.read()
	if err != nil {
		return err
	}
	s.importLegacy(d)
	f(d)
	return nil
}

// update applies f to the state under an exclusive lock and saves the
// result, unless f fails. It returns a warning when the file it found was
// damaged and had to be set aside.
func (s *store) update(f func(*stateData) error) (warning string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dir == "" {
		return "", f(&s.mem)
	}
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return "", fmt.Errorf("state directory: %w", err)
	}
	unlock, err := lockState(s.dir, true)
	if err != nil {
		return "", err
	}
	defer unlock()
	d, err := s.read()
	if errors.Is(err, errStateDamaged) {
		aside := filepath.Join(s.dir, fmt.Sprintf("%s.damaged-%s", stateFile, time.Now().UTC().Format("20060102T150405.000000000")))
		if rerr := os.Rename(filepath.Join(s.dir, stateFile), aside); rerr != nil {
			return "", fmt.Errorf("%w; setting it aside failed too: %v", err, rerr)
		}
		warning = fmt.Sprintf("%v; it was kept as %s and a new one started", err, aside)
		s.log.Warn("portmap: " + warning)
		d, err = &stateData{}, nil
	}
	if err != nil {
		return "", err
	}
	legacy := s.importLegacy(d)
	if err := f(d); err != nil {
		return warning, err
	}
	d.Version = stateVersion
	now := time.Now()
	d.Mappings = slices.DeleteFunc(d.Mappings, func(r Record) bool {
		return r.Keeper == nil && r.Expired(now.Add(-forgetExpiredAfter))
	})
	if err := s.write(d); err != nil {
		return warning, err
	}
	for _, p := range legacy {
		os.RemoveAll(p) // imported and saved: the old files are no longer needed
	}
	return warning, nil
}

// read loads the state file; a missing file is an empty state.
func (s *store) read() (*stateData, error) {
	path := filepath.Join(s.dir, stateFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return &stateData{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the state file: %w", err)
	}
	var d stateData
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, fmt.Errorf("%w %s (%v)", errStateDamaged, path, err)
	}
	if d.Version > stateVersion {
		return nil, fmt.Errorf("the state file %s was written by a newer portfwd (format %d); use that one, or move the file away", path, d.Version)
	}
	return &d, nil
}

// write replaces the state file with d: a temporary file of a unique name,
// flushed, renamed over the old one, and the directory flushed, so that a
// crash leaves either file whole.
func (s *store) write(d *stateData) error {
	b, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(s.dir, "."+stateFile+".*.tmp") // mode 0600
	if err != nil {
		return fmt.Errorf("writing the state file: %w", err)
	}
	done := false
	defer func() {
		if !done {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("writing the state file: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("writing the state file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing the state file: %w", err)
	}
	if err := os.Rename(tmp.Name(), filepath.Join(s.dir, stateFile)); err != nil {
		return fmt.Errorf("writing the state file: %w", err)
	}
	done = true
	if dir, err := os.Open(s.dir); err == nil {
		dir.Sync() // the rename itself survives a crash
		dir.Close()
	}
	return nil
}

// importLegacy adds what earlier versions kept in separate files of the
// directory (mappings.json, gateways.json, pcp-nonces/) to d, and returns
// the paths imported, for the caller to remove once d is saved.
func (s *store) importLegacy(d *stateData) []string {
	var done []string
	if b, err := os.ReadFile(filepath.Join(s.dir, "mappings.json")); err == nil {
		var old []struct {
			Method       Method    `json:"method"`
			Server       string    `json:"server"`
			Protocol     Protocol  `json:"protocol"`
			ExternalPort uint16    `json:"external_port"`
			InternalPort uint16    `json:"internal_port"`
			Description  string    `json:"description"`
			Expires      time.Time `json:"expires"`
		}
		if json.Unmarshal(b, &old) == nil {
			for _, o := range old {
				r := Record{Method: o.Method, Gateway: o.Server, Protocol: o.Protocol, ExternalPort: o.ExternalPort,
					InternalPort: o.InternalPort, Description: o.Description, Expires: o.Expires}
				if findRecord(d.Mappings, r.Method, r.Gateway, r.Key()) < 0 {
					d.Mappings = append(d.Mappings, r)
				}
			}
			done = append(done, filepath.Join(s.dir, "mappings.json"))
		}
	}
	if b, err := os.ReadFile(filepath.Join(s.dir, "gateways.json")); err == nil {
		var old []cacheEntry
		if json.Unmarshal(b, &old) == nil {
			if len(d.Gateways) == 0 {
				d.Gateways = old
			}
			done = append(done, filepath.Join(s.dir, "gateways.json"))
		}
	}
	nonces := filepath.Join(s.dir, "pcp-nonces")
	if ents, err := os.ReadDir(nonces); err == nil {
		for _, e := range ents {
			if !strings.HasPrefix(e.Name(), "pcp-") || !strings.HasSuffix(e.Name(), ".json") {
				continue
			}
			b, err := os.ReadFile(filepath.Join(nonces, e.Name()))
			if err != nil {
				continue
			}
			var old struct {
				Gateway      netip.Addr   `json:"gateway"`
				Protocol     pcp.Protocol `json:"protocol"`
				InternalPort uint16       `json:"internal_port"`
				Nonce        pcp.Nonce    `json:"nonce"`
				ExternalPort uint16       `json:"external_port"`
				ExternalAddr netip.Addr   `json:"external_addr"`
				Expires      time.Time    `json:"expires"`
			}
			if json.Unmarshal(b, &old) != nil || !old.Gateway.IsValid() {
				continue
			}
			p := TCP
			if old.Protocol == pcp.UDP {
				p = UDP
			}
			r := Record{Method: PCP, Gateway: netip.AddrPortFrom(old.Gateway, pcp.ServerPort).String(), Protocol: p,
				ExternalPort: old.ExternalPort, InternalPort: old.InternalPort, Nonce: old.Nonce,
				ExternalAddr: old.ExternalAddr, Expires: old.Expires}
			if findRecord(d.Mappings, r.Method, r.Gateway, r.Key()) < 0 {
				d.Mappings = append(d.Mappings, r)
			}
		}
		done = append(done, nonces)
	}
	return done
}

// findRecord returns the index of the record of method's gateway gw at key,
// or -1.
func findRecord(recs []Record, method Method, gw string, key Key) int {
	return slices.IndexFunc(recs, func(r Record) bool {
		return r.Method == method && r.Gateway == gw && r.Protocol == key.Protocol && r.ExternalPort == key.ExternalPort
	})
}

// records returns the records of method's gateway gw that match.
func (s *store) records(method Method, gw string, match func(Record) bool) ([]Record, error) {
	var out []Record
	err := s.view(func(d *stateData) {
		for _, r := range d.Mappings {
			if r.Method == method && r.Gateway == gw && (match == nil || match(r)) {
				out = append(out, r)
			}
		}
	})
	return out, err
}

// put records r, replacing the record of the same gateway and key.
func (s *store) put(r Record) (string, error) {
	return s.update(func(d *stateData) error {
		if i := findRecord(d.Mappings, r.Method, r.Gateway, r.Key()); i >= 0 {
			d.Mappings[i] = r
		} else {
			d.Mappings = append(d.Mappings, r)
		}
		return nil
	})
}

// drop forgets the record of method's gateway gw at key, if any.
func (s *store) drop(method Method, gw string, key Key) error {
	_, err := s.update(func(d *stateData) error {
		d.Mappings = slices.DeleteFunc(d.Mappings, func(r Record) bool {
			return r.Method == method && r.Gateway == gw && r.Protocol == key.Protocol && r.ExternalPort == key.ExternalPort
		})
		return nil
	})
	return err
}

// Remembered returns the mappings this host remembers making, from the
// state directory dir ("" means DefaultStateDir).
func Remembered(dir string) ([]Record, error) {
	if dir == "" {
		dir = DefaultStateDir()
	}
	var out []Record
	err := newStore(dir, nil).view(func(d *stateData) { out = slices.Clone(d.Mappings) })
	return out, err
}

// Forget drops from the state directory dir ("" means DefaultStateDir)
// the records for which drop returns true, and returns them. It changes
// nothing on any router: it is for records of mappings that are gone (or
// that the user no longer wants portfwd to know about). A record held by a
// running Keeper is never dropped.
func Forget(dir string, drop func(Record) bool) ([]Record, error) {
	if dir == "" {
		dir = DefaultStateDir()
	}
	var gone []Record
	_, err := newStore(dir, nil).update(func(d *stateData) error {
		d.Mappings = slices.DeleteFunc(d.Mappings, func(r Record) bool {
			if r.Keeper != nil && r.Keeper.Alive() {
				return false
			}
			if drop(r) {
				gone = append(gone, r)
				return true
			}
			return false
		})
		return nil
	})
	return gone, err
}

// Forgotten is a record Prune dropped, with why.
type Forgotten struct {
	Record
	// Why says how the mapping is known to be gone.
	Why string `json:"why"`
}

// Prune forgets, in the state directory dir ("" means DefaultStateDir),
// the records of mappings that are gone: those whose lease ended, and
// those that a gateway of gws (the one they were made through) no longer
// holds, as read back from it (UPnP). It changes nothing on any router.
// Records held by a running Keeper stay, and so do those that cannot be
// checked (a lease still running on a protocol that cannot read a mapping
// back, a gateway not in gws or not answering); those of a Keeper that
// crashed, whose mapping is still there, stay for the next Keeper to
// delete. It returns what it forgot.
func Prune(ctx context.Context, dir string, gws []Gateway) ([]Forgotten, error) {
	if dir == "" {
		dir = DefaultStateDir()
	}
	recs, err := Remembered(dir)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	why := map[int]string{}
	for i, r := range recs {
		if r.Keeper != nil && r.Keeper.Alive() {
			continue
		}
		if r.Expired(now) {
			why[i] = fmt.Sprintf("its lease ended %s", r.Expires.Local().Format("2006-01-02 15:04:05"))
			continue
		}
		for _, gw := range gws {
			if gw.Method() != r.Method || gw.Addr() != r.Gateway {
				continue
			}
			d, ok := gw.(driver)
			if !ok {
				continue
			}
			cur, err := d.lookup(ctx, r.Key())
			switch {
			case errors.Is(err, errNoEntry):
				why[i] = "the router no longer has it"
			case err == nil && (!sameAddr(cur.InternalClient, r.InternalClient) || cur.InternalPort != r.InternalPort):
				why[i] = fmt.Sprintf("the router now maps that port to %s", net.JoinHostPort(cur.InternalClient, strconv.Itoa(int(cur.InternalPort))))
			}
		}
	}
	if len(why) == 0 {
		return nil, nil
	}
	var out []Forgotten
	_, err = newStore(dir, nil).update(func(d *stateData) error {
		d.Mappings = slices.DeleteFunc(d.Mappings, func(x Record) bool {
			for i, w := range why {
				r := recs[i]
				if x.Method == r.Method && x.Gateway == r.Gateway && x.Key() == r.Key() && x.Made.Equal(r.Made) {
					out = append(out, Forgotten{Record: x, Why: w})
					return true
				}
			}
			return false
		})
		return nil
	})
	return out, err
}
