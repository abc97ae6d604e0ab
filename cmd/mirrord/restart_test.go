package main

import (
	"strings"
	"testing"
	"time"

	"github.com/cdmdr/mirror/core"
)

// etcd stopped and restarted under a running daemon: no crash, and the
// daemon converges on what was asked meanwhile.
func TestEtcdRestart(t *testing.T) {
	c := newCluster(t)
	c.backend.AutoSync(true)
	d := c.start("d1")
	c.seedStorages()
	c.seedEnvironment("start")
	c.seedVolume(7, seedUUID, "start")
	status := core.VolumeStatusKey(seedVol7)
	c.waitState(status, core.StateMirroring)

	c.etcd.Stop()
	time.Sleep(3 * time.Second) // longer than the session TTL: the lead is lost
	c.etcd.Restart(t)
	c.setOp(seedVol7, "pause")
	st := c.waitState(status, core.StatePaused)
	if st.Owner != "d1" {
		t.Fatalf("status %+v, want paused by d1", st)
	}
	if got := c.backend.Replication(seedUUID).State; got != "paused" {
		t.Fatalf("backend replication is %s, want paused", got)
	}
	select {
	case <-d.done:
		t.Fatalf("daemon exited: %v", d.err)
	default:
	}
}

// NATS restarted under a running daemon: snapshot events published after
// the restart, before the daemon reconnected, are processed.
func TestNATSRestart(t *testing.T) {
	c := newCluster(t)
	c.backend.AutoSync(true)
	c.start("d1")
	c.seedStorages()
	c.seedEnvironment("start")
	c.seedVolume(7, seedUUID, "start")
	c.waitState(core.VolumeStatusKey(seedVol7), core.StateMirroring)

	c.nats.Restart(t)
	const snap = "7b1d6b52-4a3c-4bfa-9a40-2fd2f8d8a0aa"
	c.backend.AddSourceSnapshot(seedUUID, snap)
	c.publish("cdm.cluster.volume_snapshot.created", map[string]any{"cluster_id": 5, "volume_id": 7, "volume_uuid": seedUUID,
		"snapshot_id": 21, "snapshot_uuid": snap, "snapshot_name": "after-restart"})
	c.waitState(core.SnapshotStatusKey(core.SnapshotRef{Volume: seedVol7, SnapshotID: 21}), core.SnapshotMirrored)
}

// Snapshot events published while no daemon runs are not lost: the
// durable consumer delivers them when a daemon starts.
func TestSnapshotEventsWhileNoDaemon(t *testing.T) {
	c := newCluster(t)
	c.backend.AutoSync(true)
	d := c.start("d1")
	c.seedStorages()
	c.seedEnvironment("start")
	c.seedVolume(7, seedUUID, "start")
	c.waitState(core.VolumeStatusKey(seedVol7), core.StateMirroring)
	d.stop()

	const snap = "2c9a61a0-1f0e-4e39-8d0b-6a5f0b4c9e11"
	c.backend.AddSourceSnapshot(seedUUID, snap)
	c.publish("cdm.cluster.volume_snapshot.created", map[string]any{"cluster_id": 5, "volume_id": 7, "volume_uuid": seedUUID,
		"snapshot_id": 22, "snapshot_uuid": snap, "snapshot_name": "while-down"})
	c.start("d2")
	c.waitState(core.SnapshotStatusKey(core.SnapshotRef{Volume: seedVol7, SnapshotID: 22}), core.SnapshotMirrored)
}

// A watch that falls behind a compaction recovers through a re-list: the
// daemon is disconnected from etcd, changes and a compaction happen, and
// on reconnection its watch finds its revision compacted.
func TestWatchCompactionRecovers(t *testing.T) {
	c := newCluster(t)
	c.backend.AutoSync(true)
	p := startProxy(t, etcdHostPort(c))
	// A long TTL keeps d1 the leader across the disconnection, so the
	// change it missed is its own to apply.
	d := c.start("d1", viaProxy(p), func(cfg *Config) {
		cfg.Etcd.SessionTTL = 30 * time.Second
		cfg.ResyncInterval = time.Hour // recovery must come from the compaction, not the timer
	})
	c.seedStorages()
	c.seedEnvironment("start")
	c.seedVolume(7, seedUUID, "start")
	c.waitState(core.VolumeStatusKey(seedVol7), core.StateMirroring)

	p.pause()
	p.disconnect()
	c.setOp(seedVol7, "pause")
	for i := 0; i < 20; i++ {
		c.put("unrelated/churn", "x")
	}
	c.etcd.Compact(t, c.revision())
	p.unpause()
	c.waitState(core.VolumeStatusKey(seedVol7), core.StatePaused)
	if !strings.Contains(d.logs.String(), "compacted") {
		t.Fatalf("the daemon never saw the compaction; logs:\n%s", d.logs.String())
	}
}
