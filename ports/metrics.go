package ports

import "time"

// Metrics is told what the engine measures as it works, for an operator's
// monitoring. Calls are cheap and never block; an implementation is safe
// for concurrent use. NoMetrics is the default.
type Metrics interface {
	// Reconciled records one reconcile of a resource of kind
	// ("environment" or "volume"): how long it took and whether it failed.
	Reconciled(kind string, took time.Duration, err error)
}

// NoMetrics measures nothing.
type NoMetrics struct{}

// Reconciled implements Metrics.
func (NoMetrics) Reconciled(string, time.Duration, error) {}

// Overview is what one daemon sees and leads at one moment, read for
// metrics when they are scraped.
type Overview struct {
	// Volumes and Environments count every volume and environment in the
	// store by the state of its status (a record without status counts
	// under ""): every daemon sees all of them.
	Volumes      map[string]int
	Environments map[string]int
	// UnledVolumes and UnledEnvironments count the records whose leader
	// key is absent: nobody leads them.
	UnledVolumes      int
	UnledEnvironments int
	// LedEnvironments counts the environments this daemon leads.
	LedEnvironments int
	// LedVolumes are the volumes this daemon leads, one entry each: the
	// only per-volume figures, so each volume is exported by one daemon.
	LedVolumes []LedVolume
	// SnapshotsPending counts the snapshot records of the volumes this
	// daemon leads whose recovery point is not on the target yet (no
	// status, or state mirroring).
	SnapshotsPending int
}

// LedVolume is one volume this daemon leads, as its status says.
type LedVolume struct {
	Environment string // storage.{s}.{t}
	Volume      string // volume.{id}
	State       string
	// LastSync is when the target last caught up (zero: unknown).
	LastSync time.Time
	// Lag is how far behind the target is, in the backend's words.
	Lag string
}
