package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os/exec"
	"runtime"
	"strings"

	"github.com/portfwd/portfwd/internal/cli"
	"github.com/portfwd/portfwd/portmap"
	"github.com/portfwd/portfwd/reach"
	"github.com/portfwd/portfwd/webui"
)

// runUI is "portfwd ui": the web interface, on loopback unless --listen
// says otherwise. It prints the address with this run's secret token and
// serves until interrupted.
func runUI(ctx context.Context, e *env, args []string) error {
	var cf clientFlags
	fs := newFlagSet(e, "ui", &cf)
	listen := fs.String("listen", "127.0.0.1:0", "the `address` to serve on, host:port (port 0: any free port); an address other computers can reach gets a warning")
	open := fs.Bool("open", false, "open the page in the web browser (with xdg-open)")
	var probes []string
	fs.Var(&cli.URLs{P: &probes, Example: "http://probe.example.net:8999"}, "probe",
		"a probe server's URL for the page's check buttons; repeat it for several (default: probe_servers in the configuration file)")
	fs.BoolVar(&cf.wait, "wait", false, "collect every gateway until --timeout instead of stopping at the first usable one")
	if err := parse(fs, args, &cf); err != nil {
		return err
	}
	if len(cf.positions) > 0 {
		return usagef("ui takes no arguments, only flags, e.g. 'portfwd ui --open'")
	}
	exposed, err := listenExposed(*listen)
	if err != nil {
		return err
	}
	o, err := cf.options(e)
	if err != nil {
		return err
	}
	// The page shows discovery's progress; the terminal keeps the address.
	o.Progress = nil
	e.network("ui")
	log := o.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("cannot listen on %s (%w): choose another address with --listen", *listen, err)
	}
	srv := &webui.Server{
		Options:         o,
		DiscoverTimeout: cf.timeout,
		// A change is several requests on some routers (an edit reads,
		// deletes and adds), so each operation gets more than one
		// request's --timeout.
		Timeout: 3 * cf.timeout,
		Token:   webui.NewToken(),
		Logger:  log,
	}
	keeper := &webui.PortmapKeeper{Options: o}
	defer keeper.Close()
	srv.Keeper = keeper
	// The page follows the router's events, as portfwd watch does, and
	// polls only a router that sends none.
	srv.Watcher = &webui.PortmapWatcher{Options: o}
	srv.Pinholes = func() ([]portmap.Mapping, error) {
		ms, _, err := pinholeRecords(o.StateDir)
		return ms, err
	}
	if len(probes) == 0 {
		if c, err := loadConfig(defaultConfigPath(), false); err == nil {
			probes = c.ProbeServers
		}
	}
	if len(probes) > 0 {
		rc := &reach.Checker{Probes: probes, Logger: log}
		srv.Checker = webui.CheckFunc(func(ctx context.Context, g portmap.Gateway, proto string, internalPort, externalPort uint16) (any, error) {
			r, err := rc.CheckGateway(ctx, g, strings.ToLower(proto), internalPort, externalPort, cf.timeout)
			if err != nil {
				return nil, err
			}
			return newUICheck(r, strings.ToLower(proto), internalPort), nil
		})
	}
	url := srv.URL(ln.Addr())
	if exposed {
		fmt.Fprintf(e.stderr, "warning: portfwd ui listens on %s, which other computers may reach: anyone who learns the token can change "+
			"your router's port mappings, and plain HTTP does not hide it on the network. Use --listen 127.0.0.1:PORT unless you mean it.\n", ln.Addr())
	}
	if cf.json {
		if err := printJSON(e.stdout, struct {
			Schema int    `json:"schema"`
			URL    string `json:"url"`
			Listen string `json:"listen"`
			Token  string `json:"token"`
		}{schemaVersion, url, ln.Addr().String(), srv.Token}); err != nil {
			ln.Close()
			return err
		}
	} else {
		fmt.Fprintf(e.stdout, "portfwd ui: open %s\n(the address holds a secret for this run only; stop with Ctrl-C)\n", url)
	}
	if *open {
		openBrowser(e, url)
	}
	return srv.Serve(ctx, ln)
}

// listenExposed checks a --listen address and reports whether it may be
// reachable from other computers: anything but a loopback address or
// "localhost". An empty host means every interface.
func listenExposed(addr string) (bool, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false, usagef("--listen must be HOST:PORT, such as 127.0.0.1:8080, not %q", addr)
	}
	if strings.EqualFold(host, "localhost") {
		return false, nil
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		// A name may resolve to anything.
		return true, nil
	}
	return !a.IsLoopback(), nil
}

// openBrowser opens url with the desktop's opener, if there is one. It is
// a convenience: the address is printed anyway.
func openBrowser(e *env, url string) {
	opener := "xdg-open"
	if runtime.GOOS == "darwin" {
		opener = "open"
	}
	path, err := exec.LookPath(opener)
	if err != nil {
		fmt.Fprintf(e.stderr, "portfwd ui: cannot open a browser (%s not found); open the address above yourself\n", opener)
		return
	}
	cmd := exec.Command(path, url)
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(e.stderr, "portfwd ui: cannot open a browser (%v); open the address above yourself\n", err)
		return
	}
	go cmd.Wait() // reap it; xdg-open returns once the browser has the URL
}

// uiCheck is the web UI's answer to its check button: the fields of
// 'portfwd check --json' (schema 1's names), and Report's one line as the
// summary. The diagnosis is the CLI's: reach.CheckGateway runs the same
// reach.RouterFacts and reach.Diagnose as portfwd check.
type uiCheck struct {
	jsonCheck
	summary string
}

func (c uiCheck) String() string { return c.summary }

func newUICheck(r reach.Report, proto string, internalPort uint16) uiCheck {
	return uiCheck{summary: r.String(), jsonCheck: jsonCheck{
		Schema: schemaVersion, Reachable: r.Reachable, Verified: r.Verified, Answered: r.Answered,
		Protocol: proto, InternalPort: internalPort, ExternalPort: r.ExternalPort, Address: r.Address.String(),
		Listener: string(r.Listener), Probe: r.Probe, RTTMillis: float64(r.RTT.Microseconds()) / 1000, Code: r.Code,
		Observed: r.Reason, Reason: r.Diagnosis,
	}}
}
