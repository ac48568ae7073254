package main

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
// of every layer nor Go's names for things.
func TestSentence(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	urlErr := &url.Error{Op: "Get", URL: "http://10.0.0.1:9/rootDesc.xml", Err: refused}
	probe := fmt.Errorf("UPnP description at http://10.0.0.1:9/rootDesc.xml: %w",
		fmt.Errorf("upnp: fetching device description from http://10.0.0.1:9/rootDesc.xml: %w", urlErr))
	pcpClosed := fmt.Errorf("PCP at 10.0.0.1:5351: %w", fmt.Errorf("pcp: ANNOUNCE request to 10.0.0.1:5351: %w",
		errors.New("the gateway does not run PCP (its port 5351 is closed); enable PCP in the router, or try UPnP")))
	refusal := &portmap.RefusedError{Method: portmap.UPnP, Code: 718, Text: "port 8080/TCP is held by another host"}
	for _, tt := range []struct {
		err  error
		want string
	}{
		{usagef("--lease: \"5\" has no unit; did you mean 5s?"), `--lease: "5" has no unit; did you mean 5s?`},
		{fmt.Errorf("%w (tried UPnP at http://10.0.0.1:9/rootDesc.xml): %w", portmap.ErrNoGateway, errors.Join(probe)),
			"no gateway found: UPnP description at http://10.0.0.1:9/rootDesc.xml: connection refused"},
		{fmt.Errorf("%w (tried SSDP multicast, PCP at 10.0.0.1:5351): %w", portmap.ErrNoGateway, errors.Join(pcpClosed)),
			"no gateway found (tried SSDP multicast, PCP at 10.0.0.1:5351): PCP at 10.0.0.1:5351: the gateway does not run PCP (its port 5351 is closed); enable PCP in the router, or try UPnP"},
		{fmt.Errorf("%w (tried NAT-PMP at 10.0.0.1:5351): nothing answered; is UPnP, NAT-PMP or PCP enabled on the router?", portmap.ErrNoGateway),
			"no gateway found (tried NAT-PMP at 10.0.0.1:5351): nothing answered; is UPnP, NAT-PMP or PCP enabled on the router?"},
		{refusal, "port 8080/TCP is held by another host"},
		{fmt.Errorf("deleting the mapping on exit: %w", refusal), "deleting the mapping on exit: port 8080/TCP is held by another host"},
		{fmt.Errorf("igd: AddPortMapping: %w", fmt.Errorf("upnp: AddPortMapping at http://x/ctl: %w", &url.Error{Op: "Post", URL: "http://x/ctl", Err: context.DeadlineExceeded})),
			"AddPortMapping: no answer in time (--timeout)"},
		{fmt.Errorf("natpmp: map request to 10.0.0.1:5351: %w", os.NewSyscallError("write", syscall.ENETUNREACH)),
			"map request to 10.0.0.1:5351: network unreachable"},
		{errors.New("ssdp: search: no up, multicast-capable interface to search on"), "search: no up, multicast-capable interface to search on"},
		{fmt.Errorf("PCP has no way to list a router's mappings (use --protocol upnp if the router also speaks UPnP): %w", portmap.ErrNotSupported),
			"PCP has no way to list a router's mappings (use --protocol upnp if the router also speaks UPnP)"},
	} {
		if got := sentence(tt.err); got != tt.want {
			t.Errorf("sentence(%v)\n got %s\nwant %s", tt.err, got, tt.want)
		}
	}
}

// TestSentenceOfSeveralProbes: check's failure over two probe servers is
// one line naming each.
func TestSentenceOfSeveralProbes(t *testing.T) {
	noProbe := errors.New("no probe server ran the check")
	err := fmt.Errorf("reach: %w: %w", noProbe, errors.Join(
		fmt.Errorf("http://a:8999: %w", errors.New("429 Too Many Requests: slow down")),
		fmt.Errorf("http://b:8999: %w", &url.Error{Op: "Post", URL: "http://b:8999/v1/check",
			Err: &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}})))
	want := "no probe server ran the check: http://a:8999: 429 Too Many Requests: slow down; http://b:8999: connection refused"
	if got := sentence(err); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}
