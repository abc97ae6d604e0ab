package core

import (
	"encoding/json"
	"fmt"

	"github.com/cdmdr/mirror/ports"
)

// BackendEnvironment assembles what a backend needs to know about an
// environment from its records. Both storages must be of one type: one
// backend serves a pair.
func BackendEnvironment(id EnvironmentID, src, tgt Storage, srcMeta, tgtMeta json.RawMessage) (ports.Environment, error) {
	if src.Type != tgt.Type {
		return ports.Environment{}, fmt.Errorf("environment %s: %w: source storage is %s but target storage is %s; both must be of one type",
			EnvironmentKey(id), ErrContradiction, src.Type, tgt.Type)
	}
	return ports.Environment{
		ID:     id.String(),
		Source: BackendStorage(src, srcMeta),
		Target: BackendStorage(tgt, tgtMeta),
	}, nil
}

// BackendStorage is the backend's view of a storage record and its
// metadata.
func BackendStorage(s Storage, meta json.RawMessage) ports.Storage {
	return ports.Storage{ClusterID: s.ClusterID, StorageID: s.StorageID, Type: s.Type, BackendName: s.BackendName, Metadata: meta}
}

// BackendVolume is the backend's view of a mirror volume.
func BackendVolume(env ports.Environment, mv MirrorVolume) ports.Volume {
	return ports.Volume{Environment: env, ClusterID: mv.SourceVolume.ClusterID, VolumeID: mv.SourceVolume.VolumeID, VolumeUUID: mv.SourceVolume.VolumeUUID,
		SourceAgent: ports.Agent{IP: mv.SourceAgent.IP, Port: uint16(mv.SourceAgent.Port)}}
}

// BackendSnapshot is the backend's view of a snapshot record.
func BackendSnapshot(vol ports.Volume, rec SnapshotRecord) ports.Snapshot {
	return ports.Snapshot{Volume: vol, SnapshotID: rec.SnapshotID, SnapshotUUID: rec.SnapshotUUID, SnapshotName: rec.SnapshotName}
}
