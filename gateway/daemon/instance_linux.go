package daemon

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"time"
)

// tryFlock takes an exclusive flock on f without waiting; false means
// another open file holds it.
func tryFlock(f *os.File) (bool, error) {
	err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, syscall.EWOULDBLOCK):
		return false, nil
	}
	return false, err
}

// tableSocket is the abstract unix socket that locks an nft table in this
// network namespace ("@" makes Go use the abstract namespace).
func tableSocket(table string) string { return "@portfwd/nft-table/" + table }

// tableLock is the bound socket: its accept loop tells whoever connects
// who holds the table.
type tableLock struct {
	ln   *net.UnixListener
	done chan struct{}
}

// lockTable binds the table's socket. When another process holds it, it
// returns nil and that process's identity, as it answers on the socket
// (or, failing that, its PID from the socket's credentials).
func lockTable(table string, me instanceInfo) (io.Closer, instanceInfo, error) {
	addr := &net.UnixAddr{Name: tableSocket(table), Net: "unix"}
	ln, err := net.ListenUnix("unix", addr)
	if err == nil {
		l := &tableLock{ln: ln, done: make(chan struct{})}
		go l.serve(me)
		return l, instanceInfo{}, nil
	}
	if !errors.Is(err, syscall.EADDRINUSE) {
		return nil, instanceInfo{}, err
	}
	holder := instanceInfo{Table: table}
	c, derr := net.DialTimeout("unix", addr.Name, time.Second)
	if derr != nil {
		return nil, holder, nil
	}
	defer c.Close()
	if uc, ok := c.(*net.UnixConn); ok {
		if raw, err := uc.SyscallConn(); err == nil {
			raw.Control(func(fd uintptr) {
				if cred, err := syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED); err == nil {
					holder.PID = int(cred.Pid)
				}
			})
		}
	}
	c.SetReadDeadline(time.Now().Add(time.Second))
	line, _ := bufio.NewReader(io.LimitReader(c, 4096)).ReadBytes('\n')
	var said instanceInfo
	if parseInstanceInfo(line, &said) == nil && said.PID != 0 {
		holder = said
	}
	return nil, holder, nil
}

// serve answers every connection with this gateway's identity, one line
// of JSON, until Close. Connections are answered one at a time, each
// bounded in time, so the socket costs nothing however it is used.
func (l *tableLock) serve(me instanceInfo) {
	defer close(l.done)
	line, _ := json.Marshal(me)
	line = append(line, '\n')
	for {
		c, err := l.ln.Accept()
		if err != nil {
			return
		}
		c.SetWriteDeadline(time.Now().Add(time.Second))
		c.Write(line)
		c.Close()
	}
}

func (l *tableLock) Close() error {
	err := l.ln.Close()
	<-l.done
	return err
}
