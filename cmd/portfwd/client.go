package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/portfwd/portfwd/internal/cli"
	"github.com/portfwd/portfwd/portmap"
)

// clientFlags are the flags every client command accepts.
type clientFlags struct {
	env       *env
	json      bool
	gateway   string
	natpmp    string
	protocol  string
	iface     string
	timeout   time.Duration
	wait      bool
	verbose   bool
	stateDir  string
	noCache   bool
	positions []string

	// client is set for the flag sets of client commands (newFlagSet),
	// whose flags parse checks together.
	client bool
	// natpmpServer is --natpmp, parsed.
	natpmpServer netip.AddrPort
}

// sharedFlag reports whether name is one of the flags newFlagSet gives
// every client command, which help lists apart.
func sharedFlag(name string) bool {
	switch name {
	case "json", "gateway", "natpmp", "protocol", "interface", "timeout", "v", "state-dir", "no-cache":
		return true
	}
	return false
}

// exampleGatewayURL is the form of --gateway, shown when a value is not one.
const exampleGatewayURL = "http://192.168.1.1:5000/rootDesc.xml"

// newFlagSet returns the flag set of client command name, holding the
// flags every client command accepts.
func newFlagSet(e *env, name string, cf *clientFlags) *flag.FlagSet {
	fs := plainFlagSet(e, name, cf)
	cf.client = true
	cf.protocol, cf.timeout = "auto", 3*time.Second
	fs.BoolVar(&cf.json, "json", false, "print JSON (schema 1, documented in README.md) instead of text")
	fs.Var(&cli.URL{P: &cf.gateway, Example: exampleGatewayURL}, "gateway",
		"the router's UPnP root description URL, like "+exampleGatewayURL+": skips SSDP discovery")
	fs.StringVar(&cf.natpmp, "natpmp", "", "the NAT-PMP/PCP server, as `host[:port]` (they share port 5351): skips guessing it from the default route")
	fs.Var(&cli.Enum{P: &cf.protocol, Choices: []string{"auto", "upnp", "natpmp", "pcp"}, Aliases: map[string]string{"nat-pmp": "natpmp"}},
		"protocol", "which protocol to use; auto races all three and prefers UPnP, then PCP, then NAT-PMP")
	fs.StringVar(&cf.iface, "interface", "", "search with SSDP only on the network interfaces of these `names`, comma-separated")
	fs.Var(&cli.Duration{P: &cf.timeout}, "timeout", "the time discovery may take, and each request to the router")
	fs.BoolVar(&cf.verbose, "v", false, "log every protocol exchange (SSDP, HTTP/SOAP, NAT-PMP, PCP) to stderr")
	fs.StringVar(&cf.stateDir, "state-dir", "", "the `directory` of the client's state: NAT-PMP/PCP mappings made, mappings kept, the last gateway found "+
		"(default $PORTFWD_STATE_DIR, else $XDG_STATE_HOME/portfwd, else ~/.local/state/portfwd)")
	fs.BoolVar(&cf.noCache, "no-cache", false, "ignore the remembered gateway: always discover afresh")
	return fs
}

// plainFlagSet returns an empty flag set for command name, parsed by
// parse: a command that is not a client command defines its own flags.
func plainFlagSet(e *env, name string, cf *clientFlags) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	cf.env = e
	return fs
}

// parse parses the command line of a command: flags may come before,
// between or after positional arguments ("portfwd add 8080 --proto udp"
// and "portfwd add --proto udp 8080"), which go to cf.positions. It
// answers -h and --help with the command's help on stdout
// (errHelpShown), and checks the client flags together, so that every
// mistake is a usage error before anything is sent.
func parse(fs *flag.FlagSet, args []string, cf *clientFlags) error {
	e := cf.env
	e.json = e.json || wantsJSON(args)
	pos, err := cli.Parse(fs, args, "portfwd "+fs.Name()+" --help")
	cf.positions = pos
	if v := fs.Lookup("v"); v != nil {
		e.verbose = v.Value.String() == "true"
	}
	if j := fs.Lookup("json"); j != nil && err == nil {
		e.json = j.Value.String() == "true"
	}
	var ue *cli.UsageError
	switch {
	case errors.Is(err, cli.ErrHelp):
		if e.flagSink != nil {
			e.flagSink(fs)
		} else {
			program().WriteHelp(e.stdout, describe(fs))
		}
		return errHelpShown
	case errors.As(err, &ue):
		return usageError{ue.Msg}
	case err != nil:
		return err
	}
	if cf.client {
		return cf.check()
	}
	return nil
}

// check checks the client flags together, and that the interfaces named
// exist, and resolves the state directory's default.
func (cf *clientFlags) check() error {
	if cf.stateDir == "" {
		cf.stateDir = defaultStateDir()
	}
	if cf.natpmp != "" {
		ap, err := parseHostPort(cf.natpmp, 5351)
		if err != nil {
			return usagef("--natpmp: %v", err)
		}
		cf.natpmpServer = ap
	}
	switch {
	case cf.gateway != "" && (cf.protocol == "natpmp" || cf.protocol == "pcp") && cf.natpmp == "":
		return usagef("--gateway names a UPnP gateway, but --protocol %s leaves UPnP out; give the %s server with --natpmp HOST, or use --protocol upnp",
			cf.protocol, portmap.Method(cf.protocol).Name())
	case cf.natpmp != "" && cf.protocol == "upnp":
		return usagef("--natpmp names a NAT-PMP/PCP server, but --protocol upnp leaves them out; drop one of the two")
	}
	if cf.iface != "" {
		for _, name := range strings.Split(cf.iface, ",") {
			name = strings.TrimSpace(name)
			if name == "" {
				return usagef("--interface: %q has an empty interface name", cf.iface)
			}
			if _, err := net.InterfaceByName(name); err != nil {
				return usagef("--interface: this host has no interface %q (it has %s)", name, interfaceNames())
			}
		}
	}
	return nil
}

// interfaceNames lists this host's interfaces, for an error message.
func interfaceNames() string {
	ifs, err := net.Interfaces()
	if err != nil || len(ifs) == 0 {
		return "none that portfwd can see"
	}
	var names []string
	for _, i := range ifs {
		names = append(names, i.Name)
	}
	return strings.Join(names, ", ")
}

func (cf *clientFlags) options(e *env) (portmap.Options, error) {
	o := portmap.Options{Wait: cf.wait}
	switch cf.protocol {
	case "upnp":
		o.Methods = []portmap.Method{portmap.UPnP}
	case "natpmp":
		o.Methods = []portmap.Method{portmap.NATPMP}
	case "pcp":
		o.Methods = []portmap.Method{portmap.PCP}
	}
	o.GatewayURL = cf.gateway
	o.NATPMPServer = cf.natpmpServer
	if cf.iface != "" {
		for _, name := range strings.Split(cf.iface, ",") {
			o.Interfaces = append(o.Interfaces, strings.TrimSpace(name))
		}
	}
	o.RequestTimeout = cf.timeout
	o.StateDir, o.NoCache = cf.stateDir, cf.noCache
	if cf.verbose {
		o.Logger = slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if e.stderrIsTerminal && !cf.json {
		o.Progress = func(p portmap.Progress) {
			fmt.Fprintf(e.stderr, "\r\033[K%s", p.Message)
		}
	}
	return o, nil
}

// defaultStateDir is $PORTFWD_STATE_DIR, else the library's default
// (portmap.DefaultStateDir: $XDG_STATE_HOME/portfwd, else
// ~/.local/state/portfwd).
func defaultStateDir() string {
	if d := os.Getenv("PORTFWD_STATE_DIR"); d != "" {
		return d
	}
	return portmap.DefaultStateDir()
}

func parseHostPort(s string, defPort uint16) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		if ap.Port() == 0 {
			return netip.AddrPort{}, fmt.Errorf("%q: port 0 is not a port to send to", s)
		}
		return ap, nil
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.AddrPortFrom(a, defPort), nil
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%q is not an IP address or IP:port", s)
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%q is not an IP address", host)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 {
		return netip.AddrPort{}, fmt.Errorf("%q is not a port number", port)
	}
	return netip.AddrPortFrom(a, uint16(p)), nil
}

// discover finds the gateways the flags ask for, with the discovery budget
// of --timeout, and clears the progress line when done.
func (cf *clientFlags) discover(ctx context.Context, e *env) ([]portmap.Gateway, error) {
	o, err := cf.options(e)
	if err != nil {
		return nil, err
	}
	dctx, cancel := context.WithTimeout(ctx, cf.timeout)
	defer cancel()
	e.network("discover")
	gws, err := portmap.Discover(dctx, o)
	if o.Progress != nil {
		fmt.Fprint(e.stderr, "\r\033[K")
	}
	return gws, err
}

// parseNoArgs parses the command line of a command that takes no
// positional arguments.
func (cf *clientFlags) parseNoArgs(fs *flag.FlagSet, args []string) error {
	if err := parse(fs, args, cf); err != nil {
		return err
	}
	if len(cf.positions) > 0 {
		return usagef("%s takes no arguments, only flags (got %q)", fs.Name(), cf.positions[0])
	}
	return nil
}

// parseAndFind parses a command's flags, which take no positional
// arguments here, and finds the best gateway.
func (cf *clientFlags) parseAndFind(ctx context.Context, e *env, fs *flag.FlagSet, args []string) (portmap.Gateway, error) {
	if err := cf.parseNoArgs(fs, args); err != nil {
		return nil, err
	}
	return cf.first(ctx, e)
}

// first returns the best gateway.
func (cf *clientFlags) first(ctx context.Context, e *env) (portmap.Gateway, error) {
	gws, err := cf.discover(ctx, e)
	if err != nil {
		return nil, err
	}
	return gws[0], nil
}

// listable returns the best gateway that can list mappings, which only
// UPnP can. When the race settled on NAT-PMP or PCP (a UPnP gateway that
// reports no external address ranks below them, one whose SSDP answer
// comes late is not waited for), UPnP is looked for again, alone, for the
// whole --timeout, before settling for a gateway that cannot list.
func (cf *clientFlags) listable(ctx context.Context, e *env) (portmap.Gateway, error) {
	gws, err := cf.discover(ctx, e)
	if err != nil {
		return nil, err
	}
	for _, g := range gws {
		if g.Method() == portmap.UPnP {
			return g, nil
		}
	}
	if cf.protocol != "" && cf.protocol != "auto" {
		return gws[0], nil
	}
	saved := cf.protocol
	cf.protocol = "upnp"
	defer func() { cf.protocol = saved }()
	if up, uerr := cf.discover(ctx, e); uerr == nil {
		return up[0], nil
	}
	return gws[0], nil
}

// requestCtx bounds one operation on a found gateway by --timeout; listing a
// large table gets more (the per-request timeout still applies inside).
func (cf *clientFlags) requestCtx(ctx context.Context, factor int) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, cf.timeout*time.Duration(factor))
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
