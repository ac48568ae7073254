package igd

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/portfwd/portfwd/upnp"
)

// addArgs returns valid AddPortMapping arguments with some replaced: each
// pair of overrides names an argument and its new value, or omit to leave
// it out.
func addArgs(overrides ...string) []string {
	base := []string{
		"NewRemoteHost", "",
		"NewExternalPort", "8080",
		"NewProtocol", "TCP",
		"NewInternalPort", "80",
		"NewInternalClient", "127.0.0.1",
		"NewEnabled", "1",
		"NewPortMappingDescription", "test",
		"NewLeaseDuration", "3600",
	}
	return override(base, overrides...)
}

func rangeArgs(overrides ...string) []string {
	return override([]string{"NewStartPort", "1", "NewEndPort", "65535", "NewProtocol", "TCP", "NewManage", "1", "NewNumberOfPorts", "0"}, overrides...)
}

const omit = "\x00omit"

func override(base []string, overrides ...string) []string {
	out := slices.Clone(base)
	for i := 0; i+1 < len(overrides); i += 2 {
		j := slices.Index(out, overrides[i])
		switch {
		case j < 0:
			out = append(out, overrides[i], overrides[i+1])
		case overrides[i+1] == omit:
			out = slices.Delete(out, j, j+2)
		default:
			out[j+1] = overrides[i+1]
		}
	}
	return out
}

// TestFaults is the table of the faults the handler decides itself: it
// answers them before the Service is called.
func TestFaults(t *testing.T) {
	const both = 0
	for _, tc := range []struct {
		name    string
		version int // 0 for both
		action  string
		args    []string
		code    int
		// path and serviceType default to WANIPConnection's.
		path, serviceType string
	}{
		// 401: no such action at this service.
		{name: "unknown action", action: "Frobnicate", code: CodeInvalidAction},
		{name: "optional action not implemented", action: "RequestTermination", code: CodeInvalidAction},
		{name: "AddAnyPortMapping on v1", version: 1, action: "AddAnyPortMapping", args: addArgs(), code: CodeInvalidAction},
		{name: "DeletePortMappingRange on v1", version: 1, action: "DeletePortMappingRange", args: rangeArgs(), code: CodeInvalidAction},
		{name: "GetListOfPortMappings on v1", version: 1, action: "GetListOfPortMappings", args: rangeArgs(), code: CodeInvalidAction},
		{name: "action of another service", action: "GetCommonLinkProperties", code: CodeInvalidAction},
		{name: "service type of another service", action: "GetExternalIPAddress", serviceType: URNWANCommonInterfaceConfig1, code: CodeInvalidAction},
		{name: "WANPPPConnection type", action: "GetExternalIPAddress", serviceType: URNWANPPPConnection1, code: CodeInvalidAction},
		{name: "not a service type", action: "GetExternalIPAddress", serviceType: "urn:example:thing", code: CodeInvalidAction},
		{name: "case of the action name", action: "getexternalipaddress", code: CodeInvalidAction},
		{name: "Layer3Forwarding action on v2", version: 2, action: "GetDefaultConnectionService",
			path: WANIPConnectionControlPath, serviceType: URNLayer3Forwarding1, code: CodeInvalidAction},

		// 402: arguments missing or malformed.
		{name: "no external port", action: "AddPortMapping", args: addArgs("NewExternalPort", omit), code: CodeInvalidArgs},
		{name: "external port not a number", action: "AddPortMapping", args: addArgs("NewExternalPort", "http"), code: CodeInvalidArgs},
		{name: "external port past ui2", action: "AddPortMapping", args: addArgs("NewExternalPort", "65536"), code: CodeInvalidArgs},
		{name: "negative external port", action: "AddPortMapping", args: addArgs("NewExternalPort", "-1"), code: CodeInvalidArgs},
		{name: "no protocol", action: "AddPortMapping", args: addArgs("NewProtocol", omit), code: CodeInvalidArgs},
		{name: "no internal port", action: "AddPortMapping", args: addArgs("NewInternalPort", omit), code: CodeInvalidArgs},
		{name: "internal port garbage", action: "AddPortMapping", args: addArgs("NewInternalPort", "80a"), code: CodeInvalidArgs},
		{name: "internal client host name", action: "AddPortMapping", args: addArgs("NewInternalClient", "printer.lan"), code: CodeInvalidArgs},
		{name: "internal client IPv6", action: "AddPortMapping", args: addArgs("NewInternalClient", "fe80::1"), code: CodeInvalidArgs},
		{name: "internal client with port", action: "AddPortMapping", args: addArgs("NewInternalClient", "127.0.0.1:80"), code: CodeInvalidArgs},
		{name: "wildcard internal client v1", version: 1, action: "AddPortMapping", args: addArgs("NewInternalClient", "0.0.0.0"), code: CodeInvalidArgs},
		{name: "NewEnabled garbage", action: "AddPortMapping", args: addArgs("NewEnabled", "maybe"), code: CodeInvalidArgs},
		{name: "negative lease", action: "AddPortMapping", args: addArgs("NewLeaseDuration", "-5"), code: CodeInvalidArgs},
		{name: "fractional lease", action: "AddPortMapping", args: addArgs("NewLeaseDuration", "1.5"), code: CodeInvalidArgs},
		{name: "lease past ui4", action: "AddPortMapping", args: addArgs("NewLeaseDuration", "4294967296"), code: CodeInvalidArgs},
		{name: "remote host name", action: "AddPortMapping", args: addArgs("NewRemoteHost", "example.com"), code: CodeInvalidArgs},
		{name: "remote host IPv6", action: "AddPortMapping", args: addArgs("NewRemoteHost", "2001:db8::1"), code: CodeInvalidArgs},
		{name: "protocol SCTP v1", version: 1, action: "AddPortMapping", args: addArgs("NewProtocol", "SCTP"), code: CodeInvalidArgs},
		{name: "internal port 0 v1", version: 1, action: "AddPortMapping", args: addArgs("NewInternalPort", "0"), code: CodeInvalidArgs},
		{name: "GetSpecific external port 0", action: "GetSpecificPortMappingEntry",
			args: []string{"NewRemoteHost", "", "NewExternalPort", "0", "NewProtocol", "TCP"}, code: CodeInvalidArgs},
		{name: "GetSpecific no protocol", action: "GetSpecificPortMappingEntry",
			args: []string{"NewRemoteHost", "", "NewExternalPort", "80"}, code: CodeInvalidArgs},
		{name: "Delete no external port", action: "DeletePortMapping",
			args: []string{"NewRemoteHost", "", "NewProtocol", "TCP"}, code: CodeInvalidArgs},
		{name: "index missing", action: "GetGenericPortMappingEntry", code: CodeInvalidArgs},
		{name: "index garbage", action: "GetGenericPortMappingEntry", args: []string{"NewPortMappingIndex", "first"}, code: CodeInvalidArgs},
		{name: "index past ui2", action: "GetGenericPortMappingEntry", args: []string{"NewPortMappingIndex", "70000"}, code: CodeInvalidArgs},
		{name: "range no start", version: 2, action: "DeletePortMappingRange", args: rangeArgs("NewStartPort", omit), code: CodeInvalidArgs},
		{name: "range manage garbage", version: 2, action: "DeletePortMappingRange", args: rangeArgs("NewManage", "2"), code: CodeInvalidArgs},
		{name: "list no count", version: 2, action: "GetListOfPortMappings", args: rangeArgs("NewNumberOfPorts", omit), code: CodeInvalidArgs},
		{name: "list count garbage", version: 2, action: "GetListOfPortMappings", args: rangeArgs("NewNumberOfPorts", "all"), code: CodeInvalidArgs},
		{name: "SetConnectionType no argument", action: "SetConnectionType", code: CodeInvalidArgs},

		// 601: a value outside the allowed value list (IGDv2 says so).
		{name: "protocol SCTP v2", version: 2, action: "AddPortMapping", args: addArgs("NewProtocol", "SCTP"), code: codeArgumentValueOutOfRange},
		{name: "Delete protocol ICMP v2", version: 2, action: "DeletePortMapping",
			args: []string{"NewRemoteHost", "", "NewExternalPort", "80", "NewProtocol", "ICMP"}, code: codeArgumentValueOutOfRange},
		{name: "SetConnectionType unknown", action: "SetConnectionType", args: []string{"NewConnectionType", "PPPoE"}, code: codeArgumentValueOutOfRange},

		// The 7xx codes the handler decides.
		{name: "wildcard internal client v2", version: 2, action: "AddAnyPortMapping", args: addArgs("NewInternalClient", "0.0.0.0"), code: CodeWildCardNotPermittedInSrcIP},
		{name: "external port 0", action: "AddPortMapping", args: addArgs("NewExternalPort", "0"), code: CodeWildCardNotPermittedInExtPort},
		{name: "internal port 0 v2", version: 2, action: "AddPortMapping", args: addArgs("NewInternalPort", "0"), code: CodeWildCardNotPermittedInIntPort},
		{name: "AddAny internal port 0", version: 2, action: "AddAnyPortMapping", args: addArgs("NewInternalPort", "0"), code: CodeWildCardNotPermittedInIntPort},
		{name: "SetConnectionType IP_Bridged v2", version: 2, action: "SetConnectionType", args: []string{"NewConnectionType", "IP_Bridged"}, code: codeReadOnly},
		{name: "SetConnectionType IP_Bridged v1", version: 1, action: "SetConnectionType", args: []string{"NewConnectionType", "IP_Bridged"}, code: CodeActionFailed},
		{name: "range reversed", version: 2, action: "DeletePortMappingRange", args: rangeArgs("NewStartPort", "2000", "NewEndPort", "1000"), code: CodeInconsistentParameters},
		{name: "list reversed", version: 2, action: "GetListOfPortMappings", args: rangeArgs("NewStartPort", "2000", "NewEndPort", "1999"), code: CodeInconsistentParameters},

		// QueryStateVariable.
		{name: "query unknown variable", action: "QueryStateVariable", serviceType: controlURN, args: []string{"varName", "Password"}, code: codeInvalidVar},
		{name: "query argument variable", action: "QueryStateVariable", serviceType: controlURN, args: []string{"varName", "ExternalPort"}, code: codeInvalidVar},
		{name: "query SystemUpdateID v1", version: 1, action: "QueryStateVariable", serviceType: controlURN, args: []string{"varName", "SystemUpdateID"}, code: codeInvalidVar},
		{name: "query without varName", action: "QueryStateVariable", serviceType: controlURN, code: CodeInvalidArgs},
	} {
		for _, version := range []int{1, 2} {
			if tc.version != both && tc.version != version {
				continue
			}
			f := newFake()
			srv, _ := newTestServer(t, version, f, nil)
			path, st := tc.path, tc.serviceType
			if path == "" {
				path = WANIPConnectionControlPath
			}
			if st == "" {
				st = map[int]string{1: URNWANIPConnection1, 2: URNWANIPConnection2}[version]
			}
			_, err := soapCall(t, srv, path, st, tc.action, tc.args...)
			var ue *upnp.Error
			if !errors.As(err, &ue) || ue.Code != tc.code || ue.HTTPStatus != 500 {
				t.Errorf("v%d %s: %v, want UPnP error %d with HTTP 500", version, tc.name, err, tc.code)
				continue
			}
			if ue.Description != faultText(tc.code) {
				t.Errorf("v%d %s: description %q, want %q", version, tc.name, ue.Description, faultText(tc.code))
			}
			if called := f.calls(); len(called) != 0 {
				t.Errorf("v%d %s: the Service was called (%v) for a request the handler must refuse", version, tc.name, called)
			}
		}
	}
}

// TestServiceFaultsPassThrough checks that the Service's UPnP errors reach
// the control point with their code and standard description, and that
// anything else becomes 501.
func TestServiceFaultsPassThrough(t *testing.T) {
	wrapped := func(code int) error {
		return fmt.Errorf("nft: rule 42 in table portfwd: %w", &upnp.Error{Code: code, Description: "internal detail"})
	}
	for _, tc := range []struct {
		name    string
		version int
		setup   func(*fakeService)
		action  string
		args    []string
		code    int
	}{
		{"606 not authorized", 2, func(f *fakeService) { f.script("AddPortMapping", wrapped(CodeActionNotAuthorized)) },
			"AddPortMapping", addArgs(), CodeActionNotAuthorized},
		{"606 secure mode", 2, func(f *fakeService) { f.secure = true },
			"AddPortMapping", addArgs("NewInternalClient", "192.168.1.20"), CodeActionNotAuthorized},
		{"713 past the end", 1, nil, "GetGenericPortMappingEntry", []string{"NewPortMappingIndex", "0"}, CodeSpecifiedArrayIndexInvalid},
		{"714 no such entry", 2, nil, "GetSpecificPortMappingEntry",
			[]string{"NewRemoteHost", "", "NewExternalPort", "80", "NewProtocol", "TCP"}, CodeNoSuchEntryInArray},
		{"714 delete absent", 1, nil, "DeletePortMapping",
			[]string{"NewRemoteHost", "", "NewExternalPort", "80", "NewProtocol", "UDP"}, CodeNoSuchEntryInArray},
		{"718 conflict", 2, func(f *fakeService) {
			f.table = []PortMapping{{ExternalPort: 8080, Protocol: TCP, InternalPort: 80, InternalClient: "192.168.1.30", Enabled: true}}
		}, "AddPortMapping", addArgs(), CodeConflictInMappingEntry},
		{"724 same ports", 1, func(f *fakeService) { f.script("AddPortMapping", wrapped(CodeSamePortValuesRequired)) },
			"AddPortMapping", addArgs(), CodeSamePortValuesRequired},
		{"725 permanent only", 1, func(f *fakeService) { f.script("AddPortMapping", wrapped(CodeOnlyPermanentLeasesSupported)) },
			"AddPortMapping", addArgs(), CodeOnlyPermanentLeasesSupported},
		{"726 remote host wildcard only", 1, func(f *fakeService) { f.script("AddPortMapping", wrapped(CodeRemoteHostOnlySupportsWildcard)) },
			"AddPortMapping", addArgs("NewRemoteHost", "198.51.100.9"), CodeRemoteHostOnlySupportsWildcard},
		{"727 external port wildcard only", 1, func(f *fakeService) { f.script("AddPortMapping", wrapped(CodeExternalPortOnlySupportsWildcard)) },
			"AddPortMapping", addArgs(), CodeExternalPortOnlySupportsWildcard},
		{"728 no ports", 2, func(f *fakeService) { f.script("AddAnyPortMapping", wrapped(CodeNoPortMapsAvailable)) },
			"AddAnyPortMapping", addArgs(), CodeNoPortMapsAvailable},
		{"729 other mechanisms", 2, func(f *fakeService) { f.script("AddPortMapping", wrapped(CodeConflictWithOtherMechanisms)) },
			"AddPortMapping", addArgs(), CodeConflictWithOtherMechanisms},
		{"730 none in range", 2, nil, "DeletePortMappingRange", rangeArgs(), CodePortMappingNotFound},
		{"730 empty list", 2, nil, "GetListOfPortMappings", rangeArgs(), CodePortMappingNotFound},
		{"704 connection setup failed", 2, func(f *fakeService) { f.script("RequestConnection", &upnp.Error{Code: 704}) },
			"RequestConnection", nil, 704},
		{"plain error", 2, func(f *fakeService) { f.script("AddPortMapping", errors.New("nft: permission denied")) },
			"AddPortMapping", addArgs(), CodeActionFailed},
		{"code out of range", 2, func(f *fakeService) { f.script("AddPortMapping", &upnp.Error{Code: 200}) },
			"AddPortMapping", addArgs(), CodeActionFailed},
		{"external address error", 2, func(f *fakeService) { f.extErr = errors.New("no DHCP lease") },
			"GetExternalIPAddress", nil, CodeActionFailed},
	} {
		f := newFake()
		if tc.setup != nil {
			tc.setup(f)
		}
		srv, _ := newTestServer(t, tc.version, f, nil)
		st := map[int]string{1: URNWANIPConnection1, 2: URNWANIPConnection2}[tc.version]
		_, err := soapCall(t, srv, WANIPConnectionControlPath, st, tc.action, tc.args...)
		var ue *upnp.Error
		if !errors.As(err, &ue) || ue.Code != tc.code {
			t.Errorf("%s: %v, want UPnP error %d", tc.name, err, tc.code)
			continue
		}
		if ue.Description != faultText(tc.code) {
			t.Errorf("%s: description %q, want the standard %q", tc.name, ue.Description, faultText(tc.code))
		}
	}
}
