package ssdp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/ipv4"

	"github.com/portfwd/portfwd/internal/testenv"
)

// The multicast test runs Search and Responder against each other over real
// multicast, which must never touch the machine's own network. So the test
// builds a lab of two fresh network namespaces, a client and a router, joined
// by two veth pairs, and re-executes the test binary inside them:
//
//	client ns                      router ns
//	lan0 10.99.0.2/24  <--veth-->  lan1 10.99.0.1/24   (served)
//	wan0 10.98.0.2/24  <--veth-->  wan1 10.98.0.1/24   (not served)
//
// Two namespaces rather than one with a dummy interface: Search turns
// multicast loopback off, so a search sent on a dummy would never reach a
// responder on the same host. The addresses exist only inside the lab.
//
// The parent (root namespace, uid 0, iproute2 present) creates the lab with
// `ip`, starts the client child with `ip netns exec`, and deletes the lab.
// The client child starts the router child in the router namespace, runs
// the checks, and stops it.

const (
	netnsRoleEnv   = "PFSSDP_NETNS_ROLE"   // "client" or "router" inside the lab
	netnsRouterEnv = "PFSSDP_NETNS_ROUTER" // router namespace, for the client
	netnsClientOK  = "pfssdp-netns-client-ok"
	netnsRouterOK  = "pfssdp-netns-router-stopped"

	labLANRouter = "10.99.0.1"
	labLANClient = "10.99.0.2"
	labWANRouter = "10.98.0.1"
	labWANClient = "10.98.0.2"

	labServer = "Linux/6 UPnP/1.1 portfwd/0.1"
)

func labLocation(a netip.Addr) string { return "http://" + a.String() + ":5000/rootDesc.xml" }

func TestMulticastInNetns(t *testing.T) {
	switch os.Getenv(netnsRoleEnv) {
	case "client":
		netnsClient(t)
		return
	case "router":
		netnsRouter(t)
		return
	}
	// Root, ip(8) and namespaces, or a skip that says which is missing (a
	// failure under PORTFWD_LAB_REQUIRED=1).
	cli, rtr := testenv.Netns(t), testenv.Netns(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, step := range [][]string{
		{"-n", cli, "link", "add", "lan0", "type", "veth", "peer", "name", "lan1", "netns", rtr},
		{"-n", cli, "link", "add", "wan0", "type", "veth", "peer", "name", "wan1", "netns", rtr},
		{"-n", cli, "addr", "add", labLANClient + "/24", "dev", "lan0"},
		{"-n", cli, "addr", "add", labWANClient + "/24", "dev", "wan0"},
		{"-n", rtr, "addr", "add", labLANRouter + "/24", "dev", "lan1"},
		{"-n", rtr, "addr", "add", labWANRouter + "/24", "dev", "wan1"},
		{"-n", cli, "link", "set", "lan0", "up"},
		{"-n", cli, "link", "set", "wan0", "up"},
		{"-n", rtr, "link", "set", "lan1", "up"},
		{"-n", rtr, "link", "set", "wan1", "up"},
	} {
		if err := runIP(step...); err != nil {
			t.Fatal(err)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", cli, exe,
		"-test.run", "^TestMulticastInNetns$", "-test.v", "-test.count=1", "-test.timeout=80s")
	cmd.Env = append(os.Environ(), netnsRoleEnv+"=client", netnsRouterEnv+"="+rtr)
	out, err := cmd.CombinedOutput()
	t.Logf("output of the client namespace:\n%s", out)
	if err != nil {
		t.Fatalf("multicast test in namespace %s failed: %v", cli, err)
	}
	if !bytes.Contains(out, []byte(netnsClientOK)) {
		t.Fatalf("the client namespace did not report %q: it skipped or stopped early", netnsClientOK)
	}
}

func runIP(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// netnsRouter runs the Responder on lan1 until its standard input closes.
func netnsRouter(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	go func() {
		io.Copy(io.Discard, os.Stdin)
		cancel()
	}()

	// Another SSDP listener joined on the WAN side, as a media server could
	// be: multicast searches from the WAN then reach the responder's socket
	// too (IP_MULTICAST_ALL), and only its ingress-interface check keeps it
	// from answering them. It listens on another port so as not to take the
	// unicast searches to port 1900.
	wan, err := net.InterfaceByName("wan1")
	if err != nil {
		t.Fatal(err)
	}
	other, err := net.ListenPacket("udp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := ipv4.NewPacketConn(other).JoinGroup(wan, &net.UDPAddr{IP: net.ParseIP(DefaultGroup)}); err != nil {
		t.Fatal(err)
	}

	r := &Responder{
		Adverts:        igd2Adverts(),
		Location:       labLocation,
		Server:         labServer,
		NotifyInterval: 300 * time.Millisecond,
		Interfaces:     []string{"lan1"},
		BootID:         7,
		ConfigID:       1337,
		MaxMX:          1,
		Logger:         slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if err := r.Serve(ctx); err != nil {
		t.Fatalf("Serve: %v", err)
	}
	fmt.Println(netnsRouterOK)
}

// notice is a NOTIFY the client saw.
type notice struct {
	iface string
	from  netip.AddrPort
	raw   []byte
	msg   Message
}

// noticeLog records the NOTIFYs multicast to the client's interfaces.
type noticeLog struct {
	mu   sync.Mutex
	seen []notice
}

func (l *noticeLog) all() []notice {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.seen)
}

// waitFor polls until some notice satisfies ok, for at most d.
func (l *noticeLog) waitFor(d time.Duration, ok func([]notice) bool) bool {
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if ok(l.all()) {
			return true
		}
	}
	return ok(l.all())
}

// listenNotices joins the group on ifaces, like any UPnP control point, and
// records what arrives.
func listenNotices(t *testing.T, ifaces ...string) *noticeLog {
	lc := net.ListenConfig{Control: reuseAddr}
	pc, err := lc.ListenPacket(context.Background(), "udp4", fmt.Sprintf(":%d", DefaultPort))
	if err != nil {
		t.Fatal(err)
	}
	p := ipv4.NewPacketConn(pc)
	if err := p.SetControlMessage(ipv4.FlagInterface, true); err != nil {
		t.Fatal(err)
	}
	names := map[int]string{}
	for _, name := range ifaces {
		ifi, err := net.InterfaceByName(name)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.JoinGroup(ifi, &net.UDPAddr{IP: net.ParseIP(DefaultGroup)}); err != nil {
			t.Fatal(err)
		}
		names[ifi.Index] = name
	}
	l := &noticeLog{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, maxDatagram)
		for {
			n, cm, src, err := p.ReadFrom(buf)
			if err != nil {
				return
			}
			m, err := ParseMessage(buf[:n])
			if err != nil || m.Method != MethodNotify || cm == nil {
				continue
			}
			l.mu.Lock()
			raw := append([]byte(nil), buf[:n]...)
			l.seen = append(l.seen, notice{names[cm.IfIndex], src.(*net.UDPAddr).AddrPort(), raw, m})
			l.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		pc.Close()
		<-done
	})
	return l
}

// netnsClient runs in the client namespace: it starts the router, checks
// discovery and announcements, and stops the router.
func netnsClient(t *testing.T) {
	rtrNS := os.Getenv(netnsRouterEnv)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	notices := listenNotices(t, "lan0", "wan0")

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	router := exec.CommandContext(ctx, "ip", "netns", "exec", rtrNS, exe,
		"-test.run", "^TestMulticastInNetns$", "-test.v", "-test.count=1", "-test.timeout=70s")
	router.Env = append(os.Environ(), netnsRoleEnv+"=router")
	stdin, err := router.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var routerOut testenv.SyncBuffer
	router.Stdout, router.Stderr = &routerOut, &routerOut
	if err := router.Start(); err != nil {
		t.Fatal(err)
	}
	routerDone := make(chan error, 1)
	go func() { routerDone <- router.Wait() }()
	stopped := false
	stopRouter := func() error {
		if !stopped {
			stopped = true
			stdin.Close()
		}
		select {
		case err := <-routerDone:
			return err
		case <-time.After(10 * time.Second):
			return errors.New("router did not stop within 10s of being told to")
		}
	}
	defer func() {
		if !stopped {
			stopRouter()
		}
		t.Logf("router output:\n%s", routerOut.String())
	}()

	lanRouter := netip.MustParseAddr(labLANRouter)
	isAlive := func(n notice) bool { return n.iface == "lan0" && n.msg.Get("NTS") == NTSAlive }

	t.Run("router announces itself", func(t *testing.T) {
		if !notices.waitFor(15*time.Second, func(ns []notice) bool { return slices.ContainsFunc(ns, isAlive) }) {
			t.Fatal("no ssdp:alive on lan0 within 15s: the router did not start")
		}
		// Every advertisement, from the router's LAN address, with the
		// description URL as seen from the LAN.
		want := map[string]bool{}
		for _, a := range igd2Adverts() {
			want[a.NT] = true
		}
		ok := notices.waitFor(3*time.Second, func(ns []notice) bool {
			got := map[string]bool{}
			for _, n := range ns {
				if isAlive(n) {
					got[n.msg.Get("NT")] = true
				}
			}
			return len(got) == len(want)
		})
		if !ok {
			t.Errorf("alive NOTIFYs on lan0 do not cover the %d advertisements: %v", len(want), notices.all())
		}
		for _, n := range notices.all() {
			if !isAlive(n) {
				continue
			}
			r, err := ParseResponse(n.raw)
			if err != nil {
				t.Errorf("alive NOTIFY does not parse: %v", err)
				continue
			}
			if n.from.Addr() != lanRouter || n.from.Port() != DefaultPort || r.Location != labLocation(lanRouter) ||
				!want[r.ST] || r.Server != labServer || r.MaxAge != 1800*time.Second || r.BootID != 7 || r.ConfigID != 1337 {
				t.Errorf("alive NOTIFY from %v = %+v", n.from, r)
			}
		}
	})

	// search runs SearchAll for d.
	search := func(opts SearchOptions, d time.Duration) []Response {
		sctx, scancel := context.WithTimeout(ctx, d)
		defer scancel()
		got, err := SearchAll(sctx, opts)
		if err != nil {
			t.Fatalf("SearchAll(%+v): %v", opts, err)
		}
		return got
	}

	t.Run("multicast search on the LAN", func(t *testing.T) {
		// Three rounds 500ms apart, each answered within MaxMX = 1s.
		got := search(SearchOptions{Interfaces: []string{"lan0"}}, 3*time.Second)
		// The router is an IGD:2 with WANIPConnection:2: it answers the
		// version-1 searches too, echoing version 1, and not WANPPPConnection.
		want := map[string]string{
			STIGDv1:             "uuid:root::" + STIGDv1,
			STIGDv2:             "uuid:root::" + STIGDv2,
			STWANIPConnectionv1: "uuid:conn::" + STWANIPConnectionv1,
			STWANIPConnectionv2: "uuid:conn::" + STWANIPConnectionv2,
		}
		seen := map[string]bool{}
		for _, r := range got {
			seen[r.ST] = true
			if usn, ok := want[r.ST]; !ok || r.USN != usn {
				t.Errorf("unexpected answer %+v", r)
				continue
			}
			if r.Location != labLocation(lanRouter) || r.From != netip.AddrPortFrom(lanRouter, DefaultPort) || r.Interface != "lan0" ||
				r.Server != labServer || r.MaxAge != 1800*time.Second || r.BootID != 7 || r.ConfigID != 1337 {
				t.Errorf("answer %+v: want it from %s:1900 on lan0, located at %s", r, lanRouter, labLocation(lanRouter))
			}
		}
		if len(seen) != len(want) || len(got) != len(want) {
			t.Errorf("got %d answers for %v, want one for each of %d targets", len(got), seen, len(want))
		}
	})

	t.Run("unicast search to the LAN address", func(t *testing.T) {
		got := search(SearchOptions{Targets: []string{STRootDevice}, NoMulticast: true,
			Unicast: []netip.AddrPort{netip.AddrPortFrom(lanRouter, DefaultPort)}}, time.Second)
		if len(got) != 1 || got[0].USN != "uuid:root::upnp:rootdevice" || got[0].From.Addr() != lanRouter || got[0].Interface != "" {
			t.Errorf("unicast search found %+v, want the root device once", got)
		}
	})

	t.Run("nothing is answered on the WAN side", func(t *testing.T) {
		got := search(SearchOptions{Targets: []string{STAll}, NoMulticast: true,
			Unicast: []netip.AddrPort{netip.MustParseAddrPort(labWANRouter + ":1900")}}, 1500*time.Millisecond)
		if len(got) != 0 {
			t.Errorf("unicast search to the WAN address was answered: %+v", got)
		}
		got = search(SearchOptions{Targets: []string{STAll}, Interfaces: []string{"wan0"}}, 2*time.Second)
		if len(got) != 0 {
			t.Errorf("multicast search on the WAN was answered: %+v", got)
		}
		// Not vacuous: the searches did reach the responder, which said why
		// it ignored them.
		if n := strings.Count(routerOut.String(), "interface not served"); n == 0 {
			t.Errorf("router log shows no search ignored for its interface; were the WAN searches delivered?")
		}
	})

	t.Run("router says byebye when stopped", func(t *testing.T) {
		if err := stopRouter(); err != nil {
			t.Fatalf("router: %v", err)
		}
		if !strings.Contains(routerOut.String(), netnsRouterOK) {
			t.Fatalf("router did not return from Serve cleanly")
		}
		byes := func(ns []notice) map[string]bool {
			m := map[string]bool{}
			for _, n := range ns {
				if n.iface == "lan0" && n.msg.Get("NTS") == NTSByeBye {
					m[n.msg.Get("USN")] = true
				}
			}
			return m
		}
		// Announced at start and every NotifyInterval, not just once.
		alive := 0
		for _, n := range notices.all() {
			if isAlive(n) && n.msg.Get("USN") == "uuid:root::upnp:rootdevice" {
				alive++
			}
		}
		if alive <= notifyCopies {
			t.Errorf("root device announced %d times in several NotifyIntervals, want it announced again every interval", alive)
		}
		ads := igd2Adverts()
		notices.waitFor(2*time.Second, func(ns []notice) bool { return len(byes(ns)) == len(ads) })
		got := byes(notices.all())
		for _, a := range ads {
			if !got[a.USN] {
				t.Errorf("no ssdp:byebye for %s", a.USN)
			}
		}
	})

	for _, n := range notices.all() {
		if n.iface != "lan0" {
			t.Errorf("NOTIFY seen on %q, where the router must not announce: %+v", n.iface, n.msg)
		}
	}
	if !t.Failed() {
		fmt.Println(netnsClientOK)
	}
}
