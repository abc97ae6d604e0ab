package nats

import (
	"fmt"
	"time"
)

// Bus modes (Config.Mode).
const (
	// ModeAuto uses JetStream when the server offers it, core NATS
	// otherwise.
	ModeAuto = "auto"
	// ModeJetStream requires JetStream: NewBus fails without it.
	ModeJetStream = "jetstream"
	// ModeCore uses core NATS only, even when JetStream is available.
	ModeCore = "core"
)

// Defaults of Config.
const (
	DefaultStream          = "MIRROR_SNAPSHOTS"
	DefaultStreamSubject   = "cdm.cluster.volume_snapshot.>"
	DefaultMaxAge          = 7 * 24 * time.Hour
	DefaultAckWait         = 30 * time.Second
	DefaultRedeliveryDelay = 5 * time.Second
	DefaultReconnectWait   = 2 * time.Second
	DefaultName            = "mirrord"
)

// Config says how to reach NATS and how the bus uses it. The zero value of
// any field means its default.
type Config struct {
	// URL is the server URL, or several separated by commas
	// (default nats://127.0.0.1:4222).
	URL string
	// CredsFile is a NATS credentials file (JWT and NKey seed).
	CredsFile string
	// User and Password, or Token, authenticate without a credentials
	// file. They are never logged.
	User, Password, Token string
	// Name is the connection name the server shows (default "mirrord").
	Name string
	// ReconnectWait is the pause between reconnect attempts to one server
	// (default 2s). Reconnects never give up.
	ReconnectWait time.Duration

	// Mode is ModeAuto (default), ModeJetStream or ModeCore.
	Mode string
	// Stream is the JetStream stream capturing StreamSubjects
	// (default "MIRROR_SNAPSHOTS").
	Stream string
	// StreamSubjects are the subjects the stream captures: durable
	// subscriptions and acknowledged publishes work on these
	// (default cdm.cluster.volume_snapshot.>). Every daemon sharing the
	// stream must configure the same list: each one sets it at start.
	StreamSubjects []string
	// MaxAge is how long the stream keeps a message (default 7 days).
	MaxAge time.Duration
	// AckWait is how long the server waits for a durable subscriber's
	// answer before delivering the message again (default 30s). A running
	// handler keeps its message from being redelivered.
	AckWait time.Duration
	// RedeliveryDelay is how long a message whose handler failed waits
	// before it is delivered again (default 5s).
	RedeliveryDelay time.Duration
}

// WithDefaults returns c with every unset field at its default.
func (c Config) WithDefaults() Config {
	if c.URL == "" {
		c.URL = "nats://127.0.0.1:4222"
	}
	if c.Name == "" {
		c.Name = DefaultName
	}
	if c.Mode == "" {
		c.Mode = ModeAuto
	}
	if c.Stream == "" {
		c.Stream = DefaultStream
	}
	if len(c.StreamSubjects) == 0 {
		c.StreamSubjects = []string{DefaultStreamSubject}
	}
	set := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	set(&c.ReconnectWait, DefaultReconnectWait)
	set(&c.MaxAge, DefaultMaxAge)
	set(&c.AckWait, DefaultAckWait)
	set(&c.RedeliveryDelay, DefaultRedeliveryDelay)
	return c
}

// validate checks a config that has its defaults.
func (c Config) validate() error {
	switch c.Mode {
	case ModeAuto, ModeJetStream, ModeCore:
	default:
		return fmt.Errorf("nats mode %q: want %q, %q or %q", c.Mode, ModeAuto, ModeJetStream, ModeCore)
	}
	for _, s := range c.StreamSubjects {
		if !validSubject(s) {
			return fmt.Errorf("stream subject %q is not a valid NATS subject", s)
		}
	}
	return nil
}
