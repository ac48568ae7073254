package retransmit

import (
	"context"
	"errors"
	"net"
	"testing"
	"testing/synctest"
	"time"
)

// doubling is RFC 6886's schedule from 250 ms.
func doubling() func() time.Duration {
	w := 250 * time.Millisecond
	return func() time.Duration { d := w; w *= 2; return d }
}

// The request goes out again after each wait; packets that do not answer
// it are skipped; the exchange ends with the first one match accepts.
// net.Pipe keeps it in memory, where synctest's clock applies.
func TestExchangeRetransmitsUntilAnswered(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		client, server := net.Pipe()
		defer client.Close()
		defer server.Close()
		start := time.Now()
		var sentAt []time.Duration
		go func() {
			buf := make([]byte, 16)
			for i := 0; ; i++ {
				if _, err := server.Read(buf); err != nil {
					return
				}
				sentAt = append(sentAt, time.Since(start))
				if i == 2 { // the third copy gets a stray packet, then the answer
					server.Write([]byte("stray"))
					server.Write([]byte("answer"))
				}
			}
		}()
		var first time.Time
		err := Exchange(context.Background(), client, []byte("req"), Options{Tries: 9, Wait: doubling(), BufSize: 16, Name: "test"},
			func(b []byte, firstSent time.Time) bool {
				first = firstSent
				return string(b) == "answer"
			})
		if err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		want := []time.Duration{0, 250 * time.Millisecond, 750 * time.Millisecond}
		if len(sentAt) != len(want) {
			t.Fatalf("sent at %v, want %v", sentAt, want)
		}
		for i := range want {
			if sentAt[i] != want[i] {
				t.Errorf("copy %d sent at %v, want %v", i, sentAt[i], want[i])
			}
		}
		if !first.Equal(start) {
			t.Errorf("first sent at %v, want the start", first.Sub(start))
		}
	})
}

func TestExchangeExhaustedAndCancelled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		client, server := net.Pipe()
		defer client.Close()
		defer server.Close()
		go func() { // reads and never answers
			buf := make([]byte, 16)
			for {
				if _, err := server.Read(buf); err != nil {
					return
				}
			}
		}()
		never := func([]byte, time.Time) bool { return false }
		err := Exchange(context.Background(), client, []byte("req"), Options{Tries: 3, Wait: doubling(), BufSize: 16}, never)
		var ex *Exhausted
		if !errors.As(err, &ex) || ex.Tries != 3 || ex.Waited != 1750*time.Millisecond {
			t.Errorf("err = %v, want 3 attempts over 1.75s", err)
		}

		ctx, cancel := context.WithTimeout(context.Background(), 400*time.Millisecond)
		defer cancel()
		err = Exchange(ctx, client, []byte("req"), Options{Tries: 9, Wait: doubling(), BufSize: 16}, never)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("err = %v, want the context's deadline", err)
		}
	})
}
