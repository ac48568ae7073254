package ssdp

import (
	"slices"
	"testing"
)

const (
	stWANDevice2    = "urn:schemas-upnp-org:device:WANDevice:2"
	stWANConnDev2   = "urn:schemas-upnp-org:device:WANConnectionDevice:2"
	stL3Forwarding1 = "urn:schemas-upnp-org:service:Layer3Forwarding:1"
	stWANCommonIFC1 = "urn:schemas-upnp-org:service:WANCommonInterfaceConfig:1"
)

// igd2Adverts are the advertisements of an IGD:2 like the one miniupnpd
// describes in the natlab capture: root, WANDevice, WANConnectionDevice.
func igd2Adverts() []Advertisement {
	var a []Advertisement
	a = append(a, DeviceAdverts("uuid:root", STIGDv2, true, stL3Forwarding1)...)
	a = append(a, DeviceAdverts("uuid:wan", stWANDevice2, false, stWANCommonIFC1)...)
	a = append(a, DeviceAdverts("uuid:conn", stWANConnDev2, false, STWANIPConnectionv2, STWANIPConnectionv2)...)
	return a
}

func TestDeviceAdverts(t *testing.T) {
	got := DeviceAdverts("uuid:r", STIGDv2, true, stL3Forwarding1, "", stL3Forwarding1)
	want := []Advertisement{
		{STRootDevice, "uuid:r::upnp:rootdevice"},
		{"uuid:r", "uuid:r"},
		{STIGDv2, "uuid:r::" + STIGDv2},
		{stL3Forwarding1, "uuid:r::" + stL3Forwarding1},
	}
	if !slices.Equal(got, want) {
		t.Errorf("root DeviceAdverts =\n%v\nwant\n%v", got, want)
	}
	// UDA 1.1: an embedded device has no upnp:rootdevice advert.
	for _, a := range DeviceAdverts("uuid:e", stWANDevice2, false) {
		if a.NT == STRootDevice {
			t.Errorf("embedded device advertises %v", a)
		}
	}
}

func TestAnswers(t *testing.T) {
	ads := igd2Adverts()
	tests := []struct {
		name string
		st   string
		want []Advertisement
	}{
		{"ssdp:all gets every advert", STAll, ads},
		{"root device", STRootDevice, []Advertisement{{STRootDevice, "uuid:root::upnp:rootdevice"}}},
		{"embedded device by uuid", "uuid:wan", []Advertisement{{"uuid:wan", "uuid:wan"}}},
		{"exact device type", STIGDv2, []Advertisement{{STIGDv2, "uuid:root::" + STIGDv2}}},
		{"older device version is answered, echoing it", STIGDv1, []Advertisement{{STIGDv1, "uuid:root::" + STIGDv1}}},
		{"older service version, echoing it", STWANIPConnectionv1, []Advertisement{{STWANIPConnectionv1, "uuid:conn::" + STWANIPConnectionv1}}},
		{"newer version than the device has", "urn:schemas-upnp-org:device:InternetGatewayDevice:3", nil},
		{"type the device lacks", STWANPPPConnectionv1, nil},
		{"type without a version", "urn:schemas-upnp-org:device:InternetGatewayDevice", nil},
		{"version that is not a number", "urn:schemas-upnp-org:device:InternetGatewayDevice:x", nil},
		{"version 0", "urn:schemas-upnp-org:device:InternetGatewayDevice:0", nil},
		{"signed version", "urn:schemas-upnp-org:device:InternetGatewayDevice:+1", nil},
		{"same type name in another domain", "urn:schemas-example-com:device:InternetGatewayDevice:1", nil},
		{"unknown uuid", "uuid:other", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := answers(ads, tt.st); !slices.Equal(got, tt.want) {
				t.Errorf("answers(%q) =\n%v\nwant\n%v", tt.st, got, tt.want)
			}
		})
	}
}

// With ResponderQuirks.SameVersionOnly (quirk igd2-only), an IGD:2 device
// answers searches for its own types only, never the :1 versions UDA 1.1
// says it must also answer.
func TestSameVersionOnly(t *testing.T) {
	ads := DeviceAdverts("uuid:x", "urn:schemas-upnp-org:device:InternetGatewayDevice:2", true,
		"urn:schemas-upnp-org:service:WANIPConnection:2")
	for st, want := range map[string]int{
		"urn:schemas-upnp-org:device:InternetGatewayDevice:1": 0,
		"urn:schemas-upnp-org:service:WANIPConnection:1":      0,
		"urn:schemas-upnp-org:device:InternetGatewayDevice:2": 1,
		STRootDevice: 1,
		STAll:        len(ads),
	} {
		if got := len(sameVersion(answers(ads, st), ads)); got != want {
			t.Errorf("search %s: %d answers, want %d", st, got, want)
		}
		if st == "urn:schemas-upnp-org:device:InternetGatewayDevice:1" && len(answers(ads, st)) != 1 {
			t.Errorf("without the quirk, the :1 search is answered")
		}
	}
}
