package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/portfwd/portfwd/internal/cli"
	"github.com/portfwd/portfwd/portmap"
)

// runWatch prints every change on the gateway until interrupted: its
// external address, its mapping table, its connection status, restarts,
// and its going away and coming back.
//
// With --json it prints one JSON object per line, a portmap.WatchEvent:
//
//	schema          1
//	event           initial, external_address_changed, mappings_changed,
//	                router_restarted, status_changed, gateway_gone, gateway_back
//	time            RFC 3339 time of the event
//	gateway         control URL (UPnP) or host:port (NAT-PMP, PCP)
//	method          upnp, natpmp or pcp
//	external_ip     the external address after the event; "" when unknown
//	previous_external_ip  the old address (external_address_changed)
//	count           number of mappings after the event; -1 when the
//	                protocol cannot list them (NAT-PMP, PCP)
//	previous_count  the count before a mappings_changed event (else = count)
//	added, removed  mappings_changed: the entries that appeared and went
//	                (mapping objects as 'list --json' prints them; [] else)
//	status          UPnP connection status; "" when unknown
//	previous_status the old status (status_changed)
//	reason          what showed a restart, why the gateway is gone, which
//	                gateway is back; for initial, how the gateway is watched
//	via             how the change was noticed: start, gena (UPnP event),
//	                poll, announcement (NAT-PMP/PCP over IPv4, PCP over
//	                IPv6), discovery
func runWatch(ctx context.Context, e *env, args []string) error {
	var cf clientFlags
	fs := newFlagSet(e, "watch", &cf)
	interval := portmap.DefaultWatchPollInterval
	var callback cli.Addr
	fs.Var(&cli.Duration{P: &interval}, "interval", "read the gateway this often: a safety net under UPnP events and announcements, the only means when a router has neither")
	noEvents := fs.Bool("no-events", false, "do not subscribe to the router's UPnP events (GENA); poll only")
	noAnn := fs.Bool("no-announcements", false, "do not listen for NAT-PMP/PCP announcements on 224.0.0.1:5350 nor for PCP announcements on [ff02::1]:5350")
	fs.Var(&callback, "callback", "the local address to receive UPnP events on (default: this host's address towards the router)")
	if err := parse(fs, args, &cf); err != nil {
		return err
	}
	if len(cf.positions) > 0 {
		return usagef("watch takes no arguments (got %q); it watches the gateway discovery finds", cf.positions[0])
	}
	wo := portmap.WatchOptions{PollInterval: interval, NoGENA: *noEvents, NoAnnouncements: *noAnn, CallbackAddr: netip.Addr(callback)}
	if wo.CallbackAddr.IsUnspecified() {
		return usagef("--callback: %s is a wildcard; give this host's address on the router's network", wo.CallbackAddr)
	}
	o, err := cf.options(e)
	if err != nil {
		return err
	}
	o.Progress = nil // events say what happens
	e.network("watch")
	events, err := portmap.Watch(ctx, o, wo)
	if err != nil {
		return err
	}
	for ev := range events {
		printWatchEvent(e, cf.json, ev)
	}
	return nil
}

func printWatchEvent(e *env, asJSON bool, ev portmap.WatchEvent) {
	if asJSON {
		b, _ := json.Marshal(toJSONWatchEvent(ev))
		fmt.Fprintln(e.stdout, string(b))
		return
	}
	ts := ev.Time.Format("15:04:05")
	via := ""
	if ev.Via != portmap.ViaStart {
		via = " [" + string(ev.Via) + "]"
	}
	switch ev.Kind {
	case portmap.WatchInitial:
		fmt.Fprintf(e.stdout, "%s %s gateway at %s: %s (%s)\n", ts, ev.Method.Name(), ev.Gateway, stateText(ev), ev.Reason)
		if w := portmap.Classify(ev.ExternalAddr).Warning(); w != "" && ev.ExternalAddr.IsValid() {
			fmt.Fprintf(e.stderr, "warning: %s\n", w)
		}
	case portmap.WatchExternalAddressChanged:
		fmt.Fprintf(e.stdout, "%s external address changed: %s -> %s%s\n", ts, addrText(ev.Previous), addrText(ev.ExternalAddr), via)
	case portmap.WatchMappingsChanged:
		fmt.Fprintf(e.stdout, "%s mappings changed: %s -> %s%s\n", ts, countText(ev.PreviousCount), countText(ev.Count), via)
		for _, m := range ev.Added {
			fmt.Fprintf(e.stdout, "  + %s\n", mappingText(m))
		}
		for _, m := range ev.Removed {
			fmt.Fprintf(e.stdout, "  - %s\n", mappingText(m))
		}
	case portmap.WatchStatusChanged:
		fmt.Fprintf(e.stdout, "%s connection status: %s -> %s%s\n", ts, ev.PreviousStatus, ev.Status, via)
	case portmap.WatchRouterRestarted:
		fmt.Fprintf(e.stdout, "%s router restarted: %s%s\n", ts, ev.Reason, via)
	case portmap.WatchGatewayGone:
		fmt.Fprintf(e.stdout, "%s gateway unreachable: %s (looking for it again)\n", ts, ev.Reason)
	case portmap.WatchGatewayBack:
		fmt.Fprintf(e.stdout, "%s gateway back: %s: %s\n", ts, ev.Reason, stateText(ev))
	default:
		fmt.Fprintf(e.stdout, "%s %s%s\n", ts, ev.Kind, via)
	}
}

// stateText is the gateway's state as an event carries it.
func stateText(ev portmap.WatchEvent) string {
	parts := []string{"external address " + addrText(ev.ExternalAddr)}
	if ev.Count >= 0 {
		parts = append(parts, countText(ev.Count))
	}
	if ev.Status != "" {
		parts = append(parts, ev.Status)
	}
	return strings.Join(parts, ", ")
}

func addrText(a netip.Addr) string {
	if !a.IsValid() {
		return "unknown"
	}
	return a.String()
}

func countText(n int) string {
	switch {
	case n < 0:
		return "unknown"
	case n == 1:
		return "1 mapping"
	}
	return fmt.Sprintf("%d mappings", n)
}

// mappingText is one mapping on one line:
// 18080/TCP -> 10.77.0.2:8080 "web" (lease 1h0m0s).
func mappingText(m portmap.Mapping) string {
	s := fmt.Sprintf("%d/%s -> %s:%d", m.ExternalPort, m.Protocol, m.InternalClient, m.InternalPort)
	if m.RemoteHost != "" {
		s += " from " + m.RemoteHost
	}
	if m.Description != "" {
		s += fmt.Sprintf(" %q", m.Description)
	}
	if !m.Enabled {
		s += " (disabled)"
	}
	if m.Lease > 0 {
		s += " (lease " + m.Lease.Round(time.Second).String() + ")"
	}
	return s
}
