package upstream

import "syscall"

func setBindToDevice(fd int, iface string) error {
	return syscall.SetsockoptString(fd, syscall.SOL_SOCKET, syscall.SO_BINDTODEVICE, iface)
}

func setReusePort(fd int) error {
	return syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, 0xf /* SO_REUSEPORT */, 1)
}

// setMulticastAll sets IP_MULTICAST_ALL: off, a socket gets only the
// groups it joined itself, not those other sockets joined.
func setMulticastAll(fd int, on bool) error {
	v := 0
	if on {
		v = 1
	}
	return syscall.SetsockoptInt(fd, syscall.IPPROTO_IP, 49 /* IP_MULTICAST_ALL */, v)
}
