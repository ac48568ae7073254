package pcp

import (
	"context"
	"encoding/binary"
	"reflect"
	"testing"
)

// Seeds: the captured miniupnpd exchange, the vectors of the codec tests,
// and the shapes the parsers treat specially.
var (
	requestSeeds = []string{
		hexAnnounce,
		hexMapV6,
		hexMapOptions,
		hexPeer,
		// miniupnpd's capture: MAP, then its delete.
		"02 01 0000 00000258" + hexClient4 + "6e61746c61622d6e6f6e6365 11 000000 4a39 4a9d 00000000000000000000ffff00000000",
		"02 01 0000 00000000" + hexClient4 + "6e61746c61622d6e6f6e6365 11 000000 4a39 4a9d 00000000000000000000ffff00000000",
		hexAnnounce + "32 00 0000",
		hexAnnounce + "80 00 0001 ff000000",
		"02 81" + hexClient4,
		"01 01 0000 00000258" + hexClient4,
		"00 00",
		"00 02 0000 4a38 2328 00000e10",
		"02 05 0000 00000000" + hexClient4,
		"02",
		"",
	}
	responseSeeds = []string{
		hexAnnounceResp,
		hexMapErrHeader,
		hexMapResp,
		hexPeerResp,
		"02 81 00 00 00000258 00000854 000000000000000000000000 6e61746c61622d6e6f6e6365 11 000000 4a39 4a9d 00000000000000000000ffffcb007101",
		"02 81 00 06 00000e10 00000854 000000000000000000000000 0102030405060708090a0b0c 06 000000 1f90 1f90 00000000000000000000ffffcb007101 80 00 0040",
		"02 85 00 04 00000708 00000854 000000000000000000000000 deadbeef",
		"00 80 0001 00000854",
		"01 81 00 01 00000000 00000854 000000000000000000000000",
		"02 81 00",
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
		if len(b) < headerLen || len(b) > MaxPacketLen || len(b)%4 != 0 || b[0] != Version || b[1]&opResponse != 0 {
			t.Fatalf("ParseRequest accepted % x", b)
		}
		// What parses re-encodes to a request of the same size (reserved
		// fields and padding come out zero) that parses the same.
		enc, err := AppendRequest(nil, r)
		if err != nil {
			t.Fatalf("ParseRequest(% x) = %s, which does not encode: %v", b, show(r), err)
		}
		if len(enc) != len(b) {
			t.Fatalf("ParseRequest(% x) = %s, re-encoded in %d bytes: % x", b, show(r), len(enc), enc)
		}
		r2, err := ParseRequest(enc)
		if err != nil || !reflect.DeepEqual(r, r2) {
			t.Fatalf("ParseRequest(% x) = %s, re-encoded % x parses as %s, %v", b, show(r), enc, show(r2), err)
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
		if r.Result == ResultSuccess && r.Op.payloadLen() > 0 && r.Map == nil && r.Peer == nil {
			t.Fatalf("ParseResponse(% x): a success without its payload", b)
		}
		enc, err := AppendResponse(nil, r)
		if err != nil {
			t.Fatalf("ParseResponse(% x) = %s, which does not encode: %v", b, show(r), err)
		}
		r2, err := ParseResponse(enc)
		if err != nil || !reflect.DeepEqual(r, r2) {
			t.Fatalf("ParseResponse(% x) = %s, re-encoded % x parses as %s, %v", b, show(r), enc, show(r2), err)
		}
	})
}

// FuzzHandlePacket checks that the server side drops exactly what RFC 6887
// §8.3 says to drop, and answers everything else with a response a client
// can parse, for the opcode asked, no longer than the request allows.
func FuzzHandlePacket(f *testing.F) {
	for _, s := range requestSeeds {
		f.Add(mustHex(f, s), uint32(2132), false)
	}
	f.Fuzz(func(t *testing.T, b []byte, epoch uint32, allowThirdParty bool) {
		h := newMemHandler()
		h.peers = true
		resp, ok := HandlePacket(context.Background(), b, lanClient, h, epoch, ServerOptions{AllowThirdParty: allowThirdParty})
		if drop := len(b) < 2 || b[1]&opResponse != 0; drop != !ok {
			t.Fatalf("HandlePacket(% x) answered %v", b, ok)
		}
		if !ok {
			return
		}
		r, err := ParseResponse(resp)
		if err != nil {
			t.Fatalf("HandlePacket(% x) answered % x, which does not parse: %v", b, resp, err)
		}
		if r.Epoch != epoch || r.Op != Opcode(b[1]) {
			t.Fatalf("HandlePacket(% x) answered %s", b, show(r))
		}
		if limit := max(headerLen, (min(len(b), MaxPacketLen)+3)&^3); len(resp) > limit {
			t.Fatalf("HandlePacket(% x) answered %d bytes, more than %d", b, len(resp), limit)
		}
		// Only a MAP with lifetime 0, a delete, succeeds with lifetime 0.
		if r.Result == ResultSuccess && r.Op != OpAnnounce && r.Lifetime == 0 && (r.Op != OpMap || binary.BigEndian.Uint32(b[4:]) != 0) {
			t.Fatalf("HandlePacket(% x) granted a mapping for 0 s", b)
		}
	})
}
