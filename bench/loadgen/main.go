// Command loadgen drives a UPnP IGD, NAT-PMP and PCP server with the request
// patterns of portfwd's gateway benchmark and prints one JSON object per
// phase. scripts/bench.sh runs it on the lab's LAN host against miniupnpd
// and against portfwd's gateway alike, so both face the same client.
//
// Phases (comma-separated in -phases):
//
//	natpmp-pairs  N x (map + unmap) of one port
//	pcp-pairs     N x (PCP MAP + delete with the same nonce) of one port
//	soap-pairs    N x (AddPortMapping + DeletePortMapping) of one port
//	soap-grow     N AddPortMapping of distinct ports (the table grows to N);
//	              the rate of the first and last tenth shows any slow-down
//	soap-list     one full listing by GetGenericPortMappingEntry
//	soap-clear    N DeletePortMapping (the table shrinks)
//	pinhole-pairs N x (AddPinhole + DeletePinhole) of one port, over IPv6
//	              SOAP (-upnp6, -client6), with whatever pinholes are live
//	pinhole-grow  N AddPinhole of distinct ports (N live pinholes after)
//	pinhole-clear DeletePinhole of every pinhole pinhole-grow opened
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/portfwd/portfwd/igd"
	"github.com/portfwd/portfwd/natpmp"
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
	n := flag.Int("n", 1000, "operations per phase")
	proto := flag.String("proto", "TCP", "protocol of soap-grow and soap-clear mappings")
	base := flag.Int("base", 30000, "first external port")
	phases := flag.String("phases", "natpmp-pairs,pcp-pairs,soap-pairs,soap-grow,soap-list,soap-clear", "phases to run")
	control6 := flag.String("upnp6", "", "WANIPv6FirewallControl control URL (pinhole phases)")
	client6 := flag.String("client6", "", "this host's IPv6 address, the pinholes' internal client")
	flag.Parse()
	if *n < 1 || *n > 65535 || *base < 2 || *base+*n > 65536 {
		fail("-n and -base must keep ports within 1-65535")
	}
	ctx := context.Background()
	c := &igd.Client{SOAP: &upnp.Client{Timeout: 10 * time.Second}, ControlURL: *control, ServiceType: *service, Version: 1}
	enc := json.NewEncoder(os.Stdout)
	fw := &igd.FirewallClient{SOAP: &upnp.Client{Timeout: 10 * time.Second}, ControlURL: *control6}
	pinhole := func(port int) igd.Pinhole {
		return igd.Pinhole{InternalClient: netip.MustParseAddr(*client6), InternalPort: uint16(port), Protocol: igd.ProtoTCP, Lease: time.Hour}
	}
	var grown []uint16 // the IDs pinhole-grow opened
	for _, ph := range strings.Split(*phases, ",") {
		var r result
		switch ph {
		case "natpmp-pairs":
			ap, err := netip.ParseAddrPort(*pmp)
			if err != nil {
				fail("-natpmp: %v", err)
			}
			pc := &natpmp.Client{Gateway: ap}
			lat := make([]time.Duration, 0, *n)
			t0 := time.Now()
			for range *n {
				t := time.Now()
				if _, err := pc.Map(ctx, natpmp.TCP, 8080, uint16(*base), time.Hour); err != nil {
					fail("NAT-PMP map: %v", err)
				}
				if err := pc.Unmap(ctx, natpmp.TCP, 8080); err != nil {
					fail("NAT-PMP unmap: %v", err)
				}
				lat = append(lat, time.Since(t))
			}
			r = summarize(ph, lat, time.Since(t0))
		case "pcp-pairs":
			ap, err := netip.ParseAddrPort(*pmp)
			if err != nil {
				fail("-natpmp: %v", err)
			}
			pc := &pcp.Client{Gateway: ap}
			lat := make([]time.Duration, 0, *n)
			t0 := time.Now()
			for range *n {
				t := time.Now()
				res, err := pc.Map(ctx, pcp.MapRequest{Protocol: pcp.TCP, InternalPort: 8080, SuggestedExternalPort: uint16(*base), Lifetime: time.Hour})
				if err != nil {
					fail("PCP MAP: %v", err)
				}
				if err := pc.Delete(ctx, pcp.TCP, 8080, res.Nonce); err != nil {
					fail("PCP delete: %v", err)
				}
				lat = append(lat, time.Since(t))
			}
			r = summarize(ph, lat, time.Since(t0))
		case "soap-pairs":
			lat := make([]time.Duration, 0, *n)
			t0 := time.Now()
			for range *n {
				t := time.Now()
				m := igd.PortMapping{ExternalPort: uint16(*base), Protocol: "TCP", InternalPort: 8080, InternalClient: *client, Enabled: true, Description: "bench"}
				if err := c.AddPortMapping(ctx, m); err != nil {
					fail("AddPortMapping: %v", err)
				}
				if err := c.DeletePortMapping(ctx, "", uint16(*base), "TCP"); err != nil {
					fail("DeletePortMapping: %v", err)
				}
				lat = append(lat, time.Since(t))
			}
			r = summarize(ph, lat, time.Since(t0))
		case "soap-grow":
			lat := make([]time.Duration, 0, *n)
			t0 := time.Now()
			for i := range *n {
				t := time.Now()
				m := igd.PortMapping{ExternalPort: uint16(*base + i), Protocol: *proto, InternalPort: 8080, InternalClient: *client, Enabled: true, Description: "bench"}
				if err := c.AddPortMapping(ctx, m); err != nil {
					fail("AddPortMapping %d: %v", *base+i, err)
				}
				lat = append(lat, time.Since(t))
			}
			r = summarize(ph, lat, time.Since(t0))
			r.FirstTenthPerSec, r.LastTenthPerSec = tenthRate(lat, false), tenthRate(lat, true)
		case "soap-list":
			t0 := time.Now()
			count := 0
			for ; ; count++ {
				if _, err := c.GetGenericPortMappingEntry(ctx, count); err != nil {
					break
				}
			}
			d := time.Since(t0)
			r = result{Phase: ph, N: count, Entries: count, Seconds: d.Seconds(), PerSec: float64(count) / d.Seconds()}
		case "soap-clear":
			lat := make([]time.Duration, 0, *n)
			t0 := time.Now()
			for i := range *n {
				t := time.Now()
				if err := c.DeletePortMapping(ctx, "", uint16(*base+i), *proto); err != nil {
					fail("DeletePortMapping %d: %v", *base+i, err)
				}
				lat = append(lat, time.Since(t))
			}
			r = summarize(ph, lat, time.Since(t0))
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
		enc.Encode(r)
	}
}

func fail(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "loadgen: "+format+"\n", a...)
	os.Exit(1)
}
