package natpmp

import "github.com/portfwd/portfwd/internal/epoch"

// EpochState is a client's record of the gateway's "seconds since start of
// epoch" (SSSoE), which RFC 6886 §3.6 uses to detect that the gateway has
// rebooted or otherwise lost its mapping table: Valid is false until a
// reply arrived, Epoch is the SSSoE of the most recent reply, Received when
// it arrived, and LostState reports that some reply since the last
// ClearLostState showed the epoch going back, so that the mappings must be
// re-created (RFC 6886 §3.7).
//
// The rule itself (the gateway's clock may run slower than ours, so only
// 7/8 of our elapsed time is expected on it, with 2 s forgiven) lives in
// internal/epoch, shared with PCP's rule and with portmap's keeper and
// watcher; a Client's zero epoch.Tracker follows it.
type EpochState = epoch.ClientState
