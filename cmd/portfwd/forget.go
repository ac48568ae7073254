package main

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/portfwd/portfwd/portmap"
)

// runForget drops records of the state directory: by default those whose
// mapping is gone (lease ended, or no longer on the router), or those
// named, or all. It never changes anything on the router.
func runForget(ctx context.Context, e *env, args []string) error {
	var cf clientFlags
	fs := newFlagSet(e, "forget", &cf)
	all := fs.Bool("all", false, "forget every record (except those of a running portfwd keep)")
	var proto string
	fs.Var(protoFlag(&proto), "proto", "the protocol of a mapping given without /PROTO")
	if err := parse(fs, args, &cf); err != nil {
		return err
	}
	if *all && len(cf.positions) > 0 {
		return usagef("forget takes mappings (e.g. 9000/tcp) or --all, not both")
	}
	var keys []portmap.Key
	for _, p := range cf.positions {
		ks, err := parseKey(p, proto)
		if err != nil {
			return err
		}
		keys = append(keys, ks...)
	}
	var out []portmap.Forgotten
	switch {
	case *all || len(cf.positions) > 0:
		gone, err := portmap.Forget(cf.stateDir, func(r portmap.Record) bool {
			if *all {
				return true
			}
			for _, k := range keys {
				if r.Key() == k {
					return true
				}
			}
			return false
		})
		for _, r := range gone {
			out = append(out, portmap.Forgotten{Record: r, Why: "asked to"})
		}
		if err != nil {
			return err
		}
	default:
		// Records that only the router can say are gone need it: look
		// for it only when there are such records.
		recs, err := portmap.Remembered(cf.stateDir)
		if err != nil {
			return err
		}
		var gws []portmap.Gateway
		for _, r := range recs {
			if r.Method == portmap.UPnP && !r.Expired(time.Now()) {
				g, err := cf.first(ctx, e)
				if err != nil {
					fmt.Fprintf(e.stderr, "portfwd: cannot check the UPnP records against the router (%s); they are kept\n", sentence(err))
				} else {
					gws = append(gws, g)
				}
				break
			}
		}
		rctx, cancel := cf.requestCtx(ctx, 4)
		out, err = portmap.Prune(rctx, cf.stateDir, gws)
		cancel()
		if err != nil {
			return err
		}
	}
	left, err := portmap.Remembered(cf.stateDir)
	if err != nil {
		return err
	}
	if cf.json {
		recs := make([]jsonRecord, len(out))
		for i, f := range out {
			recs[i] = toJSONRecord(f)
		}
		return printJSON(e.stdout, struct {
			Schema    int          `json:"schema"`
			Forgotten []jsonRecord `json:"forgotten"`
			Kept      int          `json:"kept"`
			StateDir  string       `json:"state_dir"`
		}{schemaVersion, recs, len(left), cf.stateDir})
	}
	for _, f := range out {
		fmt.Fprintf(e.stdout, "forgot %s via %s %s (-> %s): %s\n", f.Key(), f.Method.Name(), f.Gateway,
			net.JoinHostPort(f.InternalClient, strconv.Itoa(int(f.InternalPort))), f.Why)
	}
	fmt.Fprintf(e.stdout, "%d record(s) forgotten, %d kept in %s\n", len(out), len(left), cf.stateDir)
	return nil
}
