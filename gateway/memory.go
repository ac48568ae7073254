package gateway

import (
	"cmp"
	"context"
	"sort"
	"sync"
)

// Memory is a Backend that only records the rules it is given, for tests
// and for running the daemon without touching the data plane. It can be
// told to fail, to exercise the Core's rollback. The zero value is ready
// to use.
type Memory struct {
	mu     sync.Mutex
	rules  map[Key]Rule
	fault  func(op string, r Rule) error
	calls  MemoryCalls
	closed bool
}

// MemoryCalls counts the calls a Memory received, failed ones included.
type MemoryCalls struct {
	Add, Delete, Flush int
}

// NewMemory returns an empty Memory backend.
func NewMemory() *Memory { return &Memory{} }

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

// Add records r, replacing the rule for the same protocol and port.
func (b *Memory) Add(ctx context.Context, r Rule) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls.Add++
	if err := b.check(ctx, "add", r); err != nil {
		return err
	}
	if b.rules == nil {
		b.rules = make(map[Key]Rule)
	}
	b.rules[Key{Protocol: r.Protocol, ExternalPort: r.ExternalPort}] = r
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
	delete(b.rules, Key{Protocol: r.Protocol, ExternalPort: r.ExternalPort})
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
	for _, r := range b.rules {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return CompareRules(out[i], out[j]) < 0 })
	return out
}

// Rule returns the rule installed for k.
func (b *Memory) Rule(k Key) (Rule, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	r, ok := b.rules[k]
	return r, ok
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

// CompareRules orders rules by protocol, then external port: the order in
// which the backends list them. The backends sort with sort.Slice and
// this, not slices.SortFunc: one sort routine for every element type
// instead of one per type keeps the gateway's router build small.
func CompareRules(x, y Rule) int {
	return cmp.Or(cmp.Compare(x.Protocol, y.Protocol), cmp.Compare(x.ExternalPort, y.ExternalPort))
}
