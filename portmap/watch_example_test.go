package portmap_test

import (
	"context"
	"fmt"
	"time"

	"github.com/portfwd/portfwd/igd"
	"github.com/portfwd/portfwd/igd/igdtest"
	"github.com/portfwd/portfwd/portmap"
)

// Watch reports the gateway's state, then each change, until the context
// ends. Here another program adds a mapping on the router; the poll (this
// fake router has no UPnP events) reports it with the difference.
func ExampleWatch() {
	router := igdtest.Start(igdtest.Options{Version: 2, ExternalIP: "198.51.100.7"})
	defer router.Close()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events, err := portmap.Watch(ctx,
		portmap.Options{GatewayURL: router.Location, NoDefaultGateway: true, NoMulticast: true},
		portmap.WatchOptions{PollInterval: 50 * time.Millisecond, NoAnnouncements: true})
	if err != nil {
		fmt.Println(err) // wraps portmap.ErrNoGateway when nothing answered
		return
	}
	for ev := range events {
		switch ev.Kind {
		case portmap.WatchInitial:
			fmt.Println(ev.Kind, ev.ExternalAddr, ev.Count, ev.Status)
			router.SetMappings([]igd.PortMapping{{ExternalPort: 18080, Protocol: "TCP", InternalPort: 8080,
				InternalClient: "192.0.2.10", Enabled: true, Description: "game server"}})
		case portmap.WatchMappingsChanged:
			a := ev.Added[0]
			fmt.Printf("%s via %s: %d -> %d, added %d/%s -> %s:%d %q\n", ev.Kind, ev.Via, ev.PreviousCount, ev.Count,
				a.ExternalPort, a.Protocol, a.InternalClient, a.InternalPort, a.Description)
			cancel() // the channel closes once the watch has stopped
		}
	}
	// Output:
	// initial 198.51.100.7 0 Connected
	// mappings-changed via poll: 0 -> 1, added 18080/TCP -> 192.0.2.10:8080 "game server"
}
