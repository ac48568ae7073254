package igd_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"

	"github.com/portfwd/portfwd/igd"
	"github.com/portfwd/portfwd/upnp"
)

// allCodes lists every code the package names, with its spec name.
var allCodes = map[int]string{
	401: "InvalidAction", 402: "InvalidArgs", 501: "ActionFailed", 602: "OptionalActionNotImplemented",
	606: "ActionNotAuthorized", 713: "SpecifiedArrayIndexInvalid", 714: "NoSuchEntryInArray",
	715: "WildCardNotPermittedInSrcIP", 716: "WildCardNotPermittedInExtPort", 718: "ConflictInMappingEntry",
	724: "SamePortValuesRequired", 725: "OnlyPermanentLeasesSupported", 726: "RemoteHostOnlySupportsWildcard",
	727: "ExternalPortOnlySupportsWildcard", 728: "NoPortMapsAvailable", 729: "ConflictWithOtherMechanisms",
	730: "PortMappingNotFound", 732: "WildCardNotPermittedInIntPort", 733: "InconsistentParameters",
}

func TestCodeNames(t *testing.T) {
	for code, name := range allCodes {
		if got := igd.CodeName(code); got != name {
			t.Errorf("CodeName(%d) = %q, want %q", code, got, name)
		}
	}
	for _, code := range []int{0, 400, 500, 700, 731, 999} {
		if got := igd.CodeName(code); got != "" {
			t.Errorf("CodeName(%d) = %q, want \"\"", code, got)
		}
	}
}

// TestExplainEveryCode checks that each named code gets its own advice, not
// just the code echoed back.
func TestExplainEveryCode(t *testing.T) {
	seen := make(map[string]int)
	for code, name := range allCodes {
		msg := igd.Explain(&upnp.Error{Code: code, Action: "AddPortMapping"})
		head := fmt.Sprintf("The router answered AddPortMapping with UPnP error %d (%s). ", code, name)
		if !strings.HasPrefix(msg, head) || len(msg) < len(head)+20 || !strings.HasSuffix(msg, ".") {
			t.Errorf("Explain(%d) = %q, want %q followed by advice", code, msg, head)
		}
		advice := strings.TrimPrefix(msg, head)
		if other, dup := seen[advice]; dup {
			t.Errorf("codes %d and %d share the advice %q", code, other, advice)
		}
		seen[advice] = code
	}
}

func TestExplain(t *testing.T) {
	conflict := &igd.ConflictError{
		Wanted:      igd.PortMapping{ExternalPort: 8080, Protocol: "TCP"},
		Holder:      igd.PortMapping{InternalClient: "192.168.1.7", InternalPort: 8080, Description: "desc"},
		HolderKnown: true,
		Err:         &upnp.Error{Code: 718, Action: "AddPortMapping"},
	}
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"nil", nil, ""},
		{"UPnP fault, wrapped", fmt.Errorf("adding: %w", &upnp.Error{Code: 725, Action: "AddPortMapping"}),
			"The router answered AddPortMapping with UPnP error 725 (OnlyPermanentLeasesSupported). The router only accepts permanent mappings; use a lease of 0"},
		{"unknown code keeps the router's words", &upnp.Error{Code: 799, Description: "Quota", Action: "AddPortMapping"},
			"The router answered AddPortMapping with UPnP error 799 (Quota)."},
		{"conflict with holder", conflict,
			`The router answered 718: port 8080/TCP is already mapped to 192.168.1.7:8080 ("desc"). Choose another external port, or delete that mapping first`},
		{"conflict, holder unknown", &igd.ConflictError{Wanted: igd.PortMapping{ExternalPort: 53, Protocol: "UDP"}},
			"The router answered 718: port 53/UDP is already mapped to another client. The external port is already mapped to another computer"},
		{"edit, restored", &igd.EditError{Err: conflict, Restored: true},
			`("desc"). Choose another external port, or delete that mapping first if it is no longer needed. The old mapping was kept.`},
		{"edit, lost", &igd.EditError{Err: &upnp.Error{Code: 501, Action: "AddPortMapping"}, RestoreErr: errors.New("timeout")},
			"The old mapping could not be put back (timeout); add it again by hand."},
		{"partial", &igd.PartialError{Got: 3, Reason: "cancelled"},
			"Only 3 mappings could be read (cancelled); the list shown may be incomplete."},
		{"not supported", fmt.Errorf("x: %w", igd.ErrNotSupported), "does not offer this operation"},
		{"timeout", fmt.Errorf("upnp: GetStatusInfo: %w", context.DeadlineExceeded), "The router did not answer in time"},
		{"cancelled", context.Canceled, "The operation was cancelled."},
		{"refused", fmt.Errorf("upnp: %w", &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}),
			"Could not reach the router's UPnP control URL (connection refused)"},
		{"anything else", errors.New("igd: something odd"), "Igd: something odd."},
	}
	for _, tt := range tests {
		got := igd.Explain(tt.err)
		if tt.want == "" && got != "" || !strings.Contains(got, tt.want) {
			t.Errorf("%s: Explain = %q, want it to contain %q", tt.name, got, tt.want)
		}
	}
}

func TestErrorTypesUnwrap(t *testing.T) {
	fault := &upnp.Error{Code: 718}
	for _, err := range []error{
		&igd.ConflictError{Err: fault},
		&igd.EditError{Err: fault, Restored: true},
		&igd.PartialError{Err: fault},
	} {
		if !errors.Is(err, fault) || upnp.ErrorCode(err) != 718 {
			t.Errorf("%T does not unwrap to its cause", err)
		}
	}
}
