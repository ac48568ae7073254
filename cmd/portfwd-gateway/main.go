// Command portfwd-gateway is the router side of portfwd alone: the same
// daemon as "portfwd gateway" (UPnP IGD with SSDP and GENA, NAT-PMP and
// PCP over one mapping table, the admin page), without the client
// commands, the web UI or the reachability checker, so that it fits a
// router's flash. Its flags, configuration and behaviour are those of
// "portfwd gateway" (package gatewaycmd); see docs/gateway.md.
//
//	portfwd-gateway --internal br-lan --external wan
//	portfwd-gateway --check --config /etc/portfwd/gateway.toml
//	portfwd-gateway --help | --version
//
// Exit status: 0 done, 1 a configuration or command line it cannot use,
// 4 it cannot run.
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
	"github.com/portfwd/portfwd/internal/gatewaycmd"
	"github.com/portfwd/portfwd/internal/version"
)

const prog = "portfwd-gateway"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Stdout, os.Stderr, os.Args[1:])
	stop()
	os.Exit(code)
}

func run(ctx context.Context, stdout, stderr io.Writer, args []string) int {
	if len(args) == 1 {
		switch args[0] {
		case "version", "-version", "--version":
			fmt.Fprintln(stdout, version.ReadBuild())
			return 0
		case "help":
			args = []string{"--help"}
		}
	}
	gf := gatewaycmd.Flags{Prog: prog}
	fs := flag.NewFlagSet(prog, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	gf.Define(fs)
	pos, err := cli.Parse(fs, args, prog+" --help")
	switch {
	case errors.Is(err, cli.ErrHelp):
		doc := gatewaycmd.Doc(prog)
		doc.Flags = fs
		doc.Description += "\n\nThis is the gateway alone, for routers; the whole tool, with the client commands, is portfwd " +
			"(run as 'portfwd gateway' it is the same daemon). '" + prog + " --version' prints the version."
		(&cli.Program{Name: prog}).WriteHelp(stdout, &doc)
		return 0
	case err == nil && len(pos) > 0:
		err = cli.Usagef("no arguments are taken, only flags (got %q); run '%s --help'", pos[0], prog)
	case err == nil:
		err = gf.Run(ctx, fs, stdout, stderr, nil)
	}
	if err == nil {
		return 0
	}
	fmt.Fprintf(stderr, "%s: %v\n", prog, err)
	if ue := (*cli.UsageError)(nil); errors.As(err, &ue) {
		return 1
	}
	return 4
}
