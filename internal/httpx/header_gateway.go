//go:build gatewayonly

package httpx

import (
	"net/textproto"
)

// Header is a message's header fields, keyed by their canonical names
// (CanonicalHeaderKey), as net/http's.
type Header map[string][]string

// Add appends value to key's values.
func (h Header) Add(key, value string) { textproto.MIMEHeader(h).Add(key, value) }

// Set replaces key's values with value.
func (h Header) Set(key, value string) { textproto.MIMEHeader(h).Set(key, value) }

// Get returns key's first value, or "".
func (h Header) Get(key string) string { return textproto.MIMEHeader(h).Get(key) }

// Values returns key's values (not a copy).
func (h Header) Values(key string) []string { return textproto.MIMEHeader(h).Values(key) }

// Del deletes key's values.
func (h Header) Del(key string) { textproto.MIMEHeader(h).Del(key) }

// Clone returns a copy of h, or nil when h is nil.
func (h Header) Clone() Header {
	if h == nil {
		return nil
	}
	c := make(Header, len(h))
	for k, v := range h {
		c[k] = append([]string(nil), v...)
	}
	return c
}

// CanonicalHeaderKey is key with the first letter and every letter after
// a hyphen in upper case, the others in lower case ("content-type" is
// "Content-Type"); a key that is not a valid field name is returned as is.
func CanonicalHeaderKey(key string) string { return textproto.CanonicalMIMEHeaderKey(key) }
