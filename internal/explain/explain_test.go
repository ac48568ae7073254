package explain

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"syscall"
	"testing"

	"github.com/portfwd/portfwd/portmap"
)

// TestSentence: what the user reads of an error is one sentence: the
// first layer (what was being done) and the cause in words, not the chain
// of every layer nor Go's names for things; with the timeout's hint where
// there is a setting to name (the CLI's --timeout) and none where there is
// not (the web UI). cmd/portfwd's TestSentence has what the CLI adds
// (usage errors).
func TestSentence(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	probe := fmt.Errorf("UPnP description at http://10.0.0.1:9/rootDesc.xml: %w",
		fmt.Errorf("upnp: fetching device description from http://10.0.0.1:9/rootDesc.xml: %w",
			&url.Error{Op: "Get", URL: "http://10.0.0.1:9/rootDesc.xml", Err: refused}))
	timeout := fmt.Errorf("igd: AddPortMapping: %w", fmt.Errorf("upnp: AddPortMapping at http://x/ctl: %w",
		&url.Error{Op: "Post", URL: "http://x/ctl", Err: context.DeadlineExceeded}))
	pcpClosed := fmt.Errorf("PCP at 10.0.0.1:5351: %w", fmt.Errorf("pcp: ANNOUNCE request to 10.0.0.1:5351: %w",
		errors.New("the gateway does not run PCP (its port 5351 is closed); enable PCP in the router, or try UPnP")))
	refusal := &portmap.RefusedError{Method: portmap.UPnP, Code: 718, Text: "port 8080/TCP is held by another host"}
	const cli = " (--timeout)"
	for _, tt := range []struct {
		err  error
		hint string
		want string
	}{
		{fmt.Errorf("%w (tried UPnP at http://10.0.0.1:9/rootDesc.xml): %w", portmap.ErrNoGateway, errors.Join(probe)), "",
			"no gateway found: UPnP description at http://10.0.0.1:9/rootDesc.xml: connection refused"},
		{timeout, "", "AddPortMapping: no answer in time"},
		{timeout, " (--timeout)", "AddPortMapping: no answer in time (--timeout)"},
		{fmt.Errorf("adding: %w", &portmap.RefusedError{Method: portmap.PCP, Text: "MAP: the router cannot give the port"}), "",
			"adding: MAP: the router cannot give the port"},
		{fmt.Errorf("%w (tried SSDP multicast, PCP at 10.0.0.1:5351): %w", portmap.ErrNoGateway, errors.Join(pcpClosed)), cli,
			"no gateway found (tried SSDP multicast, PCP at 10.0.0.1:5351): PCP at 10.0.0.1:5351: the gateway does not run PCP (its port 5351 is closed); enable PCP in the router, or try UPnP"},
		{fmt.Errorf("%w (tried NAT-PMP at 10.0.0.1:5351): nothing answered; is UPnP, NAT-PMP or PCP enabled on the router?", portmap.ErrNoGateway), cli,
			"no gateway found (tried NAT-PMP at 10.0.0.1:5351): nothing answered; is UPnP, NAT-PMP or PCP enabled on the router?"},
		{refusal, cli, "port 8080/TCP is held by another host"},
		{fmt.Errorf("deleting the mapping on exit: %w", refusal), cli, "deleting the mapping on exit: port 8080/TCP is held by another host"},
		{fmt.Errorf("natpmp: map request to 10.0.0.1:5351: %w", os.NewSyscallError("write", syscall.ENETUNREACH)), cli,
			"map request to 10.0.0.1:5351: network unreachable"},
		{errors.New("ssdp: search: no up, multicast-capable interface to search on"), cli, "search: no up, multicast-capable interface to search on"},
		{fmt.Errorf("PCP has no way to list a router's mappings (use --protocol upnp if the router also speaks UPnP): %w", portmap.ErrNotSupported), cli,
			"PCP has no way to list a router's mappings (use --protocol upnp if the router also speaks UPnP)"},
		// A check over two probe servers: one line naming each.
		{fmt.Errorf("reach: %w: %w", errors.New("no probe server ran the check"), errors.Join(
			fmt.Errorf("http://a:8999: %w", errors.New("429 Too Many Requests: slow down")),
			fmt.Errorf("http://b:8999: %w", &url.Error{Op: "Post", URL: "http://b:8999/v1/check", Err: refused}))), cli,
			"no probe server ran the check: http://a:8999: 429 Too Many Requests: slow down; http://b:8999: connection refused"},
	} {
		if got := Sentence(tt.err, tt.hint); got != tt.want {
			t.Errorf("Sentence(%v, %q)\n got %s\nwant %s", tt.err, tt.hint, got, tt.want)
		}
	}
}
