//go:build linux

package pcp

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/portfwd/portfwd/internal/natlab"
	"github.com/portfwd/portfwd/internal/testenv"
)

// These tests run Client against the reference PCP server, miniupnpd 2.3.1,
// on the router of a natlab: the client's socket lives in the lab's LAN
// namespace, so no packet leaves the lab, and every mapping is proven with
// a connection from the WAN host. natlab skips them when the machine cannot
// build the lab (not root); CI sets PORTFWD_LAB_REQUIRED=1 to make that a
// failure.

const (
	labMustWork = 3 * time.Second        // for connections that must get through
	labMustFail = 500 * time.Millisecond // for those that must not
)

// labClient returns a Client that sends from the lab's LAN host to the
// router's PCP port.
func labClient(t *testing.T, l *natlab.Lab) *Client {
	return &Client{
		Gateway: netip.AddrPortFrom(l.RouterLANIP, natlab.NATPMPPort),
		Dial: func(ctx context.Context, network, address string) (net.Conn, error) {
			return l.DialContext(ctx, natlab.HostLAN, network, address)
		},
		Logger: testenv.Logger(t),
	}
}

func resultCode(t *testing.T, what string, err error) ResultCode {
	t.Helper()
	var re *ResultError
	if !errors.As(err, &re) {
		t.Fatalf("%s: %v, want a *ResultError", what, err)
	}
	return re.Code
}

// TestLabMiniupnpdMap walks a mapping's life: MAP opens the port to the
// WAN, a refresh keeps it open, a delete with another nonce is refused and
// changes nothing, and the delete with the mapping's nonce, made by another
// Client that read it from a NonceStore as a later process would, shuts
// the port.
func TestLabMiniupnpdMap(t *testing.T) {
	l := natlab.Start(t, natlab.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := labClient(t, l)
	ext := netip.AddrPortFrom(l.RouterWANIP, 19100)
	lanSrv := l.ServeTCP(t, natlab.HostLAN, netip.AddrPortFrom(l.LANIP, 8080), "hello from the LAN")

	// ANNOUNCE: miniupnpd speaks PCP.
	if _, err := c.Announce(ctx); err != nil {
		t.Fatalf("Announce: %v", err)
	}
	if _, err := l.DialTCP(t, natlab.HostWAN, ext, labMustFail); err == nil {
		t.Fatalf("%v reachable from the WAN before any mapping", ext)
	}

	m, err := c.Map(ctx, MapRequest{Protocol: TCP, InternalPort: 8080, SuggestedExternalPort: 19100, Lifetime: 10 * time.Minute})
	if err != nil {
		t.Fatalf("Map: %v", err)
	}
	if m.ExternalPort != 19100 || m.ExternalAddr != l.RouterWANIP || m.Lifetime != 10*time.Minute || m.Nonce.IsZero() {
		t.Errorf("Map = %+v, want %v for 10 min", m, ext)
	}
	if banner, err := l.DialTCP(t, natlab.HostWAN, ext, labMustWork); err != nil || banner != "hello from the LAN" {
		t.Fatalf("WAN -> %v after MAP: %q, %v", ext, banner, err)
	}
	if peers := lanSrv.Peers(); len(peers) != 1 || peers[0].Addr() != l.WANIP {
		t.Errorf("the LAN server saw %v, want one connection from %v", peers, l.WANIP)
	}

	// Refresh: same nonce, same port, the new lifetime.
	r, err := c.Refresh(ctx, m, 5*time.Minute)
	if err != nil {
		t.Fatalf("Refresh: %v", err)
	}
	if r.ExternalPort != 19100 || r.Nonce != m.Nonce || r.Lifetime != 5*time.Minute {
		t.Errorf("Refresh = %+v, want %v for 5 min", r, ext)
	}
	if _, err := l.DialTCP(t, natlab.HostWAN, ext, labMustWork); err != nil {
		t.Fatalf("WAN -> %v after the refresh: %v", ext, err)
	}
	// What a program keeps on disk for a later process: the nonce's text.
	saved, err := r.Nonce.MarshalText()
	if err != nil {
		t.Fatal(err)
	}

	// Another nonce may not delete it.
	err = c.Delete(ctx, TCP, 8080, NewNonce())
	if code := resultCode(t, "delete with another nonce", err); code != ResultNotAuthorized {
		t.Errorf("delete with another nonce: %s, want NOT_AUTHORIZED", code)
	}
	// Quirk: miniupnpd sends long lifetime errors with lifetime 0 (see
	// ResultError.Lifetime).
	if re := (*ResultError)(nil); errors.As(err, &re) && re.Lifetime != 0 {
		t.Errorf("NOT_AUTHORIZED for %v; miniupnpd used to say 0: update the quirk notes", re.Lifetime)
	}
	if _, err := l.DialTCP(t, natlab.HostWAN, ext, labMustWork); err != nil {
		t.Fatalf("WAN -> %v after the refused delete: %v", ext, err)
	}

	// A later process deletes it with the stored nonce.
	later := labClient(t, l)
	var sm struct{ Nonce Nonce }
	if err := sm.Nonce.UnmarshalText(saved); err != nil {
		t.Fatal(err)
	}
	if err := later.Delete(ctx, TCP, 8080, sm.Nonce); err != nil {
		t.Fatalf("Delete with the mapping's nonce: %v", err)
	}
	if _, err := l.DialTCP(t, natlab.HostWAN, ext, labMustFail); err == nil {
		t.Errorf("%v still reachable from the WAN after Delete", ext)
	}
	// Quirk: miniupnpd 2.3.1 answers a delete of a mapping it does not
	// have with NO_RESOURCES, where RFC 6887 says SUCCESS. This check
	// documents it; if it fails, the quirk note in doc.go is stale.
	if code := resultCode(t, "second delete", later.Delete(ctx, TCP, 8080, sm.Nonce)); code != ResultNoResources {
		t.Errorf("second delete: %s, want miniupnpd's NO_RESOURCES", code)
	}
	if c.LostState() || later.LostState() {
		t.Error("LostState set against a router that did not restart")
	}
}

// TestLabMiniupnpdUDP maps a UDP port and proves it with a datagram from
// the WAN host.
func TestLabMiniupnpdUDP(t *testing.T) {
	l := natlab.Start(t, natlab.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := labClient(t, l)
	l.ServeUDPEcho(t, natlab.HostLAN, netip.AddrPortFrom(l.LANIP, 5000))
	m, err := c.Map(ctx, MapRequest{Protocol: UDP, InternalPort: 5000, SuggestedExternalPort: 19200, Lifetime: time.Hour})
	if err != nil {
		t.Fatalf("Map: %v", err)
	}
	ext := netip.AddrPortFrom(m.ExternalAddr, m.ExternalPort)
	if got, err := l.ProbeUDP(t, natlab.HostWAN, ext, "ping", labMustWork); err != nil || got != "ping" {
		t.Fatalf("WAN -> %v: %q, %v", ext, got, err)
	}
	if err := c.Delete(ctx, UDP, 5000, m.Nonce); err != nil {
		t.Fatalf("Delete: %v", err)
	}
}

// TestLabMiniupnpdRefusals checks that miniupnpd's refusals arrive as the
// result codes RFC 6887 defines.
func TestLabMiniupnpdRefusals(t *testing.T) {
	l := natlab.Start(t, natlab.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := labClient(t, l)

	// The lab allows external ports 1024-65535 only: with PREFER_FAILURE,
	// port 80 is refused at once instead of replaced.
	_, err := c.Map(ctx, MapRequest{Protocol: TCP, InternalPort: 8080, SuggestedExternalPort: 80, PreferFailure: true, Lifetime: time.Minute})
	if code := resultCode(t, "PREFER_FAILURE on port 80", err); code != ResultCannotProvideExternal {
		t.Errorf("PREFER_FAILURE on port 80: %s, want CANNOT_PROVIDE_EXTERNAL", code)
	}

	// A request claiming another address than the one it comes from is
	// what a NAT between client and router produces.
	spoofed := labClient(t, l)
	spoofed.ClientAddr = netip.MustParseAddr("10.77.0.99")
	_, err = spoofed.Map(ctx, MapRequest{Protocol: TCP, InternalPort: 8080, Lifetime: time.Minute})
	if code := resultCode(t, "spoofed client address", err); code != ResultAddressMismatch {
		t.Errorf("spoofed client address: %s, want ADDRESS_MISMATCH", code)
	}

	// miniupnpd does not permit THIRD_PARTY by default.
	_, err = c.Map(ctx, MapRequest{Protocol: TCP, InternalPort: 8080, Lifetime: time.Minute, ThirdParty: netip.MustParseAddr("10.77.0.3")})
	if code := resultCode(t, "THIRD_PARTY", err); code != ResultUnsuppOption {
		t.Errorf("THIRD_PARTY: %s, want UNSUPP_OPTION", code)
	}
}
