package nats_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/cdmdr/mirror/adapters/nats/natstest"
	"github.com/cdmdr/mirror/ports"
)

func jetstreamNew(nc *nats.Conn) (jetstream.JetStream, error) { return jetstream.New(nc) }

// Without JetStream a durable name is a queue group: two daemons share the
// messages, each handled once, published with plain publishes.
func TestCoreQueueGroupShares(t *testing.T) {
	srv := natstest.Start(t, false)
	cfg := testConfig(srv.URL())
	var (
		mu   sync.Mutex
		seen = map[string]int{}
		by   = map[int]int{}
	)
	const n = 40
	all := make(chan struct{})
	for i := range 2 {
		subscribe(t, newBus(t, cfg), createdSubject, "mirrord-snapshots-created", func(_ context.Context, m ports.Message) error {
			time.Sleep(time.Millisecond)
			mu.Lock()
			defer mu.Unlock()
			seen[string(m.Data)]++
			by[i]++
			if by[0]+by[1] == n {
				close(all)
			}
			return nil
		})
	}
	for i := range n {
		rawPublish(t, srv.URL(), createdSubject, fmt.Sprint(i))
	}
	select {
	case <-all:
	case <-time.After(deliveryTimeout):
		t.Fatal("not every message delivered")
	}
	time.Sleep(100 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != n {
		t.Errorf("%d distinct messages handled, want %d", len(seen), n)
	}
	for d, c := range seen {
		if c != 1 {
			t.Errorf("message %s handled %d times, want once", d, c)
		}
	}
	if by[0] == 0 || by[1] == 0 {
		t.Errorf("handled per daemon %v, want both to take a share", by)
	}
}

// The limits of core mode, pinned so a change is noticed: what is
// published while nobody subscribes is lost, a failed message is dropped.
func TestCoreModeLimits(t *testing.T) {
	srv := natstest.Start(t, false)
	b := newBus(t, testConfig(srv.URL()))
	rawPublish(t, srv.URL(), createdSubject, "lost")
	in := newRecorder()
	in.fail = func(string, int) bool { return true }
	subscribe(t, b, createdSubject, "d", in.handle)
	rawPublish(t, srv.URL(), createdSubject, "failed")
	in.waitFor(t, "delivery", func(got []string) bool { return len(got) == 1 })
	time.Sleep(300 * time.Millisecond)
	if got := in.snapshot(); len(got) != 1 || got[0] != "failed" {
		t.Fatalf("got %q, want only the failed message, once", got)
	}
}
