//go:build linux

package daemon

import (
	"encoding/binary"
	"net"
	"net/netip"
	"syscall"

	"golang.org/x/sys/unix"
)

// readNeighbours dumps the kernel's IPv6 neighbour table (RTM_GETNEIGH)
// and returns its resolved entries: those with a link-layer address, in a
// state other than INCOMPLETE or FAILED.
func readNeighbours() ([]neighbour, error) {
	tab, err := syscall.NetlinkRIB(unix.RTM_GETNEIGH, unix.AF_INET6)
	if err != nil {
		return nil, err
	}
	msgs, err := syscall.ParseNetlinkMessage(tab)
	if err != nil {
		return nil, err
	}
	var out []neighbour
	for _, m := range msgs {
		if m.Header.Type != unix.RTM_NEWNEIGH {
			continue
		}
		if n, ok := parseNeighbour(m.Data); ok {
			out = append(out, n)
		}
	}
	return out, nil
}

// parseNeighbour reads an ndmsg and its attributes.
func parseNeighbour(b []byte) (neighbour, bool) {
	const ndmsgLen = 12
	if len(b) < ndmsgLen || b[0] != unix.AF_INET6 {
		return neighbour{}, false
	}
	n := neighbour{ifindex: int(int32(binary.NativeEndian.Uint32(b[4:8])))}
	state := binary.NativeEndian.Uint16(b[8:10])
	if state&(unix.NUD_INCOMPLETE|unix.NUD_FAILED) != 0 || state == unix.NUD_NONE {
		return neighbour{}, false
	}
	attrs := b[ndmsgLen:]
	for len(attrs) >= 4 {
		l := int(binary.NativeEndian.Uint16(attrs[0:2]))
		typ := binary.NativeEndian.Uint16(attrs[2:4])
		if l < 4 || l > len(attrs) {
			break
		}
		val := attrs[4:l]
		switch typ {
		case unix.NDA_DST:
			if a, ok := netip.AddrFromSlice(val); ok && a.Is6() {
				n.addr = a
			}
		case unix.NDA_LLADDR:
			n.lladdr = net.HardwareAddr(append([]byte(nil), val...))
		}
		al := (l + 3) &^ 3
		if al > len(attrs) {
			break
		}
		attrs = attrs[al:]
	}
	return n, n.addr.IsValid() && len(n.lladdr) > 0
}
