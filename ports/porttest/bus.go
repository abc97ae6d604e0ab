package porttest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cdmdr/mirror/ports"
)

// RunBus checks that the buses newBus returns honour the ports.Bus
// contract. newBus is called once per subtest; it may return the same
// shared bus every time, since every subtest uses its own subjects and
// durable names.
func RunBus(t *testing.T, newBus func(t *testing.T) ports.Bus) {
	t.Helper()
	tests := []struct {
		name string
		run  func(t *testing.T, b ports.Bus)
	}{
		{"Deliver", testBusDeliver},
		{"PlainGetsOnlyWhileSubscribed", testBusPlainOnlyWhileSubscribed},
		{"FanOut", testBusFanOut},
		{"DurableKeepsBacklog", testBusDurableBacklog},
		{"DurableRedeliversOnError", testBusRedeliver},
		{"DurableSharedOncePerMessage", testBusShared},
		{"StopWaitsForHandler", testBusStopWaits},
		{"StopKeepsUnacknowledged", testBusStopKeepsUnacked},
		{"NoDeliveryAfterStop", testBusNoDeliveryAfterStop},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.run(t, newBus(t)) })
	}
}

// subject returns a subject unique to the test; NATS-safe.
func subject(t *testing.T, s string) string {
	t.Helper()
	return "porttest." + name(t) + "." + s
}

// durableName returns a durable name unique to the test; NATS durable
// names allow no dots.
func durableName(t *testing.T, s string) string {
	t.Helper()
	return name(t) + "_" + s
}

// inbox collects what a handler receives.
type inbox struct {
	mu   sync.Mutex
	msgs []ports.Message
	got  chan struct{} // poked on every delivery
}

func newInbox() *inbox { return &inbox{got: make(chan struct{}, 1)} }

func (in *inbox) handle(_ context.Context, m ports.Message) error {
	in.mu.Lock()
	in.msgs = append(in.msgs, m)
	in.mu.Unlock()
	select {
	case in.got <- struct{}{}:
	default:
	}
	return nil
}

func (in *inbox) data() []string {
	in.mu.Lock()
	defer in.mu.Unlock()
	out := make([]string, len(in.msgs))
	for i, m := range in.msgs {
		out[i] = string(m.Data)
	}
	return out
}

// waitFor waits until the inbox holds at least n messages.
func (in *inbox) waitFor(t *testing.T, n int) []string {
	t.Helper()
	deadline := time.After(waitTimeout)
	for {
		if got := in.data(); len(got) >= n {
			return got
		}
		select {
		case <-in.got:
		case <-deadline:
			t.Fatalf("got %q within %v, want %d messages", in.data(), waitTimeout, n)
		}
	}
}

func subscribe(t *testing.T, b ports.Bus, subj, durable string, h ports.Handler) ports.Subscription {
	t.Helper()
	s, err := b.Subscribe(t.Context(), subj, durable, h)
	if err != nil {
		t.Fatalf("Subscribe(%s, %q): %v", subj, durable, err)
	}
	t.Cleanup(func() { _ = s.Stop() })
	return s
}

func publish(t *testing.T, b ports.Bus, subj string, data ...string) {
	t.Helper()
	for _, d := range data {
		if err := b.Publish(t.Context(), subj, []byte(d)); err != nil {
			t.Fatalf("Publish(%s): %v", subj, err)
		}
	}
}

func stop(t *testing.T, s ports.Subscription) {
	t.Helper()
	if err := s.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
}

func testBusDeliver(t *testing.T, b ports.Bus) {
	subj := subject(t, "s")
	for _, durable := range []string{"", durableName(t, "d")} {
		in := newInbox()
		s := subscribe(t, b, subj, durable, in.handle)
		other, otherDurable := newInbox(), ""
		if durable != "" {
			otherDurable = durable + "_other" // durable names may be per stream
		}
		subscribe(t, b, subject(t, "other"), otherDurable, other.handle)
		publish(t, b, subj, "1", "2", "3")
		if got := in.waitFor(t, 3); !slices.Equal(got, []string{"1", "2", "3"}) {
			t.Fatalf("durable %q: got %q, want 1 2 3 in order", durable, got)
		}
		in.mu.Lock()
		for _, m := range in.msgs {
			if m.Subject != subj {
				t.Errorf("message subject %q, want %q", m.Subject, subj)
			}
		}
		in.mu.Unlock()
		stop(t, s)
		if got := other.data(); len(got) != 0 {
			t.Fatalf("a subscriber of another subject got %q", got)
		}
		subj = subject(t, "s2")
	}
}

func testBusPlainOnlyWhileSubscribed(t *testing.T, b ports.Bus) {
	subj := subject(t, "s")
	publish(t, b, subj, "before")
	in := newInbox()
	subscribe(t, b, subj, "", in.handle)
	publish(t, b, subj, "after")
	if got := in.waitFor(t, 1); got[0] != "after" {
		t.Fatalf("plain subscriber got %q first, want only what came after it subscribed", got)
	}
}

func testBusFanOut(t *testing.T, b ports.Bus) {
	subj := subject(t, "s")
	ins := []*inbox{newInbox(), newInbox(), newInbox(), newInbox()}
	subscribe(t, b, subj, "", ins[0].handle)
	subscribe(t, b, subj, "", ins[1].handle)
	subscribe(t, b, subj, durableName(t, "a"), ins[2].handle)
	subscribe(t, b, subj, durableName(t, "b"), ins[3].handle)
	publish(t, b, subj, "1", "2")
	for i, in := range ins {
		got := in.waitFor(t, 2)
		slices.Sort(got)
		if !slices.Equal(got, []string{"1", "2"}) {
			t.Errorf("subscriber %d got %q, want every message once", i, got)
		}
	}
}

func testBusDurableBacklog(t *testing.T, b ports.Bus) {
	subj, dur := subject(t, "s"), durableName(t, "d")
	first := newInbox()
	s := subscribe(t, b, subj, dur, first.handle)
	publish(t, b, subj, "0")
	first.waitFor(t, 1)
	stop(t, s)

	publish(t, b, subj, "1", "2") // nobody of that name is running
	in := newInbox()
	subscribe(t, b, subj, dur, in.handle)
	got := in.waitFor(t, 2)
	slices.Sort(got)
	if !slices.Equal(got, []string{"1", "2"}) {
		t.Fatalf("resubscribed durable got %q, want the backlog 1 2 (and not the acknowledged 0)", got)
	}
}

func testBusRedeliver(t *testing.T, b ports.Bus) {
	subj := subject(t, "s")
	var (
		mu       sync.Mutex
		attempts = map[string]int{}
	)
	done := make(chan struct{})
	h := func(_ context.Context, m ports.Message) error {
		mu.Lock()
		defer mu.Unlock()
		attempts[string(m.Data)]++
		if string(m.Data) == "flaky" && attempts["flaky"] < 3 {
			return errors.New("not yet")
		}
		if string(m.Data) == "flaky" {
			close(done)
		}
		return nil
	}
	subscribe(t, b, subj, durableName(t, "d"), h)
	publish(t, b, subj, "flaky", "fine")
	waitClosed(t, done, "third delivery of a failed message")
	time.Sleep(quiet)
	mu.Lock()
	defer mu.Unlock()
	if attempts["flaky"] != 3 || attempts["fine"] != 1 {
		t.Fatalf("attempts %v, want flaky 3 (two failures), fine 1", attempts)
	}
}

func testBusShared(t *testing.T, b ports.Bus) {
	subj, dur := subject(t, "s"), durableName(t, "d")
	var (
		mu   sync.Mutex
		seen = map[string]int{}
		by   = map[int]int{}
	)
	all := make(chan struct{})
	const n = 40
	handler := func(id int) ports.Handler {
		return func(_ context.Context, m ports.Message) error {
			time.Sleep(time.Millisecond) // let the other subscriber take some
			mu.Lock()
			defer mu.Unlock()
			seen[string(m.Data)]++
			by[id]++
			if len(seen) == n {
				select {
				case <-all:
				default:
					close(all)
				}
			}
			return nil
		}
	}
	subscribe(t, b, subj, dur, handler(0))
	subscribe(t, b, subj, dur, handler(1))
	for i := range n {
		publish(t, b, subj, fmt.Sprint(i))
	}
	waitClosed(t, all, "every message delivered")
	time.Sleep(quiet)
	mu.Lock()
	defer mu.Unlock()
	for d, c := range seen {
		if c != 1 {
			t.Errorf("message %s delivered %d times to one durable name, want once", d, c)
		}
	}
	if by[0]+by[1] != n {
		t.Errorf("deliveries %v, want %d in all", by, n)
	}
}

func testBusStopWaits(t *testing.T, b ports.Bus) {
	for _, durable := range []string{"", durableName(t, "d")} {
		subj := subject(t, "s"+durable)
		entered, release := make(chan struct{}), make(chan struct{})
		returned := make(chan struct{})
		s := subscribe(t, b, subj, durable, func(context.Context, ports.Message) error {
			close(entered)
			<-release
			close(returned)
			return nil
		})
		publish(t, b, subj, "m")
		waitClosed(t, entered, "handler started")
		stopped := make(chan struct{})
		go func() {
			_ = s.Stop()
			close(stopped)
		}()
		select {
		case <-stopped:
			t.Fatalf("durable %q: Stop returned while the handler was running", durable)
		case <-time.After(quiet):
		}
		close(release)
		waitClosed(t, stopped, "Stop after the handler returned")
		if !isClosed(returned) {
			t.Fatal("Stop returned before the handler")
		}
	}
}

func testBusStopKeepsUnacked(t *testing.T, b ports.Bus) {
	subj, dur := subject(t, "s"), durableName(t, "d")
	entered, release := make(chan struct{}), make(chan struct{})
	s := subscribe(t, b, subj, dur, func(ctx context.Context, _ ports.Message) error {
		close(entered)
		// Still working when the subscription stops; whether Stop cancels
		// ctx or not, the message ends unacknowledged.
		select {
		case <-ctx.Done():
		case <-release:
		}
		return errors.New("interrupted")
	})
	publish(t, b, subj, "m")
	waitClosed(t, entered, "handler started")
	stopped := make(chan struct{})
	go func() {
		_ = s.Stop()
		close(stopped)
	}()
	time.Sleep(quiet)
	close(release)
	waitClosed(t, stopped, "Stop")

	in := newInbox()
	subscribe(t, b, subj, dur, in.handle)
	if got := in.waitFor(t, 1); got[0] != "m" {
		t.Fatalf("got %q, want the unacknowledged m again", got)
	}
}

func testBusNoDeliveryAfterStop(t *testing.T, b ports.Bus) {
	for _, durable := range []string{"", durableName(t, "d")} {
		subj := subject(t, "s"+durable)
		in := newInbox()
		s := subscribe(t, b, subj, durable, in.handle)
		publish(t, b, subj, "1")
		in.waitFor(t, 1)
		stop(t, s)
		publish(t, b, subj, "2")
		time.Sleep(quiet)
		if got := in.data(); len(got) != 1 {
			t.Fatalf("durable %q: a stopped subscription got %q", durable, got)
		}
	}
}
