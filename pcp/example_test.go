package pcp_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/portfwd/portfwd/pcp"
	"github.com/portfwd/portfwd/pmp"
)

// router is a stand-in for a real router's mapping table: it grants every
// mapping on the suggested port, or the internal one. (A real Handler also
// keeps each mapping's nonce and refuses another with NOT_AUTHORIZED.)
type router struct{}

func (router) Map(_ context.Context, req pcp.MapContext) (pcp.MapGrant, pcp.ResultCode) {
	port := req.SuggestedExternalPort
	if port == 0 {
		port = req.InternalPort
	}
	return pcp.MapGrant{ExternalPort: port, ExternalAddr: netip.MustParseAddr("203.0.113.1")}, pcp.ResultSuccess
}

func (router) Peer(context.Context, pcp.PeerContext) (pcp.MapGrant, pcp.ResultCode) {
	return pcp.MapGrant{}, pcp.ResultUnsuppOpcode
}

func ExampleClient_Map() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// So that the example runs anywhere, the "router" is a PCP server
	// (package pmp's, which gateways run) on the loopback interface. A
	// real program would use its default gateway, on pcp.ServerPort.
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer pc.Close()
	go (&pmp.Server{PCP: router{}}).ServePacketConn(ctx, pc)
	gateway := pc.LocalAddr().(*net.UDPAddr).AddrPort()

	c := &pcp.Client{Gateway: gateway}
	m, err := c.Map(ctx, pcp.MapRequest{Protocol: pcp.TCP, InternalPort: 8080, SuggestedExternalPort: 8080, Lifetime: time.Hour})
	var refused *pcp.ResultError
	switch {
	case errors.As(err, &refused) && refused.Code == pcp.ResultNotAuthorized:
		fmt.Println("allow this host in the router's PCP settings:", err)
		return
	case err != nil:
		fmt.Println(err)
		return
	}
	// The router may grant another port and another lifetime than asked.
	fmt.Printf("%v:%d forwards to port %d for %v\n", m.ExternalAddr, m.ExternalPort, m.InternalPort, m.Lifetime)

	// Refresh halfway through the lifetime with Refresh(ctx, m, 0); when
	// done, delete the mapping: that takes its nonce.
	if err := c.Delete(ctx, pcp.TCP, 8080, m.Nonce); err != nil {
		fmt.Println(err)
	}
	// Output: 203.0.113.1:8080 forwards to port 8080 for 1h0m0s
}
