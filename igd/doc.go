// Package igd speaks UPnP Internet Gateway Device, versions 1 and 2: the
// WANIPConnection and WANPPPConnection services through which a LAN host
// asks its router for port mappings, and WANCommonInterfaceConfig for the
// link's properties. It holds both sides, sharing one schema (PortMapping,
// the Code* error constants, the service URNs, the PortMappingList codec).
//
// The client side is in three layers. ConnectionServices picks, from a
// parsed root description, the services that can map ports, best first.
// Client is a typed binding of their actions, with the spec's argument names
// and order and lenient decoding of what real routers answer. Its higher
// level methods (ListPortMappings, AddMapping, EditMapping, RemoveRange) hold
// the fallbacks that real routers need, each documented where it lives.
//
// FirewallClient is the client of IGD:2's WANIPv6FirewallControl:1: IPv6
// pinholes (AddPinhole, UpdatePinhole, DeletePinhole, GetPinholePackets,
// CheckPinholeWorking, GetFirewallStatus, GetOutboundPinholeTimeout). Its
// error codes 701-709 are FirewallCode values, each an error with one
// sentence, that errors.Is finds in the *FirewallError a failed action
// returns. The router checks that the pinhole is for the request's source,
// so the SOAP client must send from that address, over IPv6 (see
// portmap's Pinholer); miniupnpd's quirks are documented on the methods.
//
// The server side is Server, the http.Handler a router-side daemon serves:
// the root description, the service descriptions (SCPDs) and SOAP control of
// WANIPConnection (version 1 or 2), WANCommonInterfaceConfig:1 and, for
// IGDv1, Layer3Forwarding:1. It validates every argument as the IGD
// specifications require before it calls the daemon's Service, so that the
// Service only sees well-formed requests, each tagged with the address of
// the TCP peer that sent it.
package igd
