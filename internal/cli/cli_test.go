package cli

import (
	"bytes"
	"errors"
	"flag"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"
)

// testFlags is a flag set like a portfwd command's.
func testFlags() (*flag.FlagSet, *struct {
	port  uint16
	proto string
	lease time.Duration
	json  bool
	desc  string
}) {
	v := &struct {
		port  uint16
		proto string
		lease time.Duration
		json  bool
		desc  string
	}{proto: "tcp"}
	fs := flag.NewFlagSet("add", flag.ContinueOnError)
	fs.Var((*Port)(&v.port), "external", "the external port")
	fs.Var(&Enum{P: &v.proto, Choices: []string{"tcp", "udp", "both"}}, "proto", "the protocol")
	fs.Var(&Duration{P: &v.lease, ZeroOK: true, Min: time.Second}, "lease", "how long")
	fs.BoolVar(&v.json, "json", false, "print JSON")
	fs.StringVar(&v.desc, "desc", "portfwd", "the `text` to show")
	fs.Bool("v", false, "verbose")
	return fs, v
}

func TestParseAcceptsFlagsAnywhere(t *testing.T) {
	fs, v := testFlags()
	pos, err := Parse(fs, []string{"8080", "--external", "18080", "-proto=UDP", "--json", "extra", "--lease", "7d", "--", "--desc"}, "")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(pos, []string{"8080", "extra", "--desc"}) {
		t.Errorf("positional: %q", pos)
	}
	if v.port != 18080 || v.proto != "udp" || !v.json || v.lease != 7*24*time.Hour || v.desc != "portfwd" {
		t.Errorf("values: %+v", *v)
	}
	var given []string
	fs.Visit(func(f *flag.Flag) { given = append(given, f.Name) })
	if !slices.Equal(given, []string{"external", "json", "lease", "proto"}) {
		t.Errorf("Visit lists %v", given)
	}
}

func TestParseErrorsAreOneSentenceNamingTheFlag(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--bogus"}, `unknown flag --bogus ('portfwd add --help' lists the flags)`},
		{[]string{"--jsno"}, `unknown flag --jsno; did you mean --json? ('portfwd add --help' lists the flags)`},
		{[]string{"--extrenal=5"}, `unknown flag "--extrenal=5"; did you mean --external?`},
		{[]string{"--external"}, `--external needs a value (--external PORT)`},
		{[]string{"--lease"}, `--lease needs a value, like --lease 1h`},
		{[]string{"--external", "0"}, `--external: 0 is not a port number: ports are 1-65535`},
		{[]string{"--external", "70000"}, `--external: 70000 is not a port number: ports are 1-65535`},
		{[]string{"--external", "abc"}, `--external: "abc" is not a port number (1-65535)`},
		{[]string{"--external", "99999999999999999999"}, `--external: 99999999999999999999 is not a port number: ports are 1-65535`},
		{[]string{"--proto", "xyz"}, `--proto must be tcp, udp or both, not "xyz"`},
		{[]string{"--lease", "5"}, `--lease: "5" has no unit; did you mean 5s?`},
		{[]string{"--lease", "-5m"}, `--lease: -5m is negative; give a length of time such as 1h`},
		{[]string{"--lease", "500ms"}, `--lease: 500ms is too short: at least 1s`},
		{[]string{"--lease", "soon"}, `--lease: "soon" is not a length of time such as 30s, 5m, 1h or 7d`},
		{[]string{"--json=maybe"}, `--json is true or false, not "maybe"`},
	} {
		fs, _ := testFlags()
		_, err := Parse(fs, tt.args, "portfwd add --help")
		var ue *UsageError
		if !errors.As(err, &ue) {
			t.Errorf("%q: %v, want a *UsageError", tt.args, err)
			continue
		}
		if !strings.HasPrefix(ue.Msg, tt.want) {
			t.Errorf("%q:\n got %s\nwant %s", tt.args, ue.Msg, tt.want)
		}
		if strings.Count(ue.Msg, "\n") > 0 {
			t.Errorf("%q: more than a line: %q", tt.args, ue.Msg)
		}
	}
}

func TestParseHelp(t *testing.T) {
	for _, a := range []string{"-h", "-help", "--help"} {
		fs, _ := testFlags()
		if _, err := Parse(fs, []string{"8080", a, "--bogus"}, ""); !errors.Is(err, ErrHelp) {
			t.Errorf("%s: %v, want ErrHelp", a, err)
		}
	}
}

func TestDurations(t *testing.T) {
	for in, want := range map[string]time.Duration{"0": 0, "30s": 30 * time.Second, "1h30m": 90 * time.Minute,
		"7d": 7 * 24 * time.Hour, "1d12h": 36 * time.Hour, "-5m": -5 * time.Minute, " 2h ": 2 * time.Hour} {
		got, err := ParseDuration(in)
		if err != nil || got != want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "5", "1.5", "d", "5x", "1d-1h"} {
		if _, err := ParseDuration(in); err == nil {
			t.Errorf("ParseDuration(%q) accepted", in)
		}
	}
	for d, want := range map[time.Duration]string{time.Hour: "1h", 90 * time.Minute: "1h30m", 5 * time.Minute: "5m",
		3 * time.Second: "3s", 168 * time.Hour: "168h", 1500 * time.Millisecond: "1.5s"} {
		if got := FormatDuration(d); got != want {
			t.Errorf("FormatDuration(%v) = %s, want %s", d, got, want)
		}
	}
	var zero time.Duration
	if err := (&Duration{P: &zero}).Set("0s"); err == nil || !strings.Contains(err.Error(), "must be above 0") {
		t.Errorf("a zero timeout: %v", err)
	}
}

func TestEnumAliasesAndCase(t *testing.T) {
	var p string
	e := &Enum{P: &p, Choices: []string{"auto", "natpmp"}, Aliases: map[string]string{"nat-pmp": "natpmp"}}
	for _, in := range []string{"NAT-PMP", "natpmp", " NatPmp "} {
		if err := e.Set(in); err != nil || p != "natpmp" {
			t.Errorf("Set(%q): %v, %q", in, err, p)
		}
	}
}

func TestCheckHTTPURL(t *testing.T) {
	for _, ok := range []string{"http://10.0.0.1:5000/rootDesc.xml", "https://probe.example.net", "http://[::1]:8999/x"} {
		if err := CheckHTTPURL(ok, ""); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for _, bad := range []string{"not-a-url", "10.0.0.1:5000", "ftp://x/", "http://", "http://h:99999/", "http:///path"} {
		if err := CheckHTTPURL(bad, ""); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

func TestSuggest(t *testing.T) {
	cmds := []string{"discover", "info", "ip", "list", "add", "edit", "delete", "keep", "forget", "watch", "check", "help"}
	for typed, want := range map[string]string{"lsit": "list", "hlep": "help", "dicsover": "discover", "disc": "discover",
		"delte": "delete", "ad": "add", "xyz": "", "frobnicate": "", "i": ""} {
		if got := Suggest(typed, cmds); got != want {
			t.Errorf("Suggest(%q) = %q, want %q", typed, got, want)
		}
	}
}

func testProgram() *Program {
	fs, _ := testFlags()
	c := &Command{Name: "add", Args: "PORT", Summary: "add a mapping",
		Description: "Adds a mapping.\n\nIt is read back.",
		Examples:    []Example{{Command: "portfwd add 8080", Comment: "the simplest"}, {Command: "portfwd add 8080 --proto both"}},
		Flags:       fs, Shared: func(n string) bool { return n == "json" || n == "v" }}
	return &Program{Name: "portfwd", Summary: "open ports", Description: "portfwd opens ports.",
		Groups:      []Group{{Title: "Client commands", Commands: []*Command{c}}, {Title: "Other", Commands: []*Command{{Name: "completion", Args: "bash|zsh|fish", Summary: "completion", ArgValues: Shells}}}},
		SharedTitle: "Client flags", Version: "0.1",
		Sections: []Section{{Title: "Exit status", InHelp: true, Text: " 0  done\n 1  usage"}}}
}

func TestWriteHelp(t *testing.T) {
	p := testProgram()
	var b bytes.Buffer
	p.WriteHelp(&b, p.Command("add"))
	want := `Usage: portfwd add PORT [flags]

Adds a mapping.

It is read back.

Flags:
  --desc TEXT             the text to show (default portfwd)
  --external PORT         the external port
  --lease DURATION        how long
  --proto tcp|udp|both    the protocol (default tcp)

Client flags:
  --json                  print JSON
  -v                      verbose

Examples:
  # the simplest
  portfwd add 8080
  portfwd add 8080 --proto both
`
	if b.String() != want {
		t.Errorf("help:\n%s\nwant:\n%s", b.String(), want)
	}
	b.Reset()
	p.WriteIndex(&b)
	for _, s := range []string{"portfwd: open ports\n", "Client commands:\n  add         add a mapping\n", "Exit status:\n  0  done\n  1  usage\n"} {
		if !strings.Contains(b.String(), s) {
			t.Errorf("index lacks %q:\n%s", s, b.String())
		}
	}
}

func TestWriteMan(t *testing.T) {
	var b bytes.Buffer
	testProgram().WriteMan(&b)
	man := b.String()
	for _, s := range []string{".TH PORTFWD 1", ".SH NAME\nportfwd \\- open ports\n", `.SS "portfwd add PORT [flags]"`,
		".TP\n\\fB\\-\\-proto\\fR \\fItcp|udp|both\\fR\nthe protocol (default tcp)\n", ".SH \"CLIENT FLAGS\"", ".SH \"EXIT STATUS\""} {
		if !strings.Contains(man, s) {
			t.Errorf("man page lacks %q:\n%s", s, man)
		}
	}
	for i, line := range strings.Split(man, "\n") {
		if strings.HasPrefix(line, ".") && !strings.HasPrefix(line, `.\"`) {
			macro, _, _ := strings.Cut(line[1:], " ")
			if !slices.Contains([]string{"TH", "SH", "SS", "PP", "TP", "RS", "RE", "EX", "EE", "B", "I", "RI"}, macro) {
				t.Errorf("line %d: unknown macro %q", i+1, line)
			}
		}
	}
	if strings.Contains(man, " -") && strings.Contains(man, "--proto") {
		t.Errorf("an unescaped hyphen in a flag:\n%s", man)
	}
}

// TestBashCompletion sources the bash script and asks it, as bash would.
func TestBashCompletion(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash to run the completion script")
	}
	var script bytes.Buffer
	if err := testProgram().WriteCompletion(&script, "bash"); err != nil {
		t.Fatal(err)
	}
	complete := func(words ...string) []string {
		t.Helper()
		sh := script.String() + `
COMP_WORDS=(` + strings.Join(quoteAll(words), " ") + `)
COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
_portfwd
printf '%s\n' "${COMPREPLY[@]}"
`
		out, err := exec.Command(bash, "--norc", "-c", sh).CombinedOutput()
		if err != nil {
			t.Fatalf("bash: %v\n%s", err, out)
		}
		return strings.Fields(string(out))
	}
	for _, tt := range []struct {
		words []string
		want  []string
	}{
		{[]string{"portfwd", ""}, []string{"add", "completion", "--help", "--version"}},
		{[]string{"portfwd", "a"}, []string{"add"}},
		{[]string{"portfwd", "add", "--pr"}, []string{"--proto"}},
		{[]string{"portfwd", "add", "8080", "--proto", ""}, []string{"tcp", "udp", "both"}},
		{[]string{"portfwd", "add", "--lease", ""}, nil},
		{[]string{"portfwd", "completion", "z"}, []string{"zsh"}},
	} {
		if got := complete(tt.words...); !slices.Equal(got, tt.want) {
			t.Errorf("%q: %q, want %q", tt.words, got, tt.want)
		}
	}
}

// TestCompletionScriptsParse checks each script's syntax with its shell,
// where that shell is installed.
func TestCompletionScriptsParse(t *testing.T) {
	for _, sh := range Shells {
		t.Run(sh, func(t *testing.T) {
			var b bytes.Buffer
			if err := testProgram().WriteCompletion(&b, sh); err != nil {
				t.Fatal(err)
			}
			path, err := exec.LookPath(sh)
			if err != nil {
				t.Skipf("%s is not installed: its script's syntax is not checked", sh)
			}
			cmd := exec.Command(path, "-n")
			cmd.Stdin = &b
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("%s -n: %v\n%s", sh, err, out)
			}
		})
	}
	if err := testProgram().WriteCompletion(&bytes.Buffer{}, "tcsh"); err == nil {
		t.Error("a script for tcsh")
	}
}

func quoteAll(words []string) []string {
	out := make([]string, len(words))
	for i, w := range words {
		out[i] = "'" + w + "'"
	}
	return out
}

// TestFishCompletion asks fish for completions from its script, where
// fish is installed.
func TestFishCompletion(t *testing.T) {
	fish, err := exec.LookPath("fish")
	if err != nil {
		t.Skip("fish is not installed: its completions are not checked")
	}
	var script bytes.Buffer
	if err := testProgram().WriteCompletion(&script, "fish"); err != nil {
		t.Fatal(err)
	}
	for line, want := range map[string][]string{
		"portfwd a":                 {"add"},
		"portfwd add 8080 --proto ": {"both", "tcp", "udp"},
		"portfwd add 8080 --le":     {"--lease"},
		"portfwd completion ":       {"bash", "fish", "zsh"},
	} {
		cmd := exec.Command(fish, "--no-config", "-c", "source; complete -C '"+line+"'")
		cmd.Stdin = bytes.NewReader(script.Bytes())
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("fish: %v\n%s", err, out)
		}
		var got []string
		for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			if w, _, _ := strings.Cut(l, "\t"); w != "" {
				got = append(got, w)
			}
		}
		if !slices.Equal(got, want) {
			t.Errorf("%q completes to %q, want %q", line, got, want)
		}
	}
}
