package httpx

import "strings"

// ValidToken reports whether s is an RFC 9110 token: a method, a header
// field name, a cookie name. It is in both builds, for the router build's
// own reader here and for internal/httpserve, which checks the names
// net/textproto lets through ("X Bad", with a space).
func ValidToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		b := s[i]
		switch {
		case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z', '0' <= b && b <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", b) >= 0:
		default:
			return false
		}
	}
	return true
}
