//go:build gatewayonly

package daemon

import "errors"

// QuirksBuilt tells whether this build has the router emulation for
// testing clients, Config.Quirks and Config.Personality (docs/quirks.md).
// The router's build, portfwd-gateway (tag gatewayonly), leaves it out to
// fit a router's flash: the emulation is for app developers' CI, not for
// a router.
const QuirksBuilt = false

// errQuirksNotBuilt is the answer of the router build to quirks or a
// personality.
var errQuirksNotBuilt = errors.New("quirks and personalities (router emulation for testing clients) are left out of portfwd-gateway, the router build; run 'portfwd gateway' (the whole tool) for them")
