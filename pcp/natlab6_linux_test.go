//go:build linux

package pcp

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/portfwd/portfwd/internal/natlab"
	"github.com/portfwd/portfwd/internal/testenv"
)

// TestLabMiniupnpdMapIPv6 is PCP over IPv6 against miniupnpd 2.3.1 in the
// dual-stack lab: a MAP sent from the LAN host's own IPv6 address is a
// firewall pinhole (the server answers with the host's address and port,
// whatever was suggested), a delete with another nonce is refused
// NOT_AUTHORIZED and leaves it open, the delete with its nonce closes it,
// and a MAP naming an address the request does not come from is
// ADDRESS_MISMATCH.
func TestLabMiniupnpdMapIPv6(t *testing.T) {
	l := natlab.Start(t, natlab.Options{IPv6: true})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := &Client{
		Gateway: netip.AddrPortFrom(l.RouterLANIP6, natlab.NATPMPPort),
		Dial: func(ctx context.Context, network, address string) (net.Conn, error) {
			return l.DialContext(ctx, natlab.HostLAN, network, address)
		},
		Logger: testenv.Logger(t),
	}
	host := netip.AddrPortFrom(l.LANIP6, 8080)
	l.ServeTCP(t, natlab.HostLAN, host, "hello over IPv6")
	if _, err := l.DialTCP(t, natlab.HostWAN, host, labMustFail); err == nil {
		t.Fatal("the WAN host reached the LAN host before any MAP")
	}

	m, err := c.Map(ctx, MapRequest{Protocol: TCP, InternalPort: 8080, SuggestedExternalPort: 18080, Lifetime: 10 * time.Minute})
	if err != nil {
		t.Fatalf("MAP over IPv6: %v", err)
	}
	if m.ExternalAddr != l.LANIP6 || m.ExternalPort != 8080 {
		t.Errorf("MAP over IPv6 granted [%v]:%d; a firewall gives the host's own [%v]:8080", m.ExternalAddr, m.ExternalPort, l.LANIP6)
	}
	if got, err := l.DialTCP(t, natlab.HostWAN, host, labMustWork); err != nil || got != "hello over IPv6" {
		t.Fatalf("WAN -> %v through the PCP pinhole: %q, %v", host, got, err)
	}

	err = c.Delete(ctx, TCP, 8080, NewNonce())
	if code := resultCode(t, "delete with another nonce", err); code != ResultNotAuthorized {
		t.Errorf("delete with another nonce: result %v, want NOT_AUTHORIZED", code)
	}
	if _, err := l.DialTCP(t, natlab.HostWAN, host, labMustWork); err != nil {
		t.Fatalf("the refused delete closed the pinhole: %v", err)
	}
	if err := c.Delete(ctx, TCP, 8080, m.Nonce); err != nil {
		t.Fatalf("delete with the pinhole's nonce: %v", err)
	}
	if _, err := l.DialTCP(t, natlab.HostWAN, host, labMustFail); err == nil {
		t.Fatal("the pinhole is still open after its delete")
	}

	other := &Client{Gateway: c.Gateway, Dial: c.Dial, Logger: c.Logger, ClientAddr: netip.MustParseAddr("2001:db8:77::99")}
	_, err = other.Map(ctx, MapRequest{Protocol: TCP, InternalPort: 8080, Lifetime: time.Minute})
	if code := resultCode(t, "MAP for another address", err); code != ResultAddressMismatch {
		t.Errorf("MAP for an address the request does not come from: result %v, want ADDRESS_MISMATCH", code)
	}
}
