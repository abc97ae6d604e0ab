package pluginhost

import (
	"slices"

	"github.com/cdmdr/mirror/plugins/sdk"
	"github.com/cdmdr/mirror/ports"
)

// The daemon's types and the SDK's are declared apart (ports imports
// nothing of ours, the SDK nothing of the daemon's) and copied field by
// field here.

func storageToSDK(s ports.Storage) sdk.Storage {
	return sdk.Storage{ClusterID: s.ClusterID, StorageID: s.StorageID, Type: s.Type, BackendName: s.BackendName, Metadata: s.Metadata}
}

func environmentToSDK(e ports.Environment) sdk.Environment {
	return sdk.Environment{ID: e.ID, Source: storageToSDK(e.Source), Target: storageToSDK(e.Target)}
}

func volumeToSDK(v ports.Volume) sdk.Volume {
	return sdk.Volume{Environment: environmentToSDK(v.Environment), ClusterID: v.ClusterID, VolumeID: v.VolumeID, VolumeUUID: v.VolumeUUID}
}

func snapshotToSDK(s ports.Snapshot) sdk.Snapshot {
	return sdk.Snapshot{Volume: volumeToSDK(s.Volume), SnapshotID: s.SnapshotID, SnapshotUUID: s.SnapshotUUID, SnapshotName: s.SnapshotName}
}

func infoFromSDK(i sdk.Info) ports.BackendInfo {
	return ports.BackendInfo{
		Name: i.Name, Version: i.Version, StorageTypes: slices.Clone(i.StorageTypes),
		Capabilities: ports.Capabilities{
			Pause: i.Capabilities.Pause, KeepTargetStop: i.Capabilities.KeepTargetStop,
			Snapshots: i.Capabilities.Snapshots, SnapshotModes: slices.Clone(i.Capabilities.SnapshotModes),
		},
	}
}

func healthFromSDK(h sdk.EnvironmentHealth) ports.EnvironmentHealth {
	return ports.EnvironmentHealth{Ready: h.Ready, Description: h.Description}
}

func replicationFromSDK(r sdk.VolumeReplication) ports.VolumeReplication {
	return ports.VolumeReplication{
		State: ports.ReplicationState(r.State), TargetExists: r.TargetExists, Progress: r.Progress,
		LastSyncTime: r.LastSyncTime, Lag: r.Lag, Description: r.Description,
	}
}

func snapshotReplicationFromSDK(r sdk.SnapshotReplication) ports.SnapshotReplication {
	return ports.SnapshotReplication{State: ports.SnapshotReplicationState(r.State), Description: r.Description}
}

func destroyReportFromSDK(r sdk.DestroyReport) ports.DestroyReport {
	return ports.DestroyReport{Leftovers: slices.Clone(r.Leftovers)}
}
