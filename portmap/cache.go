package portmap

import (
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
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

const (
	cacheFile = "gateways.json"
	// cacheMaxAge bounds how old a hint may be. SSDP's max-age (often 120 s
	// to 1800 s) is about announcements, not about whether a router moved;
	// a day keeps hints for daily use without keeping dead ones forever.
	cacheMaxAge = 24 * time.Hour
)

type cacheEntry struct {
	DefaultGateway netip.Addr `json:"default_gateway"`
	Location       string     `json:"location"`
	Seen           time.Time  `json:"seen"`
}

func loadCache(dir string) []cacheEntry {
	if dir == "" {
		return nil
	}
	data, err := os.ReadFile(filepath.Join(dir, cacheFile))
	if err != nil {
		return nil
	}
	var es []cacheEntry
	if json.Unmarshal(data, &es) != nil {
		return nil // a damaged cache is ignored and rewritten
	}
	return es
}

// cachedLocation returns the remembered description URL for defGW.
func cachedLocation(dir string, defGW netip.Addr) string {
	for _, e := range loadCache(dir) {
		if e.DefaultGateway == defGW && time.Since(e.Seen) < cacheMaxAge {
			return e.Location
		}
	}
	return ""
}

// rememberLocation records location as the UPnP gateway behind defGW.
// Errors are ignored: the cache is an optimisation.
func rememberLocation(dir string, defGW netip.Addr, location string) {
	if dir == "" || !defGW.IsValid() || location == "" {
		return
	}
	es := loadCache(dir)
	out := []cacheEntry{{DefaultGateway: defGW, Location: location, Seen: time.Now()}}
	for _, e := range es {
		if e.DefaultGateway != defGW && time.Since(e.Seen) < cacheMaxAge && len(out) < 16 {
			out = append(out, e)
		}
	}
	data, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return
	}
	if os.MkdirAll(dir, 0o700) != nil {
		return
	}
	tmp := filepath.Join(dir, cacheFile+".tmp")
	if os.WriteFile(tmp, data, 0o600) == nil {
		_ = os.Rename(tmp, filepath.Join(dir, cacheFile))
	}
}
