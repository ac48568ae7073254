package natlab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// netnsDir is where `ip netns add` pins named namespaces.
const netnsDir = "/run/netns"

// do runs fn on an OS thread that has entered the network namespace ns.
//
// A socket belongs to the namespace of the thread that created it, for its
// whole life, and Go's poller serves it the same from any thread. So the
// lab creates its in-process servers' and clients' sockets here and uses
// them from ordinary goroutines afterwards: no helper process, no readiness
// race. The thread never leaves the namespace: do does not unlock it, and
// the runtime ends a thread whose goroutine exits while locked, so no other
// goroutine can ever be scheduled in the lab's namespace by accident.
//
// fn must do its namespace-dependent work itself: goroutines it starts run
// on other threads, in the test's own namespace.
func do(ns *os.File, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("natlab: entering network namespace %s: %w", ns.Name(), err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// Listen opens a listener inside host's network namespace; the listener
// works from any goroutine. Use it to run a server under test in the lab
// in-process.
func (l *Lab) Listen(host, network, address string) (net.Listener, error) {
	var ln net.Listener
	err := l.in(host, func() (err error) {
		ln, err = net.Listen(network, address)
		return err
	})
	return ln, err
}

// ListenPacket opens a packet socket inside host's network namespace.
func (l *Lab) ListenPacket(host, network, address string) (net.PacketConn, error) {
	var pc net.PacketConn
	err := l.in(host, func() (err error) {
		pc, err = net.ListenPacket(network, address)
		return err
	})
	return pc, err
}

// DialContext connects from inside host's network namespace. address must
// be a literal IP and port: the lab has no DNS.
func (l *Lab) DialContext(ctx context.Context, host, network, address string) (net.Conn, error) {
	var c net.Conn
	err := l.in(host, func() (err error) {
		// A literal address makes the dialer connect in this goroutine;
		// only hostnames with several addresses race in other goroutines.
		var d net.Dialer
		c, err = d.DialContext(ctx, network, address)
		return err
	})
	return c, err
}

// In runs fn on a thread inside host's network namespace: the sockets fn
// creates belong to host, and work from any goroutine afterwards (see
// Listen). For what Listen, ListenPacket and DialContext do not cover:
// dialing from one of several addresses, opening many sockets at once.
// Goroutines fn starts run in the test's own namespace.
func (l *Lab) In(host string, fn func() error) error { return l.in(host, fn) }

// in runs fn inside host's namespace (see do).
func (l *Lab) in(host string, fn func() error) error {
	f, err := l.nsFile(host)
	if err != nil {
		return err
	}
	return do(f, fn)
}

// sysctl writes /proc/sys values inside a namespace. The net.* sysctls
// belong to the network namespace of the thread that opens them.
func sysctl(ns *os.File, kv map[string]string) error {
	return do(ns, func() error {
		for k, v := range kv {
			matches, err := filepath.Glob(filepath.Join("/proc/sys", k))
			if err != nil || len(matches) == 0 {
				return fmt.Errorf("natlab: sysctl %s: no such setting in this kernel", k)
			}
			for _, p := range matches {
				if err := os.WriteFile(p, []byte(v), 0o644); err != nil {
					return fmt.Errorf("natlab: sysctl %s=%s: %w", p, v, err)
				}
			}
		}
		return nil
	})
}

// emptyNamespaces kills every process in the network namespaces pinned at
// paths, and scans again until a scan finds none: a process killed during
// the scan may have forked just before, and the new PID need not come after
// it in /proc's order. It fails if processes remain after limit. Missing
// paths are ignored.
func emptyNamespaces(paths []string, limit time.Duration) error {
	var targets []unix.Stat_t
	for _, p := range paths {
		var st unix.Stat_t
		if err := unix.Stat(p, &st); err != nil {
			if errors.Is(err, unix.ENOENT) {
				continue
			}
			return fmt.Errorf("natlab: %s: %w", p, err)
		}
		targets = append(targets, st)
	}
	if len(targets) == 0 {
		return nil
	}
	deadline := time.Now().Add(limit)
	for pause := 100 * time.Microsecond; ; pause = min(2*pause, 20*time.Millisecond) {
		pids, err := killNamespacePIDs(targets)
		if err != nil || len(pids) == 0 {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("natlab: processes %v still in the lab's namespaces %v after SIGKILL", pids, limit)
		}
		// Killed processes leave their namespace as they exit, soon.
		time.Sleep(pause)
	}
}

// killNamespacePIDs sends SIGKILL to every process whose network namespace
// is one of targets, and returns their PIDs.
func killNamespacePIDs(targets []unix.Stat_t) ([]int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("natlab: listing processes: %w", err)
	}
	self := os.Getpid()
	var killed []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		var st unix.Stat_t
		if unix.Stat(filepath.Join("/proc", e.Name(), "ns", "net"), &st) != nil {
			continue // gone, a zombie, or a kernel thread
		}
		for _, target := range targets {
			if st.Dev == target.Dev && st.Ino == target.Ino {
				unix.Kill(pid, unix.SIGKILL)
				killed = append(killed, pid)
				break
			}
		}
	}
	return killed, nil
}
