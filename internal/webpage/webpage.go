// Package webpage is what portfwd's two web pages share, the client's web
// UI (package webui) and the gateway's admin page (package gateway/admin):
// the style sheet, the common script and the head of every page with the
// refusal page (assets/, embedded), a Site that serves a page and its files
// behind the guard of package websec, and the server-sent event stream
// both use for live updates.
//
// It holds no logic of either page: each package embeds its own template
// and script and passes them in Config.
package webpage

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"

	"github.com/portfwd/portfwd/internal/websec"
)

// common are the files every page uses: style.css and common.js, served
// under /static/, and common.html, the templates "head" and "refused".
//
//go:embed assets
var common embed.FS

// Config describes a page.
type Config struct {
	// Token is the server's secret (websec.NewToken).
	Token string
	// Who is the command serving the page ("portfwd ui"), TokenFrom where
	// its user finds the token ("printed by portfwd ui"), and Advice the
	// refusal page's hint on how to get in.
	Who, TokenFrom, Advice string
	// Files are the page's own files, in an assets directory (as a
	// package embeds them: //go:embed assets): its template, Page, and the
	// static files served under /static/ beside the common ones (its
	// script).
	Files fs.FS
	Page  string
	// Funcs are the functions the page's template calls.
	Funcs template.FuncMap
	// Logger receives template failures. Nil means none.
	Logger *slog.Logger
}

// Site serves one page behind the guard: the page itself at "/", the
// static files, and the API routes a server adds.
type Site struct {
	guard  *websec.Guard
	advice string
	tmpl   *template.Template // the page's templates and "refused"
	files  fs.FS              // the page's own files over the common ones
	log    *slog.Logger
}

// New parses the page's template with the common one. It panics when they
// do not parse: they are embedded, fixed at build time.
func New(c Config) *Site {
	log := c.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	commonFiles, pageFiles := sub(common), sub(c.Files)
	tmpl := template.Must(template.New("").Funcs(c.Funcs).ParseFS(commonFiles, "common.html"))
	tmpl = template.Must(tmpl.ParseFS(pageFiles, c.Page))
	return &Site{
		guard:  websec.NewGuard(c.Token, c.Who, c.TokenFrom),
		advice: c.Advice,
		tmpl:   tmpl,
		files:  overlay{pageFiles, commonFiles},
		log:    log,
	}
}

// sub is the assets directory of an embedded tree; a tree without one is
// a programming error, found by the first test that serves the page.
func sub(f fs.FS) fs.FS {
	s, err := fs.Sub(f, "assets")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	return s
}

// Logger is the site's logger.
func (s *Site) Logger() *slog.Logger { return s.log }

// Routes returns a mux serving page at "/" (guarded by the token) and the
// static files, with a function that adds an API route guarded by
// websec.Guard.API. Unknown API routes answer with notFound, a sentence
// saying where the routes are documented.
func (s *Site) Routes(page http.HandlerFunc, notFound string) (*http.ServeMux, func(pattern string, h http.HandlerFunc)) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.guard.Page(page, s.refuse))
	mux.Handle("GET /static/", websec.Static(http.StripPrefix("/static/", http.FileServerFS(s.files))))
	api := func(pattern string, h http.HandlerFunc) { mux.HandleFunc(pattern, s.guard.API(h)) }
	api("/api/", func(w http.ResponseWriter, r *http.Request) { websec.WriteError(w, http.StatusNotFound, notFound) })
	return mux, api
}

// refusal is what the refusal page shows.
type refusal struct {
	Message, Advice string
}

func (s *Site) refuse(w http.ResponseWriter, status int, msg string) {
	s.Render(w, status, "refused", refusal{Message: msg, Advice: s.advice})
}

// Render executes the template name into a buffer first, so that a
// failure is a clean error page rather than half a page.
func (s *Site) Render(w http.ResponseWriter, status int, name string, data any) {
	var buf bytes.Buffer
	if err := s.tmpl.ExecuteTemplate(&buf, name, data); err != nil {
		s.log.Error("cannot render the page", "template", name, "err", err)
		http.Error(w, "internal error: the page could not be rendered", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// overlay is a page's files over the common ones: a name is looked up in
// the first, then in the second.
type overlay [2]fs.FS

func (o overlay) Open(name string) (fs.File, error) {
	f, err := o[0].Open(name)
	if errors.Is(err, fs.ErrNotExist) {
		return o[1].Open(name)
	}
	return f, err
}

// FormatSeconds writes a duration the way the pages' scripts do (common.js):
// 1h 02m 03s.
func FormatSeconds(s int64) string {
	if s <= 0 {
		return "expired"
	}
	d, h, m, sec := s/86400, s/3600%24, s/60%60, s%60
	switch {
	case d > 0:
		return fmt.Sprintf("%dd %02dh %02dm", d, h, m)
	case h > 0:
		return fmt.Sprintf("%dh %02dm %02ds", h, m, sec)
	case m > 0:
		return fmt.Sprintf("%dm %02ds", m, sec)
	}
	return fmt.Sprintf("%ds", sec)
}
