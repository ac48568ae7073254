package main

import (
	"context"
	"errors"
	"os"
	"runtime/pprof"

	"github.com/portfwd/portfwd/internal/cli"
	"github.com/portfwd/portfwd/internal/gatewaycmd"
)

// runGateway is "portfwd gateway": package gatewaycmd's command, which
// cmd/portfwd-gateway runs alone.
func runGateway(ctx context.Context, e *env, args []string) error {
	gf := gatewaycmd.Flags{StartCPUProfile: startCPUProfile}
	var cf clientFlags // for positional arguments only: none are taken
	fs := plainFlagSet(e, "gateway", &cf)
	gf.Define(fs)
	if err := parse(fs, args, &cf); err != nil {
		return err
	}
	if len(cf.positions) > 0 {
		return usagef("gateway takes no arguments, only flags (got %q); run 'portfwd gateway --help'", cf.positions[0])
	}
	err := gf.Run(ctx, fs, e.stdout, e.stderr, func() { e.network("gateway") })
	if ue := (*cli.UsageError)(nil); errors.As(err, &ue) {
		return usageError{ue.Msg}
	}
	return err
}

// startCPUProfile writes a CPU profile of the run to file until stop.
func startCPUProfile(file string) (stop func(), err error) {
	f, err := os.Create(file)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}
