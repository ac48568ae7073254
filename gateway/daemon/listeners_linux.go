package daemon

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"syscall"

	"github.com/portfwd/portfwd/gateway"
	"golang.org/x/sys/unix"
)

// The router's own services: a mapping of a port on which the router
// itself listens from outside (its SSH, its web interface on 8443) would
// take that service over from the Internet. miniupnpd checks for a
// listener before every mapping (port_in_use, from /proc/net/tcp); this
// asks the kernel directly with one sock_diag dump of the listening
// sockets, which costs tens of microseconds whatever the number of
// connections (/proc/net/tcp lists every one of them).

// Socket states of the dump (linux/tcp_states.h).
const (
	tcpClose  = 7 // an unconnected UDP socket
	tcpListen = 10
)

// canListListeners says that listeningPorts works here.
const canListListeners = true

// listeningPorts returns the ports of proto that a socket of this host
// serves on the external side: TCP sockets listening, UDP sockets bound
// and not connected, on every address or on one of external.
func listeningPorts(proto gateway.Protocol, external []netip.Addr) (*gateway.PortSet, error) {
	var set gateway.PortSet
	ipproto, states := uint8(unix.IPPROTO_TCP), uint32(1<<tcpListen)
	if proto == gateway.UDP {
		ipproto, states = unix.IPPROTO_UDP, 1<<tcpClose
	}
	ext := map[netip.Addr]bool{}
	for _, a := range external {
		ext[a.Unmap()] = true
	}
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return nil, fmt.Errorf("sock_diag socket: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, fmt.Errorf("sock_diag bind: %w", err)
	}
	buf := make([]byte, 32<<10)
	for _, family := range []uint8{unix.AF_INET, unix.AF_INET6} {
		err := sockDiagDump(fd, buf, family, ipproto, states, func(local netip.AddrPort) {
			a := local.Addr().Unmap()
			if a.IsUnspecified() || ext[a] {
				set.Add(local.Port())
			}
		})
		if err != nil {
			if family == unix.AF_INET6 && errors.Is(err, unix.EAFNOSUPPORT) {
				continue // a kernel without IPv6
			}
			return nil, err
		}
	}
	return &set, nil
}

// sockDiagDump asks NETLINK_SOCK_DIAG, on the bound socket fd, for the
// sockets of family and protocol in states, and calls f with each one's
// local address. buf receives the answers.
func sockDiagDump(fd int, buf []byte, family, protocol uint8, states uint32, f func(netip.AddrPort)) error {
	// nlmsghdr (16) + inet_diag_req_v2 (56).
	req := make([]byte, 16+56)
	ne := binary.NativeEndian
	ne.PutUint32(req[0:], uint32(len(req)))
	ne.PutUint16(req[4:], unix.SOCK_DIAG_BY_FAMILY)
	ne.PutUint16(req[6:], unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	ne.PutUint32(req[8:], 1) // sequence
	req[16], req[17] = family, protocol
	ne.PutUint32(req[20:], states)
	if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("sock_diag request: %w", err)
	}
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			return fmt.Errorf("sock_diag answer: %w", err)
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return fmt.Errorf("sock_diag answer: %w", err)
		}
		for _, m := range msgs {
			switch m.Header.Type {
			case unix.NLMSG_DONE:
				return nil
			case unix.NLMSG_ERROR:
				if len(m.Data) >= 4 {
					if errno := int32(ne.Uint32(m.Data)); errno != 0 {
						return fmt.Errorf("sock_diag: %w", unix.Errno(-errno))
					}
				}
				return nil
			case unix.SOCK_DIAG_BY_FAMILY:
				if ap, ok := diagLocal(m.Data); ok {
					f(ap)
				}
			}
		}
	}
}

// diagLocal reads the local address of an inet_diag_msg: family (1 byte),
// state, timer, retrans, then the socket id: source port (big endian),
// destination port, source address (16 bytes, IPv4 in the first 4).
func diagLocal(b []byte) (netip.AddrPort, bool) {
	if len(b) < 4+4+16 {
		return netip.AddrPort{}, false
	}
	port := binary.BigEndian.Uint16(b[4:])
	var a netip.Addr
	switch b[0] {
	case unix.AF_INET:
		a = netip.AddrFrom4([4]byte(b[8:12]))
	case unix.AF_INET6:
		a = netip.AddrFrom16([16]byte(b[8:24]))
	default:
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(a, port), true
}
