//go:build !gatewayonly

package daemon

// QuirksBuilt tells whether this build has the router emulation for
// testing clients, Config.Quirks and Config.Personality (docs/quirks.md).
// Every build has it but the router's, portfwd-gateway (tag gatewayonly),
// which leaves it out to fit a router's flash.
const QuirksBuilt = true

// errQuirksNotBuilt is never returned in a build with the emulation.
var errQuirksNotBuilt error
