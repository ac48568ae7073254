package gateway

import "time"

// Version1Journal returns a version 1 journal holding ms, as a gateway
// before sync markers wrote it.
func Version1Journal(ms ...Mapping) []byte {
	b := appendFrame([]byte(journalMagicV1), appendEpochOp(nil, time.Unix(1700000000, 0).UTC()))
	for _, m := range ms {
		b = appendFrame(b, appendPutOp(nil, m.normalize()))
	}
	return b
}
