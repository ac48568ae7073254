package gateway

import (
	"cmp"
	"context"
	"net/netip"
	"sort"
	"sync"
)

// Memory is a Backend that only records the rules it is given, for tests
// and for running the daemon without touching the data plane. It can be
// told to fail, to exercise the Core's rollback. The zero value is ready
// to use.
type Memory struct {
	mu     sync.Mutex
	rules  map[uint64]memRule // by Key.pack: small, for tables of a million
	pins   map[PinholeKey]*memPinhole
	fault  func(op string, r Rule) error
	calls  MemoryCalls
	closed bool
}

// memRule is a Rule without its key.
type memRule struct {
	internal, remote netip.Addr
	port             uint16
}

func (r memRule) rule(k uint64) Rule {
	key := unpackKey(k)
	return Rule{Protocol: key.Protocol, ExternalPort: key.ExternalPort, ExternalAddr: key.ExternalAddr,
		InternalAddr: r.internal, InternalPort: r.port, RemoteHost: r.remote}
}

// MemoryCalls counts the calls a Memory received, failed ones included.
type MemoryCalls struct {
	Add, Delete, Flush        int
	AddPinhole, DeletePinhole int
}

// NewMemory returns an empty Memory backend.
func NewMemory() *Memory { return &Memory{} }

// SupportsPool reports true: Memory records rules of any external
// address (PoolBackend).
func (b *Memory) SupportsPool() bool { return true }

// Name returns "memory".
func (b *Memory) Name() string { return "memory" }

// SetFault makes every later call consult f first: op is "add", "delete",
// "flush" or "list" (the last two with a zero Rule), and a non-nil result fails the call
// without changing anything. A nil f removes the fault.
func (b *Memory) SetFault(f func(op string, r Rule) error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.fault = f
}

func (b *Memory) check(ctx context.Context, op string, r Rule) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if b.fault != nil {
		return b.fault(op, r)
	}
	return nil
}

// Add records r, replacing the rule for the same key (external address,
// protocol and port).
func (b *Memory) Add(ctx context.Context, r Rule) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls.Add++
	if err := b.check(ctx, "add", r); err != nil {
		return err
	}
	if b.rules == nil {
		b.rules = make(map[uint64]memRule)
	}
	b.rules[r.Key().pack()] = memRule{internal: r.InternalAddr, remote: r.RemoteHost, port: r.InternalPort}
	return nil
}

// Delete forgets the rule for r's protocol and port.
func (b *Memory) Delete(ctx context.Context, r Rule) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls.Delete++
	if err := b.check(ctx, "delete", r); err != nil {
		return err
	}
	delete(b.rules, r.Key().pack())
	return nil
}

// Flush forgets every rule.
func (b *Memory) Flush(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls.Flush++
	if err := b.check(ctx, "flush", Rule{}); err != nil {
		return err
	}
	clear(b.rules)
	clear(b.pins)
	return nil
}

// InstalledRules implements RuleLister.
func (b *Memory) InstalledRules(ctx context.Context) ([]Rule, error) {
	b.mu.Lock()
	err := b.check(ctx, "list", Rule{})
	b.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return b.Rules(), nil
}

// Close marks the backend closed; the rules stay, as for real backends.
func (b *Memory) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	return nil
}

// Closed reports whether Close was called.
func (b *Memory) Closed() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.closed
}

// Rules returns the installed rules sorted by protocol and port.
func (b *Memory) Rules() []Rule {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]Rule, 0, len(b.rules))
	for k, r := range b.rules {
		out = append(out, r.rule(k))
	}
	sort.Slice(out, func(i, j int) bool { return CompareRules(out[i], out[j]) < 0 })
	return out
}

// Rule returns the rule installed for k.
func (b *Memory) Rule(k Key) (Rule, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	r, ok := b.rules[k.pack()]
	if !ok {
		return Rule{}, false
	}
	return r.rule(k.pack()), true
}

// Len returns the number of installed rules.
func (b *Memory) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.rules)
}

// Calls returns the call counts so far.
func (b *Memory) Calls() MemoryCalls {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.calls
}

// memPinhole is an installed pinhole of a Memory backend.
type memPinhole struct {
	rule    PinholeRule
	packets uint64
}

// faultRule shows a pinhole to SetFault's function: its protocol,
// internal address and port, and remote host.
func (r PinholeRule) faultRule() Rule {
	return Rule{Protocol: r.Protocol, ExternalPort: r.InternalPort, InternalAddr: r.InternalAddr, InternalPort: r.InternalPort, RemoteHost: r.RemoteHost}
}

// AddPinhole implements PinholeBackend: it records r, replacing the one
// with its key and keeping its packet count. SetFault sees op "add pinhole".
func (b *Memory) AddPinhole(ctx context.Context, r PinholeRule) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls.AddPinhole++
	if err := b.check(ctx, "add pinhole", r.faultRule()); err != nil {
		return err
	}
	if b.pins == nil {
		b.pins = make(map[PinholeKey]*memPinhole)
	}
	if p, ok := b.pins[r.PinholeKey]; ok {
		p.rule = r
		return nil
	}
	b.pins[r.PinholeKey] = &memPinhole{rule: r}
	return nil
}

// DeletePinhole implements PinholeBackend. SetFault sees op "delete pinhole".
func (b *Memory) DeletePinhole(ctx context.Context, r PinholeRule) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls.DeletePinhole++
	if err := b.check(ctx, "delete pinhole", r.faultRule()); err != nil {
		return err
	}
	delete(b.pins, r.PinholeKey)
	return nil
}

// PinholePackets implements PinholeBackend with the count CountPinholePacket
// keeps; a Memory backend always counts.
func (b *Memory) PinholePackets(ctx context.Context, r PinholeRule) (uint64, bool, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.check(ctx, "count pinhole", r.faultRule()); err != nil {
		return 0, false, err
	}
	if p, ok := b.pins[r.PinholeKey]; ok {
		return p.packets, true, nil
	}
	return 0, true, nil
}

// CountPinholePacket pretends n packets went through the pinhole with key
// k, as a firewall's counter would, for tests of GetPinholePackets and
// CheckPinholeWorking.
func (b *Memory) CountPinholePacket(k PinholeKey, n uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if p, ok := b.pins[k]; ok {
		p.packets += n
	}
}

// InstalledPinholes implements PinholeLister. SetFault does not see it,
// so that tests of the port mappings' restore see their own calls only.
func (b *Memory) InstalledPinholes(ctx context.Context) ([]PinholeRule, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return b.pinholesLocked(), nil
}

// Pinholes returns the installed pinholes, sorted by address and port.
func (b *Memory) Pinholes() []PinholeRule {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.pinholesLocked()
}

func (b *Memory) pinholesLocked() []PinholeRule {
	out := make([]PinholeRule, 0, len(b.pins))
	for _, p := range b.pins {
		out = append(out, p.rule)
	}
	sort.Slice(out, func(i, j int) bool {
		x, y := out[i], out[j]
		return cmp.Or(x.InternalAddr.Compare(y.InternalAddr), cmp.Compare(x.InternalPort, y.InternalPort),
			cmp.Compare(x.Protocol, y.Protocol), x.RemoteHost.Compare(y.RemoteHost), cmp.Compare(x.RemotePort, y.RemotePort)) < 0
	})
	return out
}

// CompareRules orders rules by protocol, then external port, then
// external pool address (the gateway's own first): the order in
// which the backends list them. The backends sort with sort.Slice and
// this, not slices.SortFunc: one sort routine for every element type
// instead of one per type keeps the gateway's router build small.
func CompareRules(x, y Rule) int {
	return cmp.Or(cmp.Compare(x.Protocol, y.Protocol), cmp.Compare(x.ExternalPort, y.ExternalPort),
		x.ExternalAddr.Compare(y.ExternalAddr))
}
