package gateway

import (
	"bytes"
	"errors"
	"net/netip"
	"testing"
	"time"
)

func TestJournalOpsRoundTrip(t *testing.T) {
	m := Mapping{
		Protocol: UDP, ExternalPort: 65535, InternalAddr: netip.MustParseAddr("fd00::1"), InternalPort: 1,
		RemoteHost: netip.MustParseAddr("198.51.100.1"), Enabled: true, Description: "日本語 description",
		Expires: time.Unix(1700000000, 999999999).UTC(), Owner: netip.MustParseAddr("fd00::1"),
		Source: SourcePCP, Nonce: [12]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12},
	}
	epoch := time.Unix(1600000000, 5).UTC()
	var payload []byte
	payload = appendEpochOp(payload, epoch)
	payload = appendPutOp(payload, m)
	payload = appendDelOp(payload, Key{Protocol: TCP, ExternalPort: 80})
	frame := appendFrame(nil, payload)

	got, n, err := nextFrame(append(frame, 0xAA)) // trailing bytes belong to the next frame
	if err != nil || n != len(frame) || !bytes.Equal(got, payload) {
		t.Fatalf("nextFrame = %d bytes, %v; want the %d-byte frame", n, err, len(frame))
	}
	ops, err := decodeOps(got)
	if err != nil || len(ops) != 3 {
		t.Fatalf("decodeOps = %d ops, %v", len(ops), err)
	}
	if ops[0].kind != opEpoch || !ops[0].epoch.Equal(epoch) {
		t.Errorf("epoch op = %+v", ops[0])
	}
	if ops[1].kind != opPut || ops[1].m != m || !bytes.Equal(ops[1].raw, appendPutOp(nil, m)) {
		t.Errorf("put op = %+v\nwant %+v", ops[1].m, m)
	}
	if ops[2].kind != opDel || ops[2].key != (Key{Protocol: TCP, ExternalPort: 80}) {
		t.Errorf("del op = %+v", ops[2])
	}
}

func TestNextFrameRejectsDamage(t *testing.T) {
	frame := appendFrame(nil, appendDelOp(nil, Key{Protocol: TCP, ExternalPort: 80}))
	for i := 0; i < len(frame); i++ {
		if _, _, err := nextFrame(frame[:i]); !errors.Is(err, errTorn) {
			t.Errorf("frame cut to %d bytes: err = %v, want errTorn", i, err)
		}
		damaged := bytes.Clone(frame)
		damaged[i] ^= 0x10
		if _, _, err := nextFrame(damaged); !errors.Is(err, errTorn) {
			t.Errorf("byte %d flipped: err = %v, want errTorn", i, err)
		}
	}
}

// FuzzJournalDecode feeds arbitrary bytes to the replay path: it must not
// panic, and whatever decodes must re-encode to the same bytes.
func FuzzJournalDecode(f *testing.F) {
	m := Mapping{Protocol: TCP, ExternalPort: 80, InternalAddr: netip.MustParseAddr("192.168.1.2"),
		InternalPort: 8080, Enabled: true, Description: "x", Expires: time.Unix(5, 6).UTC(), Source: SourceUPnP}
	f.Add(appendPutOp(nil, m))
	f.Add(appendDelOp(appendEpochOp(nil, time.Unix(1, 0).UTC()), Key{Protocol: UDP, ExternalPort: 53}))
	f.Add(appendFrame(nil, appendPutOp(nil, m)))
	f.Add([]byte{opPut, 6, 0})
	f.Add(appendTime([]byte{opEpoch}, time.Unix(-62135596800, 1)))
	f.Fuzz(func(t *testing.T, b []byte) {
		nextFrame(b)
		ops, err := decodeOps(b)
		if err != nil {
			return
		}
		var again []byte
		for _, op := range ops {
			switch op.kind {
			case opPut:
				again = appendPutOp(again, op.m)
			case opDel:
				again = appendDelOp(again, op.key)
			case opEpoch:
				again = appendEpochOp(again, op.epoch)
			}
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("re-encoding differs:\n in %x\nout %x", b, again)
		}
	})
}

// FuzzJournalScan feeds arbitrary files to the version 2 replay: it must
// not panic, and what it reports must account for every byte: records and
// damaged stretches tile the file after its magic, in order, and every
// record re-encodes to the bytes it was read from.
func FuzzJournalScan(f *testing.F) {
	m := Mapping{Protocol: TCP, ExternalPort: 80, InternalAddr: netip.MustParseAddr("192.168.1.2"),
		InternalPort: 8080, Enabled: true, Description: "x", Expires: time.Unix(5, 6).UTC(), Source: SourceUPnP}
	good := appendRecord([]byte(journalMagic), appendEpochOp(nil, time.Unix(1, 0).UTC()))
	good = appendRecord(good, appendPutOp(nil, m))
	f.Add(good)
	f.Add(append(bytes.Clone(good), recordSync...))
	f.Add(good[:len(good)-3])
	f.Add([]byte(recordSync + recordSync + "\x00\x00\x00\x00"))
	f.Add([]byte("pfwdlog1"))
	f.Fuzz(func(t *testing.T, b []byte) {
		recs, bad := scanJournal(b)
		off := 0
		if bytes.HasPrefix(b, []byte(journalMagic)) {
			off = len(journalMagic)
		}
		ri, bi := 0, 0
		for off < len(b) {
			switch {
			case ri < len(recs) && recs[ri].offset == off:
				var again []byte
				for _, op := range recs[ri].ops {
					switch op.kind {
					case opPut:
						again = appendPutOp(again, op.m)
					case opDel:
						again = appendDelOp(again, op.key)
					case opEpoch:
						again = appendEpochOp(again, op.epoch)
					}
				}
				rec := appendRecord(nil, again)
				if !bytes.HasPrefix(b[off:], rec) {
					t.Fatalf("record at %d does not re-encode to its bytes", off)
				}
				off += len(rec)
				ri++
			case bi < len(bad) && bad[bi].Offset == off:
				if bad[bi].Length <= 0 {
					t.Fatalf("empty damaged stretch at %d", off)
				}
				off += bad[bi].Length
				if bad[bi].Tail != (off == len(b)) {
					t.Fatalf("stretch ending at %d of %d: Tail = %v", off, len(b), bad[bi].Tail)
				}
				bi++
			default:
				t.Fatalf("byte %d is neither in a record nor in a damaged stretch (records %d/%d, stretches %d/%d)", off, ri, len(recs), bi, len(bad))
			}
		}
		if off != len(b) || ri != len(recs) || bi != len(bad) {
			t.Fatalf("scan overran: off %d of %d, records %d/%d, stretches %d/%d", off, len(b), ri, len(recs), bi, len(bad))
		}
	})
}

// FuzzJournalResync damages one byte of a journal of n leases, one record
// each: replay must keep every lease but the one whose record was hit.
func FuzzJournalResync(f *testing.F) {
	f.Add(uint8(10), uint16(30), byte(1))
	f.Add(uint8(1), uint16(0), byte(0xff))
	f.Add(uint8(200), uint16(9000), byte(0x5a))
	f.Fuzz(func(t *testing.T, n uint8, at uint16, x byte) {
		if x == 0 {
			return
		}
		b := appendRecord([]byte(journalMagic), appendEpochOp(nil, time.Unix(1, 0).UTC()))
		for i := range int(n) {
			m := Mapping{Protocol: UDP, ExternalPort: uint16(1000 + i), InternalAddr: netip.MustParseAddr("10.0.0.2"),
				InternalPort: uint16(i + 1), Enabled: true, Source: SourceNATPMP, Expires: time.Unix(int64(i), 0).UTC()}
			b = appendRecord(b, appendPutOp(nil, m))
		}
		b[int(at)%len(b)] ^= x
		recs, bad := scanJournal(b)
		puts := 0
		for _, r := range recs {
			for _, op := range r.ops {
				if op.kind == opPut {
					puts++
				}
			}
		}
		if puts < int(n)-1 {
			t.Fatalf("%d leases, byte %d damaged: %d read back, want at least %d", n, int(at)%len(b), puts, int(n)-1)
		}
		if len(bad) != 1 {
			t.Fatalf("one damaged byte reported as %d stretches: %+v", len(bad), bad)
		}
	})
}
