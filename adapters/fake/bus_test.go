package fake_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/cdmdr/mirror/adapters/fake"
	"github.com/cdmdr/mirror/ports"
	"github.com/cdmdr/mirror/ports/porttest"
)

func TestBusConformance(t *testing.T) {
	porttest.RunBus(t, func(*testing.T) ports.Bus { return fake.NewBus() })
}

func TestBusConformanceShared(t *testing.T) {
	b := fake.NewBus()
	porttest.RunBus(t, func(*testing.T) ports.Bus { return b })
}

// Like a JetStream consumer with DeliverAll, a durable name subscribed for
// the first time gets what the subject carried before (events missed while
// every daemon was down are not lost).
func TestBusNewDurableGetsHistory(t *testing.T) {
	ctx := t.Context()
	b := fake.NewBus()
	_ = b.Publish(ctx, "s", []byte("early"))
	got := make(chan string, 1)
	s, err := b.Subscribe(ctx, "s", "d", func(_ context.Context, m ports.Message) error {
		got <- string(m.Data)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	select {
	case d := <-got:
		if d != "early" {
			t.Fatalf("got %q", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no delivery")
	}
}

func TestBusHelpers(t *testing.T) {
	ctx := t.Context()
	b := fake.NewBus()
	_ = b.Publish(ctx, "s", []byte("1"))
	_ = b.Publish(ctx, "t", []byte("x"))
	_ = b.Publish(ctx, "s", []byte("2"))
	if got := b.Published("s"); len(got) != 2 || string(got[0]) != "1" || string(got[1]) != "2" {
		t.Fatalf("Published(s) = %q", got)
	}
	boom := errors.New("boom")
	b.SetFailure(boom)
	if err := b.Publish(ctx, "s", nil); !errors.Is(err, boom) {
		t.Fatalf("Publish = %v, want boom", err)
	}
	if _, err := b.Subscribe(ctx, "s", "", func(context.Context, ports.Message) error { return nil }); !errors.Is(err, boom) {
		t.Fatalf("Subscribe = %v, want boom", err)
	}
	b.SetFailure(nil)

	// A stopped durable keeps its queue.
	s, _ := b.Subscribe(ctx, "q", "d", func(context.Context, ports.Message) error { return nil })
	_ = s.Stop()
	_ = b.Publish(ctx, "q", []byte("a"))
	if n := b.Pending("q", "d"); n != 1 {
		t.Fatalf("Pending = %d, want 1", n)
	}
	if got := b.Published("s"); !slices.Equal([]string{string(got[0]), string(got[1])}, []string{"1", "2"}) {
		t.Fatal("failed publish was recorded")
	}
}

func TestBusSubscriptionEndsWithCtx(t *testing.T) {
	b := fake.NewBus()
	ctx, cancel := context.WithCancel(t.Context())
	s, _ := b.Subscribe(ctx, "s", "d", func(context.Context, ports.Message) error { return nil })
	cancel()
	// Stop after ctx ended still returns (and goleak checks the goroutine).
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
}
