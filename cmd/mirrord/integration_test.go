package main

import (
	"strings"
	"testing"

	"github.com/cdmdr/mirror/core"
)

// The seed's keys, written with a plain etcd client as the DR manager
// does, lead through a real etcd and NATS to the statuses docs/contract.md promises.
func TestSeedKeysThroughEtcdAndNATS(t *testing.T) {
	c := newCluster(t)
	c.backend.AutoSync(true)
	d := c.start("d1")
	c.seedStorages()
	c.seedEnvironment("start")
	c.waitState("mirror_environment/storage.11.13/status", core.StateMirroring)

	c.seedVolume(7, seedUUID, "start")
	st := c.waitState("mirror_volume/storage.11.13/volume.7/status", core.StateMirroring)
	if st.Owner != "d1" || st.Operation != core.OpStart {
		t.Fatalf("status = %+v", st)
	}

	// A snapshot announced on NATS becomes a recovery point.
	c.backend.AddSourceSnapshot(seedUUID, "7b1d6b52-4a3c-4bfa-9a40-2fd2f8d8a0aa")
	c.publish("cdm.cluster.volume_snapshot.created", map[string]any{"cluster_id": 5, "volume_id": 7, "volume_uuid": seedUUID,
		"snapshot_id": 21, "snapshot_uuid": "7b1d6b52-4a3c-4bfa-9a40-2fd2f8d8a0aa", "snapshot_name": "daily"})
	c.waitState("mirror_volume/storage.11.13/volume.7/snapshot.21/status", core.SnapshotMirrored)

	c.setOp(seedVol7, "stop_and_delete")
	c.waitGone("mirror_volume/storage.11.13/volume.7")
	if left := c.keys("mirror_volume/"); len(left) != 0 {
		t.Fatalf("keys left after stop_and_delete: %v", left)
	}
	if rep := c.backend.Replication(seedUUID); rep.TargetExists {
		t.Fatalf("target still exists after stop_and_delete: %+v", rep)
	}

	c.seedEnvironment("stop")
	c.waitGone("mirror_environment/storage.11.13")
	d.stop()
	if leaders := c.keys("mirror_leader/"); len(leaders) != 0 {
		t.Fatalf("leader keys left after a graceful stop: %v", leaders)
	}
	for _, secret := range []string{seedKeyring, seedAdmin} {
		if strings.Contains(d.logs.String(), secret) {
			t.Fatal("a keyring reached the logs")
		}
	}
}
