package contract

import (
	"encoding/json"
	"time"
)

// Storage is one storage of one cluster as the cluster manager describes
// it. Metadata is the storage's backend-specific JSON object exactly as
// stored in etcd (for Ceph: pool, conf, client, keyring, admin_client,
// admin_keyring, ...), unknown fields included. It holds secrets: never
// log it, never put it in an error.
type Storage struct {
	ClusterID   uint64
	StorageID   uint64
	Type        string // e.g. "openstack.storage.type.ceph"
	BackendName string
	Metadata    json.RawMessage
}

// Environment is a source storage paired with a target storage.
type Environment struct {
	// ID names the pair, "storage.{source}.{target}": stable, usable in
	// file names.
	ID     string
	Source Storage
	Target Storage
}

// Volume is one source volume replicated within an Environment.
type Volume struct {
	Environment Environment
	ClusterID   uint64
	VolumeID    uint64
	VolumeUUID  string // OpenStack's volume id; Cinder's RBD image is volume-{uuid}
	// SourceAgent is the mirror volume record's source_agent: an agent
	// next to the source storage, for backends that read the source
	// through one (file volumes); zero when the record names none.
	SourceAgent Agent
}

// Agent is the address of an agent next to a storage.
type Agent struct {
	IP   string
	Port uint16
}

// Snapshot is one snapshot of a replicated Volume.
type Snapshot struct {
	Volume       Volume
	SnapshotID   uint64
	SnapshotUUID string // Cinder's RBD snapshot is snapshot-{uuid}
	SnapshotName string
}

// EnvironmentHealth is what a backend says about an environment.
type EnvironmentHealth struct {
	// Ready is true when volumes can be replicated in the environment.
	Ready bool
	// Description says, in words an operator can act on, what is missing.
	Description string
	// Unintended lists replicas on the target that the storage made for
	// this environment although no volume of it asked for them (a source
	// pool feeding several targets), each naming the copy, where it came
	// from and how to remove it. Reported, never removed by the plugin on
	// its own.
	Unintended []string
}

// ReplicationState is the backend's view of one volume's replication.
type ReplicationState string

// Replication states.
const (
	// ReplicationAbsent: not replicated (never started, or stopped).
	ReplicationAbsent ReplicationState = "absent"
	// ReplicationSyncing: the first full copy (or a resync) is running.
	ReplicationSyncing ReplicationState = "syncing"
	// ReplicationReplaying: the target follows the source.
	ReplicationReplaying ReplicationState = "replaying"
	// ReplicationPaused: set up, but replay is stopped.
	ReplicationPaused ReplicationState = "paused"
	// ReplicationFailed: the storage reports an error (split brain, ...).
	ReplicationFailed ReplicationState = "failed"
)

// VolumeReplication is the backend's view of one volume.
type VolumeReplication struct {
	State ReplicationState
	// TargetExists says whether a copy exists on the target storage,
	// replicated or standalone.
	TargetExists bool
	// Progress is 0-100 while syncing.
	Progress int
	// LastSyncTime is when the target last caught up; zero if unknown.
	LastSyncTime time.Time
	// Lag is how far behind the target is, in the storage's words
	// ("12 entries", "4 MiB"); empty if unknown.
	Lag string
	// Description is the storage's own explanation, shown on failure.
	Description string
	// Kept is the newest complete recovery point the backend preserved
	// on the target as a standalone copy before something deleted the
	// replica (a resync, a new first copy); zero when none stands. It
	// stays usable while the new copy runs and goes once a newer
	// recovery point has arrived.
	Kept KeptPoint
}

// KeptPoint is a recovery point preserved as a standalone copy on the
// target.
type KeptPoint struct {
	// Name says which copy and where, e.g. "image volumes/volume-7f3a….kept
	// on storage clusters.6.storages.13"; empty when none stands.
	Name string
	// Taken is when the point was made on the source; zero if unknown.
	Taken time.Time
}

// SnapshotState is the backend's view of one snapshot.
type SnapshotState string

// Snapshot states.
const (
	// SnapshotAbsent: not on the source (nor prepared).
	SnapshotAbsent SnapshotState = "absent"
	// SnapshotPending: prepared on the source, not yet usable on the target.
	SnapshotPending SnapshotState = "pending"
	// SnapshotReady: a usable recovery point exists on the target.
	SnapshotReady SnapshotState = "ready"
)

// SnapshotReplication is the backend's view of one snapshot.
type SnapshotReplication struct {
	State       SnapshotState
	Description string
}

// CleanupReport lists what a call that ends replication (StopVolume,
// DestroyVolume, TeardownEnvironment) could not do, in words an operator
// can act on: which storage, what is left, why.
type CleanupReport struct {
	Leftovers []string
}

// LeftoverQuery asks FindLeftovers about one storage. Environments and
// Volumes are every environment and volume the daemon's records still
// hold that involve Storage, as source or target: what they account for
// is no leftover.
type LeftoverQuery struct {
	Storage      Storage
	Environments []Environment
	Volumes      []Volume
}

// Leftover is one thing FindLeftovers found.
type Leftover struct {
	// Kind is one of "volume", "copy", "pairing", "snapshot", "process",
	// "file" or "record".
	Kind string
	// Name says which one and where, e.g. "image volumes/volume-7f3a… on
	// storage clusters.6.storages.13".
	Name string
	// Description says why it is a leftover.
	Description string
	// Remedy says how an operator removes it (a command where one does),
	// and what to check first.
	Remedy string
}

// Info describes a plugin.
type Info struct {
	// Name of the plugin, e.g. "ceph-rbd".
	Name string
	// Version of the plugin, semver.
	Version string
	// StorageTypes are the openstack.storage.type.* values it serves. Two
	// plugins of one daemon must not claim the same type.
	StorageTypes []string
	Capabilities Capabilities
}

// Capabilities are the optional features a plugin offers.
type Capabilities struct {
	// Pause: PauseVolume/ResumeVolume stop and restart one volume's replay.
	Pause bool
	// KeepTargetStop: StopVolume leaves a usable standalone target copy.
	KeepTargetStop bool
	// Snapshots: AddSnapshot makes recovery points on the target.
	Snapshots bool
	// SnapshotModes lists the replication modes offered ("journal",
	// "snapshot").
	SnapshotModes []string
	// VolumesFollowEnvironment: the plugin runs host-bound work per
	// environment (e.g. a replication daemon whose local control socket
	// pauses a volume), so a volume's calls must come from the host that
	// leads its environment. The daemon then has every volume of such a
	// storage type led by the daemon leading its environment.
	VolumesFollowEnvironment bool
	// PairingOnTargetOnly: the plugin keeps nothing of an environment on
	// the source storage (it pulls through an agent that holds no state),
	// so a teardown with the source lost leaves nothing there to report.
	PairingOnTargetOnly bool
}
