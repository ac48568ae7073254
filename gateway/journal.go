package gateway

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"net/netip"
	"time"
)

// The lease journal is a file of framed records after an 8-byte magic:
//
//	frame   = length u32 | crc u32 | payload      (little endian; crc is
//	                                              CRC-32C of payload)
//	payload = op*                                 (applied all or nothing)
//	op      = 1 put | 2 del | 3 epoch
//	put     = proto u8 | ext u16 | int u16 | flags u8 (bit 0 enabled) |
//	          source u8 | internal addr | remote addr | owner addr |
//	          nonce [12] | expires time | created time | desc
//	del     = proto u8 | ext u16
//	epoch   = time
//	addr    = len u8 (0, 4 or 16) | bytes
//	time    = 0 (zero time) | 1 | unix seconds i64 | nanoseconds u32
//	desc    = len u16 | bytes
//
// Each Save becomes one frame written with one write call, so a frame is
// either entirely in the file or is the torn tail a crash leaves; the CRC
// tells the two apart. Replay stops at the first frame that is incomplete
// or fails its CRC.

const (
	journalMagic   = "pfwdlog1"
	frameHeaderLen = 8
	// maxFramePayload bounds a frame so that a corrupted length cannot
	// make replay allocate absurdly; the largest real frame (every
	// mapping of a full table in one Save) is under 10 MiB.
	maxFramePayload = 64 << 20

	opPut   byte = 1
	opDel   byte = 2
	opEpoch byte = 3
)

// checksum is CRC-32C, which the hardware computes on common CPUs.
// (MakeTable builds the Castagnoli table once and caches it.)
func checksum(b []byte) uint32 { return crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli)) }

// errTorn reports an incomplete or damaged frame.
var errTorn = errors.New("torn or damaged journal record")

// appendFrame appends the frame holding payload to dst.
func appendFrame(dst, payload []byte) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(payload)))
	dst = binary.LittleEndian.AppendUint32(dst, checksum(payload))
	return append(dst, payload...)
}

// nextFrame returns the payload of the frame at the start of b and the
// frame's total length, or errTorn.
func nextFrame(b []byte) (payload []byte, n int, err error) {
	if len(b) < frameHeaderLen {
		return nil, 0, errTorn
	}
	size := binary.LittleEndian.Uint32(b)
	sum := binary.LittleEndian.Uint32(b[4:])
	if size > maxFramePayload || uint64(len(b)-frameHeaderLen) < uint64(size) {
		return nil, 0, errTorn
	}
	payload = b[frameHeaderLen : frameHeaderLen+int(size)]
	if checksum(payload) != sum {
		return nil, 0, errTorn
	}
	return payload, frameHeaderLen + int(size), nil
}

func appendPutOp(dst []byte, m Mapping) []byte {
	dst = append(dst, opPut, byte(m.Protocol))
	dst = binary.LittleEndian.AppendUint16(dst, m.ExternalPort)
	dst = binary.LittleEndian.AppendUint16(dst, m.InternalPort)
	var flags byte
	if m.Enabled {
		flags |= 1
	}
	dst = append(dst, flags, byte(m.Source))
	dst = appendAddr(dst, m.InternalAddr)
	dst = appendAddr(dst, m.RemoteHost)
	dst = appendAddr(dst, m.Owner)
	dst = append(dst, m.Nonce[:]...)
	dst = appendTime(dst, m.Expires)
	dst = appendTime(dst, m.Created)
	desc := truncateUTF8(m.Description, 0xffff)
	dst = binary.LittleEndian.AppendUint16(dst, uint16(len(desc)))
	return append(dst, desc...)
}

func appendDelOp(dst []byte, k Key) []byte {
	dst = append(dst, opDel, byte(k.Protocol))
	return binary.LittleEndian.AppendUint16(dst, k.ExternalPort)
}

func appendEpochOp(dst []byte, t time.Time) []byte {
	return appendTime(append(dst, opEpoch), t)
}

func appendAddr(dst []byte, a netip.Addr) []byte {
	switch {
	case !a.IsValid():
		return append(dst, 0)
	case a.Is4():
		b := a.As4()
		return append(append(dst, 4), b[:]...)
	default:
		b := a.As16()
		return append(append(dst, 16), b[:]...)
	}
}

func appendTime(dst []byte, t time.Time) []byte {
	if t.IsZero() {
		return append(dst, 0)
	}
	dst = append(dst, 1)
	dst = binary.LittleEndian.AppendUint64(dst, uint64(t.Unix()))
	return binary.LittleEndian.AppendUint32(dst, uint32(t.Nanosecond()))
}

// journalOp is one decoded op.
type journalOp struct {
	kind  byte
	m     Mapping   // opPut
	key   Key       // opPut and opDel
	epoch time.Time // opEpoch
	raw   []byte    // opPut: the encoded op, aliasing the payload
}

// decodeOps decodes every op in payload. It fails, without partial
// results, on anything malformed.
func decodeOps(payload []byte) ([]journalOp, error) {
	var ops []journalOp
	d := decoder{b: payload}
	for d.err == nil && len(d.b) > 0 {
		start := len(payload) - len(d.b)
		var op journalOp
		op.kind = d.u8()
		switch op.kind {
		case opPut:
			m := &op.m
			m.Protocol = Protocol(d.u8())
			m.ExternalPort = d.u16()
			m.InternalPort = d.u16()
			flags := d.u8()
			m.Enabled = flags&1 != 0
			if flags&^1 != 0 {
				d.fail("unknown flags %#x", flags)
			}
			m.Source = Source(d.u8())
			m.InternalAddr = d.addr()
			m.RemoteHost = d.addr()
			m.Owner = d.addr()
			copy(m.Nonce[:], d.bytes(len(m.Nonce)))
			m.Expires = d.time()
			m.Created = d.time()
			m.Description = string(d.bytes(int(d.u16())))
			op.key = m.Key()
			op.raw = payload[start : len(payload)-len(d.b)]
		case opDel:
			op.key.Protocol = Protocol(d.u8())
			op.key.ExternalPort = d.u16()
		case opEpoch:
			op.epoch = d.time()
		default:
			d.fail("unknown op %d", op.kind)
		}
		ops = append(ops, op)
	}
	if d.err != nil {
		return nil, d.err
	}
	return ops, nil
}

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("journal record: "+format, args...)
	}
	d.b = nil
}

func (d *decoder) bytes(n int) []byte {
	if d.err != nil {
		return nil
	}
	if len(d.b) < n {
		d.fail("truncated")
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) u8() byte {
	if b := d.bytes(1); b != nil {
		return b[0]
	}
	return 0
}

func (d *decoder) u16() uint16 {
	if b := d.bytes(2); b != nil {
		return binary.LittleEndian.Uint16(b)
	}
	return 0
}

func (d *decoder) addr() netip.Addr {
	switch n := d.u8(); n {
	case 0:
		return netip.Addr{}
	case 4:
		if b := d.bytes(4); b != nil {
			return netip.AddrFrom4([4]byte(b))
		}
	case 16:
		if b := d.bytes(16); b != nil {
			return netip.AddrFrom16([16]byte(b))
		}
	default:
		d.fail("address length %d", n)
	}
	return netip.Addr{}
}

func (d *decoder) time() time.Time {
	switch f := d.u8(); f {
	case 0:
		return time.Time{}
	case 1:
		b := d.bytes(12)
		if b == nil {
			return time.Time{}
		}
		sec := int64(binary.LittleEndian.Uint64(b))
		nsec := binary.LittleEndian.Uint32(b[8:])
		if nsec >= 1e9 {
			d.fail("nanoseconds %d out of range", nsec)
			return time.Time{}
		}
		t := time.Unix(sec, int64(nsec)).UTC()
		if t.IsZero() {
			d.fail("zero time written as present") // the encoder writes it as absent
		}
		return t
	default:
		d.fail("time flag %d", f)
		return time.Time{}
	}
}
