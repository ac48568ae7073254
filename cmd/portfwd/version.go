package main

import (
	"context"
	"fmt"

	"github.com/portfwd/portfwd/internal/version"
)

// runVersion is "portfwd version" and "portfwd --version".
func runVersion(ctx context.Context, e *env, args []string) error {
	var cf clientFlags
	fs := plainFlagSet(e, "version", &cf)
	asJSON := fs.Bool("json", false, "print JSON: version, module_version, revision, revision_time, modified, go, os, arch")
	if err := parse(fs, args, &cf); err != nil {
		return err
	}
	if len(cf.positions) > 0 {
		return usagef("version takes no arguments (got %q)", cf.positions[0])
	}
	b := version.ReadBuild()
	if *asJSON {
		return printJSON(e.stdout, struct {
			Schema int `json:"schema"`
			version.Build
		}{schemaVersion, b})
	}
	fmt.Fprintln(e.stdout, b)
	return nil
}
