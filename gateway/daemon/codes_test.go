package daemon

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/portfwd/portfwd/gateway"
	"github.com/portfwd/portfwd/natpmp"
	"github.com/portfwd/portfwd/pcp"
)

// TestErrorCodes is the table of the package documentation: how each
// error of the core becomes each protocol's code.
func TestErrorCodes(t *testing.T) {
	tests := []struct {
		err          error
		upnp, upnpV1 int
		natpmp       natpmp.ResultCode
		pcp          pcp.ResultCode
	}{
		{nil, 0, 0, 0, 0},
		{&gateway.ConflictError{}, 718, 718, 2, 11},
		{gateway.ErrNotAuthorized, 606, 606, 2, 2},
		{gateway.ErrNoSuchEntry, 714, 714, 3, 7},
		{gateway.ErrNoneInRange, 730, 714, 3, 7},
		{gateway.ErrIndexOutOfRange, 713, 713, 3, 7},
		{gateway.ErrQuota, 728, 501, 4, 10},
		{gateway.ErrTableFull, 728, 501, 4, 8},
		{gateway.ErrNoPortsAvailable, 728, 501, 4, 8},
		{gateway.ErrReservedPort, 729, 718, 2, 11},
		{gateway.ErrWildcardExternalPort, 716, 716, 2, 3},
		{gateway.ErrWildcardInternalPort, 732, 402, 2, 3},
		{gateway.ErrRemoteHostNotSupported, 726, 726, 2, 5},
		{gateway.ErrInconsistentRange, 733, 402, 3, 3},
		{gateway.ErrInvalidArgs, 402, 402, 2, 3},
		{&gateway.BackendError{Op: "add", Err: errors.New("x")}, 501, 501, 3, 7},
		{gateway.ErrStore, 501, 501, 3, 7},
		{gateway.ErrClosed, 501, 501, 3, 7},
		{context.DeadlineExceeded, 501, 501, 3, 7},
	}
	for _, tt := range tests {
		// Codes must survive the wrapping the Core adds.
		err := tt.err
		if err != nil {
			err = fmt.Errorf("context: %w", err)
		}
		if got := upnpCode(err); got != tt.upnp {
			t.Errorf("upnpCode(%v) = %d, want %d", tt.err, got, tt.upnp)
		}
		if got := upnpCodeV1(err); got != tt.upnpV1 {
			t.Errorf("upnpCodeV1(%v) = %d, want %d", tt.err, got, tt.upnpV1)
		}
		if got := natpmpResult(err); got != tt.natpmp {
			t.Errorf("natpmpResult(%v) = %d, want %d", tt.err, got, tt.natpmp)
		}
		if got := pcpResult(err); got != tt.pcp {
			t.Errorf("pcpResult(%v) = %d, want %d", tt.err, got, tt.pcp)
		}
	}
}
