package daemon

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/portfwd/portfwd/gateway"
)

// A second gateway on the same state directory refuses at once, naming
// the running one, and leaves it serving.
func TestSecondGatewayOnTheSameStateDirectoryRefuses(t *testing.T) {
	cfg := testConfig(t)
	first := start(t, cfg)
	second := testConfig(t)
	second.StateDir = cfg.StateDir
	_, err := New(context.Background(), second)
	if !errors.Is(err, ErrAnotherInstance) {
		t.Fatalf("second New: %v, want ErrAnotherInstance", err)
	}
	msg := err.Error()
	for _, want := range []string{"PID " + strconv.Itoa(os.Getpid()), "state directory " + cfg.StateDir, "changed nothing"} {
		if !strings.Contains(msg, want) {
			t.Errorf("the refusal %q does not say %q", msg, want)
		}
	}
	if strings.Count(msg, ": ") > 1 {
		t.Errorf("the refusal is not one sentence: %q", msg)
	}
	// The first one still answers.
	if _, err := first.igdClient(t, "127.0.0.1").GetExternalIPAddress(context.Background()); err != nil {
		t.Errorf("the first gateway stopped answering: %v", err)
	}
	// Once it stops, the directory is free again.
	first.stop()
	d, err := New(context.Background(), second)
	if err != nil {
		t.Fatalf("after the first stopped: %v", err)
	}
	d.Close()
}

// The nft table's lock lives in the network namespace and answers who
// holds it.
func TestTableLockNamesItsHolder(t *testing.T) {
	table := "pftest" + strconv.FormatInt(time.Now().UnixNano(), 36)
	me := instanceInfo{PID: os.Getpid(), StateDir: "/var/lib/x", Table: table, Started: time.Now()}
	c, _, err := lockTable(table, me)
	if err != nil || c == nil {
		t.Fatalf("first lock: %v, %v", c, err)
	}
	c2, holder, err := lockTable(table, instanceInfo{PID: 1})
	if err != nil || c2 != nil {
		t.Fatalf("second lock: %v, %v; want refused", c2, err)
	}
	if holder.PID != os.Getpid() || holder.StateDir != "/var/lib/x" || holder.Table != table {
		t.Errorf("holder %+v, want %+v", holder, me)
	}
	c.Close()
	c3, _, err := lockTable(table, me)
	if err != nil || c3 == nil {
		t.Fatalf("after release: %v, %v", c3, err)
	}
	c3.Close()
}

// An external interface no default route leaves through (here loopback,
// in the tests' namespace without routes) is refused at start unless
// forced, and --check says why.
func TestInterfaceRolesAreChecked(t *testing.T) {
	cfg := testConfig(t)
	cfg.Interfaces.External = []string{loopback(t)}
	cfg.Interfaces.Internal = []string{"pfdummy0"}
	if p := roleProblems(&cfg); len(p) != 1 || !strings.Contains(p[0], "no route out") {
		t.Fatalf("role problems %q, want the external interface's missing route", p)
	}
	cfg.Interfaces.Internal = []string{loopback(t)}
	cfg.Interfaces.External = []string{"lo-not-here"}
	_, err := New(context.Background(), cfg)
	if !errors.Is(err, ErrInterfaceRoles) || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("New with an external interface without a route out: %v", err)
	}
	var found bool
	for _, f := range Check(context.Background(), cfg) {
		if f.Problem && strings.Contains(f.Text, "lo-not-here has no route out") {
			found = true
		}
	}
	if !found {
		t.Error("--check does not report the external interface without a route out")
	}
	cfg.Interfaces.Force = true
	d, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("New with interfaces.force: %v", err)
	}
	d.Close()
}

// The router's own listening sockets on the external side are found:
// those on every address and on an external address, not those on
// loopback only.
func TestListeningPortsFindsTheRoutersServices(t *testing.T) {
	if !canListListeners {
		t.Skip("not on this system")
	}
	wild, err := net.Listen("tcp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer wild.Close()
	local, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer local.Close()
	udp, err := net.ListenPacket("udp6", "[::]:0")
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	port := func(a net.Addr) uint16 { return netip.MustParseAddrPort(a.String()).Port() }

	tcp, err := listeningPorts(gateway.TCP, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !tcp.Contains(port(wild.Addr())) || tcp.Contains(port(local.Addr())) {
		t.Errorf("TCP: wildcard listener found %v (want true), loopback one %v (want false)", tcp.Contains(port(wild.Addr())), tcp.Contains(port(local.Addr())))
	}
	tcp, _ = listeningPorts(gateway.TCP, []netip.Addr{netip.MustParseAddr("127.0.0.1")})
	if !tcp.Contains(port(local.Addr())) {
		t.Error("a listener on an external address is not found")
	}
	u, err := listeningPorts(gateway.UDP, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !u.Contains(port(udp.LocalAddr())) {
		t.Error("an IPv6 wildcard UDP socket is not found")
	}
}

func BenchmarkListeningPorts(b *testing.B) {
	for b.Loop() {
		if _, err := listeningPorts(gateway.TCP, nil); err != nil {
			b.Fatal(err)
		}
	}
}
