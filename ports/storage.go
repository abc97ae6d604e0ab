package ports

import (
	"context"
	"encoding/json"
	"time"
)

// Storage is one storage of one cluster as the cluster manager describes
// it, with its backend-specific metadata passed through untouched (unknown
// fields included). Metadata holds secrets: never log or report it.
type Storage struct {
	ClusterID   uint64
	StorageID   uint64
	Type        string // e.g. "openstack.storage.type.ceph"
	BackendName string
	Metadata    json.RawMessage
}

// Environment is a source storage paired with a target storage.
type Environment struct {
	// ID names the pair in keys and files, "storage.{s}.{t}".
	ID     string
	Source Storage
	Target Storage
}

// Volume is one source volume replicated within an Environment.
type Volume struct {
	Environment Environment
	ClusterID   uint64
	VolumeID    uint64
	VolumeUUID  string
}

// Snapshot is one snapshot of a replicated Volume.
type Snapshot struct {
	Volume       Volume
	SnapshotID   uint64
	SnapshotUUID string
	SnapshotName string
}

// EnvironmentHealth is what a backend says about an environment.
type EnvironmentHealth struct {
	// Ready is true when volumes can be replicated in the environment.
	Ready bool
	// Description says, in words, what is missing when not Ready.
	Description string
}

// ReplicationState is the backend's view of one volume's replication.
type ReplicationState string

// Replication states a backend reports.
const (
	// ReplicationAbsent: the volume is not replicated (never started, or
	// stopped).
	ReplicationAbsent ReplicationState = "absent"
	// ReplicationSyncing: the first full copy (or a resync) is running.
	ReplicationSyncing ReplicationState = "syncing"
	// ReplicationReplaying: the target follows the source.
	ReplicationReplaying ReplicationState = "replaying"
	// ReplicationPaused: replication is set up but replay is stopped.
	ReplicationPaused ReplicationState = "paused"
	// ReplicationFailed: the backend reports an error (split brain, ...).
	ReplicationFailed ReplicationState = "failed"
)

// VolumeReplication is the backend's view of one volume.
type VolumeReplication struct {
	State ReplicationState
	// TargetExists says whether a copy of the volume exists on the target
	// storage, replicated or standalone.
	TargetExists bool
	// Progress is 0-100 while syncing.
	Progress int
	// LastSyncTime is when the target last caught up, zero if unknown.
	LastSyncTime time.Time
	// Lag is how far the target is behind, in the backend's words
	// ("12 entries", "4 MiB"); empty if unknown.
	Lag string
	// Description is the backend's own explanation, shown on failure.
	Description string
}

// SnapshotReplicationState is the backend's view of one snapshot.
type SnapshotReplicationState string

// Snapshot replication states a backend reports.
const (
	// SnapshotAbsent: the snapshot is not on the source (nor protected).
	SnapshotAbsent SnapshotReplicationState = "absent"
	// SnapshotPending: prepared on the source, not yet usable on the target.
	SnapshotPending SnapshotReplicationState = "pending"
	// SnapshotReady: a usable recovery point exists on the target.
	SnapshotReady SnapshotReplicationState = "ready"
)

// SnapshotReplication is the backend's view of one snapshot.
type SnapshotReplication struct {
	State       SnapshotReplicationState
	Description string
}

// DestroyReport lists what a best-effort destroy could not clean up, in
// words an operator can act on.
type DestroyReport struct {
	Leftovers []string
}

// BackendInfo describes a backend (a plugin).
type BackendInfo struct {
	Name         string
	Version      string
	StorageTypes []string
	Capabilities Capabilities
}

// Capabilities are the optional features a backend offers.
type Capabilities struct {
	Pause          bool
	KeepTargetStop bool
	Snapshots      bool
	// SnapshotModes lists replication modes offered ("journal", "snapshot").
	SnapshotModes []string
}

// StorageBackend replicates volumes between two storages of one type. Every
// method is idempotent: calling it again after success changes nothing and
// succeeds. Methods honour ctx: when it ends they return promptly with
// ctx's error, and the backend is left in a state a later call can resume
// from. Errors wrap ErrPrecondition, ErrInProgress, ErrRetryable or
// ErrNotFound where those apply; anything else is treated as retryable.
type StorageBackend interface {
	// Info describes the backend.
	Info(ctx context.Context) (BackendInfo, error)

	// PrepareEnvironment makes both storages ready to replicate volumes
	// from source to target. It returns nil only once the environment is
	// ready. ErrPrecondition when the storages cannot be paired as asked
	// (for example the target pool is already peered with another source).
	PrepareEnvironment(ctx context.Context, env Environment) error

	// EnvironmentStatus reports whether the environment is ready.
	EnvironmentStatus(ctx context.Context, env Environment) (EnvironmentHealth, error)

	// TeardownEnvironment undoes PrepareEnvironment. ErrPrecondition while
	// any volume of the pair is still replicated. Tearing down an
	// environment that was never prepared succeeds.
	TeardownEnvironment(ctx context.Context, env Environment) error

	// StartVolume makes the volume replicate to the target; if replication
	// already exists but is paused, it resumes it. It returns once
	// replication is set up, not once the first copy is done.
	// ErrNotFound when the source volume does not exist.
	StartVolume(ctx context.Context, vol Volume) error

	// VolumeStatus reports the volume's replication. A volume that is not
	// replicated is State ReplicationAbsent, not an error.
	VolumeStatus(ctx context.Context, vol Volume) (VolumeReplication, error)

	// PauseVolume stops replaying this one volume to the target, keeping
	// replication set up; other volumes are not affected. ErrNotFound when
	// the volume is not replicated.
	PauseVolume(ctx context.Context, vol Volume) error

	// ResumeVolume restarts replay of a paused volume. ErrNotFound when the
	// volume is not replicated.
	ResumeVolume(ctx context.Context, vol Volume) error

	// StopVolume ends replication and keeps the target copy as a usable
	// standalone volume. It returns nil only once that is verified.
	// Stopping a volume that is not replicated succeeds.
	StopVolume(ctx context.Context, vol Volume) error

	// DeleteTarget ends replication and deletes the target copy. It may
	// return before the copy is gone; VolumeStatus reports TargetExists
	// false once it is.
	DeleteTarget(ctx context.Context, vol Volume) error

	// DestroyVolume tears down everything about the volume on both sides,
	// best effort, within ctx's deadline, never blocked by an unreachable
	// storage. What it could not clean up is listed in the report; an error
	// means it could not even try.
	DestroyVolume(ctx context.Context, vol Volume) (DestroyReport, error)

	// AddSnapshot makes the snapshot a recovery point on the target (Ceph:
	// protect it on the source). ErrNotFound when the snapshot does not
	// exist on the source.
	AddSnapshot(ctx context.Context, snap Snapshot) error

	// RemoveSnapshot removes the snapshot from both sides. Removing a
	// missing snapshot succeeds. ErrPrecondition while something depends
	// on it (clones).
	RemoveSnapshot(ctx context.Context, snap Snapshot) error

	// SnapshotStatus reports the snapshot's replication.
	SnapshotStatus(ctx context.Context, snap Snapshot) (SnapshotReplication, error)
}

// Backends routes a storage type to the backend serving it.
type Backends interface {
	// For returns the backend serving storageType, or ErrNoBackend.
	For(ctx context.Context, storageType string) (StorageBackend, error)
}
