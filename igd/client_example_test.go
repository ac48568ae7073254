package igd_test

import (
	"context"
	"fmt"
	"time"

	"github.com/portfwd/portfwd/igd"
	"github.com/portfwd/portfwd/igd/igdtest"
	"github.com/portfwd/portfwd/upnp"
)

// connect fetches the description at location and returns a client for
// its best port-mapping service.
func connect(ctx context.Context, location string) (*igd.Client, error) {
	root, err := upnp.FetchDescription(ctx, nil, location)
	if err != nil {
		return nil, err
	}
	refs := igd.ConnectionServices(root)
	if len(refs) == 0 {
		return nil, fmt.Errorf("%s describes no WANIPConnection or WANPPPConnection service", location)
	}
	return igd.NewClient(refs[0], nil), nil
}

func ExampleClient_ListPortMappings() {
	// A fake router on 127.0.0.1 stands in for one found by SSDP.
	router := igdtest.Start(igdtest.Options{Mappings: []igd.PortMapping{
		{ExternalPort: 8080, Protocol: "TCP", InternalPort: 80, InternalClient: "192.168.1.7", Enabled: true, Description: "web"},
		{ExternalPort: 3478, Protocol: "UDP", InternalPort: 3478, InternalClient: "192.168.1.9", Enabled: true, LeaseDuration: time.Hour},
	}})
	defer router.Close()

	ctx := context.Background()
	c, err := connect(ctx, router.Location)
	if err != nil {
		fmt.Println(err)
		return
	}
	list, err := c.ListPortMappings(ctx, nil)
	if err != nil {
		// A *PartialError still comes with the entries read.
		fmt.Println(igd.Explain(err))
	}
	for _, m := range list {
		fmt.Printf("%d/%s -> %s:%d %q lease %v\n", m.ExternalPort, m.Protocol, m.InternalClient, m.InternalPort, m.Description, m.LeaseDuration)
	}
	// Output:
	// 8080/TCP -> 192.168.1.7:80 "web" lease 0s
	// 3478/UDP -> 192.168.1.9:3478 "" lease 1h0m0s
}

func ExampleClient_AddMapping() {
	router := igdtest.Start(igdtest.Options{
		Version:             1,    // an IGDv1 router,
		OnlyPermanentLeases: true, // that refuses leases (725),
		Mappings: []igd.PortMapping{ // and whose port 8080 is taken.
			{ExternalPort: 8080, Protocol: "TCP", InternalPort: 8080, InternalClient: "192.168.1.7", Enabled: true, Description: "camera"},
		},
	})
	defer router.Close()

	ctx := context.Background()
	c, err := connect(ctx, router.Location)
	if err != nil {
		fmt.Println(err)
		return
	}
	want := igd.PortMapping{ExternalPort: 8080, Protocol: "TCP", InternalPort: 80, InternalClient: "192.168.1.8",
		Enabled: true, Description: "web", LeaseDuration: 2 * time.Hour}

	// Without Any, the conflict is reported with its holder.
	if _, err := c.AddMapping(ctx, want, igd.AddOptions{}); err != nil {
		fmt.Println(igd.Explain(err))
	}
	// With Any, another port is found; the lease came down to permanent.
	got, err := c.AddMapping(ctx, want, igd.AddOptions{Any: true})
	if err != nil {
		fmt.Println(igd.Explain(err))
		return
	}
	fmt.Printf("mapped %d/%s -> %s:%d, lease %v\n", got.ExternalPort, got.Protocol, got.InternalClient, got.InternalPort, got.LeaseDuration)
	// Output:
	// The router answered 718: port 8080/TCP is already mapped to 192.168.1.7:8080 ("camera"). Choose another external port, or delete that mapping first if it is no longer needed.
	// mapped 8081/TCP -> 192.168.1.8:80, lease 0s
}
