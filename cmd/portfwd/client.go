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

	"github.com/portfwd/portfwd/portmap"
)

var errHelpShown = errors.New("help shown")

// clientFlags are the flags every client command accepts.
type clientFlags struct {
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
}

func newFlagSet(e *env, name string, cf *clientFlags) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.BoolVar(&cf.json, "json", false, "print JSON (schema in README.md)")
	fs.StringVar(&cf.gateway, "gateway", "", "root description URL of a UPnP gateway (skips SSDP discovery)")
	fs.StringVar(&cf.natpmp, "natpmp", "", "NAT-PMP/PCP server HOST[:PORT] (skips default-gateway guessing)")
	fs.StringVar(&cf.protocol, "protocol", "auto", "upnp, natpmp, pcp or auto")
	fs.StringVar(&cf.iface, "interface", "", "network interface(s) to search on, comma-separated (default: all)")
	fs.DurationVar(&cf.timeout, "timeout", 3*time.Second, "give up discovery and each request after this long")
	fs.BoolVar(&cf.verbose, "v", false, "log protocol details to stderr")
	fs.StringVar(&cf.stateDir, "state-dir", defaultStateDir(), "the client's state: NAT-PMP/PCP mappings made, mappings kept, the last gateway found ($PORTFWD_STATE_DIR)")
	fs.BoolVar(&cf.noCache, "no-cache", false, "do not use the remembered gateway: always discover afresh")
	return fs
}

// parse parses flags that may come before, between or after positional
// arguments ("portfwd add 8080 --proto udp" and "portfwd add --proto udp 8080").
func parse(fs *flag.FlagSet, args []string, cf *clientFlags) error {
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return errHelpShown
			}
			return usageError{err.Error()}
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return nil
		}
		cf.positions = append(cf.positions, rest[0])
		args = rest[1:]
	}
}

func (cf *clientFlags) options(e *env) (portmap.Options, error) {
	o := portmap.Options{Wait: cf.wait}
	switch strings.ToLower(cf.protocol) {
	case "", "auto":
	case "upnp":
		o.Methods = []portmap.Method{portmap.UPnP}
	case "natpmp", "nat-pmp":
		o.Methods = []portmap.Method{portmap.NATPMP}
	case "pcp":
		o.Methods = []portmap.Method{portmap.PCP}
	default:
		return o, usagef("--protocol must be upnp, natpmp, pcp or auto, not %q", cf.protocol)
	}
	o.GatewayURL = cf.gateway
	if cf.natpmp != "" {
		ap, err := parseHostPort(cf.natpmp, 5351)
		if err != nil {
			return o, usagef("--natpmp: %v", err)
		}
		o.NATPMPServer = ap
	}
	if cf.iface != "" {
		o.Interfaces = strings.Split(cf.iface, ",")
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
	gws, err := portmap.Discover(dctx, o)
	if o.Progress != nil {
		fmt.Fprint(e.stderr, "\r\033[K")
	}
	return gws, err
}

// parseAndFind parses a command's flags, which take no positional
// arguments here, and finds the best gateway.
func (cf *clientFlags) parseAndFind(ctx context.Context, e *env, fs *flag.FlagSet, args []string) (portmap.Gateway, error) {
	if err := parse(fs, args, cf); err != nil {
		return nil, err
	}
	if len(cf.positions) > 0 {
		return nil, usagef("%s takes no arguments, only flags (got %q)", fs.Name(), cf.positions[0])
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

// classify maps an error to the documented exit code.
func classify(err error) int {
	var ue usageError
	var re *portmap.RefusedError
	var ec interface{ ExitCode() int }
	switch {
	case errors.As(err, &ue):
		return exitUsage
	case errors.Is(err, portmap.ErrNoGateway):
		return exitNoGateway
	case errors.As(err, &re):
		return exitRefused
	case errors.As(err, &ec):
		return ec.ExitCode()
	}
	return exitFailure
}
