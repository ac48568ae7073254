// Command loadgen drives a UPnP IGD, NAT-PMP and PCP server with the request
// patterns of portfwd's gateway benchmark and prints one JSON object per
// phase. scripts/bench.sh runs it on the lab's LAN host against miniupnpd
// and against portfwd's gateway alike, so both face the same client.
//
// Phases (comma-separated in -phases); each of the -clients clients runs
// the phase's N operations on its own ports, all at once, and the phase's
// rate is every client's operations over the wall time:
//
//	natpmp-pairs  N x (map + unmap) of one port
//	pcp-pairs     N x (PCP MAP + delete with the same nonce) of one port
//	soap-pairs    N x (AddPortMapping + DeletePortMapping) of one port
//	natpmp-grow   N NAT-PMP maps of distinct internal ports (-lifetime)
//	pcp-grow      N PCP MAPs of distinct internal ports (-lifetime)
//	soap-grow     N AddPortMapping of distinct ports (the table grows to N);
//	              the rate of the first and last tenth shows any slow-down
//	soap-list     one full listing by GetGenericPortMappingEntry
//	soap-getlist  one full listing of -proto by GetListOfPortMappings
//	              (WANIPConnection:2), one request
//	soap-clear    N DeletePortMapping (the table shrinks)
//	pinhole-pairs N x (AddPinhole + DeletePinhole) of one port, over IPv6
//	              SOAP (-upnp6, -client6), with whatever pinholes are live
//	              (one client)
//	pinhole-grow  N AddPinhole of distinct ports (N live pinholes after)
//	pinhole-clear DeletePinhole of every pinhole pinhole-grow opened
//	udp-echo-pairs N x two datagrams the size of a NAT-PMP request, each
//	              answered by an echo server (-echo): the floor under the
//	              NAT-PMP and PCP pair phases (echo.go)
//	tcp-echo-pairs N x two messages the size of a SOAP request over one
//	              TCP connection to the echo server: the floor under
//	              soap-pairs with the connection kept, and, at 2N
//	              exchanges, under a walk of 2N entries
//
// With -echo-server ADDR (or -echo-server-netpoll ADDR) it runs that echo
// server instead, until killed.
//
// NAT-PMP and PCP go over one socket per client with the codecs alone (see
// wire.go); -sources spreads the clients over several local addresses, as
// many subscribers of one carrier-grade gateway. SOAP goes over one
// connection per client, kept alive while the server allows it, with
// requests written and answers checked by hand (soap.go), except
// soap-getlist's one request. Both sides are as lean as the protocols
// allow, so that what is measured is the server.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/portfwd/portfwd/igd"
	"github.com/portfwd/portfwd/pcp"
	"github.com/portfwd/portfwd/upnp"
)

type result struct {
	Phase   string  `json:"phase"`
	N       int     `json:"n"`
	Seconds float64 `json:"seconds"`
	PerSec  float64 `json:"per_sec"`
	P50ms   float64 `json:"p50_ms"`
	P99ms   float64 `json:"p99_ms"`
	// FirstTenthPerSec and LastTenthPerSec show how the rate changes as a
	// table grows (soap-grow).
	FirstTenthPerSec float64 `json:"first_tenth_per_sec,omitempty"`
	LastTenthPerSec  float64 `json:"last_tenth_per_sec,omitempty"`
	Entries          int     `json:"entries,omitempty"`
	Clients          int     `json:"clients,omitempty"`
	Error            string  `json:"error,omitempty"`
}

func summarize(phase string, lat []time.Duration, total time.Duration) result {
	s := slices.Clone(lat)
	slices.Sort(s)
	r := result{Phase: phase, N: len(lat), Seconds: total.Seconds()}
	if len(s) > 0 {
		r.PerSec = float64(len(lat)) / total.Seconds()
		r.P50ms = float64(s[len(s)/2].Microseconds()) / 1000
		r.P99ms = float64(s[min(len(s)-1, len(s)*99/100)].Microseconds()) / 1000
	}
	return r
}

func tenthRate(lat []time.Duration, last bool) float64 {
	k := max(len(lat)/10, 1)
	part := lat[:k]
	if last {
		part = lat[len(lat)-k:]
	}
	var sum time.Duration
	for _, d := range part {
		sum += d
	}
	return float64(len(part)) / sum.Seconds()
}

func main() {
	control := flag.String("upnp", "", "WANIPConnection control URL")
	service := flag.String("service", igd.URNWANIPConnection1, "service type to call")
	pmp := flag.String("natpmp", "", "NAT-PMP server address (ip:port)")
	client := flag.String("client", "", "internal client address to map to (this host)")
	n := flag.Int("n", 1000, "operations per phase and client")
	clients := flag.Int("clients", 1, "clients running each phase at once")
	sources := flag.String("sources", "", "local addresses the NAT-PMP/PCP clients send from, round robin: a comma-separated list, or FIRST+COUNT for COUNT consecutive IPv4 addresses (default: any)")
	lifetime := flag.Int("lifetime", 3600, "lifetime in seconds of natpmp-grow and pcp-grow mappings")
	proto := flag.String("proto", "TCP", "protocol of soap-grow, soap-getlist and soap-clear mappings")
	base := flag.Int("base", 30000, "first external port")
	phases := flag.String("phases", "natpmp-pairs,pcp-pairs,soap-pairs,soap-grow,soap-list,soap-clear", "phases to run")
	control6 := flag.String("upnp6", "", "WANIPv6FirewallControl control URL (pinhole phases)")
	client6 := flag.String("client6", "", "this host's IPv6 address, the pinholes' internal client")
	echo := flag.String("echo", "", "echo server address (ip:port) of udp-echo-pairs")
	echoServer := flag.String("echo-server", "", "run an echo server of blocking system calls on `ip:port` instead of a load")
	echoServerNetpoll := flag.String("echo-server-netpoll", "", "run an echo server through Go's network poller on `ip:port` instead of a load")
	flag.Parse()
	if *echoServer != "" || *echoServerNetpoll != "" {
		addr, netpoll := *echoServer, false
		if addr == "" {
			addr, netpoll = *echoServerNetpoll, true
		}
		ap, err := netip.ParseAddrPort(addr)
		if err != nil {
			fail("-echo-server: %v", err)
		}
		runtime.GOMAXPROCS(1) // as one client's server: one request at a time
		fail("echo server: %v", serveEcho(ap, netpoll))
	}
	if *n < 1 || *clients < 1 || *clients > 4096 {
		fail("-n and -clients must be at least 1 (and -clients at most 4096)")
	}
	growPorts := *n * *clients
	if !strings.Contains(*phases, "soap-") {
		growPorts = *clients // the pairs' ports only
	}
	if *base < 2 || *base+growPorts > 65536 { // pinhole-pairs uses base-1
		fail("-n x -clients and -base must keep ports within 1-65535")
	}
	if *clients == 1 {
		// One client runs one request at a time: a second P only spins
		// looking for work, taking CPU from the server measured.
		runtime.GOMAXPROCS(1)
	}
	srcs, err := parseSources(*sources)
	if err != nil {
		fail("-sources: %v", err)
	}
	ctx := context.Background()
	// soapClient gives each client a connection of its own (its own
	// transport), as separate control points have: a shared transport
	// keeps only two idle connections per host, so with more clients the
	// others would open and close a connection per request.
	soapClient := func() *igd.Client {
		hc := &http.Client{Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 1, IdleConnTimeout: 30 * time.Second}}
		return &igd.Client{SOAP: &upnp.Client{HTTP: hc, Timeout: 10 * time.Second}, ControlURL: *control, ServiceType: *service, Version: 1}
	}
	// soapWireFor returns a lean SOAP client (soap.go) with a connection
	// of its own, kept alive as long as the server keeps it: the pairs,
	// grow, clear and list phases use it. soap-getlist, one request,
	// uses the project's igd client.
	soapWireFor := func() *soapWire {
		c, err := newSoapWire(*control, *service, 10*time.Second)
		if err != nil {
			fail("-upnp: %v", err)
		}
		return c
	}
	// wireTo opens client i's socket to server, named by its flag.
	wireTo := func(i int, flagName, server string) *wire {
		ap, err := netip.ParseAddrPort(server)
		if err != nil {
			fail("-%s: %v", flagName, err)
		}
		var local netip.Addr
		if len(srcs) > 0 {
			local = srcs[i%len(srcs)]
		}
		w, err := dialWire(local, ap)
		if err != nil {
			fail("client %d: %v", i, err)
		}
		return w
	}
	// wireFor opens client i's NAT-PMP/PCP socket.
	wireFor := func(i int) *wire { return wireTo(i, "natpmp", *pmp) }
	// internalBase is client i's first internal port in the grow phases:
	// clients sharing a source address take turns in the port space.
	internalBase := func(i int) int {
		per := 1
		if len(srcs) > 0 {
			per = len(srcs)
		}
		return 1024 + (i / per * *n)
	}
	enc := json.NewEncoder(os.Stdout)
	fw := &igd.FirewallClient{SOAP: &upnp.Client{Timeout: 10 * time.Second}, ControlURL: *control6}
	pinhole := func(port int) igd.Pinhole {
		return igd.Pinhole{InternalClient: netip.MustParseAddr(*client6), InternalPort: uint16(port), Protocol: igd.ProtoTCP, Lease: time.Hour}
	}
	var grown []uint16 // the IDs pinhole-grow opened
	for _, ph := range strings.Split(*phases, ",") {
		var r result
		switch ph {
		case "natpmp-pairs", "pcp-pairs", "soap-pairs", "natpmp-grow", "pcp-grow", "soap-grow", "soap-clear", "udp-echo-pairs", "tcp-echo-pairs":
			lat, wall, err := run(*clients, *n, func(i int) (func(j int) error, error) {
				ext := *base + i
				switch ph {
				case "natpmp-pairs":
					w := wireFor(i)
					iport := uint16(8080 + i)
					return func(int) error {
						if _, err := w.natpmpMap(iport, uint16(ext), 3600); err != nil {
							return fmt.Errorf("NAT-PMP map: %w", err)
						}
						if _, err := w.natpmpMap(iport, 0, 0); err != nil {
							return fmt.Errorf("NAT-PMP unmap: %w", err)
						}
						return nil
					}, nil
				case "udp-echo-pairs":
					w := wireTo(i, "echo", *echo)
					port := uint16(8080 + i)
					return func(int) error {
						if err := w.echo(port); err != nil {
							return fmt.Errorf("echo: %w", err)
						}
						if err := w.echo(port); err != nil {
							return fmt.Errorf("echo: %w", err)
						}
						return nil
					}, nil
				case "tcp-echo-pairs":
					ap, err := netip.ParseAddrPort(*echo)
					if err != nil {
						fail("-echo: %v", err)
					}
					e, err := dialTCPEcho(ap)
					if err != nil {
						fail("client %d: %v", i, err)
					}
					return func(int) error {
						if err := e.exchange(); err != nil {
							return fmt.Errorf("echo: %w", err)
						}
						if err := e.exchange(); err != nil {
							return fmt.Errorf("echo: %w", err)
						}
						return nil
					}, nil
				case "pcp-pairs":
					w := wireFor(i)
					iport := uint16(8080 + i)
					return func(int) error {
						nonce := pcp.NewNonce()
						if _, err := w.pcpMap(nonce, iport, uint16(ext), 3600); err != nil {
							return fmt.Errorf("PCP MAP: %w", err)
						}
						if _, err := w.pcpMap(nonce, iport, 0, 0); err != nil {
							return fmt.Errorf("PCP delete: %w", err)
						}
						return nil
					}, nil
				case "natpmp-grow":
					w := wireFor(i)
					ib := internalBase(i)
					if ib+*n > 65536 {
						return nil, fmt.Errorf("client %d: internal ports %d+%d pass 65535: use more -sources", i, ib, *n)
					}
					return func(j int) error {
						_, err := w.natpmpMap(uint16(ib+j), 0, uint32(*lifetime))
						return err
					}, nil
				case "pcp-grow":
					// With more sources than clients, client i speaks for
					// sources i, i+clients, ... in turn, one socket each,
					// as a carrier's subscribers arrive interleaved.
					var ws []*wire
					for k := i; k == i || k < len(srcs); k += *clients {
						ws = append(ws, wireFor(k))
					}
					ib := internalBase(i)
					if len(srcs) > *clients {
						ib = 1024
					}
					if ib+*n/len(ws) > 65536 {
						return nil, fmt.Errorf("client %d: internal ports %d+%d pass 65535: use more -sources", i, ib, *n/len(ws))
					}
					return func(j int) error {
						_, err := ws[j%len(ws)].pcpMap(pcp.NewNonce(), uint16(ib+j/len(ws)), 0, uint32(*lifetime))
						return err
					}, nil
				case "soap-pairs":
					c := soapWireFor()
					return func(int) error {
						if err := c.addPortMapping("TCP", ext, 8080, *client, "bench"); err != nil {
							return fmt.Errorf("AddPortMapping: %w", err)
						}
						if err := c.deletePortMapping("TCP", ext); err != nil {
							return fmt.Errorf("DeletePortMapping: %w", err)
						}
						return nil
					}, nil
				case "soap-grow":
					c := soapWireFor()
					first := *base + i**n
					return func(j int) error {
						if err := c.addPortMapping(*proto, first+j, 8080, *client, "bench"); err != nil {
							return fmt.Errorf("AddPortMapping %d: %w", first+j, err)
						}
						return nil
					}, nil
				default: // soap-clear
					c := soapWireFor()
					first := *base + i**n
					return func(j int) error {
						if err := c.deletePortMapping(*proto, first+j); err != nil {
							return fmt.Errorf("DeletePortMapping %d: %w", first+j, err)
						}
						return nil
					}, nil
				}
			})
			if err != nil {
				fail("%s: %v", ph, err)
			}
			r = summarize(ph, lat, wall)
			if ph == "soap-grow" && *clients == 1 {
				r.FirstTenthPerSec, r.LastTenthPerSec = tenthRate(lat, false), tenthRate(lat, true)
			}
		case "soap-list":
			c := soapWireFor()
			t0 := time.Now()
			count := 0
			for ; ; count++ {
				if err := c.getGeneric(count); err != nil {
					var f *soapFault
					if !errors.As(err, &f) {
						fail("soap-list: entry %d: %v", count, err) // not the end of the list: the walk failed
					}
					break
				}
			}
			d := time.Since(t0)
			r = result{Phase: ph, N: count, Entries: count, Seconds: d.Seconds(), PerSec: float64(count) / d.Seconds()}
		case "soap-getlist":
			c := soapClient()
			c.ServiceType, c.Version = igd.URNWANIPConnection2, 2
			t0 := time.Now()
			list, err := c.GetListOfPortMappings(ctx, 1, 65535, *proto, false, 0)
			d := time.Since(t0)
			r = result{Phase: ph, N: 1, Entries: len(list), Seconds: d.Seconds()}
			if err != nil {
				r.Error = err.Error()
			}
		case "pinhole-pairs":
			// One port below -base, so as not to meet pinhole-grow's.
			lat := make([]time.Duration, 0, *n)
			t0 := time.Now()
			for range *n {
				t := time.Now()
				id, err := fw.AddPinhole(ctx, pinhole(*base-1))
				if err != nil {
					fail("AddPinhole: %v", err)
				}
				if err := fw.DeletePinhole(ctx, id); err != nil {
					fail("DeletePinhole %d: %v", id, err)
				}
				lat = append(lat, time.Since(t))
			}
			r = summarize(ph, lat, time.Since(t0))
		case "pinhole-grow":
			lat := make([]time.Duration, 0, *n)
			t0 := time.Now()
			for i := range *n {
				t := time.Now()
				id, err := fw.AddPinhole(ctx, pinhole(*base+i))
				if err != nil {
					fail("AddPinhole %d: %v", *base+i, err)
				}
				grown = append(grown, id)
				lat = append(lat, time.Since(t))
			}
			r = summarize(ph, lat, time.Since(t0))
			r.FirstTenthPerSec, r.LastTenthPerSec = tenthRate(lat, false), tenthRate(lat, true)
		case "pinhole-clear":
			lat := make([]time.Duration, 0, len(grown))
			t0 := time.Now()
			for _, id := range grown {
				t := time.Now()
				if err := fw.DeletePinhole(ctx, id); err != nil {
					fail("DeletePinhole %d: %v", id, err)
				}
				lat = append(lat, time.Since(t))
			}
			grown = nil
			r = summarize(ph, lat, time.Since(t0))
		default:
			fail("unknown phase %q", ph)
		}
		r.Clients = *clients
		enc.Encode(r)
	}
}

// run starts clients clients, each made by setup and doing n operations,
// all at once, and returns every operation's latency (in each client's
// order, clients one after another) and the wall time from the first start
// to the last end.
func run(clients, n int, setup func(i int) (func(j int) error, error)) ([]time.Duration, time.Duration, error) {
	ops := make([]func(int) error, clients)
	for i := range ops {
		var err error
		if ops[i], err = setup(i); err != nil {
			return nil, 0, err
		}
	}
	lats := make([][]time.Duration, clients)
	errs := make([]error, clients)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range clients {
		wg.Go(func() {
			lat := make([]time.Duration, 0, n)
			<-start
			for j := range n {
				t := time.Now()
				if err := ops[i](j); err != nil {
					errs[i] = fmt.Errorf("client %d, operation %d: %w", i, j, err)
					break
				}
				lat = append(lat, time.Since(t))
			}
			lats[i] = lat
		})
	}
	t0 := time.Now()
	close(start)
	wg.Wait()
	wall := time.Since(t0)
	for _, err := range errs {
		if err != nil {
			return nil, 0, err
		}
	}
	return slices.Concat(lats...), wall, nil
}

// parseSources reads -sources.
func parseSources(s string) ([]netip.Addr, error) {
	if s == "" {
		return nil, nil
	}
	if first, count, ok := strings.Cut(s, "+"); ok {
		a, err := netip.ParseAddr(first)
		if err != nil || !a.Is4() {
			return nil, fmt.Errorf("%q: not an IPv4 address", first)
		}
		k, err := strconv.Atoi(count)
		if err != nil || k < 1 || k > 1<<20 {
			return nil, fmt.Errorf("%q: not a count of addresses", count)
		}
		out := make([]netip.Addr, 0, k)
		for range k {
			out = append(out, a)
			a = a.Next()
		}
		return out, nil
	}
	var out []netip.Addr
	for _, f := range strings.Split(s, ",") {
		a, err := netip.ParseAddr(strings.TrimSpace(f))
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, nil
}

func fail(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "loadgen: "+format+"\n", a...)
	os.Exit(1)
}
