package natpmp_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/portfwd/portfwd/natpmp"
	"github.com/portfwd/portfwd/pmp"
)

// router is a stand-in for a real router's mapping table: it grants every
// mapping on the suggested port.
type router struct{}

func (router) ExternalAddress(context.Context, netip.Addr) (netip.Addr, natpmp.ResultCode) {
	return netip.MustParseAddr("203.0.113.1"), natpmp.Success
}

func (router) Map(_ context.Context, _ netip.Addr, _ natpmp.Protocol, internal, suggested uint16, lifetime uint32) (uint16, uint32, natpmp.ResultCode) {
	if lifetime == 0 {
		return 0, 0, natpmp.Success
	}
	if suggested == 0 {
		suggested = internal
	}
	return suggested, min(lifetime, 3600), natpmp.Success
}

func ExampleClient_Map() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// So that the example runs anywhere, the "router" is a NAT-PMP server
	// (package pmp's, which gateways run) on the loopback interface. A
	// real program would use its default gateway, on natpmp.ServerPort.
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer pc.Close()
	go (&pmp.Server{NATPMP: router{}}).ServePacketConn(ctx, pc)
	gateway := pc.LocalAddr().(*net.UDPAddr).AddrPort()

	c := &natpmp.Client{Gateway: gateway}
	ext, err := c.ExternalAddress(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	m, err := c.Map(ctx, natpmp.TCP, 8080, 8080, natpmp.RecommendedLifetime)
	var refused *natpmp.ResultError
	switch {
	case errors.As(err, &refused) && refused.Code == natpmp.NotAuthorized:
		fmt.Println("enable NAT-PMP on the router:", err)
		return
	case err != nil:
		fmt.Println(err)
		return
	}
	// The router may grant another port and a shorter lifetime than asked.
	fmt.Printf("%s:%d forwards to port %d for %v\n", ext.Addr, m.ExternalPort, m.InternalPort, m.Lifetime)

	// Renew halfway through the lifetime, suggesting the granted port;
	// when done, delete the mapping.
	if err := c.Unmap(ctx, natpmp.TCP, 8080); err != nil {
		fmt.Println(err)
	}
	// Output: 203.0.113.1:8080 forwards to port 8080 for 1h0m0s
}
