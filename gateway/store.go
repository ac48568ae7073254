package gateway

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

// Store persists the mapping table so that leases survive a restart. The
// Core calls Save after the backend accepted a change and before it
// acknowledges it to the client.
type Store interface {
	// Load returns the saved mappings, in no particular order.
	Load() ([]Mapping, error)
	// Save records one change: each mapping in put is inserted or
	// replaces the one with its key, and each key in del is removed. When
	// Save returns nil the change must survive the process being killed;
	// when it returns an error the change must not have happened.
	Save(put []Mapping, del []Key) error
}

// EachLoader may be implemented by a Store that can hand its saved
// mappings over one at a time, so that restoring a million leases never
// holds them all decoded at once besides the table being built. fn must
// not call the Store. New uses it when no quota or table cap could make
// it choose among the saved leases (which it does oldest first, and so
// needs them all).
type EachLoader interface {
	LoadEach(fn func(Mapping)) error
	// Leases returns about how many leases LoadEach hands over (to size
	// the table once).
	Leases() int
}

// File names inside a FileStore's directory.
const (
	journalFile    = "leases.journal"
	journalTmpFile = "leases.journal.tmp"
	uuidFile       = "uuid"
	lockFileName   = "lock"

	defaultCompactAt = 1 << 20
)

// FileStoreOptions tunes a FileStore. The zero value is sensible.
type FileStoreOptions struct {
	// SyncWrites makes every Save wait for fsync. Without it a Save still
	// survives the process being killed (kill -9, a crash), because the
	// kernel already holds the data; fsync adds survival of power loss
	// and kernel panics, at the price of throughput and, on a router's
	// flash, wear. Compaction always syncs, so the journal is never left
	// empty or half-written whatever this says.
	SyncWrites bool
	// CompactAt is the journal size in bytes below which it is never
	// rewritten; above it, it is rewritten once it is four times the size
	// of the live leases. 0 means 1 MiB.
	CompactAt int64
	// Clock stamps the epoch origin; nil means SystemClock.
	Clock Clock
	// Logger receives warnings about damaged files; nil discards them.
	Logger *slog.Logger
}

// FileStore is a Store in a state directory, built as an append-only
// journal of changes (see journal.go) with periodic compaction, so that a
// change costs one small write and a restart reads one file:
//
//   - every Save appends CRC-checked records with a single write;
//   - on open, the journal is replayed record by record; a damaged
//     stretch (the torn tail a crash mid-write leaves, a flipped bit,
//     bytes appended) is skipped, replay resynchronises on the next intact
//     record, the damaged file is copied aside for inspection and the
//     journal is rewritten from what was read;
//   - when the journal has grown well past the live data, it is rewritten
//     to a temporary file, synced and renamed over the old one, so a crash
//     during compaction leaves either the old or the new journal intact.
//
// The directory also holds the device UUID (created once, kept forever,
// so that UPnP control points recognise the gateway across restarts) and
// the journal records the NAT-PMP epoch origin. A lock file keeps two
// gateways from sharing a directory.
type FileStore struct {
	dir       string
	sync      bool
	compactAt int64
	clock     Clock
	log       *slog.Logger
	uuid      string
	lock      *os.File

	mu        sync.Mutex
	f         *os.File // journal, opened for appending; nil when broken
	size      int64
	live      map[uint64][]byte // key -> encoded put op
	liveBytes int64
	epoch     time.Time
	broken    error // set when the journal may end in a partial frame
	damaged   []JournalDamage
	closed    bool
	buf       []byte
}

// OpenFileStore opens (creating if needed) the state directory dir.
func OpenFileStore(dir string, opts *FileStoreOptions) (*FileStore, error) {
	var o FileStoreOptions
	if opts != nil {
		o = *opts
	}
	s := &FileStore{
		dir:       dir,
		sync:      o.SyncWrites,
		compactAt: o.CompactAt,
		clock:     o.Clock,
		log:       o.Logger,
		live:      make(map[uint64][]byte),
	}
	if s.compactAt <= 0 {
		s.compactAt = defaultCompactAt
	}
	if s.clock == nil {
		s.clock = SystemClock{}
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating state directory: %w", err)
	}
	lock, err := lockFile(filepath.Join(dir, lockFileName))
	if err != nil {
		return nil, fmt.Errorf("state directory %s is in use by another portfwd gateway (stop it, or give each its own directory): %w", dir, err)
	}
	s.lock = lock
	if s.uuid, err = s.loadOrCreateUUID(); err != nil {
		lock.Close()
		return nil, err
	}
	// A temporary file is the remains of a compaction that did not reach
	// its rename; the journal it was replacing is still complete.
	if err := os.Remove(filepath.Join(dir, journalTmpFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		lock.Close()
		return nil, fmt.Errorf("removing unfinished compaction: %w", err)
	}
	s.mu.Lock()
	err = s.replayLocked()
	s.mu.Unlock()
	if err != nil {
		lock.Close()
		return nil, err
	}
	return s, nil
}

func (s *FileStore) journalPath() string { return filepath.Join(s.dir, journalFile) }

func (s *FileStore) replayLocked() error {
	path := s.journalPath()
	data, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("reading lease journal: %w", err)
	}
	rewrite := false
	var recs []scannedRecord // version 1 only
	var bad []damage
	nrecs := 0
	if len(s.live) == 0 && len(data) > 0 {
		s.live = make(map[uint64][]byte, len(data)/100) // a compacted journal holds one lease (~80 bytes) a record
	}
	switch {
	case len(data) < len(journalMagic) && (journalMagic[:len(data)] == string(data) || journalMagicV1[:len(data)] == string(data)):
		// Missing, empty, or torn while being created: no state.
		rewrite = true
		data = nil
	case len(data) >= len(journalMagicV1) && string(data[:len(journalMagicV1)]) == journalMagicV1:
		recs, bad = scanJournalV1(data)
		nrecs = len(recs)
		rewrite = true // into version 2
	default:
		// Applied as read: a million leases' decoded records are never
		// held at once.
		bad, nrecs = scanJournalFunc(data, func(r scannedRecord) { s.applyLocked(r.ops) })
	}
	if len(data) > 0 && nrecs == 0 && len(bad) > 0 && bad[0].Offset == 0 && bad[0].Tail {
		// Not one record anywhere: not a journal of ours at all (or one
		// damaged beyond recovery). Keep it, start empty.
		aside, err := s.keepAside(path, data)
		if err != nil {
			return fmt.Errorf("lease journal %s is not a portfwd journal and cannot be copied aside (move or delete it): %w", path, err)
		}
		s.log.Error("lease journal holds no readable record; kept it aside and starting with no leases", "path", path, "kept_as", aside, "bytes", len(data))
		recs, bad, rewrite = nil, nil, true
		nrecs = 0
	}
	for _, r := range recs {
		s.applyLocked(r.ops)
	}
	if len(bad) > 0 || nrecs > 0 && !bytes.HasPrefix(data, []byte(journalMagic)) && !bytes.HasPrefix(data, []byte(journalMagicV1)) {
		// Never rewrite what could not be read without keeping a copy.
		aside, err := s.keepAside(path, data)
		if err != nil {
			return fmt.Errorf("lease journal %s is damaged and cannot be copied aside before it is rewritten (free some space, or move it away): %w", path, err)
		}
		for _, d := range bad {
			what := "damaged stretch skipped; reading went on at the next intact record"
			if d.Tail {
				what = "damaged or incomplete end dropped (a write cut short by a crash or power loss, or bytes appended)"
			}
			s.log.Warn("lease journal: "+what, "path", path, "offset", d.Offset, "bytes", d.Length)
		}
		s.log.Warn("lease journal was damaged: kept every intact lease, and a copy of the damaged file for inspection",
			"leases", len(s.live), "records_read", nrecs, "damaged_stretches", len(bad), "copy", aside)
		s.damaged = append(s.damaged, JournalDamage{Copy: aside, Stretches: len(bad), Leases: len(s.live)})
		rewrite = true
	}
	if int64(len(data)) > 2*s.liveBytes+(1<<20) {
		s.detachLiveLocked() // mostly history: keep only what is live
	}
	// The NAT-PMP epoch tells clients whether the gateway kept their
	// mappings. It continues only while there are mappings to continue;
	// with none (state lost, or everything expired or flushed) it starts
	// again now.
	// Pending upstream deletes are no client's mapping.
	kept := false
	for k := range s.live {
		if k&(pinLiveBase|pinNextKey|upDelLiveBase) != upDelLiveBase {
			kept = true
			break
		}
	}
	if s.epoch.IsZero() || !kept {
		s.epoch = s.clock.Now().Round(0).UTC()
		rewrite = true
	}
	if rewrite || s.shouldCompact(int64(len(data))) {
		return s.compactLocked()
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return fmt.Errorf("opening lease journal: %w", err)
	}
	s.f, s.size = f, int64(len(data))
	return nil
}

// applyLocked applies the ops of one journal record to the live set. The
// live set keeps the ops' bytes where they are, in the journal's contents
// as read (see detachLiveLocked): a million leases cost no allocation
// each.
func (s *FileStore) applyLocked(ops []journalOp) {
	for _, op := range ops {
		raw := op.raw[:len(op.raw):len(op.raw)] // never appended to
		switch op.kind {
		case opPut:
			s.putLive(op.key.pack(), raw)
		case opDel:
			s.delLive(op.key.pack())
		case opEpoch:
			s.epoch = op.epoch
		case opPin:
			s.putLive(pinLiveKey(op.pinID), raw)
		case opPinDel:
			s.delLive(pinLiveKey(op.pinID))
		case opPinNext:
			s.putLive(pinNextKey, raw)
		case opUpDel:
			s.putLive(upDelLiveKey(op.upDel), raw)
		case opUpDelDone:
			s.delLive(upDelLiveKey(op.upDel))
		}
	}
}

// detachLiveLocked copies the live set's bytes into one array of their
// own, so that the journal's contents as read, which they point into, can
// be collected.
func (s *FileStore) detachLiveLocked() {
	arena := make([]byte, 0, s.liveBytes)
	for k, raw := range s.live {
		start := len(arena)
		arena = append(arena, raw...)
		s.live[k] = arena[start:len(arena):len(arena)]
	}
}

// maxKeptAside bounds the damaged journals kept for inspection, so that a
// router that keeps losing power does not fill its flash with them.
const maxKeptAside = 5

// keepAside writes a copy of a damaged journal's contents beside it, named
// leases.journal.damaged-TIME, and removes the oldest such copies beyond
// maxKeptAside. A copy, not a rename: until the journal is rewritten, the
// original must stay where the next start will look for it.
func (s *FileStore) keepAside(path string, data []byte) (string, error) {
	aside := fmt.Sprintf("%s.damaged-%s", path, s.clock.Now().UTC().Format("20060102T150405.000000000Z"))
	if err := writeSynced(aside, data); err != nil {
		os.Remove(aside)
		return "", err
	}
	if old, err := filepath.Glob(path + ".damaged-*"); err == nil && len(old) > maxKeptAside {
		sort.Slice(old, func(i, j int) bool { return old[i] < old[j] }) // the names sort by time
		for _, f := range old[:len(old)-maxKeptAside] {
			os.Remove(f)
		}
	}
	return aside, nil
}

// JournalDamage describes damage found in the lease journal when the
// store was opened.
type JournalDamage struct {
	// Copy is where the damaged file was kept for inspection.
	Copy string
	// Stretches is how many damaged stretches were skipped.
	Stretches int
	// Leases is how many leases were read from the intact records.
	Leases int
}

// Damage reports the damage found in the journal when the store was
// opened, if any.
func (s *FileStore) Damage() []JournalDamage {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.damaged)
}

func (s *FileStore) putLive(k uint64, raw []byte) {
	s.liveBytes += int64(len(raw)) - int64(len(s.live[k]))
	s.live[k] = raw
}

func (s *FileStore) delLive(k uint64) {
	s.liveBytes -= int64(len(s.live[k]))
	delete(s.live, k)
}

func (s *FileStore) shouldCompact(size int64) bool {
	return size >= s.compactAt && size > 4*s.liveBytes
}

// Load returns the saved mappings.
func (s *FileStore) Load() ([]Mapping, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Mapping, 0, len(s.live))
	for k, raw := range s.live {
		if k&(pinLiveBase|pinNextKey|upDelLiveBase) != 0 {
			continue
		}
		ops, err := decodeOps(raw)
		if err == nil && (len(ops) != 1 || ops[0].kind != opPut) {
			err = errors.New("not a single lease record")
		}
		if err != nil {
			return nil, fmt.Errorf("lease journal: decoding a saved lease: %w", err)
		}
		out = append(out, ops[0].m)
	}
	return out, nil
}

// Leases implements EachLoader.
func (s *FileStore) Leases() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.live)
}

// LoadEach implements EachLoader. The leases are decoded on a goroutine
// of their own, loadBatch at a time, while fn takes the ones before: on
// two cores a restart's decoding costs the table's build no time.
func (s *FileStore) LoadEach(fn func(Mapping)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	const loadBatch = 1024
	full := make(chan []Mapping, 2)
	free := make(chan []Mapping, 3)
	for range 3 {
		free <- make([]Mapping, 0, loadBatch)
	}
	stop := make(chan struct{})
	var derr error // set before full is closed
	go func() {
		defer close(full)
		var ops []journalOp
		batch := <-free
		for k, raw := range s.live {
			if k&(pinLiveBase|pinNextKey|upDelLiveBase) != 0 {
				continue
			}
			var err error
			ops, err = decodeOpsInto(ops[:0], raw)
			if err == nil && (len(ops) != 1 || ops[0].kind != opPut) {
				err = errors.New("not a single lease record")
			}
			if err != nil {
				derr = fmt.Errorf("lease journal: decoding a saved lease: %w", err)
				return
			}
			if batch = append(batch, ops[0].m); len(batch) == loadBatch {
				select {
				case full <- batch:
				case <-stop:
					return
				}
				batch = <-free
			}
		}
		if len(batch) > 0 {
			full <- batch
		}
	}()
	defer close(stop)
	for batch := range full {
		for i := range batch {
			fn(batch[i])
		}
		clear(batch) // drop the strings for the collector
		free <- batch[:0]
	}
	return derr
}

// Save appends the change to the journal; see Store.
func (s *FileStore) Save(put []Mapping, del []Key) error {
	if len(put) == 0 && len(del) == 0 {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.writableLocked(); err != nil {
		return err
	}

	// Each op is encoded once into payload; records of at most
	// maxOpsPerRecord ops are cut from it into one buffer written at once.
	payload := s.buf[:0]
	ends := make([]int, 0, len(put)+len(del))
	for _, m := range put {
		payload = appendPutOp(payload, m)
		ends = append(ends, len(payload))
	}
	for _, k := range del {
		payload = appendDelOp(payload, k)
		ends = append(ends, len(payload))
	}
	records := (len(ends) + maxOpsPerRecord - 1) / maxOpsPerRecord
	buf := make([]byte, 0, len(payload)+records*recordHeaderLen)
	for start, i := 0, 0; i < len(ends); i += maxOpsPerRecord {
		end := ends[min(i+maxOpsPerRecord, len(ends))-1]
		buf = appendRecord(buf, payload[start:end])
		start = end
	}
	if err := s.appendLocked(buf); err != nil {
		return err
	}
	start := 0
	for i, m := range put {
		s.putLive(m.Key().pack(), bytes.Clone(payload[start:ends[i]]))
		start = ends[i]
	}
	for _, k := range del {
		s.delLive(k.pack())
	}
	if cap(payload) <= 64<<10 {
		s.buf = payload[:0] // keep small buffers, not the one a huge batch grew
	}
	s.maybeCompactLocked()
	return nil
}

// LoadPinholes implements PinholeStore.
func (s *FileStore) LoadPinholes() ([]Pinhole, uint16, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Pinhole
	next := uint16(1)
	for k, raw := range s.live {
		if k&(pinLiveBase|pinNextKey) == 0 {
			continue
		}
		ops, err := decodeOps(raw)
		if err == nil && len(ops) != 1 {
			err = errors.New("not a single pinhole record")
		}
		if err != nil {
			return nil, 0, fmt.Errorf("lease journal: decoding a saved pinhole: %w", err)
		}
		switch ops[0].kind {
		case opPin:
			out = append(out, ops[0].pin)
		case opPinNext:
			next = ops[0].pinID
		}
	}
	return out, next, nil
}

// SavePinholes implements PinholeStore, with Save's guarantees.
func (s *FileStore) SavePinholes(put []Pinhole, del []uint16, next uint16) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.writableLocked(); err != nil {
		return err
	}
	// One record: the change and the counter together, all or nothing.
	var payload []byte
	ends := make([]int, 0, len(put)+len(del)+1)
	for _, p := range put {
		payload = appendPinOp(payload, p)
		ends = append(ends, len(payload))
	}
	for _, id := range del {
		payload = appendPinDelOp(payload, id)
		ends = append(ends, len(payload))
	}
	nextStart := len(payload)
	payload = appendPinNextOp(payload, next)
	if err := s.appendLocked(appendRecord(nil, payload)); err != nil {
		return err
	}
	start := 0
	for i, p := range put {
		s.putLive(pinLiveKey(p.ID), bytes.Clone(payload[start:ends[i]]))
		start = ends[i]
	}
	for _, id := range del {
		s.delLive(pinLiveKey(id))
	}
	s.putLive(pinNextKey, bytes.Clone(payload[nextStart:]))
	s.maybeCompactLocked()
	return nil
}

// LoadUpstreamDeletes implements UpstreamDeleteStore.
func (s *FileStore) LoadUpstreamDeletes() ([]UpstreamDelete, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []UpstreamDelete
	for k, raw := range s.live {
		if k&(pinLiveBase|pinNextKey|upDelLiveBase) != upDelLiveBase {
			continue
		}
		ops, err := decodeOps(raw)
		if err == nil && (len(ops) != 1 || ops[0].kind != opUpDel) {
			err = errors.New("not a single pending upstream delete")
		}
		if err != nil {
			return nil, fmt.Errorf("lease journal: decoding a pending upstream delete: %w", err)
		}
		out = append(out, UpstreamDelete{ID: ops[0].upDel, Mapping: ops[0].m})
	}
	return out, nil
}

// SaveUpstreamDeletes implements UpstreamDeleteStore, with Save's
// guarantees: one record, all or nothing.
func (s *FileStore) SaveUpstreamDeletes(put []UpstreamDelete, done []uint32) error {
	if len(put) == 0 && len(done) == 0 {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.writableLocked(); err != nil {
		return err
	}
	var payload []byte
	ends := make([]int, 0, len(put))
	for _, p := range put {
		payload = appendUpDelOp(payload, p.ID, p.Mapping)
		ends = append(ends, len(payload))
	}
	for _, id := range done {
		payload = appendUpDelDoneOp(payload, id)
	}
	if err := s.appendLocked(appendRecord(nil, payload)); err != nil {
		return err
	}
	start := 0
	for i, p := range put {
		s.putLive(upDelLiveKey(p.ID), bytes.Clone(payload[start:ends[i]]))
		start = ends[i]
	}
	for _, id := range done {
		s.delLive(upDelLiveKey(id))
	}
	s.maybeCompactLocked()
	return nil
}

// writableLocked fails when the store is closed, or when an earlier write
// failure left the journal unusable and rewriting it fails too.
func (s *FileStore) writableLocked() error {
	if s.closed {
		return errors.New("lease store is closed")
	}
	if s.broken != nil {
		if err := s.compactLocked(); err != nil {
			return fmt.Errorf("lease journal unusable since an earlier write failed (%v), and rewriting it failed: %w", s.broken, err)
		}
	}
	return nil
}

// maybeCompactLocked rewrites the journal once it has grown well past the
// live data. The change just written is safely appended whatever happens;
// a failed compaction is retried after the next change.
func (s *FileStore) maybeCompactLocked() {
	if s.shouldCompact(s.size) {
		if err := s.compactLocked(); err != nil {
			s.log.Warn("compacting the lease journal failed", "err", err)
		}
	}
}

// appendLocked writes frame at the end of the journal. On failure it cuts
// the journal back to its previous end, so that a partial frame never sits
// before later good ones, where replay would stop early.
func (s *FileStore) appendLocked(frame []byte) error {
	_, err := s.f.Write(frame)
	if err == nil && s.sync {
		err = s.f.Sync()
	}
	if err != nil {
		if terr := s.f.Truncate(s.size); terr != nil {
			s.broken = err
		}
		return fmt.Errorf("writing lease journal %s: %w", s.journalPath(), err)
	}
	s.size += int64(len(frame))
	return nil
}

// Compact rewrites the journal to hold only the live leases.
func (s *FileStore) Compact() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("lease store is closed")
	}
	return s.compactLocked()
}

func (s *FileStore) compactLocked() error {
	tmp := filepath.Join(s.dir, journalTmpFile)
	// One record per lease, so that damage to one costs that one only.
	buf := make([]byte, 0, len(journalMagic)+recordHeaderLen*(len(s.live)+1)+int(s.liveBytes)+16)
	buf = append(buf, journalMagic...)
	buf = appendRecord(buf, appendEpochOp(nil, s.epoch))
	for _, raw := range s.live {
		buf = appendRecord(buf, raw)
	}
	if err := writeSynced(tmp, buf); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("compacting lease journal: %w", err)
	}
	if err := os.Rename(tmp, s.journalPath()); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("compacting lease journal: %w", err)
	}
	// From here the old file is gone; appending through the old handle
	// would write into an unlinked file, so any failure marks the store
	// broken until a later compaction succeeds.
	if s.f != nil {
		s.f.Close()
		s.f = nil
	}
	if err := syncDir(s.dir); err != nil {
		s.broken = err
		return fmt.Errorf("compacting lease journal: syncing %s: %w", s.dir, err)
	}
	f, err := os.OpenFile(s.journalPath(), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		s.broken = err
		return fmt.Errorf("reopening compacted lease journal: %w", err)
	}
	s.f, s.size, s.broken = f, int64(len(buf)), nil
	return nil
}

// UUID returns the device UUID, without the "uuid:" prefix UDNs add.
func (s *FileStore) UUID() string { return s.uuid }

// EpochOrigin returns when the current NAT-PMP epoch began: the
// "seconds since start of epoch" a NAT-PMP server reports is the time
// elapsed since then. It is kept across restarts while leases are, and
// reset when the journal is lost or holds no leases, which is exactly
// when clients must be told to re-create their mappings.
func (s *FileStore) EpochOrigin() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.epoch
}

// Close closes the journal and releases the directory lock. It does not
// delete anything.
func (s *FileStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	var errs []error
	if s.f != nil {
		errs = append(errs, s.f.Close())
	}
	errs = append(errs, s.lock.Close())
	return errors.Join(errs...)
}

func (s *FileStore) loadOrCreateUUID() (string, error) {
	path := filepath.Join(s.dir, uuidFile)
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		if u := strings.TrimSpace(string(b)); validUUID(u) {
			return u, nil
		}
		s.log.Error("device UUID file is damaged; generating a new UUID (control points will see a new device)", "path", path)
	case !errors.Is(err, fs.ErrNotExist):
		return "", fmt.Errorf("reading device UUID: %w", err)
	}
	u := NewUUID()
	if err := writeSynced(path+".tmp", []byte(u+"\n")); err != nil {
		return "", fmt.Errorf("saving device UUID: %w", err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		return "", fmt.Errorf("saving device UUID: %w", err)
	}
	if err := syncDir(s.dir); err != nil {
		return "", fmt.Errorf("saving device UUID: %w", err)
	}
	return u, nil
}

// NewUUID returns a random (version 4) UUID, such as a gateway's device
// UUID when it has no state directory to keep one in (FileStore keeps its
// own across restarts).
func NewUUID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

func validUUID(u string) bool {
	if len(u) != 36 {
		return false
	}
	for i := 0; i < len(u); i++ {
		c := u[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
				return false
			}
		}
	}
	return true
}

// writeSynced creates path with data and syncs it to disk.
func writeSynced(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
