package natpmp

import (
	"bytes"
	"context"
	"net/netip"
	"testing"
)

// Seeds: the captured miniupnpd exchange plus the shapes the parsers treat
// specially.
var (
	requestSeeds = []string{
		"00 00",
		"00 02 0000 4a38 2328 00000e10",
		"00 02 0000 4a38 2328 00000000",
		"00 01 0000 0000 0000 00000000",
		"00 01 ffff 0050 0051 00000001 ff",
		"01 00",
		"02 01 0000 00000258 00000000000000000000ffff0a4d0002",
		"00 03",
		"00 80 0000 00000854 cb007101",
		"00",
		"",
	}
	responseSeeds = []string{
		"00 80 0000 00000854 cb007101",
		"00 82 0000 00000854 4a38 2328 00000e10",
		"00 82 0000 00000854 4a38 0000 00000000",
		"00 00 0001 00000010",
		"00 80 0001 00000010",
		"00 82 0004 00000003",
		"00 85 0005 00000003 abcd",
		"00 80 0003 00000005 01020304",
		"02 81 0001 00000258 00000854 000000000000000000000000",
		"00 02 0000 4a38 2328 00000e10",
		"00 80 0000 000008",
	}
)

func FuzzParseRequest(f *testing.F) {
	for _, s := range requestSeeds {
		f.Add(mustHex(f, s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseRequest(b)
		if err != nil {
			return
		}
		// What parses re-encodes to the same request, and to the same
		// bytes except the reserved field and anything trailing.
		enc := AppendRequest(nil, r)
		r2, err := ParseRequest(enc)
		if err != nil || r2 != r {
			t.Fatalf("ParseRequest(% x) = %+v, re-encoded % x parses as %+v, %v", b, r, enc, r2, err)
		}
		want := bytes.Clone(b[:len(enc)])
		if r.Op.isMap() {
			want[2], want[3] = 0, 0
		}
		if !bytes.Equal(enc, want) {
			t.Fatalf("ParseRequest(% x) = %+v, re-encoded as % x", b, r, enc)
		}
	})
}

func FuzzParseResponse(f *testing.F) {
	for _, s := range responseSeeds {
		f.Add(mustHex(f, s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseResponse(b)
		if err != nil {
			return
		}
		enc := AppendResponse(nil, r)
		r2, err := ParseResponse(enc)
		if err != nil || r2 != r {
			t.Fatalf("ParseResponse(% x) = %+v, re-encoded % x parses as %+v, %v", b, r, enc, r2, err)
		}
		if r.ExternalAddr.IsValid() && (r.Op != OpExternalAddress || r.Result != Success || !r.ExternalAddr.Is4()) {
			t.Fatalf("ParseResponse(% x) = %+v: an address only belongs in a successful external address reply", b, r)
		}
	})
}

// FuzzHandlePacket checks that the server side answers every packet it does
// not drop with a reply a client can parse, for the opcode that was asked.
func FuzzHandlePacket(f *testing.F) {
	for _, s := range requestSeeds {
		f.Add(mustHex(f, s), uint32(2132))
	}
	h := &memHandler{ext: netip.MustParseAddr("203.0.113.1")}
	client := netip.MustParseAddr("10.77.0.2")
	f.Fuzz(func(t *testing.T, b []byte, epoch uint32) {
		resp, ok := HandlePacket(context.Background(), b, client, h, epoch)
		if !ok {
			if len(b) >= 2 && b[1] < 128 && (b[0] != 0 || b[1] > 2 || b[1] == 0 || len(b) >= 12) {
				t.Fatalf("HandlePacket dropped % x, which deserves a reply", b)
			}
			return
		}
		r, err := ParseResponse(resp)
		if err != nil {
			t.Fatalf("HandlePacket(% x) replied % x, which does not parse: %v", b, resp, err)
		}
		if r.Epoch != epoch {
			t.Fatalf("reply epoch %d, want %d", r.Epoch, epoch)
		}
		if b[0] == Version && r.Op != Opcode(b[1]) {
			t.Fatalf("HandlePacket(% x) answered opcode %d", b, r.Op)
		}
		if len(resp) > max(len(b), mapResponseLen) {
			t.Fatalf("HandlePacket(% x) replied %d bytes to %d: amplification", b, len(resp), len(b))
		}
	})
}
