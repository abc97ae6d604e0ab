package core

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"
)

// The wire records of docs/contract.md §2 and §5. Field names and JSON shapes are
// exact: other programs read and write these keys. Decoders accept unknown
// fields (other writers may add some) and refuse records that are missing
// what mirrord needs, with an error wrapping ErrMalformed that names the
// field.

// Storage is clusters/{c}/storages/{s}.
type Storage struct {
	ClusterID   uint64 `json:"cluster_id"`
	StorageID   uint64 `json:"storage_id"`
	Type        string `json:"type"`
	BackendName string `json:"backend_name"`
}

// Ref is the storage's reference.
func (s Storage) Ref() StorageRef { return StorageRef{s.ClusterID, s.StorageID} }

// DecodeStorage decodes a storage record and checks it against its key.
func DecodeStorage(ref StorageRef, data []byte) (Storage, error) {
	var w struct {
		ClusterID   *uint64 `json:"cluster_id"`
		StorageID   *uint64 `json:"storage_id"`
		Type        string  `json:"type"`
		BackendName string  `json:"backend_name"`
	}
	if err := decode(data, &w); err != nil {
		return Storage{}, fmt.Errorf("storage %s: %w", StorageKey(ref), err)
	}
	switch {
	case w.ClusterID == nil || w.StorageID == nil:
		return Storage{}, fmt.Errorf("storage %s: %w: cluster_id and storage_id are required", StorageKey(ref), ErrMalformed)
	case *w.ClusterID != ref.ClusterID || *w.StorageID != ref.StorageID:
		return Storage{}, fmt.Errorf("storage %s: %w: record says cluster %d storage %d", StorageKey(ref), ErrContradiction, *w.ClusterID, *w.StorageID)
	case w.Type == "":
		return Storage{}, fmt.Errorf("storage %s: %w: type is required", StorageKey(ref), ErrMalformed)
	}
	return Storage{ClusterID: *w.ClusterID, StorageID: *w.StorageID, Type: w.Type, BackendName: w.BackendName}, nil
}

// DecodeStorageMetadata checks that metadata is one JSON object and returns
// it unchanged: it is the backend's to read, unknown fields included.
func DecodeStorageMetadata(ref StorageRef, data []byte) (json.RawMessage, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(data, &obj); err != nil || obj == nil {
		// The value holds keyrings: never quote it in the error.
		return nil, fmt.Errorf("storage metadata %s: %w: not a JSON object", StorageMetadataKey(ref), ErrMalformed)
	}
	return json.RawMessage(bytes.Clone(data)), nil
}

// ClusterVolume is clusters/{c}/volume/{v}, and the source_volume of a
// mirror volume.
type ClusterVolume struct {
	ClusterID  uint64 `json:"cluster_id"`
	VolumeID   uint64 `json:"volume_id"`
	VolumeUUID string `json:"volume_uuid"`
}

// EnvironmentSpec is mirror_environment/storage.{s}.{t}.
type EnvironmentSpec struct {
	Source StorageRef `json:"source_cluster_storage"`
	Target StorageRef `json:"target_cluster_storage"`
}

// DecodeEnvironment decodes an environment record and checks it against
// its key.
func DecodeEnvironment(id EnvironmentID, data []byte) (EnvironmentSpec, error) {
	var w struct {
		Source *StorageRef `json:"source_cluster_storage"`
		Target *StorageRef `json:"target_cluster_storage"`
	}
	key := EnvironmentKey(id)
	if err := decode(data, &w); err != nil {
		return EnvironmentSpec{}, fmt.Errorf("environment %s: %w", key, err)
	}
	if w.Source == nil || w.Target == nil {
		return EnvironmentSpec{}, fmt.Errorf("environment %s: %w: source_cluster_storage and target_cluster_storage are required", key, ErrMalformed)
	}
	spec := EnvironmentSpec{Source: *w.Source, Target: *w.Target}
	if err := checkPair(key, id, spec.Source, spec.Target); err != nil {
		return EnvironmentSpec{}, err
	}
	return spec, nil
}

// Agent is the source_agent of a mirror volume.
type Agent struct {
	IP   string `json:"ip"`
	Port uint   `json:"port"`
}

// MirrorVolume is mirror_volume/storage.{s}.{t}/volume.{v}.
type MirrorVolume struct {
	Source       StorageRef    `json:"source_cluster_storage"`
	Target       StorageRef    `json:"target_cluster_storage"`
	SourceVolume ClusterVolume `json:"source_volume"`
	SourceAgent  Agent         `json:"source_agent"`
}

// DecodeMirrorVolume decodes a mirror volume record and checks it against
// its key.
func DecodeMirrorVolume(ref VolumeRef, data []byte) (MirrorVolume, error) {
	var w struct {
		Source       *StorageRef    `json:"source_cluster_storage"`
		Target       *StorageRef    `json:"target_cluster_storage"`
		SourceVolume *ClusterVolume `json:"source_volume"`
		SourceAgent  Agent          `json:"source_agent"`
	}
	key := VolumeKey(ref)
	if err := decode(data, &w); err != nil {
		return MirrorVolume{}, fmt.Errorf("mirror volume %s: %w", key, err)
	}
	if w.Source == nil || w.Target == nil || w.SourceVolume == nil {
		return MirrorVolume{}, fmt.Errorf("mirror volume %s: %w: source_cluster_storage, target_cluster_storage and source_volume are required", key, ErrMalformed)
	}
	mv := MirrorVolume{Source: *w.Source, Target: *w.Target, SourceVolume: *w.SourceVolume, SourceAgent: w.SourceAgent}
	if err := checkPair(key, ref.Env, mv.Source, mv.Target); err != nil {
		return MirrorVolume{}, err
	}
	switch {
	case mv.SourceVolume.VolumeID != ref.VolumeID:
		return MirrorVolume{}, fmt.Errorf("mirror volume %s: %w: source_volume.volume_id is %d", key, ErrContradiction, mv.SourceVolume.VolumeID)
	case mv.SourceVolume.ClusterID != mv.Source.ClusterID:
		return MirrorVolume{}, fmt.Errorf("mirror volume %s: %w: source_volume.cluster_id %d is not the source storage's cluster %d", key, ErrContradiction, mv.SourceVolume.ClusterID, mv.Source.ClusterID)
	case !validUUID(mv.SourceVolume.VolumeUUID):
		return MirrorVolume{}, fmt.Errorf("mirror volume %s: %w: source_volume.volume_uuid %s is not a UUID", key, ErrMalformed, Quote(mv.SourceVolume.VolumeUUID))
	case mv.SourceAgent.Port > 65535:
		return MirrorVolume{}, fmt.Errorf("mirror volume %s: %w: source_agent.port %d is not a TCP port", key, ErrMalformed, mv.SourceAgent.Port)
	}
	return mv, nil
}

func checkPair(key string, id EnvironmentID, src, tgt StorageRef) error {
	if src.StorageID != id.Source || tgt.StorageID != id.Target {
		return fmt.Errorf("%s: %w: record pairs storage %d with %d, key says %d with %d",
			key, ErrContradiction, src.StorageID, tgt.StorageID, id.Source, id.Target)
	}
	if src.StorageID == tgt.StorageID {
		// The keys name a pair by storage ids alone, so one id on both
		// sides cannot be told apart, whatever the clusters say.
		return fmt.Errorf("%s: %w: source and target are the same storage %d", key, ErrContradiction, src.StorageID)
	}
	return nil
}

// OperationRecord is an .../operation value.
type OperationRecord struct {
	Operation Operation `json:"operation"`
	// Force asks an environment's stop to tear down even what the backend
	// still replicates (docs/contract.md §3.1). Read with an environment's
	// stop only: a start has nothing to force, and volumes ignore it.
	Force bool `json:"force,omitempty"`
}

// DecodeVolumeOperation decodes a volume's operation record.
func DecodeVolumeOperation(data []byte) (Operation, error) {
	var w struct {
		Operation string `json:"operation"`
	}
	if err := decode(data, &w); err != nil {
		return "", fmt.Errorf("operation: %w", err)
	}
	return ParseVolumeOperation(w.Operation)
}

// DecodeEnvironmentOperation decodes an environment's operation record:
// its operation and force (a force that is not a boolean is malformed;
// with start it is read and ignored).
func DecodeEnvironmentOperation(data []byte) (OperationRecord, error) {
	var w struct {
		Operation string `json:"operation"`
		Force     *bool  `json:"force"`
	}
	if err := decode(data, &w); err != nil {
		return OperationRecord{}, fmt.Errorf("operation: %w", err)
	}
	op, err := ParseEnvironmentOperation(w.Operation)
	if err != nil {
		return OperationRecord{}, err
	}
	rec := OperationRecord{Operation: op}
	if w.Force != nil && op == OpStop {
		rec.Force = *w.Force
	}
	return rec, nil
}

// Reason is a status's error_reason: a stable dotted code and words a
// person can act on. It never carries secrets.
type Reason struct {
	Code     string `json:"code"`
	Contents string `json:"contents"`
}

// Status is an .../status value. state_code and error_reason keep the
// original's names and meaning; the other fields are optional additions
// old readers ignore (docs/contract.md §2.4).
type Status struct {
	StateCode   State   `json:"state_code"`
	ErrorReason *Reason `json:"error_reason,omitempty"`
	// Operation is the operation the state was reached under. It tells a
	// state reached by the current operation from one left by an earlier
	// operation, which decides whether the "[*]" entries of docs/contract.md §4.1 apply.
	Operation    Operation  `json:"operation,omitempty"`
	Progress     *int       `json:"progress,omitempty"`
	LastSyncTime *time.Time `json:"last_sync_time,omitempty"`
	Lag          string     `json:"lag,omitempty"`
	// KeptRecoveryPoint is a volume's newest complete recovery point
	// that the backend kept as a standalone copy on the target before a
	// resync deleted the replica; it stands until a newer recovery point
	// has arrived.
	KeptRecoveryPoint *KeptRecoveryPoint `json:"kept_recovery_point,omitempty"`
	// UnintendedReplicas lists, sorted, the replicas on an environment's
	// target that no volume of it asked for, as the backend names them.
	// A field of its own, not an error_reason: the environment's state is
	// good, and nothing is wrong with the work mirrord was asked to do.
	UnintendedReplicas []string   `json:"unintended_replicas,omitempty"`
	Owner              string     `json:"owner,omitempty"`
	UpdatedAt          *time.Time `json:"updated_at,omitempty"`
}

// KeptRecoveryPoint is a status's kept_recovery_point (docs/contract.md
// §2.4).
type KeptRecoveryPoint struct {
	// Name says which copy and where, in the backend's words.
	Name string `json:"name"`
	// TakenAt is when the point was made on the source, if known.
	TakenAt *time.Time `json:"taken_at,omitempty"`
}

// DecodeStatus decodes a status record. An empty state_code is malformed.
func DecodeStatus(data []byte) (Status, error) {
	var s Status
	if err := decode(data, &s); err != nil {
		return Status{}, fmt.Errorf("status: %w", err)
	}
	if s.StateCode == StateNone {
		return Status{}, fmt.Errorf("status: %w: state_code is required", ErrMalformed)
	}
	return s, nil
}

// Encode returns the status's JSON.
func (s Status) Encode() []byte { return mustJSON(s) }

// Same reports whether two statuses say the same thing, ignoring
// UpdatedAt, so unchanged statuses are not rewritten.
func (s Status) Same(o Status) bool {
	s.UpdatedAt, o.UpdatedAt = nil, nil
	return bytes.Equal(s.Encode(), o.Encode())
}

// SnapshotRecord is .../volume.{v}/snapshot.{id}: the cluster manager's
// snapshot event as received, plus Deleted once a deletion event came.
type SnapshotRecord struct {
	ClusterID    uint64 `json:"cluster_id"`
	VolumeID     uint64 `json:"volume_id"`
	VolumeUUID   string `json:"volume_uuid"`
	SnapshotID   uint64 `json:"snapshot_id"`
	SnapshotUUID string `json:"snapshot_uuid"`
	SnapshotName string `json:"snapshot_name"`
	Deleted      bool   `json:"deleted,omitempty"`
}

// DecodeSnapshotEvent decodes a NATS snapshot event payload (docs/contract.md §5.2).
func DecodeSnapshotEvent(data []byte) (SnapshotRecord, error) {
	var w struct {
		ClusterID    *uint64 `json:"cluster_id"`
		VolumeID     *uint64 `json:"volume_id"`
		VolumeUUID   string  `json:"volume_uuid"`
		SnapshotID   *uint64 `json:"snapshot_id"`
		SnapshotUUID string  `json:"snapshot_uuid"`
		SnapshotName string  `json:"snapshot_name"`
	}
	if err := decode(data, &w); err != nil {
		return SnapshotRecord{}, fmt.Errorf("snapshot event: %w", err)
	}
	switch {
	case w.ClusterID == nil || w.VolumeID == nil || w.SnapshotID == nil:
		return SnapshotRecord{}, fmt.Errorf("snapshot event: %w: cluster_id, volume_id and snapshot_id are required", ErrMalformed)
	case !validUUID(w.VolumeUUID):
		return SnapshotRecord{}, fmt.Errorf("snapshot event: %w: volume_uuid %s is not a UUID", ErrMalformed, Quote(w.VolumeUUID))
	case !validUUID(w.SnapshotUUID):
		return SnapshotRecord{}, fmt.Errorf("snapshot event: %w: snapshot_uuid %s is not a UUID", ErrMalformed, Quote(w.SnapshotUUID))
	}
	return SnapshotRecord{ClusterID: *w.ClusterID, VolumeID: *w.VolumeID, VolumeUUID: w.VolumeUUID,
		SnapshotID: *w.SnapshotID, SnapshotUUID: w.SnapshotUUID, SnapshotName: w.SnapshotName}, nil
}

// DecodeSnapshotRecord decodes a stored snapshot record and checks it
// against its key.
func DecodeSnapshotRecord(ref SnapshotRef, data []byte) (SnapshotRecord, error) {
	rec, err := DecodeSnapshotEvent(data)
	if err != nil {
		return SnapshotRecord{}, fmt.Errorf("%s: %w", SnapshotKey(ref), err)
	}
	var w struct {
		Deleted bool `json:"deleted"`
	}
	// A deleted that is not a boolean must not read as "not deleted": the
	// snapshot would be replicated again.
	if err := json.Unmarshal(data, &w); err != nil {
		return SnapshotRecord{}, fmt.Errorf("%s: %w: deleted: %v", SnapshotKey(ref), ErrMalformed, err)
	}
	rec.Deleted = w.Deleted
	if rec.SnapshotID != ref.SnapshotID || rec.VolumeID != ref.Volume.VolumeID {
		return SnapshotRecord{}, fmt.Errorf("%s: %w: record is snapshot %d of volume %d", SnapshotKey(ref), ErrContradiction, rec.SnapshotID, rec.VolumeID)
	}
	return rec, nil
}

// Encode returns the record's JSON.
func (r SnapshotRecord) Encode() []byte { return mustJSON(r) }

func decode(data []byte, v any) error {
	if len(bytes.TrimSpace(data)) == 0 {
		return fmt.Errorf("%w: empty value", ErrMalformed)
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return nil
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("core: encoding %T: %v", v, err)) // only plain structs are encoded
	}
	return b
}

// validUUID accepts the canonical 8-4-4-4-12 hex form.
func validUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i, r := range s {
		switch i {
		case 8, 13, 18, 23:
			if r != '-' {
				return false
			}
		default:
			if !('0' <= r && r <= '9' || 'a' <= r && r <= 'f' || 'A' <= r && r <= 'F') {
				return false
			}
		}
	}
	return true
}
