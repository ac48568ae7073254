package ssdp

import (
	"strconv"
	"strings"
)

// Advertisement is one thing a device announces and answers searches for:
// NT is the notification type (upnp:rootdevice, uuid:..., or a device or
// service type URN) and USN the unique service name that goes with it.
type Advertisement struct {
	NT, USN string
}

// DeviceAdverts returns the advertisements UDA 1.1 asks of one device:
// upnp:rootdevice (root device only), its uuid, its device type, and one per
// distinct service type it holds. udn is the device's UDN ("uuid:...").
// Embedded devices are advertised by calling it again for each of them.
func DeviceAdverts(udn, deviceType string, root bool, serviceTypes ...string) []Advertisement {
	var a []Advertisement
	if root {
		a = append(a, Advertisement{NT: STRootDevice, USN: udn + "::" + STRootDevice})
	}
	a = append(a,
		Advertisement{NT: udn, USN: udn},
		Advertisement{NT: deviceType, USN: udn + "::" + deviceType})
	seen := make(map[string]bool)
	for _, st := range serviceTypes {
		if st == "" || seen[st] {
			continue
		}
		seen[st] = true
		a = append(a, Advertisement{NT: st, USN: udn + "::" + st})
	}
	return a
}

// answers returns the advertisements that answer a search for st, rewritten
// as they go into the responses: ST and USN echo the version searched for.
//
// UDA 1.1 (search response, ST): a device whose type is version N must answer a search for
// any version 1..N of that type, with ST set to the version searched for.
// That is why miniupnpd, whose description may say InternetGatewayDevice:2,
// answers a search for InternetGatewayDevice:1 with ST ...:1 (see the natlab
// capture): a client cannot learn the device version from ST and has to read
// the description.
func answers(ads []Advertisement, st string) []Advertisement {
	var out []Advertisement
	for _, a := range ads {
		switch {
		case st == STAll:
			out = append(out, a)
		case a.NT == st:
			out = append(out, a)
		default:
			if echoed, ok := echoVersion(a, st); ok {
				out = append(out, echoed)
			}
		}
	}
	return out
}

// echoVersion matches a versioned type urn:...:Type:v against an advert of
// the same type at a version >= v and returns the advert with the searched
// version in NT and USN.
func echoVersion(a Advertisement, st string) (Advertisement, bool) {
	if !strings.HasPrefix(st, "urn:") {
		return a, false
	}
	stBase, stVer, ok := splitVersion(st)
	if !ok {
		return a, false
	}
	ntBase, ntVer, ok := splitVersion(a.NT)
	if !ok || ntBase != stBase || stVer > ntVer {
		return a, false
	}
	usn := a.USN
	if u, ok := strings.CutSuffix(usn, "::"+a.NT); ok {
		usn = u + "::" + st
	}
	return Advertisement{NT: st, USN: usn}, true
}

// splitVersion splits "urn:domain:device:Type:2" into its base and 2.
func splitVersion(t string) (base string, ver int, ok bool) {
	i := strings.LastIndexByte(t, ':')
	if i < 0 {
		return "", 0, false
	}
	digits := t[i+1:]
	if digits == "" || strings.TrimLeft(digits, "0123456789") != "" {
		return "", 0, false
	}
	v, err := strconv.Atoi(digits)
	if err != nil || v < 1 {
		return "", 0, false
	}
	return t[:i], v, true
}
