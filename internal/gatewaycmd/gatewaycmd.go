// Package gatewaycmd is the command line of the gateway daemon: its
// flags, its documentation, and running it. Both programs that run the
// gateway use it: "portfwd gateway" (cmd/portfwd, the whole tool) and
// portfwd-gateway (cmd/portfwd-gateway, the gateway alone, small enough
// for a router's flash). It imports the router side only: no client
// package (portmap, webui, reach) reaches a gateway-only build through it.
package gatewaycmd

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"

	"github.com/portfwd/portfwd/gateway/daemon"
	"github.com/portfwd/portfwd/internal/cli"
)

// Doc is the gateway command's documentation, for its help, the man page
// and the completions; prog is how it is run ("portfwd gateway" or
// "portfwd-gateway"), for the examples.
func Doc(prog string) cli.Command {
	return cli.Command{
		Summary: "run the router side: UPnP IGD, NAT-PMP and PCP over one mapping table",
		Description: `Runs the router side, like miniupnpd: it answers UPnP IGD (found by SSDP, with GENA events), ` +
			`NAT-PMP and PCP on the internal interfaces only, and forwards the mapped ports from the external ones, ` +
			`through nftables as root or through a userspace relay otherwise. Flags override the configuration file; ` +
			`docs/gateway.md and dist/gateway.example.toml document every option. --check tests a configuration ` +
			`without starting, and --import-miniupnpd converts a miniupnpd.conf.`,
		Examples: []cli.Example{
			{Command: prog + " --internal br-lan --external wan"},
			{Command: prog + " --check --config /etc/portfwd/gateway.toml", Comment: "check a configuration without starting"},
			{Command: prog + " --import-miniupnpd /etc/miniupnpd/miniupnpd.conf > /etc/portfwd/gateway.toml"},
		},
	}
}

// Flags are the command-line overrides of the gateway's configuration;
// each applies only when given, so that a configuration file's value
// stands otherwise.
type Flags struct {
	// Prog is how the gateway is run, for the advice in its errors:
	// "portfwd gateway" (the default) or "portfwd-gateway".
	Prog string
	// StartCPUProfile, if set, gives the command a --cpu-profile flag: it
	// starts writing a CPU profile to the file and returns what stops it.
	// portfwd sets it; the router build leaves it out, as runtime/pprof
	// would weigh on its flash.
	StartCPUProfile func(file string) (stop func(), err error)

	config, importMiniupnpd     string
	check, printConfig, verbose bool
	internal, external          string
	externalIP, stun, backend   string
	stateDir, admin             string
	httpPort                    int
	flushOnExit, forceIGDv1     bool
	adminUI                     bool
	secureMode                  bool
	noUPnP, noNATPMP, noSSDP    bool
	noPCP                       bool
	force                       bool
	logLevel, logFormat         string
	upstream                    string
	quirks, personality         string
	quirksOnPublic              bool
	memLimit                    string
	procs                       int
	cpuProfile                  string
}

func (f *Flags) prog() string {
	if f.Prog == "" {
		return "portfwd gateway"
	}
	return f.Prog
}

// Define adds the gateway's flags to fs.
func (f *Flags) Define(fs *flag.FlagSet) {
	fs.StringVar(&f.config, "config", "", "TOML configuration `file` (every key optional; see dist/gateway.example.toml)")
	fs.BoolVar(&f.check, "check", false, "check the configuration, interfaces, backend access and ports, then exit 0 (fine) or 1 (problems)")
	fs.BoolVar(&f.printConfig, "print-config", false, "print the effective configuration as TOML and exit")
	fs.StringVar(&f.importMiniupnpd, "import-miniupnpd", "", "convert a miniupnpd.conf `file` to portfwd's TOML on stdout and exit")
	fs.StringVar(&f.internal, "internal", "", "internal (LAN) `interfaces`, comma-separated: UPnP, SSDP, NAT-PMP and PCP are served there only")
	fs.StringVar(&f.external, "external", "", "external (WAN) `interfaces`, comma-separated; a trailing * matches a prefix (ppp*)")
	fs.StringVar(&f.externalIP, "external-ip", "", "report this external `IP` instead of the external interface's address")
	fs.StringVar(&f.stun, "stun", "", "learn the external address from this STUN `server` (host[:port]), for a router behind a 1:1 NAT")
	fs.Var(&cli.Enum{P: &f.backend, Choices: []string{"nft", "relay", "memory"}}, "backend", "how mapped ports are forwarded (default: nft as root, relay otherwise)")
	fs.StringVar(&f.stateDir, "state-dir", "", "the `directory` of leases, the NAT-PMP/PCP epoch, the device UUID and the audit trail (default "+daemon.DefaultStateDir+")")
	fs.IntVar(&f.httpPort, "http-port", daemon.DefaultHTTPPort, "UPnP HTTP `port` on the internal addresses (0 picks a free one)")
	fs.StringVar(&f.admin, "admin", "", "admin `address` serving /metrics and /healthz (default "+daemon.DefaultAdminAddress+"; \"off\" disables)")
	fs.BoolVar(&f.adminUI, "admin-ui", false, "also serve the admin page on the admin address: every mapping, live, with delete buttons (its token goes to admin-token in the state directory)")
	fs.BoolVar(&f.flushOnExit, "flush-on-exit", false, "remove every mapping when stopping (by default they stay installed and stored)")
	fs.BoolVar(&f.forceIGDv1, "force-igd-v1", false, "serve InternetGatewayDevice:1, for control points that do not know IGDv2")
	fs.BoolVar(&f.secureMode, "secure-mode", true, "clients may map ports only to themselves and change only their own mappings; --secure-mode=false lets any client map to any host")
	fs.BoolVar(&f.noUPnP, "no-upnp", false, "do not serve UPnP IGD")
	fs.BoolVar(&f.noNATPMP, "no-natpmp", false, "do not serve NAT-PMP nor PCP (UDP 5351)")
	fs.BoolVar(&f.noPCP, "no-pcp", false, "serve NAT-PMP without PCP (PCP clients are told to fall back to NAT-PMP)")
	fs.BoolVar(&f.force, "force", false, "start even though the interface roles look wrong (an internal interface with the default route or a public address, an external one with no route out)")
	fs.BoolVar(&f.noSSDP, "no-ssdp", false, "serve UPnP without SSDP discovery (clients need the description URL)")
	fs.Var(&cli.Enum{P: &f.logLevel, Choices: []string{"debug", "info", "warn", "error"}}, "log-level", "the least severe log records shown (default info)")
	fs.Var(&cli.Enum{P: &f.logFormat, Choices: []string{"text", "json"}}, "log-format", "the format of the log (default text)")
	fs.BoolVar(&f.verbose, "v", false, "log at debug level")
	fs.StringVar(&f.upstream, "upstream", "", "chain mappings to the router above (double NAT): `mode` auto (when the external address is private or CGNAT), off, pcp, natpmp, upnp, or its UPnP description URL (default auto)")
	fs.StringVar(&f.quirks, "quirks", "", "misbehave on purpose as real routers do, to test clients: quirk `names`, comma-separated (\"list\" lists them; docs/quirks.md)")
	fs.StringVar(&f.personality, "personality", "", "serve a real router's description (name, maker, model, IGD version) with its known quirks: a `slug` (\"list\" lists them)")
	fs.BoolVar(&f.quirksOnPublic, "quirks-on-public", false, "allow --quirks and --personality on a gateway whose external side has a public address")
	fs.IntVar(&f.procs, "procs", 1, "how many CPUs run the gateway's Go code at once (GOMAXPROCS); 0 means all; $GOMAXPROCS wins when set")
	if f.StartCPUProfile != nil {
		fs.StringVar(&f.cpuProfile, "cpu-profile", "", "write a CPU profile (go tool pprof) of the whole run to `file`, for performance reports")
	}
	fs.StringVar(&f.memLimit, "memory-limit", "40MiB", "the Go runtime's soft memory `limit`, like 40MiB or 1GiB, or \"off\"; $GOMEMLIMIT wins when set")
}

// parseBytes reads sizes such as 40MiB, 512KiB, 1GiB or a plain number of bytes.
func parseBytes(s string) (int64, error) {
	units := []struct {
		suffix string
		mul    int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"B", 1}, {"", 1}}
	for _, u := range units {
		if num, ok := strings.CutSuffix(s, u.suffix); ok {
			v, err := strconv.ParseInt(strings.TrimSpace(num), 10, 64)
			if err != nil || v <= 0 {
				return 0, fmt.Errorf("%q is not a size such as 40MiB", s)
			}
			return v * u.mul, nil
		}
	}
	return 0, fmt.Errorf("%q is not a size such as 40MiB", s)
}

// Run runs the gateway with the flags fs parsed into f (fs tells which
// were given): it converts a miniupnpd.conf, prints or checks the
// configuration, or serves until ctx ends. Mistakes in the command line or
// the configuration are *cli.UsageError. beforeNetwork, when not nil, is
// called just before the gateway first touches the network.
func (f *Flags) Run(ctx context.Context, fs *flag.FlagSet, stdout, stderr io.Writer, beforeNetwork func()) error {
	if !daemon.QuirksBuilt && (f.quirks != "" || f.personality != "") {
		// portfwd-gateway, the router build (tag gatewayonly).
		return cli.Usagef("--quirks and --personality (router emulation for testing clients) are left out of %s, the router build; run 'portfwd gateway' (the whole tool) for them", f.prog())
	}
	if f.quirks == "list" {
		fmt.Fprintf(stdout, "quirks (%s --quirks NAME[:PARAM],...; every one is off by default):\n", f.prog())
		for _, line := range daemon.QuirkHelp() {
			fmt.Fprintln(stdout, "  "+line)
		}
		return nil
	}
	if f.personality == "list" {
		fmt.Fprintf(stdout, "personalities (%s --personality SLUG): real routers' descriptions, with the quirks they are known for:\n", f.prog())
		for _, line := range daemon.PersonalityHelp() {
			fmt.Fprintln(stdout, "  "+line)
		}
		return nil
	}
	if f.importMiniupnpd != "" {
		src, err := os.ReadFile(f.importMiniupnpd)
		if err != nil {
			return fmt.Errorf("reading the miniupnpd configuration: %w", err)
		}
		_, err = stdout.Write(daemon.ConvertMiniupnpd(src))
		return err
	}

	cfg := daemon.DefaultConfig()
	if f.config != "" {
		var err error
		if cfg, err = daemon.LoadConfig(f.config); err != nil {
			if looksLikeMiniupnpd(f.config) {
				return cli.Usagef("%s is a miniupnpd configuration, not portfwd's (TOML); convert it with "+
					"'%s --import-miniupnpd %s > gateway.toml' and give that to --config", f.config, f.prog(), f.config)
			}
			return &cli.UsageError{Msg: err.Error()}
		}
	}
	if err := f.apply(fs, &cfg); err != nil {
		return err
	}

	if f.printConfig {
		b, err := cfg.Encode()
		if err != nil {
			return err
		}
		_, err = stdout.Write(b)
		return err
	}
	if beforeNetwork != nil {
		beforeNetwork()
	}
	if f.check {
		problems := 0
		for _, f := range daemon.Check(ctx, cfg) {
			fmt.Fprintln(stdout, f)
			if f.Problem {
				problems++
			}
		}
		if problems > 0 {
			return cli.Usagef("the check found %d problem(s); fix them and run --check again", problems)
		}
		fmt.Fprintln(stdout, "the gateway is ready to start")
		return nil
	}

	if err := cfg.Validate(); err != nil {
		return cli.Usagef("the configuration is not usable:\n%v", err)
	}
	log, err := cfg.NewLogger(stderr)
	if err != nil {
		return &cli.UsageError{Msg: err.Error()}
	}
	cfg.Logger = log
	// The collector otherwise lets garbage grow to the size of the live
	// heap before it runs: with 65,535 mappings that is ~90 MiB of RSS for
	// ~40 MiB of live data. A soft limit makes it collect earlier, which
	// costs a little CPU only when the table is that large. It is soft: a
	// bigger live heap still works, it is just collected more often.
	if os.Getenv("GOMEMLIMIT") == "" && f.memLimit != "off" {
		n, err := parseBytes(f.memLimit)
		if err != nil {
			return cli.Usagef("--memory-limit: %v", err)
		}
		debug.SetMemoryLimit(n)
	}
	// One CPU by default: the table and the backend take one change at a
	// time anyway, and with more the Go scheduler keeps threads spinning
	// in search of work after every packet, CPU that a router's forwarding
	// (and, in the lab, the clients) would rather have. Measured in the
	// lab's benchmark: a NAT-PMP pair costs half as much wall time with
	// one. A gateway serving thousands of subscribers at once may want
	// more.
	if os.Getenv("GOMAXPROCS") == "" {
		if f.procs < 0 {
			return cli.Usagef("--procs must be 0 (all CPUs) or more, not %d", f.procs)
		}
		if f.procs > 0 {
			runtime.GOMAXPROCS(f.procs)
		} // 0: the runtime's own choice, every CPU the process may use
	}
	if f.cpuProfile != "" {
		stop, err := f.StartCPUProfile(f.cpuProfile)
		if err != nil {
			return cli.Usagef("--cpu-profile: %v", err)
		}
		defer stop()
	}
	if err := daemon.Run(ctx, cfg); err != nil {
		if errors.Is(err, daemon.ErrInterfaceRoles) {
			return &cli.UsageError{Msg: "gateway: " + err.Error()}
		}
		return fmt.Errorf("gateway: %w", err)
	}
	return nil
}

// apply sets on cfg the flags that were given.
func (gf *Flags) apply(fs *flag.FlagSet, cfg *daemon.Config) error {
	var err error
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "internal":
			cfg.Interfaces.Internal = splitList(gf.internal)
		case "external":
			cfg.Interfaces.External = splitList(gf.external)
		case "external-ip":
			cfg.ExternalAddress.Source, cfg.ExternalAddress.IP = daemon.SourceFixed, gf.externalIP
		case "stun":
			cfg.ExternalAddress.Source, cfg.ExternalAddress.STUNServer = daemon.SourceSTUN, gf.stun
		case "backend":
			cfg.Backend = gf.backend
		case "state-dir":
			cfg.StateDir = gf.stateDir
		case "http-port":
			cfg.UPnP.HTTPPort = gf.httpPort
		case "admin":
			cfg.Admin.Address = gf.admin
			if strings.EqualFold(gf.admin, "off") {
				cfg.Admin.Address = ""
			}
		case "admin-ui":
			cfg.Admin.UI = gf.adminUI
		case "flush-on-exit":
			cfg.FlushOnExit = gf.flushOnExit
		case "force-igd-v1":
			cfg.UPnP.ForceIGDv1 = gf.forceIGDv1
		case "secure-mode":
			cfg.Policy.SecureMode = gf.secureMode
		case "no-upnp":
			cfg.UPnP.Enabled = !gf.noUPnP
		case "no-natpmp":
			cfg.NATPMP.Enabled = !gf.noNATPMP
		case "no-pcp":
			cfg.NATPMP.PCP = !gf.noPCP
		case "no-ssdp":
			cfg.UPnP.SSDP = !gf.noSSDP
		case "upstream":
			cfg.Upstream = gf.upstream
		case "force":
			cfg.Interfaces.Force = gf.force
		case "log-level":
			cfg.LogLevel = gf.logLevel
		case "log-format":
			cfg.LogFormat = gf.logFormat
		case "quirks":
			cfg.Quirks = splitList(gf.quirks)
		case "personality":
			cfg.Personality = gf.personality
		case "quirks-on-public":
			cfg.QuirksOnPublic = gf.quirksOnPublic
		case "v":
			if gf.verbose {
				cfg.LogLevel = "debug"
			}
		}
	})
	if gf.externalIP != "" && gf.stun != "" {
		err = cli.Usagef("--external-ip and --stun both say where the external address comes from; give one")
	}
	return err
}

// looksLikeMiniupnpd reports whether the file at path is a miniupnpd.conf:
// key=value lines with miniupnpd's keys, or its allow/deny rules.
func looksLikeMiniupnpd(path string) bool {
	data, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	keys := []string{"ext_ifname", "ext_ifname6", "listening_ip", "enable_natpmp", "enable_pcp_pcp", "enable_upnp",
		"secure_mode", "upnp_forward_chain", "upnp_nat_chain", "lease_file", "system_uptime", "clean_ruleset_interval",
		"notify_interval", "uuid", "ext_ip", "ext_perform_stun", "min_lifetime", "max_lifetime"}
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if f := strings.Fields(line); len(f) >= 3 && (f[0] == "allow" || f[0] == "deny") {
			return true
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || strings.ContainsAny(v, "\"'") {
			continue
		}
		for _, key := range keys {
			if strings.TrimSpace(k) == key {
				return true
			}
		}
	}
	return false
}

// splitList splits a comma-separated flag value, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
