package gateway

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// A CommitGroup is group commit for requests a server read together:
// their mapping changes go to the backend in one transaction and to the
// store in one write, instead of one of each per request.
//
// A server that reads n requests at once makes a group of n members,
// answers each request concurrently with a context from WithCommitGroup,
// and calls Done as each one is answered. A Core operation under such a
// context does everything it did alone, except that when it comes to
// applying its change it hands the change to the group and waits. When
// every member still running is waiting so (the others have finished, or
// wait for something else, such as a key another member holds), the last
// one to arrive applies every waiting change (Core.commitChanges) and
// wakes the others.
//
// Durability is the same as alone: no operation returns, and so no
// request is answered, before its own change is in the backend and in the
// store. A single request never waits for anything: a server hands out a
// group only when it holds more than one request, and a group whose other
// members are done commits at once.
//
// The router build (the gatewayonly tag, groupcommit_gatewayonly.go) has
// no group commit: its servers answer one request at a time, and a
// context from WithCommitGroup is served as if it had no group.
type CommitGroup struct {
	ctx context.Context // for commits started by Done or a pause

	mu      sync.Mutex
	active  int // members running: not waiting for the commit, not paused, not done
	pending []*groupChange
	core    *Core
}

// groupChange is one member's change, and its outcome.
type groupChange struct {
	// An apply (Core.apply's arguments), or with del a removal of m.
	del     bool
	prev    Mapping
	hadPrev bool
	m       Mapping

	err  error
	done chan struct{}
}

type groupKey struct{}

// NewCommitGroup returns a group for members requests. ctx bounds the
// commits no member's own call started (the server's context).
func NewCommitGroup(ctx context.Context, members int) *CommitGroup {
	return &CommitGroup{ctx: context.WithoutCancel(ctx), active: members}
}

// WithCommitGroup returns ctx for a member of g.
func WithCommitGroup(ctx context.Context, g *CommitGroup) context.Context {
	return context.WithValue(ctx, groupKey{}, g)
}

// groupOf returns the group of ctx, or nil. Its callers test groupCommit
// first, so that in the router build, where it is false, the compiler
// drops the group's code (submit, commitChanges) from their paths.
func groupOf(ctx context.Context) *CommitGroup {
	g, _ := ctx.Value(groupKey{}).(*CommitGroup)
	return g
}

// pauseGroup is groupOf(ctx).pause(): nil-safe, and a no-op in the router
// build.
func pauseGroup(ctx context.Context) (resume func()) {
	if !groupCommit {
		return func() {}
	}
	return groupOf(ctx).pause()
}

// Done tells g that a member finished: it will hand in no more changes.
// Every member calls it once.
func (g *CommitGroup) Done() {
	g.mu.Lock()
	g.active--
	g.commitIfReadyLocked(g.ctx) // unlocks
}

// pause takes the member out of the count while it waits for something
// other than the commit (a key another member holds, the router above),
// so that the others are not kept waiting for it; resume puts it back.
// Both are nil-safe.
func (g *CommitGroup) pause() (resume func()) {
	if g == nil {
		return func() {}
	}
	g.mu.Lock()
	g.active--
	g.commitIfReadyLocked(g.ctx)
	return func() {
		g.mu.Lock()
		g.active++
		g.mu.Unlock()
	}
}

// submit hands in ch and waits until it is committed.
func (g *CommitGroup) submit(c *Core, ch *groupChange) error {
	ch.done = make(chan struct{})
	g.mu.Lock()
	if g.core != nil && g.core != c {
		g.mu.Unlock()
		return errors.New("gateway: one CommitGroup used with two Cores")
	}
	g.core = c
	g.pending = append(g.pending, ch)
	g.active--
	g.commitIfReadyLocked(g.ctx)
	<-ch.done
	g.mu.Lock()
	g.active++
	g.mu.Unlock()
	return ch.err
}

// commitIfReadyLocked commits the pending changes when no member is
// running, in the calling goroutine. It is called with g.mu held and
// returns with it released.
func (g *CommitGroup) commitIfReadyLocked(ctx context.Context) {
	if g.active < 0 {
		g.mu.Unlock()
		panic(fmt.Sprintf("gateway: CommitGroup has %d running members: Done called too often", g.active))
	}
	if g.active > 0 || len(g.pending) == 0 {
		g.mu.Unlock()
		return
	}
	batch := g.pending
	g.pending = nil
	c := g.core
	g.mu.Unlock()
	c.commitChanges(ctx, batch)
	for _, ch := range batch {
		close(ch.done)
	}
}

// commitChanges applies a group's changes: the backend's additions in one
// batch, then one store write for them all, then the backend's removals
// in one batch. It keeps the order and the undoing of apply (backend,
// then store) and of removeBatch (store, then backend) for each change.
func (c *Core) commitChanges(ctx context.Context, batch []*groupChange) {
	if len(batch) == 1 {
		ch := batch[0]
		if ch.del {
			ok, err := c.removeBatch(ctx, []Mapping{ch.m}, false)
			if !ok[0] && err == nil {
				err = errors.New("gateway: mapping not removed")
			}
			ch.err = err
		} else {
			ch.err = c.applyAlone(ctx, ch.prev, ch.hadPrev, ch.m)
		}
		return
	}
	// The backend's part of every apply: additions together when the
	// backend can batch them.
	type applied struct {
		ch             *groupChange
		added, deleted bool
	}
	var applies []applied
	var dels []*groupChange
	var adds []Rule
	for _, ch := range batch {
		if ch.del {
			dels = append(dels, ch)
			continue
		}
		applies = append(applies, applied{ch: ch})
		if needsAdd(ch.prev, ch.hadPrev, ch.m) {
			adds = append(adds, ch.m.Rule())
		}
	}
	batchAdded := false
	if ba, ok := c.backend.(BatchAdder); ok && len(adds) > 1 {
		batchAdded = ba.AddBatch(ctx, adds) == nil
	}
	var puts []Mapping
	for i := range applies {
		a := &applies[i]
		if batchAdded && needsAdd(a.ch.prev, a.ch.hadPrev, a.ch.m) {
			a.added = true
		} else {
			a.added, a.deleted, a.ch.err = c.applyBackend(ctx, a.ch.prev, a.ch.hadPrev, a.ch.m)
		}
		if a.ch.err == nil {
			puts = append(puts, a.ch.m)
		}
	}
	// One store write: the leases applied, and the removals (which go to
	// the store before the backend, as in removeBatch).
	var delKeys []Key
	for _, ch := range dels {
		delKeys = append(delKeys, ch.m.Key())
	}
	if c.store != nil && (len(puts) > 0 || len(delKeys) > 0) {
		if serr := c.store.Save(puts, delKeys); serr != nil {
			for _, a := range applies {
				if a.ch.err == nil {
					a.ch.err = c.undoBackend(ctx, a.ch.prev, a.ch.hadPrev, a.ch.m, a.added, a.deleted, serr)
				}
			}
			for _, ch := range dels {
				ch.err = fmt.Errorf("%w: %w", ErrStore, serr)
			}
			return
		}
	}
	if len(dels) == 0 {
		return
	}
	// The removals, without the store write removeBatch would make again.
	ms := make([]Mapping, len(dels))
	for i, ch := range dels {
		ms[i] = ch.m
	}
	ok, err := c.removeFromBackend(ctx, ms, false)
	for i, ch := range dels {
		if !ok[i] {
			ch.err = err
			if ch.err == nil {
				ch.err = errors.New("gateway: mapping not removed")
			}
		}
	}
}

// needsAdd reports whether applying m over prev adds m's rule to the
// backend.
func needsAdd(prev Mapping, hadPrev bool, m Mapping) bool {
	oldOn := hadPrev && prev.Enabled
	return m.Enabled && (!oldOn || prev.Rule() != m.Rule())
}
