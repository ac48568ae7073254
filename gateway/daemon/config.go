package daemon

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/portfwd/portfwd/gateway"
	"github.com/portfwd/portfwd/gateway/nft"
	"github.com/portfwd/portfwd/gateway/upstream"
)

// Backend names accepted in Config.Backend.
const (
	BackendNFT    = "nft"
	BackendRelay  = "relay"
	BackendMemory = "memory"
)

// External address sources accepted in ExternalAddressConfig.Source.
const (
	SourceInterface = "interface"
	SourceFixed     = "fixed"
	SourceSTUN      = "stun"
)

// Defaults of a Config, as DefaultConfig sets them.
const (
	DefaultStateDir       = "/var/lib/portfwd"
	DefaultHTTPPort       = 5000
	DefaultNATPMPPort     = 5351
	DefaultNotifyInterval = 60 * time.Second
	DefaultMinLease       = 120 * time.Second
	DefaultMaxLease       = 604800 * time.Second // IGDv2's longest lease
	// DefaultMaxPerClient and DefaultMaxMappings are the quotas: a game
	// console or a torrent client holds a handful of mappings, and the
	// bounds keep one misbehaving host from taking the port space, or the
	// router's memory.
	DefaultMaxPerClient = 128
	DefaultMaxMappings  = 8192
	DefaultAdminAddress = "127.0.0.1:8900"
	// DefaultAuditMaxBytes and DefaultAuditKeep bound the audit trail to
	// 4 MiB on the router's flash.
	DefaultAuditMaxBytes = 1 << 20
	DefaultAuditKeep     = 3
	DefaultSTUNPort      = 3478
	// DefaultInterfaceRefresh and DefaultSTUNRefresh are how often the
	// external address is read again from the interface or asked from the
	// STUN server.
	DefaultInterfaceRefresh = 30 * time.Second
	DefaultSTUNRefresh      = 10 * time.Minute
)

// Config is the whole configuration of the gateway daemon. It is read from
// TOML (see dist/gateway.example.toml for every key, documented) on top of
// DefaultConfig, so a file only needs the keys it changes; the command line
// then overrides single keys. The zero value is not usable: start from
// DefaultConfig.
type Config struct {
	Interfaces      InterfacesConfig      `toml:"interfaces"`
	ExternalAddress ExternalAddressConfig `toml:"external_address"`
	// Backend applies mappings: "nft" (nftables DNAT, needs root or
	// CAP_NET_ADMIN), "relay" (a userspace relay that needs no privileges)
	// or "memory" (records only, for tests). Empty chooses nft when
	// running as root and relay otherwise.
	Backend string `toml:"backend"`
	// StateDir holds the lease journal, the NAT-PMP epoch origin and the
	// device UUID. Empty keeps leases in memory only: they are lost on
	// restart, and the UUID changes at each start.
	StateDir string `toml:"state_dir"`
	// FlushOnExit removes every rule (and forgets every lease) when the
	// daemon stops. Off by default, so that a restart or upgrade does not
	// interrupt forwarded connections.
	FlushOnExit bool `toml:"flush_on_exit"`
	// LogLevel is debug, info, warn or error; LogFormat is text or json.
	// They are read by the command that builds Logger.
	LogLevel  string `toml:"log_level"`
	LogFormat string `toml:"log_format"`

	// Upstream chains every mapping to the router above this one (double
	// NAT, carrier-grade NAT; RFC 6970, RFC 7648): "auto" (the default)
	// when the external address is private or CGNAT and a router above
	// answers PCP, NAT-PMP or UPnP through the external interface; "pcp",
	// "natpmp" or "upnp" to use only that protocol, whatever the address;
	// the http:// URL of the router above's UPnP description; or "off".
	Upstream string `toml:"upstream"`
	// UpstreamProtocols is the allow-list of protocols spoken to the
	// router above, in order of preference; empty means pcp, natpmp, upnp.
	UpstreamProtocols []string `toml:"upstream_protocols"`
	// UpstreamCheckInterval is how often the router above is probed for a
	// restart or an address change no announcement told; 0 means 30 s.
	UpstreamCheckInterval Duration `toml:"upstream_check_interval"`

	UPnP   UPnPConfig   `toml:"upnp"`
	NATPMP NATPMPConfig `toml:"natpmp"`
	Policy PolicyConfig `toml:"policy"`
	Device DeviceConfig `toml:"device"`
	Admin  AdminConfig  `toml:"admin"`
	Audit  AuditConfig  `toml:"audit"`
	NFT    NFTConfig    `toml:"nft"`
	Relay  RelayConfig  `toml:"relay"`
	IPv6   IPv6Config   `toml:"ipv6"`

	// Quirks make the gateway misbehave on purpose as real routers do, to
	// test port-mapping clients: "permanent-only", "table-full:3", ...
	// (`portfwd gateway --quirks list`; docs/quirks.md). All are off by
	// default, each is logged at start, and none is allowed on a gateway
	// whose external side has a public address unless QuirksOnPublic.
	Quirks []string `toml:"quirks"`
	// QuirksOnPublic allows Quirks on a gateway with a public external
	// address.
	QuirksOnPublic bool `toml:"quirks_on_public"`
	// Personality serves the description of a real router (its friendly
	// name, maker, model, IGD version, service layout and URL paths) with
	// the quirks it is known for:
	// "mikrotik-chr-7.10" (`portfwd gateway --personality list`). Device
	// strings set in [device] are replaced.
	Personality string `toml:"personality"`

	// Logger receives the daemon's logs; nil means slog.Default().
	Logger *slog.Logger `toml:"-"`
}

// InterfacesConfig names the interfaces by role.
type InterfacesConfig struct {
	// Internal are the LAN interfaces: UPnP, SSDP and NAT-PMP are answered
	// there and nowhere else. At least one is required.
	Internal []string `toml:"internal"`
	// External are the WAN interfaces whose incoming traffic is forwarded
	// (the nft backend needs at least one; a trailing "*" matches a prefix,
	// as in "ppp*"). The first one's address is the external address when
	// ExternalAddress.Source is "interface".
	External []string `toml:"external"`
	// Force starts the gateway even though the roles look wrong: an
	// internal interface that carries the default route or has a public
	// address, an external one no default route leaves through. Off,
	// --check reports these and the gateway refuses to start.
	Force bool `toml:"force"`
}

// ExternalAddressConfig says where the address reported to clients comes
// from.
type ExternalAddressConfig struct {
	// Source is "interface" (the first IPv4 address of the first external
	// interface, re-read every Refresh), "fixed" (IP), or "stun" (asked
	// from STUNServer every Refresh, for a router behind a 1:1 NAT).
	Source string `toml:"source"`
	// IP is the address with Source "fixed".
	IP string `toml:"ip"`
	// STUNServer is host:port (port 3478 when absent) with Source "stun".
	STUNServer string `toml:"stun_server"`
	// Refresh is how often the address is read again in any case; 0 means
	// 30 s for an interface and 10 min for STUN. On Linux a change of the
	// external interface's addresses is seen at once (netlink), and the
	// address is read (or STUN asked) again then.
	Refresh Duration `toml:"refresh"`
	// RefusePrivateExternal makes the gateway refuse mappings, and report
	// no external address, while the external address is private, CGNAT
	// or otherwise not public: mappings would not be reachable from the
	// Internet. Off by default: the gateway logs what the address means and
	// forwards anyway (the outer network may forward to it, as in a lab or
	// a double NAT with a DMZ).
	RefusePrivateExternal bool `toml:"refuse_private_external"`
}

// UPnPConfig configures UPnP IGD.
type UPnPConfig struct {
	Enabled bool `toml:"enabled"`
	// HTTPPort serves the description and SOAP control on every internal
	// address; 0 picks a free port.
	HTTPPort int `toml:"http_port"`
	// SSDP enables discovery (multicast on the internal interfaces). Off,
	// clients must be given the description URL.
	SSDP bool `toml:"ssdp"`
	// NotifyInterval is the time between two rounds of SSDP ssdp:alive.
	NotifyInterval Duration `toml:"notify_interval"`
	// ForceIGDv1 serves InternetGatewayDevice:1 with WANIPConnection:1,
	// for control points that do not recognize IGDv2.
	ForceIGDv1 bool `toml:"force_igd_v1"`
	// Events enables GENA event subscriptions.
	Events bool `toml:"events"`
}

// NATPMPConfig configures NAT-PMP and PCP, which share UDP port 5351.
type NATPMPConfig struct {
	// Enabled serves the port: NAT-PMP, and PCP unless PCP is false.
	Enabled bool `toml:"enabled"`
	// PCP answers PCP (RFC 6887) requests; off, they get NAT-PMP's
	// "unsupported version", and PCP clients fall back to NAT-PMP.
	PCP bool `toml:"pcp"`
	// Port is the UDP port served. Clients always use 5351; other values
	// are for tests and the demo.
	Port int `toml:"port"`
	// PCPExternalPool, for a carrier-grade gateway serving many
	// subscribers, lists the IPv4 external addresses (or prefixes, such as
	// "198.51.100.0/28", whose usable addresses are all taken) that PCP
	// mappings are spread over, each subscriber paired with one of them
	// (gateway.Config.ExternalPool). The addresses must be routed to the
	// router and assigned to it (on the external interface, or a dummy
	// one). The gateway's own external address may be one of them. NAT-PMP
	// and UPnP keep using the gateway's own address. Needs the nft
	// backend; empty (the default), no pool.
	PCPExternalPool []string `toml:"pcp_external_pool"`
}

// maxPoolAddrs bounds natpmp.pcp_external_pool: a /20 of external
// addresses is more than one box forwards for.
const maxPoolAddrs = 4096

// parsePool expands natpmp.pcp_external_pool into addresses: a prefix
// gives every address in it but, for prefixes shorter than /31, its first
// and last (the network and broadcast addresses).
func parsePool(list []string) ([]netip.Addr, error) {
	var out []netip.Addr
	seen := map[netip.Addr]bool{}
	add := func(a netip.Addr) error {
		if seen[a] {
			return fmt.Errorf("%v is listed twice", a)
		}
		if len(out) >= maxPoolAddrs {
			return fmt.Errorf("more than %d addresses", maxPoolAddrs)
		}
		seen[a] = true
		out = append(out, a)
		return nil
	}
	for _, s := range list {
		if strings.Contains(s, "/") {
			p, err := netip.ParsePrefix(s)
			if err != nil || !p.Addr().Is4() || p != p.Masked() {
				return nil, fmt.Errorf("%q is not an IPv4 prefix (such as 198.51.100.0/28)", s)
			}
			if p.Bits() < 32-12 {
				return nil, fmt.Errorf("%q holds more than %d addresses", s, maxPoolAddrs)
			}
			var in []netip.Addr
			for a := p.Addr(); a.IsValid() && p.Contains(a); a = a.Next() {
				in = append(in, a)
			}
			if p.Bits() < 31 {
				in = in[1 : len(in)-1] // the network and broadcast addresses
			}
			for _, a := range in {
				if err := add(a); err != nil {
					return nil, err
				}
			}
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil || !a.Is4() {
			return nil, fmt.Errorf("%q is not an IPv4 address", s)
		}
		if a.IsUnspecified() || a.IsMulticast() || a.IsLoopback() {
			return nil, fmt.Errorf("%v is not a unicast address", a)
		}
		if err := add(a); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// PolicyConfig is what clients may map; see gateway.Policy.
type PolicyConfig struct {
	// SecureMode lets a client map ports only to itself and change only
	// its own mappings (miniupnpd's secure_mode).
	SecureMode bool `toml:"secure_mode"`
	// ListOwnOnly shows each client only its own mappings.
	ListOwnOnly bool `toml:"list_own_only"`
	// MaxPerClient caps the mappings of one client; 0 means no cap. The
	// default is DefaultMaxPerClient.
	MaxPerClient int `toml:"max_per_client"`
	// MaxMappings caps the whole table; 0 means no cap. The default is
	// DefaultMaxMappings.
	MaxMappings int `toml:"max_mappings"`
	// Reserved external ports, never mapped: "22", "8000-8099",
	// "53/udp", "443/tcp".
	Reserved []string `toml:"reserved"`
	// MinLease and MaxLease clamp lease times (all protocols). With
	// MaxLease set, a request for a permanent mapping gets MaxLease.
	MinLease Duration `toml:"min_lease"`
	MaxLease Duration `toml:"max_lease"`
	// AllowDisableExternal lets clients use the UPnP actions that take the
	// WAN connection down.
	AllowDisableExternal bool `toml:"allow_disable_external_interface"`
	// ShowDummyRule answers index 0 of an empty table with a placeholder
	// entry, for control points that probe it.
	ShowDummyRule bool `toml:"show_dummy_rule"`
	// Rules are miniupnpd-style permission lines, first match decides:
	// "allow 1024-65535 192.168.0.0/24 1024-65535". With rules, a request
	// no rule matches is denied; an empty list allows everything. The
	// default is DefaultRules.
	Rules []string `toml:"rules"`
}

// DeviceConfig holds the strings of the UPnP device description.
type DeviceConfig struct {
	// UUID overrides the device UUID kept in the state directory (to keep
	// the identity of a replaced miniupnpd, say).
	UUID             string `toml:"uuid"`
	FriendlyName     string `toml:"friendly_name"`
	Manufacturer     string `toml:"manufacturer"`
	ManufacturerURL  string `toml:"manufacturer_url"`
	ModelName        string `toml:"model_name"`
	ModelNumber      string `toml:"model_number"`
	ModelDescription string `toml:"model_description"`
	ModelURL         string `toml:"model_url"`
	SerialNumber     string `toml:"serial_number"`
	// PresentationURL may contain {host}, replaced by the address the
	// client used: "http://{host}:8900/".
	PresentationURL string `toml:"presentation_url"`
	// BitrateUp and BitrateDown are reported in WANCommonInterfaceConfig
	// (bits per second; 0 means unknown).
	BitrateUp   uint64 `toml:"bitrate_up"`
	BitrateDown uint64 `toml:"bitrate_down"`
}

// AdminConfig configures the administration HTTP server.
type AdminConfig struct {
	// Address serves /metrics (Prometheus) and /healthz. Empty disables
	// it. Keep it on loopback or a management network.
	Address string `toml:"address"`
	// UI also serves the admin page there: the table of every client's
	// mappings with delete buttons, and the gateway's status. Off by
	// default. Its token changes at each start; it is written to
	// admin-token in the state directory (readable by root only), or
	// logged when there is no state directory.
	UI bool `toml:"ui"`
}

// AuditConfig configures the audit trail: every mapping added, renewed,
// changed, deleted, expired or refused, with time, protocol, client, what,
// result and reason, as JSON lines in audit.jsonl in the state directory.
type AuditConfig struct {
	// Enabled writes the trail to the state directory (the admin page
	// shows the last records either way).
	Enabled bool `toml:"enabled"`
	// MaxBytes is the size at which audit.jsonl is rotated to
	// audit.jsonl.1; 0 means DefaultAuditMaxBytes.
	MaxBytes int64 `toml:"max_bytes"`
	// Keep is how many rotated files are kept (audit.jsonl.1 to .Keep).
	Keep int `toml:"keep"`
}

// NFTConfig configures the nft backend.
type NFTConfig struct {
	// Table is the inet table the backend owns ("portfwd").
	Table string `toml:"table"`
	// Hairpin lets LAN hosts reach mappings through the external address.
	Hairpin bool `toml:"hairpin"`
	// ForwardTable ("inet filter", "inet fw4", "ip6 filter") and
	// ForwardChain ("miniupnpd", "upnp_forward") name a chain of the
	// admin's own firewall, which its forward chain jumps to, where the
	// gateway puts the accept rules of IPv6 pinholes (and their sets, in
	// that table), as miniupnpd's upnp_table_name / upnp_forward_chain
	// do. The gateway owns only its own rules and sets there, never the
	// chain. Empty: pinholes go into the gateway's own table, where an
	// accept cannot override a drop in the admin's forward chain (every
	// base chain is evaluated), so they reach only routers whose forward
	// policy lets the traffic through anyway; --check and the start-up log
	// say so.
	ForwardTable string `toml:"forward_table"`
	ForwardChain string `toml:"forward_chain"`
	// RebuildOnStart empties the maps at start and fills them again from
	// the lease journal, 512 elements a netlink message, instead of
	// reading them back from the kernel, whose dump of a map takes time
	// quadratic in its size (minutes for a million elements). Forwarding
	// of existing mappings stops until each is back (about a second per
	// 100,000), so the gateway serves requests meanwhile: it answers as
	// soon as the leases are back in its table and fills the maps in the
	// background (gateway.Config.ApplyInBackground). For a carrier-scale
	// table (natpmp.pcp_external_pool); off by default, so that a restart
	// leaves every forward in place.
	RebuildOnStart bool `toml:"rebuild_on_start"`
}

// IPv6Config configures IPv6 pinholes: UPnP WANIPv6FirewallControl:1 and
// PCP MAP over IPv6, both opening the router's firewall for a LAN host's
// own IPv6 address (nft backend), or relaying the pinhole's port from the
// router's external IPv6 addresses to it (relay backend).
type IPv6Config struct {
	// Pinholes lets clients open pinholes (UPnP InboundPinholeAllowed).
	// On by default; off, the pinhole actions answer 703 and PCP MAP over
	// IPv6 NOT_AUTHORIZED.
	Pinholes bool `toml:"pinholes"`
	// Firewall says the router filters inbound IPv6 (UPnP
	// FirewallEnabled). Set it false on a router that forwards all IPv6
	// unfiltered: pinholes then mean nothing and the actions answer 702.
	Firewall bool `toml:"firewall"`
	// MaxPinholes caps the pinhole table (0: 65535, the ID space);
	// MaxPerClient the pinholes one LAN host holds, from all its
	// addresses (the neighbour table's: same link-layer address on the
	// same internal interface; else the requesting address) (0:
	// policy.max_per_client).
	MaxPinholes  int `toml:"max_pinholes"`
	MaxPerClient int `toml:"max_per_client"`
	// MinLease and MaxLease narrow the spec's 1 s..86400 s pinhole leases;
	// 0 keeps the spec's bound.
	MinLease Duration `toml:"min_lease"`
	MaxLease Duration `toml:"max_lease"`
}

// RelayConfig configures the relay backend.
type RelayConfig struct {
	// Bind is the address external ports are bound on. Empty means the
	// address of the first external interface, else the fixed external
	// address when it is local, else all addresses.
	Bind string `toml:"bind"`
	// UDPIdleTimeout ends an idle UDP session; 0 means 60 s.
	UDPIdleTimeout Duration `toml:"udp_idle_timeout"`
	// MaxConnsPerRule bounds the connections of one mapping; 0 means 1024.
	MaxConnsPerRule int `toml:"max_conns_per_rule"`
}

// DefaultRules are the permission rules of a configuration that sets
// none, miniupnpd's stock rules and LuCI's defaults: external and internal
// ports 1024-65535, for any LAN client (secure mode then limits each
// client to itself). Ports below 1024 need an explicit allow rule. A file
// that sets rules replaces these; `rules = []` allows every port.
var DefaultRules = []string{
	"allow 1024-65535 0.0.0.0/0 1024-65535",
	"deny 0-65535 0.0.0.0/0 0-65535",
}

// DefaultConfig returns the configuration used for every key a file does
// not set.
func DefaultConfig() Config {
	return Config{
		ExternalAddress:       ExternalAddressConfig{Source: SourceInterface},
		StateDir:              DefaultStateDir,
		Upstream:              upstream.ModeAuto,
		UpstreamProtocols:     []string{upstream.ModePCP, upstream.ModeNATPMP, upstream.ModeUPnP},
		UpstreamCheckInterval: Duration(upstream.DefaultCheckInterval),
		LogLevel:              "info",
		LogFormat:             "text",
		UPnP: UPnPConfig{
			Enabled:        true,
			HTTPPort:       DefaultHTTPPort,
			SSDP:           true,
			NotifyInterval: Duration(DefaultNotifyInterval),
			Events:         true,
		},
		NATPMP: NATPMPConfig{Enabled: true, PCP: true, Port: DefaultNATPMPPort, PCPExternalPool: []string{}},
		Policy: PolicyConfig{
			SecureMode:   true,
			MaxPerClient: DefaultMaxPerClient,
			MaxMappings:  DefaultMaxMappings,
			MinLease:     Duration(DefaultMinLease),
			MaxLease:     Duration(DefaultMaxLease),
			Rules:        slices.Clone(DefaultRules),
		},
		Device: DeviceConfig{
			FriendlyName: "portfwd gateway",
			Manufacturer: "portfwd",
			ModelName:    "portfwd gateway",
		},
		Quirks: []string{},
		Admin:  AdminConfig{Address: DefaultAdminAddress},
		Audit:  AuditConfig{Enabled: true, MaxBytes: DefaultAuditMaxBytes, Keep: DefaultAuditKeep},
		NFT:    NFTConfig{Table: nft.DefaultTable, Hairpin: true},
		IPv6:   IPv6Config{Pinholes: true, Firewall: true},
	}
}

// ParseConfig reads a TOML configuration on top of DefaultConfig. Unknown
// keys are an error, so that a misspelt option does not silently keep its
// default.
func ParseConfig(data []byte) (Config, error) {
	cfg := DefaultConfig()
	md, err := toml.NewDecoder(bytes.NewReader(data)).Decode(&cfg)
	if err != nil {
		return cfg, fmt.Errorf("reading the configuration: %w", err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		keys := make([]string, len(und))
		for i, k := range und {
			keys[i] = k.String()
		}
		return cfg, fmt.Errorf("unknown configuration keys %s: check their spelling against dist/gateway.example.toml", strings.Join(keys, ", "))
	}
	return cfg, nil
}

// LoadConfig reads the TOML file at path on top of DefaultConfig.
func LoadConfig(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return DefaultConfig(), fmt.Errorf("reading configuration file: %w", err)
	}
	cfg, err := ParseConfig(data)
	if err != nil {
		return cfg, fmt.Errorf("%s: %w", path, err)
	}
	return cfg, nil
}

// Encode writes cfg as TOML, as ParseConfig reads it.
func (c Config) Encode() ([]byte, error) {
	var b bytes.Buffer
	if err := toml.NewEncoder(&b).Encode(c); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// Validate reports every mistake in c, one sentence each, joined.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }

	if len(c.Interfaces.Internal) == 0 && (c.UPnP.Enabled || c.NATPMP.Enabled) {
		bad("no internal interface: name the LAN interface(s) with interfaces.internal or --internal")
	}
	for _, n := range c.Interfaces.Internal {
		if strings.Contains(n, "*") {
			bad("internal interface %q: patterns are only allowed for external interfaces; name each LAN interface", n)
		}
		if slicesContains(c.Interfaces.External, n) {
			bad("interface %q is both internal and external: a LAN interface must never face the WAN", n)
		}
	}
	switch c.Backend {
	case "", BackendNFT, BackendRelay, BackendMemory:
	default:
		bad("backend %q: use nft, relay or memory", c.Backend)
	}
	if c.resolvedBackend() == BackendNFT && len(c.Interfaces.External) == 0 {
		bad("the nft backend needs the external (WAN) interface: set interfaces.external or --external")
	}
	ea := c.ExternalAddress
	switch ea.Source {
	case "", SourceInterface:
		if len(c.Interfaces.External) == 0 {
			bad("the external address is read from the external interface, but none is named: set interfaces.external, or external_address.ip (--external-ip)")
		} else if strings.HasSuffix(c.Interfaces.External[0], "*") {
			bad("the external address cannot be read from the pattern %q: name the interface, or set external_address.ip", c.Interfaces.External[0])
		}
	case SourceFixed:
		if a, err := netip.ParseAddr(ea.IP); err != nil || !a.Is4() {
			bad("external_address.ip %q is not an IPv4 address", ea.IP)
		}
	case SourceSTUN:
		if _, err := stunServerAddr(ea.STUNServer); err != nil {
			bad("external_address.stun_server: %v", err)
		}
	default:
		bad("external_address.source %q: use interface, fixed or stun", ea.Source)
	}
	if ea.Source != SourceFixed && ea.IP != "" {
		bad("external_address.ip is set but source is %q: set source = \"fixed\" to use it", ea.Source)
	}
	if err := upstream.ValidMode(c.Upstream); err != nil {
		bad("%v", err)
	}
	for _, p := range c.UpstreamProtocols {
		if p != upstream.ModePCP && p != upstream.ModeNATPMP && p != upstream.ModeUPnP {
			bad("upstream_protocols: %q is not pcp, natpmp or upnp", p)
		}
	}
	if c.UpstreamCheckInterval < 0 {
		bad("upstream_check_interval must not be negative")
	}
	if ea.Refresh < 0 {
		bad("external_address.refresh must not be negative")
	}
	if c.UPnP.HTTPPort < 0 || c.UPnP.HTTPPort > 65535 {
		bad("upnp.http_port %d is not a port (0-65535; 0 picks a free one)", c.UPnP.HTTPPort)
	}
	if c.UPnP.NotifyInterval < Duration(time.Second) && c.UPnP.SSDP && c.UPnP.Enabled {
		bad("upnp.notify_interval %v is too short: use at least 1s (60s is usual)", c.UPnP.NotifyInterval)
	}
	if len(c.NATPMP.PCPExternalPool) > 0 {
		if _, err := parsePool(c.NATPMP.PCPExternalPool); err != nil {
			bad("natpmp.pcp_external_pool: %v", err)
		}
		if c.resolvedBackend() == BackendRelay {
			bad("natpmp.pcp_external_pool needs the nft backend: the relay backend forwards from one address")
		}
		if !c.NATPMP.Enabled || !c.NATPMP.PCP {
			bad("natpmp.pcp_external_pool is set but PCP is off: set natpmp.enabled and natpmp.pcp, or remove the pool")
		}
	}
	if c.NATPMP.Port < 0 || c.NATPMP.Port > 65535 {
		bad("natpmp.port %d is not a port", c.NATPMP.Port)
	}
	if !c.UPnP.Enabled && !c.NATPMP.Enabled {
		bad("both UPnP and NAT-PMP are disabled: the gateway would answer nothing")
	}
	if c.Admin.Address != "" {
		if _, err := netip.ParseAddrPort(c.Admin.Address); err != nil {
			bad("admin.address %q: want IP:port, such as 127.0.0.1:8900 (empty disables the admin server)", c.Admin.Address)
		}
	} else if c.Admin.UI {
		bad("admin.ui needs admin.address, where the page is served (such as 127.0.0.1:8900)")
	}
	if c.Audit.MaxBytes < 0 || c.Audit.Keep < 0 {
		bad("audit.max_bytes and audit.keep must not be negative")
	}
	if c.Relay.Bind != "" {
		if _, err := netip.ParseAddr(c.Relay.Bind); err != nil {
			bad("relay.bind %q is not an IP address", c.Relay.Bind)
		}
	}
	if u := c.Device.UUID; u != "" && !validUUID(strings.TrimPrefix(u, "uuid:")) {
		bad("device.uuid %q is not a UUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)", u)
	}
	if _, err := parseLevel(c.LogLevel); err != nil {
		bad("%v", err)
	}
	switch c.LogFormat {
	case "", "text", "json":
	default:
		bad("log_format %q: use text or json", c.LogFormat)
	}
	if _, err := c.Policy.Policy(); err != nil {
		errs = append(errs, err)
	}
	if q, err := c.EffectiveQuirks(); err != nil {
		errs = append(errs, err)
	} else if q.IGD2Only && c.UPnP.ForceIGDv1 && c.Personality == "" {
		bad("quirk igd2-only and upnp.force_igd_v1 contradict each other: drop one")
	}
	return errors.Join(errs...)
}

// resolvedBackend is Backend with the default applied: nft as root, relay
// otherwise.
func (c *Config) resolvedBackend() string {
	if c.Backend != "" {
		return c.Backend
	}
	if os.Geteuid() == 0 {
		return BackendNFT
	}
	return BackendRelay
}

// Policy converts the configuration into the core's policy.
func (p PolicyConfig) Policy() (gateway.Policy, error) {
	pol := gateway.Policy{
		InsecureMode:         !p.SecureMode,
		MaxPerClient:         p.MaxPerClient,
		MaxMappings:          p.MaxMappings,
		MinLease:             time.Duration(p.MinLease),
		MaxLease:             time.Duration(p.MaxLease),
		ListOwnOnly:          p.ListOwnOnly,
		AllowDisableExternal: p.AllowDisableExternal,
		ShowDummyRule:        p.ShowDummyRule,
	}
	var errs []error
	for _, line := range p.Rules {
		r, err := gateway.ParsePermRule(line)
		if err != nil {
			errs = append(errs, fmt.Errorf("policy.rules: %w", err))
			continue
		}
		pol.Rules = append(pol.Rules, r)
	}
	for _, s := range p.Reserved {
		spec, err := ParsePortSpec(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("policy.reserved: %w", err))
			continue
		}
		pol.Reserved = append(pol.Reserved, spec)
	}
	if err := pol.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("policy: %w", err))
	}
	return pol, errors.Join(errs...)
}

// ParsePortSpec reads "PORT", "LOW-HIGH", optionally followed by "/tcp" or
// "/udp" (both protocols without it).
func ParsePortSpec(s string) (gateway.PortSpec, error) {
	ports, proto, hasProto := strings.Cut(strings.TrimSpace(s), "/")
	var spec gateway.PortSpec
	if hasProto {
		p, err := gateway.ParseProtocol(proto)
		if err != nil {
			return spec, fmt.Errorf("%q: %w", s, err)
		}
		spec.Protocol = p
	}
	r, err := gateway.ParsePortRange(ports)
	if err != nil {
		return spec, err
	}
	spec.Ports = r
	return spec, nil
}

// parseLevel reads a log level name.
func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if s == "" {
		return slog.LevelInfo, nil
	}
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("log_level %q: use debug, info, warn or error", s)
	}
	return l, nil
}

// NewLogger returns the logger c.LogLevel and c.LogFormat describe,
// writing to w.
func (c *Config) NewLogger(w interface{ Write([]byte) (int, error) }) (*slog.Logger, error) {
	level, err := parseLevel(c.LogLevel)
	if err != nil {
		return nil, err
	}
	opts := &slog.HandlerOptions{Level: level}
	if c.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return slog.New(slog.NewTextHandler(w, opts)), nil
}

// stunServerAddr checks a host[:port] STUN server name.
func stunServerAddr(s string) (string, error) {
	if s == "" {
		return "", errors.New("no STUN server given (host or host:port)")
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		// No port: the whole thing is the host (an IPv6 literal needs
		// brackets to carry a port).
		host, port = strings.Trim(s, "[]"), strconv.Itoa(DefaultSTUNPort)
	}
	if host == "" {
		return "", fmt.Errorf("STUN server %q has no host", s)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return "", fmt.Errorf("STUN server %q: bad port", s)
	}
	return net.JoinHostPort(host, port), nil
}

func validUUID(u string) bool {
	if len(u) != 36 {
		return false
	}
	for i, c := range u {
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !strings.ContainsRune("0123456789abcdefABCDEF", c) {
				return false
			}
		}
	}
	return true
}

func slicesContains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// Duration is a time.Duration written in TOML as a Go duration string
// ("90s", "2h") or as an integer number of seconds, as miniupnpd writes
// its times.
type Duration time.Duration

// UnmarshalTOML implements toml.Unmarshaler.
func (d *Duration) UnmarshalTOML(v any) error {
	switch x := v.(type) {
	case int64:
		if x < 0 {
			return fmt.Errorf("duration %d is negative", x)
		}
		*d = Duration(time.Duration(x) * time.Second)
		return nil
	case string:
		return d.UnmarshalText([]byte(x))
	}
	return fmt.Errorf("duration must be a string such as \"90s\" or a number of seconds, not %T", v)
}

// UnmarshalText reads a Go duration string, or a bare number of seconds.
func (d *Duration) UnmarshalText(b []byte) error {
	s := strings.TrimSpace(string(b))
	if n, err := strconv.ParseUint(s, 10, 32); err == nil {
		*d = Duration(time.Duration(n) * time.Second)
		return nil
	}
	x, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("duration %q: write it like \"90s\", \"10m\" or \"24h\"", s)
	}
	if x < 0 {
		return fmt.Errorf("duration %q is negative", s)
	}
	*d = Duration(x)
	return nil
}

// MarshalText writes the shortest exact form: "2m", "24h", "1m30s".
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

func (d Duration) String() string {
	x := time.Duration(d)
	switch {
	case x == 0:
		return "0s"
	case x%time.Hour == 0:
		return strconv.FormatInt(int64(x/time.Hour), 10) + "h"
	case x%time.Minute == 0:
		return strconv.FormatInt(int64(x/time.Minute), 10) + "m"
	}
	return x.String()
}

// EffectiveQuirks returns the quirks of the personality, if any, and of
// Quirks together.
func (c *Config) EffectiveQuirks() (Quirks, error) {
	if !QuirksBuilt {
		// The router build: a constant, so the emulation is not linked.
		if c.Personality != "" || len(c.Quirks) > 0 {
			return Quirks{}, errQuirksNotBuilt
		}
		return Quirks{}, nil
	}
	items := c.Quirks
	if c.Personality != "" {
		p, err := LookupPersonality(c.Personality)
		if err != nil {
			return Quirks{}, err
		}
		items = append(slices.Clone(p.Quirks), items...)
	}
	return ParseQuirks(items)
}
