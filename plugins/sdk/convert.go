package sdk

import (
	"time"

	"github.com/cdmdr/mirror/plugins/sdk/internal/pb"
)

func storageToPB(s Storage) *pb.Storage {
	return &pb.Storage{ClusterId: s.ClusterID, StorageId: s.StorageID, Type: s.Type, BackendName: s.BackendName, Metadata: s.Metadata}
}

func storageFromPB(s *pb.Storage) Storage {
	if s == nil {
		return Storage{}
	}
	return Storage{ClusterID: s.ClusterId, StorageID: s.StorageId, Type: s.Type, BackendName: s.BackendName, Metadata: s.Metadata}
}

func environmentToPB(e Environment) *pb.Environment {
	return &pb.Environment{Id: e.ID, Source: storageToPB(e.Source), Target: storageToPB(e.Target)}
}

func environmentFromPB(e *pb.Environment) Environment {
	if e == nil {
		return Environment{}
	}
	return Environment{ID: e.Id, Source: storageFromPB(e.Source), Target: storageFromPB(e.Target)}
}

func volumeToPB(v Volume) *pb.Volume {
	p := volumeRefToPB(v)
	p.Environment = environmentToPB(v.Environment)
	return p
}

// volumeRefToPB is the volume without its environment, for a request
// that carries the environment once for all its volumes.
func volumeRefToPB(v Volume) *pb.Volume {
	p := &pb.Volume{ClusterId: v.ClusterID, VolumeId: v.VolumeID, VolumeUuid: v.VolumeUUID}
	if v.SourceAgent != (Agent{}) {
		p.SourceAgent = &pb.Agent{Ip: v.SourceAgent.IP, Port: uint32(v.SourceAgent.Port)}
	}
	return p
}

func volumeFromPB(v *pb.Volume) Volume {
	if v == nil {
		return Volume{}
	}
	vol := Volume{Environment: environmentFromPB(v.Environment), ClusterID: v.ClusterId, VolumeID: v.VolumeId, VolumeUUID: v.VolumeUuid}
	if a := v.SourceAgent; a != nil {
		vol.SourceAgent = Agent{IP: a.Ip, Port: uint16(a.Port)}
	}
	return vol
}

func snapshotToPB(s Snapshot) *pb.Snapshot {
	return &pb.Snapshot{Volume: volumeToPB(s.Volume), SnapshotId: s.SnapshotID, SnapshotUuid: s.SnapshotUUID, SnapshotName: s.SnapshotName}
}

func snapshotFromPB(s *pb.Snapshot) Snapshot {
	if s == nil {
		return Snapshot{}
	}
	return Snapshot{Volume: volumeFromPB(s.Volume), SnapshotID: s.SnapshotId, SnapshotUUID: s.SnapshotUuid, SnapshotName: s.SnapshotName}
}

func infoToPB(i Info) *pb.InfoResponse {
	return &pb.InfoResponse{Name: i.Name, Version: i.Version, StorageTypes: i.StorageTypes, Capabilities: &pb.Capabilities{
		Pause: i.Capabilities.Pause, KeepTargetStop: i.Capabilities.KeepTargetStop,
		Snapshots: i.Capabilities.Snapshots, SnapshotModes: i.Capabilities.SnapshotModes,
		VolumesFollowEnvironment: i.Capabilities.VolumesFollowEnvironment,
		PairingOnTargetOnly:      i.Capabilities.PairingOnTargetOnly,
	}}
}

func infoFromPB(i *pb.InfoResponse) Info {
	info := Info{Name: i.GetName(), Version: i.GetVersion(), StorageTypes: i.GetStorageTypes()}
	if c := i.GetCapabilities(); c != nil {
		info.Capabilities = Capabilities{Pause: c.Pause, KeepTargetStop: c.KeepTargetStop, Snapshots: c.Snapshots,
			SnapshotModes: c.SnapshotModes, VolumesFollowEnvironment: c.VolumesFollowEnvironment,
			PairingOnTargetOnly: c.PairingOnTargetOnly}
	}
	return info
}

func replicationToPB(r VolumeReplication) *pb.VolumeReplication {
	var t int64
	if !r.LastSyncTime.IsZero() {
		t = r.LastSyncTime.UnixNano()
	}
	var kept int64
	if !r.Kept.Taken.IsZero() {
		kept = r.Kept.Taken.UnixNano()
	}
	return &pb.VolumeReplication{State: string(r.State), TargetExists: r.TargetExists, Progress: int32(r.Progress),
		LastSyncTimeUnixNano: t, Lag: r.Lag, Description: r.Description, KeptName: r.Kept.Name, KeptTakenUnixNano: kept}
}

func replicationFromPB(r *pb.VolumeReplication) VolumeReplication {
	out := VolumeReplication{State: ReplicationState(r.GetState()), TargetExists: r.GetTargetExists(), Progress: int(r.GetProgress()),
		Lag: r.GetLag(), Description: r.GetDescription(), Kept: KeptPoint{Name: r.GetKeptName()}}
	if n := r.GetLastSyncTimeUnixNano(); n != 0 {
		out.LastSyncTime = time.Unix(0, n).UTC()
	}
	if n := r.GetKeptTakenUnixNano(); n != 0 {
		out.Kept.Taken = time.Unix(0, n).UTC()
	}
	return out
}

func leftoverQueryToPB(q LeftoverQuery) *pb.LeftoverQuery {
	out := &pb.LeftoverQuery{Storage: storageToPB(q.Storage)}
	for _, e := range q.Environments {
		out.Environments = append(out.Environments, environmentToPB(e))
	}
	for _, v := range q.Volumes {
		out.Volumes = append(out.Volumes, volumeToPB(v))
	}
	return out
}

func leftoverQueryFromPB(q *pb.LeftoverQuery) LeftoverQuery {
	out := LeftoverQuery{Storage: storageFromPB(q.Storage)}
	for _, e := range q.Environments {
		out.Environments = append(out.Environments, environmentFromPB(e))
	}
	for _, v := range q.Volumes {
		out.Volumes = append(out.Volumes, volumeFromPB(v))
	}
	return out
}

func leftoversToPB(list []Leftover) *pb.LeftoverList {
	out := &pb.LeftoverList{}
	for _, l := range list {
		out.Leftovers = append(out.Leftovers, &pb.Leftover{Kind: l.Kind, Name: l.Name, Description: l.Description, Remedy: l.Remedy})
	}
	return out
}

func leftoversFromPB(r *pb.LeftoverList) []Leftover {
	var out []Leftover
	for _, l := range r.Leftovers {
		out = append(out, Leftover{Kind: l.Kind, Name: l.Name, Description: l.Description, Remedy: l.Remedy})
	}
	return out
}
