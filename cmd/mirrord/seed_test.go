package main

import (
	"fmt"

	"github.com/cdmdr/mirror/core"
)

// The seed's example values, written exactly as the cluster manager and
// the DR manager write them (docs/contract.md §2).
const (
	seedUUID    = "bae4c30d-3119-4870-807e-0e1a9fcbf185"
	seedKeyring = "AQD9R+FhdwTFMRAADjntqI2NKiW93thZ523ClA=="
	seedAdmin   = "AQDYRuFhPS7hAhAAwWIqa5JedccgV+7iQ7Xj+g=="
)

var (
	seedEnv  = core.EnvironmentID{Source: 11, Target: 13}
	seedVol7 = core.VolumeRef{Env: seedEnv, VolumeID: 7}
)

func seedMetadata() string {
	return `{"admin_client":"admin","admin_keyring":"` + seedAdmin + `","backend":"ceph","client":"cinder","conf":"# Please do not change this file directly since it is managed by Ansible and will be overwritten\n[global]\ncluster network = 192.168.1.0/24\nfsid = c95ce9a0-97c5-45f8-ba97-eb9b11fbe664\nmon host = [v2:192.168.1.137:3300,v1:192.168.1.136:6789]\nmon initial members = localhost\nosd pool default crush rule = -1\npublic network = 192.168.1.0/24\n\n","driver":"cinder.volume.drivers.rbd.RBDDriver","keyring":"` + seedKeyring + `","pool":"volumes"}`
}

// seedStorages writes clusters/5/storages/11 and clusters/6/storages/13.
func (c *cluster) seedStorages() {
	c.put("clusters/5/storages/11", `{"cluster_id":5,"storage_id":11,"type":"openstack.storage.type.ceph","backend_name":"ceph"}`)
	c.put("clusters/5/storages/11/metadata", seedMetadata())
	c.put("clusters/6/storages/13", `{"cluster_id":6,"storage_id":13,"type":"openstack.storage.type.ceph","backend_name":"ceph"}`)
	c.put("clusters/6/storages/13/metadata", seedMetadata())
}

// seedEnvironment writes mirror_environment/storage.11.13 and its operation.
func (c *cluster) seedEnvironment(op string) {
	c.put("mirror_environment/storage.11.13", `{"source_cluster_storage":{"cluster_id":5,"storage_id":11},"target_cluster_storage":{"cluster_id":6,"storage_id":13}}`)
	c.put("mirror_environment/storage.11.13/operation", `{"operation":"`+op+`"}`)
}

// seedVolume writes mirror volume id of storage.11.13 with operation op;
// the volume exists on the scripted source storage.
func (c *cluster) seedVolume(id uint64, uuid, op string) {
	c.backend.AddSourceVolume(uuid)
	ref := core.VolumeRef{Env: seedEnv, VolumeID: id}
	c.put(core.VolumeKey(ref), fmt.Sprintf(`{"source_cluster_storage":{"cluster_id":5,"storage_id":11},"target_cluster_storage":{"cluster_id":6,"storage_id":13},"source_volume":{"cluster_id":5,"volume_id":%d,"volume_uuid":"%s"},"source_agent":{"ip":"192.168.137.101","port":8080}}`, id, uuid))
	c.setOp(ref, op)
}

func (c *cluster) setOp(ref core.VolumeRef, op string) {
	c.put(core.VolumeOperationKey(ref), `{"operation":"`+op+`"}`)
}

// uuidFor makes a distinct volume UUID per id.
func uuidFor(id uint64) string { return fmt.Sprintf("00000000-0000-4000-8000-%012d", id) }
