package core

import (
	"fmt"
	"strconv"
	"strings"
)

// Key prefixes of docs/contract.md §2.1. The cluster manager owns clusters/, the DR
// manager and mirrord share mirror_environment/ and mirror_volume/, and
// mirrord's leader keys live under a configurable prefix that starts with
// "mirror" by default, so the original manual reset
// (`etcdctl del --prefix mirror`) clears them too.
const (
	ClustersPrefix      = "clusters/"
	EnvironmentPrefix   = "mirror_environment/"
	VolumePrefix        = "mirror_volume/"
	DefaultLeaderPrefix = "mirror_leader/"
)

// KeyKind says which of docs/contract.md §2.1's keys a key is.
type KeyKind int

// The key kinds, one per key form of docs/contract.md §2.1.
const (
	KindUnknown KeyKind = iota
	KindStorage
	KindStorageMetadata
	KindClusterVolume
	KindEnvironment
	KindEnvironmentOperation
	KindEnvironmentStatus
	KindVolume
	KindVolumeOperation
	KindVolumeStatus
	KindSnapshot
	KindSnapshotStatus
)

var kindNames = [...]string{"unknown", "storage", "storage_metadata", "cluster_volume",
	"environment", "environment_operation", "environment_status",
	"volume", "volume_operation", "volume_status", "snapshot", "snapshot_status"}

func (k KeyKind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "KeyKind(" + strconv.Itoa(int(k)) + ")"
}

func u(n uint64) string { return strconv.FormatUint(n, 10) }

// StorageKey is clusters/{c}/storages/{s}.
func StorageKey(s StorageRef) string {
	return ClustersPrefix + u(s.ClusterID) + "/storages/" + u(s.StorageID)
}

// StorageMetadataKey is clusters/{c}/storages/{s}/metadata.
func StorageMetadataKey(s StorageRef) string { return StorageKey(s) + "/metadata" }

// StorageFileName names a storage's private files without slashes, as the
// original does: clusters/6/storages/13 becomes clusters.6.storages.13.
func StorageFileName(s StorageRef) string {
	return strings.ReplaceAll(StorageKey(s), "/", ".")
}

// ClusterVolumeKey is clusters/{c}/volume/{v} (sic: "volume", singular).
func ClusterVolumeKey(clusterID, volumeID uint64) string {
	return ClustersPrefix + u(clusterID) + "/volume/" + u(volumeID)
}

// EnvironmentKey is mirror_environment/storage.{s}.{t}.
func EnvironmentKey(e EnvironmentID) string { return EnvironmentPrefix + e.String() }

// EnvironmentOperationKey is mirror_environment/storage.{s}.{t}/operation.
func EnvironmentOperationKey(e EnvironmentID) string { return EnvironmentKey(e) + "/operation" }

// EnvironmentStatusKey is mirror_environment/storage.{s}.{t}/status.
func EnvironmentStatusKey(e EnvironmentID) string { return EnvironmentKey(e) + "/status" }

// EnvironmentVolumesPrefix is the prefix of every mirror volume key of an
// environment, mirror_volume/storage.{s}.{t}/.
func EnvironmentVolumesPrefix(e EnvironmentID) string { return VolumePrefix + e.String() + "/" }

// VolumeKey is mirror_volume/storage.{s}.{t}/volume.{v}.
func VolumeKey(v VolumeRef) string {
	return EnvironmentVolumesPrefix(v.Env) + "volume." + u(v.VolumeID)
}

// VolumeOperationKey is .../volume.{v}/operation.
func VolumeOperationKey(v VolumeRef) string { return VolumeKey(v) + "/operation" }

// VolumeStatusKey is .../volume.{v}/status (one per volume: docs/contract.md §2.1).
func VolumeStatusKey(v VolumeRef) string { return VolumeKey(v) + "/status" }

// VolumeChildrenPrefix is .../volume.{v}/: the volume's operation, status
// and snapshot records, and nothing of volume.{v}0.
func VolumeChildrenPrefix(v VolumeRef) string { return VolumeKey(v) + "/" }

// SnapshotKey is .../volume.{v}/snapshot.{id}.
func SnapshotKey(s SnapshotRef) string {
	return VolumeChildrenPrefix(s.Volume) + "snapshot." + u(s.SnapshotID)
}

// SnapshotStatusKey is .../volume.{v}/snapshot.{id}/status.
func SnapshotStatusKey(s SnapshotRef) string { return SnapshotKey(s) + "/status" }

// LeaderKey is the election key for the resource at resourceKey (an
// environment or volume key) under the leader prefix.
func LeaderKey(prefix, resourceKey string) string { return prefix + resourceKey }

// ParsedKey is a key taken apart. Only the fields of its Kind are set.
type ParsedKey struct {
	Kind     KeyKind
	Storage  StorageRef // KindStorage, KindStorageMetadata
	Cluster  uint64     // KindClusterVolume
	VolumeID uint64     // KindClusterVolume
	Env      EnvironmentID
	Volume   VolumeRef   // volume and snapshot kinds
	Snapshot SnapshotRef // snapshot kinds
}

// ParseKey classifies any key of docs/contract.md §2.1 and extracts its ids. It refuses
// anything that would not be written back byte for byte by the key
// builders above.
func ParseKey(key string) (ParsedKey, error) {
	switch {
	case strings.HasPrefix(key, ClustersPrefix):
		return parseClusterKey(key)
	case strings.HasPrefix(key, EnvironmentPrefix):
		return parseEnvironmentKey(key)
	case strings.HasPrefix(key, VolumePrefix):
		return parseVolumeKey(key)
	}
	return ParsedKey{}, fmt.Errorf("key %s: not a mirror key", Quote(key))
}

func parseClusterKey(key string) (ParsedKey, error) {
	parts := strings.Split(strings.TrimPrefix(key, ClustersPrefix), "/")
	bad := func(err error) (ParsedKey, error) {
		if err != nil {
			return ParsedKey{}, fmt.Errorf("key %s: %w", Quote(key), err)
		}
		return ParsedKey{}, fmt.Errorf("key %s: not a storage, storage metadata or volume key", Quote(key))
	}
	if len(parts) < 3 {
		return bad(nil)
	}
	cluster, err := parseID(parts[0])
	if err != nil {
		return bad(err)
	}
	id, err := parseID(parts[2])
	if err != nil {
		return bad(err)
	}
	switch {
	case parts[1] == "storages" && len(parts) == 3:
		return ParsedKey{Kind: KindStorage, Storage: StorageRef{cluster, id}}, nil
	case parts[1] == "storages" && len(parts) == 4 && parts[3] == "metadata":
		return ParsedKey{Kind: KindStorageMetadata, Storage: StorageRef{cluster, id}}, nil
	case parts[1] == "volume" && len(parts) == 3:
		return ParsedKey{Kind: KindClusterVolume, Cluster: cluster, VolumeID: id}, nil
	}
	return bad(nil)
}

func parseEnvironmentKey(key string) (ParsedKey, error) {
	parts := strings.Split(strings.TrimPrefix(key, EnvironmentPrefix), "/")
	env, err := ParseEnvironmentID(parts[0])
	if err != nil {
		return ParsedKey{}, fmt.Errorf("key %s: %w", Quote(key), err)
	}
	p := ParsedKey{Env: env}
	switch {
	case len(parts) == 1:
		p.Kind = KindEnvironment
	case len(parts) == 2 && parts[1] == "operation":
		p.Kind = KindEnvironmentOperation
	case len(parts) == 2 && parts[1] == "status":
		p.Kind = KindEnvironmentStatus
	default:
		return ParsedKey{}, fmt.Errorf("key %s: not an environment, operation or status key", Quote(key))
	}
	return p, nil
}

func parseVolumeKey(key string) (ParsedKey, error) {
	parts := strings.Split(strings.TrimPrefix(key, VolumePrefix), "/")
	bad := func(err error) (ParsedKey, error) {
		if err != nil {
			return ParsedKey{}, fmt.Errorf("key %s: %w", Quote(key), err)
		}
		return ParsedKey{}, fmt.Errorf("key %s: not a mirror volume, operation, status or snapshot key", Quote(key))
	}
	if len(parts) < 2 {
		return bad(nil)
	}
	env, err := ParseEnvironmentID(parts[0])
	if err != nil {
		return bad(err)
	}
	vid, ok := strings.CutPrefix(parts[1], "volume.")
	if !ok {
		return bad(nil)
	}
	id, err := parseID(vid)
	if err != nil {
		return bad(err)
	}
	p := ParsedKey{Env: env, Volume: VolumeRef{Env: env, VolumeID: id}}
	switch {
	case len(parts) == 2:
		p.Kind = KindVolume
		return p, nil
	case len(parts) == 3 && parts[2] == "operation":
		p.Kind = KindVolumeOperation
		return p, nil
	case len(parts) == 3 && parts[2] == "status":
		p.Kind = KindVolumeStatus
		return p, nil
	}
	sid, ok := strings.CutPrefix(parts[2], "snapshot.")
	if !ok || len(parts) > 4 || (len(parts) == 4 && parts[3] != "status") {
		return bad(nil)
	}
	snap, err := parseID(sid)
	if err != nil {
		return bad(err)
	}
	p.Snapshot = SnapshotRef{Volume: p.Volume, SnapshotID: snap}
	p.Kind = KindSnapshot
	if len(parts) == 4 {
		p.Kind = KindSnapshotStatus
	}
	return p, nil
}
