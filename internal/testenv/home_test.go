package testenv

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// Inside Main the user's directories are empty temporary ones, portfwd's
// own variables are unset, and the go command keeps its caches; after it,
// everything is as it was, and the temporary files are gone.
func TestMainIsolatesTheUsersDirectories(t *testing.T) {
	t.Setenv("PORTFWD_STATE_DIR", "/home/someone/.local/state/portfwd")
	t.Setenv("XDG_STATE_HOME", "/home/someone/.local/state")
	before := slices.Sorted(slices.Values(os.Environ()))
	realHome, _ := os.UserHomeDir()
	var inside struct{ home, state, tmp, gocache string }
	var report bytes.Buffer
	code := runHermetic(func() int {
		inside.home, _ = os.UserHomeDir()
		inside.state = os.Getenv("PORTFWD_STATE_DIR") + os.Getenv("XDG_STATE_HOME")
		inside.tmp = os.TempDir()
		inside.gocache = os.Getenv("GOCACHE")
		return 0
	}, &report)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, report.String())
	}
	if inside.home == realHome || !strings.HasPrefix(inside.home, filepath.Dir(inside.tmp)) {
		t.Errorf("HOME in the tests = %s, want a temporary one beside TMPDIR %s", inside.home, inside.tmp)
	}
	if inside.state != "" {
		t.Errorf("PORTFWD_STATE_DIR and XDG_STATE_HOME in the tests: %q, want both unset", inside.state)
	}
	if _, err := os.Stat(inside.home); !os.IsNotExist(err) {
		t.Errorf("the temporary home is still there after a passing run: %v", err)
	}
	if after := slices.Sorted(slices.Values(os.Environ())); !slices.Equal(after, before) {
		t.Errorf("the environment is not restored:\n%v\nwant\n%v", after, before)
	}
	if _, err := LookPath("go"); err == nil && inside.gocache == "" {
		t.Errorf("GOCACHE is not pinned for the go command the tests run")
	}
}

// A test that writes the client's state into the home directory fails the
// run, and the report names the file; the go command's telemetry does not.
func TestMainFailsOnWritesUnderHome(t *testing.T) {
	for _, tc := range []struct {
		name  string
		write string // under HOME
		fails bool
	}{
		{"client state", ".local/state/portfwd/state.json", true},
		{"config", ".config/portfwd/config.toml", true},
		{"empty directory", ".pki", true},
		{"go telemetry", ".config/go/telemetry/local/x.count", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var home string
			var report bytes.Buffer
			code := runHermetic(func() int {
				home = os.Getenv("HOME")
				p := filepath.Join(home, tc.write)
				if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
					t.Error(err)
				}
				if filepath.Ext(p) != "" {
					if err := os.WriteFile(p, nil, 0o600); err != nil {
						t.Error(err)
					}
				} else if err := os.Mkdir(p, 0o700); err != nil {
					t.Error(err)
				}
				return 0
			}, &report)
			t.Cleanup(func() { os.RemoveAll(filepath.Dir(home)) })
			if got := code != 0; got != tc.fails {
				t.Fatalf("writing $HOME/%s: exit %d, want failure %v; report:\n%s", tc.write, code, tc.fails, report.String())
			}
			if tc.fails && (!strings.Contains(report.String(), "$HOME/"+tc.write+"\n") || !strings.Contains(report.String(), "kept in")) {
				t.Errorf("the report does not name $HOME/%s and where the files are kept:\n%s", tc.write, report.String())
			}
		})
	}
}

// A failing run keeps its temporary files and says where.
func TestMainKeepsTheFilesOfAFailingRun(t *testing.T) {
	var tmp string
	var report bytes.Buffer
	code := runHermetic(func() int { tmp = os.TempDir(); return 3 }, &report)
	t.Cleanup(func() { os.RemoveAll(filepath.Dir(tmp)) })
	if code != 3 {
		t.Errorf("exit %d, want the tests' 3", code)
	}
	if _, err := os.Stat(tmp); err != nil || !strings.Contains(report.String(), filepath.Dir(tmp)) {
		t.Errorf("the temporary files of a failing run: %v; report: %s", err, report.String())
	}
}
