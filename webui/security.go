package webui

import (
	"crypto/subtle"
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

func (s *Server) tokenEqual(t string) bool {
	return t != "" && subtle.ConstantTimeCompare([]byte(t), []byte(s.Token)) == 1
}

// headerToken reports whether r carries the token in its header.
func (s *Server) headerToken(r *http.Request) bool {
	return s.tokenEqual(r.Header.Get(TokenHeader))
}

// cookieToken reports whether r carries the token in our cookie.
func (s *Server) cookieToken(r *http.Request) bool {
	c, err := r.Cookie(s.cookieName)
	return err == nil && s.tokenEqual(c.Value)
}

// safeMethod reports whether m cannot change state.
func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

// guardAPI wraps an API handler with the checks every API request passes:
// Host, Origin, then the token. Reading needs the token in the header or
// the cookie (an EventSource cannot set headers); changing state needs it
// in the header, which no other site can make a browser send.
func (s *Server) guardAPI(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		setSecurityHeaders(w.Header())
		w.Header().Set("Cache-Control", "no-store")
		switch {
		case !hostAllowed(r):
			writeError(w, http.StatusMisdirectedRequest, "this server only answers to its own address (the one printed by portfwd ui); the Host header names another")
		case !originAllowed(r):
			writeError(w, http.StatusForbidden, "requests from other web sites are refused")
		case safeMethod(r.Method) && !s.headerToken(r) && !s.cookieToken(r):
			writeError(w, http.StatusForbidden, "missing or wrong token: send the token printed by portfwd ui in the "+TokenHeader+" header")
		case !safeMethod(r.Method) && !s.headerToken(r):
			writeError(w, http.StatusForbidden, "missing or wrong token: changes need the token printed by portfwd ui in the "+TokenHeader+" header")
		default:
			h(w, r)
		}
	}
}
