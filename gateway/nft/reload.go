//go:build linux

package nft

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// Firewall reloads.
//
// An administrator's firewall reload (OpenWrt's fw4 rebuilds its table;
// "nft flush ruleset"; "nft -f" of a file that deletes a table) takes our
// objects with it: our own table, or our pinhole rules and sets in the
// administrator's chain. Operations notice that and put everything back
// (retry, retryPins), but a gateway nobody asks anything of would leave
// its mappings and pinholes dead until then. WatchReloads subscribes to
// nftables' netlink events instead: after a burst of changes to the
// tables we live in (tables, chains, rules and sets: element changes are
// the backend's own work and are ignored), it checks that our objects are
// all there, ReloadDebounce after the last change of the burst, and
// repairs what is missing, so that a reload costs about that long.

// ReloadDebounce is how long after the last change of a burst the backend
// checks its objects: a reload is many batches (fw4 writes its table, then
// includes), and checking in the middle would repair twice.
const ReloadDebounce = 200 * time.Millisecond

// WatchReloads follows nftables' ruleset changes until ctx ends and
// repairs our objects after each burst that touched the tables we use
// (see Firewall reloads above). It returns nil when ctx ends, or an error
// when the events cannot be subscribed to at all. When events are lost
// (the kernel's socket buffer overflowed), it checks at once and
// subscribes again.
func (b *Backend) WatchReloads(ctx context.Context) error {
	changed := make(chan struct{}, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		b.repairLoop(ctx, changed)
	}()
	defer func() { <-done }()
	first := true
	for {
		err := b.watchOnce(ctx, changed, first)
		if ctx.Err() != nil {
			return nil
		}
		if first && err != nil {
			return fmt.Errorf("nft: following ruleset changes: %w", permHint(err))
		}
		first = false
		b.log.Warn("nftables events were lost; checking the ruleset and following it again", "err", err)
		signal(changed)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second): // no spin if the socket keeps failing
		}
	}
}

// watchOnce reads one subscription's events until it fails or ctx ends,
// signalling changed for each change to a table, chain, rule or set of a
// table we live in.
//
// It reads the netlink messages itself rather than through
// nftables.Monitor, which decodes every message it receives (a Monitor's
// object filter does not skip any): the backend's own element changes,
// one per mapping and pinhole operation, would each be decoded for
// nothing. Here a message costs a look at its type and at most one
// attribute, the table's name.
func (b *Backend) watchOnce(ctx context.Context, changed chan<- struct{}, first bool) error {
	conn, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: b.cfg.NetNS})
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := conn.JoinGroup(unix.NFNLGRP_NFTABLES); err != nil {
		return err
	}
	// A reload is a burst of messages: room for a large one (fw4 writes
	// thousands of rules) before the kernel drops any (ENOBUFS).
	conn.SetReadBuffer(4 << 20)
	if err := conn.SetBPF(watchFilter()); err != nil {
		b.log.Debug("nft: no socket filter for the ruleset events; every change is read", "err", err)
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	if !first {
		signal(changed) // what happened while we were not listening
	}
	for {
		msgs, err := conn.Receive()
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return err
		}
		for _, m := range msgs {
			if b.concerns(m) {
				signal(changed)
				break
			}
		}
	}
}

// watchedTypes are the notifications watchOnce reads: changes of tables,
// chains, rules and sets. Elements, objects and generations are not.
var watchedTypes = []uint16{unix.NFT_MSG_NEWTABLE, unix.NFT_MSG_DELTABLE, unix.NFT_MSG_NEWCHAIN, unix.NFT_MSG_DELCHAIN,
	unix.NFT_MSG_NEWRULE, unix.NFT_MSG_DELRULE, unix.NFT_MSG_NEWSET, unix.NFT_MSG_DELSET}

// watchFilter is a socket filter that lets only watchedTypes through, so
// that the backend's own element changes (one per mapping or pinhole
// operation) are dropped in the kernel instead of waking the watch. Each
// notification is a datagram of its own, whose first header's type the
// filter reads (nlmsg_type, at offset 4, in host byte order, which the
// filter's big-endian load sees swapped on a little-endian host).
//
// The program is written as raw instructions (the kernel's struct
// sock_filter), not assembled by x/net/bpf: its assembler and instruction
// types are about 8 KB of the router build for these ten instructions.
// TestWatchFilter disassembles and runs it with x/net/bpf's VM.
func watchFilter() []bpf.RawInstruction {
	// A = the 16-bit word at offset 4: nlmsg_type (ldh [4]).
	prog := []bpf.RawInstruction{{Op: unix.BPF_LD | unix.BPF_H | unix.BPF_ABS, K: 4}}
	for i, t := range watchedTypes {
		native := binary.NativeEndian.AppendUint16(nil, unix.NFNL_SUBSYS_NFTABLES<<8|t)
		// if A == type: jump over the remaining comparisons and the
		// drop, to the accept (jeq #type, jt, 0).
		prog = append(prog, bpf.RawInstruction{Op: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K,
			Jt: uint8(len(watchedTypes) - i), K: uint32(binary.BigEndian.Uint16(native))})
	}
	return append(prog,
		// No type matched: drop the message (ret #0).
		bpf.RawInstruction{Op: unix.BPF_RET | unix.BPF_K, K: 0},
		// Matched: keep all of it (ret #0xffffffff).
		bpf.RawInstruction{Op: unix.BPF_RET | unix.BPF_K, K: 0xffffffff})
}

func signal(c chan<- struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// concerns reports whether m, an nftables notification, is the change of
// a table, chain, rule or set of a table we live in. Element changes
// (the backend's own work), objects and generations are not.
func (b *Backend) concerns(m netlink.Message) bool {
	if m.Header.Type>>8 != unix.NFNL_SUBSYS_NFTABLES || len(m.Data) < 4 {
		return false
	}
	switch m.Header.Type & 0xff {
	case unix.NFT_MSG_NEWTABLE, unix.NFT_MSG_DELTABLE, unix.NFT_MSG_NEWCHAIN, unix.NFT_MSG_DELCHAIN,
		unix.NFT_MSG_NEWRULE, unix.NFT_MSG_DELRULE, unix.NFT_MSG_NEWSET, unix.NFT_MSG_DELSET:
	default:
		return false
	}
	family := nftables.TableFamily(m.Data[0]) // struct nfgenmsg
	ad, err := netlink.NewAttributeDecoder(m.Data[4:])
	if err != nil {
		return false
	}
	// The table's name is attribute 1 of all four objects
	// (NFTA_TABLE_NAME, NFTA_CHAIN_TABLE, NFTA_RULE_TABLE,
	// NFTA_SET_TABLE).
	var name string
	for ad.Next() {
		if ad.Type() == unix.NFTA_TABLE_NAME {
			name = ad.String()
			break
		}
	}
	if name == "" {
		return false
	}
	// b.table and b.pins.table are set by New and never change.
	same := func(t *nftables.Table) bool { return t != nil && t.Name == name && t.Family == family }
	return same(b.table) || b.pins != nil && same(b.pins.table)
}

// repairLoop checks and repairs ReloadDebounce after the last signal of
// each burst, until ctx ends.
func (b *Backend) repairLoop(ctx context.Context, changed <-chan struct{}) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-changed:
		}
		t := time.NewTimer(ReloadDebounce)
	burst:
		for {
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-changed:
				t.Reset(ReloadDebounce)
			case <-t.C:
				break burst
			}
		}
		if err := b.Repair(ctx); err != nil {
			// A reload under way may have raced the repair: the next
			// change is checked again.
			b.log.Warn("could not put back the nftables rules after a ruleset change; trying again at the next change or operation", "err", err)
		}
	}
}

// Repair checks that our table, chains, maps and rules, and our pinhole
// sets and rules, are all in place, and puts back what is missing with
// every installed mapping and pinhole. It reports what it repaired in the
// log; nothing when all is there.
func (b *Backend) Repair(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return err
	}
	ownOK, err := b.ownIntact()
	if err != nil {
		return err
	}
	if !ownOK {
		b.log.Warn("our nftables table was removed or changed (ruleset reloaded?): putting it back", "mappings", len(b.installed))
		if err := b.setup(); err != nil {
			return err
		}
		if err := b.restore(); err != nil {
			return fmt.Errorf("nft: restoring %d mappings: %w", len(b.installed), err)
		}
		if b.pins != nil && !b.pins.shared {
			// setup rewrote our forward chain without the pinhole rules,
			// and the pinhole sets may be gone with the table.
			if err := b.setupPinholes(); err != nil {
				return err
			}
			if err := b.restorePinholes(); err != nil {
				return fmt.Errorf("nft: restoring %d pinholes: %w", len(b.pins.installed), err)
			}
		}
	}
	if b.pins == nil || !b.pins.shared {
		return nil
	}
	return b.repairSharedPinsLocked()
}

// ownIntact reports whether our table has its chains, maps and rules.
func (b *Backend) ownIntact() (bool, error) {
	if _, err := b.conn.ListTableOfFamily(b.table.Name, nftables.TableFamilyINet); err != nil {
		return false, nil
	}
	sets := b.maps()
	if b.pool != nil {
		sets = append(sets, b.pool)
	}
	for _, s := range sets {
		if _, err := b.conn.GetSetByName(b.table, s.Name); err != nil {
			return false, nil
		}
	}
	want, err := buildRules(b.cfg, b.fwd, b.fwdSrc, b.fwdPool, b.pool)
	if err != nil {
		return false, fmt.Errorf("nft: %w", err)
	}
	for _, c := range ourChains(b.table) {
		rules, err := b.conn.GetRules(b.table, c)
		if err != nil {
			return false, nil // the chain is gone
		}
		plain, tagged := countTagged(rules)
		if plain != len(want[c.Name]) {
			return false, nil
		}
		if b.pins != nil && !b.pins.shared && c.Name == chainFilter && tagged != b.pinRuleCount() {
			return false, nil
		}
	}
	if b.pins != nil && !b.pins.shared {
		for _, rh := range b.pins.sets {
			for _, s := range rh {
				if _, err := b.conn.GetSetByName(b.table, s.Name); err != nil {
					return false, nil
				}
			}
		}
	}
	return true, nil
}

// repairSharedPinsLocked puts our pinhole sets and rules back into the
// administrator's chain, when it exists.
func (b *Backend) repairSharedPinsLocked() error {
	p := b.pins
	rules, err := b.conn.GetRules(p.table, p.chain)
	if err != nil {
		// The chain (or its table) is gone for now: a reload that
		// creates it again is another change, checked again then.
		b.log.Warn("the IPv6 pinhole chain is gone: pinholes are put back when it is there again", "chain", p.chain.Name, "table", b.cfg.ForwardTable, "pinholes", len(p.installed))
		return nil
	}
	setsOK := true
	for _, rh := range p.sets {
		for _, s := range rh {
			if _, err := b.conn.GetSetByName(p.table, s.Name); err != nil {
				setsOK = false
			}
		}
	}
	if _, tagged := countTagged(rules); setsOK && tagged == b.pinRuleCount() {
		return nil
	}
	b.log.Warn("the IPv6 pinhole rules or sets vanished from your firewall's chain (firewall reloaded?): putting them back", "chain", p.chain.Name, "table", b.cfg.ForwardTable, "pinholes", len(p.installed))
	if err := b.setupPinholes(); err != nil {
		return err
	}
	if !setsOK {
		if err := b.restorePinholes(); err != nil {
			return fmt.Errorf("nft: restoring %d pinholes: %w", len(p.installed), err)
		}
	}
	return nil
}

// countTagged counts the rules that are not ours and ours (pinRuleTag).
func countTagged(rules []*nftables.Rule) (plain, tagged int) {
	for _, r := range rules {
		if bytes.Equal(r.UserData, pinRuleTag) {
			tagged++
		} else {
			plain++
		}
	}
	return plain, tagged
}

// pinRuleCount is how many pinhole rules setupPinholes writes.
func (b *Backend) pinRuleCount() int { return 4 * len(b.cfg.ExternalInterfaces) }
