package testenv

import (
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
)

// Main runs a package's tests, from its TestMain, with the user's
// directories swapped for empty temporary ones, so that no test, nor
// anything a test starts (a portfwd binary in the lab, Chromium), reads a
// developer's settings or writes into their home:
//
//   - HOME is a new empty directory, and the XDG base directories
//     (XDG_CONFIG_HOME, XDG_STATE_HOME, XDG_CACHE_HOME, XDG_DATA_HOME) are
//     unset, so that every default that derives from them (the client's
//     state directory ~/.local/state/portfwd, its ~/.config/portfwd) lands
//     in it;
//   - PORTFWD_STATE_DIR and PORTFWD_CONFIG are unset: a test that wants
//     them sets them (t.Setenv) to a directory of its own;
//   - TMPDIR is a new directory, removed when the tests pass (and kept,
//     with a line naming it, when they fail): the binaries natlab builds
//     and whatever else a test leaves in the temporary directory go with
//     it;
//   - the go command the tests run (natlab.GoBuild) keeps its settings and
//     caches: GOENV, GOCACHE, GOMODCACHE and GOPATH are pinned where they
//     were.
//
// After the tests, Main fails the run, naming the files, when anything was
// written under the temporary HOME: some test wrote to the user's
// directories (its state, its configuration, a browser profile) instead of
// a directory of its own. The go command's own telemetry counters
// ($HOME/.config/go) are the one exception.
func Main(m *testing.M) {
	os.Exit(runHermetic(m.Run, os.Stderr))
}

// runHermetic is Main with the test run and the report's writer as
// arguments; it returns the exit code.
func runHermetic(run func() int, report io.Writer) int {
	h, err := isolate()
	if err != nil {
		fmt.Fprintf(report, "testenv: cannot isolate the tests from the user's directories: %v\n", err)
		return 1
	}
	code := run()
	h.restore()
	if stray := h.strays(); len(stray) > 0 {
		fmt.Fprintf(report, "testenv: the tests wrote into the user's home directory (HOME was %s for them); each test must use a directory of its own (t.TempDir, --state-dir):\n", h.home)
		for _, p := range stray {
			fmt.Fprintf(report, "\t$HOME/%s\n", p)
		}
		if code == 0 {
			code = 1
		}
	}
	if code != 0 {
		fmt.Fprintf(report, "testenv: the tests' temporary files are kept in %s\n", h.root)
		return code
	}
	if err := os.RemoveAll(h.root); err != nil {
		fmt.Fprintf(report, "testenv: removing the tests' temporary files: %v\n", err)
	}
	return code
}

// hermetic is the environment isolate set up.
type hermetic struct {
	root string // holds home and tmp
	home string
	// saved is each variable isolate changed, with its former value (nil
	// for unset).
	saved map[string]*string
}

// userVars are the variables that point a program at the user's
// directories or at portfwd's own files: unset for the tests.
var userVars = []string{
	"XDG_CONFIG_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME",
	"PORTFWD_STATE_DIR", "PORTFWD_CONFIG",
}

// goVars are the go command's settings whose defaults derive from HOME.
var goVars = []string{"GOENV", "GOCACHE", "GOMODCACHE", "GOPATH"}

// isolate sets the environment Main describes up.
func isolate() (*hermetic, error) {
	pinned, err := goDirs()
	if err != nil {
		return nil, err
	}
	root, err := os.MkdirTemp("", "portfwd-test-")
	if err != nil {
		return nil, err
	}
	h := &hermetic{root: root, home: filepath.Join(root, "home"), saved: map[string]*string{}}
	tmp := filepath.Join(root, "tmp")
	for _, d := range []string{h.home, tmp} {
		if err := os.Mkdir(d, 0o700); err != nil {
			os.RemoveAll(root)
			return nil, err
		}
	}
	set := func(k string, v *string) {
		if _, ok := h.saved[k]; !ok {
			if old, ok := os.LookupEnv(k); ok {
				h.saved[k] = &old
			} else {
				h.saved[k] = nil
			}
		}
		if v == nil {
			os.Unsetenv(k)
		} else {
			os.Setenv(k, *v)
		}
	}
	for _, k := range goVars {
		if v := pinned[k]; v != "" {
			set(k, &v)
		}
	}
	for _, k := range userVars {
		set(k, nil)
	}
	set("HOME", &h.home)
	set("TMPDIR", &tmp)
	return h, nil
}

// restore puts back what isolate changed.
func (h *hermetic) restore() {
	for k, v := range h.saved {
		if v == nil {
			os.Unsetenv(k)
		} else {
			os.Setenv(k, *v)
		}
	}
}

// strays lists, relative to the temporary HOME, the files and directories
// the tests left there, less the go command's own.
func (h *hermetic) strays() []string {
	var out []string
	filepath.WalkDir(h.home, func(p string, d fs.DirEntry, err error) error {
		rel, _ := filepath.Rel(h.home, p)
		switch {
		case err != nil:
			out = append(out, rel+" ("+err.Error()+")")
		case rel == ".":
		case rel == filepath.Join(".config", "go"):
			return fs.SkipDir
		case d.IsDir() && !emptyDir(p):
			// a directory is listed only when empty: its files say more
		default:
			out = append(out, rel)
		}
		return nil
	})
	slices.Sort(out)
	return out
}

func emptyDir(p string) bool {
	ents, err := os.ReadDir(p)
	return err == nil && len(ents) == 0
}

// goDirs returns the go command's settings that goVars name, as it sees
// them now (from the environment, its GOENV file or its defaults), or
// none when there is no go command to ask: then no test can build with
// it either.
func goDirs() (map[string]string, error) {
	goCmd, err := exec.LookPath("go")
	if err != nil {
		return nil, nil
	}
	out, err := exec.Command(goCmd, append([]string{"env", "-json"}, goVars...)...).Output()
	if err != nil {
		return nil, fmt.Errorf("go env: %w", err)
	}
	var m map[string]string
	if err := json.Unmarshal(out, &m); err != nil {
		return nil, fmt.Errorf("go env: %w", err)
	}
	return m, nil
}
