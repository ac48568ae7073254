package daemon

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portfwd/portfwd/internal/stun"
)

// stunServer runs a STUN responder on loopback that reports every client
// as mapped, and returns its address.
func stunServer(t *testing.T, mapped netip.AddrPort) string {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		s := &stun.Server{Mapped: func(netip.AddrPort) netip.AddrPort { return mapped }}
		s.Serve(ctx, stun.Sockets{{pc}})
	}()
	t.Cleanup(func() { cancel(); wg.Wait() })
	return pc.LocalAddr().String()
}

func TestSTUNQuery(t *testing.T) {
	want := netip.MustParseAddrPort("198.51.100.20:40000")
	server := stunServer(t, want)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	got, err := stunQuery(ctx, server)
	if err != nil || got != want {
		t.Errorf("stunQuery = %v, %v; want %v", got, err, want)
	}
}

func TestSTUNQueryNoAnswer(t *testing.T) {
	// A socket that reads and never answers.
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 600*time.Millisecond)
	defer cancel()
	began := time.Now()
	_, err = stunQuery(ctx, pc.LocalAddr().String())
	if err == nil || !strings.Contains(err.Error(), "no answer") {
		t.Errorf("stunQuery of a silent server: %v", err)
	}
	if d := time.Since(began); d > 2*time.Second {
		t.Errorf("stunQuery ignored its deadline: %v", d)
	}
}

func TestExternalAddrFromSTUN(t *testing.T) {
	server := stunServer(t, netip.MustParseAddrPort("100.64.7.7:1"))
	e := newExternalAddr(ExternalAddressConfig{Source: SourceSTUN, STUNServer: server}, nil, discardLogger())
	if err := e.update(context.Background()); err != nil {
		t.Fatal(err)
	}
	if a := e.Get(); a != netip.MustParseAddr("100.64.7.7") {
		t.Errorf("address from STUN = %v", a)
	}
	if e.refusing() != nil {
		t.Error("refusing mappings without refuse_private_external")
	}
	e.cfg.RefusePrivateExternal = true
	if a := e.Get(); a.IsValid() {
		t.Errorf("a CGNAT address was reported with refuse_private_external: %v", a)
	}
	if err := e.refusing(); err == nil || !strings.Contains(err.Error(), "CGNAT") {
		t.Errorf("refusing = %v", err)
	}
}

// A change of address is announced to subscribers; the first one is not a
// change.
func TestExternalAddrOnChange(t *testing.T) {
	addr := netip.MustParseAddr("192.0.2.1")
	e := newExternalAddr(ExternalAddressConfig{Source: SourceInterface}, []string{"x"}, discardLogger())
	e.lookup = func(context.Context) (netip.Addr, error) { return addr, nil }
	var seen []netip.Addr
	e.OnChange(func(a netip.Addr) { seen = append(seen, a) })
	e.update(context.Background())
	e.update(context.Background())
	addr = netip.MustParseAddr("192.0.2.2")
	e.update(context.Background())
	if len(seen) != 1 || seen[0] != addr {
		t.Errorf("changes seen: %v, want [%v]", seen, addr)
	}
}

func TestInterfaceIPv4(t *testing.T) {
	a, err := interfaceIPv4(loopback(t))
	if err != nil || !a.IsLoopback() {
		t.Errorf("loopback address = %v, %v", a, err)
	}
	if _, err := interfaceIPv4("nosuchif0"); err == nil {
		t.Error("a missing interface has an address")
	}
}

func TestSTUNServerAddr(t *testing.T) {
	for in, want := range map[string]string{
		"stun.example.org":       "stun.example.org:3478",
		"stun.example.org:19302": "stun.example.org:19302",
		"192.0.2.1":              "192.0.2.1:3478",
		"[2001:db8::1]:1":        "[2001:db8::1]:1",
	} {
		got, err := stunServerAddr(in)
		if err != nil || got != want {
			t.Errorf("stunServerAddr(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", ":3478", "host:0", "host:port"} {
		if _, err := stunServerAddr(in); err == nil {
			t.Errorf("stunServerAddr(%q) accepted", in)
		}
	}
}
