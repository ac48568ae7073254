package gateway

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
)

// EventKind says what happened to a mapping.
type EventKind uint8

const (
	EventAdded   EventKind = iota + 1 // a new mapping
	EventUpdated                      // a refresh or change of an existing mapping
	EventDeleted                      // removed on request (or by Close with flush)
	EventExpired                      // removed because its lease ended
)

func (k EventKind) String() string {
	switch k {
	case EventAdded:
		return "added"
	case EventUpdated:
		return "updated"
	case EventDeleted:
		return "deleted"
	case EventExpired:
		return "expired"
	}
	return fmt.Sprintf("event(%d)", uint8(k))
}

// Event is a change to the table, for GENA eventing
// (PortMappingNumberOfEntries) and the admin page.
type Event struct {
	Kind    EventKind
	Mapping Mapping
	// Count is the number of mappings on the gateway's own external
	// address right after the change: the table's size without an
	// external pool (UPnP's PortMappingNumberOfEntries; Core.OwnAddrLen).
	Count int
	// Missed is how many events were dropped just before this one because
	// subscribers fell too far behind; a subscriber that sees it non-zero
	// should re-read the table.
	Missed int
}

// maxQueuedEvents bounds the events waiting for delivery, so that a stuck
// subscriber costs bounded memory instead of growing the queue forever.
const maxQueuedEvents = 1 << 16

// dispatcher delivers events to subscribers on one goroutine, in the order
// the changes were committed. Publishing never blocks the Core.
type dispatcher struct {
	mu     sync.Mutex
	subs   []*subscriber // copy-on-write: the delivery loop reads a snapshot
	queue  []Event
	spare  []Event
	limit  int
	missed int
	closed bool
	wake   chan struct{}
	done   chan struct{}
}

type subscriber struct {
	f         func(Event)
	cancelled atomic.Bool
}

func newDispatcher(limit int) *dispatcher {
	d := &dispatcher{limit: limit, wake: make(chan struct{}, 1), done: make(chan struct{})}
	go d.run()
	return d
}

func (d *dispatcher) subscribe(f func(Event)) (cancel func()) {
	s := &subscriber{f: f}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return func() {}
	}
	d.subs = append(d.subs[:len(d.subs):len(d.subs)], s)
	return func() {
		s.cancelled.Store(true)
		d.mu.Lock()
		defer d.mu.Unlock()
		for i, x := range d.subs {
			if x == s {
				n := make([]*subscriber, 0, len(d.subs)-1)
				d.subs = append(append(n, d.subs[:i]...), d.subs[i+1:]...)
				break
			}
		}
	}
}

// publish queues e. With no subscribers it does nothing.
func (d *dispatcher) publish(e Event) {
	d.mu.Lock()
	if d.closed || len(d.subs) == 0 {
		d.mu.Unlock()
		return
	}
	if len(d.queue) >= d.limit {
		d.missed++
		d.mu.Unlock()
		return
	}
	e.Missed, d.missed = d.missed, 0
	d.queue = append(d.queue, e)
	d.mu.Unlock()
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

func (d *dispatcher) run() {
	defer close(d.done)
	for {
		d.mu.Lock()
		for len(d.queue) == 0 {
			if d.closed {
				d.mu.Unlock()
				return
			}
			d.mu.Unlock()
			<-d.wake
			d.mu.Lock()
		}
		batch := d.queue
		d.queue = d.spare[:0]
		subs := d.subs
		d.mu.Unlock()

		for i := range batch {
			for _, s := range subs {
				if !s.cancelled.Load() {
					s.f(batch[i])
				}
			}
		}
		clear(batch)
		d.mu.Lock()
		d.spare = batch[:0]
		d.mu.Unlock()
	}
}

// close delivers the events already queued, then stops the goroutine. It
// must not be called from a subscriber, which runs on that goroutine.
func (d *dispatcher) close(ctx context.Context) error {
	d.mu.Lock()
	d.closed = true
	d.mu.Unlock()
	select {
	case d.wake <- struct{}{}:
	default:
	}
	select {
	case <-d.done:
		return nil
	case <-ctx.Done():
		return ctxErr(ctx.Err(), "event subscribers to finish")
	}
}
