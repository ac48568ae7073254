package portmap

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/portfwd/portfwd/igd/igdtest"
)

// TestGatewaysAreSafeForConcurrentUse runs Add, ExternalIP, Info, List,
// Edit and Delete from many goroutines at once on a gateway of each
// protocol, as a web UI does. scripts/test.sh runs it under -race, which
// fails it on any unsynchronised access; it also checks that every
// mapping made is deleted and that no operation failed.
func TestGatewaysAreSafeForConcurrentUse(t *testing.T) {
	srv := igdtest.NewServer(t, igdtest.Options{Version: 2, ExternalIP: "198.51.100.7"})
	pmp := startPMPRouter(t)
	pcpR := startPCPRouter(t)
	gateways := map[string]func() (Gateway, func() int){
		"upnp": func() (Gateway, func() int) {
			o := testOptions(t)
			o.GatewayURL = srv.Location
			return discoverOne(t, o), func() int { return len(srv.Mappings()) }
		},
		"natpmp": func() (Gateway, func() int) {
			o := testOptions(t)
			o.NATPMPServer, o.Methods = pmp.addr, []Method{NATPMP}
			return discoverOne(t, o), func() int { return -1 }
		},
		"pcp": func() (Gateway, func() int) {
			o := testOptions(t)
			o.NATPMPServer, o.Methods = pcpR.addr, []Method{PCP}
			return discoverOne(t, o), pcpR.count
		},
	}
	for name, open := range gateways {
		t.Run(name, func(t *testing.T) {
			g, count := open()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			const workers, rounds = 8, 5
			var wg sync.WaitGroup
			errs := make(chan error, workers*rounds*8)
			for w := range workers {
				wg.Go(func() {
					for i := range rounds {
						port := uint16(20000 + w*100 + i)
						m, err := g.Add(ctx, Request{Protocol: UDP, InternalPort: port, Description: fmt.Sprint("w", w), Lease: time.Hour})
						if err != nil {
							errs <- fmt.Errorf("Add %d: %w", port, err)
							continue
						}
						if m.ExternalPort != port {
							errs <- fmt.Errorf("Add %d granted %d", port, m.ExternalPort)
						}
						if _, err := g.ExternalIP(ctx); err != nil {
							errs <- fmt.Errorf("ExternalIP: %w", err)
						}
						if _, err := g.Info(ctx); err != nil {
							errs <- fmt.Errorf("Info: %w", err)
						}
						if _, err := g.List(ctx, nil); err != nil && !errors.Is(err, ErrNotSupported) {
							errs <- fmt.Errorf("List: %w", err)
						}
						desc := fmt.Sprint("w", w, " edited")
						if _, err := g.Edit(ctx, m.Key(), Change{Description: &desc}); err != nil {
							errs <- fmt.Errorf("Edit %d: %w", port, err)
						}
						if err := g.Delete(ctx, m.Key()); err != nil {
							errs <- fmt.Errorf("Delete %d: %w", port, err)
						}
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			if n := count(); n > 0 {
				t.Errorf("%d mappings left on the router", n)
			}
		})
	}
}
