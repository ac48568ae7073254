package igd

import (
	"sort"
	"strconv"
	"strings"

	"github.com/portfwd/portfwd/upnp"
)

// Device and service types of IGD v1 and v2. Routers built on the DSL
// Forum's TR-064 stack (Huawei, some Broadcom firmware) use the same names
// under urn:dslforum-org; ConnectionServices accepts both domains.
const (
	URNInternetGatewayDevice1 = "urn:schemas-upnp-org:device:InternetGatewayDevice:1"
	URNInternetGatewayDevice2 = "urn:schemas-upnp-org:device:InternetGatewayDevice:2"
	URNWANDevice1             = "urn:schemas-upnp-org:device:WANDevice:1"
	URNWANDevice2             = "urn:schemas-upnp-org:device:WANDevice:2"
	URNWANConnectionDevice1   = "urn:schemas-upnp-org:device:WANConnectionDevice:1"
	URNWANConnectionDevice2   = "urn:schemas-upnp-org:device:WANConnectionDevice:2"

	URNWANIPConnection1          = "urn:schemas-upnp-org:service:WANIPConnection:1"
	URNWANIPConnection2          = "urn:schemas-upnp-org:service:WANIPConnection:2"
	URNWANPPPConnection1         = "urn:schemas-upnp-org:service:WANPPPConnection:1"
	URNWANCommonInterfaceConfig1 = "urn:schemas-upnp-org:service:WANCommonInterfaceConfig:1"

	URNDSLForumInternetGatewayDevice1    = "urn:dslforum-org:device:InternetGatewayDevice:1"
	URNDSLForumWANIPConnection1          = "urn:dslforum-org:service:WANIPConnection:1"
	URNDSLForumWANPPPConnection1         = "urn:dslforum-org:service:WANPPPConnection:1"
	URNDSLForumWANCommonInterfaceConfig1 = "urn:dslforum-org:service:WANCommonInterfaceConfig:1"
)

// Kind is the kind of WAN connection a service controls.
type Kind int

const (
	// KindIP is a WANIPConnection service.
	KindIP Kind = iota + 1
	// KindPPP is a WANPPPConnection service. It has the same port mapping
	// actions as WANIPConnection:1.
	KindPPP
)

func (k Kind) String() string {
	switch k {
	case KindIP:
		return "WANIPConnection"
	case KindPPP:
		return "WANPPPConnection"
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

// ServiceRef is a port-mapping service found in a root description.
type ServiceRef struct {
	// Service is the serviceList entry as written in the description.
	Service upnp.Service
	// ControlURL is Service.ControlURL resolved to an absolute URL.
	ControlURL string
	// ServiceType is the service URN exactly as the description spells it
	// (routers compare it verbatim in SOAPAction).
	ServiceType string
	// Version is the service version from the URN: 1 or 2.
	Version int
	Kind    Kind
	// Device is the device whose serviceList holds the service, normally a
	// WANConnectionDevice.
	Device *upnp.Device
	Root   *upnp.Root
	// CommonControlURL and CommonServiceType locate the
	// WANCommonInterfaceConfig service of the enclosing WANDevice, or are
	// empty when there is none.
	CommonControlURL  string
	CommonServiceType string
}

// ParseServiceType splits a service URN such as
// "urn:schemas-upnp-org:service:WANIPConnection:2" into its domain, type
// and version. ok is false when s is not a service URN with a positive
// version. Comparison elsewhere in this package ignores case and
// surrounding space, as firmware is not careful with either.
func ParseServiceType(s string) (domain, typ string, version int, ok bool) {
	parts := strings.Split(strings.TrimSpace(s), ":")
	if len(parts) != 5 || !strings.EqualFold(parts[0], "urn") || !strings.EqualFold(parts[2], "service") {
		return "", "", 0, false
	}
	v, err := strconv.Atoi(parts[4])
	if err != nil || v < 1 {
		return "", "", 0, false
	}
	return parts[1], parts[3], v, true
}

// igdDomain reports whether domain is one that defines the IGD services.
func igdDomain(domain string) bool {
	return strings.EqualFold(domain, "schemas-upnp-org") || strings.EqualFold(domain, "dslforum-org")
}

func connectionKind(serviceType string) (Kind, int, bool) {
	domain, typ, v, ok := ParseServiceType(serviceType)
	if !ok || !igdDomain(domain) {
		return 0, 0, false
	}
	switch {
	case strings.EqualFold(typ, "WANIPConnection"):
		return KindIP, v, true
	case strings.EqualFold(typ, "WANPPPConnection"):
		return KindPPP, v, true
	}
	return 0, 0, false
}

func isCommonConfig(serviceType string) bool {
	domain, typ, _, ok := ParseServiceType(serviceType)
	return ok && igdDomain(domain) && strings.EqualFold(typ, "WANCommonInterfaceConfig")
}

// ConnectionServices returns the WANIPConnection and WANPPPConnection
// services in root's device tree, best first: WANIPConnection:2, then
// WANIPConnection:1, then WANPPPConnection (a later version first), and in
// document order among equals.
//
// The version and kind come from the description, not from the SSDP search
// target that found the device: routers answer an IGD:1 search and then
// describe IGD:2 services. Services are looked for anywhere in the tree, not
// only at the standard InternetGatewayDevice/WANDevice/WANConnectionDevice
// path, and under the legacy urn:dslforum-org domain as well. Every
// WANDevice contributes its own services (MikroTik describes one per
// uplink). A WANPPPConnection next to a WANIPConnection is kept, ranked
// after it: on DD-WRT the PPP one refuses every action, and on an actual PPP
// line the IP one may be the dead one: a client probes them in order (package
// portmap asks each for its status and external address) to find out.
//
// A service whose controlURL cannot be made absolute is left out. When a
// controlURL is absolute but holds an unfilled printf template
// ("http://%s:%d/wipconn", D-Link DIR-655), its path is resolved against
// the description instead, since that is where such firmware serves it.
func ConnectionServices(root *upnp.Root) []ServiceRef {
	if root == nil {
		return nil
	}
	var refs []ServiceRef
	seen := make(map[string]bool)
	root.Walk(func(chain []*upnp.Device, s *upnp.Service) bool {
		kind, version, ok := connectionKind(s.ServiceType)
		if !ok {
			return true
		}
		control, err := resolveControlURL(root, s.ControlURL)
		if err != nil {
			return true
		}
		// Some firmware lists a service twice; calling it twice gains nothing.
		id := strings.ToLower(s.ServiceType) + " " + control
		if seen[id] {
			return true
		}
		seen[id] = true
		ref := ServiceRef{
			Service:     *s,
			ControlURL:  control,
			ServiceType: s.ServiceType,
			Version:     version,
			Kind:        kind,
			Device:      chain[len(chain)-1],
			Root:        root,
		}
		ref.CommonControlURL, ref.CommonServiceType = commonConfigFor(root, chain)
		refs = append(refs, ref)
		return true
	})
	sort.SliceStable(refs, func(i, j int) bool {
		a, b := refs[i], refs[j]
		if a.Kind != b.Kind {
			return a.Kind < b.Kind
		}
		return a.Version > b.Version
	})
	return refs
}

// resolveControlURL resolves a controlURL, recovering the path of an
// absolute URL whose host is an unfilled template.
func resolveControlURL(root *upnp.Root, ref string) (string, error) {
	u, err := root.Resolve(ref)
	if err == nil {
		return u, nil
	}
	ref = strings.TrimSpace(ref)
	if i := strings.Index(ref, "://"); i > 0 {
		rest := ref[i+3:]
		if j := strings.IndexByte(rest, '/'); j > 0 && strings.ContainsAny(rest[:j], "%{}") {
			if u, err2 := root.Resolve(rest[j:]); err2 == nil {
				return u, nil
			}
		}
	}
	return "", err
}

// commonConfigFor finds the WANCommonInterfaceConfig that goes with a
// connection service: in the owning device, else in the nearest ancestor
// (the WANDevice, normally), else the only one in the whole tree.
func commonConfigFor(root *upnp.Root, chain []*upnp.Device) (controlURL, serviceType string) {
	for i := len(chain) - 1; i >= 0; i-- {
		for _, s := range chain[i].Services {
			if isCommonConfig(s.ServiceType) {
				if u, err := resolveControlURL(root, s.ControlURL); err == nil {
					return u, s.ServiceType
				}
			}
		}
	}
	var found []upnp.Service
	root.Walk(func(_ []*upnp.Device, s *upnp.Service) bool {
		if isCommonConfig(s.ServiceType) {
			found = append(found, *s)
		}
		return true
	})
	if len(found) == 1 {
		if u, err := resolveControlURL(root, found[0].ControlURL); err == nil {
			return u, found[0].ServiceType
		}
	}
	return "", ""
}
