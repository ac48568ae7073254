package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/portfwd/portfwd/internal/cli"
	"github.com/portfwd/portfwd/portmap"
)

// IPv6 pinholes in the CLI: add/delete/list/keep --ipv6 and ip. A pinhole
// opens a port of this host's own IPv6 address (no NAT, so no external
// port); see portmap's Pinholer.

// pinholeOptions are the pinhole discovery options the client flags give.
func (cf *clientFlags) pinholeOptions(e *env) (portmap.PinholeOptions, error) {
	o := portmap.PinholeOptions{GatewayURL: cf.gateway, PCPServer: cf.natpmpServer, RequestTimeout: cf.timeout, StateDir: cf.stateDir}
	switch cf.protocol {
	case "upnp":
		o.Methods = []portmap.Method{portmap.UPnP}
	case "pcp":
		o.Methods = []portmap.Method{portmap.PCP}
	case "natpmp":
		return o, usagef("NAT-PMP has no IPv6: a pinhole is opened with UPnP (WANIPv6FirewallControl) or PCP; use --protocol upnp or pcp, or leave --protocol out")
	}
	if cf.natpmpServer.IsValid() && (cf.natpmpServer.Addr().Is4() || cf.natpmpServer.Addr().Is4In6()) {
		return o, usagef("--natpmp %s is an IPv4 address; a pinhole is asked for over IPv6: give the router's IPv6 address", cf.natpmp)
	}
	if cf.iface != "" {
		for _, name := range strings.Split(cf.iface, ",") {
			o.Interfaces = append(o.Interfaces, strings.TrimSpace(name))
		}
	}
	if cf.verbose {
		o.Logger = slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return o, nil
}

// pinholer finds the gateway that opens pinholes, within --timeout.
func (cf *clientFlags) pinholer(ctx context.Context, e *env, what string) (*portmap.Pinholer, error) {
	o, err := cf.pinholeOptions(e)
	if err != nil {
		return nil, err
	}
	dctx, cancel := context.WithTimeout(ctx, cf.timeout)
	defer cancel()
	e.network(what)
	return portmap.FindPinholer(dctx, o)
}

// describePinhole is one line for a pinhole as the router acknowledged it.
func describePinhole(m portmap.Mapping) string {
	return fmt.Sprintf("%s/%s from %s (pinhole %s, lease %v, %s; as the router acknowledged it, which cannot be read back)",
		netip.AddrPortFrom(m.ExternalAddr, m.InternalPort), m.Protocol, pinholeRemote(m), m.ID, m.Lease, m.Method.Name())
}

func pinholeRemote(m portmap.Mapping) string {
	switch {
	case m.RemoteHost == "" && m.RemotePort == 0:
		return "any"
	case m.RemotePort == 0:
		return m.RemoteHost
	case m.RemoteHost == "":
		return fmt.Sprintf("any:%d", m.RemotePort)
	}
	return fmt.Sprintf("[%s]:%d", m.RemoteHost, m.RemotePort)
}

// runAddPinhole is add --ipv6.
func runAddPinhole(ctx context.Context, e *env, fs *flag.FlagSet, cf *clientFlags, port uint16, protos []portmap.Protocol, client, remote netip.Addr, lease time.Duration, desc string) error {
	for _, name := range []string{"external", "any", "replace"} {
		if given(fs, name) {
			return usagef("--%s does not apply to --ipv6: a pinhole opens the port on this host's own address, with no external port", name)
		}
	}
	p, err := cf.pinholer(ctx, e, "add")
	if err != nil {
		return err
	}
	made := []jsonMapping{}
	for _, proto := range protos {
		m, err := p.Open(ctx, portmap.PinholeRequest{Protocol: proto, Port: port, Client: client, RemoteHost: remote, Lease: lease, Description: desc})
		if err != nil {
			if cf.json && len(made) > 0 {
				return reportJSON(e, jsonMappings{schemaVersion, made, jsonErrorOf(err)}, err)
			}
			return err
		}
		made = append(made, toJSON(m))
		if !cf.json {
			fmt.Fprintf(e.stdout, "opened %s\n", describePinhole(m))
			printNote(e, m)
		}
	}
	if cf.json {
		return printJSON(e.stdout, jsonMappings{Schema: schemaVersion, Mappings: made})
	}
	return nil
}

// runDeletePinhole is delete --ipv6 (by PORT/PROTO or --id).
func runDeletePinhole(ctx context.Context, e *env, cf *clientFlags, keys []portmap.Key, id string, client netip.Addr) error {
	p, err := cf.pinholer(ctx, e, "delete")
	if err != nil {
		return err
	}
	var ids []string
	if id != "" {
		// An ID this host has no record of (opened by another program):
		// UPnP can still close it by its ID.
		if _, err := findByID(p, id); err != nil {
			if err := p.Adopt(id); err != nil {
				return err
			}
		}
		ids = append(ids, id)
	}
	for _, k := range keys {
		m, err := p.Find(k.Protocol, k.ExternalPort, client)
		if err != nil {
			return err
		}
		ids = append(ids, m.ID)
	}
	result := struct {
		Schema  int        `json:"schema"`
		Deleted []jsonKey  `json:"deleted"`
		Count   int        `json:"count"`
		Error   *jsonError `json:"error,omitempty"`
	}{Schema: schemaVersion, Deleted: []jsonKey{}}
	for _, id := range ids {
		m, _ := findByID(p, id)
		note, err := p.Close(ctx, id)
		if err != nil {
			if cf.json && result.Count > 0 {
				result.Error = jsonErrorOf(err)
				return reportJSON(e, result, err)
			}
			return err
		}
		result.Deleted = append(result.Deleted, jsonKey{Protocol: m.Protocol, ExternalPort: m.ExternalPort, RemoteHost: m.RemoteHost,
			InternalClient: m.InternalClient, InternalPort: m.InternalPort, Description: m.Description, Family: "ipv6", ID: id})
		result.Count++
		if !cf.json {
			what := "pinhole " + id
			if m.InternalPort != 0 {
				what += fmt.Sprintf(" (%s/%s)", netip.AddrPortFrom(m.ExternalAddr, m.InternalPort), m.Protocol)
			}
			if note != "" {
				// Nothing was closed: say what the router said.
				fmt.Fprintf(e.stdout, "%s was already gone\n", what)
				fmt.Fprintf(e.stderr, "note: %s\n", note)
			} else {
				fmt.Fprintf(e.stdout, "closed %s\n", what)
			}
		}
	}
	if cf.json {
		return printJSON(e.stdout, result)
	}
	return nil
}

func findByID(p *portmap.Pinholer, id string) (portmap.Mapping, error) {
	ms, err := p.Pinholes()
	if err != nil {
		return portmap.Mapping{}, err
	}
	for _, m := range ms {
		if m.ID == id {
			return m, nil
		}
	}
	return portmap.Mapping{}, fmt.Errorf("no record of pinhole %s", id)
}

// pinholeRecords are this host's recorded pinholes, as Mappings.
func pinholeRecords(dir string) ([]portmap.Mapping, []string, error) {
	recs, err := portmap.RememberedPinholes(dir)
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	var ms []portmap.Mapping
	var via []string
	for _, r := range recs {
		ms = append(ms, r.Mapping(now))
		via = append(via, r.Gateway)
	}
	return ms, via, nil
}

// printPinholes prints the pinholes table of list.
func printPinholes(e *env, ms []portmap.Mapping, via []string) error {
	fmt.Fprintln(e.stdout, "\nIPv6 pinholes this host opened (from its records: routers cannot list pinholes):")
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tPROTO\tADDRESS\tREMOTE\tLEASE LEFT\tVIA\tDESCRIPTION")
	for i, m := range ms {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%v\t%s %s\t%s\n", m.ID, m.Protocol, netip.AddrPortFrom(m.ExternalAddr, m.InternalPort),
			pinholeRemote(m), m.Lease, m.Method.Name(), via[i], m.Description)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "%d pinhole(s)\n", len(ms))
	return nil
}

// hostIPv6 is this host's IPv6 address for ip: the stable global one
// pinholes are opened for, and why.
func hostIPv6() (netip.Addr, string, error) {
	addrs, err := portmap.HostAddrs6()
	if err != nil {
		return netip.Addr{}, "", err
	}
	h, why, err := portmap.ChooseAddr6(addrs, "")
	return h.Addr, why, err
}

// pinholeKeeper makes keep's IPv6 keepers.
func pinholeKeepers(ctx context.Context, e *env, cf *clientFlags, port uint16, protos []portmap.Protocol, lease, check time.Duration, desc string) ([]keeper, error) {
	p, err := cf.pinholer(ctx, e, "keep")
	if err != nil {
		return nil, err
	}
	var ks []keeper
	for _, proto := range protos {
		ks = append(ks, portmap.KeepPinhole(ctx, p, portmap.PinholeRequest{Protocol: proto, Port: port, Lease: lease, Description: desc}, check))
	}
	return ks, nil
}

// keeper is what keep holds: a port mapping's Keeper or a PinholeKeeper.
type keeper interface {
	Events() <-chan portmap.Event
	Done() <-chan struct{}
	Err() error
	Close(ctx context.Context) error
}

// idFlag is delete's --id: a pinhole ID (UPnP UniqueID or pcp-…).
type idFlag struct{ s *string }

func (f idFlag) String() string {
	if f.s == nil {
		return ""
	}
	return *f.s
}
func (f idFlag) Placeholder() string { return "ID" }
func (f idFlag) Set(v string) error {
	v = strings.TrimSpace(v)
	if v == "" {
		return &cli.ValueError{Msg: "a pinhole ID is a number (UPnP) or pcp-… (PCP), as `portfwd list` shows it"}
	}
	*f.s = v
	return nil
}
