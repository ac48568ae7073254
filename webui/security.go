package webui

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"html/template"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
)

// TokenHeader is the request header that carries the token.
const TokenHeader = "X-Portfwd-Token"

// contentSecurityPolicy allows only our own scripts and styles and no
// framing: even if some text escaped escaping, it could not run.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// setSecurityHeaders sets the headers every response carries.
func setSecurityHeaders(h http.Header) {
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	// The page's URL holds the token: never send it anywhere.
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
}

// hostAllowed reports whether r's Host header names the address the
// connection arrived on (or localhost with its port, when that address is
// loopback). A page on another name that resolves to us (DNS rebinding)
// sends its own name as Host and is refused.
func hostAllowed(r *http.Request) bool {
	local, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	if !ok {
		return false // not over a real connection: refuse rather than guess
	}
	lap, err := netip.ParseAddrPort(local.String())
	if err != nil {
		return false
	}
	host, port, err := net.SplitHostPort(r.Host)
	if err != nil {
		host, port = r.Host, "80"
	}
	if port != strconv.Itoa(int(lap.Port())) {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return lap.Addr().IsLoopback()
	}
	a, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(host, "["), "]"))
	if err != nil {
		return false
	}
	return a.Unmap() == lap.Addr().Unmap()
}

// originAllowed reports whether a request's Origin (when it has one) is
// this server, and whether the browser says it comes from another site.
// Run after hostAllowed, so r.Host is trusted.
func originAllowed(r *http.Request) bool {
	if o := r.Header.Get("Origin"); o != "" && o != "http://"+r.Host {
		return false
	}
	// Sec-Fetch-Site is "same-site" for another port of 127.0.0.1 too:
	// only same-origin and the user's own navigation ("none") pass.
	switch r.Header.Get("Sec-Fetch-Site") {
	case "", "same-origin", "none":
		return true
	}
	return false
}

// safeMethod reports whether m cannot change state.
func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

// site is what the client UI and the gateway's admin page have in common:
// a secret token and the cookie that carries it, the checks every request
// passes (Host, Origin, token), the page templates and the static files.
// Both are remote controls for a router, so both are guarded the same way.
type site struct {
	token      string
	cookieName string
	// who is the command whose token it is ("portfwd ui"), and tokenFrom
	// says where the user finds the token ("printed by portfwd ui"), for
	// the sentences of refusals.
	who, tokenFrom string
	// advice is the refusal page's hint on how to get in.
	advice string
	tmpl   *template.Template // the page's templates and "refused"
	log    *slog.Logger
}

// newSite parses the page template named page (with the refusal page)
// and derives the cookie name from token.
func newSite(token, who, tokenFrom, advice, page string, log *slog.Logger) *site {
	sum := sha256.Sum256([]byte(token))
	return &site{
		token: token,
		// Cookies are not separated by port: a name of our own keeps two
		// servers on 127.0.0.1 (a UI and a gateway's admin page, say) from
		// overwriting each other's cookie.
		cookieName: "portfwd_" + hex.EncodeToString(sum[:4]),
		who:        who, tokenFrom: tokenFrom, advice: advice,
		tmpl: template.Must(template.New("").Funcs(templateFuncs).ParseFS(assets, "assets/"+page, "assets/common.html")),
		log:  log,
	}
}

func (s *site) tokenEqual(t string) bool {
	return t != "" && subtle.ConstantTimeCompare([]byte(t), []byte(s.token)) == 1
}

// headerToken reports whether r carries the token in its header.
func (s *site) headerToken(r *http.Request) bool {
	return s.tokenEqual(r.Header.Get(TokenHeader))
}

// cookieToken reports whether r carries the token in our cookie.
func (s *site) cookieToken(r *http.Request) bool {
	c, err := r.Cookie(s.cookieName)
	return err == nil && s.tokenEqual(c.Value)
}

// api wraps an API handler with the checks every API request passes:
// Host, Origin, then the token. Reading needs the token in the header or
// the cookie (an EventSource cannot set headers); changing state needs it
// in the header, which no other site can make a browser send.
func (s *site) api(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		setSecurityHeaders(w.Header())
		w.Header().Set("Cache-Control", "no-store")
		switch {
		case !hostAllowed(r):
			writeError(w, http.StatusMisdirectedRequest, "this server only answers to its own address, as "+s.who+" printed it; the Host header names another")
		case !originAllowed(r):
			writeError(w, http.StatusForbidden, "requests from other web sites are refused")
		case safeMethod(r.Method) && !s.headerToken(r) && !s.cookieToken(r):
			writeError(w, http.StatusForbidden, "missing or wrong token: send the token "+s.tokenFrom+" in the "+TokenHeader+" header")
		case !safeMethod(r.Method) && !s.headerToken(r):
			writeError(w, http.StatusForbidden, "missing or wrong token: changes need the token "+s.tokenFrom+" in the "+TokenHeader+" header")
		default:
			h(w, r)
		}
	}
}

// page wraps the handler of a page: it is served to a request carrying
// the token in its URL (which also gets the cookie) or in the cookie.
func (s *site) page(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		setSecurityHeaders(w.Header())
		w.Header().Set("Cache-Control", "no-store")
		switch {
		case !hostAllowed(r):
			s.refuse(w, http.StatusMisdirectedRequest, "This server only answers to its own address; the page was asked for under another name.")
			return
		case !originAllowed(r):
			s.refuse(w, http.StatusForbidden, "Requests from other web sites are refused.")
			return
		}
		if t := r.URL.Query().Get("token"); t != "" {
			if !s.tokenEqual(t) {
				s.refuse(w, http.StatusForbidden, "The token in this address is wrong, perhaps from an earlier run of "+s.who+".")
				return
			}
			// SameSite=Strict: no other site can make the browser send it;
			// HttpOnly: no script can read it. The event stream, which
			// cannot send headers, relies on it.
			http.SetCookie(w, &http.Cookie{Name: s.cookieName, Value: s.token, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode})
		} else if !s.cookieToken(r) {
			s.refuse(w, http.StatusForbidden, "This page needs the secret token of this run of "+s.who+".")
			return
		}
		h(w, r)
	}
}

// routes returns a mux serving page at "/" (guarded by the token) and the
// static files, with a function that adds an API route guarded by api.
// Unknown API routes answer with notFound, a sentence saying where the
// routes are documented.
func (s *site) routes(page http.HandlerFunc, notFound string) (*http.ServeMux, func(pattern string, h http.HandlerFunc)) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.page(page))
	mux.Handle("GET /static/", s.static())
	api := func(pattern string, h http.HandlerFunc) { mux.HandleFunc(pattern, s.api(h)) }
	api("/api/", func(w http.ResponseWriter, r *http.Request) { writeError(w, http.StatusNotFound, notFound) })
	return mux, api
}

// refusal is what the refusal page shows.
type refusal struct {
	Message, Advice string
}

func (s *site) refuse(w http.ResponseWriter, status int, msg string) {
	s.render(w, status, "refused", refusal{Message: msg, Advice: s.advice})
}

// render executes the template name into a buffer first, so that a
// failure is a clean error page rather than half a page.
func (s *site) render(w http.ResponseWriter, status int, name string, data any) {
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

// static serves the scripts and the style sheet. They hold no secret, but
// the Host check still applies so that a rebinding page learns nothing.
// The templates are not served: they are not pages of their own.
func (s *site) static() http.Handler {
	sub, err := fs.Sub(assets, "assets")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	files := http.StripPrefix("/static/", http.FileServerFS(sub))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		setSecurityHeaders(w.Header())
		if !hostAllowed(r) {
			http.Error(w, "wrong Host", http.StatusMisdirectedRequest)
			return
		}
		if strings.HasSuffix(r.URL.Path, "/") || strings.HasSuffix(r.URL.Path, ".html") {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	})
}

// pageURL returns the address a browser should open for a page served on
// addr with token: http://HOST:PORT/?token=TOKEN. An unspecified listen
// address (0.0.0.0, ::) is given as 127.0.0.1.
func pageURL(addr net.Addr, token string) string {
	ap, err := netip.ParseAddrPort(addr.String())
	host := addr.String()
	if err == nil {
		a := ap.Addr().Unmap()
		if a.IsUnspecified() {
			// A wildcard listener (Go's is dual-stack) also accepts
			// connections to 127.0.0.1.
			a = netip.AddrFrom4([4]byte{127, 0, 0, 1})
		}
		host = netip.AddrPortFrom(a, ap.Port()).String()
	}
	return "http://" + host + "/?token=" + token
}
