package reach_test

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/portfwd/portfwd/portmap"
	"github.com/portfwd/portfwd/reach"
	"github.com/portfwd/portfwd/webui/webuitest"
)

// RouterFacts reads what the router says about the checked port: its
// external address, and its mapping, found by the internal port when the
// external one is not given.
func TestRouterFacts(t *testing.T) {
	ctx := context.Background()
	me := netip.MustParseAddr("192.168.1.10")
	g := webuitest.New(webuitest.Options{LocalAddr: me, ExternalIP: netip.MustParseAddr("198.51.100.4"), Mappings: []portmap.Mapping{
		{Protocol: portmap.TCP, ExternalPort: 18080, InternalClient: "192.168.1.10", InternalPort: 8080, Enabled: true},
		{Protocol: portmap.TCP, ExternalPort: 9000, InternalClient: "192.168.1.20", InternalPort: 9000, Enabled: true},
	}})

	f, ext, fromTable := reach.RouterFacts(ctx, g, "tcp", 8080, 0, 0)
	if ext != 18080 || !fromTable {
		t.Errorf("external port %d (from the table: %v), want 18080 from the table", ext, fromTable)
	}
	if !f.Listed || f.Mapping == nil || f.Mapping.ExternalPort != 18080 || f.ExternalIP != netip.MustParseAddr("198.51.100.4") || f.LocalAddr != me {
		t.Errorf("facts %+v", f)
	}

	// Given, the external port is checked as it is; the router's mapping
	// of it, to another host, is what the diagnosis will name.
	f, ext, fromTable = reach.RouterFacts(ctx, g, "tcp", 9000, 9000, 0)
	if ext != 9000 || fromTable || f.Mapping == nil || f.Mapping.InternalClient != "192.168.1.20" {
		t.Errorf("facts %+v, port %d, from the table %v", f, ext, fromTable)
	}

	// No mapping: listed, none found, the internal port is the guess.
	f, ext, fromTable = reach.RouterFacts(ctx, g, "udp", 5000, 0, 0)
	if ext != 5000 || fromTable || !f.Listed || f.Mapping != nil {
		t.Errorf("facts %+v, port %d, from the table %v", f, ext, fromTable)
	}

	// A router that cannot list: unknown, not absent.
	pmp := webuitest.New(webuitest.Options{Method: portmap.NATPMP})
	f, _, _ = reach.RouterFacts(ctx, pmp, "tcp", 8080, 0, 0)
	if f.Listed || !errors.Is(f.ListErr, portmap.ErrNotSupported) || !f.ExternalIP.IsValid() {
		t.Errorf("NAT-PMP facts %+v", f)
	}
}

func TestReportString(t *testing.T) {
	res := reach.Result{Protocol: "TCP", InternalPort: 8080, ExternalPort: 18080, Address: netip.MustParseAddrPort("198.51.100.4:18080"), Probe: "http://probe"}
	verified := res
	verified.Reachable, verified.Verified = true, true
	if s := (reach.Report{Result: verified}).String(); s != "reachable: 198.51.100.4:18080/tcp leads to port 8080 on this host (probe http://probe)" {
		t.Errorf("verified: %q", s)
	}
	failed := res
	failed.Code = reach.CodeTimeout
	r := reach.Report{Result: failed, Diagnosis: reach.Diagnose(failed, reach.Facts{Listed: true})}
	if s := r.String(); !strings.HasPrefix(s, "not reachable: the router has no mapping for external port 18080/TCP") {
		t.Errorf("failed: %q", s)
	}
}
