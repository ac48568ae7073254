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

// TestSentence: one sentence, what was being done and what went wrong,
// with the timeout's hint where there is a setting to name (the CLI's
// --timeout) and none where there is not (the web UI). cmd/portfwd's
// TestSentence has the CLI's cases.
func TestSentence(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	probe := fmt.Errorf("UPnP description at http://10.0.0.1:9/rootDesc.xml: %w",
		fmt.Errorf("upnp: fetching device description from http://10.0.0.1:9/rootDesc.xml: %w",
			&url.Error{Op: "Get", URL: "http://10.0.0.1:9/rootDesc.xml", Err: refused}))
	timeout := fmt.Errorf("igd: AddPortMapping: %w", fmt.Errorf("upnp: AddPortMapping at http://x/ctl: %w",
		&url.Error{Op: "Post", URL: "http://x/ctl", Err: context.DeadlineExceeded}))
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
	} {
		if got := Sentence(tt.err, tt.hint); got != tt.want {
			t.Errorf("Sentence(%v, %q)\n got %s\nwant %s", tt.err, tt.hint, got, tt.want)
		}
	}
}
