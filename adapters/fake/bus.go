package fake

import (
	"bytes"
	"context"
	"sync"
	"time"

	"github.com/cdmdr/mirror/ports"
)

var _ ports.Bus = (*Bus)(nil)

// DefaultRedeliveryDelay is how long a durable subscriber that failed a
// message waits before taking the next one, so a handler that always fails
// does not spin.
const DefaultRedeliveryDelay = 10 * time.Millisecond

// Bus is an in-memory ports.Bus with JetStream-like durable subscriptions:
// every subject keeps all it was sent, a durable name first subscribed gets
// everything published on the subject so far (like a consumer with
// DeliverAll), and its queue lives on while no subscriber runs.
type Bus struct {
	mu        sync.Mutex
	fail      error
	delay     time.Duration
	published map[string][]ports.Message
	plain     map[string]map[*subscription]struct{}
	durables  map[durableKey]*queue
}

type durableKey struct{ subject, name string }

// queue holds messages waiting for delivery: a plain subscription's own, or
// the one shared by every subscriber of a durable name.
type queue struct {
	msgs []ports.Message
	subs map[*subscription]struct{}
}

// NewBus returns an empty bus.
func NewBus() *Bus {
	return &Bus{
		delay:     DefaultRedeliveryDelay,
		published: map[string][]ports.Message{},
		plain:     map[string]map[*subscription]struct{}{},
		durables:  map[durableKey]*queue{},
	}
}

// Publish implements ports.Bus.
func (b *Bus) Publish(ctx context.Context, subject string, data []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.fail != nil {
		return b.fail
	}
	msg := ports.Message{Subject: subject, Data: bytes.Clone(data)}
	b.published[subject] = append(b.published[subject], msg)
	for s := range b.plain[subject] {
		s.q.push(msg)
	}
	for k, q := range b.durables {
		if k.subject == subject {
			q.push(msg)
		}
	}
	return nil
}

// Subscribe implements ports.Bus. A handler must not call Stop on its own
// subscription (Stop waits for the handler).
func (b *Bus) Subscribe(ctx context.Context, subject, durable string, h ports.Handler) (ports.Subscription, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.fail != nil {
		return nil, b.fail
	}
	sctx, cancel := context.WithCancel(ctx)
	s := &subscription{
		bus: b, h: h, durable: durable != "", ctx: sctx, cancel: cancel,
		wake: make(chan struct{}, 1), done: make(chan struct{}),
	}
	if s.durable {
		k := durableKey{subject, durable}
		q := b.durables[k]
		if q == nil {
			q = &queue{subs: map[*subscription]struct{}{}}
			q.msgs = cloneMessages(b.published[subject])
			b.durables[k] = q
		}
		s.q = q
	} else {
		s.q = &queue{subs: map[*subscription]struct{}{}}
		if b.plain[subject] == nil {
			b.plain[subject] = map[*subscription]struct{}{}
		}
		b.plain[subject][s] = struct{}{}
		s.unlist = func() { delete(b.plain[subject], s) }
	}
	s.q.subs[s] = struct{}{}
	s.poke()
	go s.run()
	return s, nil
}

// Published returns every message published on subject, in order.
func (b *Bus) Published(subject string) [][]byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out [][]byte
	for _, m := range b.published[subject] {
		out = append(out, bytes.Clone(m.Data))
	}
	return out
}

// All returns every message published, on every subject.
func (b *Bus) All() []ports.Message {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []ports.Message
	for _, ms := range b.published {
		for _, m := range ms {
			m.Data = bytes.Clone(m.Data)
			out = append(out, m)
		}
	}
	return out
}

// Pending returns how many messages wait in the queue of a durable name.
func (b *Bus) Pending(subject, durable string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	if q := b.durables[durableKey{subject, durable}]; q != nil {
		return len(q.msgs)
	}
	return 0
}

// SetFailure makes Publish and Subscribe fail with err until cleared with
// nil. Running subscriptions go on.
func (b *Bus) SetFailure(err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.fail = err
}

// SetRedeliveryDelay sets how long a durable subscriber pauses after a
// failed message (DefaultRedeliveryDelay unless set).
func (b *Bus) SetRedeliveryDelay(d time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.delay = d
}

// push appends msg and wakes the queue's subscribers. Callers hold b.mu.
func (q *queue) push(msg ports.Message) {
	q.msgs = append(q.msgs, msg)
	for s := range q.subs {
		s.poke()
	}
}

type subscription struct {
	bus     *Bus
	q       *queue
	h       ports.Handler
	durable bool
	unlist  func() // guarded by bus.mu
	ctx     context.Context
	cancel  context.CancelFunc
	wake    chan struct{}
	done    chan struct{}
}

// Stop implements ports.Subscription. The handler's ctx is cancelled so it
// can return promptly.
func (s *subscription) Stop() error {
	s.cancel()
	<-s.done
	return nil
}

func (s *subscription) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *subscription) run() {
	defer close(s.done)
	defer s.detach()
	for {
		msg, ok := s.next()
		if !ok {
			select {
			case <-s.wake:
				continue
			case <-s.ctx.Done():
				return
			}
		}
		if err := s.h(s.ctx, msg); err == nil || !s.durable {
			continue
		}
		s.bus.mu.Lock()
		s.q.push(msg)
		delay := s.bus.delay
		s.bus.mu.Unlock()
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-s.ctx.Done():
			t.Stop()
			return
		}
	}
}

// next takes the first queued message, unless the subscription is stopping.
func (s *subscription) next() (ports.Message, bool) {
	s.bus.mu.Lock()
	defer s.bus.mu.Unlock()
	if s.ctx.Err() != nil || len(s.q.msgs) == 0 {
		return ports.Message{}, false
	}
	msg := s.q.msgs[0]
	s.q.msgs = s.q.msgs[1:]
	msg.Data = bytes.Clone(msg.Data)
	return msg, true
}

func (s *subscription) detach() {
	s.bus.mu.Lock()
	defer s.bus.mu.Unlock()
	delete(s.q.subs, s)
	if s.unlist != nil {
		s.unlist()
	}
}

func cloneMessages(msgs []ports.Message) []ports.Message {
	out := make([]ports.Message, len(msgs))
	for i, m := range msgs {
		out[i] = ports.Message{Subject: m.Subject, Data: bytes.Clone(m.Data)}
	}
	return out
}
