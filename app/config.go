package app

import (
	"time"

	"github.com/cdmdr/mirror/core"
	"github.com/cdmdr/mirror/ports"
)

// Config tunes the engine. The zero value of any field means its default.
type Config struct {
	// LeaderPrefix is where leader keys live (default "mirror_leader/").
	LeaderPrefix string
	// ResyncInterval is how often every watched prefix is listed again,
	// catching anything a watch missed (default 5m). A safety net: watches
	// resume by themselves and a compaction lists at once, and at 100,000
	// volumes a listing costs about a second of CPU.
	ResyncInterval time.Duration
	// PollInterval is how often a settled volume or environment asks its
	// backend how it is (default 30s): settled volumes in bulk, per
	// environment, with at most one call per second.
	PollInterval time.Duration
	// FastPollInterval is the same while something is changing:
	// initializing, stopping, deleting (default 2s).
	FastPollInterval time.Duration
	// SnapshotPollInterval is the same while a snapshot of a copying
	// volume (initializing or mirroring) is on its way to the target
	// (default 1s, never above FastPollInterval): the DR manager waits on
	// its record, which should turn mirrored within about this much of the
	// recovery point being usable on the target.
	SnapshotPollInterval time.Duration
	// ActionTimeout bounds one backend call (default 5m).
	ActionTimeout time.Duration
	// DestroyTimeout bounds a destroy, which must never hang (default 2m).
	DestroyTimeout time.Duration
	// Backoff paces retries after failures.
	Backoff core.Backoff
	// Workers is the number of reconciles run at once, campaigns
	// included (default 128). Goroutines do not grow with the number of
	// volumes: one work queue feeds this pool.
	Workers int
	// PlacementGrace is how long a daemon leaves a leaderless resource to
	// the live daemon preferred for it before campaigning itself (default
	// 2×FastPollInterval): a preferred daemon that is slow, or sees
	// another member set, never leaves a resource unled.
	PlacementGrace time.Duration
	// MembershipSettle is how long the set of live daemons must stay
	// unchanged before a daemon hands resources over to the daemons
	// preferred for them (default 5×FastPollInterval): no hand-overs
	// while daemons come and go.
	MembershipSettle time.Duration
	// HandoversPerSecond bounds how many resources a daemon hands over
	// per second to balance leadership (default 20), so a daemon joining
	// draws its share over time, not in a storm.
	HandoversPerSecond int
	// SnapshotCreatedSubject and SnapshotDeletedSubject are where the
	// cluster manager announces snapshots (docs/contract.md §5.1).
	SnapshotCreatedSubject string
	SnapshotDeletedSubject string
	// SnapshotDurable is the durable consumer name shared by all daemons,
	// so each event is handled once and none is lost while all are down.
	SnapshotDurable string
	// Metrics is told how long reconciles take (default: nothing is
	// measured).
	Metrics ports.Metrics
}

// Defaults of Config.
const (
	DefaultResyncInterval         = 5 * time.Minute
	DefaultPollInterval           = 30 * time.Second
	DefaultFastPollInterval       = 2 * time.Second
	DefaultSnapshotPollInterval   = time.Second
	DefaultActionTimeout          = 5 * time.Minute
	DefaultDestroyTimeout         = 2 * time.Minute
	DefaultWorkers                = 128
	DefaultHandoversPerSecond     = 20
	DefaultSnapshotCreatedSubject = "cdm.cluster.volume_snapshot.created"
	DefaultSnapshotDeletedSubject = "cdm.cluster.volume_snapshot.deleted"
	DefaultSnapshotDurable        = "mirrord-snapshots"
)

// WithDefaults returns c with every unset field at its default.
func (c Config) WithDefaults() Config {
	set := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	set(&c.ResyncInterval, DefaultResyncInterval)
	set(&c.PollInterval, DefaultPollInterval)
	set(&c.FastPollInterval, DefaultFastPollInterval)
	set(&c.SnapshotPollInterval, min(DefaultSnapshotPollInterval, c.FastPollInterval))
	set(&c.ActionTimeout, DefaultActionTimeout)
	set(&c.DestroyTimeout, DefaultDestroyTimeout)
	set(&c.PlacementGrace, 2*c.FastPollInterval)
	set(&c.MembershipSettle, 5*c.FastPollInterval)
	if c.HandoversPerSecond <= 0 {
		c.HandoversPerSecond = DefaultHandoversPerSecond
	}
	if c.Backoff.Base <= 0 || c.Backoff.Max <= 0 {
		c.Backoff = core.DefaultBackoff
	}
	if c.LeaderPrefix == "" {
		c.LeaderPrefix = core.DefaultLeaderPrefix
	}
	if c.Workers <= 0 {
		c.Workers = DefaultWorkers
	}
	if c.SnapshotCreatedSubject == "" {
		c.SnapshotCreatedSubject = DefaultSnapshotCreatedSubject
	}
	if c.SnapshotDeletedSubject == "" {
		c.SnapshotDeletedSubject = DefaultSnapshotDeletedSubject
	}
	if c.SnapshotDurable == "" {
		c.SnapshotDurable = DefaultSnapshotDurable
	}
	if c.Metrics == nil {
		c.Metrics = ports.NoMetrics{}
	}
	return c
}
