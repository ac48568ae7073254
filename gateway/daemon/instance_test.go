package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"io"
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

// The router's own services on the external side are found: a listener
// on every address or on an external address, a bound UDP socket, not a
// listener on another (LAN-side) address, nor a port merely in TIME_WAIT.
func TestPortServedFindsTheRoutersServices(t *testing.T) {
	if !canProbePorts {
		t.Skip("not on this system")
	}
	port := func(a net.Addr) uint16 { return netip.MustParseAddrPort(a.String()).Port() }
	lo, lo2 := netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.2")
	wild, err := net.Listen("tcp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer wild.Close()
	other, err := net.Listen("tcp4", "127.0.0.2:0")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	udp, err := net.ListenPacket("udp", "[::]:0") // dual-stack
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	udp6, err := net.ListenPacket("udp6", "[::]:0") // IPv6 only: no IPv4 service
	if err != nil {
		t.Fatal(err)
	}
	defer udp6.Close()
	if !portServed(gateway.TCP, port(wild.Addr()), []netip.Addr{lo}) {
		t.Error("a listener on every address is not found")
	}
	if portServed(gateway.TCP, port(other.Addr()), []netip.Addr{lo}) {
		t.Error("a listener on another address counts")
	}
	if !portServed(gateway.TCP, port(other.Addr()), []netip.Addr{lo, lo2}) {
		t.Error("a listener on an external address is not found")
	}
	if !portServed(gateway.UDP, port(udp.LocalAddr()), []netip.Addr{lo}) {
		t.Error("a dual-stack wildcard UDP socket is not found")
	}
	if portServed(gateway.UDP, port(udp6.LocalAddr()), []netip.Addr{lo}) {
		t.Error("an IPv6-only UDP socket counts for IPv4")
	}
	// A closed listener whose connection left a TIME_WAIT is free.
	ln, _ := net.Listen("tcp4", "127.0.0.1:0")
	p := port(ln.Addr())
	go func() {
		if c, err := ln.Accept(); err == nil {
			c.Close()
		}
	}()
	if c, err := net.Dial("tcp4", ln.Addr().String()); err == nil {
		io.Copy(io.Discard, c)
		c.Close()
	}
	ln.Close()
	if portServed(gateway.TCP, p, []netip.Addr{lo}) {
		t.Error("a port with only a TIME_WAIT left counts as served")
	}
}

func BenchmarkPortServed(b *testing.B) {
	lo := []netip.Addr{netip.MustParseAddr("127.0.0.1")}
	for i := 0; b.Loop(); i++ {
		portServed(gateway.TCP, uint16(40000+i%1000), lo)
	}
}

// TestInstanceInfoReadsBackAsWritten: what a gateway writes of itself
// (json.Marshal) the next one reads (parseInstanceInfo) as json.Unmarshal
// would.
func TestInstanceInfoReadsBackAsWritten(t *testing.T) {
	in := instanceInfo{PID: 4242, StateDir: "/var/lib/portfwd \"x\"", Table: "portfwd", Backend: "nft", Admin: "127.0.0.1:8900",
		Started: time.Date(2026, 12, 6, 16, 0, 0, 1, time.UTC)}
	line, _ := json.Marshal(in)
	var got instanceInfo
	if err := parseInstanceInfo(append(line, '\n'), &got); err != nil || got != in {
		t.Errorf("%s: read %+v (%v)", line, got, err)
	}
	if err := parseInstanceInfo([]byte("garbage"), &got); err == nil {
		t.Error("garbage read without an error")
	}
}
