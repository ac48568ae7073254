// Package upnp holds the parts of UPnP Device Architecture that every UPnP
// service shares: the device description model (parsed from, and written to,
// the root description XML), the SOAP envelope used for control with its
// UPnPError fault, and GENA eventing.
//
// Both sides use it: the client in package igd parses descriptions fetched
// from routers and calls actions through Client; the gateway daemon renders
// its own description and answers SOAP requests with the same types.
package upnp
