package portmap_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/portfwd/portfwd/igd/igdtest"
	"github.com/portfwd/portfwd/portmap"
)

// Discover finds the gateway; Add opens a port on it. A router's refusal is
// a *RefusedError with the protocol's code and a sentence for the user.
func Example() {
	// A fake UPnP router on loopback stands in for the real one; against a
	// real router, leave GatewayURL and the No* options unset.
	router := igdtest.Start(igdtest.Options{Version: 2, ExternalIP: "198.51.100.7"})
	defer router.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	gws, err := portmap.Discover(ctx, portmap.Options{
		GatewayURL:       router.Location,
		NoDefaultGateway: true,
		NoMulticast:      true,
	})
	if err != nil {
		fmt.Println(err) // wraps portmap.ErrNoGateway when nothing answered
		return
	}
	gw := gws[0]
	ip, _ := gw.ExternalIP(ctx)
	fmt.Println("external address:", ip, "-", portmap.Classify(ip))

	m, err := gw.Add(ctx, portmap.Request{Protocol: portmap.TCP, InternalPort: 8080, ExternalPort: 18080, Description: "my app"})
	var refused *portmap.RefusedError
	switch {
	case errors.As(err, &refused):
		fmt.Printf("the router refused (%d): %s\n", refused.Code, refused.Text)
	case err != nil:
		fmt.Println(err)
	default:
		fmt.Printf("mapped %s:%d/%s -> %s:%d\n", m.ExternalAddr, m.ExternalPort, m.Protocol, m.InternalClient, m.InternalPort)
	}
	// Output:
	// external address: 198.51.100.7 - documentation (TEST-NET)
	// mapped 198.51.100.7:18080/TCP -> 127.0.0.1:8080
}

// Listing reports progress as entries arrive, so a caller can show it
// while a slow router answers one entry per request.
func ExampleGateway_List() {
	router := igdtest.Start(igdtest.Options{Version: 1, ExternalIP: "198.51.100.7"})
	defer router.Close()
	ctx := context.Background()
	gws, err := portmap.Discover(ctx, portmap.Options{GatewayURL: router.Location, NoDefaultGateway: true, NoMulticast: true})
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, p := range []uint16{18080, 18081} {
		gws[0].Add(ctx, portmap.Request{Protocol: portmap.UDP, InternalPort: p, Description: "game"})
	}
	ms, err := gws[0].List(ctx, func(n int) { fmt.Println("read", n) })
	fmt.Println(len(ms), "mappings", err)
	// Output:
	// read 1
	// read 2
	// 2 mappings <nil>
}
