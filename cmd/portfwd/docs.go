package main

import (
	"context"
	"slices"

	"github.com/portfwd/portfwd/internal/cli"
)

// runCompletion is "portfwd completion bash|zsh|fish".
func runCompletion(ctx context.Context, e *env, args []string) error {
	var cf clientFlags
	fs := plainFlagSet(e, "completion", &cf)
	if err := parse(fs, args, &cf); err != nil {
		return err
	}
	if len(cf.positions) != 1 || !slices.Contains(cli.Shells, cf.positions[0]) {
		return usagef("completion takes the name of a shell: %s, e.g. 'portfwd completion bash'", cli.OneOf(cli.Shells))
	}
	p, err := fullProgram(ctx)
	if err != nil {
		return err
	}
	return p.WriteCompletion(e.stdout, cf.positions[0])
}

// runMan is "portfwd man": the manual page, in roff.
func runMan(ctx context.Context, e *env, args []string) error {
	var cf clientFlags
	fs := plainFlagSet(e, "man", &cf)
	if err := parse(fs, args, &cf); err != nil {
		return err
	}
	if len(cf.positions) > 0 {
		return usagef("man takes no arguments (got %q)", cf.positions[0])
	}
	p, err := fullProgram(ctx)
	if err != nil {
		return err
	}
	p.WriteMan(e.stdout)
	return nil
}
