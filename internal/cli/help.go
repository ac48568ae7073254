package cli

import (
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Program describes a program of several commands: the source of its
// help, its man page and its shell completions.
type Program struct {
	// Name is the program's name, "portfwd".
	Name string
	// Summary is one line: what the program is.
	Summary string
	// Description is what the program does, in paragraphs separated by
	// blank lines.
	Description string
	// Groups are the commands, in groups with a title each.
	Groups []Group
	// SharedTitle names the flags that several commands share (Command.Shared),
	// listed apart in each command's help and once in the man page.
	SharedTitle string
	// SharedDescription introduces them in the man page.
	SharedDescription string
	// Sections follow the commands: exit status, environment, files, ...
	Sections []Section
	// Version is shown in the man page's footer.
	Version string
}

// Group is a titled list of commands.
type Group struct {
	Title    string
	Commands []*Command
}

// Section is a titled text of the help and the man page.
type Section struct {
	Title string
	// Text is paragraphs separated by blank lines; a line that starts
	// with a space is kept as it is (a table, a list).
	Text string
	// InHelp puts the section in the program's help too, not only in the
	// man page.
	InHelp bool
}

// Command describes one command.
type Command struct {
	Name string
	// Args are the positional arguments as the usage line shows them:
	// "PORT", "EXT/PROTO", "[COMMAND]".
	Args string
	// Summary is one line for the list of commands.
	Summary string
	// Description is what the command does, in paragraphs separated by
	// blank lines.
	Description string
	// Examples are command lines with what each does.
	Examples []Example
	// ArgValues are the words a shell may complete as the arguments.
	ArgValues []string
	// Flags are the command's flags; nil for none.
	Flags *flag.FlagSet
	// Shared reports whether a flag is one of the program's shared flags
	// (see Program.SharedTitle); nil for none.
	Shared func(name string) bool
}

// Example is a command line and what it does.
type Example struct {
	Command string
	Comment string
}

// Commands lists every command of p in order.
func (p *Program) Commands() []*Command {
	var out []*Command
	for _, g := range p.Groups {
		out = append(out, g.Commands...)
	}
	return out
}

// Command returns the command named name, or nil.
func (p *Program) Command(name string) *Command {
	for _, c := range p.Commands() {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// CommandNames lists the names of every command.
func (p *Program) CommandNames() []string {
	var out []string
	for _, c := range p.Commands() {
		out = append(out, c.Name)
	}
	return out
}

// UsageLine is "portfwd add PORT [flags]".
func (c *Command) UsageLine(prog string) string {
	s := prog
	if c.Name != "" {
		s += " " + c.Name
	}
	if c.Args != "" {
		s += " " + c.Args
	}
	if c.Flags != nil && hasFlags(c.Flags) {
		s += " [flags]"
	}
	return s
}

func hasFlags(fs *flag.FlagSet) bool {
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	return n > 0
}

// split returns c's own flags and its shared ones, in the order of the
// flag set (sorted by name).
func (c *Command) split() (own, shared []*flag.Flag) {
	if c.Flags == nil {
		return nil, nil
	}
	c.Flags.VisitAll(func(f *flag.Flag) {
		if c.Shared != nil && c.Shared(f.Name) {
			shared = append(shared, f)
		} else {
			own = append(own, f)
		}
	})
	return own, shared
}

const width = 80

// WriteHelp writes the help of command c of program p: its usage line,
// description, flags (its own, then the shared ones) and examples.
func (p *Program) WriteHelp(w io.Writer, c *Command) {
	fmt.Fprintf(w, "Usage: %s\n\n", c.UsageLine(p.Name))
	fmt.Fprint(w, wrap(c.Description, width, ""))
	own, shared := c.split()
	if len(own) > 0 {
		fmt.Fprint(w, "\nFlags:\n")
		writeFlags(w, own)
	}
	if len(shared) > 0 {
		fmt.Fprintf(w, "\n%s:\n", p.SharedTitle)
		writeFlags(w, shared)
	}
	if len(c.Examples) > 0 {
		fmt.Fprint(w, "\nExamples:\n")
		for i, ex := range c.Examples {
			if i > 0 && ex.Comment != "" {
				fmt.Fprintln(w)
			}
			if ex.Comment != "" {
				fmt.Fprint(w, wrap(ex.Comment, width, "  # "))
			}
			fmt.Fprintf(w, "  %s\n", ex.Command)
		}
	}
}

// WriteIndex writes the program's help: what it is, its commands by
// group, and the sections marked InHelp.
func (p *Program) WriteIndex(w io.Writer) {
	fmt.Fprintf(w, "%s: %s\n\n", p.Name, p.Summary)
	fmt.Fprint(w, wrap(p.Description, width, ""))
	fmt.Fprintf(w, "\nUsage: %s COMMAND [ARGUMENTS] [flags]\n", p.Name)
	nameWidth := 0
	for _, c := range p.Commands() {
		nameWidth = max(nameWidth, len(c.Name))
	}
	for _, g := range p.Groups {
		fmt.Fprintf(w, "\n%s:\n", g.Title)
		for _, c := range g.Commands {
			pad := strings.Repeat(" ", nameWidth-len(c.Name)+2)
			fmt.Fprint(w, wrapHanging("  "+c.Name+pad, c.Summary, width))
		}
	}
	for _, s := range p.Sections {
		if s.InHelp {
			fmt.Fprintf(w, "\n%s:\n", s.Title)
			fmt.Fprint(w, wrap(s.Text, width, "  "))
		}
	}
}

// writeFlags writes one flag per entry: its name and value in a column,
// its usage and default beside it, wrapped.
func writeFlags(w io.Writer, flags []*flag.Flag) {
	const col = 26
	for _, f := range flags {
		left := "  " + FlagSynopsis(f)
		text := FlagText(f)
		if len(left) > col-2 {
			fmt.Fprintln(w, left)
			fmt.Fprint(w, wrap(text, width, strings.Repeat(" ", col)))
			continue
		}
		fmt.Fprint(w, wrapHanging(left+strings.Repeat(" ", col-len(left)), text, width))
	}
}

// FlagSynopsis is "--lease DURATION", "--json" or "-v".
func FlagSynopsis(f *flag.Flag) string {
	s := DashName(f.Name)
	if p := Placeholder(f); p != "" {
		s += " " + p
	}
	return s
}

// FlagText is f's usage with its default, when it has one worth saying
// and the usage does not already say it.
func FlagText(f *flag.Flag) string {
	u := Usage(f)
	if d := f.DefValue; !zeroDefault(f, d) && !strings.Contains(u, "(default") {
		if strings.ContainsAny(d, " \t") {
			d = strconv.Quote(d)
		}
		u += " (default " + d + ")"
	}
	return u
}

func zeroDefault(f *flag.Flag, d string) bool {
	switch d {
	case "", "0", "0s", "false", "[]", "<nil>":
		return true
	}
	return IsBool(f) && d != "true"
}

// wrap fills text's paragraphs to width, each line starting with indent;
// paragraphs are separated by blank lines, and a line that starts with a
// space is kept as it is.
func wrap(text string, width int, indent string) string {
	var b strings.Builder
	for i, para := range paragraphs(text) {
		if i > 0 {
			b.WriteString("\n")
		}
		if strings.HasPrefix(para, " ") {
			// Kept as written, its first space standing for the indent.
			for _, line := range strings.Split(para, "\n") {
				b.WriteString(indent + strings.TrimPrefix(line, " ") + "\n")
			}
			continue
		}
		b.WriteString(fill(strings.Fields(para), width, indent, indent))
	}
	return b.String()
}

// wrapHanging writes lead followed by text filled to width, continuation
// lines indented to lead's width.
func wrapHanging(lead, text string, width int) string {
	return fill(strings.Fields(text), width, lead, strings.Repeat(" ", len(lead)))
}

func fill(words []string, width int, first, rest string) string {
	var b strings.Builder
	line := first
	empty := true
	for _, w := range words {
		if !empty && len(line)+1+len(w) > width {
			b.WriteString(line + "\n")
			line, empty = rest, true
		}
		if !empty {
			line += " "
		}
		line += w
		empty = false
	}
	b.WriteString(strings.TrimRight(line, " ") + "\n")
	return b.String()
}

// paragraphs splits text at blank lines, trimming each paragraph's
// surrounding newlines.
func paragraphs(text string) []string {
	var out []string
	for _, p := range strings.Split(strings.Trim(text, "\n"), "\n\n") {
		if p = strings.Trim(p, "\n"); p != "" {
			out = append(out, p)
		}
	}
	return out
}
