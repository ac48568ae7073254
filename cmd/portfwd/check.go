package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/portfwd/portfwd/internal/cli"
	"github.com/portfwd/portfwd/portmap"
	"github.com/portfwd/portfwd/reach"
)

// unreachableError ends "portfwd check" with exitUnreachable once the
// report is printed.
type unreachableError struct{ what string }

func (u unreachableError) Error() string { return u.what + " is not reachable from outside" }

// ExitCode is the process exit code for this error.
func (u unreachableError) ExitCode() int { return exitUnreachable }

// config is the user's configuration file, ~/.config/portfwd/config.toml:
//
//	probe_servers = ["http://probe.example.net:8999"]
//
// Keys other commands may add later are ignored here.
type config struct {
	ProbeServers []string `toml:"probe_servers"`
}

// defaultConfigPath is $PORTFWD_CONFIG, else $XDG_CONFIG_HOME/portfwd/config.toml,
// else ~/.config/portfwd/config.toml.
func defaultConfigPath() string {
	if p := os.Getenv("PORTFWD_CONFIG"); p != "" {
		return p
	}
	d, err := os.UserConfigDir()
	if err != nil {
		return ""
	}
	return filepath.Join(d, "portfwd", "config.toml")
}

// loadConfig reads path. A missing file is an empty configuration unless
// the user named it (required).
func loadConfig(path string, required bool) (config, error) {
	var c config
	if path == "" {
		return c, nil
	}
	if _, err := toml.DecodeFile(path, &c); err != nil {
		if errors.Is(err, fs.ErrNotExist) && !required {
			return config{}, nil
		}
		return config{}, fmt.Errorf("config file %s: %w", path, err)
	}
	return c, nil
}

// jsonCheck is "portfwd check --json".
type jsonCheck struct {
	Schema       int     `json:"schema"`
	Reachable    bool    `json:"reachable"`
	Verified     bool    `json:"verified"`
	Answered     bool    `json:"answered"`
	Protocol     string  `json:"protocol"`
	InternalPort uint16  `json:"internal_port"`
	ExternalPort uint16  `json:"external_port"`
	Address      string  `json:"address"`
	Listener     string  `json:"listener"`
	Probe        string  `json:"probe"`
	RTTMillis    float64 `json:"rtt_ms"`
	Code         string  `json:"code"`
	// Observed is what the probe saw; Reason adds what the router said.
	Observed        string       `json:"observed"`
	Reason          string       `json:"reason"`
	Gateway         string       `json:"gateway"`
	GatewayError    string       `json:"gateway_error"`
	ExternalIP      string       `json:"external_ip"`
	ExternalIPClass string       `json:"external_ip_class"`
	MappingsListed  bool         `json:"mappings_listed"`
	Mapping         *jsonMapping `json:"mapping"`
}

func runCheck(ctx context.Context, e *env, args []string) error {
	var cf clientFlags
	fs := newFlagSet(e, "check", &cf)
	var (
		probes []string
		ext    uint16
		p      = reach.TCP
	)
	fs.Var(&cli.URLs{P: &probes, Example: "http://probe.example.net:8999"}, "probe",
		"a probe server's URL, like http://probe.example.net:8999; repeat it to try several in turn (default: probe_servers in the configuration file)")
	fs.Var((*cli.Port)(&ext), "external", "the external port to check (default: the router's mapping to PORT on this host, else PORT)")
	fs.Var(&cli.Enum{P: &p, Choices: []string{reach.TCP, reach.UDP}}, "proto", "the protocol to check")
	configPath := fs.String("config", "", "the configuration `file` holding probe_servers (default $PORTFWD_CONFIG, else ~/.config/portfwd/config.toml)")
	noGateway := fs.Bool("no-gateway", false, "do not ask the router about its mappings (e.g. on a host with a public address)")
	if err := parse(fs, args, &cf); err != nil {
		return err
	}
	if len(cf.positions) != 1 {
		return usagef("check takes one internal PORT, e.g. 'portfwd check 8080 --external 18080'")
	}
	port, err := parsePort(cf.positions[0], "internal port")
	if err != nil {
		return err
	}
	if len(probes) == 0 {
		explicit := *configPath != ""
		if !explicit {
			*configPath = defaultConfigPath()
		}
		c, err := loadConfig(*configPath, explicit)
		if err != nil {
			return err
		}
		for _, u := range c.ProbeServers {
			if err := cli.CheckHTTPURL(u, ""); err != nil {
				return fmt.Errorf("probe_servers in %s: %v", *configPath, err)
			}
		}
		probes = c.ProbeServers
	}
	if len(probes) == 0 {
		return usagef("no probe server to check from: pass --probe URL, or set probe_servers = [\"http://HOST:PORT\"] in %s (run one with 'portfwd probe-server' on a host outside your network)", *configPath)
	}
	extPort := ext
	out := jsonCheck{Schema: schemaVersion, Protocol: strings.ToUpper(p), InternalPort: port}
	e.network("check")

	var facts reach.Facts
	if !*noGateway {
		var note string
		facts, extPort, note, err = routerFacts(ctx, e, &cf, &out, p, port, extPort)
		if err != nil {
			return err
		}
		if note != "" && !cf.json {
			fmt.Fprintln(e.stdout, note)
		}
	}
	if extPort == 0 {
		extPort = port
	}

	c := &reach.Checker{Probes: probes}
	if cf.verbose {
		c.Logger = slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	res, err := c.Check(ctx, p, port, extPort)
	if err != nil {
		return err
	}
	reason := reach.Diagnose(res, facts)

	out.Reachable, out.Verified, out.Answered = res.Reachable, res.Verified, res.Answered
	out.ExternalPort, out.Address, out.Listener = res.ExternalPort, res.Address.String(), string(res.Listener)
	out.Probe, out.RTTMillis, out.Code = res.Probe, float64(res.RTT.Microseconds())/1000, res.Code
	out.Observed, out.Reason = res.Reason, reason
	if facts.ExternalIP.IsValid() {
		out.ExternalIPClass = addrClass(portmap.Classify(facts.ExternalIP))
	}
	if facts.GatewayErr != nil {
		out.GatewayError = sentence(facts.GatewayErr)
	}
	what := fmt.Sprintf("%v/%s", res.Address, p)
	if cf.json {
		if err := printJSON(e.stdout, out); err != nil {
			return err
		}
	} else {
		switch {
		case res.Verified:
			fmt.Fprintf(e.stdout, "reachable: %s leads to port %d on this host (probe %s, %v)\n", what, port, res.Probe, res.RTT.Round(100*time.Microsecond))
		case res.Reachable:
			fmt.Fprintf(e.stdout, "reachable, unverified: %s answers (probe %s)\n  %s\n", what, res.Probe, reason)
		default:
			fmt.Fprintf(e.stdout, "not reachable: %s (probe %s)\n  the probe saw: %s\n  why: %s\n", what, res.Probe, res.Reason, reason)
		}
	}
	if !res.Reachable {
		// Under --json the object above says so: no second object.
		return reported{unreachableError{what}}
	}
	return nil
}

// routerFacts asks the gateway what Diagnose needs (reach.RouterFacts)
// and notes it in the JSON answer. The router is context, not a
// precondition: when none answers, the check runs anyway.
func routerFacts(ctx context.Context, e *env, cf *clientFlags, out *jsonCheck, proto string, port, extPort uint16) (reach.Facts, uint16, string, error) {
	var f reach.Facts
	g, err := cf.first(ctx, e)
	if err != nil {
		if ctx.Err() != nil {
			return f, extPort, "", err
		}
		f.GatewayErr = err
		out.GatewayError = err.Error()
		if !cf.json {
			fmt.Fprintf(e.stderr, "warning: %s; checking from outside anyway\n", sentence(err))
		}
		return f, extPort, "", nil
	}
	out.Gateway = g.Addr()
	f, ext, fromTable := reach.RouterFacts(ctx, g, proto, port, extPort, cf.timeout)
	if f.ExternalIP.IsValid() {
		out.ExternalIP, out.ExternalIPClass = f.ExternalIP.String(), portmap.Classify(f.ExternalIP).String()
	}
	out.MappingsListed = f.Listed
	if f.Mapping != nil {
		j := toJSON(*f.Mapping)
		out.Mapping = &j
	}
	note := ""
	if fromTable {
		note = fmt.Sprintf("checking external port %d: the router maps it to port %d on this host", ext, port)
	}
	return f, ext, note, nil
}

func runProbeServer(ctx context.Context, e *env, args []string) error {
	var cf clientFlags // for positional arguments only: none are taken
	fs := plainFlagSet(e, "probe-server", &cf)
	listen := fs.String("listen", "", "the `address` to listen on, host:port, like :8999 (required)")
	rate := fs.String("rate", "10/min", "the `rate` of checks allowed per source address: N/s, N/min or N/h; it cannot be turned off")
	burst := fs.Int("burst", 0, "the checks a source may make at once (default: the N of --rate)")
	timeout := reach.MaxConnectTimeout
	fs.Var(&cli.Duration{P: &timeout}, "connect-timeout", "how long to try to reach a client (at most 5s)")
	maxConc := fs.Int("max-concurrent", 64, "the checks running at once; more are answered 503")
	verbose := fs.Bool("v", false, "log every check's details")
	if err := parse(fs, args, &cf); err != nil {
		return err
	}
	switch {
	case len(cf.positions) > 0:
		return usagef("probe-server takes no arguments, only flags (got %q)", cf.positions[0])
	case *listen == "":
		return usagef("probe-server needs --listen ADDRESS:PORT, e.g. --listen :8999")
	case timeout > reach.MaxConnectTimeout:
		return usagef("--connect-timeout must be at most %v", reach.MaxConnectTimeout)
	case *maxConc <= 0:
		return usagef("--max-concurrent must be at least 1")
	case *burst < 0:
		return usagef("--burst must not be negative")
	}
	limit, err := reach.ParseRateLimit(*rate)
	if err != nil {
		return usagef("--rate: %v", err)
	}
	limit.Burst = *burst
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: level}))
	e.network("probe-server")
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("probe-server: cannot listen on %s: %w", *listen, err)
	}
	s := &reach.ProbeServer{Limit: limit, ConnectTimeout: timeout, MaxConcurrent: *maxConc, Logger: log}
	log.Info("probe server listening", "addr", ln.Addr().String(), "path", reach.Path, "rate_limit", limit.String(),
		"connect_timeout", timeout, "max_concurrent", *maxConc)
	if ap, err := netip.ParseAddrPort(ln.Addr().String()); err == nil && !ap.Addr().IsLoopback() {
		log.Warn("other hosts can reach this probe server: it connects back to whoever asks, only to the asker's own address, at most " +
			limit.String() + " per address; serve it directly, never behind a reverse proxy (it would probe the proxy)")
	}
	return s.Serve(ctx, ln)
}
