package portmap

import (
	"encoding/binary"
	"net"
	"net/netip"
	"syscall"

	"golang.org/x/sys/unix"
)

// HostAddrs6 lists this host's IPv6 addresses with the kernel's flags,
// read over rtnetlink (RTM_GETADDR): Go's net package does not expose
// "temporary", "deprecated" or "tentative".
func HostAddrs6() ([]HostAddr6, error) {
	rib, err := syscall.NetlinkRIB(unix.RTM_GETADDR, unix.AF_INET6)
	if err != nil {
		return interfaceAddrs6()
	}
	msgs, err := syscall.ParseNetlinkMessage(rib)
	if err != nil {
		return interfaceAddrs6()
	}
	names := map[int]string{}
	var out []HostAddr6
	for _, m := range msgs {
		if m.Header.Type != unix.RTM_NEWADDR || len(m.Data) < unix.SizeofIfAddrmsg {
			continue
		}
		flags := uint32(m.Data[2])
		index := int(binary.NativeEndian.Uint32(m.Data[4:8]))
		attrs, err := syscall.ParseNetlinkRouteAttr(&m)
		if err != nil {
			continue
		}
		var addr netip.Addr
		for _, a := range attrs {
			switch a.Attr.Type {
			case unix.IFA_ADDRESS:
				if ip, ok := netip.AddrFromSlice(a.Value); ok {
					addr = ip
				}
			case unix.IFA_FLAGS:
				if len(a.Value) >= 4 {
					flags = binary.NativeEndian.Uint32(a.Value)
				}
			}
		}
		if !addr.IsValid() {
			continue
		}
		name, ok := names[index]
		if !ok {
			if ifi, err := net.InterfaceByIndex(index); err == nil {
				name = ifi.Name
			}
			names[index] = name
		}
		out = append(out, HostAddr6{
			Addr:       addr,
			Iface:      name,
			Temporary:  flags&unix.IFA_F_TEMPORARY != 0,
			Deprecated: flags&unix.IFA_F_DEPRECATED != 0,
			Tentative:  flags&unix.IFA_F_TENTATIVE != 0,
			DADFailed:  flags&unix.IFA_F_DADFAILED != 0,
			FlagsKnown: true,
		})
	}
	return out, nil
}
