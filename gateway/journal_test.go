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
	payload = appendDelOp(payload, Key{TCP, 80})
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
	if ops[2].kind != opDel || ops[2].key != (Key{TCP, 80}) {
		t.Errorf("del op = %+v", ops[2])
	}
}

func TestNextFrameRejectsDamage(t *testing.T) {
	frame := appendFrame(nil, appendDelOp(nil, Key{TCP, 80}))
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
	f.Add(appendDelOp(appendEpochOp(nil, time.Unix(1, 0).UTC()), Key{UDP, 53}))
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
