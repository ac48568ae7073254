package igd

import (
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"net/netip"
	"strings"

	"github.com/portfwd/portfwd/upnp"
)

// deviceInfo is what the root description says about the device.
type deviceInfo struct {
	friendlyName, manufacturer, manufacturerURL string
	modelName, modelNumber, modelDescription    string
	modelURL, serialNumber, presentationURL     string
	// The UDNs ("uuid:..."), lower case.
	rootUDN, wanUDN, wcdUDN string
}

func newDeviceInfo(cfg ServerConfig, root [16]byte) deviceInfo {
	d := deviceInfo{
		friendlyName:     cfg.FriendlyName,
		manufacturer:     cfg.Manufacturer,
		manufacturerURL:  cfg.ManufacturerURL,
		modelName:        cfg.ModelName,
		modelNumber:      cfg.ModelNumber,
		modelDescription: cfg.ModelDescription,
		modelURL:         cfg.ModelURL,
		serialNumber:     cfg.SerialNumber,
		presentationURL:  cfg.PresentationURL,
		rootUDN:          formatUDN(root),
		wanUDN:           formatUDN(deriveUUID(root, "WANDevice")),
		wcdUDN:           formatUDN(deriveUUID(root, "WANConnectionDevice")),
	}
	if d.friendlyName == "" {
		d.friendlyName = "portfwd gateway"
	}
	if d.manufacturer == "" {
		d.manufacturer = "portfwd"
	}
	if d.modelName == "" {
		d.modelName = "portfwd"
	}
	if d.modelDescription == "" {
		d.modelDescription = "UPnP Internet Gateway Device"
	}
	return d
}

// parseUUID reads a UUID in its canonical 36-character form, with or
// without the "uuid:" prefix of a UDN.
func parseUUID(s string) ([16]byte, error) {
	var u [16]byte
	s = strings.TrimSpace(s)
	if len(s) >= 5 && strings.EqualFold(s[:5], "uuid:") {
		s = s[5:]
	}
	if s == "" {
		return u, errors.New("no UUID")
	}
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return u, fmt.Errorf("%q is not a UUID of the form xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx", s)
	}
	b, err := hex.DecodeString(s[0:8] + s[9:13] + s[14:18] + s[19:23] + s[24:36])
	if err != nil {
		return u, fmt.Errorf("%q is not a UUID: %w", s, err)
	}
	copy(u[:], b)
	return u, nil
}

// deriveUUID returns the name-based (version 5, SHA-1) UUID of name in the
// namespace of root, so that the embedded devices keep their UUIDs as long
// as the root keeps its own, without another thing to store.
func deriveUUID(root [16]byte, name string) [16]byte {
	h := sha1.New()
	h.Write(root[:])
	h.Write([]byte(name))
	var u [16]byte
	copy(u[:], h.Sum(nil))
	u[6] = u[6]&0x0f | 0x50
	u[8] = u[8]&0x3f | 0x80
	return u
}

func formatUDN(u [16]byte) string {
	x := hex.EncodeToString(u[:])
	return "uuid:" + x[0:8] + "-" + x[8:12] + "-" + x[12:16] + "-" + x[16:20] + "-" + x[20:32]
}

// hostToken is the token of ServerConfig.PresentationURL replaced by the
// address the control point used.
const hostToken = "{host}"

// initDescription checks that the description renders, computes its
// configId, and keeps the rendered document when it does not depend on
// the request.
func (s *Server) initDescription() error {
	r := s.root("")
	if _, err := r.Marshal(); err != nil {
		return fmt.Errorf("igd: building the device description: %w", err)
	}
	if s.version >= 2 {
		// UDA 1.1's configId is a number the device changes when its
		// description changes: a hash of the document does that without
		// state. It must be below 2^24.
		r.Device.PresentationURL = s.dev.presentationURL // the template, host-independent
		doc, _ := r.Marshal()
		h := fnv.New32a()
		h.Write(doc)
		s.configID = int(h.Sum32() & 0xffffff)
		if s.configID == 0 {
			s.configID = 1 // 0 would read as "none"
		}
	}
	if !strings.Contains(s.dev.presentationURL, hostToken) {
		doc, err := s.root("").Marshal()
		if err != nil {
			return fmt.Errorf("igd: building the device description: %w", err)
		}
		s.desc = doc
	}
	return nil
}

// root builds the device tree as served to a control point that sent
// host in its Host header (empty for none):
//
//	InternetGatewayDevice:N          (Layer3Forwarding:1 on IGDv1)
//	  WANDevice:N                    (WANCommonInterfaceConfig:1)
//	    WANConnectionDevice:N        (WANIPConnection:N)
//
// URLBase is left out, so every URL is relative to the description's own,
// which is where the control point found it (UDA 1.1 deprecates URLBase).
func (s *Server) root(host string) *upnp.Root {
	v := fmt.Sprint(s.version)
	dev := func(typ, name, udn string) upnp.Device {
		return upnp.Device{
			DeviceType:       "urn:schemas-upnp-org:device:" + typ + ":" + v,
			FriendlyName:     name,
			Manufacturer:     s.dev.manufacturer,
			ManufacturerURL:  s.dev.manufacturerURL,
			ModelDescription: s.dev.modelDescription,
			ModelName:        s.dev.modelName,
			ModelNumber:      s.dev.modelNumber,
			ModelURL:         s.dev.modelURL,
			SerialNumber:     s.dev.serialNumber,
			UDN:              udn,
		}
	}
	rootDev := dev("InternetGatewayDevice", s.dev.friendlyName, s.dev.rootUDN)
	wan := dev("WANDevice", "WANDevice", s.dev.wanUDN)
	wcd := dev("WANConnectionDevice", "WANConnectionDevice", s.dev.wcdUDN)
	for _, d := range s.services {
		entry := upnp.Service{
			ServiceType: d.serviceType(),
			ServiceID:   d.id,
			SCPDURL:     d.scpdPath,
			ControlURL:  d.controlPath,
			EventSubURL: d.eventPath,
		}
		switch d.name {
		case "Layer3Forwarding":
			rootDev.Services = append(rootDev.Services, entry)
		case "WANCommonInterfaceConfig":
			wan.Services = append(wan.Services, entry)
		default:
			wcd.Services = append(wcd.Services, entry)
		}
	}
	wan.Devices = []upnp.Device{wcd}
	rootDev.Devices = []upnp.Device{wan}
	rootDev.PresentationURL = presentationURL(s.dev.presentationURL, host)
	r := &upnp.Root{SpecVersion: upnp.SpecVersion{Major: 1, Minor: 0}, Device: rootDev}
	if s.version >= 2 {
		r.SpecVersion.Minor = 1
		if s.configID != 0 {
			r.ConfigID = fmt.Sprint(s.configID)
		}
	}
	return r
}

// presentationURL fills the host token of tmpl with the host part of the
// Host header. Without a usable host, a URL that needs one is left out.
func presentationURL(tmpl, hostHeader string) string {
	if !strings.Contains(tmpl, hostToken) {
		return tmpl
	}
	host, _ := splitHost(hostHeader)
	if a, err := netip.ParseAddr(host); err == nil {
		a = normAddr(a)
		host = a.String()
		if a.Is6() {
			host = "[" + host + "]"
		}
	} else if !isHostName(host) {
		return ""
	}
	return strings.ReplaceAll(tmpl, hostToken, host)
}

// isHostName reports whether h is a plain DNS name, safe to put in a URL.
func isHostName(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	for _, r := range h {
		if !(r == '.' || r == '-' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			return false
		}
	}
	return true
}

// description returns the root description for a request with the given
// Host header.
func (s *Server) description(host string) []byte {
	if s.desc != nil {
		return s.desc
	}
	doc, err := s.root(host).Marshal()
	if err != nil {
		// initDescription rendered the same tree; only the presentation
		// URL differs, and Marshal does not check it.
		s.log.Error("igd: rendering the device description failed", "err", err)
		return nil
	}
	return doc
}

// Description returns the root device description as served to a control
// point that sent host in its Host header.
func (s *Server) Description(host string) []byte {
	return append([]byte(nil), s.description(host)...)
}

// Paths returns the path of the root description (DescriptionPath, or the
// Layout's) and the services served
// (type, ID, and SCPD, control and event paths), in description order. An
// SSDP responder advertises the description's URL; a GENA implementation
// serves the event paths.
func (s *Server) Paths() (description string, services []upnp.Service) {
	for _, d := range s.services {
		services = append(services, upnp.Service{
			ServiceType: d.serviceType(),
			ServiceID:   d.id,
			SCPDURL:     d.scpdPath,
			ControlURL:  d.controlPath,
			EventSubURL: d.eventPath,
		})
	}
	return s.descPath, services
}

// Root returns the device tree the description holds (with no presentation
// URL when it depends on the host), for an SSDP responder, which
// advertises every device and service type and UDN in it.
func (s *Server) Root() *upnp.Root { return s.root("") }

// ConfigID returns the description's UDA 1.1 configId (0 for IGDv1, whose
// UDA 1.0 description has none), which SSDP sends as CONFIGID.UPNP.ORG.
func (s *Server) ConfigID() int { return s.configID }
