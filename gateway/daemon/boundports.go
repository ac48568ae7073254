package daemon

import (
	"bufio"
	"bytes"
	"os"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/portfwd/portfwd/gateway"
)

// boundPorts narrows the bind probe of the router's own services
// (portServed) to the ports some socket of this network namespace holds at
// all, as /proc/net/{tcp,tcp6,udp,udp6} lists them: a port no socket
// holds cannot be served, and needs no probe. The restore of a million
// leases at start then probes the few ports the router's services hold
// instead of making four system calls per lease. The list is read again
// after boundPortsTTL, so it may miss a service that started listening
// within that second: it is used only while the leases are restored, never
// for a request. Where /proc/net cannot be read, every port is probed.
type boundPorts struct {
	mu       sync.Mutex
	at       time.Time
	tcp, udp gateway.PortSet
	ok       bool
	root     string // "/proc/net", or a test's directory
}

// boundPortsTTL is how long a reading of /proc/net is used.
const boundPortsTTL = time.Second

// newBoundPorts reads the tables of the calling thread's network namespace
// (/proc/thread-self/net, read on a locked thread), the one the daemon's
// sockets live in. /proc/net is /proc/self/net, the thread group leader's
// namespace, which a thread that entered another namespace (a test
// harness, a library) can leave different from this one's; it serves
// only kernels before 3.17, which have no thread-self.
func newBoundPorts() *boundPorts {
	root := "/proc/thread-self/net"
	if _, err := os.Stat(root); err != nil {
		root = "/proc/net"
	}
	return &boundPorts{root: root}
}

// mayBeServed reports whether proto's port may be held by a socket of
// this host: false only when the last reading shows no socket on it.
func (b *boundPorts) mayBeServed(proto gateway.Protocol, port uint16) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if now := time.Now(); b.at.IsZero() || now.Sub(b.at) > boundPortsTTL || now.Before(b.at) {
		b.readLocked()
		b.at = now
	}
	if !b.ok {
		return true
	}
	if proto == gateway.UDP {
		return b.udp.Contains(port)
	}
	return b.tcp.Contains(port)
}

// readLocked reads the four tables; any failure leaves ok false.
func (b *boundPorts) readLocked() {
	runtime.LockOSThread() // thread-self must name one thread throughout
	defer runtime.UnlockOSThread()
	b.ok = false
	b.tcp, b.udp = gateway.PortSet{}, gateway.PortSet{}
	for _, f := range []struct {
		name string
		set  *gateway.PortSet
	}{{"tcp", &b.tcp}, {"tcp6", &b.tcp}, {"udp", &b.udp}, {"udp6", &b.udp}} {
		data, err := os.ReadFile(b.root + "/" + f.name)
		if err != nil {
			if f.name == "tcp6" || f.name == "udp6" {
				continue // a kernel without IPv6
			}
			return
		}
		if !parseProcNet(data, f.set) {
			return
		}
	}
	b.ok = true
}

// parseProcNet adds the local port of every socket in a /proc/net/tcp
// style table (whatever its state: listening, bound, or connected) to set.
// It reports false on a line it cannot read.
func parseProcNet(data []byte, set *gateway.PortSet) bool {
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), 1<<16)
	header := true
	for sc.Scan() {
		if header {
			header = false
			continue
		}
		f := bytes.Fields(sc.Bytes())
		if len(f) < 2 {
			continue
		}
		i := bytes.LastIndexByte(f[1], ':')
		if i < 0 {
			return false
		}
		p, err := strconv.ParseUint(string(f[1][i+1:]), 16, 16)
		if err != nil {
			return false
		}
		set.Add(uint16(p))
	}
	return sc.Err() == nil
}
