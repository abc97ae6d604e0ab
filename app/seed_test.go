package app_test

import (
	"github.com/cdmdr/mirror/app/harness"
	"github.com/cdmdr/mirror/core"
)

// The examples of docs/contract.md §2, as the original design gives them.
const (
	seedUUID      = "bae4c30d-3119-4870-807e-0e1a9fcbf185"
	sourceConf    = "[global]\nfsid = c95ce9a0-97c5-45f8-ba97-eb9b11fbe664\nmon host = [v2:127.0.0.1:3300]\n"
	secretKeyring = "AQD9R+FhdwTFMRAADjntqI2NKiW93thZ523ClA=="
)

var (
	envID  = core.EnvironmentID{Source: 11, Target: 13}
	vol7   = core.VolumeRef{Env: envID, VolumeID: 7}
	src    = core.StorageRef{ClusterID: 5, StorageID: 11}
	tgt    = core.StorageRef{ClusterID: 6, StorageID: 13}
	envKey = core.EnvironmentKey(envID)
)

func metadata() map[string]any {
	return map[string]any{"pool": "volumes", "conf": sourceConf, "client": "cinder", "keyring": secretKeyring,
		"admin_client": "admin", "admin_keyring": secretKeyring, "driver": "cinder.volume.drivers.rbd.RBDDriver"}
}

// seedStorages writes the cluster manager's storages 5/11 and 6/13.
func seedStorages(h *harness.Harness) {
	for _, s := range []core.StorageRef{src, tgt} {
		h.Put(core.StorageKey(s), map[string]any{"cluster_id": s.ClusterID, "storage_id": s.StorageID, "type": harness.CephType, "backend_name": "ceph"})
		h.Put(core.StorageMetadataKey(s), metadata())
	}
}

// seedEnvironment writes environment storage.11.13 with operation op.
func seedEnvironment(h *harness.Harness, op string) {
	h.Put(envKey, `{"source_cluster_storage":{"cluster_id":5,"storage_id":11},"target_cluster_storage":{"cluster_id":6,"storage_id":13}}`)
	h.Put(core.EnvironmentOperationKey(envID), map[string]string{"operation": op})
}

// volumeRecord is the seed's mirror volume 7 (or another id).
func volumeRecord(id uint64, uuid string) map[string]any {
	return map[string]any{
		"source_cluster_storage": src, "target_cluster_storage": tgt,
		"source_volume": map[string]any{"cluster_id": 5, "volume_id": id, "volume_uuid": uuid},
		"source_agent":  map[string]any{"ip": "192.168.137.101", "port": 8080},
	}
}

// seedVolume writes mirror volume ref with operation op; the volume exists
// on the fake source storage.
func seedVolume(h *harness.Harness, ref core.VolumeRef, uuid, op string) {
	h.Shared.Backend.AddSourceVolume(uuid)
	h.Put(core.VolumeKey(ref), volumeRecord(ref.VolumeID, uuid))
	setOp(h, ref, op)
}

func setOp(h *harness.Harness, ref core.VolumeRef, op string) {
	h.Put(core.VolumeOperationKey(ref), map[string]string{"operation": op})
}
