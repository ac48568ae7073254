package daemon

import (
	"bufio"
	"cmp"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	http "github.com/portfwd/portfwd/internal/httpx"

	"github.com/portfwd/portfwd/gateway"
)

// metrics counts what the daemon did, for the Prometheus text exposition
// served on the admin address. It is written by hand: the format is a few
// lines of text, not worth a dependency.
type metrics struct {
	start time.Time

	mu       sync.Mutex
	requests map[requestKey]uint64
	errors   map[string]uint64
	expired  uint64
}

// requestKey labels portfwd_requests_total.
type requestKey struct {
	protocol string // "upnp", "natpmp", "pcp"
	action   string // the SOAP action, or the NAT-PMP operation
	result   int    // the UPnP error code or NAT-PMP result code; 0 is success
}

// Error kinds counted in portfwd_errors_total.
const (
	errKindBackend = "backend" // the data plane refused a change
	errKindStore   = "store"   // the lease store could not record one
	errKindPanic   = "panic"   // a request handler panicked (and was recovered)
	errKindServer  = "server"  // a listener failed
)

func newMetrics() *metrics {
	return &metrics{start: time.Now(), requests: map[requestKey]uint64{}, errors: map[string]uint64{}}
}

// upnpActions are the SOAP actions counted by name; any other name a
// client sends is counted as "other", so that made-up names cannot grow
// the metrics without bound.
var upnpActions = map[string]bool{
	"AddPortMapping": true, "AddAnyPortMapping": true, "DeletePortMapping": true, "DeletePortMappingRange": true,
	"GetGenericPortMappingEntry": true, "GetSpecificPortMappingEntry": true, "GetListOfPortMappings": true,
	"GetExternalIPAddress": true, "GetStatusInfo": true, "GetConnectionTypeInfo": true, "SetConnectionType": true,
	"GetNATRSIPStatus": true, "RequestConnection": true, "ForceTermination": true, "RequestTermination": true,
	"GetCommonLinkProperties": true, "GetTotalBytesSent": true, "GetTotalBytesReceived": true,
	"GetTotalPacketsSent": true, "GetTotalPacketsReceived": true, "QueryStateVariable": true,
	"GetDefaultConnectionService": true, "SetDefaultConnectionService": true,
}

func (m *metrics) request(protocol, action string, result int) {
	if protocol == "upnp" && !upnpActions[action] {
		action = "other"
	}
	m.mu.Lock()
	m.requests[requestKey{protocol, action, result}]++
	m.mu.Unlock()
}

func (m *metrics) error(kind string) {
	m.mu.Lock()
	m.errors[kind]++
	m.mu.Unlock()
}

// countErr counts err under its kind, when it is one the operator should
// see (a refusal by policy is not an error of the gateway).
func (m *metrics) countErr(err error) {
	switch {
	case err == nil:
	case errors.Is(err, gateway.ErrBackend):
		m.error(errKindBackend)
	case errors.Is(err, gateway.ErrStore):
		m.error(errKindStore)
	}
}

// event counts a change of the core's table.
func (m *metrics) event(e gateway.Event) {
	if e.Kind == gateway.EventExpired {
		m.mu.Lock()
		m.expired++
		m.mu.Unlock()
	}
}

// sourceLabel is the label value of a mapping source.
func sourceLabel(s gateway.Source) string {
	switch s {
	case gateway.SourceUPnP:
		return "upnp"
	case gateway.SourceNATPMP:
		return "natpmp"
	case gateway.SourcePCP:
		return "pcp"
	case gateway.SourceAdmin:
		return "admin"
	}
	return "unknown"
}

// counterSnapshot is a copy of the counters, taken at once.
type counterSnapshot struct {
	requests map[requestKey]uint64
	errors   map[string]uint64 // every kind, zero included
	expired  uint64
}

// counts copies the counters, for the exposition and the admin page.
func (m *metrics) counts() counterSnapshot {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := counterSnapshot{
		requests: make(map[requestKey]uint64, len(m.requests)),
		errors:   map[string]uint64{errKindBackend: 0, errKindStore: 0, errKindPanic: 0, errKindServer: 0},
		expired:  m.expired,
	}
	for k, v := range m.requests {
		c.requests[k] = v
	}
	for k, v := range m.errors {
		c.errors[k] = v
	}
	return c
}

// write writes the exposition: the counters, and the mapping gauges read
// from core at the time of the scrape.
func (m *metrics) write(w io.Writer, core *gateway.Core, backend string) error {
	type gaugeKey struct{ proto, source string }
	gauges := map[gaugeKey]int{}
	for _, p := range []gateway.Protocol{gateway.TCP, gateway.UDP} {
		for _, s := range []gateway.Source{gateway.SourceUPnP, gateway.SourceNATPMP, gateway.SourcePCP, gateway.SourceAdmin} {
			gauges[gaugeKey{p.String(), sourceLabel(s)}] = 0
		}
	}
	core.Range(func(mp *gateway.Mapping) bool { // every address's, the pool's too
		gauges[gaugeKey{mp.Protocol.String(), sourceLabel(mp.Source)}]++
		return true
	})

	c := m.counts()
	reqs := make([]requestKey, 0, len(c.requests))
	for k := range c.requests {
		reqs = append(reqs, k)
	}

	bw := bufio.NewWriter(w)
	head := func(name, typ, help string) {
		fmt.Fprintf(bw, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
	}

	head("portfwd_mappings", "gauge", "Port mappings in the table, by protocol and by the protocol that requested them.")
	gk := make([]gaugeKey, 0, len(gauges))
	for k := range gauges {
		gk = append(gk, k)
	}
	sort.Slice(gk, func(i, j int) bool {
		a, b := gk[i], gk[j]
		return cmp.Or(cmp.Compare(a.proto, b.proto), cmp.Compare(a.source, b.source)) < 0
	})
	for _, k := range gk {
		fmt.Fprintf(bw, "portfwd_mappings{protocol=%s,source=%s} %d\n", label(k.proto), label(k.source), gauges[k])
	}

	head("portfwd_requests_total", "counter", "Requests answered, by protocol, action and result (UPnP error code or NAT-PMP result code; 0 is success).")
	sort.Slice(reqs, func(i, j int) bool {
		a, b := reqs[i], reqs[j]
		return cmp.Or(cmp.Compare(a.protocol, b.protocol), cmp.Compare(a.action, b.action), cmp.Compare(a.result, b.result)) < 0
	})
	for _, k := range reqs {
		fmt.Fprintf(bw, "portfwd_requests_total{protocol=%s,action=%s,result=\"%d\"} %d\n", label(k.protocol), label(k.action), k.result, c.requests[k])
	}

	head("portfwd_errors_total", "counter", "Failures of the gateway itself: backend, store, panic (recovered) and server.")
	ek := make([]string, 0, len(c.errors))
	for k := range c.errors {
		ek = append(ek, k)
	}
	sort.Slice(ek, func(i, j int) bool { return ek[i] < ek[j] })
	for _, k := range ek {
		fmt.Fprintf(bw, "portfwd_errors_total{kind=%s} %d\n", label(k), c.errors[k])
	}

	head("portfwd_leases_expired_total", "counter", "Mappings removed because their lease ended.")
	fmt.Fprintf(bw, "portfwd_leases_expired_total %d\n", c.expired)

	head("portfwd_pinholes", "gauge", "IPv6 pinholes open.")
	fmt.Fprintf(bw, "portfwd_pinholes %d\n", core.PinholeCount())
	head("portfwd_info", "gauge", "Always 1; the backend in use is a label.")
	fmt.Fprintf(bw, "portfwd_info{backend=%s} 1\n", label(backend))

	head("portfwd_start_time_seconds", "gauge", "When the daemon started, in seconds since the Unix epoch.")
	fmt.Fprintf(bw, "portfwd_start_time_seconds %d\n", m.start.Unix())
	return bw.Flush()
}

// label quotes a label value as the text exposition format requires.
func label(v string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
	return `"` + r.Replace(v) + `"`
}

// metricsHandler serves the exposition.
func (d *Daemon) metricsHandler(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "use GET", http.StatusMethodNotAllowed)
		return
	}
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	if err := d.metrics.write(w, d.core, d.backend.Name()); err != nil {
		d.log.Debug("writing metrics", "err", err)
	}
	d.writeUpstreamMetrics(w)
}
