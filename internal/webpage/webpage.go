// Package webpage is what portfwd's two web pages share, the client's web
// UI (package webui) and the gateway's admin page (package gateway/admin):
// the style sheet, the common script and the head of every page with the
// refusal page (assets/, embedded), a Site that serves a page and its files
// behind the guard of package websec, and the server-sent event stream
// both use for live updates.
//
// It holds no logic of either page: each package embeds its own script,
// renders its own page (Config.Render) and passes them in Config. It uses
// no html/template, which would make the linker keep every exported
// method of every type in the gateway-only build (2.7 MB): the client's
// web UI renders with html/template, the admin page with plain Go.
package webpage

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"html"
	"io"
	"io/fs"
	"log/slog"
	"path"
	"strconv"

	http "github.com/portfwd/portfwd/internal/httpx"

	"github.com/portfwd/portfwd/internal/websec"
)

// common are the files every page uses: style.css and common.js, served
// under /static/.
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
	// package embeds them: //go:embed assets), served under /static/
	// beside the common ones (its script).
	Files fs.FS
	// Render writes the page for the data given to Site.Render. Its head
	// starts with Head.
	Render func(w io.Writer, data any) error
	// Logger receives rendering failures. Nil means none.
	Logger *slog.Logger
}

// Site serves one page behind the guard: the page itself at "/", the
// static files, and the API routes a server adds.
type Site struct {
	guard  *websec.Guard
	advice string
	render func(w io.Writer, data any) error
	files  fs.FS // the page's own files over the common ones
	log    *slog.Logger
}

// New returns the site of the page c describes.
func New(c Config) *Site {
	log := c.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	commonFiles, pageFiles := Sub(common), Sub(c.Files)
	return &Site{
		guard:  websec.NewGuard(c.Token, c.Who, c.TokenFrom),
		advice: c.Advice,
		render: c.Render,
		files:  overlay{pageFiles, commonFiles},
		log:    log,
	}
}

// Sub is the assets directory of an embedded tree; a tree without one is
// a programming error, found by the first test that serves the page.
func Sub(f fs.FS) fs.FS {
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
	mux.Handle("GET /static/", websec.Static(http.StripPrefix("/static/", http.HandlerFunc(s.serveStatic))))
	api := func(pattern string, h http.HandlerFunc) { mux.HandleFunc(pattern, s.guard.API(h)) }
	api("/api/", func(w http.ResponseWriter, r *http.Request) { websec.WriteError(w, http.StatusNotFound, notFound) })
	return mux, api
}

// staticTypes are the types of the files a page serves.
var staticTypes = map[string]string{
	".js":  "text/javascript; charset=utf-8",
	".css": "text/css; charset=utf-8",
}

// serveStatic serves a script or the style sheet, whole. The files are a
// few kilobytes, embedded: http.FileServer's ranges, directory listings
// and validators would add 50 KB to the gateway-only build for nothing.
func (s *Site) serveStatic(w http.ResponseWriter, r *http.Request) {
	ctype := staticTypes[path.Ext(r.URL.Path)]
	data, err := fs.ReadFile(s.files, r.URL.Path)
	if ctype == "" || err != nil {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", ctype)
	w.Header().Set("Content-Length", strconv.Itoa(len(data)))
	if r.Method != http.MethodHead {
		w.Write(data)
	}
}

// Head is the common part of every page's head: the character set, the
// viewport, the style sheet and common.js.
const Head = `<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<meta name="referrer" content="no-referrer">
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/static/style.css">
<script src="/static/common.js" defer></script>`

// refuse writes the refusal page: why, and how to get in.
func (s *Site) refuse(w http.ResponseWriter, status int, msg string) {
	s.write(w, status, "the refusal page", func(w io.Writer, _ any) error {
		_, err := io.WriteString(w, `<!doctype html>
<html lang="en">
<head>
`+Head+`
<title>portfwd: access refused</title>
</head>
<body>
<main>
<section class="card">
<h1>Access refused</h1>
<p>`+html.EscapeString(msg)+`</p>
<p>`+html.EscapeString(s.advice)+`</p>
</section>
</main>
</body>
</html>
`)
		return err
	}, nil)
}

// Render writes the page (Config.Render) for data.
func (s *Site) Render(w http.ResponseWriter, status int, data any) {
	s.write(w, status, "the page", s.render, data)
}

// write renders into a buffer first, so that a failure is a clean error
// page rather than half a page.
func (s *Site) write(w http.ResponseWriter, status int, what string, render func(io.Writer, any) error, data any) {
	var buf bytes.Buffer
	if err := render(&buf, data); err != nil {
		s.log.Error("cannot render "+what, "err", err)
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
