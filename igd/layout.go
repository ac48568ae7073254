package igd

import (
	"fmt"
	"strings"
)

// Layout places a Server's services where a particular router has them,
// under its names: the description's path, and each service's type,
// service ID and SCPD, control and event paths. The gateway's
// personalities (portfwd gateway --personality) use it to look like a
// real device on the LAN. A nil Layout serves miniupnpd's paths
// (DescriptionPath, WANIPConnectionControlPath, ...).
//
// Paths are absolute ("/upnp/control/WANIPConn1") and may carry a query
// ("/control?WANIPConnection", as DD-WRT's stack has them); the request's
// query then selects the route. A control and an event path may be the
// same (AVM's), since POST and SUBSCRIBE tell them apart.
type Layout struct {
	// DescriptionPath is where the root description is served; empty
	// means DescriptionPath.
	DescriptionPath string
	// Connection is the WAN connection service. Its Type is
	// WANIPConnection or WANPPPConnection, of any version: a
	// WANPPPConnection is answered by the same actions (the port mapping
	// part of the two services is the same), in its own namespace.
	Connection ServiceLayout
	// Common and L3F are WANCommonInterfaceConfig and (IGDv1 only)
	// Layer3Forwarding; nil leaves the service out, as a few routers do.
	Common, L3F *ServiceLayout
}

// ServiceLayout is one service's entry in a Layout.
type ServiceLayout struct {
	Type, ID             string // "urn:schemas-upnp-org:service:WANPPPConnection:1", "urn:upnp-org:serviceId:WANPPPConn1"
	SCPD, Control, Event string // paths
}

// applyLayout places the services of s as l says, dropping those it
// leaves out.
func (s *Server) applyLayout(l *Layout) error {
	if l.DescriptionPath != "" {
		if err := checkPath("description", l.DescriptionPath); err != nil {
			return err
		}
		s.descPath = l.DescriptionPath
	}
	var kept []serviceDef
	for _, d := range s.services {
		var sl *ServiceLayout
		switch d.name {
		case "Layer3Forwarding":
			sl = l.L3F
		case "WANCommonInterfaceConfig":
			sl = l.Common
		case "WANIPConnection":
			sl = &l.Connection
		default: // a service Layout does not place keeps its own paths
			kept = append(kept, d)
			continue
		}
		if sl == nil {
			continue
		}
		domain, typ, version, ok := ParseServiceType(sl.Type)
		if !ok || domain != "schemas-upnp-org" {
			return fmt.Errorf("igd: Layout: service type %q is not a urn:schemas-upnp-org service type", sl.Type)
		}
		switch {
		case d.name == "WANIPConnection" && (typ == "WANIPConnection" || typ == "WANPPPConnection"):
			if typ == "WANPPPConnection" {
				d.scpd = pppSCPD(d.scpd)
			}
			d.name, d.version = typ, version
		case typ != d.name:
			return fmt.Errorf("igd: Layout: %q placed where %s belongs", sl.Type, d.name)
		}
		if sl.ID == "" {
			return fmt.Errorf("igd: Layout: %s has no service ID", sl.Type)
		}
		d.id = sl.ID
		for _, p := range []struct{ what, path string }{{"SCPD", sl.SCPD}, {"control", sl.Control}, {"event", sl.Event}} {
			if err := checkPath(sl.Type+" "+p.what, p.path); err != nil {
				return err
			}
		}
		d.scpdPath, d.controlPath, d.eventPath = sl.SCPD, sl.Control, sl.Event
		kept = append(kept, d)
	}
	s.services = kept
	return nil
}

// checkPath refuses what cannot be a route: a path must start with "/"
// and hold nothing a description's XML or a request line would mangle.
func checkPath(what, p string) error {
	if !strings.HasPrefix(p, "/") || strings.ContainsAny(p, " \t\r\n#<>&\"") {
		return fmt.Errorf("igd: Layout: %s path %q must be an absolute path without spaces, fragments or markup", what, p)
	}
	return nil
}

// pppSCPD turns WANIPConnection's SCPD into WANPPPConnection's: the same
// actions (those of a PPP connection that the server implements), with the
// connection types of a PPP link.
func pppSCPD(ip string) string {
	const ipTypes = "<allowedValue>Unconfigured</allowedValue><allowedValue>IP_Routed</allowedValue><allowedValue>IP_Bridged</allowedValue>"
	const pppTypes = "<allowedValue>Unconfigured</allowedValue><allowedValue>IP_Routed</allowedValue><allowedValue>DHCP_Spoofed</allowedValue>" +
		"<allowedValue>PPPoE_Bridged</allowedValue><allowedValue>PPTP_Relay</allowedValue><allowedValue>L2TP_Relay</allowedValue><allowedValue>PPPoE_Relay</allowedValue>"
	return strings.Replace(ip, ipTypes, pppTypes, 1)
}

// routeKey is the key a request path (and query, when a route has one) is
// looked up by.
func routeKey(path, rawQuery string) string {
	if rawQuery == "" {
		return path
	}
	return path + "?" + rawQuery
}
