package portmap

import (
	"os"
	"strconv"
	"strings"
)

// thisProcess identifies the running process.
func thisProcess() *Process {
	return &Process{PID: os.Getpid(), Start: processStart(os.Getpid())}
}

// processStart is the process's start time as the kernel counts it (field
// 22 of /proc/PID/stat, in clock ticks since boot) with the boot's ID, so
// that a PID reused by another process, or after a reboot, does not count
// as the same process.
func processStart(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return ""
	}
	// The command name (field 2) may hold spaces and parentheses: count
	// the fields after its closing parenthesis.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return ""
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return ""
	}
	boot, _ := os.ReadFile("/proc/sys/kernel/random/boot_id")
	return strings.TrimSpace(string(boot)) + "/" + f[19]
}

// Alive reports whether the process still runs.
func (p *Process) Alive() bool {
	if p == nil || p.PID <= 0 {
		return false
	}
	now := processStart(p.PID)
	if now == "" {
		return false
	}
	return p.Start == "" || p.Start == now
}
