package main

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/portfwd/portfwd/internal/natlab"
	"github.com/portfwd/portfwd/natpmp"
	"github.com/portfwd/portfwd/pcp"
)

// Load and faults: kill -9 with 2,000 adds in flight, a host holding
// thousands of idle connections, a host with thousands of mappings, and a
// bounded mixed soak. Every loop here is bounded in count and time.

// TestLabGatewayKill9DuringInFlightAdds: 16 clients send 2,000
// AddPortMapping requests (one in ten refused by the policy); the gateway
// is killed with SIGKILL in the middle. After a restart every mapping that
// was acknowledged is back and forwards, and none that was refused
// appears.
func TestLabGatewayKill9DuringInFlightAdds(t *testing.T) {
	l, g := startUnlimitedGateway(t)
	l.ServeTCP(t, natlab.HostLAN, ap(l.LANIP, 8080), "lan")
	me := lanAddr(0)

	const n, base = 2000, 42000
	outcome := make([]string, n) // "ok", "refused", or "" (unknown: in flight at the kill)
	var acked atomic.Int64
	killAt := int64(800)
	killed := make(chan time.Time, 1)
	work := make(chan int)
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				client := me
				if i%10 == 0 {
					client = netip.MustParseAddr("10.77.0.99") // another host: 606 in secure mode
				}
				got, _ := soap(t, l, me, "AddPortMapping", addArgs(uint16(base+i), client, 8080)...)
				switch got {
				case "200":
					outcome[i] = "ok"
					if acked.Add(1) == killAt {
						syscall.Kill(g.proc.PID(), syscall.SIGKILL)
						killed <- time.Now()
					}
				case "500 UPnP 606":
					outcome[i] = "refused"
				}
			}
		}()
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
	<-g.proc.Done()
	var ok, refused, unknown []int
	for i, o := range outcome {
		switch o {
		case "ok":
			ok = append(ok, base+i)
		case "refused":
			refused = append(refused, base+i)
		default:
			unknown = append(unknown, base+i)
		}
	}
	t.Logf("killed with SIGKILL after %d acknowledged adds: %d acknowledged, %d refused, %d unknown (in flight at the kill, or after it)",
		killAt, len(ok), len(refused), len(unknown))
	if len(refused) == 0 || len(unknown) == 0 {
		t.Fatalf("the kill did not happen in the middle of the adds (refused %d, unknown %d)", len(refused), len(unknown))
	}

	began := time.Now()
	g.start(t)
	t.Logf("restart after the kill: serving %v later", time.Since(began).Round(time.Millisecond))
	lost := 0
	for _, p := range ok {
		if got, _ := soap(t, l, me, "GetSpecificPortMappingEntry", "NewRemoteHost", "", "NewExternalPort", strconv.Itoa(p), "NewProtocol", "TCP"); got != "200" {
			lost++
			if lost <= 5 {
				t.Errorf("acknowledged mapping %d is gone after the restart (%s)", p, got)
			}
		}
	}
	appeared := 0
	for _, p := range refused {
		if got, _ := soap(t, l, me, "GetSpecificPortMappingEntry", "NewRemoteHost", "", "NewExternalPort", strconv.Itoa(p), "NewProtocol", "TCP"); got == "200" {
			appeared++
			t.Errorf("refused mapping %d appears after the restart", p)
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20 {
		p := ok[rng.IntN(len(ok))]
		if _, reached := reachTCP(t, l, uint16(p), mustWork); !reached {
			t.Errorf("acknowledged mapping %d does not forward after the restart", p)
		}
	}
	t.Logf("after the restart: %d of %d acknowledged leases lost, %d of %d refused ones appeared", lost, len(ok), appeared, len(refused))
	g.stop(t)
}

// startLimited starts the lab gateway with the open-files limit of a small
// router (4,096), as the hostile-input campaign ran it.
func startLimited(t *testing.T, l *natlab.Lab, args []string) *natlab.Process {
	t.Helper()
	p := l.Start(t, natlab.HostRouter, "prlimit", append([]string{"--nofile=4096:4096", portfwdBinary(t)}, args[:]...)...)
	l.WaitTCP(t, natlab.HostLAN, ap(l.RouterLANIP, 5000), 10*time.Second, p)
	return p
}

// TestLabGatewayConnectionFlood: one LAN host opens 4,300 idle
// connections to the UPnP port and eight more 300 each, with the gateway
// at 4,096 open files. The gateway holds its descriptors and memory
// bounded, another host's SOAP and NAT-PMP requests are all served during
// the flood, and everything is back to its baseline afterwards.
func TestLabGatewayConnectionFlood(t *testing.T) {
	l := natlab.Start(t, natlab.Options{Router: natlab.RouterNone})
	addLANAddrs(t, l, 10)
	p := startLimited(t, l, slices.DeleteFunc(gatewayArgs(t, l), func(a string) bool { return a == "-v" }))
	pid := p.PID()
	// The baseline is taken once the gateway has answered each protocol
	// (some descriptors open on first use) and its count is steady.
	if err := gatewayServes(t, l); err != nil {
		t.Fatal(err)
	}
	baseFDs, prev := 0, -1
	within(10*time.Second, 300*time.Millisecond, func() bool {
		baseFDs = openFDs(pid)
		steady := baseFDs == prev
		prev = baseFDs
		return steady
	})
	baseRSS := procStatus(pid, "VmRSS")
	t.Logf("baseline: %d open files, RSS %d kB", baseFDs, baseRSS)

	var conns []net.Conn
	var mu sync.Mutex
	dialErrs := map[string]int{}
	flood := func(from netip.Addr, count int) {
		l.In(natlab.HostLAN, func() error {
			d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(from, 0)), Timeout: time.Second}
			for range count {
				c, err := d.Dial("tcp4", ap(l.RouterLANIP, 5000).String())
				if err != nil {
					mu.Lock()
					dialErrs[err.Error()]++
					mu.Unlock()
					continue
				}
				mu.Lock()
				conns = append(conns, c)
				mu.Unlock()
			}
			return nil
		})
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	began := time.Now()
	flood(lanAddr(1), 4300)
	var wg sync.WaitGroup
	for i := 2; i <= 9; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); flood(lanAddr(i), 300) }()
	}
	wg.Wait()
	refused := 0
	for _, n := range dialErrs {
		refused += n
	}
	t.Logf("%d connection attempts from 9 hosts in %v: %d reset at once by the gateway, %d held open (idle) by the clients",
		refused+len(conns), time.Since(began).Round(time.Millisecond), refused, len(conns))

	peakFDs, peakRSS := openFDs(pid), procStatus(pid, "VmRSS")
	soapOK, pmpOK := 0, 0
	for range 5 {
		if got, _ := soap(t, l, lanAddr(10), "GetExternalIPAddress"); got == "200" {
			soapOK++
		}
		peakFDs, peakRSS = max(peakFDs, openFDs(pid)), max(peakRSS, procStatus(pid, "VmRSS"))
	}
	for range 20 {
		if natpmpAnswer(udpAsk(t, l, natlab.HostLAN, lanAddr(10), ap(l.RouterLANIP, 5351), natpmpReq(natpmp.OpExternalAddress, 0, 0, 0), time.Second)) == "success" {
			pmpOK++
		}
	}
	t.Logf("during the flood: %d open files at most (limit 4096), RSS %d kB at most; another host: SOAP %d/5, NAT-PMP %d/20",
		peakFDs, peakRSS, soapOK, pmpOK)
	if peakFDs > baseFDs+300 {
		t.Errorf("the gateway held %d files during the flood, baseline %d: the HTTP side is not bounded", peakFDs, baseFDs)
	}
	if peakRSS > 40*1024 {
		t.Errorf("RSS %d kB during the flood, over the 40 MiB memory limit", peakRSS)
	}
	if soapOK != 5 || pmpOK != 20 {
		t.Errorf("another host was not served during the flood: SOAP %d/5, NAT-PMP %d/20", soapOK, pmpOK)
	}
	for _, c := range conns {
		c.Close()
	}
	conns = nil
	slack := max(baseFDs/10, 2)
	back := within(15*time.Second, 200*time.Millisecond, func() bool { return openFDs(pid) <= baseFDs+slack })
	t.Logf("after the flood: %d open files (baseline %d), RSS %d kB", openFDs(pid), baseFDs, procStatus(pid, "VmRSS"))
	if !back {
		t.Errorf("open files did not come back to the baseline: %d, baseline %d", openFDs(pid), baseFDs)
	}
	if err := gatewayServes(t, l); err != nil {
		t.Error(err)
	}
	p.Stop()
}

// latencies sums up durations: median, 99th percentile, maximum.
func latencies(d []time.Duration) string {
	if len(d) == 0 {
		return "none"
	}
	s := slices.Clone(d)
	slices.Sort(s)
	ms := func(x time.Duration) string { return strconv.FormatFloat(float64(x.Microseconds())/1000, 'f', 1, 64) }
	return fmt.Sprintf("p50 %s ms, p99 %s ms, max %s ms (%d)", ms(s[len(s)/2]), ms(s[len(s)*99/100]), ms(s[len(s)-1]), len(s))
}

// TestLabGatewayHostWithThousandsOfMappings: with no per-client quota,
// one host takes 6,000 NAT-PMP mappings, then deletes them all with one
// request. Another host's NAT-PMP requests meanwhile keep their latency:
// no request holds the server, and a request's cost does not grow with
// what its host holds.
func TestLabGatewayHostWithThousandsOfMappings(t *testing.T) {
	l := natlab.Start(t, natlab.Options{Router: natlab.RouterNone})
	addLANAddrs(t, l, 3)
	args := slices.DeleteFunc(gatewayArgsWithPolicy(t, l, "max_per_client = 0"), func(a string) bool { return a == "-v" })
	g := &labGateway{l: l, args: args, stateDir: filepath.Join(l.RunDir, "gw")}
	g.start(t)
	gw := ap(l.RouterLANIP, 5351)
	hog, other := lanAddr(1), lanAddr(2)

	// ask opens a socket in the LAN namespace from addr for repeated
	// requests.
	sock := func(from netip.Addr) net.PacketConn {
		pc, err := l.ListenPacket(natlab.HostLAN, "udp4", netip.AddrPortFrom(from, 0).String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { pc.Close() })
		return pc
	}
	exchange := func(pc net.PacketConn, req []byte) (natpmp.Response, time.Duration, error) {
		buf := make([]byte, 64)
		began := time.Now()
		for try := range 4 {
			pc.WriteTo(req, net.UDPAddrFromAddrPort(gw))
			pc.SetReadDeadline(time.Now().Add(time.Duration(250<<try) * time.Millisecond))
			n, _, err := pc.ReadFrom(buf)
			if err == nil {
				r, err := natpmp.ParseResponse(buf[:n])
				return r, time.Since(began), err
			}
		}
		return natpmp.Response{}, time.Since(began), fmt.Errorf("no answer")
	}
	// The other host maps and unmaps one port over and over until stop.
	probe := func(stop <-chan struct{}) []time.Duration {
		pc := sock(other)
		var lat []time.Duration
		for {
			select {
			case <-stop:
				return lat
			default:
			}
			_, d, err := exchange(pc, natpmpReq(natpmp.OpMapUDP, 7000, 7000, 600))
			if d > 100*time.Millisecond {
				t.Logf("slow: %v at %v", d, time.Now().Format("15:04:05.000"))
			}
			if err != nil {
				t.Errorf("another host's NAT-PMP map: %v", err)
				return lat
			}
			lat = append(lat, d)
			exchange(pc, natpmpReq(natpmp.OpMapUDP, 7000, 7000, 0))
		}
	}

	_, idle, _ := exchange(sock(other), natpmpReq(natpmp.OpMapUDP, 7001, 7001, 600))
	const n = 6000
	stop := make(chan struct{})
	probed := make(chan []time.Duration)
	go func() { probed <- probe(stop) }()
	began := time.Now()
	var wg sync.WaitGroup
	var granted atomic.Int64
	for s := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pc := sock(hog)
			for i := s; i < n; i += 2 {
				r, _, err := exchange(pc, natpmpReq(natpmp.OpMapUDP, uint16(10000+i), uint16(10000+i), 3600))
				if err == nil && r.Result == natpmp.Success {
					granted.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	adding := time.Since(began)
	close(stop)
	during := <-probed
	t.Logf("one host took %d NAT-PMP mappings in %v (%.0f/s); another host's map latency alone %v, meanwhile %s",
		granted.Load(), adding.Round(time.Millisecond), float64(granted.Load())/adding.Seconds(), idle.Round(time.Microsecond), latencies(during))
	if granted.Load() != n {
		t.Errorf("%d of %d mappings granted", granted.Load(), n)
	}

	stop = make(chan struct{})
	go func() { probed <- probe(stop) }()
	r, took, err := exchange(sock(hog), natpmpReq(natpmp.OpMapUDP, 0, 0, 0))
	close(stop)
	during = <-probed
	t.Logf("its NAT-PMP \"delete all\" of %d mappings answered in %v (%v); another host meanwhile: %s", n, took.Round(time.Millisecond), r.Result, latencies(during))
	if err != nil || r.Result != natpmp.Success {
		t.Errorf("delete all: %v %v", r.Result, err)
	}
	if took > 5*time.Second {
		t.Errorf("deleting %d mappings took %v", n, took)
	}
	if len(during) > 0 && slices.Max(during) > time.Second {
		t.Errorf("another host waited %v during the delete all", slices.Max(during))
	}
	if got, _ := soap(t, l, lanAddr(0), "GetListOfPortMappings", "NewStartPort", "10000", "NewEndPort", "20000", "NewProtocol", "UDP", "NewManage", "1", "NewNumberOfPorts", "0"); got != "500 UPnP 730" {
		t.Errorf("after delete all, listing the host's range: %s, want 730 (none left)", got)
	}
	g.stop(t)
}

// TestLabGatewaySoak runs a mixed load (SOAP, NAT-PMP, PCP, SSDP, GENA)
// from several clients for a bounded time: 10 s by default, 60 s with
// PORTFWD_SOAK=1. No panic, no error, and the gateway's open files and
// memory come back to their baseline (±10 %).
func TestLabGatewaySoak(t *testing.T) {
	duration := 10 * time.Second
	if os.Getenv("PORTFWD_SOAK") == "1" {
		duration = 60 * time.Second
	}
	l := natlab.Start(t, natlab.Options{Router: natlab.RouterNone})
	addLANAddrs(t, l, 4)
	// Info logging, as a router runs it: debug lines at this rate would
	// measure the logger.
	args := slices.DeleteFunc(gatewayArgs(t, l), func(a string) bool { return a == "-v" })
	g := &labGateway{l: l, args: args, stateDir: filepath.Join(l.RunDir, "gw")}
	g.start(t)
	pid := g.proc.PID()
	cbLn, err := l.Listen(natlab.HostLAN, "tcp4", "0.0.0.0:4999")
	if err != nil {
		t.Fatal(err)
	}
	cbSrv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.Copy(io.Discard, r.Body) })}
	go cbSrv.Serve(cbLn)
	defer cbSrv.Close()

	type counts struct{ ops, failed atomic.Int64 }
	var c counts
	run := func(d time.Duration) {
		deadline := time.Now().Add(d)
		var wg sync.WaitGroup
		for i := 1; i <= 4; i++ {
			client := lanAddr(i)
			wg.Add(1)
			go func() {
				defer wg.Done()
				port := uint16(25000 + 10*i)
				nonce := pcp.NewNonce()
				for k := 0; time.Now().Before(deadline); k++ {
					var ok bool
					switch k % 5 {
					case 0:
						a, _ := soap(t, l, client, "AddPortMapping", addArgs(port, client, port)...)
						b, _ := soap(t, l, client, "DeletePortMapping", "NewRemoteHost", "", "NewExternalPort", strconv.Itoa(int(port)), "NewProtocol", "TCP")
						ok = a == "200" && b == "200"
					case 1:
						a := natpmpAnswer(udpAsk(t, l, natlab.HostLAN, client, ap(l.RouterLANIP, 5351), natpmpReq(natpmp.OpMapUDP, port+1, port+1, 600), time.Second))
						b := natpmpAnswer(udpAsk(t, l, natlab.HostLAN, client, ap(l.RouterLANIP, 5351), natpmpReq(natpmp.OpMapUDP, port+1, port+1, 0), time.Second))
						ok = strings.HasPrefix(a, "success") && strings.HasPrefix(b, "success")
					case 2:
						a := pcpAnswer(udpAsk(t, l, natlab.HostLAN, client, ap(l.RouterLANIP, 5351), pcpMapReq(client, nonce, pcp.TCP, port+2, port+2, 600), time.Second))
						b := pcpAnswer(udpAsk(t, l, natlab.HostLAN, client, ap(l.RouterLANIP, 5351), pcpMapReq(client, nonce, pcp.TCP, port+2, port+2, 0), time.Second))
						ok = strings.HasPrefix(a, "SUCCESS") && strings.HasPrefix(b, "SUCCESS")
					case 3:
						search := []byte("M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: \"ssdp:discover\"\r\nMX: 1\r\nST: urn:schemas-upnp-org:device:InternetGatewayDevice:2\r\n\r\n")
						udpAsk(t, l, natlab.HostLAN, client, netip.MustParseAddrPort("239.255.255.250:1900"), search, 200*time.Millisecond)
						ok = true // answers are budgeted per source (reflection guard): counted, not required
					case 4:
						r := fmt.Sprintf("SUBSCRIBE /evt/IPConn HTTP/1.1\r\nHost: %s:5000\r\nNT: upnp:event\r\nCALLBACK: <http://%s:4999/>\r\nTIMEOUT: Second-1800\r\nConnection: close\r\n\r\n", l.RouterLANIP, client)
						resp := rawHTTP(t, l, client, r, 2*time.Second)
						sid := headerOf(resp, "SID")
						u := rawHTTP(t, l, client, fmt.Sprintf("UNSUBSCRIBE /evt/IPConn HTTP/1.1\r\nHost: %s:5000\r\nSID: %s\r\nConnection: close\r\n\r\n", l.RouterLANIP, sid), 2*time.Second)
						ok = statusOf(resp) == "200" && statusOf(u) == "200"
					}
					c.ops.Add(1)
					if !ok {
						c.failed.Add(1)
					}
				}
			}()
		}
		wg.Wait()
	}
	// The baseline is taken after a warm-up with the same mix, once the
	// connections it left are closed (idle timeout 5 s).
	run(2 * time.Second)
	settle := func() (int, int) {
		var fds, rss int
		prev := -1
		within(15*time.Second, time.Second, func() bool {
			fds, rss = openFDs(pid), procStatus(pid, "VmRSS")
			stable := fds == prev
			prev = fds
			return stable
		})
		return fds, rss
	}
	baseFDs, baseRSS := settle()
	c.ops.Store(0)
	c.failed.Store(0)
	began := time.Now()
	run(duration)
	took := time.Since(began)
	peakFDs, peakRSS := openFDs(pid), procStatus(pid, "VmRSS")
	fds, rss := settle()
	t.Logf("soak of %v: %d operations (%.0f/s), %d failed; open files %d -> %d at the end -> %d settled; RSS %d kB -> %d kB -> %d kB",
		took.Round(time.Second), c.ops.Load(), float64(c.ops.Load())/took.Seconds(), c.failed.Load(), baseFDs, peakFDs, fds, baseRSS, peakRSS, rss)
	if c.failed.Load() > 0 {
		t.Errorf("%d of %d operations failed", c.failed.Load(), c.ops.Load())
	}
	if d := fds - baseFDs; d > baseFDs/10 || -d > baseFDs/10 {
		t.Errorf("open files %d after the soak, baseline %d: not within 10 %%", fds, baseFDs)
	}
	if d := rss - baseRSS; d > baseRSS/10 {
		t.Errorf("RSS %d kB after the soak, baseline %d kB: not within 10 %%", rss, baseRSS)
	}
	g.stop(t)
	if out := g.proc.Output(); strings.Contains(out, "panic") {
		t.Errorf("the gateway logged a panic:\n%s", out)
	}
}
