package webui

import "github.com/portfwd/portfwd/internal/websec"

// TokenHeader is the request header that carries the token.
const TokenHeader = websec.TokenHeader

// NewToken returns a random secret suitable for Server.Token.
func NewToken() string { return websec.NewToken() }
