package igd

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portfwd/portfwd/upnp"
)

// fakeFirewall is a FirewallService with the semantics the spec gives:
// the same 5-tuple renews and keeps its ID, 704 for unknown IDs. It holds
// pinhole 1 with 5 packets from the start (sampleArgs' UniqueID), and
// records every call.
type fakeFirewall struct {
	mu               sync.Mutex
	disabled, closed bool // FirewallEnabled false; InboundPinholeAllowed false
	pins             map[uint16]fakePin
	next             uint16
	calls            []string
	err              error // returned by the next call, once
}

type fakePin struct {
	args    Pinhole
	lease   time.Duration
	packets uint64
}

func newFakeFirewall() *fakeFirewall {
	return &fakeFirewall{
		pins: map[uint16]fakePin{1: {args: Pinhole{InternalClient: netip.MustParseAddr("2001:db8:77::2"), InternalPort: 9999, Protocol: 6}, lease: time.Hour, packets: 5}},
		next: 2,
	}
}

func (f *fakeFirewall) enter(name string) error {
	f.calls = append(f.calls, name)
	err := f.err
	f.err = nil
	return err
}

func (f *fakeFirewall) FirewallStatus(context.Context) (bool, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return !f.disabled, !f.closed
}

func (f *fakeFirewall) OutboundPinholeTimeout(_ context.Context, _ netip.Addr, p Pinhole) (time.Duration, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("OutboundPinholeTimeout"); err != nil {
		return 0, err
	}
	if p.Protocol != 6 && p.Protocol != 17 {
		return 0, fwFault(codeProtocolNotSupported)
	}
	return 432000 * time.Second, nil
}

func (f *fakeFirewall) AddPinhole(_ context.Context, _ netip.Addr, p Pinhole) (uint16, error) {
	lease := p.Lease
	p.Lease = 0 // the tuple is the key
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("AddPinhole"); err != nil {
		return 0, err
	}
	for id, held := range f.pins {
		if held.args == p {
			held.lease = lease
			f.pins[id] = held
			return id, nil
		}
	}
	id := f.next
	f.next++
	f.pins[id] = fakePin{args: p, lease: lease}
	return id, nil
}

func (f *fakeFirewall) lookup(id uint16) (fakePin, error) {
	p, ok := f.pins[id]
	if !ok {
		return p, fwFault(codeNoSuchEntry)
	}
	return p, nil
}

func (f *fakeFirewall) UpdatePinhole(_ context.Context, _ netip.Addr, id uint16, lease time.Duration) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("UpdatePinhole"); err != nil {
		return err
	}
	p, err := f.lookup(id)
	if err != nil {
		return err
	}
	p.lease = lease
	f.pins[id] = p
	return nil
}

func (f *fakeFirewall) DeletePinhole(_ context.Context, _ netip.Addr, id uint16) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("DeletePinhole"); err != nil {
		return err
	}
	if _, err := f.lookup(id); err != nil {
		return err
	}
	delete(f.pins, id)
	return nil
}

func (f *fakeFirewall) PinholePackets(_ context.Context, _ netip.Addr, id uint16) (uint64, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("PinholePackets"); err != nil {
		return 0, false, err
	}
	p, err := f.lookup(id)
	return p.packets, true, err
}

func (f *fakeFirewall) callCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.calls)
}

func TestFirewallServiceInDescriptionOnIGDv2Only(t *testing.T) {
	for _, tc := range []struct {
		version int
		fw      bool
		want    bool
	}{{2, true, true}, {1, true, false}, {2, false, false}} {
		f := newFake()
		_, s := newTestServer(t, tc.version, f, func(c *ServerConfig) {
			if !tc.fw {
				c.FirewallControl = nil
			}
		})
		desc := string(s.Description(""))
		if got := strings.Contains(desc, ServiceWANIPv6FirewallControl); got != tc.want {
			t.Errorf("IGDv%d, firewall service %v: description offers WANIPv6FirewallControl:1 = %v; want %v", tc.version, tc.fw, got, tc.want)
		}
		if !tc.want {
			continue
		}
		// In the WANConnectionDevice, beside WANIPConnection:2, where
		// control points (miniupnpc) look for it.
		root := s.Root()
		wcd := root.Device.Devices[0].Devices[0]
		found := false
		for _, svc := range wcd.Services {
			found = found || svc.ServiceType == ServiceWANIPv6FirewallControl && svc.ServiceID == ServiceIDWANIPv6FirewallControl
		}
		if !found {
			t.Errorf("WANIPv6FirewallControl:1 is not in the WANConnectionDevice: %+v", wcd.Services)
		}
	}
}

const fwURN = ServiceWANIPv6FirewallControl

// addArgs6 are AddPinhole's arguments in miniupnpc's order (not the
// SCPD's), with replacements by name.
func addArgs6(repl ...string) []string {
	args := []string{"RemoteHost", "", "RemotePort", "0", "Protocol", "6", "InternalPort", "8080",
		"InternalClient", "2001:db8:77::2", "LeaseTime", "3600"}
	for i := 0; i < len(repl); i += 2 {
		found := false
		for j := 0; j < len(args); j += 2 {
			if args[j] == repl[i] {
				if repl[i+1] == "<absent>" {
					args = append(args[:j], args[j+2:]...)
				} else {
					args[j+1] = repl[i+1]
				}
				found = true
				break
			}
		}
		if !found {
			args = append(args, repl[i], repl[i+1])
		}
	}
	return args
}

func TestFirewallActions(t *testing.T) {
	f := newFake()
	srv, _ := newTestServer(t, 2, f, nil)
	call := func(action string, args ...string) (upnp.Args, error) {
		return soapCall(t, srv, WANIPv6FirewallControlControlPath, fwURN, action, args...)
	}
	out, err := call("GetFirewallStatus")
	if err != nil || out.Value("FirewallEnabled") != "1" || out.Value("InboundPinholeAllowed") != "1" {
		t.Fatalf("GetFirewallStatus: %+v, %v", out, err)
	}
	out, err = call("AddPinhole", addArgs6()...)
	if err != nil || out.Value("UniqueID") != "2" {
		t.Fatalf("AddPinhole: %+v, %v; want UniqueID 2", out, err)
	}
	// Uncompressed, upper case: the same address, so the same pinhole.
	out, err = call("AddPinhole", addArgs6("InternalClient", "2001:DB8:77:0:0:0:0:2", "LeaseTime", "7200")...)
	if err != nil || out.Value("UniqueID") != "2" {
		t.Fatalf("AddPinhole again, spelled otherwise: %+v, %v; want the same UniqueID 2", out, err)
	}
	if got := f.fw.pins[2].lease; got != 7200*time.Second {
		t.Fatalf("lease after the second AddPinhole: %v", got)
	}
	if _, err := call("UpdatePinhole", "UniqueID", "2", "NewLeaseTime", "60"); err != nil {
		t.Fatalf("UpdatePinhole: %v", err)
	}
	if got := f.fw.pins[2].lease; got != time.Minute {
		t.Fatalf("lease after UpdatePinhole: %v", got)
	}
	out, err = call("GetPinholePackets", "UniqueID", "2")
	if err != nil || out.Value("PinholePackets") != "0" {
		t.Fatalf("GetPinholePackets: %+v, %v", out, err)
	}
	if _, err := call("CheckPinholeWorking", "UniqueID", "2"); upnp.ErrorCode(err) != codeNoTrafficReceived {
		t.Fatalf("CheckPinholeWorking before traffic: %v; want 709", err)
	}
	var ue *upnp.Error
	if _, err := call("CheckPinholeWorking", "UniqueID", "2"); !errors.As(err, &ue) || ue.Description != "NoTrafficReceived" {
		t.Fatalf("709's description: %v; want NoTrafficReceived", err)
	}
	out, err = call("CheckPinholeWorking", "UniqueID", "1")
	if err != nil || out.Value("IsWorking") != "1" {
		t.Fatalf("CheckPinholeWorking after traffic: %+v, %v", out, err)
	}
	out, err = call("GetOutboundPinholeTimeout", addArgs6("LeaseTime", "<absent>", "InternalPort", "0")...)
	if err != nil || out.Value("OutboundPinholeTimeout") != "432000" {
		t.Fatalf("GetOutboundPinholeTimeout: %+v, %v", out, err)
	}
	if _, err := call("DeletePinhole", "UniqueID", "2"); err != nil {
		t.Fatalf("DeletePinhole: %v", err)
	}
	_, err = call("DeletePinhole", "UniqueID", "2")
	if upnp.ErrorCode(err) != codeNoSuchEntry || !errors.As(err, &ue) || ue.Description != "NoSuchEntry" {
		t.Fatalf("DeletePinhole again: %v; want 704 NoSuchEntry (not WANIPConnection's ConnectionSetupFailed)", err)
	}
}

// TestFirewallHostileInput: every malformed request gets the spec's code
// and reaches nothing behind the server.
func TestFirewallHostileInput(t *testing.T) {
	for _, tc := range []struct {
		name   string
		action string
		args   []string
		code   int
	}{
		{"internal client empty", "AddPinhole", addArgs6("InternalClient", ""), codeWildCardNotPermittedInSrcIP6},
		{"internal client *", "AddPinhole", addArgs6("InternalClient", "*"), codeWildCardNotPermittedInSrcIP6},
		{"internal client ::", "AddPinhole", addArgs6("InternalClient", "::"), codeWildCardNotPermittedInSrcIP6},
		{"internal client absent", "AddPinhole", addArgs6("InternalClient", "<absent>"), CodeInvalidArgs},
		{"internal client IPv4", "AddPinhole", addArgs6("InternalClient", "10.77.0.2"), CodeInvalidArgs},
		{"internal client v4-mapped", "AddPinhole", addArgs6("InternalClient", "::ffff:10.77.0.2"), CodeInvalidArgs},
		{"internal client with zone", "AddPinhole", addArgs6("InternalClient", "fe80::1%eth0"), CodeInvalidArgs},
		{"internal client a host name", "AddPinhole", addArgs6("InternalClient", "nas.lan"), CodeInvalidArgs},
		{"internal client junk", "AddPinhole", addArgs6("InternalClient", strings.Repeat("z", 40)), CodeInvalidArgs},
		{"remote host IPv4", "AddPinhole", addArgs6("RemoteHost", "203.0.113.2"), CodeInvalidArgs},
		{"remote host a name", "AddPinhole", addArgs6("RemoteHost", "example.com"), CodeInvalidArgs},
		{"remote port 65536", "AddPinhole", addArgs6("RemotePort", "65536"), CodeInvalidArgs},
		{"remote port -1", "AddPinhole", addArgs6("RemotePort", "-1"), CodeInvalidArgs},
		{"protocol 65535", "AddPinhole", addArgs6("Protocol", "65535"), codeProtocolWildcardingNotAllowed},
		{"protocol 0", "AddPinhole", addArgs6("Protocol", "0"), codeProtocolNotSupported},
		{"protocol ICMP", "AddPinhole", addArgs6("Protocol", "1"), codeProtocolNotSupported},
		{"protocol UDP-Lite", "AddPinhole", addArgs6("Protocol", "136"), codeProtocolNotSupported},
		{"protocol TCP by name", "AddPinhole", addArgs6("Protocol", "TCP"), CodeInvalidArgs},
		{"protocol 0x6", "AddPinhole", addArgs6("Protocol", "0x6"), CodeInvalidArgs},
		{"protocol 65536", "AddPinhole", addArgs6("Protocol", "65536"), CodeInvalidArgs},
		{"internal port 0", "AddPinhole", addArgs6("InternalPort", "0"), codeInternalPortWildcardingNotAllowed},
		{"internal port 65536", "AddPinhole", addArgs6("InternalPort", "65536"), CodeInvalidArgs},
		{"internal port +80", "AddPinhole", addArgs6("InternalPort", "+80"), CodeInvalidArgs},
		{"lease 0", "AddPinhole", addArgs6("LeaseTime", "0"), CodeInvalidArgs},
		{"lease 86401", "AddPinhole", addArgs6("LeaseTime", "86401"), CodeInvalidArgs},
		{"lease 2^32", "AddPinhole", addArgs6("LeaseTime", "4294967296"), CodeInvalidArgs},
		{"lease -1", "AddPinhole", addArgs6("LeaseTime", "-1"), CodeInvalidArgs},
		{"lease absent", "AddPinhole", addArgs6("LeaseTime", "<absent>"), CodeInvalidArgs},
		{"update lease 0", "UpdatePinhole", []string{"UniqueID", "1", "NewLeaseTime", "0"}, CodeInvalidArgs},
		{"update lease huge", "UpdatePinhole", []string{"UniqueID", "1", "NewLeaseTime", "99999999999"}, CodeInvalidArgs},
		{"update ID -1", "UpdatePinhole", []string{"UniqueID", "-1", "NewLeaseTime", "60"}, CodeInvalidArgs},
		{"update ID 65536", "UpdatePinhole", []string{"UniqueID", "65536", "NewLeaseTime", "60"}, CodeInvalidArgs},
		{"delete ID junk", "DeletePinhole", []string{"UniqueID", "one"}, CodeInvalidArgs},
		{"delete ID absent", "DeletePinhole", nil, CodeInvalidArgs},
		{"packets ID 65536", "GetPinholePackets", []string{"UniqueID", "65536"}, CodeInvalidArgs},
		{"check ID empty", "CheckPinholeWorking", []string{"UniqueID", ""}, CodeInvalidArgs},
		{"outbound protocol 65535", "GetOutboundPinholeTimeout", addArgs6("Protocol", "65535", "LeaseTime", "<absent>"), codeProtocolWildcardingNotAllowed},
		{"outbound internal client IPv4", "GetOutboundPinholeTimeout", addArgs6("InternalClient", "10.0.0.1", "LeaseTime", "<absent>"), CodeInvalidArgs},
		{"an action the service does not have", "AddPortMapping", nil, CodeInvalidAction},
	} {
		f := newFake()
		srv, _ := newTestServer(t, 2, f, nil)
		before := len(f.fw.pins)
		_, err := soapCall(t, srv, WANIPv6FirewallControlControlPath, fwURN, tc.action, tc.args...)
		if upnp.ErrorCode(err) != tc.code {
			t.Errorf("%s: %v; want %d", tc.name, err, tc.code)
		}
		if n := f.fw.callCount(); n != 0 {
			t.Errorf("%s: the service was called (%v); a malformed request must reach nothing", tc.name, f.fw.calls)
		}
		if len(f.fw.pins) != before {
			t.Errorf("%s: the pinhole table changed", tc.name)
		}
	}
}

// TestFirewallStatusGatesTheActions: with the firewall off every pinhole
// action is 702, with pinholes forbidden 703; the status itself answers.
func TestFirewallStatusGatesTheActions(t *testing.T) {
	for _, tc := range []struct {
		disabled, closed bool
		code             int
	}{{true, false, codeFirewallDisabled}, {false, true, codeInboundPinholeNotAllowed}} {
		f := newFake()
		f.fw.disabled, f.fw.closed = tc.disabled, tc.closed
		srv, _ := newTestServer(t, 2, f, nil)
		for action, args := range map[string][]string{
			"AddPinhole":          addArgs6(),
			"UpdatePinhole":       {"UniqueID", "1", "NewLeaseTime", "60"},
			"DeletePinhole":       {"UniqueID", "1"},
			"GetPinholePackets":   {"UniqueID", "1"},
			"CheckPinholeWorking": {"UniqueID", "1"},
		} {
			if _, err := soapCall(t, srv, WANIPv6FirewallControlControlPath, fwURN, action, args...); upnp.ErrorCode(err) != tc.code {
				t.Errorf("%s with firewall disabled=%v, pinholes forbidden=%v: %v; want %d", action, tc.disabled, tc.closed, err, tc.code)
			}
		}
		out, err := soapCall(t, srv, WANIPv6FirewallControlControlPath, fwURN, "GetFirewallStatus")
		if err != nil || out.Value("FirewallEnabled") != boolArg(!tc.disabled) || out.Value("InboundPinholeAllowed") != boolArg(!tc.closed) {
			t.Errorf("GetFirewallStatus: %+v, %v", out, err)
		}
	}
}

// FuzzPinhole: the argument reader never panics, and whatever it
// accepts is a pinhole the service can act on as documented.
func FuzzPinhole(f *testing.F) {
	f.Add("", "0", "2001:db8::2", "8080", "6", "3600")
	f.Add("2001:db8::9", "443", "2001:DB8:0:0::2", "1", "17", "86400")
	f.Add("*", "", "*", "0", "65535", "0")
	f.Add("[::1]", "-1", "::ffff:1.2.3.4", "65536", "TCP", "86401")
	f.Fuzz(func(t *testing.T, rh, rp, ic, ip, proto, lease string) {
		c := &call{args: upnp.Args{{Name: "RemoteHost", Value: rh}, {Name: "RemotePort", Value: rp},
			{Name: "InternalClient", Value: ic}, {Name: "InternalPort", Value: ip}, {Name: "Protocol", Value: proto},
			{Name: "LeaseTime", Value: lease}}, version: 2}
		p, err := c.pinholeArgs(true)
		if err != nil {
			if code := upnp.ErrorCode(err); code < 400 || code > 799 {
				t.Fatalf("error without a UPnP code: %v", err)
			}
			return
		}
		if !p.InternalClient.Is6() || p.InternalClient.Is4In6() || p.InternalClient.IsUnspecified() || p.InternalClient.Zone() != "" {
			t.Fatalf("accepted internal client %v", p.InternalClient)
		}
		if p.RemoteHost.IsValid() && (!p.RemoteHost.Is6() || p.RemoteHost.Is4In6() || p.RemoteHost.Zone() != "") {
			t.Fatalf("accepted remote host %v", p.RemoteHost)
		}
		if p.InternalPort == 0 || (p.Protocol != 6 && p.Protocol != 17) {
			t.Fatalf("accepted %+v", p)
		}
		d, err := c.leaseArg("LeaseTime")
		if err == nil && (d < time.Second || d > 86400*time.Second) {
			t.Fatalf("accepted lease %v", d)
		}
	})
}
