package reach

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/portfwd/portfwd/portmap"
)

func TestDiagnose(t *testing.T) {
	lan := netip.MustParseAddr("10.77.0.2")
	ext := netip.MustParseAddr("203.0.113.1")
	seenAt := netip.AddrPortFrom(ext, 18080)
	failed := func(code string) Result {
		return Result{Protocol: TCP, InternalPort: 8080, ExternalPort: 18080, Address: seenAt, Listener: ListenerTemporary,
			Code: code, Reason: "the probe server could not reach " + seenAt.String() + "/tcp: " + code}
	}
	mapping := func(client string, port uint16, enabled bool) *portmap.Mapping {
		return &portmap.Mapping{Protocol: portmap.TCP, ExternalPort: 18080, InternalClient: client, InternalPort: port, Enabled: enabled}
	}
	good := mapping("10.77.0.2", 8080, true)
	tests := []struct {
		name string
		r    Result
		f    Facts
		want []string
	}{
		{"reachable", Result{Reachable: true, Reason: "it worked"}, Facts{}, []string{"it worked"}},
		{"no mapping", failed(CodeRefused), Facts{ExternalIP: ext, LocalAddr: lan, Listed: true},
			[]string{"no mapping for external port 18080/TCP", "portfwd add 8080 --external 18080 --proto tcp"}},
		{"no mapping beats double NAT", failed(CodeTimeout), Facts{ExternalIP: netip.MustParseAddr("100.64.0.1"), Listed: true},
			[]string{"no mapping"}},
		{"mapping to another host", failed(CodeTimeout), Facts{ExternalIP: ext, LocalAddr: lan, Listed: true, Mapping: mapping("10.77.0.9", 8080, true)},
			[]string{"forwards 18080/TCP to 10.77.0.9:8080, not to this host (10.77.0.2)", "--client 10.77.0.2"}},
		{"mapping to another port", failed(CodeRefused), Facts{ExternalIP: ext, LocalAddr: lan, Listed: true, Mapping: mapping("10.77.0.2", 9090, true)},
			[]string{"to port 9090, not 8080", "--internal 8080"}},
		{"disabled", failed(CodeRefused), Facts{ExternalIP: ext, LocalAddr: lan, Listed: true, Mapping: mapping("10.77.0.2", 8080, false)},
			[]string{"disabled", "--enabled=true"}},
		{"CGNAT", failed(CodeTimeout), Facts{ExternalIP: netip.MustParseAddr("100.64.0.1"), LocalAddr: lan, Listed: true, Mapping: good},
			[]string{"carrier-grade NAT"}},
		{"private external address", failed(CodeTimeout), Facts{ExternalIP: netip.MustParseAddr("192.168.1.2"), Listed: true, Mapping: good},
			[]string{"double NAT"}},
		{"probe saw another address", Result{Protocol: TCP, InternalPort: 8080, ExternalPort: 18080, Code: CodeRefused,
			Address: netip.MustParseAddrPort("198.51.100.7:18080")}, Facts{ExternalIP: ext, Listed: true, Mapping: good},
			[]string{"saw this network at 198.51.100.7", "external address is 203.0.113.1", "another NAT"}},
		{"firewall rejects", failed(CodeRefused), Facts{ExternalIP: ext, LocalAddr: lan, Listed: true, Mapping: good},
			[]string{"refused although the router has a mapping", "firewall"}},
		{"firewall drops", failed(CodeTimeout), Facts{ExternalIP: ext, LocalAddr: lan, Listed: true, Mapping: good},
			[]string{"nothing came back, although the router has a mapping", "firewall drops"}},
		{"NAT-PMP cannot list", failed(CodeRefused), Facts{ExternalIP: ext, ListErr: fmt.Errorf("NAT-PMP: %w", portmap.ErrNotSupported)},
			[]string{"does not forward 18080/TCP", "cannot list mappings", "portfwd add 8080 --external 18080 --proto tcp"}},
		{"no gateway", failed(CodeTimeout), Facts{GatewayErr: portmap.ErrNoGateway},
			[]string{"does not forward", "no router could be asked", "no gateway found"}},
		{"list failed", failed(CodeTimeout), Facts{ListErr: errors.New("HTTP 500")},
			[]string{"could not be read: HTTP 500"}},
		{"router answers itself", failed(CodeMismatch), Facts{ExternalIP: ext, Listed: true, Mapping: good},
			[]string{"another program answered on 18080/TCP", "router itself"}},
		{"unreachable", failed(CodeUnreachable), Facts{}, []string{"no route"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Diagnose(tt.r, tt.f)
			for _, w := range tt.want {
				if !strings.Contains(got, w) {
					t.Errorf("Diagnose = %q\nlacks %q", got, w)
				}
			}
		})
	}
}
