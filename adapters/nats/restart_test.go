package nats_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/cdmdr/mirror/adapters/nats/natstest"
	"github.com/cdmdr/mirror/ports"
)

// Subscribers survive a NATS restart: once their connection is back, a
// durable subscription receives what the cluster manager publishes (on a
// connection of its own), and so does a plain one.
func TestRestartThenPublish(t *testing.T) {
	srv := natstest.Start(t, true)
	b := newBus(t, testConfig(srv.URL()))
	durable, plain := newRecorder(), newRecorder()
	subscribe(t, b, createdSubject, "mirrord-snapshots-created", durable.handle)
	subscribe(t, b, createdSubject, "", plain.handle)

	srv.Stop()
	srv.Restart(t)
	rawPublish(t, srv.URL(), createdSubject, "after")
	durable.waitFor(t, "durable delivery after restart", func(got []string) bool { return len(got) == 1 })

	// The plain subscription is back once the bus's connection is: what is
	// published after that reaches it (what came before is lost by design).
	deadline := time.Now().Add(deliveryTimeout)
	for len(plain.snapshot()) == 0 && time.Now().Before(deadline) {
		if err := b.Publish(t.Context(), "cdm.cluster.volume_snapshot.ping", nil); err != nil {
			t.Logf("publish while reconnecting: %v", err)
		}
		rawPublish(t, srv.URL(), createdSubject, "again")
		time.Sleep(100 * time.Millisecond)
	}
	if len(plain.snapshot()) == 0 {
		t.Fatal("plain subscription got nothing after the restart")
	}
}

// A message delivered but not acknowledged before a restart is delivered
// again after it: the consumer's state is in the store.
func TestUnackedRedeliveredAfterRestart(t *testing.T) {
	srv := natstest.Start(t, true)
	cfg := testConfig(srv.URL())
	cfg.AckWait = time.Second
	cfg.RedeliveryDelay = 2 * time.Second
	b := newBus(t, cfg)

	var (
		mu       sync.Mutex
		attempts []time.Time
	)
	first, again := make(chan struct{}), make(chan struct{})
	subscribe(t, b, createdSubject, "mirrord-snapshots-created", func(context.Context, ports.Message) error {
		mu.Lock()
		defer mu.Unlock()
		attempts = append(attempts, time.Now())
		switch len(attempts) {
		case 1:
			close(first)
			return errTest // the redelivery is due after the restart
		case 2:
			close(again)
		}
		return nil
	})
	rawPublish(t, srv.URL(), createdSubject, "m")
	select {
	case <-first:
	case <-time.After(deliveryTimeout):
		t.Fatal("no first delivery")
	}
	srv.Stop()
	srv.Restart(t)
	restarted := time.Now()
	select {
	case <-again:
	case <-time.After(deliveryTimeout):
		t.Fatal("the unacknowledged message was not delivered again after the restart")
	}
	mu.Lock()
	defer mu.Unlock()
	if attempts[1].Before(restarted) {
		t.Fatalf("delivered again at %v, before the restart finished at %v", attempts[1], restarted)
	}
}
