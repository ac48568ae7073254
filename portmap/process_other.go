//go:build !linux

package portmap

import (
	"errors"
	"os"
	"syscall"
)

func thisProcess() *Process { return &Process{PID: os.Getpid()} }

// Alive reports whether a process with the PID runs. Without Linux's
// /proc it cannot tell a reused PID from the original process.
func (p *Process) Alive() bool {
	if p == nil || p.PID <= 0 {
		return false
	}
	proc, err := os.FindProcess(p.PID)
	if err != nil {
		return false
	}
	err = proc.Signal(syscall.Signal(0))
	return err == nil || errors.Is(err, os.ErrPermission)
}
