// Package version says which portfwd this is: the version named in the
// protocol headers that carry a product token (SSDP's SERVER and
// USER-AGENT, the IGD's HTTP SERVER, GENA SUBSCRIBE answers and NOTIFY
// requests), defined once, here, so that every header says the same
// product and version; and the build's module version, source revision
// and Go version, which "portfwd version" prints.
package version

import "runtime"

// Version is portfwd's version.
const Version = "0.1"

// Product is the product token: "portfwd/0.1".
const Product = "portfwd/" + Version

// Server is the SERVER (and USER-AGENT) value of the UDA 1.1 form
// "OS/version UPnP/1.1 product/version". The OS version is not known
// portably, and control points only parse the shape, so it is 1.
const Server = runtime.GOOS + "/1 UPnP/1.1 " + Product

// ServerUPnP10 is Server for a device that speaks UPnP 1.0 (an IGDv1).
const ServerUPnP10 = runtime.GOOS + "/1 UPnP/1.0 " + Product
