package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/portfwd/portfwd/gateway"
	"github.com/portfwd/portfwd/igd"
	"github.com/portfwd/portfwd/internal/addrclass"
)

// Quirks make the gateway misbehave on purpose, as real routers do, so that
// port-mapping clients can be tested against them (portfwd gateway
// --quirks, the quirks key of the configuration). The core (package
// gateway) never sees them: each lives in the protocol adapter or server
// it changes (quirkHandler in upnpquirks.go for SOAP, upnpService for the
// table's answers, the SSDP responder, the NAT-PMP/PCP epoch, forget in
// the daemon). docs/quirks.md gives each one's wire behaviour, the devices
// and client bug reports it comes from, and how portfwd's client copes.
//
// The zero value has every quirk off.
type Quirks struct {
	PermanentOnly    bool          // 725 for a non-zero lease
	Lease402         bool          // 402 for a non-zero lease
	NoExternalIP     bool          // GetExternalIPAddress empty, NAT-PMP result 3
	NoExternalIP501  bool          // with NoExternalIP: 501 instead of an empty address
	SOAP500NoBody    bool          // faults are HTTP 500 with an empty body
	IGD2Only         bool          // IGD:2 only; v1 searches unanswered
	UpperProto       bool          // NewProtocol other than "TCP"/"UDP" refused 402
	SSDPOtherPort    bool          // SSDP answers from an ephemeral port
	SSDPSlow         bool          // SSDP answers after the full MX
	SSDPSilent       bool          // multicast searches ignored, no NOTIFY
	Stale718Port     uint16        // a port held by a gone host; 0 is off
	EnabledIgnored   bool          // NewEnabled=0 accepted and ignored
	NoList           bool          // no GetListOfPortMappings; 402 past the end
	DuplicateEntries bool          // the last entry repeats past the end
	TableFull        int           // refuse past this many mappings; 0 is off
	PMPEpochZero     bool          // NAT-PMP and PCP epoch always 0
	Forgetful        time.Duration // the table is lost this often; 0 is off
}

// Defaults of the quirks' parameters.
const (
	DefaultStale718Port = 6881
	DefaultTableFull    = 4
	DefaultForgetful    = 30 * time.Second
	// StaleHostSuffix is the last byte of the gone host's address on the
	// first internal subnet (stale-718).
	staleHostByte = 250
)

// quirkDef is one quirk: its name, its parameter, one line of help, and
// how it sets Quirks.
type quirkDef struct {
	name    string
	param   string // "" when it takes none: "N", "PORT", "SECONDS", "501"
	summary string
	set     func(q *Quirks, param string) error
}

// quirkDefs is the one list of quirks, in the order `--quirks list`
// prints them.
var quirkDefs = []quirkDef{
	{"permanent-only", "", "AddPortMapping with a lease other than 0 is refused 725 OnlyPermanentLeasesSupported (MikroTik, Netgear, Broadcom/Tomato)",
		flag(func(q *Quirks) { q.PermanentOnly = true })},
	{"lease-402", "", "AddPortMapping with a lease other than 0 is refused 402 Invalid Args (ARRIS NVG578LX, DD-WRT v24)",
		flag(func(q *Quirks) { q.Lease402 = true })},
	{"no-external-ip", "501", "GetExternalIPAddress answers an empty address (:501, 501 Action Failed); NAT-PMP answers result 3 (WAN down)",
		func(q *Quirks, p string) error {
			q.NoExternalIP = true
			switch p {
			case "":
			case "501":
				q.NoExternalIP501 = true
			default:
				return fmt.Errorf("no-external-ip takes no parameter or :501, not %q", p)
			}
			return nil
		}},
	{"soap-500-no-body", "", "every SOAP fault is HTTP 500 with an empty body, hiding the UPnP error code (attributed to Fritz!Box, unconfirmed)",
		flag(func(q *Quirks) { q.SOAP500NoBody = true })},
	{"igd2-only", "", "serves IGD:2/WANIPConnection:2 only and does not answer searches for the :1 types (breaks UDA 1.1 on purpose)",
		flag(func(q *Quirks) { q.IGD2Only = true })},
	{"upper-proto", "", `NewProtocol other than exactly "TCP" or "UDP" is refused 402 (TP-Link ER605)`,
		flag(func(q *Quirks) { q.UpperProto = true })},
	{"ssdp-other-port", "", "SSDP answers come from an ephemeral port, not 1900 (TP-Link ER605, libupnp 1.6 routers)",
		flag(func(q *Quirks) { q.SSDPOtherPort = true })},
	{"ssdp-slow", "", "SSDP answers only after the search's full MX (1-5 s) (Technicolor TG589)",
		flag(func(q *Quirks) { q.SSDPSlow = true })},
	{"ssdp-silent", "", "multicast searches are ignored and no NOTIFY is sent; unicast searches are answered (miniupnpd on OPNsense, broken multicast)",
		flag(func(q *Quirks) { q.SSDPSilent = true })},
	{"stale-718", "PORT", "TCP and UDP PORT (default 6881) are held by a LAN host that is gone: 718 on add, listed, never expiring",
		func(q *Quirks, p string) error {
			q.Stale718Port = DefaultStale718Port
			if p == "" {
				return nil
			}
			n, err := strconv.ParseUint(p, 10, 16)
			if err != nil || n == 0 {
				return fmt.Errorf("stale-718:%s: the parameter is a port, 1-65535", p)
			}
			q.Stale718Port = uint16(n)
			return nil
		}},
	{"enabled-ignored", "", "NewEnabled=0 is accepted and ignored: the mapping is installed and listed as enabled (miniupnpd)",
		flag(func(q *Quirks) { q.EnabledIgnored = true })},
	{"no-list", "", "GetListOfPortMappings is refused 401 and GetGenericPortMappingEntry answers 402 past the end instead of 713 (DD-WRT v24)",
		flag(func(q *Quirks) { q.NoList = true })},
	{"duplicate-entries", "", "GetGenericPortMappingEntry repeats the last entry for every index past the end (robustness test; no device confirmed)",
		flag(func(q *Quirks) { q.DuplicateEntries = true })},
	{"table-full", "N", "refuses new mappings past N (default 4): UPnP 728 NoPortMapsAvailable, NAT-PMP 4, PCP 8 NO_RESOURCES",
		func(q *Quirks, p string) error {
			q.TableFull = DefaultTableFull
			if p == "" {
				return nil
			}
			n, err := strconv.Atoi(p)
			if err != nil || n < 1 || n > 65535 {
				return fmt.Errorf("table-full:%s: the parameter is a number of mappings, 1-65535", p)
			}
			q.TableFull = n
			return nil
		}},
	{"pmp-epoch-zero", "", "NAT-PMP and PCP answers and announcements carry epoch 0",
		flag(func(q *Quirks) { q.PMPEpochZero = true })},
	{"forgetful", "SECONDS", "the whole table is lost every SECONDS (default 30) without telling anyone, like an unannounced reboot",
		func(q *Quirks, p string) error {
			q.Forgetful = DefaultForgetful
			if p == "" {
				return nil
			}
			n, err := strconv.Atoi(p)
			if err != nil || n < 1 || n > 86400 {
				return fmt.Errorf("forgetful:%s: the parameter is a number of seconds, 1-86400", p)
			}
			q.Forgetful = time.Duration(n) * time.Second
			return nil
		}},
}

func flag(f func(*Quirks)) func(*Quirks, string) error {
	return func(q *Quirks, p string) error {
		if p != "" {
			return errors.New("takes no parameter")
		}
		f(q)
		return nil
	}
}

// QuirkHelp returns one line per quirk, for `portfwd gateway --quirks
// list`.
func QuirkHelp() []string {
	var out []string
	for _, d := range quirkDefs {
		name := d.name
		if d.param != "" {
			name += "[:" + d.param + "]"
		}
		out = append(out, fmt.Sprintf("%-24s %s", name, d.summary))
	}
	return out
}

// QuirkNames returns the names of every quirk.
func QuirkNames() []string {
	out := make([]string, len(quirkDefs))
	for i, d := range quirkDefs {
		out[i] = d.name
	}
	return out
}

// ParseQuirks reads quirk names, each optionally with ":PARAM"
// ("table-full:3", "forgetful:10"); an item may hold several separated by
// commas. An unknown name is an error that suggests the nearest one.
func ParseQuirks(items []string) (Quirks, error) {
	var q Quirks
	var errs []error
	seen := map[string]bool{}
	for _, item := range items {
		for _, raw := range strings.Split(item, ",") {
			raw = strings.TrimSpace(raw)
			if raw == "" {
				continue
			}
			name, param, _ := strings.Cut(raw, ":")
			name = strings.ToLower(name)
			i := quirkIndex(name)
			if i < 0 {
				errs = append(errs, fmt.Errorf("unknown quirk %q: did you mean %q? ('portfwd gateway --quirks list' lists them)", name, nearest(name, QuirkNames())))
				continue
			}
			if seen[name] {
				continue
			}
			seen[name] = true
			if err := quirkDefs[i].set(&q, param); err != nil {
				if strings.HasPrefix(err.Error(), "takes") {
					err = fmt.Errorf("quirk %s %w (got %q)", name, err, raw)
				}
				errs = append(errs, err)
			}
		}
	}
	if q.PermanentOnly && q.Lease402 {
		errs = append(errs, errors.New("quirks permanent-only and lease-402 both refuse leases, with different codes: choose one"))
	}
	if q.NoList && q.DuplicateEntries {
		errs = append(errs, errors.New("quirks no-list and duplicate-entries both say what comes past the end of the table: choose one"))
	}
	return q, errors.Join(errs...)
}

// Names returns the quirks that are on, with their parameters, as
// ParseQuirks reads them.
func (q Quirks) Names() []string {
	var out []string
	add := func(on bool, name string) {
		if on {
			out = append(out, name)
		}
	}
	add(q.PermanentOnly, "permanent-only")
	add(q.Lease402, "lease-402")
	if q.NoExternalIP {
		add(!q.NoExternalIP501, "no-external-ip")
		add(q.NoExternalIP501, "no-external-ip:501")
	}
	add(q.SOAP500NoBody, "soap-500-no-body")
	add(q.IGD2Only, "igd2-only")
	add(q.UpperProto, "upper-proto")
	add(q.SSDPOtherPort, "ssdp-other-port")
	add(q.SSDPSlow, "ssdp-slow")
	add(q.SSDPSilent, "ssdp-silent")
	add(q.Stale718Port != 0, "stale-718:"+strconv.Itoa(int(q.Stale718Port)))
	add(q.EnabledIgnored, "enabled-ignored")
	add(q.NoList, "no-list")
	add(q.DuplicateEntries, "duplicate-entries")
	add(q.TableFull > 0, "table-full:"+strconv.Itoa(q.TableFull))
	add(q.PMPEpochZero, "pmp-epoch-zero")
	add(q.Forgetful > 0, "forgetful:"+strconv.Itoa(int(q.Forgetful/time.Second)))
	return out
}

// Any reports whether a quirk is on.
func (q Quirks) Any() bool { return len(q.Names()) > 0 }

// nearest returns the candidate closest to s by edit distance.
func nearest(s string, candidates []string) string {
	best, bestD := "", 1<<30
	for _, c := range candidates {
		if d := editDistance(s, c); d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// publicExternal returns a public address of the gateway's external side:
// of a named external interface, or the configured fixed address. Quirks
// are refused on such a gateway unless QuirksOnPublic: a broken router
// facing the Internet helps nobody.
func (c *Config) publicExternal() (netip.Addr, bool) {
	var cands []netip.Addr
	if c.ExternalAddress.Source == SourceFixed {
		if a, err := netip.ParseAddr(c.ExternalAddress.IP); err == nil {
			cands = append(cands, a)
		}
	}
	for _, name := range c.Interfaces.External {
		if strings.Contains(name, "*") {
			continue
		}
		ifi, err := net.InterfaceByName(name)
		if err != nil {
			continue
		}
		addrs, _ := ifi.Addrs()
		for _, a := range addrs {
			if p, err := netip.ParsePrefix(a.String()); err == nil {
				cands = append(cands, p.Addr())
			}
		}
	}
	for _, a := range cands {
		if addrclass.Of(a.Unmap()) == addrclass.Public {
			return a, true
		}
	}
	return netip.Addr{}, false
}

// setupQuirks reads the quirks and the personality of the configuration
// (validated) into d, applying the personality's description, and refuses
// quirks on a gateway whose external side is public.
func (d *Daemon) setupQuirks() error {
	q, err := d.cfg.EffectiveQuirks()
	if err != nil {
		return err
	}
	d.quirks = q
	if QuirksBuilt && d.cfg.Personality != "" {
		p, _ := LookupPersonality(d.cfg.Personality)
		d.personality = &p
		d.cfg.applyPersonality(p)
	}
	if q.IGD2Only {
		d.cfg.UPnP.ForceIGDv1 = false
	}
	if a, ok := d.cfg.publicExternal(); ok {
		return d.refuseQuirksOn(a)
	}
	return nil
}

// checkQuirksPublic refuses quirks once the external address is learned,
// when it is public (a fixed or STUN-learned address).
func (d *Daemon) checkQuirksPublic() error {
	if a, _ := d.wan.ext.current(); addrclass.Of(a.Unmap()) == addrclass.Public {
		return d.refuseQuirksOn(a)
	}
	return nil
}

func (d *Daemon) refuseQuirksOn(public netip.Addr) error {
	if !d.quirks.Any() || d.cfg.QuirksOnPublic {
		return nil
	}
	return fmt.Errorf("quirks %s are refused on a gateway whose external side has the public address %s: a deliberately broken router must not face the Internet; run it in a lab, or give --quirks-on-public (quirks_on_public = true) to insist",
		strings.Join(d.quirks.Names(), ","), public)
}

// logQuirks says at start which quirks are on: the gateway misbehaves on
// purpose, and its log must say so.
func (d *Daemon) logQuirks() {
	if d.personality != nil {
		attrs := []any{"personality", d.personality.Slug, "friendly_name", d.personality.FriendlyName, "igd", d.personality.IGD}
		if l := d.upnpLayout(); l != nil {
			desc := l.DescriptionPath
			if desc == "" {
				desc = igd.DescriptionPath
			}
			attrs = append(attrs, "connection", l.Connection.Type, "description", desc, "control", l.Connection.Control)
		}
		d.log.Warn("personality: serving the description of a real router", append(attrs, "evidence", d.personality.Evidence)...)
	}
	for _, n := range d.quirks.Names() {
		name, _, _ := strings.Cut(n, ":")
		i := quirkIndex(name)
		d.log.Warn("quirk on: this gateway misbehaves on purpose", "quirk", n, "what", quirkDefs[i].summary)
	}
}

// serverHeader is the SERVER header of the personality, or "" (the
// default, naming portfwd).
func (d *Daemon) serverHeader() string {
	if d.personality != nil {
		return d.personality.Server
	}
	return ""
}

// quirkPolicy applies table-full to the core's policy: the whole table is
// capped, and no per-client cap comes first. permanent-only lifts the
// lease clamp, so that a permanent mapping stays permanent, as on the
// devices it comes from (IGDv2 still turns "permanent" into 604800 s).
func (d *Daemon) quirkPolicy(p *gateway.Policy) {
	if d.quirks.PermanentOnly {
		p.MaxLease = 0
	}
	if n := d.quirks.TableFull; n > 0 {
		p.MaxMappings = n
		if p.MaxPerClient > 0 && p.MaxPerClient < n {
			p.MaxPerClient = n
		}
	}
}

// staleRequester owns the stale-718 entries: the operator, so that no LAN
// client may change or delete them.
var staleRequester = gateway.Requester{Source: gateway.SourceAdmin}

// seedStale adds the stale-718 entries: TCP and UDP on the quirk's port,
// to a host of the first internal subnet that does not answer (.250).
func (d *Daemon) seedStale(ctx context.Context) {
	port := d.quirks.Stale718Port
	if port == 0 || len(d.cfg.Interfaces.Internal) == 0 {
		return
	}
	ghost, err := staleHost(d.cfg.Interfaces.Internal[0])
	if err != nil {
		d.log.Warn("quirk stale-718: no address for the gone host", "err", err)
		return
	}
	for _, p := range []gateway.Protocol{gateway.TCP, gateway.UDP} {
		m := gateway.Mapping{Protocol: p, ExternalPort: port, InternalAddr: ghost, InternalPort: port, Enabled: true,
			Description: "stale (portfwd quirk stale-718)"}
		if _, err := d.core.Add(ctx, staleRequester, m); err != nil {
			d.log.Warn("quirk stale-718: could not hold the port", "mapping", m, "err", err)
		}
	}
}

// unseedStale removes the stale-718 entries at a clean shutdown, so that
// the quirk leaves nothing behind in the state directory.
func (d *Daemon) unseedStale(ctx context.Context) {
	port := d.quirks.Stale718Port
	if port == 0 || d.core == nil {
		return
	}
	for _, p := range []gateway.Protocol{gateway.TCP, gateway.UDP} {
		if m, err := d.core.Get(staleRequester, p, port, netip.Addr{}); err == nil && m.Source == gateway.SourceAdmin {
			_ = d.core.Delete(ctx, staleRequester, p, port, netip.Addr{})
		}
	}
}

// staleHost returns the address ending in .250 on the first IPv4 subnet
// of the interface.
func staleHost(iface string) (netip.Addr, error) {
	ifi, err := net.InterfaceByName(iface)
	if err != nil {
		return netip.Addr{}, err
	}
	addrs, err := ifi.Addrs()
	if err != nil {
		return netip.Addr{}, err
	}
	for _, a := range addrs {
		p, err := netip.ParsePrefix(a.String())
		if err != nil || !p.Addr().Is4() || p.Bits() > 24 {
			continue
		}
		b := p.Addr().As4()
		b[3] = staleHostByte
		return netip.AddrFrom4(b), nil
	}
	return netip.Addr{}, fmt.Errorf("interface %s has no IPv4 subnet of /24 or larger", iface)
}

// forgetEvery loses the whole table every interval (quirk forgetful),
// telling nobody: no GENA event, no announcement, the epoch unchanged.
func (d *Daemon) forgetEvery(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n := 0
		for _, p := range []gateway.Protocol{gateway.TCP, gateway.UDP} {
			for _, m := range d.core.List(staleRequester, p, 1, 65535, 0) {
				d.forgotten.Store(m.Key(), struct{}{})
			}
			k, err := d.core.DeleteRange(ctx, staleRequester, p, 1, 65535, true)
			if err != nil && ctx.Err() == nil {
				d.log.Warn("quirk forgetful: losing the table", "err", err)
			}
			n += k
		}
		d.log.Info("quirk forgetful: the table was lost, silently", "mappings", n)
	}
}

// quirkIndex returns the index of the quirk called name in quirkDefs, or
// -1. A loop, not slices.IndexFunc: one generic instantiation fewer in the
// router build.
func quirkIndex(name string) int {
	for i, d := range quirkDefs {
		if d.name == name {
			return i
		}
	}
	return -1
}
