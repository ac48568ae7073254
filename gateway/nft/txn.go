//go:build linux

package nft

import (
	"encoding/binary"
	"errors"
	"fmt"
	"syscall"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// elemTxn sends map element changes to the kernel as lean nftables
// transactions, on a netlink socket of its own that lives as long as the
// Backend: BATCH_BEGIN, one NEWSETELEM or DELSETELEM message per map and
// change, BATCH_END, in one sendmsg, and no acknowledgement asked.
//
// Why not google/nftables' Conn.Flush, which the rest of the backend uses:
// it asks an acknowledgement for every message and reads each one with
// two system calls (a peek to size the buffer, then the read), through a
// fresh page-sized buffer, and marshals every attribute through
// intermediate slices. For the request path, one element per request,
// that was several times the user-space cost of the kernel's own work.
//
// Errors without acknowledgements: the kernel processes a netlink batch
// synchronously, inside the sendmsg that carries it (a kernel socket's
// input runs in the sender's context), and reports every failing message
// with an NLMSG_ERROR, asked for or not. So when sendmsg returns, the
// errors are already queued on the socket: one non-blocking read that
// finds nothing (EAGAIN) means the whole batch was committed. A failing
// message aborts the whole transaction, as with Flush.
//
// An elemTxn is not safe for concurrent use; the Backend's mu serializes
// it.
type elemTxn struct {
	nl  *netlink.Conn
	raw syscall.RawConn
	// out is the batch being built: begin, element messages, end.
	out  []byte
	n    int // element messages in out
	seq  uint32
	rbuf []byte
	// err is an encoding error of a queued message, returned by Flush.
	err error
}

// nlmsgHeaderLen and nfgenLen are the sizes of struct nlmsghdr and struct
// nfgenmsg.
const (
	nlmsgHeaderLen = 16
	nfgenLen       = 4
)

// dialElemTxn opens the transaction socket in the network namespace netns
// (0: the caller's).
func dialElemTxn(netns int) (*elemTxn, error) {
	nl, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: netns})
	if err != nil {
		return nil, err
	}
	raw, err := nl.SyscallConn()
	if err != nil {
		nl.Close()
		return nil, err
	}
	return &elemTxn{nl: nl, raw: raw, rbuf: make([]byte, 16<<10)}, nil
}

// Close closes the socket.
func (t *elemTxn) Close() error { return t.nl.Close() }

// SetAddElements queues the addition of elems to map s, as
// nftables.Conn.SetAddElements does (NLM_F_CREATE, no NLM_F_EXCL: adding
// an element that exists with the same value is no error).
func (t *elemTxn) SetAddElements(s *nftables.Set, elems []nftables.SetElement) error {
	return t.queue(unix.NFT_MSG_NEWSETELEM, unix.NLM_F_CREATE, s, elems)
}

// SetDeleteElements queues the removal of the elements with elems' keys
// from s.
func (t *elemTxn) SetDeleteElements(s *nftables.Set, elems []nftables.SetElement) error {
	return t.queue(unix.NFT_MSG_DELSETELEM, 0, s, elems)
}

func (t *elemTxn) queue(op, flags uint16, s *nftables.Set, elems []nftables.SetElement) error {
	if len(elems) == 0 {
		return nil
	}
	if t.n == 0 {
		t.out = t.appendHeader(t.out[:0], unix.NFNL_MSG_BATCH_BEGIN, 0, unix.AF_UNSPEC, unix.NFNL_SUBSYS_NFTABLES)
	}
	start := len(t.out)
	t.out = t.appendHeader(t.out, unix.NFNL_SUBSYS_NFTABLES<<8|op, flags, uint8(s.Table.Family), 0)
	t.out = appendAttr(t.out, unix.NFTA_SET_ELEM_LIST_TABLE, cstring(s.Table.Name))
	t.out = appendAttr(t.out, unix.NFTA_SET_ELEM_LIST_SET, cstring(s.Name))
	list := beginNested(&t.out, unix.NFTA_SET_ELEM_LIST_ELEMENTS)
	for i, e := range elems {
		if len(e.Key) == 0 || len(e.KeyEnd) > 0 || e.VerdictData != nil || e.IntervalEnd || e.Timeout != 0 || e.Comment != "" {
			// The backend's maps use none of these; refuse rather than
			// send an element the kernel would read differently.
			t.err = errors.Join(t.err, fmt.Errorf("nft: element %d of %s: only plain keys and values are sent on the request path", i, s.Name))
			continue
		}
		item := beginNested(&t.out, uint16(i+1))
		key := beginNested(&t.out, unix.NFTA_SET_ELEM_KEY)
		t.out = appendAttr(t.out, unix.NFTA_DATA_VALUE, e.Key)
		endNested(t.out, key)
		if len(e.Val) > 0 {
			data := beginNested(&t.out, unix.NFTA_SET_ELEM_DATA)
			t.out = appendAttr(t.out, unix.NFTA_DATA_VALUE, e.Val)
			endNested(t.out, data)
		}
		endNested(t.out, item)
	}
	endNested(t.out, list)
	binary.NativeEndian.PutUint32(t.out[start:], uint32(len(t.out)-start))
	t.n++
	return nil
}

// Flush sends the queued changes as one transaction and reports the
// kernel's verdict: nil when it committed them all, else the first error
// it reported (a unix.Errno inside), in which case it committed none.
func (t *elemTxn) Flush() error {
	if t.n == 0 && t.err == nil {
		return nil
	}
	defer func() { t.n, t.err, t.out = 0, nil, t.out[:0] }()
	if t.err != nil {
		return t.err
	}
	t.out = t.appendHeader(t.out, unix.NFNL_MSG_BATCH_END, 0, unix.AF_UNSPEC, unix.NFNL_SUBSYS_NFTABLES)
	// The socket is empty: every Flush reads it to the end (drain), so no
	// earlier batch's error can be taken for this one's.
	var werr error
	if err := t.raw.Write(func(fd uintptr) bool {
		_, werr = unix.Write(int(fd), t.out)
		return true
	}); err != nil {
		return fmt.Errorf("sending nftables batch: %w", err)
	}
	if werr != nil {
		return fmt.Errorf("sending nftables batch: %w", werr)
	}
	errno, err := t.drain()
	if err != nil {
		return err
	}
	if errno != 0 {
		return fmt.Errorf("nftables batch: %w", errno)
	}
	return nil
}

// drain reads, without waiting, every message queued on the socket and
// returns the first error an NLMSG_ERROR among them carries.
func (t *elemTxn) drain() (unix.Errno, error) {
	var first unix.Errno
	for {
		var n int
		var rerr error
		if err := t.raw.Read(func(fd uintptr) bool {
			n, rerr = unix.Read(int(fd), t.rbuf)
			return true // never wait: the kernel answered within sendmsg
		}); err != nil {
			return first, fmt.Errorf("reading nftables answers: %w", err)
		}
		if errors.Is(rerr, unix.EAGAIN) {
			return first, nil
		}
		if rerr != nil {
			return first, fmt.Errorf("reading nftables answers: %w", rerr)
		}
		for b := t.rbuf[:n]; len(b) >= nlmsgHeaderLen; {
			l := int(binary.NativeEndian.Uint32(b))
			if l < nlmsgHeaderLen || l > len(b) {
				break
			}
			if binary.NativeEndian.Uint16(b[4:]) == unix.NLMSG_ERROR && l >= nlmsgHeaderLen+4 {
				if code := int32(binary.NativeEndian.Uint32(b[nlmsgHeaderLen:])); code < 0 && first == 0 {
					first = unix.Errno(-code)
				}
			}
			b = b[min(len(b), (l+3)&^3):]
		}
	}
}

// appendHeader appends a netlink header (its length to be set when the
// message is complete, except for the fixed-size batch markers) and an
// nfgenmsg.
func (t *elemTxn) appendHeader(b []byte, typ, flags uint16, family uint8, resID uint16) []byte {
	t.seq++
	b = binary.NativeEndian.AppendUint32(b, nlmsgHeaderLen+nfgenLen)
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = binary.NativeEndian.AppendUint16(b, unix.NLM_F_REQUEST|flags)
	b = binary.NativeEndian.AppendUint32(b, t.seq)
	b = binary.NativeEndian.AppendUint32(b, 0)
	b = append(b, family, unix.NFNETLINK_V0)
	b = binary.BigEndian.AppendUint16(b, resID)
	return b
}

// appendAttr appends a netlink attribute, padded to 4 bytes.
func appendAttr(b []byte, typ uint16, data []byte) []byte {
	b = binary.NativeEndian.AppendUint16(b, uint16(4+len(data)))
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = append(b, data...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

// beginNested starts a nested attribute and returns where; endNested sets
// its length.
func beginNested(b *[]byte, typ uint16) int {
	at := len(*b)
	*b = binary.NativeEndian.AppendUint16(*b, 0)
	*b = binary.NativeEndian.AppendUint16(*b, typ|unix.NLA_F_NESTED)
	return at
}

func endNested(b []byte, at int) {
	binary.NativeEndian.PutUint16(b[at:], uint16(len(b)-at))
}

// cstring is s NUL-terminated, as netlink strings are.
func cstring(s string) []byte { return append([]byte(s), 0) }
