package daemon

import (
	"context"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/portfwd/portfwd/igd"
	"github.com/portfwd/portfwd/internal/testenv"
	"github.com/portfwd/portfwd/pcp"
)

// Refusals are logged at the default level, with the client and the
// reason, and mapping refusals go to the audit trail. A PCP FILTER naming
// an IPv6 peer on an IPv4 mapping is a malformed option: no backend error
// is counted, nothing is asked of the backend.
func TestRefusalsAreLoggedAndAudited(t *testing.T) {
	cfg := testConfig(t)
	var logs testenv.SyncBuffer
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	cfg.Policy.Rules = DefaultRules
	r := start(t, cfg)
	ctx := context.Background()

	// UPnP: port 80 is outside the default rules.
	up := r.igdClient(t, "127.0.0.1")
	if err := up.AddPortMapping(ctx, igd.PortMapping{ExternalPort: 80, Protocol: "TCP", InternalPort: 80,
		InternalClient: "127.0.0.1", Enabled: true}); err == nil {
		t.Fatal("AddPortMapping of port 80 succeeded under the default rules")
	}
	// PCP: an IPv6 peer on an IPv4 mapping.
	c := &pcp.Client{Gateway: r.NATPMPAddrs()[0]}
	_, err := c.Map(ctx, pcp.MapRequest{Protocol: pcp.UDP, InternalPort: 8001, SuggestedExternalPort: 28001, Lifetime: time.Hour,
		Filters: []pcp.Filter{{Prefix: netip.MustParsePrefix("2001:db8::1/128")}}})
	if pcpCode(err) != int(pcp.ResultMalformedOption) {
		t.Errorf("PCP MAP with an IPv6 FILTER on IPv4: %v, want MALFORMED_OPTION", err)
	}
	if n := r.metrics.counts().errors[errKindBackend]; n != 0 {
		t.Errorf("%d backend errors counted for a malformed option", n)
	}
	if calls := r.memory().Calls(); calls.Add != 0 {
		t.Errorf("the backend was asked %d times", calls.Add)
	}

	out := logs.String()
	for _, want := range []string{
		`msg="upnp: request refused" client=127.0.0.1 action=AddPortMapping result="606 ActionNotAuthorized" reason="not authorized: no permission rule allows mapping TCP port 80`,
		`msg="pcp: request refused" client=127.0.0.1 action=map result=MALFORMED_OPTION`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the log lacks %q:\n%s", want, out)
		}
	}
	var events []string
	for _, rec := range r.audit.Recent() {
		events = append(events, string(rec.Event)+" "+rec.Via+" "+rec.Action+" "+rec.Result)
	}
	for _, want := range []string{"refused UPnP AddPortMapping 606 ActionNotAuthorized", "refused PCP map MALFORMED_OPTION"} {
		found := false
		for _, e := range events {
			found = found || e == want
		}
		if !found {
			t.Errorf("the audit trail lacks %q: %q", want, events)
		}
	}
}
