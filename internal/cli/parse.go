// Package cli is the command-line machinery of cmd/portfwd: parsing flags
// GNU-style over the standard library's flag.FlagSet, one-sentence usage
// errors that name the flag, and the help text, man page and shell
// completions, all rendered from one description of each command.
//
// A flag.FlagSet stays the single record of a command's flags (their
// names, values, defaults and usage), so commands define flags as Go
// programs usually do; this package only reads it. The standard library
// already accepts --name as well as -name; what it lacks, and what this
// package adds, is flags after positional arguments ("portfwd add 8080
// --proto udp"), errors that are one sentence instead of the whole flag
// list, and help that shows flags as users type them (--name).
package cli

import (
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"
)

// ErrHelp is returned by Parse when the arguments ask for help (-h,
// -help, --help).
var ErrHelp = errors.New("help requested")

// UsageError is a mistake in the command line: one sentence for the user,
// naming the flag or argument at fault.
type UsageError struct{ Msg string }

func (e *UsageError) Error() string { return e.Msg }

// Usagef returns a *UsageError.
func Usagef(format string, a ...any) error { return &UsageError{fmt.Sprintf(format, a...)} }

// Parse parses args against fs and returns the positional arguments.
// Flags may come before, between or after positional arguments; "--" ends
// the flags, and "-" alone is a positional argument. A flag is written
// --name or -name, with its value as --name=value or --name value (a
// boolean flag takes only the first form). Values are set through
// fs.Set, so fs.Visit lists the flags given.
//
// Errors are *UsageError, one sentence naming the flag: an unknown flag
// (with the nearest known one when there is one), a missing value, or the
// flag's own complaint about its value. help is how to get help on the
// command ("portfwd add --help"), named in the error for an unknown flag.
// -h, -help and --help give ErrHelp unless fs defines a flag of that name.
func Parse(fs *flag.FlagSet, args []string, help string) ([]string, error) {
	var positional []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return append(positional, args[i+1:]...), nil
		}
		if len(a) < 2 || a[0] != '-' {
			positional = append(positional, a)
			continue
		}
		name := strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-")
		value, hasValue := "", false
		if k, v, ok := strings.Cut(name, "="); ok {
			name, value, hasValue = k, v, true
		}
		dashes := DashName(name)
		f := fs.Lookup(name)
		if f == nil {
			if name == "h" || name == "help" {
				return positional, ErrHelp
			}
			msg := fmt.Sprintf("unknown flag %s", a)
			if hasValue || name == "" {
				msg = fmt.Sprintf("unknown flag %q", a)
			}
			if s := Suggest(name, flagNames(fs)); s != "" {
				msg += fmt.Sprintf("; did you mean %s?", DashName(s))
			}
			if help != "" {
				msg += fmt.Sprintf(" ('%s' lists the flags)", help)
			}
			return positional, &UsageError{msg}
		}
		if IsBool(f) {
			if !hasValue {
				value = "true"
			}
			if _, err := strconv.ParseBool(value); err != nil {
				return positional, Usagef("%s is true or false, not %q", dashes, value)
			}
		} else if !hasValue {
			if i+1 >= len(args) {
				return positional, Usagef("%s needs a value%s", dashes, valueExample(f))
			}
			i++
			value = args[i]
		}
		if err := fs.Set(name, value); err != nil {
			problem := valueProblem(err, value)
			if strings.HasPrefix(problem, "must ") {
				// "--proto must be tcp, udp or both, not ..."
				return positional, Usagef("%s %s", dashes, problem)
			}
			return positional, Usagef("%s: %s", dashes, problem)
		}
	}
	return positional, nil
}

// DashName is a flag's name as users type it: -v for one letter, --name
// otherwise.
func DashName(name string) string {
	if len(name) == 1 {
		return "-" + name
	}
	return "--" + name
}

// IsBool reports whether f is a boolean flag (one that takes no value).
func IsBool(f *flag.Flag) bool {
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

func flagNames(fs *flag.FlagSet) []string {
	var names []string
	fs.VisitAll(func(f *flag.Flag) { names = append(names, f.Name) })
	return names
}

// valueExample is ", like 1h" for a flag whose value has an example.
func valueExample(f *flag.Flag) string {
	if ex, ok := f.Value.(interface{ Example() string }); ok && ex.Example() != "" {
		return ", like " + DashName(f.Name) + " " + ex.Example()
	}
	if p := Placeholder(f); p != "" {
		return " (" + DashName(f.Name) + " " + p + ")"
	}
	return ""
}

// valueProblem turns the error of a flag.Value's Set into the end of a
// sentence. The values of this package say what is wrong in their own
// words; the standard library's say "parse error" or quote strconv.
func valueProblem(err error, value string) string {
	var ve *ValueError
	if errors.As(err, &ve) {
		return ve.Msg
	}
	var ne *strconv.NumError
	if errors.As(err, &ne) {
		if errors.Is(ne.Err, strconv.ErrRange) {
			return fmt.Sprintf("%q is out of range", value)
		}
		return fmt.Sprintf("%q is not a number", value)
	}
	if err.Error() == "parse error" {
		return fmt.Sprintf("%q is not a valid value", value)
	}
	if err.Error() == "value out of range" {
		return fmt.Sprintf("%q is out of range", value)
	}
	return err.Error()
}

// ValueError is a flag value's complaint: the end of a sentence that
// starts with the flag's name ("--lease: ...").
type ValueError struct{ Msg string }

func (e *ValueError) Error() string { return e.Msg }

func valueErrorf(format string, a ...any) error { return &ValueError{fmt.Sprintf(format, a...)} }
