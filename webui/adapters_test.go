package webui

import (
	"context"
	"testing"
	"time"

	"github.com/portfwd/portfwd/igd/igdtest"
	"github.com/portfwd/portfwd/portmap"
)

func TestPortmapKeeperKeepsAndReleases(t *testing.T) {
	srv := igdtest.NewServer(t, igdtest.Options{Version: 2, ExternalIP: "198.51.100.7"})
	o := portmap.Options{GatewayURL: srv.Location, NoDefaultGateway: true, NoMulticast: true, StateDir: t.TempDir()}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	gws, err := portmap.Discover(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	k := &PortmapKeeper{Options: o, Lease: 10 * time.Minute}
	defer k.Close()
	m := portmap.Mapping{Protocol: portmap.TCP, ExternalPort: 18080, InternalPort: 8080, InternalClient: "127.0.0.1", Description: "kept"}
	if err := k.Keep(ctx, gws[0], m); err != nil {
		t.Fatal(err)
	}
	if got := srv.Mappings(); len(got) != 1 || got[0].ExternalPort != 18080 {
		t.Fatalf("router table: %+v", got)
	}
	if keys := k.Kept(gws[0]); len(keys) != 1 || keys[0] != m.Key() {
		t.Errorf("Kept = %v", keys)
	}
	if err := k.Release(ctx, gws[0], m.Key()); err != nil {
		t.Fatal(err)
	}
	if len(k.Kept(gws[0])) != 0 {
		t.Error("still kept after Release")
	}
	// Release leaves the mapping to its lease: it is not deleted.
	if len(srv.Mappings()) != 1 {
		t.Errorf("Release deleted the mapping: %+v", srv.Mappings())
	}
	if err := k.Release(ctx, gws[0], m.Key()); err == nil {
		t.Error("releasing a mapping not kept succeeded")
	}
}
