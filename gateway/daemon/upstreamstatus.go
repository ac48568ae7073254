package daemon

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/portfwd/portfwd/gateway/upstream"
	"github.com/portfwd/portfwd/internal/addrclass"
	"github.com/portfwd/portfwd/internal/netroute"

	"github.com/portfwd/portfwd/gateway"
	"github.com/portfwd/portfwd/gateway/admin"
)

// writeUpstreamMetrics appends the router above's metrics to /metrics:
// whether it answers, the chained mappings, the deletes waiting for it,
// the requests sent to it and the halves made again.
func (d *Daemon) writeUpstreamMetrics(w io.Writer) {
	if d.wan.up == nil {
		return
	}
	s := d.wan.up.Status()
	head := func(name, typ, help string) {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
	}
	up := 0
	if s.State == "up" {
		up = 1
	}
	head("portfwd_upstream_up", "gauge", "1 while the router above answers and mappings are chained to it (double NAT), else 0; the protocol spoken is a label.")
	fmt.Fprintf(w, "portfwd_upstream_up{method=%s} %d\n", label(s.Method), up)
	head("portfwd_upstream_mappings", "gauge", "Mappings with a half on the router above.")
	fmt.Fprintf(w, "portfwd_upstream_mappings %d\n", s.Chained)
	head("portfwd_upstream_pending_deletes", "gauge", "Upstream halves whose delete waits for the router above to answer.")
	fmt.Fprintf(w, "portfwd_upstream_pending_deletes %d\n", s.Pending)
	head("portfwd_upstream_requests_total", "counter", "Requests to the router above, by operation and result.")
	for _, k := range sortedKeys(s.Requests) {
		op, res, _ := strings.Cut(k, "/")
		fmt.Fprintf(w, "portfwd_upstream_requests_total{op=%s,result=%s} %d\n", label(op), label(res), s.Requests[k])
	}
	head("portfwd_upstream_recreated_total", "counter", "Upstream halves made again, by reason (renewal, restart, start, address, announcement, epoch).")
	for _, k := range sortedKeys(s.Recreated) {
		fmt.Fprintf(w, "portfwd_upstream_recreated_total{reason=%s} %d\n", label(k), s.Recreated[k])
	}
}

func sortedKeys(m map[string]uint64) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Slice(ks, func(i, j int) bool { return ks[i] < ks[j] })
	return ks
}

// upstreamStatus is the admin page's "Upstream" box.
func (d *Daemon) upstreamStatus() *admin.Upstream {
	if d.wan.up == nil {
		return &admin.Upstream{State: "off", Note: "upstream = \"off\" (or no external interface to look through): mappings are not chained to a router above"}
	}
	s := d.wan.up.Status()
	u := &admin.Upstream{Mode: s.Mode, State: s.State, Method: s.Method, Server: s.Server, LastError: s.LastErr,
		Chained: s.Chained, PendingDeletes: s.Pending}
	if s.Public.IsValid() {
		u.Public = s.Public.String()
	}
	if !s.Since.IsZero() {
		u.Since = s.Since.UTC().Format(time.RFC3339)
	}
	if !s.NextTry.IsZero() && s.State != "up" {
		u.NextTry = s.NextTry.UTC().Format(time.RFC3339)
	}
	switch s.State {
	case "up":
		u.Note = "Every mapping is also made on the router above, which the Internet reaches"
	case "down":
		u.Note = "The router above stopped answering: new mappings are refused, existing ones kept, retried with backoff"
	case "searching":
		u.Note = "No router above answers yet: mappings are local only"
	case "not needed":
		u.Note = "The external address is public: nothing to chain"
	}
	return u
}

// upstreamHalfOf is m's upstream half for the admin page, nil when m is
// not chained.
func upstreamHalfOf(m gateway.Mapping) *admin.UpstreamHalf {
	if !m.Chained() || !m.Upstream.Public.IsValid() {
		return nil
	}
	return &admin.UpstreamHalf{Public: m.Upstream.Public.String(), Method: m.Upstream.Method, Expires: m.Upstream.Expires}
}

// upstreamFinding says, for --check, whether and how mappings will be
// chained to the router above. It reads the configuration, the external
// interface's address and the routing table; it sends nothing.
func upstreamFinding(cfg Config) Finding {
	ok := func(format string, a ...any) Finding { return Finding{Text: fmt.Sprintf(format, a...)} }
	switch {
	case cfg.Upstream == upstream.ModeOff:
		return ok("upstream = off: mappings are not chained to a router above (behind a double NAT they work from the outer router's side only)")
	case len(cfg.Interfaces.External) == 0 || strings.HasSuffix(cfg.Interfaces.External[0], "*"):
		return ok("upstream: no named external interface to look for the router above through, so mappings are not chained")
	}
	iface := cfg.Interfaces.External[0]
	gw := "no default route through " + iface + " (yet?)"
	if routes, err := mainRoutes(); err == nil {
		var through []netroute.Route // a loop, not slices.DeleteFunc (router build size)
		for _, r := range routes {
			if r.Iface == iface {
				through = append(through, r)
			}
		}
		routes = through
		if a, _, err := netroute.DefaultGatewayFrom(routes); err == nil {
			gw = a.String() + ", the default gateway of " + iface
		}
	}
	protos := strings.Join(cfg.UpstreamProtocols, ", ")
	if protos == "" {
		protos = "pcp, natpmp, upnp"
	}
	if cfg.Upstream != upstream.ModeAuto && cfg.Upstream != "" {
		return ok("upstream = %s: every mapping is chained to the router above (%s)", cfg.Upstream, gw)
	}
	a, err := interfaceIPv4(iface)
	if err != nil {
		return ok("upstream = auto: %s has no IPv4 address yet; mappings are chained once it has a private or CGNAT one and a router above answers", iface)
	}
	switch c := addrclass.Of(a); c {
	case addrclass.Private, addrclass.CGNAT:
		return ok("upstream = auto: %s on %s is %s, so the gateway will ask the router above (%s) over %s and chain every mapping to it", a, iface, c, gw, protos)
	default:
		return ok("upstream = auto: %s on %s is %s, not private or CGNAT: mappings are not chained", a, iface, c)
	}
}
