package natlab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// RunTimeout bounds every command Run executes.
const RunTimeout = 30 * time.Second

// stopGrace is how long Stop waits after SIGTERM before SIGKILL.
const stopGrace = 3 * time.Second

// Cmd returns a command that runs name inside host's namespace ("lan",
// "rtr" or "wan") through `ip netns exec`, which also gives it a private
// mount namespace. ip execs the command in place, so the process's PID is
// the command's. An unknown host makes Start fail.
//
// The command runs in a process group of its own (SysProcAttr.Setpgid), and
// the lab keeps it: if it still runs at teardown, its whole group is
// killed. That holds even when the test ends before `ip netns exec` has
// moved it into the namespace, where the teardown's scan of the namespaces
// would not yet find it. A caller that replaces SysProcAttr keeps the
// process itself tracked, but no longer its children. Start the command
// from the test's goroutine (or one the test waits for), before the test
// ends.
func (l *Lab) Cmd(ctx context.Context, host, name string, args ...string) *exec.Cmd {
	cmd := l.command(ctx, host, name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	l.mu.Lock()
	l.cmds = append(l.cmds, cmd)
	l.mu.Unlock()
	return cmd
}

// command is Cmd without the tracking, for commands the lab waits for
// itself.
func (l *Lab) command(ctx context.Context, host, name string, args ...string) *exec.Cmd {
	ns, err := l.Namespace(host)
	cmd := exec.CommandContext(ctx, l.ip, append([]string{"netns", "exec", ns, name}, args...)...)
	if err != nil {
		cmd.Err = err
	}
	// The lab's own client state directory (Env): a portfwd command run
	// without --state-dir (keep remembers what it keeps) must not write
	// to the state of the user running the tests, nor share it with
	// another lab.
	cmd.Env = l.Env()
	// If the command leaves children holding its pipes, give up on them
	// shortly after it exits instead of hanging the test.
	cmd.WaitDelay = 2 * time.Second
	return cmd
}

// killCmds kills, with their process groups, the commands made by Cmd
// that were started and have not been reaped yet.
func (l *Lab) killCmds() {
	l.mu.Lock()
	cmds := l.cmds
	l.cmds = nil
	l.mu.Unlock()
	for _, cmd := range cmds {
		p := cmd.Process
		if p == nil {
			continue // never started
		}
		// Signal 0 goes through the process's pidfd: it succeeds only
		// while the process is not reaped, so its PID, which is also its
		// group's ID, cannot belong to anyone else yet.
		if p.Signal(syscall.Signal(0)) != nil {
			continue
		}
		syscall.Kill(-p.Pid, syscall.SIGKILL)
		p.Kill() // in case the caller's SysProcAttr had no Setpgid
	}
}

// Run runs a command in host's namespace, waits at most RunTimeout, and
// returns its standard output. A failure's error carries the exit status and
// standard error. Each run is logged to t.
func (l *Lab) Run(t testing.TB, host, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), RunTimeout)
	defer cancel()
	cmd := l.command(ctx, host, name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	took := time.Since(start).Round(time.Millisecond)
	line := host + "$ " + strings.Join(append([]string{name}, args...), " ")
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%s: killed after %v: %w", line, RunTimeout, err)
		} else {
			err = fmt.Errorf("%s: %w; stderr: %s", line, err, strings.TrimSpace(stderr.String()))
		}
		t.Logf("natlab: %s (%v): %v", line, took, err)
		return stdout.String(), err
	}
	t.Logf("natlab: %s (%v)", line, took)
	return stdout.String(), nil
}

// Process is a background command started by Lab.Start.
type Process struct {
	Name string // the command as given
	Host string
	Log  string // file holding its standard output and error

	cmd      *exec.Cmd
	done     chan struct{}
	waitErr  error
	stopOnce sync.Once
}

// PID returns the process ID.
func (p *Process) PID() int { return p.cmd.Process.Pid }

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has exited, and its wait error then.
func (p *Process) Exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.waitErr
	default:
		return false, nil
	}
}

// Output returns what the process has written so far.
func (p *Process) Output() string {
	b, _ := os.ReadFile(p.Log)
	return string(b)
}

// Stop ends the process: SIGTERM to its process group, SIGKILL after a
// grace period. It waits for the exit and is safe to call more than once.
// Signals go only to a process not yet reaped, so a recycled PID is never
// hit.
func (p *Process) Stop() {
	p.stopOnce.Do(func() {
		if exited, _ := p.Exited(); exited {
			return
		}
		pgid := p.cmd.Process.Pid // Setpgid: the group is the process's own
		syscall.Kill(-pgid, syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(stopGrace):
			syscall.Kill(-pgid, syscall.SIGKILL)
			<-p.done
		}
	})
}

// Start runs a command in the background inside host's namespace, with its
// output going to a log file in RunDir. The process is stopped when t's test
// ends, and at the latest when the lab is torn down.
func (l *Lab) Start(t testing.TB, host, name string, args ...string) *Process {
	t.Helper()
	p, err := l.start("", host, name, args...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	return p
}

// start starts a process logging to RunDir/logName, or to a numbered file
// when logName is empty.
func (l *Lab) start(logName, host, name string, args ...string) (*Process, error) {
	if logName == "" {
		l.mu.Lock()
		l.seq++
		logName = fmt.Sprintf("%02d-%s-%s.log", l.seq, host, filepath.Base(name))
		l.mu.Unlock()
	}
	logPath := filepath.Join(l.RunDir, logName)
	f, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("natlab: log file for %s: %w", name, err)
	}
	defer f.Close() // the child has its own copy
	// No context: the lab, not a deadline, decides when it ends.
	cmd := l.command(context.Background(), host, name, args...)
	cmd.Stdout, cmd.Stderr = f, f
	// Its own process group, so Stop reaches children of shell wrappers
	// too, and a ^C to the test does not race our own shutdown.
	// Pdeathsig: should the test binary die without cleanup (a test
	// timeout, SIGKILL), its daemons die too instead of running on in a
	// leaked namespace. The signal fires when the forking *thread* ends,
	// so the fork happens on the lab's spawner thread (see spawner).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if serr := l.spawn.do(func() { err = cmd.Start() }); serr != nil {
		return nil, serr
	}
	if err != nil {
		return nil, fmt.Errorf("natlab: starting %s in %s: %w", name, host, err)
	}
	p := &Process{Name: name, Host: host, Log: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	l.mu.Lock()
	l.procs = append(l.procs, p)
	l.mu.Unlock()
	return p, nil
}

// errExited reports a process that ended while the lab waited for it.
func errExited(p *Process) error {
	_, werr := p.Exited()
	return fmt.Errorf("%s exited (%v); its output (%s):\n%s", p.Name, werr, p.Log, tail(p.Output()))
}

// tail returns the end of a log, short enough for an error message.
func tail(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > 2000 {
		s = "…" + s[len(s)-2000:]
	}
	return s
}

// spawner owns an OS thread that forks the lab's background processes and
// lives as long as the lab. Go ends threads whose goroutine exits while
// locked (netns.go's do does that on purpose), and the kernel's
// parent-death signal is tied to the thread that forked, not the process: a
// child forked on an arbitrary thread could be killed at a random moment.
type spawner struct {
	mu     sync.Mutex
	closed bool
	reqs   chan func()
}

func newSpawner() *spawner {
	s := &spawner{reqs: make(chan func())}
	go func() {
		runtime.LockOSThread()
		// Never unlocked: when close ends this goroutine the thread ends
		// with it, and any child still alive gets its parent-death signal.
		for f := range s.reqs {
			f()
		}
	}()
	return s
}

// do runs f on the spawner thread and waits for it. It fails once the lab
// is torn down.
func (s *spawner) do(f func()) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("natlab: the lab is torn down")
	}
	done := make(chan struct{})
	s.reqs <- func() { defer close(done); f() }
	<-done
	return nil
}

// close ends the spawner thread, after the lab has stopped its processes.
func (s *spawner) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.closed = true
		close(s.reqs)
	}
}
