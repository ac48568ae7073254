package daemon

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/portfwd/portfwd/internal/jsonobj"
)

// One gateway per state directory and per nft table. Two gateways sharing
// either would wreck each other's state: the second one's nft backend
// rewrites the first one's chains and flushes its maps, and two journals
// interleave. So before it touches anything shared, New takes two locks,
// and a second gateway gives up at once, naming the one that runs:
//
//   - an flock on gateway.lock in the state directory, which holds the
//     running gateway's identity (PID, state directory, table) for the
//     next one to read;
//   - for the nft backend, an abstract unix socket named after the table
//     (instance_linux.go). Abstract sockets live in the network namespace,
//     exactly like nft tables, so gateways in different namespaces (a
//     lab, containers) may use the same table name; whoever connects to it
//     is told the same identity.
//
// Both locks go away with the process, whatever kills it, so a crash
// never leaves a stale lock behind.

// instanceLockFile is the lock file in the state directory.
const instanceLockFile = "gateway.lock"

// instanceInfo identifies a running gateway, for the one that finds it.
type instanceInfo struct {
	PID      int       `json:"pid"`
	StateDir string    `json:"state_dir,omitempty"`
	Table    string    `json:"nft_table,omitempty"`
	Backend  string    `json:"backend,omitempty"`
	Admin    string    `json:"admin,omitempty"`
	Started  time.Time `json:"started"`
}

func (i instanceInfo) describe() string {
	var parts []string
	if i.PID > 0 {
		parts = append(parts, "PID "+strconv.Itoa(i.PID))
	} else {
		parts = append(parts, "PID unknown")
	}
	if i.StateDir != "" {
		parts = append(parts, "state directory "+i.StateDir)
	} else {
		parts = append(parts, "no state directory")
	}
	if i.Table != "" {
		parts = append(parts, "nft table inet "+i.Table)
	}
	if !i.Started.IsZero() {
		parts = append(parts, "started "+i.Started.Format(time.RFC3339))
	}
	return strings.Join(parts, ", ")
}

// ErrAnotherInstance is what New's error wraps when another gateway holds
// the state directory or the nft table.
var ErrAnotherInstance = errors.New("another portfwd gateway is running")

// instanceError names the running gateway and what it holds.
type instanceError struct {
	what   string // "state directory /var/lib/portfwd", "nft table inet portfwd"
	holder instanceInfo
}

func (e *instanceError) Error() string {
	return fmt.Sprintf("another portfwd gateway (%s) already uses the %s, so this one changed nothing and stops: stop that one first, or give this one its own state_dir and [nft] table",
		e.holder.describe(), e.what)
}

func (e *instanceError) Unwrap() error { return ErrAnotherInstance }

// instanceLock is what New holds for as long as the daemon runs.
type instanceLock struct {
	info  instanceInfo
	dir   *os.File  // the state directory's lock file, nil without one
	table io.Closer // the table's socket, nil without one
}

// acquireInstance takes the locks of cfg's state directory and, for the
// nft backend, its table.
func acquireInstance(cfg *Config, started time.Time) (*instanceLock, error) {
	l := &instanceLock{info: instanceInfo{
		PID: os.Getpid(), StateDir: absPath(cfg.StateDir), Backend: cfg.resolvedBackend(),
		Admin: cfg.Admin.Address, Started: started,
	}}
	if l.info.Backend == BackendNFT {
		l.info.Table = cfg.NFT.Table
	}
	if cfg.StateDir != "" {
		if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
			return nil, fmt.Errorf("creating the state directory: %w", err)
		}
		f, holder, err := lockStateDir(cfg.StateDir)
		if err != nil {
			return nil, err
		}
		if f == nil {
			return nil, &instanceError{what: "state directory " + l.info.StateDir, holder: holder}
		}
		l.dir = f
		// Who holds it, for the next one to read. The lock is what counts;
		// the contents are information only.
		b, _ := json.Marshal(l.info)
		f.Truncate(0)
		f.WriteAt(append(b, '\n'), 0)
	}
	if l.info.Table != "" {
		c, holder, err := lockTable(l.info.Table, l.info)
		if err != nil {
			l.release()
			return nil, fmt.Errorf("locking nft table inet %s: %w", l.info.Table, err)
		}
		if c == nil {
			l.release()
			return nil, &instanceError{what: "nft table inet " + l.info.Table + " (in this network namespace)", holder: holder}
		}
		l.table = c
	}
	return l, nil
}

// release lets the next gateway in. The lock file stays: removing it
// would race with a gateway that just opened it.
func (l *instanceLock) release() {
	if l == nil {
		return
	}
	if l.table != nil {
		l.table.Close()
		l.table = nil
	}
	if l.dir != nil {
		l.dir.Truncate(0)
		l.dir.Close()
		l.dir = nil
	}
}

// lockStateDir takes the state directory's lock. When another process
// holds it, it returns a nil file and what that process wrote in it.
func lockStateDir(dir string) (*os.File, instanceInfo, error) {
	path := filepath.Join(dir, instanceLockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, instanceInfo{}, fmt.Errorf("opening the state directory's lock %s: %w", path, err)
	}
	ok, err := tryFlock(f)
	if err != nil {
		f.Close()
		return nil, instanceInfo{}, fmt.Errorf("locking the state directory (%s): %w", path, err)
	}
	if !ok {
		var holder instanceInfo
		b, _ := io.ReadAll(io.LimitReader(f, 4096))
		if parseInstanceInfo(b, &holder) != nil || holder.StateDir == "" {
			holder = instanceInfo{StateDir: absPath(dir)}
		}
		f.Close()
		return nil, holder, nil
	}
	return f, instanceInfo{}, nil
}

// probeInstance reports, for --check, a gateway holding cfg's state
// directory or table, without taking or disturbing anything for longer
// than a probe.
func probeInstance(cfg *Config) error {
	l, err := acquireInstance(cfg, time.Now())
	if err != nil {
		return err
	}
	l.release()
	return nil
}

func absPath(p string) string {
	if p == "" {
		return ""
	}
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}

// parseInstanceInfo reads what json.Marshal wrote of an instanceInfo, with
// package jsonobj (the router build links no JSON decoder).
func parseInstanceInfo(b []byte, i *instanceInfo) error {
	o, err := jsonobj.Parse(bytes.TrimSpace(b))
	if err != nil {
		return err
	}
	var pid int64
	err = errors.Join(
		o.Int("pid", &pid),
		o.String("state_dir", &i.StateDir),
		o.String("nft_table", &i.Table),
		o.String("backend", &i.Backend),
		o.String("admin", &i.Admin),
		o.Time("started", &i.Started),
	)
	i.PID = int(pid)
	return err
}
