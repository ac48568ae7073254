package main

import (
	"context"
	"fmt"
	"net/url"
	"testing"
)

// TestSentence: the CLI's sentence is internal/explain's (whose
// TestSentence has the cases), with the --timeout flag named where a wait
// ran out; a usage error is its own message, whole.
func TestSentence(t *testing.T) {
	timeout := fmt.Errorf("igd: AddPortMapping: %w", fmt.Errorf("upnp: AddPortMapping at http://x/ctl: %w",
		&url.Error{Op: "Post", URL: "http://x/ctl", Err: context.DeadlineExceeded}))
	for _, tt := range []struct {
		err  error
		want string
	}{
		{usagef("--lease: \"5\" has no unit; did you mean 5s?"), `--lease: "5" has no unit; did you mean 5s?`},
		{fmt.Errorf("adding: %w", usagef("--proto: want tcp, udp or both")), "--proto: want tcp, udp or both"},
		{timeout, "AddPortMapping: no answer in time (--timeout)"},
	} {
		if got := sentence(tt.err); got != tt.want {
			t.Errorf("sentence(%v)\n got %s\nwant %s", tt.err, got, tt.want)
		}
	}
}
