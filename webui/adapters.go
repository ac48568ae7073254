package webui

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/portfwd/portfwd/portmap"
)

// CheckFunc adapts a function to the Checker interface, so that the
// command can plug in the reachability checker (package reach) without
// webui depending on it.
type CheckFunc func(ctx context.Context, g portmap.Gateway, proto string, internalPort, externalPort uint16) (any, error)

// Check calls f.
func (f CheckFunc) Check(ctx context.Context, g portmap.Gateway, proto string, internalPort, externalPort uint16) (any, error) {
	return f(ctx, g, proto, internalPort, externalPort)
}

// PortmapKeeper is the Keeper of the "keep open" toggle: one portmap.Keep
// per mapping, pinned to the gateway the page shows (its description URL,
// or its NAT-PMP/PCP server), renewing at half the lease and re-creating
// the mapping after a router restart, for as long as the UI runs.
type PortmapKeeper struct {
	// Options are the base discovery options (state directory, timeouts).
	Options portmap.Options
	// Lease is asked for at each renewal; zero means one hour.
	Lease time.Duration

	mu   sync.Mutex
	kept map[string]map[portmap.Key]*portmap.Keeper // by gateway Addr
}

// Keep starts keeping m and returns once it is (re)made, or with the reason
// it cannot be.
func (k *PortmapKeeper) Keep(ctx context.Context, g portmap.Gateway, m portmap.Mapping) error {
	o := k.Options
	o.Wait, o.Progress = false, nil
	o.Methods = []portmap.Method{g.Method()}
	switch g.Method() {
	case portmap.UPnP:
		// Should the gateway go away, find it again at the same place.
		if info, err := g.Info(ctx); err == nil && info.Location != "" {
			o.GatewayURL = info.Location
		}
	default:
		if ap, err := netip.ParseAddrPort(g.Addr()); err == nil {
			o.NATPMPServer = ap
		}
	}
	client, _ := netip.ParseAddr(m.InternalClient)
	lease := k.Lease
	if lease == 0 {
		lease = time.Hour
	}
	kp := portmap.Keep(context.Background(), portmap.KeepConfig{Options: o, Gateway: g, Request: portmap.Request{
		Protocol: m.Protocol, InternalPort: m.InternalPort, ExternalPort: m.ExternalPort,
		InternalClient: client, Lease: lease, Description: m.Description,
	}})
	// Wait for the first verdict, within ctx.
	for {
		select {
		case ev := <-kp.Events():
			switch ev.Kind {
			case portmap.EventMapped:
				go func() {
					for range kp.Events() { // keep draining: the page polls state itself
					}
				}()
				k.mu.Lock()
				if k.kept == nil {
					k.kept = map[string]map[portmap.Key]*portmap.Keeper{}
				}
				if k.kept[g.Addr()] == nil {
					k.kept[g.Addr()] = map[portmap.Key]*portmap.Keeper{}
				}
				old := k.kept[g.Addr()][m.Key()]
				k.kept[g.Addr()][m.Key()] = kp
				k.mu.Unlock()
				if old != nil {
					old.Release()
				}
				return nil
			case portmap.EventFailed, portmap.EventGatewayGone, portmap.EventError:
				kp.Release()
				if err := kp.Err(); err != nil {
					return err
				}
				return errors.New(ev.Reason)
			}
		case <-ctx.Done():
			kp.Release()
			return ctx.Err()
		}
	}
}

// Release stops renewing the mapping at key; it stays until its lease ends.
func (k *PortmapKeeper) Release(ctx context.Context, g portmap.Gateway, key portmap.Key) error {
	k.mu.Lock()
	kp := k.kept[g.Addr()][key]
	delete(k.kept[g.Addr()], key)
	k.mu.Unlock()
	if kp == nil {
		return fmt.Errorf("port %s is not being kept open", key)
	}
	kp.Release()
	return nil
}

// Kept lists the keys kept open on g.
func (k *PortmapKeeper) Kept(g portmap.Gateway) []portmap.Key {
	k.mu.Lock()
	defer k.mu.Unlock()
	var keys []portmap.Key
	for key := range k.kept[g.Addr()] {
		keys = append(keys, key)
	}
	return keys
}

// Close stops every keeper, leaving the mappings until their leases end.
func (k *PortmapKeeper) Close() {
	k.mu.Lock()
	all := k.kept
	k.kept = nil
	k.mu.Unlock()
	for _, byKey := range all {
		for _, kp := range byKey {
			kp.Release()
		}
	}
}

// ErrNoRouterEvents is what PortmapWatcher.Watch returns when the gateway
// pushes nothing the page could follow (its UPnP eventing is missing or
// broken, or no NAT-PMP/PCP announcement can be heard): the server then
// polls it instead.
var ErrNoRouterEvents = errors.New("the router sends no events the page can follow")

// PortmapWatcher is the Watcher of portfwd ui: portmap.Watch on the
// gateway the page shows, which follows the router's UPnP events (GENA)
// and NAT-PMP/PCP announcements, so that the page changes when the router
// says it changed, as portfwd watch reports it, and the router is not
// polled every few seconds. The watch still reads the router every
// PollInterval as a safety net.
type PortmapWatcher struct {
	// Options are the base discovery options (timeouts, logger, HTTP
	// client); the watched gateway is the one the page shows.
	Options portmap.Options
	// PollInterval is the watch's safety-net poll; zero means
	// portmap.DefaultWatchPollInterval.
	PollInterval time.Duration
}

// Watch follows g until ctx ends, calling changed after each change the
// watch reports. It returns an error wrapping ErrNoRouterEvents at once
// when g pushes nothing the page needs: UPnP events for a gateway whose
// table the page lists, announcements for a NAT-PMP or PCP one.
func (w *PortmapWatcher) Watch(ctx context.Context, g portmap.Gateway, changed func()) error {
	o := w.Options
	o.Wait, o.Progress = false, nil
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // ends the watch, which unsubscribes in the background
	evs, err := portmap.Watch(ctx, o, portmap.WatchOptions{Gateway: g, PollInterval: w.PollInterval})
	if err != nil {
		return err
	}
	for ev := range evs {
		if ev.Kind != portmap.WatchInitial {
			changed()
			continue
		}
		need := portmap.ViaGENA
		if g.Method() != portmap.UPnP {
			need = portmap.ViaAnnouncement
		}
		if !slices.Contains(ev.Means, need) {
			return fmt.Errorf("%w: %s", ErrNoRouterEvents, ev.Reason)
		}
	}
	return ctx.Err()
}
