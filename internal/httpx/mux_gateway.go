//go:build gatewayonly

package httpx

import (
	"path"
	"sort"
	"strings"
	"sync"
)

// ServeMux routes requests by method and path, for the patterns the
// gateway registers, with net/http's meaning:
//
//   - "[METHOD ]/path": METHOD, when given, is the only one matched (GET
//     matches HEAD too);
//   - a path ending in "/" matches every path under it, one ending in
//     "/{$}" that path alone, any other that path alone;
//   - a segment "{name}" matches one non-empty segment, which the
//     handler reads with Request.PathValue(name).
//
// The most specific pattern wins: the one with more literal segments,
// then a whole path over a prefix, then one naming a method. A path that
// matches only patterns of other methods is answered 405 with an Allow
// header, an unclean path ("/a//b", "/a/../b") is redirected (307) to
// its clean form, anything else 404. Host patterns and "{name...}" are not
// supported (the gateway registers none).
type ServeMux struct {
	mu      sync.RWMutex
	entries []*muxEntry
}

type muxEntry struct {
	pattern string
	method  string
	segs    []string // the path after its first "/", split at "/"
	prefix  bool     // the last segment is "" and matches anything below
	h       Handler
}

// NewServeMux returns an empty ServeMux.
func NewServeMux() *ServeMux { return &ServeMux{} }

// Handle registers h for pattern; a malformed or repeated pattern panics,
// as net/http's.
func (m *ServeMux) Handle(pattern string, h Handler) {
	if h == nil {
		panic("http: nil handler")
	}
	e := &muxEntry{pattern: pattern, h: h}
	p := pattern
	if method, rest, ok := strings.Cut(pattern, " "); ok {
		if !ValidToken(method) {
			panic("http: bad method in pattern " + pattern)
		}
		e.method, p = method, strings.TrimLeft(rest, " \t")
	}
	if !strings.HasPrefix(p, "/") {
		panic("http: pattern " + pattern + " does not start with a path (host patterns are not supported)")
	}
	exact := false
	if strings.HasSuffix(p, "/{$}") {
		exact, p = true, strings.TrimSuffix(p, "{$}")
	}
	e.segs = strings.Split(p[1:], "/")
	e.prefix = !exact && e.segs[len(e.segs)-1] == ""
	for i, s := range e.segs {
		if strings.ContainsAny(s, "{}") && (!strings.HasPrefix(s, "{") || !strings.HasSuffix(s, "}") ||
			!ValidToken(s[1:len(s)-1]) || strings.Contains(s, "...") || i == len(e.segs)-1 && e.prefix) {
			panic("http: unsupported segment " + s + " in pattern " + pattern)
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, o := range m.entries {
		if o.method == e.method && strings.Join(o.segs, "/") == strings.Join(e.segs, "/") && o.prefix == e.prefix {
			panic("http: pattern " + pattern + " conflicts with " + o.pattern)
		}
	}
	m.entries = append(m.entries, e)
}

// HandleFunc registers f for pattern.
func (m *ServeMux) HandleFunc(pattern string, f func(ResponseWriter, *Request)) {
	m.Handle(pattern, HandlerFunc(f))
}

// ServeHTTP serves r with the handler of the most specific pattern.
func (m *ServeMux) ServeHTTP(w ResponseWriter, r *Request) {
	p := r.URL.Path
	if p == "" || p[0] != '/' {
		p = "/" + p
	}
	if clean := cleanPath(p); clean != p && r.Method != "CONNECT" {
		redirectTo(w, r, clean)
		return
	}
	segs := strings.Split(p[1:], "/")

	m.mu.RLock()
	var best *muxEntry
	var allow []string
	for _, e := range m.entries {
		if !e.matchPath(segs) {
			continue
		}
		if e.method != "" && e.method != r.Method && !(e.method == MethodGet && r.Method == MethodHead) {
			allow = append(allow, e.method)
			if e.method == MethodGet {
				allow = append(allow, MethodHead)
			}
			continue
		}
		if best == nil || e.moreSpecific(best) {
			best = e
		}
	}
	m.mu.RUnlock()

	switch {
	case best != nil:
		for i, s := range best.segs {
			if len(s) > 2 && s[0] == '{' {
				r.SetPathValue(s[1:len(s)-1], segs[i])
			}
		}
		best.h.ServeHTTP(w, r)
	case len(allow) > 0:
		sort.Slice(allow, func(i, j int) bool { return allow[i] < allow[j] })
		allow = compactStrings(allow)
		w.Header().Set("Allow", strings.Join(allow, ", "))
		Error(w, StatusText(StatusMethodNotAllowed), StatusMethodNotAllowed)
	default:
		NotFound(w, r)
	}
}

// matchPath reports whether the request path's segments match e's.
func (e *muxEntry) matchPath(segs []string) bool {
	n := len(e.segs)
	if e.prefix {
		n-- // the last "" matches what is left, even nothing
		if len(segs) <= n {
			return false
		}
	} else if len(segs) != n {
		return false
	}
	for i, s := range e.segs[:n] {
		if len(s) > 2 && s[0] == '{' {
			if segs[i] == "" {
				return false
			}
		} else if s != segs[i] {
			return false
		}
	}
	return true
}

// moreSpecific reports whether e wins over o when both match.
func (e *muxEntry) moreSpecific(o *muxEntry) bool {
	if a, b := e.literals(), o.literals(); a != b {
		return a > b
	}
	if e.prefix != o.prefix {
		return !e.prefix
	}
	return e.method != "" && o.method == ""
}

func (e *muxEntry) literals() int {
	n := 0
	for _, s := range e.segs {
		if s != "" && s[0] != '{' {
			n++
		}
	}
	return n
}

// cleanPath is p without "." and ".." segments and doubled slashes, its
// trailing slash kept.
func cleanPath(p string) string {
	c := path.Clean(p)
	if strings.HasSuffix(p, "/") && c != "/" {
		c += "/"
	}
	return c
}

func compactStrings(s []string) []string {
	out := s[:0]
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}
