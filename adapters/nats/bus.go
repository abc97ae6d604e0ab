package nats

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/cdmdr/mirror/ports"
)

var _ ports.Bus = (*Bus)(nil)

// flushTimeout bounds a core publish whose ctx has no deadline.
const flushTimeout = 5 * time.Second

// Bus is a ports.Bus on a NATS connection, in JetStream or core mode (see
// NewBus). It does not own the connection.
type Bus struct {
	nc  *nats.Conn
	js  jetstream.JetStream // nil in core mode
	cfg Config
	log *slog.Logger
}

// NewBus returns a bus on nc and picks its mode:
//
//   - Mode "core": core NATS.
//   - Mode "auto" (the default): JetStream if the server offers it to the
//     account, core NATS if it answers that it does not. Any other failure
//     to ask is returned, so a server that is merely slow does not silently
//     cost durability.
//   - Mode "jetstream": JetStream, or an error.
//
// In JetStream mode NewBus creates the stream cfg.Stream capturing
// cfg.StreamSubjects (file storage, limits retention, cfg.MaxAge), or
// updates it to this config, keeping its replicas and placement, which
// belong to whoever runs the servers. The mode is logged at info; core
// mode at warn, since durable subscriptions then lose what is published
// while no daemon runs.
func NewBus(ctx context.Context, nc *nats.Conn, cfg Config, log *slog.Logger) (*Bus, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	b := &Bus{nc: nc, cfg: cfg, log: log}
	if cfg.Mode == ModeCore {
		b.logCore("mode core configured")
		return b, nil
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	if _, err := js.AccountInfo(ctx); err != nil {
		notEnabled := errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount)
		switch {
		case !notEnabled:
			return nil, fmt.Errorf("ask nats whether jetstream is enabled: %w", err)
		case cfg.Mode == ModeJetStream:
			return nil, fmt.Errorf("nats mode %q: %w", ModeJetStream, err)
		}
		b.logCore(err.Error())
		return b, nil
	}
	if err := ensureStream(ctx, js, cfg); err != nil {
		return nil, err
	}
	b.js = js
	log.Info("bus mode", "mode", ModeJetStream, "stream", cfg.Stream, "subjects", cfg.StreamSubjects)
	return b, nil
}

func (b *Bus) logCore(reason string) {
	b.log.Warn("bus mode", "mode", ModeCore, "reason", reason,
		"consequence", "events published while no daemon runs are lost, a failed event is not redelivered; snapshots are then only reconciled periodically")
}

// ensureStream creates the stream capturing cfg.StreamSubjects, or
// updates it when its settings differ. A stream already as asked is left
// alone: daemons starting together would otherwise update it at once,
// which races inside the server (seen with -race on nats-server 2.15).
func ensureStream(ctx context.Context, js jetstream.JetStream, cfg Config) error {
	sc := jetstream.StreamConfig{
		Name:        cfg.Stream,
		Description: "events for mirrord, kept for its durable subscriptions",
		Subjects:    cfg.StreamSubjects,
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Discard:     jetstream.DiscardOld,
		MaxAge:      cfg.MaxAge,
	}
	for range 3 {
		old, err := js.Stream(ctx, cfg.Stream)
		switch {
		case err == nil:
			oc := old.CachedInfo().Config
			if sameStream(oc, sc) {
				return nil
			}
			sc.Replicas, sc.Placement = oc.Replicas, oc.Placement
			if _, err := js.UpdateStream(ctx, sc); err != nil {
				return fmt.Errorf("update stream %s for %v: %w", cfg.Stream, cfg.StreamSubjects, err)
			}
			return nil
		case !errors.Is(err, jetstream.ErrStreamNotFound):
			return fmt.Errorf("look up stream %s: %w", cfg.Stream, err)
		}
		_, err = js.CreateStream(ctx, sc)
		if !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			if err != nil {
				return fmt.Errorf("create stream %s for %v: %w", cfg.Stream, cfg.StreamSubjects, err)
			}
			return nil
		}
		// Another daemon created it meanwhile: look again.
	}
	return fmt.Errorf("stream %s: created and deleted under us repeatedly", cfg.Stream)
}

// sameStream says whether the stream's settings are those mirrord asks.
func sameStream(have, want jetstream.StreamConfig) bool {
	hs, ws := slices.Clone(have.Subjects), slices.Clone(want.Subjects)
	slices.Sort(hs)
	slices.Sort(ws)
	return slices.Equal(hs, ws) && have.Description == want.Description && have.Retention == want.Retention &&
		have.Storage == want.Storage && have.Discard == want.Discard && have.MaxAge == want.MaxAge
}

// Mode returns ModeJetStream or ModeCore.
func (b *Bus) Mode() string {
	if b.js != nil {
		return ModeJetStream
	}
	return ModeCore
}

// captured reports whether the stream keeps what is published on subject.
func (b *Bus) captured(subject string) bool {
	return b.js != nil && slices.ContainsFunc(b.cfg.StreamSubjects, func(f string) bool { return subsetOf(subject, f) })
}

// Publish implements ports.Bus. On a subject the stream captures it
// returns once the stream stored the message; on any other subject once
// the server received it (a flush), which does not mean any subscriber
// got it.
func (b *Bus) Publish(ctx context.Context, subject string, data []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if b.captured(subject) {
		if _, err := b.js.Publish(ctx, subject, data); err != nil {
			return fmt.Errorf("publish to %s in stream %s: %w", subject, b.cfg.Stream, err)
		}
		return nil
	}
	if err := b.nc.Publish(subject, data); err != nil {
		return fmt.Errorf("publish to %s: %w", subject, err)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, flushTimeout)
		defer cancel()
	}
	if err := b.nc.FlushWithContext(ctx); err != nil {
		return fmt.Errorf("publish to %s: flush: %w", subject, err)
	}
	return nil
}

// Subscribe implements ports.Bus.
//
//   - JetStream mode, a durable name, and a subject the stream captures: a
//     durable pull consumer on the stream, filtered to subject and named
//     after the durable name and the subject, shared by every subscriber
//     of that name and subject. It starts with everything the stream holds
//     on the subject (up to cfg.MaxAge old). The handler's nil
//     acknowledges a message; an error asks for it again after
//     cfg.RedeliveryDelay; a message whose subscriber dies unanswered comes
//     again after cfg.AckWait.
//   - Core mode and a durable name: a queue group named after the durable
//     name. Each message goes to one member, but what is published while no
//     member runs is lost, and a message whose handler failed is dropped:
//     the contract's backlog and redelivery do not hold.
//   - JetStream mode, a durable name and a subject the stream does not
//     capture: an error in mode "jetstream", a queue group (with a warning)
//     in mode "auto".
//   - No durable name: a plain subscription.
//
// Handlers of one subscription run one at a time. A handler must not stop
// its own subscription (Stop waits for it).
func (b *Bus) Subscribe(ctx context.Context, subject, durable string, h ports.Handler) (ports.Subscription, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if !validSubject(subject) {
		return nil, fmt.Errorf("subscribe: %q is not a valid nats subject", subject)
	}
	if durable != "" && b.js != nil {
		if b.captured(subject) {
			return b.subscribeDurable(ctx, subject, durable, h)
		}
		if b.cfg.Mode == ModeJetStream {
			return nil, fmt.Errorf("durable subscription %q: subject %s is not captured by stream %s (subjects %v)", durable, subject, b.cfg.Stream, b.cfg.StreamSubjects)
		}
		b.log.Warn("durable subscription falls back to a queue group: subject not captured by the stream",
			"subject", subject, "durable", durable, "stream", b.cfg.Stream, "stream_subjects", b.cfg.StreamSubjects)
	}
	return b.subscribeCore(ctx, subject, durable, h)
}
