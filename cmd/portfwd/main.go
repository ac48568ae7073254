// Command portfwd opens ports on a NAT router from the command line, over
// UPnP IGD, NAT-PMP and PCP, and runs the router side of the same three
// protocols as a daemon (portfwd gateway).
//
// Run "portfwd help" for the list of commands and "portfwd help COMMAND"
// for one; "portfwd man" prints the manual page. Every client command
// accepts --json, --gateway, --natpmp, --protocol, --interface, --timeout,
// --state-dir, --no-cache and -v. README.md documents the JSON schema and
// the exit codes.
//
// The commands' documentation (program.go) and their flags (defined by
// each command's run function) are the one source of the help, the man
// page and the shell completions; package internal/cli renders them.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/portfwd/portfwd/internal/cli"
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
	name string
	run  func(ctx context.Context, e *env, args []string) error
}

// env is what a command writes to; tests substitute buffers.
type env struct {
	stdout, stderr io.Writer
	// stderrIsTerminal enables the discovery progress line.
	stderrIsTerminal bool

	// json and verbose are the command's --json and -v, once parsed:
	// they decide how an error is printed.
	json, verbose bool
	// flagSink, when set, receives the command's flag set instead of its
	// help being printed (for the man page and the completions).
	flagSink func(*flag.FlagSet)
	// beforeNetwork, when set, is called just before a command first
	// sends or listens on the network; tests use it to prove that usage
	// errors come before any traffic.
	beforeNetwork func(what string)
}

// network marks the moment a command starts to use the network.
func (e *env) network(what string) {
	if e.beforeNetwork != nil {
		e.beforeNetwork(what)
	}
}

func commands() []command {
	return []command{
		{"discover", runDiscover},
		{"info", runInfo},
		{"ip", runIP},
		{"list", runList},
		{"add", runAdd},
		{"edit", runEdit},
		{"delete", runDelete},
		{"keep", runKeep},
		{"forget", runForget},
		{"watch", runWatch},
		{"check", runCheck},
		{"ui", runUI},
		{"gateway", runGateway},
		{"probe-server", runProbeServer},
		{"demo", runDemo},
		{"version", runVersion},
		{"completion", runCompletion},
		{"man", runMan},
		{"help", runHelp},
	}
}

func lookup(name string) (command, bool) {
	for _, c := range commands() {
		if c.name == name {
			return c, true
		}
	}
	return command{}, false
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
	if len(args) == 0 {
		// Help on stdout, as for "portfwd help", but a command was
		// expected: exit 1.
		program().WriteIndex(e.stdout)
		return exitUsage
	}
	switch args[0] {
	case "-h", "-help", "--help":
		program().WriteIndex(e.stdout)
		return exitOK
	case "-version", "--version":
		return exitCode(e, runVersion(ctx, e, args[1:]))
	}
	if c, ok := lookup(args[0]); ok {
		return exitCode(e, c.run(ctx, e, args[1:]))
	}
	e.json = wantsJSON(args)
	msg := fmt.Sprintf("unknown command %q", args[0])
	if len(args[0]) > 1 && args[0][0] == '-' {
		msg = fmt.Sprintf("%s is not a command; flags come after the command, as in 'portfwd list --json'", args[0])
	} else if s := cli.Suggest(args[0], program().CommandNames()); s != "" {
		msg += fmt.Sprintf("; did you mean 'portfwd %s'?", s)
	}
	return exitCode(e, usagef("%s (run 'portfwd help' for the list of commands)", msg))
}

// runHelp is "portfwd help [COMMAND]".
func runHelp(ctx context.Context, e *env, args []string) error {
	var cf clientFlags
	fs := plainFlagSet(e, "help", &cf)
	if err := parse(fs, args, &cf); err != nil {
		return err
	}
	switch len(cf.positions) {
	case 0:
		program().WriteIndex(e.stdout)
		return nil
	case 1:
	default:
		return usagef("help takes one command, e.g. 'portfwd help add'")
	}
	name := cf.positions[0]
	c, ok := lookup(name)
	if !ok {
		msg := fmt.Sprintf("no command %q", name)
		if s := cli.Suggest(name, program().CommandNames()); s != "" {
			msg += fmt.Sprintf("; did you mean 'portfwd help %s'?", s)
		}
		return usagef("%s (run 'portfwd help' for the list of commands)", msg)
	}
	return c.run(ctx, e, []string{"--help"})
}

// wantsJSON reports whether args ask for JSON, for an error found before
// the flags are parsed.
func wantsJSON(args []string) bool {
	for _, a := range args {
		switch a {
		case "--":
			return false
		case "--json", "-json", "--json=true", "-json=true":
			return true
		}
	}
	return false
}

// usageError marks a mistake in the command line (exit 1).
type usageError struct{ msg string }

func (u usageError) Error() string { return u.msg }

func usagef(format string, a ...any) error { return usageError{fmt.Sprintf(format, a...)} }

// errHelpShown ends a command whose help was asked for (exit 0).
var errHelpShown = errors.New("help shown")
