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

	"github.com/portfwd/portfwd/portmap"
)

// jsonMapping is a mapping as --json prints it.
type jsonMapping struct {
	portmap.Mapping
	LeaseSeconds int64 `json:"lease_seconds"`
}

func toJSON(m portmap.Mapping) jsonMapping {
	return jsonMapping{Mapping: m, LeaseSeconds: int64(m.Lease / time.Second)}
}

func runDiscover(ctx context.Context, e *env, args []string) error {
	var cf clientFlags
	fs := newFlagSet(e, "discover", &cf)
	fs.BoolVar(&cf.wait, "wait", false, "collect every gateway until --timeout instead of stopping at the first usable one")
	if err := parse(fs, args, &cf); err != nil {
		return err
	}
	gws, err := cf.discover(ctx, e)
	if err != nil {
		return err
	}
	type jsonGateway struct {
		Method      portmap.Method `json:"method"`
		Addr        string         `json:"addr"`
		Location    string         `json:"location,omitempty"`
		ServiceType string         `json:"service_type,omitempty"`
		Status      string         `json:"status,omitempty"`
		Connected   bool           `json:"connected"`
		Problem     string         `json:"problem,omitempty"`
		ExternalIP  string         `json:"external_ip,omitempty"`
		AddrClass   string         `json:"external_ip_class,omitempty"`
		Warning     string         `json:"warning,omitempty"`
		Error       string         `json:"error,omitempty"`
	}
	out := make([]jsonGateway, 0, len(gws))
	for _, g := range gws {
		rctx, cancel := cf.requestCtx(ctx, 1)
		info, err := g.Info(rctx)
		cancel()
		j := jsonGateway{Method: g.Method(), Addr: g.Addr(), Location: info.Location, ServiceType: info.ServiceType,
			Status: info.ConnectionStatus, Connected: info.Connected, Problem: info.Problem}
		if err != nil {
			j.Error = err.Error()
		}
		if info.ExternalIP.IsValid() && !info.ExternalIP.IsUnspecified() {
			c := portmap.Classify(info.ExternalIP)
			j.ExternalIP, j.AddrClass, j.Warning = info.ExternalIP.String(), c.String(), c.Warning()
		}
		out = append(out, j)
	}
	if cf.json {
		return printJSON(e.stdout, map[string]any{"gateways": out})
	}
	for i, g := range out {
		fmt.Fprintf(e.stdout, "%d. %s  %s\n", i+1, strings.ToUpper(string(g.Method)), g.Addr)
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
			fmt.Fprintf(e.stdout, "   external IP: %s (%s)\n", g.ExternalIP, g.AddrClass)
		}
		if g.Warning != "" {
			fmt.Fprintf(e.stdout, "   warning:     %s\n", g.Warning)
		}
		if g.Error != "" {
			fmt.Fprintf(e.stdout, "   error:       %s\n", g.Error)
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
		return printJSON(e.stdout, info)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	row := func(k, v string) {
		if v != "" {
			fmt.Fprintf(tw, "%s:\t%s\n", k, v)
		}
	}
	row("Protocol", strings.ToUpper(string(info.Method)))
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
	g, err := cf.parseAndFind(ctx, e, fs, args)
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
		return printJSON(e.stdout, map[string]any{
			"external_ip": ip.String(), "class": c.String(), "warning": c.Warning(),
			"method": g.Method(), "gateway": g.Addr(),
		})
	}
	fmt.Fprintln(e.stdout, ip)
	if w := c.Warning(); w != "" {
		// On stderr, so that "$(portfwd ip)" stays just the address.
		fmt.Fprintf(e.stderr, "warning: %s\n", w)
	}
	return nil
}

func runList(ctx context.Context, e *env, args []string) error {
	var cf clientFlags
	fs := newFlagSet(e, "list", &cf)
	g, err := cf.parseAndFind(ctx, e, fs, args)
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
		out := make([]jsonMapping, len(ms))
		for i, m := range ms {
			out[i] = toJSON(m)
		}
		j := map[string]any{"method": g.Method(), "gateway": g.Addr(), "mappings": out}
		if err != nil {
			j["error"] = err.Error()
		}
		if perr := printJSON(e.stdout, j); perr != nil {
			return perr
		}
		return err
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
// PORT with --external and --proto (add, keep). ext and proto are the
// flags' pointers: their values exist only once parsing is done.
func (cf *clientFlags) mappingArgs(fs *flag.FlagSet, args []string, example string, ext *uint, proto *string) (uint16, []portmap.Protocol, error) {
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
	if *ext > 65535 {
		return 0, nil, usagef("--external: %d is not a port number", *ext)
	}
	protos, err := protocols(*proto)
	if err != nil {
		return 0, nil, err
	}
	return port, protos, nil
}

// protocols parses --proto: tcp, udp or both.
func protocols(s string) ([]portmap.Protocol, error) {
	if strings.EqualFold(s, "both") {
		return []portmap.Protocol{portmap.TCP, portmap.UDP}, nil
	}
	p, err := portmap.ParseProtocol(s)
	if err != nil {
		return nil, usagef("--proto must be tcp, udp or both, not %q", s)
	}
	return []portmap.Protocol{p}, nil
}

func parsePort(s, what string) (uint16, error) {
	p, err := strconv.ParseUint(s, 10, 16)
	if err != nil || p == 0 {
		return 0, usagef("%s: %q is not a port number (1-65535)", what, s)
	}
	return uint16(p), nil
}

func runAdd(ctx context.Context, e *env, args []string) error {
	var cf clientFlags
	fs := newFlagSet(e, "add", &cf)
	ext := fs.Uint("external", 0, "external port (default: the same as the internal port)")
	proto := fs.String("proto", "tcp", "tcp, udp or both")
	client := fs.String("client", "", "LAN address to forward to (default: this host)")
	lease := fs.Duration("lease", 0, "lease duration, e.g. 1h (0: permanent on UPnP, 2h on NAT-PMP)")
	desc := fs.String("desc", "portfwd", "description shown on the router")
	anyPort := fs.Bool("any", false, "accept another external port if the wanted one is taken")
	replace := fs.Bool("replace", false, "replace a mapping already at the external port (by default portfwd refuses, naming it)")
	port, protos, err := cf.mappingArgs(fs, args, "add 8080 --external 18080", ext, proto)
	if err != nil {
		return err
	}
	req := portmap.Request{InternalPort: port, ExternalPort: uint16(*ext), Lease: *lease, Description: *desc, Any: *anyPort, Replace: *replace}
	if *client != "" {
		a, err := netip.ParseAddr(*client)
		if err != nil {
			return usagef("--client: %q is not an IP address", *client)
		}
		req.InternalClient = a
	}
	g, err := cf.first(ctx, e)
	if err != nil {
		return err
	}
	var made []jsonMapping
	for _, p := range protos {
		req.Protocol = p
		rctx, cancel := cf.requestCtx(ctx, 2)
		m, err := g.Add(rctx, req)
		cancel()
		if err != nil {
			return err
		}
		made = append(made, toJSON(m))
		if !cf.json {
			fmt.Fprintf(e.stdout, "added %s\n", describe(m))
			printNote(e, m)
		}
	}
	if cf.json {
		return printJSON(e.stdout, map[string]any{"mappings": made})
	}
	return nil
}

// describe is one line for a mapping as the router granted it: where the
// world reaches it, where it leads, its lease, and how that is known.
func describe(m portmap.Mapping) string {
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
func parseKey(s, defProto string) ([]portmap.Key, error) {
	portPart, protoPart, found := strings.Cut(s, "/")
	if !found {
		protoPart = defProto
	}
	port, err := parsePort(portPart, "external port")
	if err != nil {
		return nil, err
	}
	protos, err := protocols(protoPart)
	if err != nil {
		return nil, err
	}
	keys := make([]portmap.Key, len(protos))
	for i, p := range protos {
		keys[i] = portmap.Key{Protocol: p, ExternalPort: port}
	}
	return keys, nil
}

func runEdit(ctx context.Context, e *env, args []string) error {
	var cf clientFlags
	fs := newFlagSet(e, "edit", &cf)
	var c portmap.Change
	internal := fs.Uint("internal", 0, "new internal port")
	external := fs.Uint("external", 0, "new external port")
	client := fs.String("client", "", "new LAN address")
	desc := fs.String("desc", "", "new description")
	lease := fs.Duration("lease", 0, "new lease duration (0: permanent)")
	enabled := fs.Bool("enabled", true, "enable or disable the mapping (--enabled=false)")
	remote := fs.String("remote", "", "remote host of the entry to edit (UPnP; default any)")
	fs.BoolVar(&c.Replace, "replace", false, "with --external: replace a mapping already at the new external port (by default portfwd refuses, naming it)")
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
	var bad error
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "internal", "external":
			v := *internal
			if f.Name == "external" {
				v = *external
			}
			if v == 0 || v > 65535 {
				bad = usagef("--%s: %d is not a port number", f.Name, v)
				return
			}
			p := uint16(v)
			if f.Name == "internal" {
				c.InternalPort = &p
			} else {
				c.ExternalPort = &p
			}
		case "client":
			a, err := netip.ParseAddr(*client)
			if err != nil {
				bad = usagef("--client: %q is not an IP address", *client)
				return
			}
			c.InternalClient = &a
		case "desc":
			c.Description = desc
		case "lease":
			c.Lease = lease
		case "enabled":
			c.Enabled = enabled
		}
	})
	if bad != nil {
		return bad
	}
	g, err := cf.first(ctx, e)
	if err != nil {
		return err
	}
	var out []jsonMapping
	for _, k := range keys {
		k.RemoteHost = *remote
		rctx, cancel := cf.requestCtx(ctx, 3)
		m, err := g.Edit(rctx, k, c)
		cancel()
		if err != nil {
			return err
		}
		out = append(out, toJSON(m))
		if !cf.json {
			fmt.Fprintf(e.stdout, "edited %s: now %s enabled=%s %q\n", k, describe(m), yesNo(m.Enabled), m.Description)
			printNote(e, m)
		}
	}
	if cf.json {
		return printJSON(e.stdout, map[string]any{"mappings": out})
	}
	return nil
}

func runDelete(ctx context.Context, e *env, args []string) error {
	var cf clientFlags
	fs := newFlagSet(e, "delete", &cf)
	rng := fs.String("range", "", "delete every mapping whose external port is in START-END")
	proto := fs.String("proto", "tcp", "tcp, udp or both (when the mapping has no /PROTO suffix)")
	remote := fs.String("remote", "", "remote host of the entry (UPnP; default any)")
	if err := parse(fs, args, &cf); err != nil {
		return err
	}
	if (*rng == "") == (len(cf.positions) == 0) || len(cf.positions) > 1 {
		return usagef("delete takes one mapping (e.g. 18080/tcp) or --range START-END")
	}
	var result struct {
		Deleted []portmap.Key `json:"deleted,omitempty"`
		Count   int           `json:"count"`
	}
	done := func(err error) error {
		if cf.json {
			if perr := printJSON(e.stdout, result); perr != nil {
				return perr
			}
		}
		return err
	}
	if *rng != "" {
		a, b, ok := strings.Cut(*rng, "-")
		if !ok {
			return usagef("--range must look like 18000-18100")
		}
		start, err := parsePort(a, "--range start")
		if err != nil {
			return err
		}
		end, err := parsePort(b, "--range end")
		if err != nil {
			return err
		}
		if end < start {
			return usagef("--range: %d is below %d", end, start)
		}
		protos, err := protocols(*proto)
		if err != nil {
			return err
		}
		g, err := cf.first(ctx, e)
		if err != nil {
			return err
		}
		for _, p := range protos {
			rctx, cancel := cf.requestCtx(ctx, 20)
			gone, err := g.DeleteRange(rctx, p, start, end)
			cancel()
			for _, m := range gone {
				result.Deleted = append(result.Deleted, m.Key())
				result.Count++
				if !cf.json {
					fmt.Fprintf(e.stdout, "deleted %s -> %s:%d %q\n", m.Key(), m.InternalClient, m.InternalPort, m.Description)
				}
			}
			if !cf.json {
				fmt.Fprintf(e.stdout, "deleted %d %s mapping(s) in %d-%d\n", len(gone), p, start, end)
			}
			if err != nil {
				return done(err)
			}
		}
	} else {
		keys, err := parseKey(cf.positions[0], *proto)
		if err != nil {
			return err
		}
		g, err := cf.first(ctx, e)
		if err != nil {
			return err
		}
		for _, k := range keys {
			k.RemoteHost = *remote
			rctx, cancel := cf.requestCtx(ctx, 1)
			err := g.Delete(rctx, k)
			cancel()
			if err != nil {
				return done(err)
			}
			result.Deleted = append(result.Deleted, k)
			result.Count++
			if !cf.json {
				fmt.Fprintf(e.stdout, "deleted %s\n", k)
			}
		}
	}
	return done(nil)
}
