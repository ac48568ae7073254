// Package websec is the guard in front of portfwd's two web surfaces, the
// client's web UI (package webui, "portfwd ui") and the gateway's admin page
// (package gateway/admin): both are remote controls for a router, so every
// request to either must prove it comes from the user who started it, and
// both are guarded by this one implementation.
//
// The model: a per-run secret token (printed in the page's URL) is required
// by every API request, in the X-Portfwd-Token header for anything that
// changes state (a cookie is not enough there: browsers attach cookies to
// cross-site requests, and custom headers need a CORS preflight that is
// never granted). Reading may use the cookie a page load sets, because an
// EventSource cannot send headers. The Host header must name the address the
// connection arrived on, which defeats DNS rebinding, and an Origin header,
// when present, must be the server's own. Every response carries headers
// that forbid framing, sniffing, referrers and foreign scripts.
package websec

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"net"
	"net/netip"
	"strconv"
	"strings"

	http "github.com/portfwd/portfwd/internal/httpx"
)

// TokenHeader is the request header that carries the token.
const TokenHeader = "X-Portfwd-Token"

// NewToken returns a random secret for a server's token.
func NewToken() string {
	return rand.Text()
}

// contentSecurityPolicy allows only our own scripts and styles and no
// framing: even if some text escaped escaping, it could not run.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// SetHeaders sets the headers every response carries.
func SetHeaders(h http.Header) {
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	// The page's URL holds the token: never send it anywhere.
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
}

// HostAllowed reports whether r's Host header names the address the
// connection arrived on (or localhost with its port, when that address is
// loopback). A page on another name that resolves to us (DNS rebinding)
// sends its own name as Host and is refused.
func HostAllowed(r *http.Request) bool {
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

// OriginAllowed reports whether a request's Origin (when it has one) is
// this server, and whether the browser says it comes from another site.
// Run after HostAllowed, so r.Host is trusted.
func OriginAllowed(r *http.Request) bool {
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

// SafeMethod reports whether m cannot change state.
func SafeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

// Guard holds a server's token and the cookie that carries it, and wraps
// the server's handlers with the checks every request passes.
type Guard struct {
	token      string
	cookieName string
	// who is the command whose token it is ("portfwd ui"), and tokenFrom
	// says where the user finds the token ("printed by portfwd ui"), for
	// the sentences of refusals.
	who, tokenFrom string
}

// NewGuard returns the guard of a server whose secret is token. who and
// tokenFrom name, in refusals, the command that serves the pages and where
// its user finds the token.
func NewGuard(token, who, tokenFrom string) *Guard {
	sum := sha256.Sum256([]byte(token))
	return &Guard{
		token: token,
		// Cookies are not separated by port: a name of our own keeps two
		// servers on 127.0.0.1 (a UI and a gateway's admin page, say) from
		// overwriting each other's cookie.
		cookieName: "portfwd_" + hex.EncodeToString(sum[:4]),
		who:        who, tokenFrom: tokenFrom,
	}
}

// Who is the command named in refusals.
func (g *Guard) Who() string { return g.who }

func (g *Guard) tokenEqual(t string) bool {
	return t != "" && subtle.ConstantTimeCompare([]byte(t), []byte(g.token)) == 1
}

// headerToken reports whether r carries the token in its header.
func (g *Guard) headerToken(r *http.Request) bool {
	return g.tokenEqual(r.Header.Get(TokenHeader))
}

// cookieToken reports whether r carries the token in our cookie.
func (g *Guard) cookieToken(r *http.Request) bool {
	c, err := r.Cookie(g.cookieName)
	return err == nil && g.tokenEqual(c.Value)
}

// API wraps an API handler with the checks every API request passes:
// Host, Origin, then the token. Reading needs the token in the header or
// the cookie (an EventSource cannot set headers); changing state needs it
// in the header, which no other site can make a browser send. A refusal is
// a JSON error (see WriteError).
func (g *Guard) API(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		SetHeaders(w.Header())
		w.Header().Set("Cache-Control", "no-store")
		switch {
		case !HostAllowed(r):
			WriteError(w, http.StatusMisdirectedRequest, "this server only answers to its own address, as "+g.who+" printed it; the Host header names another")
		case !OriginAllowed(r):
			WriteError(w, http.StatusForbidden, "requests from other web sites are refused")
		case SafeMethod(r.Method) && !g.headerToken(r) && !g.cookieToken(r):
			WriteError(w, http.StatusForbidden, "missing or wrong token: send the token "+g.tokenFrom+" in the "+TokenHeader+" header")
		case !SafeMethod(r.Method) && !g.headerToken(r):
			WriteError(w, http.StatusForbidden, "missing or wrong token: changes need the token "+g.tokenFrom+" in the "+TokenHeader+" header")
		default:
			h(w, r)
		}
	}
}

// Page wraps the handler of a page: it is served to a request carrying the
// token in its URL (which also gets the cookie) or in the cookie. Other
// requests get refuse, with the status and a sentence saying why.
func (g *Guard) Page(h http.HandlerFunc, refuse func(w http.ResponseWriter, status int, msg string)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		SetHeaders(w.Header())
		w.Header().Set("Cache-Control", "no-store")
		switch {
		case !HostAllowed(r):
			refuse(w, http.StatusMisdirectedRequest, "This server only answers to its own address; the page was asked for under another name.")
			return
		case !OriginAllowed(r):
			refuse(w, http.StatusForbidden, "Requests from other web sites are refused.")
			return
		}
		if t := r.URL.Query().Get("token"); t != "" {
			if !g.tokenEqual(t) {
				refuse(w, http.StatusForbidden, "The token in this address is wrong, perhaps from an earlier run of "+g.who+".")
				return
			}
			// SameSite=Strict: no other site can make the browser send it;
			// HttpOnly: no script can read it. The event stream, which
			// cannot send headers, relies on it.
			http.SetCookie(w, &http.Cookie{Name: g.cookieName, Value: g.token, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode})
		} else if !g.cookieToken(r) {
			refuse(w, http.StatusForbidden, "This page needs the secret token of this run of "+g.who+".")
			return
		}
		h(w, r)
	}
}

// Static wraps the handler of static files (scripts, style sheets). They
// hold no secret, but the Host check still applies so that a rebinding page
// learns nothing, and directory listings and templates (.html) are never
// served: they are not pages of their own.
func Static(files http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		SetHeaders(w.Header())
		if !HostAllowed(r) {
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

// PageURL returns the address a browser should open for a page served on
// addr with token: http://HOST:PORT/?token=TOKEN. An unspecified listen
// address (0.0.0.0, ::) is given as 127.0.0.1.
func PageURL(addr net.Addr, token string) string {
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

// WriteJSON answers with v as JSON. encoding/json escapes <, > and & in
// strings, so text from a router or a client cannot become markup in a page
// that mishandles it.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(true)
	_ = enc.Encode(v)
}

// Error is the body of every error answer of both web surfaces' APIs:
// {"error": sentence, "code": HTTP status}, with the field a form should
// point at when the request names one.
type Error struct {
	Error string `json:"error"`
	// Code is the HTTP status.
	Code int `json:"code"`
	// Field names the request field that is wrong, for a form to point at.
	Field string `json:"field,omitempty"`
}

// WriteError answers with status and the sentence msg as an Error.
func WriteError(w http.ResponseWriter, status int, msg string) {
	WriteJSON(w, status, Error{Error: msg, Code: status})
}
