package daemon

import (
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/portfwd/portfwd/gateway"
)

func TestParseProcNet(t *testing.T) {
	const table = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 12345 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1388 0200007F:A2B4 01 00000000:00000000 00:00000000 00000000     0        0 12346 1 0000000000000000 20 4 30 10 -1
`
	var set gateway.PortSet
	if !parseProcNet([]byte(table), &set) {
		t.Fatal("parseProcNet refused a well-formed table")
	}
	for _, p := range []uint16{22, 5000} {
		if !set.Contains(p) {
			t.Errorf("port %d missing", p)
		}
	}
	if set.Len() != 2 {
		t.Errorf("%d ports, want 2", set.Len())
	}
	if parseProcNet([]byte("header\n 0: 00000000 x 0A\n"), &set) {
		t.Error("a line without a port was accepted")
	}
}

// Ports no socket holds are known free without a probe; a port a socket
// holds, and everything when /proc/net cannot be read, is left to the
// probe.
func TestBoundPorts(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	const head = "  sl  local_address rem_address   st\n"
	write("tcp", head+"   0: 00000000:0016 00000000:0000 0A\n")
	write("udp", head+"   0: 00000000:14EB 00000000:0000 07\n")
	b := &boundPorts{root: dir}
	cases := []struct {
		proto gateway.Protocol
		port  uint16
		want  bool
	}{{gateway.TCP, 22, true}, {gateway.TCP, 80, false}, {gateway.UDP, 5355, true}, {gateway.UDP, 22, false}}
	for _, c := range cases {
		if got := b.mayBeServed(c.proto, c.port); got != c.want {
			t.Errorf("mayBeServed(%v, %d) = %v, want %v", c.proto, c.port, got, c.want)
		}
	}
	// Unreadable: every port may be served.
	os.Remove(filepath.Join(dir, "tcp"))
	b.at = time.Time{}
	if !b.mayBeServed(gateway.TCP, 80) {
		t.Error("with /proc/net/tcp unreadable, port 80 was called free")
	}
}

// The real /proc/net of this namespace shows a socket just opened.
func TestBoundPortsSeesAListener(t *testing.T) {
	if _, err := os.Stat("/proc/net/tcp"); err != nil {
		t.Skip("no /proc/net/tcp here")
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := uint16(ln.Addr().(*net.TCPAddr).Port)
	if !newBoundPorts().mayBeServed(gateway.TCP, port) {
		t.Errorf("a listener on %d is not among the bound ports", port)
	}
}
