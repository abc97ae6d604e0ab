package contract

import "context"

// Backend replicates volumes between two storages of the types it serves.
// A plugin implements it; the daemon calls it.
//
// Every method is idempotent: calling it again after it succeeded changes
// nothing and succeeds, because the daemon retries after crashes,
// restarts and lost answers. Every method honours ctx: when it ends, the
// method returns promptly with an error wrapping ctx.Err(), and leaves the
// storage in a state a later call can resume from. Methods may be called
// concurrently for different volumes.
//
// Daemons on several hosts call the plugin, each through its own plugin
// process, and a takeover moves an environment or volume between them.
// What one host's call must know of another's (prepared, paused, who owns
// or replicates what) lives in the storage, never only in a plugin's local
// files, which hold per-host things: caches, sockets, pid files, logs,
// secret files (mode 0600). Host-bound work: see VolumesFollowEnvironment
// and ReleaseEnvironment.
type Backend interface {
	// Info describes the plugin. It is called at load time and must not
	// need any storage to be reachable.
	Info(ctx context.Context) (Info, error)

	// PrepareEnvironment makes both storages ready to replicate volumes
	// from source to target. It returns nil only once the environment is
	// ready. ErrPrecondition when the storages cannot be paired as asked.
	PrepareEnvironment(ctx context.Context, env Environment) error

	// EnvironmentStatus reports whether the environment is ready.
	EnvironmentStatus(ctx context.Context, env Environment) (EnvironmentHealth, error)

	// TeardownEnvironment undoes PrepareEnvironment. ErrPrecondition while
	// any volume of the pair is still replicated (paused counts). Tearing
	// down an environment never prepared succeeds.
	//
	// With one storage unreachable (a site lost) it tears down what it can
	// reach on the other and on this host, within ctx, and succeeds,
	// listing the rest in the report; it never waits for the lost storage.
	// force tears down even while volumes are still replicated (their
	// records were deleted by hand, or the operator gives up on them): it
	// ends the pairing (peers, host-bound work, records, files), deletes no
	// volume or copy, and lists every replicated volume it left as a
	// leftover. An error means nothing could be torn down.
	TeardownEnvironment(ctx context.Context, env Environment, force bool) (CleanupReport, error)

	// ReleaseEnvironment tells the plugin that this daemon no longer leads
	// env (it resigned, lost its session or is shutting down): stop the
	// work it runs on this host for env (e.g. a replication daemon it
	// started), so that only the new leader's host runs it. Nothing in the
	// storages changes, and replication state (what is prepared, what is
	// paused) must survive it: the next PrepareEnvironment, on this host
	// or another, takes it up again. Releasing an environment that runs
	// nothing here succeeds.
	ReleaseEnvironment(ctx context.Context, env Environment) error

	// StartVolume makes the volume replicate to the target; a paused
	// replication is resumed. It returns once replication is set up, not
	// once the first copy is done. ErrNotFound when the source volume does
	// not exist; ErrPrecondition when the environment is not prepared.
	StartVolume(ctx context.Context, vol Volume) error

	// VolumeStatus reports the volume's replication. A volume that is not
	// replicated is ReplicationAbsent, not an error; TargetExists still
	// says whether a copy is on the target (a standalone one after
	// StopVolume, one DeleteTarget is still deleting).
	VolumeStatus(ctx context.Context, vol Volume) (VolumeReplication, error)

	// VolumeStatuses reports the replication of several volumes of one
	// environment at once: one answer per volume, in the order asked,
	// each what VolumeStatus would say of it, possibly a little older. A
	// storage may serve it from pool-wide status it refreshes on its own
	// (Ceph's mirror status objects, up to ~30 s behind) rather than ask
	// about each volume. Every volume is of env. A volume not replicated,
	// or unknown to the storage, is ReplicationAbsent, not an error; an
	// error means no answer for any of them. No volumes, no answers.
	//
	// The daemon calls it for settled volumes, at most MaxVolumeStatuses
	// at a time, instead of one VolumeStatus each, and VolumeStatus for a
	// volume whose state it waits on. A storage with no bulk read answers
	// with VolumeStatusesOneByOne (package sdk).
	VolumeStatuses(ctx context.Context, env Environment, vols []Volume) ([]VolumeReplication, error)

	// PauseVolume stops replaying this one volume, keeping replication set
	// up; other volumes are not affected. ErrNotFound when the volume is
	// not replicated.
	PauseVolume(ctx context.Context, vol Volume) error

	// ResumeVolume restarts replay of a paused volume, or of a failed one
	// (which may take a full resync: the operator asked for it).
	// ErrNotFound when the volume is not replicated.
	ResumeVolume(ctx context.Context, vol Volume) error

	// StopVolume ends replication and keeps the target copy as a usable
	// standalone volume: the user's from now on. It returns nil only once
	// that is verified. Stopping a volume that is not replicated succeeds.
	// It never keeps a partial copy: while the first copy (or a full
	// resync) is still running it changes nothing but letting that copy go
	// on (a pause gives way to the stop) and returns ErrInProgress, saying
	// how far the copy is; the daemon calls again later. The copy must get
	// on without being asked: the daemon may call nothing but StopVolume
	// until it succeeds.
	//
	// With the source storage unreachable (the protection site lost) it
	// does not wait for it: a complete copy is made standalone and writable
	// on the target alone (forcing it primary), replication ends on the
	// target, and what could not be done on the source (mirroring still
	// enabled there) is listed in the report and recorded on the target,
	// where FindLeftovers finds it. When the source comes back nothing
	// replicates into the kept copy on its own. An incomplete copy with the
	// source unreachable cannot be kept: ErrPrecondition, saying so.
	StopVolume(ctx context.Context, vol Volume) (CleanupReport, error)

	// DeleteTarget ends replication and deletes the target copy, also a
	// standalone one left by StopVolume: the operator asked for it. It may
	// return before the copy is gone; VolumeStatus reports TargetExists
	// false once it is.
	DeleteTarget(ctx context.Context, vol Volume) error

	// DestroyVolume tears down everything about the volume's replication
	// on both sides, best effort, within ctx's deadline, never blocked by
	// an unreachable storage: replication set-up, the replicated target
	// copy and the storage's own artefacts (journals, mirror snapshots,
	// sync points). It deletes neither the source volume nor a standalone
	// copy StopVolume left on the target (VolumeStatus: absent, with
	// TargetExists): that copy is a volume of its own, and only
	// DeleteTarget removes it.
	//
	// It never deletes the last copy: the replicated target copy is
	// deleted only when the source volume is known intact (read during
	// this call: it exists and is the primary). Otherwise (the source
	// unreachable or gone) the copy is kept, standalone where the storage
	// allows, listed in the report, and recorded on the target, where
	// FindLeftovers finds it. What it could not clean up is listed in the
	// report; an error means it could not even try.
	DestroyVolume(ctx context.Context, vol Volume) (CleanupReport, error)

	// AddSnapshot makes the snapshot a recovery point on the target (Ceph:
	// protect it on the source so the target can clone it). ErrNotFound
	// when the snapshot does not exist on the source. SnapshotStatus
	// reports it pending until the target has it, then ready.
	AddSnapshot(ctx context.Context, snap Snapshot) error

	// RemoveSnapshot undoes AddSnapshot and removes the snapshot from both
	// sides. Removing a missing snapshot succeeds. ErrPrecondition while
	// something depends on it (clones).
	RemoveSnapshot(ctx context.Context, snap Snapshot) error

	// SnapshotStatus reports the snapshot's replication.
	SnapshotStatus(ctx context.Context, snap Snapshot) (SnapshotReplication, error)

	// FindLeftovers lists what the plugin made on q.Storage, or runs on
	// this host for it, that none of q's environments and volumes accounts
	// for (after records were deleted by hand, or a site was lost): pairings
	// (peers), replicated volumes and copies, snapshots it protected,
	// host-bound work (processes) and its files; and everything an earlier
	// StopVolume, DestroyVolume or TeardownEnvironment recorded it could
	// not clean. It changes nothing. A storage it cannot reach is an error.
	FindLeftovers(ctx context.Context, q LeftoverQuery) ([]Leftover, error)
}

// MaxVolumeStatuses is the most volumes the daemon asks VolumeStatuses
// about in one call, so that a call's message stays far below gRPC's
// 4 MiB default whatever the volumes' names.
const MaxVolumeStatuses = 1000
