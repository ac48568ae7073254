package daemon

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/portfwd/portfwd/gateway"
	"github.com/portfwd/portfwd/internal/jsonobj"
)

// The audit trail: who opened what, when. Every change to the table
// (added, renewed, changed, deleted, expired), every refused or failed
// request for one, and every saved lease dropped or parked at start, one
// JSON object per line in audit.jsonl in the state directory. The file
// is rotated at AuditConfig.MaxBytes (audit.jsonl.1, .2, ...; the oldest
// beyond AuditConfig.Keep is removed), so it never grows without bound,
// and the last records are kept in memory for the admin page.
//
// Records reach the file within auditFlushDelay, several in one write,
// from a goroutine of the trail's own: not one write per change on the
// request's path, which was a tenth of a NAT-PMP pair's CPU. The lease
// journal, not the trail, is what keeps an acknowledged lease across a
// kill -9; the trail may lose its last auditFlushDelay of records then.
// Close writes everything recorded.

const (
	auditFile = "audit.jsonl"
	// auditRecent is how many records the admin page can show.
	auditRecent = 500
	// auditTailRead bounds what is read back of the file at start, to
	// show the page the records of the previous run.
	auditTailRead = 256 << 10
	// auditFlushDelay is how long a record may wait to be written with
	// the ones that follow it.
	auditFlushDelay = 2 * time.Millisecond
)

// auditLog writes the trail. It is safe for concurrent use.
type auditLog struct {
	path     string // "" without a state directory: memory only
	maxBytes int64
	keep     int
	log      *slog.Logger

	mu      sync.Mutex
	f       *os.File
	size    int64
	recent  []gateway.AuditRecord // a ring of the last auditRecent
	next    int                   // where the next record goes in recent, once full
	failing bool                  // a write failed; logged once until one succeeds
	line    []byte                // the record being written, reused
	pending []byte                // records not written yet, whole lines
	wake    chan struct{}         // tells the writer there is pending (capacity 1)
	stopped chan struct{}         // closed when the writer has ended
	closing bool
	notify  map[int]func()
	nextSub int
	// Refusals are recorded at most auditRefusalRate a second, beyond a
	// burst of auditRefusalBurst: a host hammering a denied port must not
	// wear the router's flash out. The ones not recorded are counted, and
	// the count is recorded with the next one that is.
	tokens     float64
	last       time.Time
	suppressed int
}

const (
	auditRefusalRate  = 50
	auditRefusalBurst = 500
)

// openAuditLog opens the trail in dir ("" for memory only) and reads back
// the end of the last run's.
func openAuditLog(dir string, cfg AuditConfig, log *slog.Logger) (*auditLog, error) {
	a := &auditLog{maxBytes: cfg.MaxBytes, keep: cfg.Keep, log: log, tokens: auditRefusalBurst}
	if a.maxBytes <= 0 {
		a.maxBytes = DefaultAuditMaxBytes
	}
	if a.keep < 0 {
		a.keep = 0
	}
	if dir == "" || !cfg.Enabled {
		return a, nil
	}
	a.path = filepath.Join(dir, auditFile)
	a.readTail()
	f, err := os.OpenFile(a.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening the audit trail: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("opening the audit trail: %w", err)
	}
	a.f, a.size = f, st.Size()
	a.wake, a.stopped = make(chan struct{}, 1), make(chan struct{})
	go a.writer()
	return a, nil
}

// writer writes the pending records, auditFlushDelay after the first of
// them, until Close.
func (a *auditLog) writer() {
	defer close(a.stopped)
	for range a.wake {
		time.Sleep(auditFlushDelay)
		a.mu.Lock()
		a.flushLocked()
		closing := a.closing
		a.mu.Unlock()
		if closing {
			return
		}
	}
}

// flush writes the pending records now.
func (a *auditLog) flush() {
	a.mu.Lock()
	a.flushLocked()
	a.mu.Unlock()
}

// flushLocked writes the pending records, rotating the file between two
// of them when the next would take it past maxBytes.
func (a *auditLog) flushLocked() {
	p := a.pending
	for start := 0; start < len(p) && a.f != nil; {
		end := start
		for end < len(p) {
			next := end + bytes.IndexByte(p[end:], '\n') + 1
			if a.size+int64(next-start) > a.maxBytes && (a.size > 0 || end > start) {
				break
			}
			end = next
		}
		if end == start { // the next line does not fit: a new file first
			if err := a.rotateLocked(); err != nil {
				a.failed(err)
				break
			}
			continue
		}
		a.writeLocked(p[start:end])
		start = end
	}
	if cap(p) <= 64<<10 {
		a.pending = p[:0]
	} else {
		a.pending = nil // not the buffer a burst grew
	}
}

// readTail fills recent with the last records of the file.
func (a *auditLog) readTail() {
	f, err := os.Open(a.path)
	if err != nil {
		return
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() > auditTailRead {
		f.Seek(st.Size()-auditTailRead, io.SeekStart)
	}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 64<<10)
	first := true
	for sc.Scan() {
		r, err := parseAuditRecord(sc.Bytes())
		if err != nil {
			if !first { // the first line may be cut by the seek
				a.log.Debug("audit trail: skipping an unreadable line", "path", a.path)
			}
		} else {
			a.remember(r)
		}
		first = false
	}
}

// Record adds r to the trail.
func (a *auditLog) Record(r gateway.AuditRecord) {
	r.Time = r.Time.UTC()
	a.mu.Lock()
	if r.Event == gateway.AuditRefused || r.Event == gateway.AuditFailed {
		if !a.refusalAllowedLocked(r.Time) {
			a.suppressed++
			a.mu.Unlock()
			return
		}
		if a.suppressed > 0 {
			r.Reason += fmt.Sprintf(" (and %d refusals before this one were not recorded: too many at once)", a.suppressed)
			a.suppressed = 0
		}
	}
	line, err := r.AppendJSON(a.line[:0])
	if err != nil {
		a.mu.Unlock()
		return // cannot happen: every field encodes
	}
	line = append(line, '\n')
	if cap(line) <= 4<<10 {
		a.line = line // reused: one record at a time, under mu
	}
	a.remember(r)
	if a.f != nil && !a.closing {
		a.pending = append(a.pending, line...)
		select {
		case a.wake <- struct{}{}:
		default: // the writer is told already
		}
	}
	notify := make([]func(), 0, len(a.notify))
	for _, f := range a.notify {
		notify = append(notify, f)
	}
	a.mu.Unlock()
	for _, f := range notify {
		f()
	}
}

// refusalAllowedLocked takes a token of the refusals' budget.
func (a *auditLog) refusalAllowedLocked(now time.Time) bool {
	if !a.last.IsZero() && now.After(a.last) {
		a.tokens = min(auditRefusalBurst, a.tokens+now.Sub(a.last).Seconds()*auditRefusalRate)
	}
	a.last = now
	if a.tokens < 1 {
		return false
	}
	a.tokens--
	return true
}

func (a *auditLog) remember(r gateway.AuditRecord) {
	if len(a.recent) < auditRecent {
		a.recent = append(a.recent, r)
		return
	}
	a.recent[a.next] = r
	a.next = (a.next + 1) % auditRecent
}

// writeLocked appends lines to the file (flushLocked rotates it).
func (a *auditLog) writeLocked(lines []byte) {
	n, err := a.f.Write(lines)
	a.size += int64(n)
	if err != nil {
		a.failed(err)
		return
	}
	a.failing = false
}

func (a *auditLog) failed(err error) {
	if !a.failing {
		a.log.Error("cannot write the audit trail; records are kept in memory only until it works again", "path", a.path, "err", err)
		a.failing = true
	}
}

// rotateLocked moves audit.jsonl to audit.jsonl.1 (and .1 to .2, ...),
// dropping the oldest beyond keep, and starts a new file.
func (a *auditLog) rotateLocked() error {
	a.f.Close()
	a.f = nil
	if a.keep == 0 {
		os.Remove(a.path)
	} else {
		os.Remove(a.path + "." + strconv.Itoa(a.keep))
		for i := a.keep - 1; i >= 1; i-- {
			os.Rename(a.path+"."+strconv.Itoa(i), a.path+"."+strconv.Itoa(i+1))
		}
		if err := os.Rename(a.path, a.path+".1"); err != nil {
			return err
		}
	}
	f, err := os.OpenFile(a.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	a.f, a.size = f, 0
	return nil
}

// Recent returns the last records, newest first.
func (a *auditLog) Recent() []gateway.AuditRecord {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]gateway.AuditRecord, 0, len(a.recent))
	for i := a.next - 1; i >= 0; i-- {
		out = append(out, a.recent[i])
	}
	for i := len(a.recent) - 1; i >= a.next; i-- {
		out = append(out, a.recent[i])
	}
	return out
}

// OnRecord calls f after every record until cancel is called; f must
// not block.
func (a *auditLog) OnRecord(f func()) (cancel func()) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.notify == nil {
		a.notify = map[int]func(){}
	}
	id := a.nextSub
	a.nextSub++
	a.notify[id] = f
	return func() {
		a.mu.Lock()
		delete(a.notify, id)
		a.mu.Unlock()
	}
}

// Close writes the pending records and closes the file.
func (a *auditLog) Close() error {
	a.mu.Lock()
	if a.wake != nil && !a.closing {
		a.closing = true
		select {
		case a.wake <- struct{}{}:
		default:
		}
		a.mu.Unlock()
		<-a.stopped // it wrote what was pending
		a.mu.Lock()
	}
	defer a.mu.Unlock()
	a.flushLocked()
	if a.f == nil {
		return nil
	}
	err := a.f.Close()
	a.f = nil
	return err
}

// refusal is the audit record of a request the gateway said no to
// (AuditRefused) or could not carry out (AuditFailed): the request, the
// answer sent and why.
func refusal(now time.Time, ev gateway.AuditEvent, req gateway.Requester, m gateway.Mapping, action, result string, why error) gateway.AuditRecord {
	r := gateway.NewAuditRecord(now, ev, req, m)
	r.Action, r.Result = action, result
	if why != nil {
		r.Reason = why.Error()
	}
	return r
}

// parseAuditRecord reads one line of the trail, as encoding/json's
// Unmarshal would, with package jsonobj: the router build links
// encoding/json's encoder only.
func parseAuditRecord(line []byte) (gateway.AuditRecord, error) {
	var r gateway.AuditRecord
	o, err := jsonobj.Parse(line)
	if err != nil {
		return r, err
	}
	var event string
	var port, pin, remote, lease uint64
	err = errors.Join(
		o.Time("time", &r.Time),
		o.String("event", &event),
		o.String("via", &r.Via),
		o.Addr("client", &r.Client),
		o.String("protocol", &r.Protocol),
		o.Uint("external_port", 16, &port),
		o.AddrPort("internal", &r.Internal),
		o.Addr("remote_host", &r.RemoteHost),
		o.String("family", &r.Family),
		o.Uint("pinhole_id", 16, &pin),
		o.Uint("remote_port", 16, &remote),
		o.Uint("lease_s", 32, &lease),
		o.String("description", &r.Description),
		o.String("action", &r.Action),
		o.String("result", &r.Result),
		o.String("reason", &r.Reason),
	)
	r.Event = gateway.AuditEvent(event)
	r.ExternalPort, r.PinholeID, r.RemotePort, r.LeaseSeconds = uint16(port), uint16(pin), uint16(remote), uint32(lease)
	return r, err
}
