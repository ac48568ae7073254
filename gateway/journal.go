package gateway

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"net/netip"
	"slices"
	"time"
)

// The lease journal is a file of records after an 8-byte file magic:
//
//	file    = "pfwdlog2" record*
//	record  = sync [4] | length u32 | crc u32 | payload
//	                                 (little endian; sync is recordSync, crc
//	                                 is CRC-32C of the length field and the
//	                                 payload)
//	payload = op*                    (applied all or nothing)
//	op      = 1 put | 2 del | 3 epoch | 4 pin | 5 pindel | 6 pinnext |
//	          7 updel | 8 updeldone | 16 putat | 17 delat
//	put     = proto u8 | ext u16 | int u16 | flags u8 (bit 0 enabled,
//	          bit 1 chained) | source u8 | internal addr | remote addr |
//	          owner addr | nonce [12] | expires time | created time | desc |
//	          [half, when chained]
//	half    = method (len u8 | bytes) | state u8 | public addr |
//	          public port u16 | nonce [12] | granted time | expires time
//	del     = proto u8 | ext u16
//	epoch   = time
//	pin     = id u16 | proto u8 | int u16 | remote port u16 | source u8 |
//	          internal addr | remote addr | owner addr | nonce [12] |
//	          expires time | created time | desc      (an IPv6 pinhole)
//	pindel  = id u16
//	pinnext = id u16                 (the pinhole ID counter)
//	updel   = id u32 | put           (an upstream half waiting to be
//	                                 deleted: the mapping it belonged to,
//	                                 with its half; see Core.UpstreamOrphans)
//	updeldone = id u32               (that delete is done or given up)
//	putat   = pool addr | put        (a mapping on an external pool
//	delat   = pool addr | del         address; put and del without
//	                                 their op byte. Written only for
//	                                 mappings with Mapping.ExternalAddr,
//	                                 so a gateway without a pool writes
//	                                 what versions before it read.)
//	addr    = len u8 (0, 4 or 16) | bytes
//	time    = 0 (zero time) | 1 | unix seconds i64 | nanoseconds u32
//	desc    = len u16 | bytes
//
// Each Save is written with one write call, so that a crash leaves at most
// a torn tail. Every record carries its own checksum and starts with a
// sync marker, so that damage anywhere (a flipped bit on flash, garbage
// appended, a cut) costs only the records it touches: replay skips a
// damaged stretch, finds the next sync marker that starts a record whose
// checksum holds, and carries on from there (see scanJournal). Records are
// small, one lease each when the journal is compacted and at most
// maxOpsPerRecord operations when a Save changes many, so a damaged record
// loses few leases.
//
// Version 1 ("pfwdlog1", frames of length | crc | payload without a sync
// marker) is still read; the first compaction rewrites it as version 2.

const (
	journalMagic   = "pfwdlog2"
	journalMagicV1 = "pfwdlog1"
	// recordSync starts every record. Its bytes are unlikely in the
	// payloads (0xA5 and 0x5A are not printable, and no length, port or
	// flag sequence produces them together), but nothing depends on that:
	// a false sync inside a damaged stretch is rejected by the checksum.
	recordSync      = "\xa5PF\x5a"
	recordHeaderLen = 12
	frameHeaderLen  = 8 // version 1
	// maxFramePayload bounds a record so that a corrupted length cannot
	// make replay allocate or skip absurdly; real records are far
	// smaller (see maxOpsPerRecord).
	maxFramePayload = 64 << 20
	// maxOpsPerRecord bounds the operations of one record: a Save that
	// changes more is written as several records, in the same write call.
	maxOpsPerRecord = 64

	opPut   byte = 1
	opDel   byte = 2
	opEpoch byte = 3
	// Pinhole ops (pinhole.go): kept in the live set under pinLiveKey.
	opPin     byte = 4
	opPinDel  byte = 5
	opPinNext byte = 6
	// Pending upstream deletes (upstream.go): kept in the live set under
	// upDelLiveKey. Added after the pinhole ops; a binary older than them
	// skips such a record as damage and loses only the pending delete.
	opUpDel     byte = 7
	opUpDelDone byte = 8
	// External address pool ops: put and del of a mapping on a pool
	// address (Mapping.ExternalAddr). Numbered apart from the others so
	// that other features' op kinds (7, 8) fit below them.
	opPutAt byte = 16
	opDelAt byte = 17
)

// Live-set keys of pinhole ops: port mapping keys (Key.pack) stay below
// 1<<56, so these never collide with them.
const (
	pinLiveBase = 1 << 63
	pinNextKey  = 1 << 62
)

func pinLiveKey(id uint16) uint64 { return pinLiveBase | uint64(id) }

// upDelLiveBase marks the live-set keys of pending upstream deletes; their
// IDs stay below maxUpDelID, so the key never touches the pinhole bits
// (63, 62) nor a mapping key's (0-55: a pool address, protocol and port).
const (
	upDelLiveBase = 1 << 61
	maxUpDelID    = 1 << 24
)

func upDelLiveKey(id uint32) uint64 { return upDelLiveBase | uint64(id&(maxUpDelID-1)) }

// castagnoli is the CRC-32C table, which the hardware computes on common
// CPUs.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// checksum is CRC-32C of b.
func checksum(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// errTorn reports an incomplete or damaged frame.
var errTorn = errors.New("torn or damaged journal record")

// appendRecord appends the record holding payload to dst.
func appendRecord(dst, payload []byte) []byte {
	dst = append(dst, recordSync...)
	start := len(dst)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(payload)))
	sum := crc32.Update(checksum(dst[start:]), castagnoli, payload)
	dst = binary.LittleEndian.AppendUint32(dst, sum)
	return append(dst, payload...)
}

// nextRecord returns the payload of the record at the start of b and the
// record's total length, or errTorn when b does not start with a whole
// record whose checksum holds.
func nextRecord(b []byte) (payload []byte, n int, err error) {
	if len(b) < recordHeaderLen || string(b[:len(recordSync)]) != recordSync {
		return nil, 0, errTorn
	}
	size := binary.LittleEndian.Uint32(b[4:])
	sum := binary.LittleEndian.Uint32(b[8:])
	if size > maxFramePayload || uint64(len(b)-recordHeaderLen) < uint64(size) {
		return nil, 0, errTorn
	}
	payload = b[recordHeaderLen : recordHeaderLen+int(size)]
	if crc32.Update(checksum(b[4:8]), castagnoli, payload) != sum {
		return nil, 0, errTorn
	}
	return payload, recordHeaderLen + int(size), nil
}

// damage is a stretch of a journal that replay could not read.
type damage struct {
	Offset, Length int
	// Tail is set when the stretch runs to the end of the file: a write
	// cut short by a crash or power loss, or bytes appended to the file.
	Tail bool
}

// scannedRecord is one readable record of a journal.
type scannedRecord struct {
	offset int
	ops    []journalOp
}

// scanJournal reads every record of a version 2 journal that is intact
// and decodes, in file order, and reports the stretches it had to skip. A
// damaged file magic is one such stretch: the records after it are still
// read. Records that pass their checksum but do not decode (written by a
// newer version, or damaged in a way the checksum missed) are skipped as
// damage too. Its cost is linear in the size of data: a damaged stretch
// is searched for sync markers only, and each candidate is checked once.
func scanJournal(data []byte) (recs []scannedRecord, bad []damage) {
	bad, _ = scanJournalFunc(data, func(r scannedRecord) {
		r.ops = slices.Clone(r.ops)
		recs = append(recs, r)
	})
	return recs, bad
}

// scanJournalFunc is scanJournal calling fn for each record in turn
// instead of collecting them, so that replaying a journal of a million
// leases holds one record's ops at a time. r.ops is valid only during the
// call. It returns the damaged stretches and the number of records read.
func scanJournalFunc(data []byte, fn func(r scannedRecord)) (bad []damage, n int) {
	off := 0
	if len(data) >= len(journalMagic) && string(data[:len(journalMagic)]) == journalMagic {
		off = len(journalMagic)
	}
	badFrom := -1
	if off == 0 && len(data) > 0 {
		badFrom = 0 // the file magic itself is damaged
	}
	endBad := func(at int) {
		if badFrom >= 0 && at > badFrom {
			bad = append(bad, damage{Offset: badFrom, Length: at - badFrom, Tail: at == len(data)})
			badFrom = -1
		}
	}
	var ops []journalOp
	for off < len(data) {
		if payload, size, err := nextRecord(data[off:]); err == nil {
			var derr error
			if ops, derr = decodeOpsInto(ops[:0], payload); derr == nil {
				endBad(off)
				badFrom = -1
				fn(scannedRecord{offset: off, ops: ops})
				n++
				off += size
				continue
			}
		}
		// Not a record here: the damage starts (or goes on); look for the
		// next sync marker.
		if badFrom < 0 {
			badFrom = off
		}
		i := bytes.Index(data[off+1:], []byte(recordSync))
		if i < 0 {
			break // the damage runs to the end
		}
		off += 1 + i
	}
	endBad(len(data))
	return bad, n
}

// appendFrame appends the version 1 frame holding payload to dst (for
// tests of the version 1 reader).
func appendFrame(dst, payload []byte) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(payload)))
	dst = binary.LittleEndian.AppendUint32(dst, checksum(payload))
	return append(dst, payload...)
}

// nextFrame returns the payload of the version 1 frame at the start of b
// and the frame's total length, or errTorn.
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

// scanJournalV1 reads a version 1 journal up to its first damaged frame,
// which version 1 cannot see past.
func scanJournalV1(data []byte) (recs []scannedRecord, bad []damage) {
	off := len(journalMagicV1)
	for off < len(data) {
		payload, n, err := nextFrame(data[off:])
		if err != nil {
			break
		}
		ops, err := decodeOps(payload)
		if err != nil {
			break
		}
		recs = append(recs, scannedRecord{offset: off, ops: ops})
		off += n
	}
	if off < len(data) {
		bad = append(bad, damage{Offset: off, Length: len(data) - off, Tail: true})
	}
	return recs, bad
}

func appendPutOp(dst []byte, m Mapping) []byte {
	if m.ExternalAddr.IsValid() {
		dst = appendAddr(append(dst, opPutAt), m.ExternalAddr)
	} else {
		dst = append(dst, opPut)
	}
	dst = append(dst, byte(m.Protocol))
	dst = binary.LittleEndian.AppendUint16(dst, m.ExternalPort)
	dst = binary.LittleEndian.AppendUint16(dst, m.InternalPort)
	var flags byte
	if m.Enabled {
		flags |= 1
	}
	if m.Chained() {
		flags |= 2
	}
	dst = append(dst, flags)
	dst = appendHolder(dst, m.holder())
	if m.Chained() {
		h := *m.Upstream
		method := truncateUTF8(h.Method, 0xff)
		dst = append(dst, byte(len(method)))
		dst = append(dst, method...)
		dst = append(dst, byte(h.State))
		dst = appendAddr(dst, h.Public.Addr())
		dst = binary.LittleEndian.AppendUint16(dst, h.Public.Port())
		dst = append(dst, h.Nonce[:]...)
		dst = appendTime(dst, h.Granted)
		dst = appendTime(dst, h.Expires)
	}
	return dst
}

func appendUpDelOp(dst []byte, id uint32, m Mapping) []byte {
	dst = binary.LittleEndian.AppendUint32(append(dst, opUpDel), id)
	return appendPutOp(dst, m)
}

func appendUpDelDoneOp(dst []byte, id uint32) []byte {
	return binary.LittleEndian.AppendUint32(append(dst, opUpDelDone), id)
}

func appendDelOp(dst []byte, k Key) []byte {
	if k.ExternalAddr.IsValid() {
		dst = appendAddr(append(dst, opDelAt), k.ExternalAddr)
	} else {
		dst = append(dst, opDel)
	}
	dst = append(dst, byte(k.Protocol))
	return binary.LittleEndian.AppendUint16(dst, k.ExternalPort)
}

func appendPinOp(dst []byte, p Pinhole) []byte {
	dst = append(dst, opPin)
	dst = binary.LittleEndian.AppendUint16(dst, p.ID)
	dst = append(dst, byte(p.Protocol))
	dst = binary.LittleEndian.AppendUint16(dst, p.InternalPort)
	dst = binary.LittleEndian.AppendUint16(dst, p.RemotePort)
	return appendHolder(dst, p.holder())
}

// holderFields points at the fields a port mapping's and a pinhole's
// records share, in their order on disk: who asked, for which internal
// address, from which remote host, with which nonce, for how long.
type holderFields struct {
	source                  *Source
	internal, remote, owner *netip.Addr
	nonce                   *[12]byte
	expires, created        *time.Time
	description             *string
}

func (m *Mapping) holder() holderFields {
	return holderFields{&m.Source, &m.InternalAddr, &m.RemoteHost, &m.Owner, &m.Nonce, &m.Expires, &m.Created, &m.Description}
}

func (p *Pinhole) holder() holderFields {
	return holderFields{&p.Source, &p.InternalAddr, &p.RemoteHost, &p.Owner, &p.Nonce, &p.Expires, &p.Created, &p.Description}
}

func appendHolder(dst []byte, h holderFields) []byte {
	dst = append(dst, byte(*h.source))
	dst = appendAddr(dst, *h.internal)
	dst = appendAddr(dst, *h.remote)
	dst = appendAddr(dst, *h.owner)
	dst = append(dst, h.nonce[:]...)
	dst = appendTime(dst, *h.expires)
	dst = appendTime(dst, *h.created)
	desc := truncateUTF8(*h.description, 0xffff)
	dst = binary.LittleEndian.AppendUint16(dst, uint16(len(desc)))
	return append(dst, desc...)
}

// holder reads what appendHolder wrote into h's fields.
func (d *decoder) holder(h holderFields) {
	*h.source = Source(d.u8())
	*h.internal = d.addr()
	*h.remote = d.addr()
	*h.owner = d.addr()
	copy(h.nonce[:], d.bytes(len(h.nonce)))
	*h.expires = d.time()
	*h.created = d.time()
	*h.description = string(d.bytes(int(d.u16())))
}

func appendPinDelOp(dst []byte, id uint16) []byte {
	return binary.LittleEndian.AppendUint16(append(dst, opPinDel), id)
}

func appendPinNextOp(dst []byte, id uint16) []byte {
	return binary.LittleEndian.AppendUint16(append(dst, opPinNext), id)
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
	pin   Pinhole   // opPin
	pinID uint16    // opPin, opPinDel and opPinNext
	upDel uint32    // opUpDel and opUpDelDone: the pending delete's ID
	epoch time.Time // opEpoch
	raw   []byte    // opPut: the encoded op, aliasing the payload
}

// decodeOps decodes every op in payload. It fails, without partial
// results, on anything malformed.
func decodeOps(payload []byte) ([]journalOp, error) {
	return decodeOpsInto(nil, payload)
}

// decodeOpsInto is decodeOps appending to ops (to reuse its array).
func decodeOpsInto(ops []journalOp, payload []byte) ([]journalOp, error) {
	d := decoder{b: payload}
	for d.err == nil && len(d.b) > 0 {
		start := len(payload) - len(d.b)
		var op journalOp
		op.kind = d.u8()
		var at netip.Addr
		switch op.kind {
		case opPutAt, opDelAt:
			if at = d.addr(); !at.Is4() && d.err == nil {
				d.fail("external pool address %v is not IPv4", at)
			}
			op.kind -= opPutAt - opPut // decoded as put and del
		}
		switch op.kind {
		case opPut:
			op.m.ExternalAddr = at
			d.put(&op.m)
			op.key = op.m.Key()
			op.raw = payload[start : len(payload)-len(d.b)]
		case opUpDel:
			op.upDel = d.u32()
			// The mapping follows as a whole put op (putat for a
			// mapping on a pool address).
			switch d.u8() {
			case opPut:
			case opPutAt:
				if op.m.ExternalAddr = d.addr(); !op.m.ExternalAddr.Is4() && d.err == nil {
					d.fail("external pool address %v is not IPv4", op.m.ExternalAddr)
				}
			default:
				d.fail("pending upstream delete without its mapping")
			}
			d.put(&op.m)
			if !op.m.Chained() {
				d.fail("pending upstream delete without an upstream half")
			}
			op.key = op.m.Key()
			op.raw = payload[start : len(payload)-len(d.b)]
		case opUpDelDone:
			op.upDel = d.u32()
			op.raw = payload[start : len(payload)-len(d.b)]
		case opDel:
			op.key.Protocol = Protocol(d.u8())
			op.key.ExternalPort = d.u16()
			op.key.ExternalAddr = at
		case opEpoch:
			op.epoch = d.time()
		case opPin:
			p := &op.pin
			p.ID = d.u16()
			p.Protocol = Protocol(d.u8())
			p.InternalPort = d.u16()
			p.RemotePort = d.u16()
			d.holder(p.holder())
			op.pinID = p.ID
			op.raw = payload[start : len(payload)-len(d.b)]
		case opPinDel, opPinNext:
			op.pinID = d.u16()
			op.raw = payload[start : len(payload)-len(d.b)]
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

// put decodes the body of a put op (after its op byte) into m.
func (d *decoder) put(m *Mapping) {
	m.Protocol = Protocol(d.u8())
	m.ExternalPort = d.u16()
	m.InternalPort = d.u16()
	flags := d.u8()
	m.Enabled = flags&1 != 0
	if flags&^3 != 0 {
		d.fail("unknown flags %#x", flags)
	}
	d.holder(m.holder())
	if flags&2 != 0 {
		h := &UpstreamHalf{}
		m.Upstream = h
		h.Method = string(d.bytes(int(d.u8())))
		if h.Method == "" {
			d.fail("chained mapping without an upstream method")
		}
		h.State = HalfState(d.u8())
		if h.State > HalfPendingChain {
			d.fail("unknown upstream state %d", h.State)
		}
		a := d.addr()
		port := d.u16()
		if a.IsValid() {
			h.Public = netip.AddrPortFrom(a, port)
		}
		copy(h.Nonce[:], d.bytes(len(h.Nonce)))
		h.Granted = d.time()
		h.Expires = d.time()
	}
}

func (d *decoder) u32() uint32 {
	if b := d.bytes(4); b != nil {
		return binary.LittleEndian.Uint32(b)
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
