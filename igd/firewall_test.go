package igd_test

import (
	"context"
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	http "github.com/portfwd/portfwd/internal/httpx"
	"github.com/portfwd/portfwd/internal/httpx/httpxtest"

	"github.com/portfwd/portfwd/igd"
	"github.com/portfwd/portfwd/upnp"
)

// fwServer is a WANIPv6FirewallControl stand-in: it records each request
// and answers with the reply set for its action (out-args or a fault code).
type fwServer struct {
	mu      sync.Mutex
	calls   []fwCall
	replies map[string]any // action -> upnp.Args or int (fault code)
}

type fwCall struct {
	serviceType, action string
	args                upnp.Args
}

func newFWServer(t *testing.T, replies map[string]any) (*fwServer, *igd.FirewallClient) {
	s := &fwServer{replies: replies}
	srv := httpxtest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		st, action, args, err := upnp.ReadRequest(r, 1<<16)
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		s.mu.Lock()
		s.calls = append(s.calls, fwCall{st, action, args})
		rep := s.replies[action]
		s.mu.Unlock()
		switch rep := rep.(type) {
		case int:
			upnp.WriteFault(w, rep, "fault")
		case upnp.Args:
			upnp.WriteResponse(w, st, action, rep)
		default:
			upnp.WriteFault(w, 401, "Invalid Action")
		}
	}))
	t.Cleanup(srv.Close)
	return s, &igd.FirewallClient{SOAP: &upnp.Client{HTTP: srv.Client()}, ControlURL: srv.URL + "/ctl/IP6FCtl"}
}

func (s *fwServer) last() fwCall {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[len(s.calls)-1]
}

var lanHost = netip.MustParseAddr("2001:db8:77::2")

// Every action sends the spec's argument names, in SCPD order, addresses
// in RFC 5952 form and the protocol as an IANA number; UpdatePinhole's
// lease is NewLeaseTime, the one argument with the New prefix.
func TestFirewallClientWire(t *testing.T) {
	ctx := context.Background()
	srv, c := newFWServer(t, map[string]any{
		"GetFirewallStatus":         args("FirewallEnabled", "1", "InboundPinholeAllowed", "0"),
		"AddPinhole":                args("UniqueID", "7"),
		"UpdatePinhole":             upnp.Args{},
		"DeletePinhole":             upnp.Args{},
		"GetPinholePackets":         args("PinholePackets", "42"),
		"CheckPinholeWorking":       args("IsWorking", "1"),
		"GetOutboundPinholeTimeout": args("OutboundPinholeTimeout", "300"),
	})
	p := igd.Pinhole{
		// Spelled the long way: the client must send RFC 5952.
		InternalClient: netip.MustParseAddr("2001:DB8:77:0:0:0:0:2"),
		InternalPort:   8080, Protocol: igd.ProtoTCP, Lease: time.Hour,
	}
	tuple := args("RemoteHost", "", "RemotePort", "0", "InternalClient", "2001:db8:77::2", "InternalPort", "8080", "Protocol", "6")
	tests := []struct {
		action string
		call   func() (any, error)
		want   upnp.Args
		result any
	}{
		{"GetFirewallStatus", func() (any, error) { e, a, err := c.FirewallStatus(ctx); return [2]bool{e, a}, err }, nil, [2]bool{true, false}},
		{"AddPinhole", func() (any, error) { return c.AddPinhole(ctx, p) }, append(tuple, upnp.Arg{Name: "LeaseTime", Value: "3600"}), uint16(7)},
		{"UpdatePinhole", func() (any, error) { return nil, c.UpdatePinhole(ctx, 7, 90*time.Second) }, args("UniqueID", "7", "NewLeaseTime", "90"), nil},
		{"DeletePinhole", func() (any, error) { return nil, c.DeletePinhole(ctx, 7) }, args("UniqueID", "7"), nil},
		{"GetPinholePackets", func() (any, error) { return c.PinholePackets(ctx, 7) }, args("UniqueID", "7"), uint32(42)},
		{"CheckPinholeWorking", func() (any, error) { return c.CheckPinholeWorking(ctx, 7) }, args("UniqueID", "7"), true},
		{"GetOutboundPinholeTimeout", func() (any, error) { return c.OutboundPinholeTimeout(ctx, p) }, tuple, 300 * time.Second},
	}
	for _, tc := range tests {
		got, err := tc.call()
		if err != nil {
			t.Errorf("%s: %v", tc.action, err)
			continue
		}
		if got != tc.result {
			t.Errorf("%s = %v, want %v", tc.action, got, tc.result)
		}
		call := srv.last()
		if call.action != tc.action || call.serviceType != igd.ServiceWANIPv6FirewallControl {
			t.Errorf("%s: sent %s#%s", tc.action, call.serviceType, call.action)
		}
		if len(tc.want) == 0 && len(call.args) == 0 {
			continue
		}
		if !reflect.DeepEqual(call.args, tc.want) {
			t.Errorf("%s args:\n got %v\nwant %v", tc.action, call.args, tc.want)
		}
	}
}

// Every code of the service comes back typed, with one sentence; 709 from
// CheckPinholeWorking is "not proven yet", not a failure.
func TestFirewallErrors(t *testing.T) {
	ctx := context.Background()
	for code := 701; code <= 709; code++ {
		_, c := newFWServer(t, map[string]any{"DeletePinhole": code, "CheckPinholeWorking": code})
		err := c.DeletePinhole(ctx, 1)
		fc := igd.FirewallCode(code)
		if !errors.Is(err, fc) {
			t.Errorf("%d: errors.Is(%v, FirewallCode(%d)) is false", code, err, code)
		}
		if upnp.ErrorCode(err) != code {
			t.Errorf("%d: upnp.ErrorCode = %d", code, upnp.ErrorCode(err))
		}
		if fc.Name() == "" || igd.CodeName(code) != fc.Name() {
			t.Errorf("%d: no name (%q, %q)", code, fc.Name(), igd.CodeName(code))
		}
		msg := igd.Explain(err)
		if !strings.Contains(msg, fc.Name()) || !strings.Contains(msg, fc.Error()) || strings.Count(msg, ". ") > 1 {
			t.Errorf("%d: Explain = %q; want the name and one sentence", code, msg)
		}
		working, err := c.CheckPinholeWorking(ctx, 1)
		if code == 709 {
			if working || err != nil {
				t.Errorf("CheckPinholeWorking answered 709: got %v, %v; want false, nil", working, err)
			}
		} else if err == nil {
			t.Errorf("CheckPinholeWorking answered %d: no error", code)
		}
	}
	_, c := newFWServer(t, map[string]any{"AddPinhole": 606})
	_, err := c.AddPinhole(ctx, igd.Pinhole{InternalClient: lanHost, InternalPort: 8080, Protocol: igd.ProtoTCP, Lease: time.Hour})
	if !strings.Contains(igd.Explain(err), "only to the address the request comes from") {
		t.Errorf("606 explained as %q", igd.Explain(err))
	}
}

// Bad pinholes are refused before anything is sent.
func TestPinholeArgsRefuses(t *testing.T) {
	ok := igd.Pinhole{InternalClient: lanHost, InternalPort: 8080, Protocol: igd.ProtoTCP, Lease: time.Hour}
	for name, mut := range map[string]func(*igd.Pinhole){
		"no client":      func(p *igd.Pinhole) { p.InternalClient = netip.Addr{} },
		"IPv4 client":    func(p *igd.Pinhole) { p.InternalClient = netip.MustParseAddr("10.77.0.2") },
		"v4-mapped":      func(p *igd.Pinhole) { p.InternalClient = netip.MustParseAddr("::ffff:10.77.0.2") },
		"IPv4 remote":    func(p *igd.Pinhole) { p.RemoteHost = netip.MustParseAddr("203.0.113.2") },
		"port 0":         func(p *igd.Pinhole) { p.InternalPort = 0 },
		"any protocol":   func(p *igd.Pinhole) { p.Protocol = igd.ProtoAny },
		"lease 0":        func(p *igd.Pinhole) { p.Lease = 0 },
		"lease too long": func(p *igd.Pinhole) { p.Lease = igd.MaxPinholeLease + time.Second },
	} {
		p := ok
		mut(&p)
		if _, err := igd.PinholeArgs(p, true); err == nil {
			t.Errorf("%s: PinholeArgs(%v) accepted", name, p)
		}
	}
	p := ok
	p.RemoteHost = netip.MustParseAddr("2001:db8:113::2")
	p.RemotePort = 4000
	a, err := igd.PinholeArgs(p, true)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := a.Get("RemoteHost"); v != "2001:db8:113::2" {
		t.Errorf("RemoteHost = %q", v)
	}
	if got := p.String(); got != "[2001:db8:77::2]:8080/TCP from [2001:db8:113::2]:4000" {
		t.Errorf("String = %q", got)
	}
}

func TestPinholeGone(t *testing.T) {
	for code, want := range map[int]bool{704: true, 402: true, 501: true, 606: true, 702: false, 703: false, 701: false} {
		err := &igd.FirewallError{Action: "UpdatePinhole", Code: code, Fault: &upnp.Error{Code: code}}
		if igd.PinholeGone(err) != want {
			t.Errorf("PinholeGone(%d) = %v, want %v", code, !want, want)
		}
	}
}

func TestParseUniqueID(t *testing.T) {
	for in, want := range map[string]int{"0": 0, " 7 ": 7, "65535": 65535, "65536": -1, "-1": -1, "": -1, "0x10": -1} {
		got, err := igd.ParseUniqueID(in)
		if want < 0 {
			if err == nil {
				t.Errorf("ParseUniqueID(%q) = %d, want an error", in, got)
			}
		} else if err != nil || int(got) != want {
			t.Errorf("ParseUniqueID(%q) = %d, %v", in, got, err)
		}
	}
}

func FuzzFirewallParse(f *testing.F) {
	for _, s := range []string{"1", "0", "true", "65535", "4294967295", "", " 12 ", "-3", "yes"} {
		f.Add(s, s)
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		if id, err := igd.ParseUniqueID(a); err == nil {
			if got, err := igd.ParseUniqueID(strings.TrimSpace(a)); err != nil || got != id {
				t.Fatalf("ParseUniqueID unstable on %q", a)
			}
		}
		igd.ParseUI4(a)
		e, p, err := igd.ParseFirewallStatus(upnp.Args{{Name: "FirewallEnabled", Value: a}, {Name: "InboundPinholeAllowed", Value: b}})
		if err != nil && (e || p) {
			t.Fatalf("ParseFirewallStatus(%q, %q) = %v, %v with error %v", a, b, e, p, err)
		}
	})
}
