package daemon

import (
	"bufio"
	"bytes"
	"cmp"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/portfwd/portfwd/gateway"
)

// ConvertMiniupnpd converts a miniupnpd.conf into a portfwd gateway
// configuration in TOML, which ParseConfig reads. It is a pure function of
// the text: it looks nothing up (an address in listening_ip cannot be
// turned into an interface name here; it is left as a comment saying so).
//
// Options portfwd has an equivalent for are converted; options it does not
// need (firewall chain names, rule cleaning) and options it does not know
// are kept as comments that say why, so that nothing of the old
// configuration disappears silently. Permission lines (allow|deny) become
// policy.rules; a line with miniupnpd's optional description regex is
// commented out instead, since dropping the regex would widen a deny or an
// allow.
func ConvertMiniupnpd(src []byte) []byte {
	c := &converter{tables: map[string][]tomlLine{}}
	sc := bufio.NewScanner(bytes.NewReader(src))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	n := 0
	for sc.Scan() {
		n++
		c.line(n, sc.Text())
	}
	c.finish()
	return c.render()
}

// tomlLine is one line of output: a key = value pair, a comment, or both
// (comment first).
type tomlLine struct {
	comment string
	key     string
	value   string
}

type converter struct {
	top      []tomlLine
	tables   map[string][]tomlLine
	order    []string
	internal []string
	external []string
	rules    []string
	sawRule  bool
	// stun and fixed are remembered until the end: miniupnpd prefers STUN
	// when both are given.
	stunHost, stunPort, fixedIP string
	stun                        bool
	// fwdTable and fwdChain are upnp_table_name and upnp_forward_chain:
	// where miniupnpd put its pinholes, and portfwd will too.
	fwdTable, fwdChain string
	familySplit        bool
}

func (c *converter) add(table string, l tomlLine) {
	if table == "" {
		c.top = append(c.top, l)
		return
	}
	if _, ok := c.tables[table]; !ok {
		c.order = append(c.order, table)
	}
	c.tables[table] = append(c.tables[table], l)
}

// set writes key = value in table. An option given twice keeps its last
// value, as miniupnpd does; TOML forbids writing a key twice.
func (c *converter) set(table, key, value string) {
	c.setLine(table, tomlLine{key: key, value: value})
}

func (c *converter) setLine(table string, l tomlLine) {
	lines := c.top
	if table != "" {
		lines = c.tables[table]
	}
	for i := range lines {
		if lines[i].key == l.key {
			lines[i].value = l.value
			lines[i].comment = "given more than once in miniupnpd.conf; the last value is kept, as miniupnpd does"
			return
		}
	}
	c.add(table, l)
}

// note records a comment in table (or at the top), quoting the original
// line.
func (c *converter) note(table string, n int, orig, why string) {
	c.add(table, tomlLine{comment: fmt.Sprintf("miniupnpd.conf line %d %q: %s", n, orig, why)})
}

func (c *converter) line(n int, raw string) {
	s := strings.TrimSpace(raw)
	if s == "" || strings.HasPrefix(s, "#") {
		return
	}
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	if f := strings.Fields(s); len(f) > 0 && (f[0] == "allow" || f[0] == "deny") {
		c.rule(n, s, f)
		return
	}
	key, value, ok := strings.Cut(s, "=")
	if !ok {
		c.note("", n, s, "not an option (key=value) or a permission rule; left out")
		return
	}
	key, value = strings.TrimSpace(key), strings.TrimSpace(value)
	// miniupnpd reads the value up to the end of the line, quotes
	// included; some generators quote anyway.
	if len(value) >= 2 && value[0] == '"' && value[len(value)-1] == '"' {
		value = value[1 : len(value)-1]
	}
	c.option(n, s, key, value)
}

func (c *converter) option(n int, orig, key, value string) {
	yes := func() (bool, bool) {
		switch strings.ToLower(value) {
		case "yes", "true", "1", "on":
			return true, true
		case "no", "false", "0", "off":
			return false, true
		}
		c.note("", n, orig, "value is neither yes nor no; left out")
		return false, false
	}
	seconds := func(table, k string) {
		v, err := strconv.ParseUint(value, 10, 32)
		if err != nil {
			c.note(table, n, orig, "not a number of seconds; left out")
			return
		}
		c.set(table, k, tomlString(Duration(int64(v)*1e9).String()))
	}
	str := func(table, k string) { c.set(table, k, tomlString(value)) }

	switch key {
	case "ext_ifname":
		if value != "" {
			c.external = append(c.external, value)
		}
	case "ext_ip":
		c.fixedIP = value
		if a, err := netip.ParseAddr(value); err != nil || !a.Is4() {
			c.note("external_address", n, orig, "not an IPv4 address; left out")
			c.fixedIP = ""
		}
	case "ext_perform_stun":
		if b, ok := yes(); ok {
			c.stun = b
		}
	case "ext_stun_host":
		c.stunHost = value
	case "ext_stun_port":
		c.stunPort = value
	case "ext_allow_private_ipv4":
		if b, ok := yes(); ok {
			c.set("external_address", "refuse_private_external", strconv.FormatBool(!b))
		}
	case "listening_ip":
		c.listening(n, orig, value)
	case "http_port", "port":
		if p, err := strconv.ParseUint(value, 10, 16); err == nil {
			c.set("upnp", "http_port", strconv.FormatUint(p, 10))
		} else {
			c.note("upnp", n, orig, "not a port number; left out")
		}
	case "enable_upnp":
		if b, ok := yes(); ok {
			c.set("upnp", "enabled", strconv.FormatBool(b))
		}
	case "enable_natpmp", "enable_pcp_pmp":
		if b, ok := yes(); ok {
			c.set("natpmp", "enabled", strconv.FormatBool(b))
		}
	case "notify_interval":
		seconds("upnp", "notify_interval")
	case "force_igd_desc_v1":
		if b, ok := yes(); ok {
			c.set("upnp", "force_igd_v1", strconv.FormatBool(b))
		}
	case "secure_mode":
		if b, ok := yes(); ok {
			c.set("policy", "secure_mode", strconv.FormatBool(b))
		}
	case "min_lifetime":
		c.add("policy", tomlLine{comment: "miniupnpd applied min_lifetime and max_lifetime to NAT-PMP and PCP only; portfwd applies them to UPnP leases too"})
		seconds("policy", "min_lease")
	case "max_lifetime":
		seconds("policy", "max_lease")
	case "uuid":
		if validUUID(strings.TrimPrefix(value, "uuid:")) {
			c.setLine("device", tomlLine{comment: "kept so that control points recognize the gateway as the same device", key: "uuid", value: tomlString(value)})
		} else {
			c.note("device", n, orig, "not a UUID; left out (the state directory keeps a generated one)")
		}
	case "friendly_name":
		str("device", "friendly_name")
	case "manufacturer_name":
		str("device", "manufacturer")
	case "manufacturer_url":
		str("device", "manufacturer_url")
	case "model_name":
		str("device", "model_name")
	case "model_description":
		str("device", "model_description")
	case "model_url":
		str("device", "model_url")
	case "model_number":
		str("device", "model_number")
	case "serial":
		str("device", "serial_number")
	case "presentation_url":
		str("device", "presentation_url")
	case "bitrate_up", "bitrate_down":
		if v, err := strconv.ParseUint(value, 10, 64); err == nil {
			c.set("device", key, strconv.FormatUint(v, 10))
		} else {
			c.note("device", n, orig, "not a number of bits per second; left out")
		}
	case "lease_file", "lease_file6":
		c.note("", n, orig, "portfwd keeps leases in state_dir (default /var/lib/portfwd); existing miniupnpd leases are not imported")
	case "upnp_table_name":
		c.fwdTable = value
		c.note("nft", n, orig, "IPv6 pinholes go into this table's forward_chain (nft.forward_table); portfwd's DNAT stays in a table of its own (nft.table, default inet portfwd)")
	case "upnp_forward_chain":
		c.fwdChain = value
		c.note("nft", n, orig, "IPv6 pinholes are accepted in this chain (nft.forward_chain), which your forward chain jumps to; portfwd owns only its own rules and sets there")
	case "upnp_nftables_family_split":
		if v, ok := yes(); ok {
			c.familySplit = v
		}
	case "upnp_nat_table_name", "upnp_nat_chain", "upnp_nat_postrouting_chain":
		c.note("nft", n, orig, "portfwd keeps its DNAT in a table of its own (nft.table, default inet portfwd); a forward chain of yours with policy drop must contain `ct status dnat accept` (portfwd gateway --check tells)")
	case "clean_ruleset_threshold", "clean_ruleset_interval":
		c.note("", n, orig, "not needed: portfwd removes each rule when its lease ends or it is deleted")
	case "system_uptime":
		c.note("", n, orig, "portfwd reports the daemon's uptime")
	case "ipv6_disable":
		if v, ok := yes(); ok {
			c.set("ipv6", "pinholes", strconv.FormatBool(!v))
		}
	case "ext_ifname6", "ipv6_listening_ip":
		c.note("", n, orig, "portfwd opens IPv6 pinholes for traffic from interfaces.external, and serves UPnP on every global and unique-local IPv6 address of interfaces.internal")
	case "https_port", "https_cert", "https_key":
		c.note("upnp", n, orig, "portfwd serves UPnP over plain HTTP only, like every IGD control point expects")
	case "minissdpdsocket":
		c.note("upnp", n, orig, "not needed: portfwd answers SSDP itself")
	case "pcp_allow_thirdparty":
		c.note("", n, orig, "PCP third-party mappings are not supported")
	case "packet_log", "anchor", "queue", "tag", "quickrules":
		c.note("", n, orig, "a pf (BSD) option; portfwd uses nftables or its relay")
	default:
		c.note("", n, orig, "unknown miniupnpd option; left out")
	}
}

// listening converts listening_ip: an interface name (plus, for a bridge,
// the names of its ports, which portfwd does not need), or an address or
// subnet, which needs the name of the interface holding it.
func (c *converter) listening(n int, orig, value string) {
	f := strings.Fields(value)
	if len(f) == 0 {
		c.note("interfaces", n, orig, "empty; left out")
		return
	}
	first := f[0]
	addr, _, _ := strings.Cut(first, "/")
	if _, err := netip.ParseAddr(addr); err == nil {
		c.note("interfaces", n, orig, fmt.Sprintf("portfwd names interfaces: add the name of the interface holding %s to interfaces.internal", addr))
		return
	}
	c.internal = append(c.internal, first)
	if len(f) > 1 {
		c.note("interfaces", n, orig, fmt.Sprintf("only %s is kept: the other names are ports of that bridge, whose traffic arrives on %s", first, first))
	}
}

func (c *converter) rule(n int, orig string, f []string) {
	c.sawRule = true
	if len(f) > 4 {
		c.note("policy", n, orig, "has a description regex, which portfwd does not support; dropping only the regex would change what the rule matches, so the rule is left out: rewrite it without one")
		return
	}
	r, err := gateway.ParsePermRule(strings.Join(f, " "))
	if err != nil {
		c.note("policy", n, orig, fmt.Sprintf("%v; left out", err))
		return
	}
	c.rules = append(c.rules, r.String())
}

// finish emits what depends on several lines.
func (c *converter) finish() {
	if len(c.internal) > 0 {
		c.set("interfaces", "internal", tomlStrings(c.internal))
	}
	if len(c.external) > 0 {
		c.set("interfaces", "external", tomlStrings(c.external))
	}
	switch {
	case c.stun:
		server := c.stunHost
		if server == "" {
			c.add("external_address", tomlLine{comment: "ext_perform_stun=yes without ext_stun_host: set stun_server"})
		} else {
			if c.stunPort != "" {
				server = joinHostPort(server, c.stunPort)
			}
			c.set("external_address", "source", tomlString(SourceSTUN))
			c.set("external_address", "stun_server", tomlString(server))
		}
		if c.fixedIP != "" {
			c.add("external_address", tomlLine{comment: fmt.Sprintf("ext_ip=%s ignored: miniupnpd used STUN instead when both were set", c.fixedIP)})
		}
	case c.fixedIP != "":
		c.set("external_address", "source", tomlString(SourceFixed))
		c.set("external_address", "ip", tomlString(c.fixedIP))
	}
	if c.fwdTable != "" || c.fwdChain != "" {
		// miniupnpd's compiled-in defaults fill in the one not given.
		table, chain := cmp.Or(c.fwdTable, "filter"), cmp.Or(c.fwdChain, "miniupnpd")
		family := "inet"
		if c.familySplit {
			family = "ip6" // pinholes go into the ip6 table then
		}
		c.set("nft", "forward_table", tomlString(family+" "+table))
		c.set("nft", "forward_chain", tomlString(chain))
	}
	if len(c.rules) > 0 {
		c.set("policy", "rules", tomlStrings(c.rules))
	} else if c.sawRule {
		c.add("policy", tomlLine{comment: "no allow/deny line of miniupnpd.conf could be converted: portfwd's default rules apply (ports 1024-65535 only)"})
	} else {
		c.add("policy", tomlLine{comment: "miniupnpd.conf has no allow/deny line, so miniupnpd let clients map any port; portfwd's default rules allow ports 1024-65535 only (write rules = [] to allow every port)"})
	}
}

func joinHostPort(host, port string) string {
	if strings.Contains(host, ":") && !strings.HasPrefix(host, "[") {
		return "[" + host + "]:" + port
	}
	return host + ":" + port
}

// tableOrder is the order tables are written in, as in the example file.
var tableOrder = []string{"interfaces", "external_address", "upnp", "natpmp", "policy", "device", "nft", "ipv6"}

func (c *converter) render() []byte {
	var b bytes.Buffer
	b.WriteString("# portfwd gateway configuration converted from miniupnpd.conf by\n")
	b.WriteString("# `portfwd gateway --import-miniupnpd`. Check it with `portfwd gateway --check --config FILE`.\n")
	b.WriteString("# Keys not written here keep their defaults; dist/gateway.example.toml documents them all.\n")
	writeLines(&b, c.top)
	for _, t := range tableOrder {
		if ls, ok := c.tables[t]; ok {
			fmt.Fprintf(&b, "\n[%s]\n", t)
			writeLines(&b, ls)
		}
	}
	return b.Bytes()
}

func writeLines(b *bytes.Buffer, ls []tomlLine) {
	for _, l := range ls {
		if l.comment != "" {
			b.WriteString("# " + strings.ReplaceAll(l.comment, "\n", " ") + "\n")
		}
		if l.key != "" {
			b.WriteString(l.key + " = " + l.value + "\n")
		}
	}
}

// tomlString quotes s as a TOML basic string.
func tomlString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, "\\u%04X", r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

func tomlStrings(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = tomlString(s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}
