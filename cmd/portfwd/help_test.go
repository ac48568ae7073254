package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/portfwd/portfwd/internal/cli"
)

var updateGolden = flag.Bool("update", false, "rewrite the golden files (testdata, docs/portfwd.1) from the output")

// TestHelpOfEachCommand: -h, --help and "portfwd help CMD" print the same
// help on stdout and exit 0: a usage line, a description, the flags as
// users type them, and examples.
func TestHelpOfEachCommand(t *testing.T) {
	for _, c := range commands() {
		t.Run(c.name, func(t *testing.T) {
			help, stderr, code, network := runWatched(t, "help", c.name)
			if code != exitOK || stderr != "" || len(network) > 0 {
				t.Fatalf("help %s: exit %d, stderr %q, network %v", c.name, code, stderr, network)
			}
			for _, flag := range []string{"-h", "--help", "-help"} {
				if out, _, code, _ := runWatched(t, c.name, flag); out != help || code != exitOK {
					t.Errorf("%s %s (exit %d) differs from help %s:\n%s", c.name, flag, code, c.name, out)
				}
			}
			if !strings.HasPrefix(help, "Usage: portfwd "+c.name) {
				t.Errorf("no usage line:\n%s", help)
			}
			usage, rest, _ := strings.Cut(help, "\n\n")
			description, _, _ := strings.Cut(rest, "\n\n")
			if len(strings.Fields(description)) < 10 {
				t.Errorf("%s: no description: %q", usage, description)
			}
			if !strings.Contains(help, "\nExamples:\n  portfwd "+c.name) && !strings.Contains(help, "\nExamples:\n  # ") {
				t.Errorf("%s: no examples:\n%s", usage, help)
			}
			// Long flags are shown with two dashes, as users type them.
			if m := regexp.MustCompile(`(?m)^  -[a-z][a-z-]+`).FindString(help); m != "" {
				t.Errorf("%s: a flag with one dash: %q", usage, m)
			}
			if regexp.MustCompile(`(?m)^Usage of `).MatchString(help) {
				t.Errorf("%s: the flag package's own usage", usage)
			}
		})
	}
	// The flags of a command are its own first, then the client flags.
	add, _, _, _ := runWatched(t, "help", "add")
	for _, s := range []string{"Usage: portfwd add PORT [flags]", "\nFlags:\n  --any ", "  --external PORT ", "  --lease DURATION ",
		"  --proto tcp|udp|both    the protocol to map (default tcp)", "\nClient flags (every client command):\n  --gateway URL",
		"  --timeout DURATION ", "  -v  ", "  portfwd add 8080\n"} {
		if !strings.Contains(add, s) {
			t.Errorf("help add lacks %q:\n%s", s, add)
		}
	}
}

// TestTopLevelHelp: "portfwd help", --help and -h print the list of
// commands on stdout (exit 0); "portfwd" alone prints it and exits 1.
func TestTopLevelHelp(t *testing.T) {
	help, _, code, _ := runWatched(t, "help")
	if code != exitOK {
		t.Fatalf("help: exit %d", code)
	}
	for _, args := range [][]string{{"--help"}, {"-h"}} {
		if out, _, code, _ := runWatched(t, args...); out != help || code != exitOK {
			t.Errorf("%v (exit %d) differs from help", args, code)
		}
	}
	if out, _, code, _ := runWatched(t); out != help || code != exitUsage {
		t.Errorf("no arguments: exit %d, want the help and 1", code)
	}
	for _, s := range []string{"UPnP IGD", "NAT-PMP", "PCP", "Exit status:", "portfwd help COMMAND"} {
		if !strings.Contains(help, s) {
			t.Errorf("help lacks %q", s)
		}
	}
	for _, c := range commands() {
		if !strings.Contains(help, "\n  "+c.name+" ") {
			t.Errorf("help does not list %s", c.name)
		}
	}
}

// TestEveryCommandIsDocumentedWithItsFlags: the man page and completions
// are built from every command's documentation and flags, and asking a
// command for its flags sends nothing.
func TestEveryCommandIsDocumentedWithItsFlags(t *testing.T) {
	p, err := fullProgram(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range p.Commands() {
		if c.Summary == "" || c.Description == "" || len(c.Examples) == 0 || c.Flags == nil {
			t.Errorf("%s: summary %q, %d examples, flags %v", c.Name, c.Summary, len(c.Examples), c.Flags != nil)
		}
	}
	if f := p.Command("add").Flags.Lookup("external"); f == nil || cli.Placeholder(f) != "PORT" {
		t.Errorf("add's --external: %v", f)
	}
}

// TestManPage: docs/portfwd.1 is what "portfwd man" prints (run the test
// with -update to write it), and man(1) formats it without a warning
// where groff is installed.
func TestManPage(t *testing.T) {
	out, stderr, code, network := runWatched(t, "man")
	if code != exitOK || stderr != "" || len(network) > 0 {
		t.Fatalf("man: exit %d, stderr %q, network %v", code, stderr, network)
	}
	for _, s := range []string{".TH PORTFWD 1", `.SS "portfwd add PORT [flags]"`, `\fB\-\-external\fR \fIPORT\fR`, "UPnP IGD", "NAT\\-PMP", "PCP",
		`.SH "CLIENT FLAGS (EVERY CLIENT COMMAND)"`, `.SH "EXIT STATUS"`} {
		if !strings.Contains(out, s) {
			t.Errorf("man page lacks %q", s)
		}
	}
	golden(t, filepath.Join("..", "..", "docs", "portfwd.1"), out)
	groff, err := exec.LookPath("groff")
	if err != nil {
		t.Log("groff is not installed: the man page's formatting is not checked")
		return
	}
	cmd := exec.Command(groff, "-man", "-Tutf8", "-ww", "-z")
	cmd.Stdin = strings.NewReader(out)
	if msg, err := cmd.CombinedOutput(); err != nil || len(msg) > 0 {
		t.Errorf("groff: %v\n%s", err, msg)
	}
}

// TestCompletion: each shell's script comes from the same commands and
// flags; bash's completes as a user expects.
func TestCompletion(t *testing.T) {
	for _, sh := range cli.Shells {
		out, _, code, network := runWatched(t, "completion", sh)
		if code != exitOK || len(network) > 0 || !strings.Contains(out, "keep") || !strings.Contains(out, "no-cache") {
			t.Errorf("completion %s: exit %d, network %v:\n%s", sh, code, network, out)
		}
	}
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash")
	}
	script, _, _, _ := runWatched(t, "completion", "bash")
	complete := func(line string) []string {
		words := strings.Split(line, " ")
		quoted := make([]string, len(words))
		for i, w := range words {
			quoted[i] = "'" + w + "'"
		}
		sh := script + "\nCOMP_WORDS=(" + strings.Join(quoted, " ") + ")\nCOMP_CWORD=$((${#COMP_WORDS[@]} - 1))\n_portfwd\nprintf '%s\\n' \"${COMPREPLY[@]}\"\n"
		out, err := exec.Command(bash, "--norc", "-c", sh).CombinedOutput()
		if err != nil {
			t.Fatalf("bash: %v\n%s", err, out)
		}
		return strings.Fields(string(out))
	}
	for line, want := range map[string][]string{
		"portfwd ls":                     nil,
		"portfwd li":                     {"list"},
		"portfwd add 8080 --proto ":      {"tcp", "udp", "both"},
		"portfwd list --protocol ":       {"auto", "upnp", "natpmp", "pcp"},
		"portfwd keep --no-c":            {"--no-cache"},
		"portfwd gateway --log-format ":  {"text", "json"},
		"portfwd completion ":            {"bash", "zsh", "fish"},
		"portfwd help ad":                {"add"},
		"portfwd check 80 --probe http:": nil,
	} {
		if got := complete(line); !slices.Equal(got, want) {
			t.Errorf("%q completes to %q, want %q", line, got, want)
		}
	}
}

func TestVersion(t *testing.T) {
	out, _, code, _ := runWatched(t, "version")
	if code != exitOK || !regexp.MustCompile(`^portfwd 0\.1 \(.*revision .*; built with go1\.\S+ \S+/\S+\)\n$`).MatchString(out) {
		t.Errorf("version: exit %d, %q", code, out)
	}
	if again, _, _, _ := runWatched(t, "--version"); again != out {
		t.Errorf("--version: %q, want %q", again, out)
	}
	j, _, _, _ := runWatched(t, "version", "--json")
	var v map[string]any
	if err := json.Unmarshal([]byte(j), &v); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"schema", "version", "module_version", "revision", "revision_time", "modified", "go", "os", "arch"} {
		if _, ok := v[k]; !ok {
			t.Errorf("version --json lacks %q: %s", k, j)
		}
	}
}

// golden compares got with the file at path, or writes it with -update.
func golden(t *testing.T, path, got string) {
	t.Helper()
	if *updateGolden {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run the test with -update to write it)", err)
	}
	if string(want) != got {
		t.Errorf("%s differs from the output (run the test with -update to rewrite it):\n%s", path, lineDiff(string(want), got))
	}
}

// lineDiff shows the first lines that differ.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b bytes.Buffer
	for i := 0; i < max(len(w), len(g)) && b.Len() < 2000; i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			b.WriteString("line " + strconv.Itoa(i+1) + ":\n  want " + wl + "\n  got  " + gl + "\n")
		}
	}
	return b.String()
}
