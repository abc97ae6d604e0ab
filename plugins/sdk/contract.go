package sdk

import "github.com/cdmdr/mirror/plugins/sdk/contract"

// The storage contract lives in package contract, written once for the
// daemon and the plugins; sdk gives each of its names again, so a plugin
// needs only this package.

// Backend is what a plugin implements: contract.Backend.
type Backend = contract.Backend

// The types crossing the contract.
type (
	Storage             = contract.Storage
	Environment         = contract.Environment
	Volume              = contract.Volume
	Snapshot            = contract.Snapshot
	EnvironmentHealth   = contract.EnvironmentHealth
	ReplicationState    = contract.ReplicationState
	VolumeReplication   = contract.VolumeReplication
	KeptPoint           = contract.KeptPoint
	SnapshotState       = contract.SnapshotState
	SnapshotReplication = contract.SnapshotReplication
	CleanupReport       = contract.CleanupReport
	LeftoverQuery       = contract.LeftoverQuery
	Leftover            = contract.Leftover
	Info                = contract.Info
	Capabilities        = contract.Capabilities
	Agent               = contract.Agent
)

// MaxVolumeStatuses is the most volumes the daemon asks
// Backend.VolumeStatuses about in one call.
const MaxVolumeStatuses = contract.MaxVolumeStatuses

// Replication states (contract.ReplicationState).
const (
	ReplicationAbsent    = contract.ReplicationAbsent
	ReplicationSyncing   = contract.ReplicationSyncing
	ReplicationReplaying = contract.ReplicationReplaying
	ReplicationPaused    = contract.ReplicationPaused
	ReplicationFailed    = contract.ReplicationFailed
)

// Snapshot states (contract.SnapshotState).
const (
	SnapshotAbsent  = contract.SnapshotAbsent
	SnapshotPending = contract.SnapshotPending
	SnapshotReady   = contract.SnapshotReady
)

// The errors the daemon acts on, the contract's own values: errors.Is
// holds between sdk.ErrNotFound and contract.ErrNotFound.
var (
	ErrNotFound     = contract.ErrNotFound
	ErrPrecondition = contract.ErrPrecondition
	ErrInProgress   = contract.ErrInProgress
	ErrRetryable    = contract.ErrRetryable
)
