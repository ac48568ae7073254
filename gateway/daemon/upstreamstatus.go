package daemon

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

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
	slices.Sort(ks)
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
