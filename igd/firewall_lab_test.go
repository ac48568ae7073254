//go:build linux && !gatewayonly

package igd_test

// (Not in the router build: the client half against miniupnpd.)

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"github.com/portfwd/portfwd/igd"
	"github.com/portfwd/portfwd/internal/natlab"
	"github.com/portfwd/portfwd/upnp"
)

// labFirewall is a FirewallClient on the dual-stack lab's LAN host, its
// SOAP connections made inside the LAN namespace from local (any address
// when invalid), to the control URL at host.
func labFirewall(l *natlab.Lab, local netip.Addr, host netip.Addr) *igd.FirewallClient {
	dial := func(ctx context.Context, network, address string) (net.Conn, error) {
		var c net.Conn
		err := l.In(natlab.HostLAN, func() (err error) {
			d := net.Dialer{}
			if local.IsValid() {
				d.LocalAddr = &net.TCPAddr{IP: local.AsSlice()}
			}
			c, err = d.DialContext(ctx, network, address)
			return err
		})
		return c, err
	}
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: dial, DisableKeepAlives: true}}
	return &igd.FirewallClient{
		SOAP:       &upnp.Client{HTTP: hc},
		ControlURL: "http://" + netip.AddrPortFrom(host, natlab.MiniupnpdHTTPPort).String() + "/ctl/IP6FCtl",
	}
}

// TestLabFirewallAgainstMiniupnpd runs every WANIPv6FirewallControl action
// against miniupnpd 2.3.1 and pins down what it answers, quirks included:
// the pinhole really opens and closes for the WAN host; an InternalClient
// spelled otherwise than inet_ntop spells the sender, or another host's,
// or sent over IPv4, is 606; CheckPinholeWorking is 709 and
// GetPinholePackets 0 even after traffic; GetOutboundPinholeTimeout is
// 501; DeletePinhole of an unknown ID is 402.
func TestLabFirewallAgainstMiniupnpd(t *testing.T) {
	l := natlab.Start(t, natlab.Options{IPv6: true})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	fw := labFirewall(l, l.LANIP6, l.RouterLANIP6)
	target := netip.AddrPortFrom(l.LANIP6, 8080)
	l.ServeTCP(t, natlab.HostLAN, target, "fw")

	enabled, allowed, err := fw.FirewallStatus(ctx)
	if err != nil || !enabled || !allowed {
		t.Fatalf("GetFirewallStatus = %v, %v, %v; want enabled and allowed", enabled, allowed, err)
	}
	p := igd.Pinhole{InternalClient: l.LANIP6, InternalPort: 8080, Protocol: igd.ProtoTCP, Lease: time.Hour}
	id, err := fw.AddPinhole(ctx, p)
	if err != nil {
		t.Fatalf("AddPinhole: %v", err)
	}
	if got, err := l.DialTCP(t, natlab.HostWAN, target, 3*time.Second); err != nil || got != "fw" {
		t.Fatalf("WAN -> %v through pinhole %d: %q, %v", target, id, got, err)
	}
	if again, err := fw.AddPinhole(ctx, p); err != nil || again != id {
		t.Errorf("AddPinhole of the same tuple = %d, %v; the spec wants the existing ID %d", again, err, id)
	}
	if err := fw.UpdatePinhole(ctx, id, 2*time.Hour); err != nil {
		t.Errorf("UpdatePinhole: %v", err)
	}
	if working, err := fw.CheckPinholeWorking(ctx, id); working || err != nil {
		t.Errorf("CheckPinholeWorking = %v, %v; miniupnpd 2.3.1 answers 709 always (read as false, nil)", working, err)
	}
	if n, err := fw.PinholePackets(ctx, id); n != 0 || err != nil {
		t.Errorf("GetPinholePackets = %d, %v; miniupnpd's nft rules have no counter", n, err)
	}
	if _, err := fw.OutboundPinholeTimeout(ctx, p); upnp.ErrorCode(err) != igd.CodeActionFailed {
		t.Errorf("GetOutboundPinholeTimeout: %v; miniupnpd 2.3.1 answers 501", err)
	}

	refusals := []struct {
		name string
		fw   *igd.FirewallClient
		p    igd.Pinhole
	}{
		{"another host's address", fw, igd.Pinhole{InternalClient: netip.MustParseAddr("2001:db8:77::99"), InternalPort: 8081, Protocol: igd.ProtoTCP, Lease: time.Hour}},
		{"a port below 1024", fw, igd.Pinhole{InternalClient: l.LANIP6, InternalPort: 80, Protocol: igd.ProtoTCP, Lease: time.Hour}},
		{"over IPv4", labFirewall(l, netip.Addr{}, l.RouterLANIP), igd.Pinhole{InternalClient: l.LANIP6, InternalPort: 8082, Protocol: igd.ProtoTCP, Lease: time.Hour}},
	}
	for _, r := range refusals {
		_, err := r.fw.AddPinhole(ctx, r.p)
		if upnp.ErrorCode(err) != igd.CodeActionNotAuthorized {
			t.Errorf("AddPinhole for %s: %v, want 606", r.name, err)
		}
	}

	// The spelling quirk PinholeArgs avoids: the same address in capitals,
	// sent raw, is refused.
	args, _ := igd.PinholeArgs(igd.Pinhole{InternalClient: l.LANIP6, InternalPort: 8083, Protocol: igd.ProtoTCP, Lease: time.Hour}, true)
	for i := range args {
		if args[i].Name == "InternalClient" {
			args[i].Value = "2001:DB8:77::2"
		}
	}
	if _, err := fw.SOAP.Call(ctx, fw.ControlURL, igd.ServiceWANIPv6FirewallControl, "AddPinhole", args); upnp.ErrorCode(err) != igd.CodeActionNotAuthorized {
		t.Errorf("AddPinhole with InternalClient 2001:DB8:77::2: %v; miniupnpd 2.3.1 compares strings and answers 606", err)
	}

	if err := fw.DeletePinhole(ctx, id); err != nil {
		t.Fatalf("DeletePinhole: %v", err)
	}
	if _, err := l.DialTCP(t, natlab.HostWAN, target, 500*time.Millisecond); err == nil {
		t.Fatal("the WAN host still gets through after DeletePinhole")
	}
	err = fw.DeletePinhole(ctx, id)
	var fe *igd.FirewallError
	if !errors.As(err, &fe) || fe.Code != igd.CodeInvalidArgs {
		t.Errorf("DeletePinhole of an unknown ID: %v; miniupnpd 2.3.1 answers 402 (its nft lookup finds any ID)", err)
	}
}
