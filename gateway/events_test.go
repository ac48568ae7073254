package gateway

import (
	"context"
	"testing"
	"time"
)

func TestDispatcherDropsAndCountsWhenSubscriberLags(t *testing.T) {
	d := newDispatcher(2)
	release := make(chan struct{})
	got := make(chan Event, 16)
	d.subscribe(func(e Event) {
		<-release
		got <- e
	})
	for i := 1; i <= 6; i++ {
		d.publish(Event{Kind: EventAdded, Count: i})
		if i == 1 {
			// Wait until the first event is being delivered (and blocked),
			// so that the queue holds exactly what follows.
			for {
				d.mu.Lock()
				n := len(d.queue)
				d.mu.Unlock()
				if n == 0 {
					break
				}
				time.Sleep(time.Millisecond)
			}
		}
	}
	close(release)
	var counts []int
	var missed []int
	for range 3 {
		select {
		case e := <-got:
			counts = append(counts, e.Count)
			missed = append(missed, e.Missed)
		case <-time.After(5 * time.Second):
			t.Fatalf("delivered %v, want 3 events", counts)
		}
	}
	// 1 was in delivery, 2 and 3 queued, 4-6 dropped; nothing follows to
	// carry the count, so publish one more.
	d.publish(Event{Kind: EventAdded, Count: 7})
	e := <-got
	if counts[0] != 1 || counts[1] != 2 || counts[2] != 3 || e.Count != 7 || e.Missed != 3 {
		t.Errorf("delivered %v then %d (Missed %d); want 1 2 3 then 7 with Missed 3", counts, e.Count, e.Missed)
	}
	if err := d.close(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestDispatcherCancel(t *testing.T) {
	d := newDispatcher(16)
	got := make(chan int, 16)
	cancel := d.subscribe(func(e Event) { got <- e.Count })
	d.publish(Event{Count: 1})
	if n := <-got; n != 1 {
		t.Fatalf("got %d", n)
	}
	cancel()
	d.publish(Event{Count: 2})
	d.close(context.Background()) // delivers anything queued before returning
	select {
	case n := <-got:
		t.Errorf("event %d delivered after cancel", n)
	default:
	}
	if c := d.subscribe(func(Event) {}); c == nil {
		t.Error("subscribe after close returned a nil cancel")
	}
}
