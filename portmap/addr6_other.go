//go:build !linux

package portmap

// HostAddrs6 lists this host's IPv6 addresses. Outside Linux the flags
// (temporary, deprecated, tentative) are unknown.
func HostAddrs6() ([]HostAddr6, error) { return interfaceAddrs6() }
