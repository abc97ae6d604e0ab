package nats_test

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	mnats "github.com/cdmdr/mirror/adapters/nats"
	"github.com/cdmdr/mirror/adapters/nats/natstest"
	"github.com/cdmdr/mirror/ports"
)

// deliveryTimeout bounds every wait for a delivery, reconnects included.
const deliveryTimeout = 15 * time.Second

// testConfig is quick to redeliver and reconnect, and captures the test
// subjects besides the default snapshot subjects.
func testConfig(url string) mnats.Config {
	return mnats.Config{
		URL:             url,
		ReconnectWait:   100 * time.Millisecond,
		StreamSubjects:  []string{"cdm.cluster.volume_snapshot.>", "porttest.>", "test.>"},
		AckWait:         2 * time.Second,
		RedeliveryDelay: 50 * time.Millisecond,
	}
}

// connect dials cfg.URL, closed when the test ends.
func connect(t *testing.T, cfg mnats.Config, log *slog.Logger) *nats.Conn {
	t.Helper()
	nc, cleanup, err := mnats.Connect(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cleanup)
	return nc
}

// newBus connects and returns a bus on its own connection.
func newBus(t *testing.T, cfg mnats.Config) *mnats.Bus {
	t.Helper()
	log := natstest.Logger()
	b, err := mnats.NewBus(t.Context(), connect(t, cfg, log), cfg, log)
	if err != nil {
		t.Fatalf("NewBus: %v", err)
	}
	return b
}

// rawPublish publishes like the cluster manager: a plain core-NATS publish
// on a connection of its own.
func rawPublish(t *testing.T, url, subject string, data ...string) {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	for _, d := range data {
		if err := nc.Publish(subject, []byte(d)); err != nil {
			t.Fatal(err)
		}
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
}

// recorder collects deliveries; fail decides whether a delivery fails.
type recorder struct {
	mu   sync.Mutex
	got  []string
	fail func(data string, attempt int) bool
	poke chan struct{}
}

func newRecorder() *recorder { return &recorder{poke: make(chan struct{}, 1)} }

func (r *recorder) handle(_ context.Context, m ports.Message) error {
	r.mu.Lock()
	r.got = append(r.got, string(m.Data))
	attempt := 0
	for _, g := range r.got {
		if g == string(m.Data) {
			attempt++
		}
	}
	fail := r.fail != nil && r.fail(string(m.Data), attempt)
	r.mu.Unlock()
	select {
	case r.poke <- struct{}{}:
	default:
	}
	if fail {
		return errTest
	}
	return nil
}

func (r *recorder) snapshot() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got)
}

// waitFor waits until ok holds for what was delivered.
func (r *recorder) waitFor(t *testing.T, what string, ok func(got []string) bool) []string {
	t.Helper()
	deadline := time.After(deliveryTimeout)
	for {
		if got := r.snapshot(); ok(got) {
			return got
		}
		select {
		case <-r.poke:
		case <-deadline:
			t.Fatalf("%s: got %q within %v", what, r.snapshot(), deliveryTimeout)
		}
	}
}

func count(got []string, d string) int {
	n := 0
	for _, g := range got {
		if g == d {
			n++
		}
	}
	return n
}

type testError string

func (e testError) Error() string { return string(e) }

const errTest = testError("handler failed on purpose")

func subscribe(t *testing.T, b ports.Bus, subject, durable string, h ports.Handler) ports.Subscription {
	t.Helper()
	s, err := b.Subscribe(t.Context(), subject, durable, h)
	if err != nil {
		t.Fatalf("Subscribe(%s, %q): %v", subject, durable, err)
	}
	t.Cleanup(func() { _ = s.Stop() })
	return s
}
