package nats_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	mnats "github.com/cdmdr/mirror/adapters/nats"
	"github.com/cdmdr/mirror/adapters/nats/natstest"
	"github.com/cdmdr/mirror/ports"
)

const createdSubject = "cdm.cluster.volume_snapshot.created"

// What the cluster manager publishes with plain core-NATS publishes while
// no daemon subscribes is kept by the stream and delivered once one does;
// a failed delivery comes again.
func TestDurableGetsWhatWasPublishedBefore(t *testing.T) {
	srv := natstest.Start(t, true)
	cfg := testConfig(srv.URL())
	cfg.StreamSubjects = nil // the default: the snapshot subjects
	b := newBus(t, cfg)      // a daemon ran once: the stream exists
	rawPublish(t, srv.URL(), createdSubject, "s1", "s2")

	in := newRecorder()
	in.fail = func(d string, attempt int) bool { return d == "s1" && attempt == 1 }
	subscribe(t, b, createdSubject, "mirrord-snapshots-created", in.handle)
	got := in.waitFor(t, "backlog, s1 twice", func(got []string) bool { return count(got, "s1") == 2 && count(got, "s2") == 1 })
	time.Sleep(200 * time.Millisecond)
	if got = in.snapshot(); count(got, "s1") != 2 || count(got, "s2") != 1 {
		t.Fatalf("got %q, want s1 twice (failed once) and s2 once", got)
	}
}

// Two daemons, each with its own connection and bus, share a durable name:
// each message is handled once, by one of them.
func TestDurableSharedByTwoDaemons(t *testing.T) {
	srv := natstest.Start(t, true)
	cfg := testConfig(srv.URL())
	daemons := []*mnats.Bus{newBus(t, cfg), newBus(t, cfg)}
	var (
		mu   sync.Mutex
		seen = map[string]int{}
		by   = map[int]int{}
	)
	all := make(chan struct{})
	const n = 40
	for i, b := range daemons {
		subscribe(t, b, "test.shared", "mirrord", func(_ context.Context, m ports.Message) error {
			time.Sleep(2 * time.Millisecond)
			mu.Lock()
			defer mu.Unlock()
			seen[string(m.Data)]++
			by[i]++
			if len(seen) == n && by[0]+by[1] == n {
				close(all)
			}
			return nil
		})
	}
	for i := range n {
		rawPublish(t, srv.URL(), "test.shared", fmt.Sprint(i))
	}
	select {
	case <-all:
	case <-time.After(deliveryTimeout):
		t.Fatal("not every message delivered")
	}
	time.Sleep(200 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	for d, c := range seen {
		if c != 1 {
			t.Errorf("message %s handled %d times, want once", d, c)
		}
	}
	if by[0] == 0 || by[1] == 0 {
		t.Errorf("handled per daemon %v, want both to take a share", by)
	}
}

// A handler slower than the ack wait keeps its message: it is not
// delivered to the other daemon meanwhile.
func TestSlowHandlerKeepsItsMessage(t *testing.T) {
	srv := natstest.Start(t, true)
	cfg := testConfig(srv.URL())
	cfg.AckWait = 400 * time.Millisecond
	var (
		mu    sync.Mutex
		count int
	)
	h := func(context.Context, ports.Message) error {
		mu.Lock()
		count++
		mu.Unlock()
		time.Sleep(3 * cfg.AckWait)
		return nil
	}
	subscribe(t, newBus(t, cfg), "test.slow", "d", h)
	subscribe(t, newBus(t, cfg), "test.slow", "d", h)
	rawPublish(t, srv.URL(), "test.slow", "m")
	time.Sleep(5 * cfg.AckWait)
	mu.Lock()
	defer mu.Unlock()
	if count != 1 {
		t.Fatalf("handled %d times, want once", count)
	}
}

// A durable subscription is on a subject the stream captures; elsewhere
// mode jetstream refuses it and mode auto makes it a queue group.
func TestDurableOutsideTheStream(t *testing.T) {
	srv := natstest.Start(t, true)
	cfg := testConfig(srv.URL())
	cfg.Mode = mnats.ModeJetStream
	if _, err := newBus(t, cfg).Subscribe(t.Context(), "elsewhere.x", "d", newRecorder().handle); err == nil {
		t.Fatal("mode jetstream: durable subscription outside the stream accepted")
	}
	cfg.Mode = mnats.ModeAuto
	b := newBus(t, cfg)
	in := newRecorder()
	subscribe(t, b, "elsewhere.x", "d", in.handle)
	if err := b.Publish(t.Context(), "elsewhere.x", []byte("m")); err != nil {
		t.Fatal(err)
	}
	in.waitFor(t, "queue group delivery", func(got []string) bool { return len(got) == 1 })
}

// The daemon's own events are not captured by the stream: a core publish
// that plain subscribers get, and that the stream does not keep.
func TestPublishOutsideTheStream(t *testing.T) {
	srv := natstest.Start(t, true)
	cfg := testConfig(srv.URL())
	b := newBus(t, cfg)
	in := newRecorder()
	subscribe(t, b, "cdm.dr.mirror.event", "", in.handle)
	if err := b.Publish(t.Context(), "cdm.dr.mirror.event", []byte(`{"code":"x"}`)); err != nil {
		t.Fatal(err)
	}
	in.waitFor(t, "event", func(got []string) bool { return len(got) == 1 })

	nc := connect(t, cfg, natstest.Logger())
	js, err := jetstreamNew(nc)
	if err != nil {
		t.Fatal(err)
	}
	s, err := js.Stream(t.Context(), mnats.DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	if info, err := s.Info(t.Context()); err != nil || info.State.Msgs != 0 {
		t.Fatalf("stream holds %v messages (err %v), want none", info.State.Msgs, err)
	}
}

// Stop is idempotent, and returns promptly after the connection closed.
func TestStopAfterConnectionClosed(t *testing.T) {
	srv := natstest.Start(t, true)
	cfg := testConfig(srv.URL())
	log := natstest.Logger()
	nc, cleanup, err := mnats.Connect(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	b, err := mnats.NewBus(t.Context(), nc, cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	var subs []ports.Subscription
	for _, durable := range []string{"", "d"} {
		s, err := b.Subscribe(t.Context(), "test.stop", durable, newRecorder().handle)
		if err != nil {
			t.Fatal(err)
		}
		subs = append(subs, s)
	}
	cleanup()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for _, s := range subs {
			_ = s.Stop()
			_ = s.Stop()
		}
	}()
	select {
	case <-done:
	case <-time.After(deliveryTimeout):
		t.Fatal("Stop hangs after the connection closed")
	}
	if err := b.Publish(t.Context(), "test.stop", []byte("m")); err == nil {
		t.Fatal("Publish on a closed connection succeeded")
	}
}

// Ending the Subscribe ctx stops the subscription.
func TestSubscribeCtxEnds(t *testing.T) {
	srv := natstest.Start(t, true)
	b := newBus(t, testConfig(srv.URL()))
	for _, durable := range []string{"", "d"} {
		// A subject of its own per case: the stream keeps what the first
		// case publishes, and a durable consumer of the same subject would
		// be handed it at once, before its ctx ends.
		subject := "test.ctx.plain"
		if durable != "" {
			subject = "test.ctx.durable"
		}
		ctx, cancel := context.WithCancel(t.Context())
		in := newRecorder()
		s, err := b.Subscribe(ctx, subject, durable, in.handle)
		if err != nil {
			t.Fatal(err)
		}
		cancel()
		_ = s.Stop() // waits for the stop the ctx started
		if err := b.Publish(t.Context(), subject, []byte("m")); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
		if got := in.snapshot(); len(got) != 0 {
			t.Fatalf("durable %q: got %q after ctx ended", durable, got)
		}
	}
}

// A durable subscription whose consumer, or whole stream, is deleted under
// it (by an operator, say) creates it again and goes on.
func TestDurableSurvivesDeletion(t *testing.T) {
	srv := natstest.Start(t, true)
	cfg := testConfig(srv.URL())
	b := newBus(t, cfg)
	in := newRecorder()
	subscribe(t, b, "test.deleted", "d", in.handle)
	js, err := jetstreamNew(connect(t, cfg, natstest.Logger()))
	if err != nil {
		t.Fatal(err)
	}
	rawPublish(t, srv.URL(), "test.deleted", "before")
	in.waitFor(t, "first delivery", func(got []string) bool { return len(got) == 1 })

	for _, what := range []string{"consumer", "stream"} {
		s, err := js.Stream(t.Context(), mnats.DefaultStream)
		if err != nil {
			t.Fatal(err)
		}
		if what == "consumer" {
			names := s.ConsumerNames(t.Context())
			for name := range names.Name() {
				if err := s.DeleteConsumer(t.Context(), name); err != nil {
					t.Fatal(err)
				}
			}
		} else if err := js.DeleteStream(t.Context(), mnats.DefaultStream); err != nil {
			t.Fatal(err)
		}
		n := len(in.snapshot())
		deadline := time.Now().Add(deliveryTimeout)
		for len(in.snapshot()) == n && time.Now().Before(deadline) {
			rawPublish(t, srv.URL(), "test.deleted", "after "+what+" deleted")
			time.Sleep(200 * time.Millisecond)
		}
		if len(in.snapshot()) == n {
			t.Fatalf("nothing delivered after the %s was deleted", what)
		}
	}
}

// Ending the Subscribe ctx from a goroutine nothing orders after
// Subscribe (as a signal does in the daemon) stops the subscription
// without a data race (the race detector caught Stop reading what
// Subscribe wrote after arming the ctx's callback).
func TestSubscribeCtxEndedElsewhere(t *testing.T) {
	srv := natstest.Start(t, true)
	b := newBus(t, testConfig(srv.URL()))
	for _, durable := range []string{"", "d"} {
		ctx, cancel := context.WithCancel(t.Context())
		ended := make(chan struct{})
		go func() {
			time.Sleep(300 * time.Millisecond) // after Subscribe, unordered with it
			cancel()
			close(ended)
		}()
		s, err := b.Subscribe(ctx, "test.ctx.elsewhere", durable, newRecorder().handle)
		if err != nil {
			t.Fatal(err)
		}
		<-ended
		time.Sleep(200 * time.Millisecond) // the stop the ctx started runs, not ours
		_ = s.Stop()
	}
}
