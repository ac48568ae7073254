package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/portfwd/portfwd/internal/cli"
	"github.com/portfwd/portfwd/portmap"
)

// runKeep holds a mapping open until interrupted, printing each change.
func runKeep(ctx context.Context, e *env, args []string) error {
	var cf clientFlags
	fs := newFlagSet(e, "keep", &cf)
	var (
		ext   uint16
		proto string
		lease = time.Hour
		check = 30 * time.Second
	)
	fs.Var((*cli.Port)(&ext), "external", "the external port (default: PORT, the internal one)")
	fs.Var(protoFlag(&proto), "proto", "the protocol to map")
	fs.Var(&cli.Duration{P: &lease, Min: time.Second}, "lease", "the lease asked for at each renewal; it is renewed at half its life")
	desc := fs.String("desc", "portfwd keep", "the `text` the router shows beside the mapping (NAT-PMP and PCP keep none)")
	fs.Var(&cli.Duration{P: &check}, "check-interval", "how often to check that the router still holds the mapping")
	anyPort := fs.Bool("any", false, "accept another external port when the one asked for is taken")
	want4 := fs.Bool("ipv4", false, "keep an IPv4 port mapping (the default; with --ipv6, both)")
	want6 := fs.Bool("ipv6", false, "keep an IPv6 pinhole to this host's own address, renewed with UpdatePinhole or a PCP refresh")
	port, protos, err := cf.mappingArgs(fs, args, "keep 8080", &proto)
	if err != nil {
		return err
	}
	if *want6 && !*want4 && (given(fs, "external") || *anyPort) {
		return usagef("--external and --any do not apply to --ipv6 alone: a pinhole opens the port on this host's own address")
	}
	o, err := cf.options(e)
	if err != nil {
		return err
	}
	o.Progress = nil // the keeper reports through its events
	descGiven := given(fs, "desc")
	e.network("keep")
	var (
		keepers []keeper
		mu      sync.Mutex // serializes output lines from the keepers
		wg      sync.WaitGroup
	)
	if *want6 {
		ks, err := pinholeKeepers(ctx, e, &cf, port, protos, lease, check, *desc)
		if err != nil {
			return err
		}
		keepers = append(keepers, ks...)
	}
	if !*want6 || *want4 {
		for _, p := range protos {
			keepers = append(keepers, portmap.Keep(ctx, portmap.KeepConfig{
				Options:       o,
				Request:       portmap.Request{Protocol: p, InternalPort: port, ExternalPort: ext, Lease: lease, Description: *desc, Any: *anyPort},
				CheckInterval: check,
			}))
		}
	}
	for _, k := range keepers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ev := range k.Events() {
				mu.Lock()
				if ev.Kind == portmap.EventMapped {
					addNote(&ev.Mapping, descNote(ev.Mapping, descGiven))
				}
				printEvent(e, cf.json, ev)
				mu.Unlock()
			}
		}()
	}
	// Until Ctrl-C, or until a keeper gives up (the router refused for
	// good: exit 3 with its reason).
	var gaveUp error
	failed := make(chan error, len(keepers))
	for _, k := range keepers {
		go func() {
			select {
			case <-k.Done():
				if err := k.Err(); err != nil {
					failed <- err
				}
			case <-ctx.Done():
			}
		}()
	}
	select {
	case <-ctx.Done():
	case gaveUp = <-failed:
	}
	// Delete on exit, with a fresh budget: the command's context is done.
	cctx, cancel := context.WithTimeout(context.Background(), cf.timeout)
	defer cancel()
	var firstErr error
	for _, k := range keepers {
		if err := k.Close(cctx); err != nil && firstErr == nil {
			firstErr = fmt.Errorf("deleting the mapping on exit: %w", err)
		}
	}
	wg.Wait()
	if gaveUp != nil {
		return gaveUp
	}
	return firstErr
}

func printEvent(e *env, asJSON bool, ev portmap.Event) {
	if asJSON {
		b, _ := json.Marshal(jsonKeepEvent{Schema: schemaVersion, Event: snake(string(ev.Kind)), Time: ev.Time,
			Mapping: toJSON(ev.Mapping), Reason: ev.Reason, PreviousIP: addrString(ev.Previous)})
		fmt.Fprintln(e.stdout, string(b))
		return
	}
	m := ev.Mapping
	where := fmt.Sprintf("%s:%d/%s -> %s:%d", m.ExternalAddr, m.ExternalPort, m.Protocol, m.InternalClient, m.InternalPort)
	if m.Family == portmap.IPv6 {
		where = fmt.Sprintf("pinhole %s/%s (ID %s)", netip.AddrPortFrom(m.ExternalAddr, m.InternalPort), m.Protocol, m.ID)
		if m.ID == "" {
			where = fmt.Sprintf("pinhole for port %d/%s", m.InternalPort, m.Protocol)
		}
	}
	ts := ev.Time.Format("15:04:05")
	switch ev.Kind {
	case portmap.EventMapped:
		fmt.Fprintf(e.stdout, "%s mapped %s (%s, %s)\n", ts, where, m.Method.Name(), leaseText(m))
		// The warning speaks of a router's external IPv4 address; a
		// pinhole's address is this host's, and its note says what to know.
		if w := portmap.Classify(m.ExternalAddr).Warning(); w != "" && m.Family != portmap.IPv6 {
			fmt.Fprintf(e.stderr, "warning: %s\n", w)
		}
		printNote(e, m)
	case portmap.EventRenewed:
		fmt.Fprintf(e.stdout, "%s renewed %s (%s)\n", ts, where, leaseText(m))
		if ev.Reason != "" {
			fmt.Fprintf(e.stdout, "  %s\n", ev.Reason)
		}
		printNote(e, m)
	case portmap.EventRecreated:
		fmt.Fprintf(e.stdout, "%s recreated %s (%s)\n", ts, where, ev.Reason)
	case portmap.EventLost:
		fmt.Fprintf(e.stdout, "%s lost the mapping: %s\n", ts, ev.Reason)
	case portmap.EventAddressChanged:
		fmt.Fprintf(e.stdout, "%s external address changed: %s -> %s; now mapped at %s\n", ts, ev.Previous, m.ExternalAddr, where)
	case portmap.EventGatewayGone:
		fmt.Fprintf(e.stdout, "%s gateway unreachable: %s (retrying)\n", ts, ev.Reason)
	case portmap.EventGatewayBack:
		fmt.Fprintf(e.stdout, "%s gateway back: %s\n", ts, ev.Reason)
	case portmap.EventFailed:
		fmt.Fprintf(e.stdout, "%s the router refused, for now: %s (retrying)\n", ts, ev.Reason)
	case portmap.EventError:
		fmt.Fprintf(e.stdout, "%s giving up: %s\n", ts, ev.Reason)
	case portmap.EventDeleted:
		fmt.Fprintf(e.stdout, "%s deleted %s\n", ts, where)
	case portmap.EventLeftoverDeleted:
		fmt.Fprintf(e.stdout, "%s deleted %s: %s\n", ts, where, ev.Reason)
	}
}

func leaseText(m portmap.Mapping) string {
	if m.Permanent {
		return "permanent"
	}
	return "lease " + m.Lease.String()
}
