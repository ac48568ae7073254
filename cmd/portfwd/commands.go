package main

import (
	"context"
	"flag"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/portfwd/portfwd/internal/cli"
	"github.com/portfwd/portfwd/portmap"
)

func runDiscover(ctx context.Context, e *env, args []string) error {
	var cf clientFlags
	fs := newFlagSet(e, "discover", &cf)
	fs.BoolVar(&cf.wait, "wait", false, "collect every gateway until --timeout instead of stopping at the first usable one")
	if err := cf.parseNoArgs(fs, args); err != nil {
		return err
	}
	gws, err := cf.discover(ctx, e)
	if err != nil {
		return err
	}
	out := make([]jsonGateway, 0, len(gws))
	for _, g := range gws {
		rctx, cancel := cf.requestCtx(ctx, 1)
		info, err := g.Info(rctx)
		cancel()
		j := jsonGateway{Method: g.Method(), Gateway: g.Addr(), Location: info.Location, ServiceType: info.ServiceType,
			Status: info.ConnectionStatus, Connected: info.Connected, Problem: info.Problem, jsonExternalIP: externalIP(info.ExternalIP)}
		if err != nil && j.Problem == "" {
			j.Problem = sentence(err)
		}
		out = append(out, j)
	}
	if cf.json {
		return printJSON(e.stdout, struct {
			Schema   int           `json:"schema"`
			Gateways []jsonGateway `json:"gateways"`
		}{schemaVersion, out})
	}
	for i, g := range out {
		fmt.Fprintf(e.stdout, "%d. %s  %s\n", i+1, g.Method.Name(), g.Gateway)
		if g.Location != "" {
			fmt.Fprintf(e.stdout, "   description: %s\n", g.Location)
		}
		if g.ServiceType != "" {
			fmt.Fprintf(e.stdout, "   service:     %s\n", g.ServiceType)
		}
		status := "not connected"
		if g.Connected {
			status = "connected"
		}
		if g.Status != "" {
			status += " (" + g.Status + ")"
		}
		fmt.Fprintf(e.stdout, "   status:      %s\n", status)
		if g.Problem != "" {
			fmt.Fprintf(e.stdout, "   problem:     %s\n", g.Problem)
		}
		if g.ExternalIP != "" {
			fmt.Fprintf(e.stdout, "   external IP: %s (%s)\n", g.ExternalIP, portmap.Classify(netip.MustParseAddr(g.ExternalIP)))
		}
		if g.Warning != "" {
			fmt.Fprintf(e.stdout, "   warning:     %s\n", g.Warning)
		}
	}
	return nil
}

func runInfo(ctx context.Context, e *env, args []string) error {
	var cf clientFlags
	fs := newFlagSet(e, "info", &cf)
	g, err := cf.parseAndFind(ctx, e, fs, args)
	if err != nil {
		return err
	}
	rctx, cancel := cf.requestCtx(ctx, 1)
	defer cancel()
	info, err := g.Info(rctx)
	if err != nil {
		return err
	}
	if cf.json {
		return printJSON(e.stdout, toJSONInfo(g, info))
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	row := func(k, v string) {
		if v != "" {
			fmt.Fprintf(tw, "%s:\t%s\n", k, v)
		}
	}
	row("Protocol", info.Method.Name())
	row("Friendly name", info.FriendlyName)
	mf := info.Manufacturer
	if info.ManufacturerURL != "" {
		mf += " (" + info.ManufacturerURL + ")"
	}
	row("Manufacturer", mf)
	row("Model name", info.ModelName)
	row("Model number", info.ModelNumber)
	row("Model description", info.ModelDescription)
	row("Serial number", info.SerialNumber)
	row("UDN", info.UDN)
	row("Presentation URL", info.PresentationURL)
	row("Description URL", info.Location)
	row("Control URL", info.ControlURL)
	row("Service type", info.ServiceType)
	if info.Server != "" {
		row(info.Method.Name()+" server", info.Server)
	}
	if info.Epoch != 0 {
		row("Epoch", strconv.FormatUint(uint64(info.Epoch), 10)+" s")
	}
	status := "not connected"
	if info.Connected {
		status = "connected"
	}
	if info.ConnectionStatus != "" {
		status += " (" + info.ConnectionStatus + ")"
	}
	row("Status", status)
	row("Problem", info.Problem)
	row("Connection type", info.ConnectionType)
	if info.Uptime > 0 {
		row("Uptime", info.Uptime.String())
	}
	link := info.LinkType
	if info.LinkStatus != "" {
		link = strings.TrimSpace(link + " " + info.LinkStatus)
	}
	if info.UpstreamBps > 0 || info.DownstreamBps > 0 {
		link += fmt.Sprintf(" (down %s, up %s)", bps(info.DownstreamBps), bps(info.UpstreamBps))
	}
	row("Link", strings.TrimSpace(link))
	if info.ExternalIP.IsValid() && !info.ExternalIP.IsUnspecified() {
		row("External IP", info.ExternalIP.String())
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(info.Services) > 0 {
		fmt.Fprintln(e.stdout, "Services:")
		for _, s := range info.Services {
			fmt.Fprintf(e.stdout, "  %s\n", s)
		}
	}
	return nil
}

func bps(v uint64) string {
	switch {
	case v >= 1e9:
		return fmt.Sprintf("%.1f Gbit/s", float64(v)/1e9)
	case v >= 1e6:
		return fmt.Sprintf("%.1f Mbit/s", float64(v)/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%.0f kbit/s", float64(v)/1e3)
	}
	return fmt.Sprintf("%d bit/s", v)
}

func runIP(ctx context.Context, e *env, args []string) error {
	var cf clientFlags
	fs := newFlagSet(e, "ip", &cf)
	only4 := fs.Bool("ipv4", false, "show only the router's external IPv4 address")
	only6 := fs.Bool("ipv6", false, "show only this host's global IPv6 address (no NAT: it is public itself; no discovery)")
	if err := cf.parseNoArgs(fs, args); err != nil {
		return err
	}
	if *only4 && *only6 {
		return usagef("--ipv4 and --ipv6 together are the default: leave both out")
	}
	var ip6 netip.Addr
	var why6 string
	if !*only4 {
		var err error
		ip6, why6, err = hostIPv6()
		if err != nil && *only6 {
			return err
		}
	}
	if *only6 {
		if cf.json {
			return printJSON(e.stdout, struct {
				Schema   int    `json:"schema"`
				IPv6     string `json:"ipv6"`
				IPv6Note string `json:"ipv6_note"`
			}{schemaVersion, ip6.String(), why6})
		}
		fmt.Fprintln(e.stdout, ip6)
		fmt.Fprintf(e.stderr, "note: %s; it is public itself (no NAT on IPv6), and the router lets inbound connections in only through a pinhole ('portfwd add PORT --ipv6')\n", why6)
		return nil
	}
	g, err := cf.first(ctx, e)
	if err != nil {
		return err
	}
	rctx, cancel := cf.requestCtx(ctx, 1)
	defer cancel()
	ip, err := g.ExternalIP(rctx)
	if err != nil {
		return err
	}
	c := portmap.Classify(ip)
	if cf.json {
		return printJSON(e.stdout, struct {
			Schema  int            `json:"schema"`
			Method  portmap.Method `json:"method"`
			Gateway string         `json:"gateway"`
			jsonExternalIP
			IPv6     string `json:"ipv6"`
			IPv6Note string `json:"ipv6_note"`
		}{schemaVersion, g.Method(), g.Addr(), externalIP(ip), addrString(ip6), why6})
	}
	fmt.Fprintln(e.stdout, ip)
	if w := c.Warning(); w != "" {
		// On stderr, so that "$(portfwd ip)" stays just the address.
		fmt.Fprintf(e.stderr, "warning: %s\n", w)
	}
	if ip6.IsValid() {
		// Second line: this host's own IPv6 address (pass --ipv4 for
		// the IPv4 address alone).
		fmt.Fprintln(e.stdout, ip6)
	}
	return nil
}

func runList(ctx context.Context, e *env, args []string) error {
	var cf clientFlags
	fs := newFlagSet(e, "list", &cf)
	ipv6 := fs.Bool("ipv6", false, "list only the IPv6 pinholes this host opened, from its records (no discovery)")
	if err := cf.parseNoArgs(fs, args); err != nil {
		return err
	}
	pins, via, perr := pinholeRecords(cf.stateDir)
	if *ipv6 {
		if perr != nil {
			return perr
		}
		if cf.json {
			return printJSON(e.stdout, struct {
				Schema   int           `json:"schema"`
				Pinholes []jsonMapping `json:"pinholes"`
			}{schemaVersion, toJSONs(pins)})
		}
		return printPinholes(e, pins, via)
	}
	g, err := cf.listable(ctx, e)
	if err != nil {
		return err
	}
	rctx, cancel := cf.requestCtx(ctx, 20)
	defer cancel()
	var progress func(int)
	if e.stderrIsTerminal && !cf.json {
		progress = func(n int) { fmt.Fprintf(e.stderr, "\r\033[Kreading mappings: %d", n) }
	}
	ms, err := g.List(rctx, progress)
	if progress != nil {
		fmt.Fprint(e.stderr, "\r\033[K")
	}
	if err != nil && len(ms) == 0 {
		return err
	}
	if cf.json {
		return reportJSON(e, struct {
			Schema   int            `json:"schema"`
			Method   portmap.Method `json:"method"`
			Gateway  string         `json:"gateway"`
			Mappings []jsonMapping  `json:"mappings"`
			Pinholes []jsonMapping  `json:"pinholes"`
			Error    *jsonError     `json:"error,omitempty"`
		}{schemaVersion, g.Method(), g.Addr(), toJSONs(ms), toJSONs(pins), jsonErrorOf(err)}, err)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PROTO\tEXTERNAL\tINTERNAL\tENABLED\tLEASE\tREMOTE\tDESCRIPTION")
	for _, m := range ms {
		lease := "permanent"
		if !m.Permanent {
			lease = m.Lease.String()
		}
		remote := m.RemoteHost
		if remote == "" {
			remote = "any"
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\n", m.Protocol, m.ExternalPort,
			netip.AddrPortFrom(mustAddr(m.InternalClient), m.InternalPort), yesNo(m.Enabled), lease, remote, m.Description)
	}
	if ferr := tw.Flush(); ferr != nil {
		return ferr
	}
	fmt.Fprintf(e.stdout, "%d mapping(s) on %s\n", len(ms), g.Addr())
	if len(pins) > 0 {
		if perr := printPinholes(e, pins, via); perr != nil {
			return perr
		}
	}
	return err
}

func mustAddr(s string) netip.Addr {
	a, _ := netip.ParseAddr(s)
	return a
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// mappingArgs parses the command line of a command that takes one internal
// PORT with --external and --proto (add, keep). proto is the flag's
// value: it exists only once parsing is done.
func (cf *clientFlags) mappingArgs(fs *flag.FlagSet, args []string, example string, proto *string) (uint16, []portmap.Protocol, error) {
	if err := parse(fs, args, cf); err != nil {
		return 0, nil, err
	}
	name, _, _ := strings.Cut(example, " ")
	if len(cf.positions) != 1 {
		return 0, nil, usagef("%s takes one internal PORT, e.g. 'portfwd %s'", name, example)
	}
	port, err := parsePort(cf.positions[0], "internal port")
	if err != nil {
		return 0, nil, err
	}
	return port, protocols(*proto), nil
}

// protoFlag is the --proto flag of a mapping: tcp, udp or both.
func protoFlag(p *string) *cli.Enum {
	*p = "tcp"
	return &cli.Enum{P: p, Choices: []string{"tcp", "udp", "both"}}
}

// protocols are the protocols of a --proto value (tcp, udp or both).
func protocols(s string) []portmap.Protocol {
	switch strings.ToLower(s) {
	case "both":
		return []portmap.Protocol{portmap.TCP, portmap.UDP}
	case "udp":
		return []portmap.Protocol{portmap.UDP}
	}
	return []portmap.Protocol{portmap.TCP}
}

// parsePort parses a positional port argument; what names it.
func parsePort(s, what string) (uint16, error) {
	p, err := cli.ParsePort(s)
	if err != nil {
		return 0, usagef("%s: %v", what, err)
	}
	return p, nil
}

// leaseFlag is the --lease flag of a mapping: 0 or at least a second
// (UPnP counts leases in seconds, and 0 there means permanent).
func leaseFlag(d *time.Duration) *cli.Duration {
	return &cli.Duration{P: d, ZeroOK: true, Min: time.Second}
}

// descNote is what to add to a mapping's note when the user gave a
// description that the protocol cannot carry.
func descNote(m portmap.Mapping, given bool) string {
	if !given || m.Method == portmap.UPnP || m.Description == "" {
		return ""
	}
	return fmt.Sprintf("%s has no descriptions: %q is kept in this host's records only", m.Method.Name(), m.Description)
}

// addNote appends note to m's.
func addNote(m *portmap.Mapping, note string) {
	switch {
	case note == "":
	case m.Note == "":
		m.Note = note
	default:
		m.Note += "; " + note
	}
}

// given reports whether the flag name was on the command line.
func given(fs *flag.FlagSet, name string) bool {
	found := false
	fs.Visit(func(f *flag.Flag) { found = found || f.Name == name })
	return found
}

// reportJSON prints a command's JSON object, which carries err when the
// command failed after part of its work, and returns err marked as
// printed.
func reportJSON(e *env, v any, err error) error {
	if perr := printJSON(e.stdout, v); perr != nil {
		return perr
	}
	if err != nil {
		return reported{err}
	}
	return nil
}

// jsonMappings is the object of add and edit.
type jsonMappings struct {
	Schema   int           `json:"schema"`
	Mappings []jsonMapping `json:"mappings"`
	Error    *jsonError    `json:"error,omitempty"`
}

func runAdd(ctx context.Context, e *env, args []string) error {
	var cf clientFlags
	fs := newFlagSet(e, "add", &cf)
	var (
		ext    uint16
		proto  string
		lease  time.Duration
		client cli.Addr
	)
	fs.Var((*cli.Port)(&ext), "external", "the external port (default: PORT, the internal one)")
	fs.Var(protoFlag(&proto), "proto", "the protocol to map")
	fs.Var(leaseFlag(&lease), "lease", "how long the mapping lasts; 0 asks for a permanent one on UPnP and 2h on NAT-PMP and PCP (the router decides)")
	fs.Var(&client, "client", "the LAN host to forward to (default: this host); with --ipv6, which of this host's own IPv6 addresses the pinhole is for (default: its stable global one)")
	desc := fs.String("desc", "portfwd", "the `text` the router shows beside the mapping (NAT-PMP and PCP keep none)")
	anyPort := fs.Bool("any", false, "accept another external port when the one asked for is taken")
	replace := fs.Bool("replace", false, "replace a mapping already at the external port (without it, portfwd refuses and names it)")
	ipv6 := fs.Bool("ipv6", false, "open an IPv6 pinhole to this host's own address instead of an IPv4 port mapping (UPnP WANIPv6FirewallControl or PCP; lease default 1h)")
	port, protos, err := cf.mappingArgs(fs, args, "add 8080 --external 18080", &proto)
	if err != nil {
		return err
	}
	if *ipv6 {
		return runAddPinhole(ctx, e, fs, &cf, port, protos, netip.Addr(client), netip.Addr{}, lease, *desc)
	}
	req := portmap.Request{InternalPort: port, ExternalPort: ext, Lease: lease, Description: *desc, Any: *anyPort,
		Replace: *replace, InternalClient: netip.Addr(client)}
	g, err := cf.first(ctx, e)
	if err != nil {
		return err
	}
	made := []jsonMapping{}
	for _, p := range protos {
		req.Protocol = p
		rctx, cancel := cf.requestCtx(ctx, 2)
		m, err := g.Add(rctx, req)
		cancel()
		if err != nil {
			if cf.json && len(made) > 0 {
				return reportJSON(e, jsonMappings{schemaVersion, made, jsonErrorOf(err)}, err)
			}
			return err
		}
		addNote(&m, descNote(m, given(fs, "desc")))
		made = append(made, toJSON(m))
		if !cf.json {
			fmt.Fprintf(e.stdout, "added %s\n", describeMapping(m))
			printNote(e, m)
		}
	}
	if cf.json {
		return printJSON(e.stdout, jsonMappings{Schema: schemaVersion, Mappings: made})
	}
	return nil
}

// describeMapping is one line for a mapping as the router granted it:
// where it is mapped, where it leads, its lease, and how that is known.
func describeMapping(m portmap.Mapping) string {
	pub := "external port "
	if m.ExternalAddr.IsValid() {
		pub = m.ExternalAddr.String() + ":"
	}
	how := "as the router granted it"
	if m.ReadBack {
		how = "as the router holds it"
	}
	return fmt.Sprintf("%s%d/%s -> %s:%d (%s, %s; %s)", pub, m.ExternalPort, m.Protocol,
		m.InternalClient, m.InternalPort, leaseText(m), m.Method.Name(), how)
}

// printNote prints what the router granted differently, on stderr so that
// the result lines stay one per mapping.
func printNote(e *env, m portmap.Mapping) {
	if m.Note != "" {
		fmt.Fprintf(e.stderr, "note: %s\n", m.Note)
	}
}

// parseKey parses a mapping argument, EXT/PROTO, whose protocol is
// defProto when it has none.
func parseKey(s, defProto string) ([]portmap.Key, error) {
	portPart, protoPart, found := strings.Cut(s, "/")
	if !found {
		protoPart = defProto
	}
	port, err := cli.ParsePort(portPart)
	if err != nil {
		return nil, usagef("%q: the external port: %v", s, err)
	}
	switch strings.ToLower(protoPart) {
	case "tcp", "udp", "both":
	default:
		return nil, usagef("%q: the protocol after the / must be tcp, udp or both, not %q", s, protoPart)
	}
	protos := protocols(protoPart)
	keys := make([]portmap.Key, len(protos))
	for i, p := range protos {
		keys[i] = portmap.Key{Protocol: p, ExternalPort: port}
	}
	return keys, nil
}

func runEdit(ctx context.Context, e *env, args []string) error {
	var cf clientFlags
	fs := newFlagSet(e, "edit", &cf)
	var (
		c                  portmap.Change
		internal, external uint16
		client, remote     cli.Addr
		lease              time.Duration
	)
	fs.Var((*cli.Port)(&internal), "internal", "the new internal port")
	fs.Var((*cli.Port)(&external), "external", "the new external port")
	fs.Var(&client, "client", "the new LAN host")
	desc := fs.String("desc", "", "the new description, as `text`")
	fs.Var(leaseFlag(&lease), "lease", "the new lease; 0 asks for a permanent mapping")
	enabled := fs.Bool("enabled", true, "enable or disable the mapping (--enabled=false)")
	fs.Var(&remote, "remote", "the remote host of the entry to edit (UPnP; default: any)")
	fs.BoolVar(&c.Replace, "replace", false, "with --external: replace a mapping already at the new external port (without it, portfwd refuses and names it)")
	if err := parse(fs, args, &cf); err != nil {
		return err
	}
	if len(cf.positions) != 1 {
		return usagef("edit takes one mapping, e.g. 'portfwd edit 18080/tcp --internal 8081'")
	}
	keys, err := parseKey(cf.positions[0], "tcp")
	if err != nil {
		return err
	}
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "internal":
			c.InternalPort = &internal
		case "external":
			c.ExternalPort = &external
		case "client":
			a := netip.Addr(client)
			c.InternalClient = &a
		case "desc":
			c.Description = desc
		case "lease":
			c.Lease = &lease
		case "enabled":
			c.Enabled = enabled
		}
	})
	if c == (portmap.Change{Replace: c.Replace}) {
		return usagef("edit needs something to change: --internal, --external, --client, --desc, --lease or --enabled")
	}
	g, err := cf.first(ctx, e)
	if err != nil {
		return err
	}
	out := []jsonMapping{}
	for _, k := range keys {
		k.RemoteHost = remote.String()
		rctx, cancel := cf.requestCtx(ctx, 3)
		m, err := g.Edit(rctx, k, c)
		cancel()
		if err != nil {
			if cf.json && len(out) > 0 {
				return reportJSON(e, jsonMappings{schemaVersion, out, jsonErrorOf(err)}, err)
			}
			return err
		}
		addNote(&m, descNote(m, c.Description != nil))
		out = append(out, toJSON(m))
		if !cf.json {
			fmt.Fprintf(e.stdout, "edited %s: now %s enabled=%s %q\n", k, describeMapping(m), yesNo(m.Enabled), m.Description)
			printNote(e, m)
		}
	}
	if cf.json {
		return printJSON(e.stdout, jsonMappings{Schema: schemaVersion, Mappings: out})
	}
	return nil
}

func runDelete(ctx context.Context, e *env, args []string) error {
	var cf clientFlags
	fs := newFlagSet(e, "delete", &cf)
	var (
		rng    portRange
		proto  string
		remote cli.Addr
	)
	fs.Var(&rng, "range", "delete every mapping of --proto whose external port is in this range")
	fs.Var(protoFlag(&proto), "proto", "the protocol, for --range and for a mapping given without /PROTO")
	fs.Var(&remote, "remote", "the remote host of the entry (UPnP; default: any)")
	ipv6 := fs.Bool("ipv6", false, "close an IPv6 pinhole this host opened (by PORT/PROTO, or --id) instead of an IPv4 port mapping")
	var id string
	fs.Var(idFlag{&id}, "id", "close the IPv6 pinhole with this ID (as `portfwd list` shows it; implies --ipv6)")
	var client cli.Addr
	fs.Var(&client, "client", "with --ipv6, the address of this host whose pinhole to close, when it has several")
	if err := parse(fs, args, &cf); err != nil {
		return err
	}
	if *ipv6 || id != "" {
		if rng.end != 0 || given(fs, "remote") {
			return usagef("--range and --remote do not apply to pinholes; close one by PORT/PROTO or --id")
		}
		if (id == "") == (len(cf.positions) == 0) || len(cf.positions) > 1 {
			return usagef("delete --ipv6 takes one pinhole: 'portfwd delete 8080/tcp --ipv6' or 'portfwd delete --id 3'")
		}
		var keys []portmap.Key
		if len(cf.positions) == 1 {
			var err error
			if keys, err = parseKey(cf.positions[0], proto); err != nil {
				return err
			}
		}
		return runDeletePinhole(ctx, e, &cf, keys, id, netip.Addr(client))
	}
	if (rng.end == 0) == (len(cf.positions) == 0) || len(cf.positions) > 1 {
		return usagef("delete takes one mapping (e.g. 'portfwd delete 18080/tcp') or --range START-END")
	}
	var keys []portmap.Key
	if rng.end == 0 {
		var err error
		if keys, err = parseKey(cf.positions[0], proto); err != nil {
			return err
		}
	}
	result := struct {
		Schema  int        `json:"schema"`
		Deleted []jsonKey  `json:"deleted"`
		Count   int        `json:"count"`
		Error   *jsonError `json:"error,omitempty"`
	}{Schema: schemaVersion, Deleted: []jsonKey{}}
	done := func(err error) error {
		if !cf.json {
			return err
		}
		if len(result.Deleted) == 0 && err != nil {
			return err
		}
		result.Error = jsonErrorOf(err)
		return reportJSON(e, result, err)
	}
	g, err := cf.first(ctx, e)
	if err != nil {
		return err
	}
	if rng.end != 0 {
		for _, p := range protocols(proto) {
			rctx, cancel := cf.requestCtx(ctx, 20)
			gone, err := g.DeleteRange(rctx, p, rng.start, rng.end)
			cancel()
			for _, m := range gone {
				result.Deleted = append(result.Deleted, jsonKey{Protocol: m.Protocol, ExternalPort: m.ExternalPort, RemoteHost: m.RemoteHost,
					InternalClient: m.InternalClient, InternalPort: m.InternalPort, Description: m.Description})
				result.Count++
				if !cf.json {
					fmt.Fprintf(e.stdout, "deleted %s -> %s:%d %q\n", m.Key(), m.InternalClient, m.InternalPort, m.Description)
				}
			}
			if !cf.json {
				fmt.Fprintf(e.stdout, "deleted %d %s mapping(s) in %d-%d\n", len(gone), p, rng.start, rng.end)
			}
			if err != nil {
				return done(err)
			}
		}
		return done(nil)
	}
	for _, k := range keys {
		k.RemoteHost = remote.String()
		rctx, cancel := cf.requestCtx(ctx, 1)
		err := g.Delete(rctx, k)
		cancel()
		if err != nil {
			return done(err)
		}
		result.Deleted = append(result.Deleted, jsonKey{Protocol: k.Protocol, ExternalPort: k.ExternalPort, RemoteHost: k.RemoteHost})
		result.Count++
		if !cf.json {
			fmt.Fprintf(e.stdout, "deleted %s\n", k)
		}
	}
	return done(nil)
}

// portRange is --range START-END.
type portRange struct{ start, end uint16 }

func (r *portRange) String() string {
	if r.end == 0 {
		return ""
	}
	return fmt.Sprintf("%d-%d", r.start, r.end)
}

// Placeholder is how help names the value.
func (r *portRange) Placeholder() string { return "START-END" }

// Set parses START-END.
func (r *portRange) Set(s string) error {
	a, b, ok := strings.Cut(s, "-")
	if !ok {
		return &cli.ValueError{Msg: fmt.Sprintf("%q is not a range of ports like 18000-18100", s)}
	}
	start, err := cli.ParsePort(a)
	if err != nil {
		return &cli.ValueError{Msg: fmt.Sprintf("the start: %v", err)}
	}
	end, err := cli.ParsePort(b)
	if err != nil {
		return &cli.ValueError{Msg: fmt.Sprintf("the end: %v", err)}
	}
	if end < start {
		return &cli.ValueError{Msg: fmt.Sprintf("%s ends below its start", s)}
	}
	r.start, r.end = start, end
	return nil
}
