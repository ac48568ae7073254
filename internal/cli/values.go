package cli

import (
	"errors"
	"flag"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// The flag.Value types below check their value when it is set, so that a
// mistake is a usage error at parse time, before a command does anything,
// and say what is wrong in words (Set's error is the end of a sentence
// that Parse starts with the flag's name).

// Port is a port number, 1-65535.
type Port uint16

func (p *Port) String() string { return strconv.Itoa(int(*p)) }

// Set parses a port number.
func (p *Port) Set(s string) error {
	v, err := ParsePort(s)
	if err != nil {
		return err
	}
	*p = Port(v)
	return nil
}

// Placeholder is how help names the value.
func (p *Port) Placeholder() string { return "PORT" }

// ParsePort parses a port number, 1-65535; its error is a *ValueError.
func ParsePort(s string) (uint16, error) {
	v, err := strconv.ParseUint(strings.TrimSpace(s), 10, 64)
	switch {
	case errors.Is(err, strconv.ErrRange):
		return 0, valueErrorf("%s is not a port number: ports are 1-65535", s)
	case err != nil:
		return 0, valueErrorf("%q is not a port number (1-65535)", s)
	case v == 0 || v > 65535:
		return 0, valueErrorf("%d is not a port number: ports are 1-65535", v)
	}
	return uint16(v), nil
}

// Duration is a length of time, kept in *P, such as 30s, 5m, 1h30m or 7d (days are
// accepted beside Go's units). A bare number is refused with the
// suggestion of seconds ("did you mean 5s?"): a lease of 5 is too easily
// meant as 5 minutes or 5 hours to guess.
type Duration struct {
	P *time.Duration
	// ZeroOK allows 0 (for flags where it means something, such as a
	// permanent lease); otherwise the value must be above 0.
	ZeroOK bool
	// Min is the smallest value allowed above 0.
	Min time.Duration
}

func (d *Duration) String() string {
	if d.P == nil {
		return ""
	}
	return FormatDuration(*d.P)
}

// Placeholder is how help names the value.
func (d *Duration) Placeholder() string { return "DURATION" }

// Example is a value to show in a sentence about the flag.
func (d *Duration) Example() string {
	if d.P != nil && *d.P > 0 {
		return FormatDuration(*d.P)
	}
	return "1h"
}

// Set parses and checks a duration.
func (d *Duration) Set(s string) error {
	v, err := ParseDuration(s)
	if err != nil {
		return err
	}
	switch {
	case v < 0:
		return valueErrorf("%s is negative; give a length of time such as %s", strings.TrimSpace(s), d.Example())
	case v == 0 && !d.ZeroOK:
		return valueErrorf("must be above 0, such as %s", d.Example())
	case v > 0 && v < d.Min:
		return valueErrorf("%s is too short: at least %s", s, FormatDuration(d.Min))
	}
	*d.P = v
	return nil
}

// cutDays splits "7d12h" into its days, "7", and the rest, "12h" (what
// ^([0-9]+)d(.*)$ matches; by hand so that the gateway links no regexp).
func cutDays(s string) (days, rest string, ok bool) {
	i := 0
	for i < len(s) && '0' <= s[i] && s[i] <= '9' {
		i++
	}
	if i == 0 || i == len(s) || s[i] != 'd' {
		return "", "", false
	}
	return s[:i], s[i+1:], true
}

// ParseDuration parses Go's durations (300ms, 30s, 1h30m) and days (7d,
// 1d12h). Its error is a *ValueError that says what was wrong, and for a
// bare number suggests seconds.
func ParseDuration(s string) (time.Duration, error) {
	t := strings.TrimSpace(s)
	neg := strings.HasPrefix(t, "-")
	body := strings.TrimPrefix(strings.TrimPrefix(t, "-"), "+")
	if _, err := strconv.ParseFloat(body, 64); err == nil && body != "0" {
		return 0, valueErrorf("%q has no unit; did you mean %ss?", s, t)
	}
	var days time.Duration
	if d, r, ok := cutDays(body); ok {
		n, err := strconv.Atoi(d)
		if err != nil || n > 100000 {
			return 0, valueErrorf("%q is too long", s)
		}
		days, body = time.Duration(n)*24*time.Hour, r
	}
	if body == "" && days == 0 {
		return 0, valueErrorf("%q is not a length of time such as 30s, 5m, 1h or 7d", s)
	}
	var rest time.Duration
	if body != "" {
		var err error
		if rest, err = time.ParseDuration(body); err != nil || rest < 0 {
			return 0, valueErrorf("%q is not a length of time such as 30s, 5m, 1h or 7d", s)
		}
	}
	v := days + rest
	if neg {
		v = -v
	}
	return v, nil
}

// FormatDuration writes d without the zero units Go's String adds: 1h,
// not 1h0m0s; 90m is 1h30m.
func FormatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// Enum is one word of a fixed list, in any case; Value is the list's
// spelling of it.
type Enum struct {
	P       *string
	Choices []string
	// Aliases are other spellings accepted for a choice: "nat-pmp" for
	// "natpmp".
	Aliases map[string]string
}

func (e *Enum) String() string {
	if e.P == nil {
		return ""
	}
	return *e.P
}

// Placeholder is how help names the value: the choices.
func (e *Enum) Placeholder() string { return strings.Join(e.Choices, "|") }

// Completions are the values a shell may complete.
func (e *Enum) Completions() []string { return e.Choices }

// Set accepts one of the choices.
func (e *Enum) Set(s string) error {
	t := strings.ToLower(strings.TrimSpace(s))
	if a, ok := e.Aliases[t]; ok {
		t = a
	}
	for _, c := range e.Choices {
		if strings.EqualFold(t, c) {
			*e.P = c
			return nil
		}
	}
	return valueErrorf("must be %s, not %q", OneOf(e.Choices), s)
}

// OneOf lists words as "a, b or c".
func OneOf(words []string) string {
	switch len(words) {
	case 0:
		return ""
	case 1:
		return words[0]
	}
	return strings.Join(words[:len(words)-1], ", ") + " or " + words[len(words)-1]
}

// URL is an http:// or https:// URL with a host.
type URL struct {
	P *string
	// Example is shown when the value is not such a URL.
	Example string
}

func (u *URL) String() string {
	if u.P == nil {
		return ""
	}
	return *u.P
}

// Placeholder is how help names the value.
func (u *URL) Placeholder() string { return "URL" }

// Set checks and keeps a URL.
func (u *URL) Set(s string) error {
	if err := CheckHTTPURL(s, u.Example); err != nil {
		return err
	}
	*u.P = strings.TrimSpace(s)
	return nil
}

// CheckHTTPURL returns a *ValueError unless s is an http:// or https://
// URL with a host. example, when set, is shown as the right form.
func CheckHTTPURL(s, example string) error {
	like := ""
	if example != "" {
		like = ", like " + example
	}
	p, err := url.Parse(strings.TrimSpace(s))
	if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
		return valueErrorf("%q is not an http:// URL%s", s, like)
	}
	if p.Port() != "" {
		if n, err := strconv.Atoi(p.Port()); err != nil || n < 1 || n > 65535 {
			return valueErrorf("%q has no valid port%s", s, like)
		}
	}
	return nil
}

// URLs is a repeatable URL flag: each use adds one.
type URLs struct {
	P       *[]string
	Example string
}

func (u *URLs) String() string {
	if u.P == nil {
		return ""
	}
	return strings.Join(*u.P, ",")
}

// Placeholder is how help names the value.
func (u *URLs) Placeholder() string { return "URL" }

// Set checks and adds a URL.
func (u *URLs) Set(s string) error {
	if err := CheckHTTPURL(s, u.Example); err != nil {
		return err
	}
	*u.P = append(*u.P, strings.TrimSpace(s))
	return nil
}

// Addr is an IP address; the zero Addr when not given.
type Addr netip.Addr

func (a *Addr) String() string {
	if !netip.Addr(*a).IsValid() {
		return ""
	}
	return netip.Addr(*a).String()
}

// Placeholder is how help names the value.
func (a *Addr) Placeholder() string { return "IP" }

// Set parses an IP address.
func (a *Addr) Set(s string) error {
	v, err := netip.ParseAddr(strings.TrimSpace(s))
	if err != nil {
		return valueErrorf("%q is not an IP address", s)
	}
	*a = Addr(v)
	return nil
}

// Placeholder is how help names f's value: "" for a boolean flag, the
// value's own name when it has one (Placeholder method), the back-quoted
// word of the usage text, else the value's type in capitals.
func Placeholder(f *flag.Flag) string {
	if IsBool(f) {
		return ""
	}
	if p, ok := f.Value.(interface{ Placeholder() string }); ok {
		return p.Placeholder()
	}
	name, _ := flag.UnquoteUsage(f)
	switch name {
	case "", "value":
		return "VALUE"
	case "uint", "int", "uint64", "int64", "float":
		return "N"
	}
	return strings.ToUpper(name)
}

// Usage is f's usage text without the back quotes that name its value.
func Usage(f *flag.Flag) string {
	_, u := flag.UnquoteUsage(f)
	return u
}

// Completions are the values of f a shell may offer: the choices of an
// Enum, or nil.
func Completions(f *flag.Flag) []string {
	if c, ok := f.Value.(interface{ Completions() []string }); ok {
		return c.Completions()
	}
	return nil
}
