package daemon

import (
	"fmt"
	"slices"
	"strings"
)

// Personality is a real router's identity, for --personality: what its
// UPnP description says it is, and the quirks it is known for. The table
// below is derived from the corpus of real descriptions (shared/routers,
// one folder per slug; TestPersonalitiesMatchCorpus checks it), so that an
// app sees "a FRITZ!Box 7430" on the LAN.
//
// What is served: the description's strings (friendly name, manufacturer,
// model name and number), the IGD version of its device tree, its service
// layout and URL paths (personalityLayouts: the description path, each
// service's type, ID and SCPD, control and event paths, a WANPPPConnection
// where the device has one), the SERVER header where one was recorded, and
// its quirks. Connection and Control are the connection service's type and
// control URL exactly as recorded, for TestPersonalitiesMatchCorpus.
type Personality struct {
	Slug                       string
	FriendlyName, Manufacturer string
	ModelName, ModelNumber     string
	IGD                        int    // 1 or 2: InternetGatewayDevice:N
	Connection                 string // the WAN connection service type
	Control                    string // its control URL as recorded
	Server                     string // the SERVER header recorded, if any
	Quirks                     []string
	// Evidence says where the quirks come from: R recorded in the corpus,
	// P public report on the make or stack, I inferred (see
	// docs/quirks.md).
	Evidence string
	// Unservable says why the device cannot be served as a working
	// gateway, or is empty.
	Unservable string
}

const (
	urnIP1  = "urn:schemas-upnp-org:service:WANIPConnection:1"
	urnIP2  = "urn:schemas-upnp-org:service:WANIPConnection:2"
	urnPPP1 = "urn:schemas-upnp-org:service:WANPPPConnection:1"
	urnPPP2 = "urn:schemas-upnp-org:service:WANPPPConnection:2"
)

// Personalities are the 17 devices of the corpus, by slug.
var Personalities = []Personality{
	{Slug: "actiontec-gt784wn", FriendlyName: "Actiontec GT784WN", Manufacturer: "Actiontec", ModelName: "GT784WN", ModelNumber: "1.0",
		IGD: 1, Connection: urnPPP1, Control: "/uuid:70f196f9-33f5-f533-f996-f170f1f9f50002/WANPPPConnection:1", Server: "LINUX/2.4 UPnP/1.0 BRCM400/1.0",
		Evidence: "R: correct 713 past the end; permanent-only only inferred from the Broadcom lineage, so not set"},
	{Slug: "asus-rt-n16-ddwrt", FriendlyName: "Asus RT-N16:DD-WRT", Manufacturer: "DD-WRT", ModelName: "Asus RT-N16", ModelNumber: "V24",
		IGD: 1, Connection: urnIP1, Control: "/control?WANIPConnection", Server: "POSIX UPnP/1.0 DD-WRT Linux/V24",
		Quirks: []string{"no-list"}, Evidence: "I: same DD-WRT v24 daemon as tplink-tl-wr841nd-v9-ddwrt (402 past the end)"},
	{Slug: "avm-fritzbox-7430", FriendlyName: "FRITZ!Box 7430", Manufacturer: "AVM Berlin", ModelName: "FRITZ!Box 7430", ModelNumber: "avm",
		IGD: 1, Connection: urnIP1, Control: "/igdupnp/control/WANIPConn1",
		Quirks: []string{"soap-500-no-body"}, Evidence: "attributed by issue 13, unconfirmed: no public capture of an empty 500"},
	{Slug: "avm-fritzbox-fon-wlan-7170", FriendlyName: "radon UPnP/1.0 AVM FRITZ!Box Fon WLAN 7170 29.04.87", Manufacturer: "AVM Berlin", ModelName: "FRITZ!Box Fon WLAN 7170", ModelNumber: "avm",
		IGD: 1, Connection: urnIP1, Control: "/upnp/control/WANIPConn1",
		Quirks: []string{"soap-500-no-body"}, Evidence: "as the 7430 (same vendor), unconfirmed"},
	{Slug: "ddwrt-generic-x86", FriendlyName: "DD-WRT Router (192.168.1.1)", Manufacturer: "NewMedia-NET GmbH", ModelName: "Generic X86", ModelNumber: "DD-WRT v24 (05/20/08)",
		IGD: 1, Connection: urnIP1, Control: "/uuid:dead-beef-deadbeef0000/WANIPConnection:1", Server: "LINUX/2.4 UPnP/1.0 BRCM400/1.0",
		Evidence: "R: correct 713; its second, dead WANPPPConnection:1 is not served"},
	{Slug: "dlink-dir-655", FriendlyName: "Xtreme N GIGABIT Router", Manufacturer: "D-Link Systems", ModelName: "Xtreme N GIGABIT Router", ModelNumber: "DIR-655",
		IGD: 1, Connection: urnIP1, Control: "http://%s:%d/wipconn", Evidence: "none found"},
	{Slug: "dlink-router-libtorrent", FriendlyName: "D-Link Router", Manufacturer: "D-Link", ModelName: "D-Link Router", ModelNumber: "1",
		IGD: 1, Connection: urnIP1, Control: "/WANIPConnection", Evidence: "none found"},
	{Slug: "google-onhub", FriendlyName: "OnHub", Manufacturer: "Google", ModelName: "OnHub", ModelNumber: "1",
		IGD: 2, Connection: urnIP2, Control: "/ctl/IPConn", Server: "Linux/5.4.0-1034-gcp UPnP/1.1 MiniUPnPd/1.9",
		Quirks: []string{"enabled-ignored"}, Evidence: "I: miniupnpd ignores NewEnabled; R: IGD:2 tree"},
	{Slug: "huawei-hg531-v1", FriendlyName: "HG531 V1", Manufacturer: "Huawei Technologies Co., Ltd.", ModelName: "HG531 V1", ModelNumber: "Huawei Model",
		IGD: 1, Connection: "urn:dslforum-org:service:WANPPPConnection:1", Control: "/ctrlt/WANPPPConnection_1",
		Evidence:   "P: standard clients find no service (tailscale#10911)",
		Unservable: "its only connection service is urn:dslforum-org:service:WANPPPConnection:1, which portfwd does not serve"},
	{Slug: "linksys-wag200g", FriendlyName: "LINKSYS WAG200G Gateway", Manufacturer: "LINKSYS", ModelName: "Wireless-G ADSL Home Gateway", ModelNumber: "WAG200G",
		IGD: 1, Connection: urnPPP1, Control: "/upnp/control/WANPPPConn1", Evidence: "none found"},
	{Slug: "mikrotik-chr-7.10", FriendlyName: "MikroTik Router", Manufacturer: "MikroTik", ModelName: "Router OS",
		IGD: 1, Connection: urnIP1, Control: "/upnp/control/yomkmsnooi/wanipconn-1", Server: "RouterOS/7.7UPnP/1.0 MikroTik UPnP/1.0",
		Quirks: []string{"permanent-only"}, Evidence: "P: erlang-nat#14 (RouterOS 6.34.4 answers 725), tailscale PR 20781"},
	{Slug: "orange-livebox-new", FriendlyName: "Orange Livebox", Manufacturer: "Sagemcom", ModelName: "Residential Livebox,(DSL,WAN Ethernet)", ModelNumber: "3",
		IGD: 2, Connection: urnPPP2, Control: "/87895a19/upnp/control/WANIPConn1", Evidence: "I: IGD:2 layout only"},
	{Slug: "pannaway-rg-210", FriendlyName: "SpeedTouch 5x6 (0320FJ2PZ)", Manufacturer: "Pannaway", ModelName: "Pannaway", ModelNumber: "RG-210",
		IGD: 1, Evidence: "its WANDevice has no WANConnectionDevice (trimmed upstream)",
		Unservable: "its description has no WAN connection service at all, so no client can map a port through it"},
	{Slug: "pfsense-2.5.0", FriendlyName: "FreeBSD router", Manufacturer: "FreeBSD", ModelName: "FreeBSD router", ModelNumber: "2.5.0-RELEASE",
		IGD: 1, Connection: urnIP1, Control: "/ctl/IPConn", Server: "FreeBSD/12.2-STABLE UPnP/1.1 MiniUPnPd/2.2.1",
		Quirks: []string{"enabled-ignored"}, Evidence: "I: miniupnpd ignores NewEnabled"},
	{Slug: "technicolor-tg784n-v3", FriendlyName: "Technicolor TG784n v3 (1321RAWMS)", Manufacturer: "Technicolor", ModelName: "Technicolor TG", ModelNumber: "784n v3",
		IGD: 1, Connection: urnPPP1, Control: "/hou74cq4tw9/IGD/upnp/control/igd/wanpppc_1_1_1",
		Evidence: "P (family): slow SSDP on the TG589Bvac (Open.NAT#72), not set for this model"},
	{Slug: "tplink-tl-wr841nd-v9-ddwrt", FriendlyName: "TP-Link TL-WR841ND v9:DD-WRT", Manufacturer: "DD-WRT", ModelName: "TP-Link TL-WR841ND v9", ModelNumber: "V24",
		IGD: 1, Connection: urnIP1, Control: "/control?WANIPConnection", Server: "POSIX UPnP/1.0 DD-WRT Linux/V24",
		Quirks: []string{"no-list"}, Evidence: "R: 402 Invalid Argument past the end (soap-GetGenericPortMappingEntry.xml)"},
	{Slug: "unknown-portable-sdk-router", FriendlyName: "", Manufacturer: "", ModelName: "", ModelNumber: "",
		IGD: 1, Connection: urnIP1, Control: "/upnp/control/WANIPConn1",
		Quirks: []string{"ssdp-other-port"}, Evidence: "P (Portable SDK 1.6 stacks): tailscale#10771, #7377"},
}

// LookupPersonality returns the personality called slug, or an error
// naming the nearest slug.
func LookupPersonality(slug string) (Personality, error) {
	i := slices.IndexFunc(Personalities, func(p Personality) bool { return p.Slug == slug })
	if i < 0 {
		return Personality{}, fmt.Errorf("unknown personality %q: did you mean %q? ('portfwd gateway --personality list' lists them)", slug, nearest(slug, PersonalitySlugs()))
	}
	p := Personalities[i]
	if p.Unservable != "" {
		return p, fmt.Errorf("personality %s cannot be served: %s", slug, p.Unservable)
	}
	return p, nil
}

// PersonalitySlugs returns every slug.
func PersonalitySlugs() []string {
	out := make([]string, len(Personalities))
	for i, p := range Personalities {
		out[i] = p.Slug
	}
	return out
}

// PersonalityHelp returns one line per personality, for --personality
// list.
func PersonalityHelp() []string {
	var out []string
	for _, p := range Personalities {
		what := strings.TrimSpace(p.Manufacturer + " " + p.ModelName + " " + p.ModelNumber)
		if what == "" {
			what = "(anonymised)"
		}
		q := strings.Join(p.Quirks, ",")
		if q == "" {
			q = "no quirks"
		}
		line := fmt.Sprintf("%-28s IGD:%d %-40s %s", p.Slug, p.IGD, what, q)
		if p.Unservable != "" {
			line += " (cannot be served: " + p.Unservable + ")"
		}
		out = append(out, line)
	}
	return out
}

// applyPersonality sets the description strings of p on c and returns
// its quirks.
func (c *Config) applyPersonality(p Personality) {
	c.Device.FriendlyName = p.FriendlyName
	c.Device.Manufacturer = p.Manufacturer
	c.Device.ModelName = p.ModelName
	c.Device.ModelNumber = p.ModelNumber
	c.UPnP.ForceIGDv1 = p.IGD == 1
}
