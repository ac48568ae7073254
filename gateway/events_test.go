package gateway

import (
	"context"
	"slices"
	"testing"
	"time"
)

// A subscriber that lags loses the events that overflow its queue, and the
// next event delivered to it says how many it missed.
func TestDispatcherDropsAndCountsWhenSubscriberLags(t *testing.T) {
	d := newDispatcher(2)
	release := make(chan struct{})
	delivering := make(chan int, 16)
	got := make(chan Event, 16)
	d.subscribe(func(e Event) {
		delivering <- e.Count
		<-release
		got <- e
	})
	d.publish(Event{Kind: EventAdded, Count: 1})
	// 1 is in delivery, blocked: the queue is empty, and holds exactly
	// what follows.
	if n := <-delivering; n != 1 {
		t.Fatalf("delivering %d first, want 1", n)
	}
	for i := 2; i <= 6; i++ {
		d.publish(Event{Kind: EventAdded, Count: i})
	}
	close(release)
	type delivery struct{ count, missed int }
	var seen []delivery
	for range 3 {
		select {
		case e := <-got:
			seen = append(seen, delivery{e.Count, e.Missed})
		case <-time.After(5 * time.Second):
			t.Fatalf("delivered %v, want 3 events", seen)
		}
	}
	// 1 was in delivery, 2 and 3 queued, 4-6 dropped, and none of the
	// three delivered knew of a loss yet. Nothing follows to carry the
	// count, so publish one more.
	d.publish(Event{Kind: EventAdded, Count: 7})
	e := <-got
	seen = append(seen, delivery{e.Count, e.Missed})
	if want := []delivery{{1, 0}, {2, 0}, {3, 0}, {7, 3}}; !slices.Equal(seen, want) {
		t.Errorf("delivered (count, missed) %v; want %v", seen, want)
	}
	if err := d.close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(delivering) != 3 {
		t.Errorf("%d more deliveries began, want 3 (2, 3 and 7)", len(delivering))
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
