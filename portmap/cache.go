package portmap

import (
	"net/netip"
	"time"
)

// The discovery cache remembers where the UPnP gateway's description was
// last found, per default gateway. Discovery then fetches that URL directly,
// racing it against SSDP: the answer comes in milliseconds instead of after
// the random 0–MX s delay that SSDP responders add (miniupnpd built with
// DELAY_MSEARCH_RESPONSE waits up to MX seconds before every reply). The
// hint is only a hint: it is checked by fetching and probing the
// description live, and SSDP runs all the same, so a stale entry costs
// nothing but one failed HTTP request.

// cacheMaxAge bounds how old a hint may be. SSDP's max-age (often 120 s to
// 1800 s) is about announcements, not about whether a router moved; a day
// keeps hints for daily use without keeping dead ones forever.
const cacheMaxAge = 24 * time.Hour

// cacheEntry is one hint, kept in the state store's file.
type cacheEntry struct {
	DefaultGateway netip.Addr `json:"default_gateway"`
	Location       string     `json:"location"`
	Seen           time.Time  `json:"seen"`
}

// cachedLocation returns the remembered description URL for defGW.
func (s *store) cachedLocation(defGW netip.Addr) string {
	loc := ""
	s.view(func(d *stateData) {
		for _, e := range d.Gateways {
			if e.DefaultGateway == defGW && time.Since(e.Seen) < cacheMaxAge {
				loc = e.Location
				return
			}
		}
	})
	return loc
}

// rememberLocation records location as the UPnP gateway behind defGW.
// Errors are ignored: the cache is an optimisation.
func (s *store) rememberLocation(defGW netip.Addr, location string) {
	if !defGW.IsValid() || location == "" {
		return
	}
	s.update(func(d *stateData) error {
		out := []cacheEntry{{DefaultGateway: defGW, Location: location, Seen: time.Now()}}
		for _, e := range d.Gateways {
			if e.DefaultGateway != defGW && time.Since(e.Seen) < cacheMaxAge && len(out) < 16 {
				out = append(out, e)
			}
		}
		d.Gateways = out
		return nil
	})
}
