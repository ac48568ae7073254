package daemon

import "github.com/portfwd/portfwd/igd"

// personalityLayouts are where each personality's device serves its
// description and services, and under which types and IDs, as its
// description in shared/routers has them (TestPersonalityLayoutsMatchCorpus
// checks every field). Absolute URLs (the D-Link DIR-655's, on one port
// per service) are served by their path, on the gateway's one HTTP port;
// URLBase is never sent, so every path resolves against the description's
// URL. The description path is the LOCATION recorded in the corpus's
// SSDP captures; for AVM's it is the documented /igddesc.xml; where
// nothing was recorded, portfwd's /rootDesc.xml is kept.
var personalityLayouts = map[string]igd.Layout{
	"actiontec-gt784wn": {
		DescriptionPath: "/dyndev/uuid:deadbeef-dead-beef-dead-beefdeadbeef00",
		Connection:      igd.ServiceLayout{Type: "urn:schemas-upnp-org:service:WANPPPConnection:1", ID: "urn:upnp-org:serviceId:WANPPPConnection.2", SCPD: "/dynsvc/WANPPPConnection:1.xml", Control: "/uuid:70f196f9-33f5-f533-f996-f170f1f9f50002/WANPPPConnection:1", Event: "/uuid:70f196f9-33f5-f533-f996-f170f1f9f50002/WANPPPConnection:1"},
		Common:          &igd.ServiceLayout{Type: "urn:schemas-upnp-org:service:WANCommonInterfaceConfig:1", ID: "urn:upnp-org:serviceId:WANCommonInterfaceConfig.1", SCPD: "/dynsvc/WANCommonInterfaceConfig:1.xml", Control: "/uuid:70f196f9-33f5-f533-f996-f170f1f9f50001/WANCommonInterfaceConfig:1", Event: "/uuid:70f196f9-33f5-f533-f996-f170f1f9f50001/WANCommonInterfaceConfig:1"},
		L3F:             &igd.ServiceLayout{Type: "urn:schemas-upnp-org:service:Layer3Forwarding:1", ID: "urn:upnp-org:serviceId:Layer3Forwarding.1", SCPD: "/dynsvc/Layer3Forwarding:1.xml", Control: "/uuid:deadbeef-dead-beef-dead-beefdeadbeef00/Layer3Forwarding:1", Event: "/uuid:deadbeef-dead-beef-dead-beefdeadbeef00/Layer3Forwarding:1"},
	},
	"asus-rt-n16-ddwrt": {
		DescriptionPath: "/InternetGatewayDevice.xml",
		Connection:      igd.ServiceLayout{Type: "urn:schemas-upnp-org:service:WANIPConnection:1", ID: "urn:upnp-org:serviceId:WANIPConn1", SCPD: "/x_wanipconnection.xml", Control: "/control?WANIPConnection", Event: "/event?WANIPConnection"},
		Common:          &igd.ServiceLayout{Type: "urn:schemas-upnp-org:service:WANCommonInterfaceConfig:1", ID: "urn:upnp-org:serviceId:WANCommonIFC1", SCPD: "/x_wancommoninterfaceconfig.xml", Control: "/control?WANCommonInterfaceConfig", Event: "/event?WANCommonInterfaceConfig"},
		L3F:             &igd.ServiceLayout{Type: "urn:schemas-upnp-org:service:Layer3Forwarding:1", ID: "urn:upnp-org:serviceId:L3Forwarding1", SCPD: "/x_layer3forwarding.xml", Control: "/control?Layer3Forwarding", Event: "/event?Layer3Forwarding"},
	},
	"avm-fritzbox-7430": {
		DescriptionPath: "/igddesc.xml",
		Connection:      igd.ServiceLayout{Type: "urn:schemas-upnp-org:service:WANIPConnection:1", ID: "urn:upnp-org:serviceId:WANIPConn1", SCPD: "/igdconnSCPD.xml", Control: "/igdupnp/control/WANIPConn1", Event: "/igdupnp/control/WANIPConn1"},
		Common:          &igd.ServiceLayout{Type: "urn:schemas-upnp-org:service:WANCommonInterfaceConfig:1", ID: "urn:upnp-org:serviceId:WANCommonIFC1", SCPD: "/igdicfgSCPD.xml", Control: "/igdupnp/control/WANCommonIFC1", Event: "/igdupnp/control/WANCommonIFC1"},
	},
	"avm-fritzbox-fon-wlan-7170": {
		DescriptionPath: "/igddesc.xml",
		Connection:      igd.ServiceLayout{Type: "urn:schemas-upnp-org:service:WANIPConnection:1", ID: "urn:upnp-org:serviceId:WANIPConn1", SCPD: "/igdconnSCPD.xml", Control: "/upnp/control/WANIPConn1", Event: "/upnp/control/WANIPConn1"},
		Common:          &igd.ServiceLayout{Type: "urn:schemas-upnp-org:service:WANCommonInterfaceConfig:1", ID: "urn:upnp-org:serviceId:WANCommonIFC1", SCPD: "/igdicfgSCPD.xml", Control: "/upnp/control/WANCommonIFC1", Event: "/upnp/control/WANCommonIFC1"},
	},
	"ddwrt-generic-x86": {
		DescriptionPath: "/dyndev/uuid:dead-beef-deadbeef2222",
		Connection:      igd.ServiceLayout{Type: "urn:schemas-upnp-org:service:WANIPConnection:1", ID: "urn:upnp-org:serviceId:WANIPConn1", SCPD: "/dynsvc/WANIPConnection:1.xml", Control: "/uuid:dead-beef-deadbeef0000/WANIPConnection:1", Event: "/uuid:dead-beef-deadbeef0000/WANIPConnection:1"},
		Common:          &igd.ServiceLayout{Type: "urn:schemas-upnp-org:service:WANCommonInterfaceConfig:1", ID: "urn:upnp-org:serviceId:WANCommonIFC1", SCPD: "/dynsvc/WANCommonInterfaceConfig:1.xml", Control: "/uuid:000c-29ea-247501c00098/WANCommonInterfaceConfig:1", Event: "/uuid:000c-29ea-247501c00098/WANCommonInterfaceConfig:1"},
		L3F:             &igd.ServiceLayout{Type: "urn:schemas-upnp-org:service:Layer3Forwarding:1", ID: "urn:upnp-org:serviceId:L3Forwarding1", SCPD: "/dynsvc/Layer3Forwarding:1.xml", Control: "/uuid:dead-beef-deadbeef2222/Layer3Forwarding:1", Event: "/uuid:dead-beef-deadbeef2222/Layer3Forwarding:1"},
	},
	"dlink-dir-655": {
		Connection: igd.ServiceLayout{Type: "urn:schemas-upnp-org:service:WANIPConnection:1", ID: "urn:upnp-org:serviceId:WANIPConn1", SCPD: "/WANIPConn1.xml", Control: "/wipconn", Event: "/wipconn"},
		Common:     &igd.ServiceLayout{Type: "urn:schemas-upnp-org:service:WANCommonInterfaceConfig:1", ID: "urn:upnp-org:serviceId:WANCommonIFC1", SCPD: "/WANCommonIFC1.xml", Control: "/wcommifc", Event: "/wcommifc"},
		L3F:        &igd.ServiceLayout{Type: "urn:schemas-upnp-org:service:Layer3Forwarding:1", ID: "urn:upnp-org:serviceId:L3Forwarding1", SCPD: "/l3fw.xml", Control: "/l3fw", Event: "/l3fw"},
	},
	"dlink-router-libtorrent": {
		Connection: igd.ServiceLayout{Type: "urn:schemas-upnp-org:service:WANIPConnection:1", ID: "urn:upnp-org:serviceId:WANIPConnection", SCPD: "/WANIPConnection.xml", Control: "/WANIPConnection", Event: "/WANIPConnection"},
		Common:     &igd.ServiceLayout{Type: "urn:schemas-upnp-org:service:WANCommonInterfaceConfig:1", ID: "urn:upnp-org:serviceId:WANCommonInterfaceConfig", SCPD: "/WANCommonInterfaceConfig.xml", Control: "/WANCommonInterfaceConfig", Event: "/WANCommonInterfaceConfig"},
		L3F:        &igd.ServiceLayout{Type: "urn:schemas-upnp-org:service:Layer3Forwarding:1", ID: "urn:upnp-org:serviceId:L3Forwarding1", SCPD: "/Layer3Forwarding.xml", Control: "/Layer3Forwarding", Event: "/Layer3Forwarding"},
	},
	"google-onhub": {
		DescriptionPath: "/rootDesc.xml",
		Connection:      igd.ServiceLayout{Type: "urn:schemas-upnp-org:service:WANIPConnection:2", ID: "urn:upnp-org:serviceId:WANIPConn1", SCPD: "/WANIPCn.xml", Control: "/ctl/IPConn", Event: "/evt/IPConn"},
		Common:          &igd.ServiceLayout{Type: "urn:schemas-upnp-org:service:WANCommonInterfaceConfig:1", ID: "urn:upnp-org:serviceId:WANCommonIFC1", SCPD: "/WANCfg.xml", Control: "/ctl/CmnIfCfg", Event: "/evt/CmnIfCfg"},
		L3F:             &igd.ServiceLayout{Type: "urn:schemas-upnp-org:service:Layer3Forwarding:1", ID: "urn:upnp-org:serviceId:Layer3Forwarding1", SCPD: "/L3F.xml", Control: "/ctl/L3F", Event: "/evt/L3F"},
	},
	"linksys-wag200g": {
		Connection: igd.ServiceLayout{Type: "urn:schemas-upnp-org:service:WANPPPConnection:1", ID: "urn:upnp-org:serviceId:WANPPPConn1", SCPD: "/pppcfg.xml", Control: "/upnp/control/WANPPPConn1", Event: "/upnp/event/WANPPPConn1"},
		Common:     &igd.ServiceLayout{Type: "urn:schemas-upnp-org:service:WANCommonInterfaceConfig:1", ID: "urn:upnp-org:serviceId:WANCommonIFC1", SCPD: "/cmnicfg.xml", Control: "/upnp/control/WANCommonIFC1", Event: "/upnp/event/WANCommonIFC1"},
		L3F:        &igd.ServiceLayout{Type: "urn:schemas-upnp-org:service:Layer3Forwarding:1", ID: "urn:upnp-org:serviceId:L3Forwarding1", SCPD: "/l3frwd.xml", Control: "/upnp/control/L3Forwarding1", Event: "/upnp/event/L3Forwarding1"},
	},
	"mikrotik-chr-7.10": {
		Connection: igd.ServiceLayout{Type: "urn:schemas-upnp-org:service:WANIPConnection:1", ID: "urn:upnp-org:serviceId:WANIPConn1", SCPD: "/wanipconn-1.xml", Control: "/upnp/control/yomkmsnooi/wanipconn-1", Event: "/upnp/event/veeabhzzva/wanipconn-1"},
		Common:     &igd.ServiceLayout{Type: "urn:schemas-upnp-org:service:WANCommonInterfaceConfig:1", ID: "urn:upnp-org:serviceId:WANCommonIFC1", SCPD: "/wancommonifc-1.xml", Control: "/upnp/control/ivvmxhunyq/wancommonifc-1", Event: "/upnp/event/mkjzdqvryf/wancommonifc-1"},
	},
	"orange-livebox-new": {
		Connection: igd.ServiceLayout{Type: "urn:schemas-upnp-org:service:WANPPPConnection:2", ID: "urn:upnp-org:serviceId:WANIPConn1", SCPD: "/87895a19/gateconnSCPD_PPP.xml", Control: "/87895a19/upnp/control/WANIPConn1", Event: "/87895a19/upnp/control/WANIPConn1"},
		Common:     &igd.ServiceLayout{Type: "urn:schemas-upnp-org:service:WANCommonInterfaceConfig:1", ID: "urn:upnp-org:serviceId:WANCommonIFC1", SCPD: "/87895a19/gateicfgSCPD.xml", Control: "/87895a19/upnp/control/WANCommonIFC1", Event: "/87895a19/upnp/control/WANCommonIFC1"},
	},
	"pfsense-2.5.0": {
		DescriptionPath: "/rootDesc.xml",
		Connection:      igd.ServiceLayout{Type: "urn:schemas-upnp-org:service:WANIPConnection:1", ID: "urn:upnp-org:serviceId:WANIPConn1", SCPD: "/WANIPCn.xml", Control: "/ctl/IPConn", Event: "/evt/IPConn"},
		Common:          &igd.ServiceLayout{Type: "urn:schemas-upnp-org:service:WANCommonInterfaceConfig:1", ID: "urn:upnp-org:serviceId:WANCommonIFC1", SCPD: "/WANCfg.xml", Control: "/ctl/CmnIfCfg", Event: "/evt/CmnIfCfg"},
		L3F:             &igd.ServiceLayout{Type: "urn:schemas-upnp-org:service:Layer3Forwarding:1", ID: "urn:upnp-org:serviceId:L3Forwarding1", SCPD: "/L3F.xml", Control: "/ctl/L3F", Event: "/evt/L3F"},
	},
	"technicolor-tg784n-v3": {
		Connection: igd.ServiceLayout{Type: "urn:schemas-upnp-org:service:WANPPPConnection:1", ID: "urn:upnp-org:serviceId:WANPPPConn1", SCPD: "/hou74cq4tw9/IGD/upnp/WANPPPConnection.xml", Control: "/hou74cq4tw9/IGD/upnp/control/igd/wanpppc_1_1_1", Event: "/hou74cq4tw9/IGD/upnp/event/igd/wanpppc_1_1_1"},
		Common:     &igd.ServiceLayout{Type: "urn:schemas-upnp-org:service:WANCommonInterfaceConfig:1", ID: "urn:upnp-org:serviceId:WANCommonIFC1", SCPD: "/hou74cq4tw9/IGD/upnp/WANCommonInterfaceConfig.xml", Control: "/hou74cq4tw9/IGD/upnp/control/igd/wancic_1", Event: "/hou74cq4tw9/IGD/upnp/event/igd/wancic_1"},
		L3F:        &igd.ServiceLayout{Type: "urn:schemas-upnp-org:service:Layer3Forwarding:1", ID: "urn:upnp-org:serviceId:L3Forwarding1", SCPD: "/hou74cq4tw9/IGD/upnp/Layer3Forwarding.xml", Control: "/hou74cq4tw9/IGD/upnp/control/igd/layer3f", Event: "/hou74cq4tw9/IGD/upnp/event/igd/layer3f"},
	},
	"tplink-tl-wr841nd-v9-ddwrt": {
		DescriptionPath: "/InternetGatewayDevice.xml",
		Connection:      igd.ServiceLayout{Type: "urn:schemas-upnp-org:service:WANIPConnection:1", ID: "urn:upnp-org:serviceId:WANIPConn1", SCPD: "/x_wanipconnection.xml", Control: "/control?WANIPConnection", Event: "/event?WANIPConnection"},
		Common:          &igd.ServiceLayout{Type: "urn:schemas-upnp-org:service:WANCommonInterfaceConfig:1", ID: "urn:upnp-org:serviceId:WANCommonIFC1", SCPD: "/x_wancommoninterfaceconfig.xml", Control: "/control?WANCommonInterfaceConfig", Event: "/event?WANCommonInterfaceConfig"},
		L3F:             &igd.ServiceLayout{Type: "urn:schemas-upnp-org:service:Layer3Forwarding:1", ID: "urn:upnp-org:serviceId:L3Forwarding1", SCPD: "/x_layer3forwarding.xml", Control: "/control?Layer3Forwarding", Event: "/event?Layer3Forwarding"},
	},
	"unknown-portable-sdk-router": {
		Connection: igd.ServiceLayout{Type: "urn:schemas-upnp-org:service:WANIPConnection:1", ID: "urn:upnp-org:serviceId:WANIPConn1", SCPD: "/332b484d/wanipconnSCPD.xml", Control: "/upnp/control/WANIPConn1", Event: "/upnp/control/WANIPConn1"},
		Common:     &igd.ServiceLayout{Type: "urn:schemas-upnp-org:service:WANCommonInterfaceConfig:1", ID: "urn:upnp-org:serviceId:WANCommonIFC1", SCPD: "/332b484d/wancomicfgSCPD.xml", Control: "/upnp/control/WANCommonIFC1", Event: "/upnp/control/WANCommonIFC1"},
	},
}
