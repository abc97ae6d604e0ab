package nats

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/cdmdr/mirror/ports"
)

// closeWait bounds how long Stop waits for the client library to release a
// subscription after the handler returned; it never bounds the handler.
const closeWait = 5 * time.Second

// A durable subscription that stopped consuming on its own (its consumer
// or stream deleted, say) tries again after resumeDelay, doubling up to
// maxResumeDelay.
const (
	resumeDelay    = time.Second
	maxResumeDelay = 30 * time.Second
)

// A pull request lives pullExpiry and the server sends a heartbeat every
// pullHeartbeat while one waits. Two missed heartbeats make the client
// library pull again and make run look whether the consumer is gone. The
// library's defaults (30 s, 15 s) leave a subscription idle for 30 s when
// a pull is lost: nats.go v1.55 skips the next pull when a message arrives
// before its own previous pull request was marked sent (seen under load
// with one message per pull), and a deleted stream answers nothing.
const (
	pullExpiry    = 10 * time.Second
	pullHeartbeat = 2 * time.Second
)

// coreSub is a plain or queue-group subscription.
type coreSub struct {
	sub     *nats.Subscription
	ctx     context.Context
	cancel  context.CancelFunc
	unwatch func() bool
	mu      sync.Mutex // held while the handler runs
	closed  chan struct{}
	once    sync.Once
}

func (b *Bus) subscribeCore(ctx context.Context, subject, durable string, h ports.Handler) (*coreSub, error) {
	sctx, cancel := context.WithCancel(ctx)
	s := &coreSub{ctx: sctx, cancel: cancel, closed: make(chan struct{})}
	queue := ""
	if durable != "" {
		queue = sanitizeDurable(durable)
	}
	log := b.log.With("subject", subject, "durable", durable)
	cb := func(m *nats.Msg) {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.ctx.Err() != nil {
			return // stopping
		}
		if err := h(s.ctx, ports.Message{Subject: m.Subject, Data: m.Data}); err != nil {
			if queue != "" {
				log.Warn("bus message dropped: handler failed and core nats cannot redeliver", "err", err)
			} else {
				log.Debug("bus message dropped: handler failed", "err", err)
			}
		}
	}
	var err error
	if queue == "" {
		s.sub, err = b.nc.Subscribe(subject, cb)
	} else {
		s.sub, err = b.nc.QueueSubscribe(subject, queue, cb)
	}
	if err != nil {
		cancel()
		return nil, fmt.Errorf("subscribe to %s: %w", subject, err)
	}
	s.sub.SetClosedHandler(func(string) { close(s.closed) })
	// The callback may run before unwatch is set: it stops without it.
	s.unwatch = context.AfterFunc(ctx, s.stop)
	// A round trip, so the server has the subscription once Subscribe
	// returns: core NATS keeps nothing for a subscription not yet there.
	// Disconnected, it fails; the client subscribes again on reconnect.
	fctx, fcancel := context.WithTimeout(ctx, closeWait)
	defer fcancel()
	if err := b.nc.FlushWithContext(fctx); err != nil {
		log.Debug("subscribe: flush", "err", err)
	}
	return s, nil
}

// Stop implements ports.Subscription. It cancels the handler's ctx and
// waits for it to return. It is idempotent and safe on a closed connection.
func (s *coreSub) Stop() error {
	s.unwatch()
	s.stop()
	return nil
}

// stop is Stop without disarming the Subscribe ctx's callback, which it
// is too.
func (s *coreSub) stop() {
	s.once.Do(func() {
		s.cancel()
		_ = s.sub.Unsubscribe() // fails only if already closed with its connection
		s.mu.Lock()
		s.mu.Unlock() // mu is held while a handler runs: this waited for it
		waitClosed(s.closed)
	})
}

// durableSub is a JetStream durable pull consumer being consumed.
type durableSub struct {
	b        *Bus
	subject  string
	consumer string
	h        ports.Handler
	log      *slog.Logger
	ctx      context.Context
	cancel   context.CancelFunc
	unwatch  func() bool
	mu       sync.Mutex    // held while the handler runs
	check    chan struct{} // consumeErr asks run to look whether the consumer is gone
	done     chan struct{}
	once     sync.Once
}

// consumerName is the JetStream consumer of a durable name on a subject:
// the fake bus and the contract keep one queue per name and subject,
// while a JetStream durable name is one consumer of the whole stream.
func consumerName(durable, subject string) string {
	sum := sha256.Sum256([]byte(durable + "\x00" + subject))
	return sanitizeDurable(durable) + "_" + hex.EncodeToString(sum[:4])
}

func (b *Bus) subscribeDurable(ctx context.Context, subject, durable string, h ports.Handler) (*durableSub, error) {
	sctx, cancel := context.WithCancel(ctx)
	s := &durableSub{
		b: b, subject: subject, consumer: consumerName(durable, subject), h: h,
		ctx: sctx, cancel: cancel, check: make(chan struct{}, 1), done: make(chan struct{}),
	}
	s.log = b.log.With("subject", subject, "durable", durable, "consumer", s.consumer)
	cc, err := s.start(ctx)
	if err != nil {
		cancel()
		return nil, err
	}
	go s.run(cc)
	// The callback may run before unwatch is set: it stops without it.
	s.unwatch = context.AfterFunc(ctx, s.stop)
	return s, nil
}

// start creates or updates the consumer and consumes it, one message at a
// time: the next is pulled only once the handler answered, so a daemon
// holds no message it is not working on and daemons share the load.
func (s *durableSub) start(ctx context.Context) (jetstream.ConsumeContext, error) {
	c, err := s.b.js.CreateOrUpdateConsumer(ctx, s.b.cfg.Stream, jetstream.ConsumerConfig{
		Durable:       s.consumer,
		Description:   "mirrord durable subscription",
		FilterSubject: s.subject,
		AckPolicy:     jetstream.AckExplicitPolicy,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckWait:       s.b.cfg.AckWait,
		MaxDeliver:    -1,
	})
	if err != nil {
		return nil, fmt.Errorf("create or update consumer %s on %s: %w", s.consumer, s.subject, err)
	}
	cc, err := c.Consume(s.handle, jetstream.PullMaxMessages(1),
		jetstream.PullExpiry(pullExpiry), jetstream.PullHeartbeat(pullHeartbeat),
		jetstream.ConsumeErrHandler(s.consumeErr))
	if err != nil {
		return nil, fmt.Errorf("consume %s on %s: %w", s.consumer, s.subject, err)
	}
	return cc, nil
}

// run waits for Stop, and starts consuming again whenever consuming ends
// on its own while the connection lives: the consumer deleted under it
// (it is created again, starting over with all the stream holds on the
// subject) or the stream deleted (created again, empty).
func (s *durableSub) run(cc jetstream.ConsumeContext) {
	defer close(s.done)
	for {
		select {
		case <-s.ctx.Done():
			cc.Stop()
			waitClosed(cc.Closed())
			return
		case <-s.check:
			if !s.consumerGone() {
				continue
			}
			// The client library cannot tell: its pull requests find
			// no responder and it waits for heartbeats that never come.
			cc.Stop()
			waitClosed(cc.Closed())
		case <-cc.Closed():
		}
		if s.b.nc.IsClosed() {
			return
		}
		s.log.Warn("durable subscription stopped consuming; starting again")
		for delay := resumeDelay; ; delay = min(2*delay, maxResumeDelay) {
			t := time.NewTimer(delay)
			select {
			case <-s.ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			if s.b.nc.IsClosed() {
				return
			}
			var err error
			cc, err = s.start(s.ctx)
			if errors.Is(err, jetstream.ErrStreamNotFound) {
				if err = ensureStream(s.ctx, s.b.js, s.b.cfg); err == nil {
					s.log.Warn("stream was gone; created it again", "stream", s.b.cfg.Stream)
					cc, err = s.start(s.ctx)
				}
			}
			if err == nil {
				break
			}
			s.log.Warn("durable subscription start", "retry_in", delay, "err", err)
		}
	}
}

// handle runs the handler on one message and answers the server.
func (s *durableSub) handle(m jetstream.Msg) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctx.Err() != nil {
		_ = m.Nak() // stopping: let another subscriber have it now
		return
	}
	stopProgress := keepInProgress(m, s.b.cfg.AckWait)
	err := s.h(s.ctx, ports.Message{Subject: m.Subject(), Data: m.Data()})
	stopProgress()
	if err == nil {
		if err := m.Ack(); err != nil {
			s.log.Warn("bus message acknowledgement failed; it will come again", "err", err)
		}
		return
	}
	var delivered uint64
	if md, merr := m.Metadata(); merr == nil {
		delivered = md.NumDelivered
	}
	s.log.Warn("bus message handler failed; redelivering later", "delivered", delivered, "retry_in", s.b.cfg.RedeliveryDelay, "err", err)
	if err := m.NakWithDelay(s.b.cfg.RedeliveryDelay); err != nil {
		s.log.Warn("bus message negative acknowledgement failed; it will come again after the ack wait", "err", err)
	}
}

// keepInProgress tells the server every half ack wait that m is still
// being worked on, so a slow handler's message does not go to another
// subscriber meanwhile. The returned func stops it.
func keepInProgress(m jetstream.Msg, ackWait time.Duration) func() {
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(ackWait / 2)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				_ = m.InProgress()
			}
		}
	}()
	return func() {
		close(stop)
		<-done
	}
}

// consumeErr hears what goes wrong while consuming. A pull request that
// finds no responder, or missing heartbeats, may mean the consumer is gone:
// run then looks.
func (s *durableSub) consumeErr(_ jetstream.ConsumeContext, err error) {
	switch {
	case errors.Is(err, nats.ErrNoResponders), errors.Is(err, jetstream.ErrNoHeartbeat):
		select {
		case s.check <- struct{}{}:
		default:
		}
		s.log.Debug("durable subscription", "err", err)
	case errors.Is(err, jetstream.ErrConnectionClosed), errors.Is(err, nats.ErrConnectionClosed):
		s.log.Debug("durable subscription", "err", err)
	default:
		s.log.Warn("durable subscription", "err", err)
	}
}

// consumerGone reports whether the server says the consumer or its stream
// no longer exists; not knowing (no connection, say) is not gone.
func (s *durableSub) consumerGone() bool {
	ctx, cancel := context.WithTimeout(s.ctx, closeWait)
	defer cancel()
	_, err := s.b.js.Consumer(ctx, s.b.cfg.Stream, s.consumer)
	return errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrStreamNotFound)
}

// Stop implements ports.Subscription. It cancels the handler's ctx, waits
// for it to return and stops consuming; what the handler did not
// acknowledge stays with the consumer. It is idempotent and safe on a
// closed connection.
func (s *durableSub) Stop() error {
	s.unwatch()
	s.stop()
	return nil
}

// stop is Stop without disarming the Subscribe ctx's callback, which it
// is too.
func (s *durableSub) stop() {
	s.once.Do(func() {
		s.cancel()
		<-s.done
		s.mu.Lock()
		s.mu.Unlock() // mu is held while a handler runs: this waited for it
	})
}

// waitClosed waits, within closeWait, for the client library to release a
// subscription.
func waitClosed(ch <-chan struct{}) {
	t := time.NewTimer(closeWait)
	defer t.Stop()
	select {
	case <-ch:
	case <-t.C:
	}
}
