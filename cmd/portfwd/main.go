// Command portfwd opens ports on a NAT router from the command line
// (UPnP IGD, NAT-PMP, PCP), and runs the router side as a daemon.
//
// Run "portfwd help" for the list of commands. Every client command accepts
// --json, --gateway, --natpmp, --protocol, --interface and --timeout; see
// README.md for the JSON schema and exit codes.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// Exit codes, documented in README.md.
const (
	exitOK        = 0
	exitUsage     = 1
	exitNoGateway = 2
	exitRefused   = 3
	exitFailure   = 4
	// exitUnreachable is portfwd check's "the port is not reachable".
	exitUnreachable = 5
)

type command struct {
	name    string
	summary string
	run     func(ctx context.Context, env *env, args []string) error
}

// env is what a command writes to; tests substitute buffers.
type env struct {
	stdout, stderr io.Writer
	// stderrIsTerminal enables the discovery progress line.
	stderrIsTerminal bool
}

func commands() []command {
	return []command{
		{"discover", "find gateways: protocol, control URL, service, status, external IP", runDiscover},
		{"info", "show the gateway's device information", runInfo},
		{"ip", "show the external address (warns about double NAT)", runIP},
		{"list", "list port mappings", runList},
		{"add", "add a port mapping: add PORT [--external N] [--proto tcp|udp|both] ...", runAdd},
		{"edit", "change a mapping: edit EXT/PROTO [--internal N] [--desc ...] ...", runEdit},
		{"delete", "delete mappings: delete EXT/PROTO, or delete --range A-B --proto P", runDelete},
		{"gateway", "run the router side (UPnP IGD + NAT-PMP daemon): gateway --internal IF --external IF", runGateway},
		{"demo", "a gateway and a client on loopback, showing a mapping at work (no router, no root)", runDemo},
		{"check", "prove a forward works from outside: check PORT [--external N] [--proto tcp|udp] --probe URL", runCheck},
		{"probe-server", "answer 'check' from a host outside the NAT: probe-server --listen :8999 [--rate 10/min]", runProbeServer},
		{"ui", "web interface on this computer: ui [--listen 127.0.0.1:0] [--open]", runUI},
		{"watch", "print each change on the gateway until Ctrl-C: external address, mappings, restarts", runWatch},
		{"keep", "keep a port open until Ctrl-C: renew, recover after router restarts, delete on exit", runKeep},
		{"forget", "drop remembered mappings that are gone (or those named, or --all); changes nothing on the router", runForget},
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, &env{stdout: os.Stdout, stderr: os.Stderr, stderrIsTerminal: isTerminal(os.Stderr)}, os.Args[1:])
	stop()
	os.Exit(code)
}

func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

func run(ctx context.Context, e *env, args []string) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(e.stdout)
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return exitCode(e, c.run(ctx, e, args[1:]))
		}
	}
	fmt.Fprintf(e.stderr, "portfwd: unknown command %q (run 'portfwd help')\n", args[0])
	return exitUsage
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "portfwd: open ports on your NAT router (UPnP IGD, NAT-PMP) and run one.")
	fmt.Fprintln(w, "\nUsage: portfwd COMMAND [arguments] [flags]\n\nCommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-13s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun 'portfwd COMMAND -h' for a command's flags.")
}

// usageError marks a mistake in the command line (exit 1).
type usageError struct{ msg string }

func (u usageError) Error() string { return u.msg }

func usagef(format string, a ...any) error { return usageError{fmt.Sprintf(format, a...)} }

// exitCode prints err for the user and picks the process exit code.
func exitCode(e *env, err error) int {
	if err == nil {
		return exitOK
	}
	if errors.Is(err, errHelpShown) {
		return exitOK
	}
	fmt.Fprintf(e.stderr, "portfwd: %v\n", err)
	return classify(err)
}
