package ports

import (
	"context"

	"github.com/cdmdr/mirror/plugins/sdk/contract"
)

// The storage contract is the plugin SDK's package contract (standard
// library only), written once for the daemon and the plugins: what the
// engine asks of a backend is exactly what a plugin promises. Its doc
// comments are the contract; plugintest checks a backend honours it.

// StorageBackend replicates volumes between two storages of one type:
// contract.Backend.
type StorageBackend = contract.Backend

// The records crossing StorageBackend.
type (
	Storage             = contract.Storage
	Environment         = contract.Environment
	Volume              = contract.Volume
	Snapshot            = contract.Snapshot
	Agent               = contract.Agent
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
)

// MaxVolumeStatuses is the most volumes one StorageBackend.VolumeStatuses
// call may ask about.
const MaxVolumeStatuses = contract.MaxVolumeStatuses

// Replication states a backend reports.
const (
	ReplicationAbsent    = contract.ReplicationAbsent
	ReplicationSyncing   = contract.ReplicationSyncing
	ReplicationReplaying = contract.ReplicationReplaying
	ReplicationPaused    = contract.ReplicationPaused
	ReplicationFailed    = contract.ReplicationFailed
)

// Snapshot states a backend reports.
const (
	SnapshotAbsent  = contract.SnapshotAbsent
	SnapshotPending = contract.SnapshotPending
	SnapshotReady   = contract.SnapshotReady
)

// Backends routes a storage type to the backend serving it.
type Backends interface {
	// For returns the backend serving storageType, or ErrNoBackend.
	For(ctx context.Context, storageType string) (StorageBackend, error)
}
