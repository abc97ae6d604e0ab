package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/cdmdr/mirror/core"
)

// snapLatencyPool is TestCephSnapshotRecordLatency's pool, on both sites,
// created and removed by the test.
const snapLatencyPool = "snaplat"

// TestCephSnapshotRecordLatency measures, through mirrord with its default
// poll intervals and the Ceph plugin as a process, how long a recovery
// point's record takes to turn mirrored: a snapshot is created on the
// source and announced on NATS as the cluster manager does, the target is
// probed with the rbd CLI until the snapshot is usable there (protected,
// so it can be cloned; in snapshot mode also carried by a complete
// non-primary mirror snapshot), and the record's status is watched in
// etcd. It logs, per mirror mode, record − usable and record − published
// (docs/benchmarks.md), and fails when a record surely turned mirrored
// more than snapRecordBound after the snapshot was usable (the probe's
// own duration taken off).
//
//	CEPH_LAB=DIR go test -count=1 -v -run CephSnapshotRecordLatency ./cmd/mirrord/
//
// MIRROR_SNAPLAT_N sets the number of snapshots per mode (default 2, to keep
// make test lean: journal mode takes about 20 s a snapshot).
func TestCephSnapshotRecordLatency(t *testing.T) {
	l := needCephLab(t)
	n := 2
	if v, err := strconv.Atoi(os.Getenv("MIRROR_SNAPLAT_N")); err == nil && v > 0 {
		n = v
	}
	l.createPool(t, snapLatencyPool)
	state := cephStateDir(t)
	c := newCluster(t)
	// The intervals an operator runs with, not the tests' short ones: the
	// latency under test is theirs.
	def := defaultConfig()
	c.startWithPlugins("d1", installCephPlugin(t, state), func(cfg *Config) {
		cfg.PollInterval, cfg.FastPoll = def.PollInterval, def.FastPoll
	})
	source := func(mode string) string {
		var m map[string]string
		_ = json.Unmarshal([]byte(l.poolMetadata(t, "A", snapLatencyPool)), &m)
		m["mirror_mode"] = mode
		b, _ := json.Marshal(m)
		return string(b)
	}
	c.put("clusters/5/storages/11", `{"cluster_id":5,"storage_id":11,"type":"openstack.storage.type.ceph","backend_name":"ceph"}`)
	c.put("clusters/5/storages/11/metadata", source("journal"))
	c.put("clusters/6/storages/13", `{"cluster_id":6,"storage_id":13,"type":"openstack.storage.type.ceph","backend_name":"ceph"}`)
	c.put("clusters/6/storages/13/metadata", l.poolMetadata(t, "B", snapLatencyPool))
	c.seedEnvironment("start")
	c.waitStateWithin("mirror_environment/storage.11.13/status", core.StateMirroring, 90*time.Second)

	// One volume per mode in the one environment: the mode is the source
	// storage's metadata when a volume starts, read from the image after.
	run := uint64(time.Now().UnixNano() % 1e9)
	vols := []snapLatencyVolume{
		{mode: "journal", ref: core.VolumeRef{Env: seedEnv, VolumeID: 7}, uuid: uuidFor(run*10 + 1)},
		{mode: "snapshot", ref: core.VolumeRef{Env: seedEnv, VolumeID: 8}, uuid: uuidFor(run*10 + 2)},
	}
	for _, v := range vols {
		c.put("clusters/5/storages/11/metadata", source(v.mode))
		if out, err := l.rbd(t, "A", "create", v.image(), "--size", "16M"); err != nil {
			t.Fatalf("create source image: %v %s", err, out)
		}
		c.put(core.VolumeKey(v.ref), fmt.Sprintf(`{"source_cluster_storage":{"cluster_id":5,"storage_id":11},"target_cluster_storage":{"cluster_id":6,"storage_id":13},"source_volume":{"cluster_id":5,"volume_id":%d,"volume_uuid":"%s"}}`, v.ref.VolumeID, v.uuid))
		c.setOp(v.ref, "start")
		c.waitStateWithin(core.VolumeStatusKey(v.ref), core.StateMirroring, 120*time.Second)
	}

	for _, v := range vols {
		var samples []snapLatencySample
		for i := range n {
			s := measureSnapshotRecord(t, c, l, v, uint64(100+i), run*100+uint64(i))
			t.Logf("%s mode, snapshot %d: usable %s after publish (probe every %s), record mirrored %s after publish, %s after usable",
				v.mode, i+1, s.usable.Sub(s.published).Round(time.Millisecond), s.probe.Round(time.Millisecond),
				s.recorded.Sub(s.published).Round(time.Millisecond), s.recorded.Sub(s.usable).Round(time.Millisecond))
			samples = append(samples, s)
		}
		afterUsable := figures(samples, func(s snapLatencySample) time.Duration { return s.recorded.Sub(s.usable) })
		afterPublish := figures(samples, func(s snapLatencySample) time.Duration { return s.recorded.Sub(s.published) })
		t.Logf("%s mode, n=%d: record − usable median %s max %s; record − publish median %s max %s",
			v.mode, n, afterUsable.median, afterUsable.max, afterPublish.median, afterPublish.max)
		if late := figures(samples, func(s snapLatencySample) time.Duration { return s.recorded.Sub(s.found) }); late.max > snapRecordBound {
			t.Errorf("%s mode: a record turned mirrored %s after its snapshot was seen usable on the target, want within %s", v.mode, late.max, snapRecordBound)
		}
	}
}

// snapRecordBound is how long after a snapshot is usable on the target its
// record may turn mirrored: the goal is 2 s, met with about 1 s to spare
// (docs/benchmarks.md); the bound leaves a loaded 2-core machine room,
// and still fails a record left to the bulk poll (30 s).
const snapRecordBound = 4 * time.Second

type snapLatencyVolume struct {
	mode string
	ref  core.VolumeRef
	uuid string
}

func (v snapLatencyVolume) image() string { return snapLatencyPool + "/volume-" + v.uuid }

// snapLatencySample is one snapshot's times: announced on NATS, usable
// on the target (the end of the probe before the one that found it
// usable: the earliest the snapshot may have become usable, so record −
// usable is never understated), found usable (the end of that probe),
// and its record seen mirrored in etcd.
type snapLatencySample struct {
	published, usable, found, recorded time.Time
	probe                              time.Duration // how long one probe of the target took
}

// measureSnapshotRecord creates a snapshot on v's source after a few new
// writes, announces it, and times the target and the record.
func measureSnapshotRecord(t *testing.T, c *cluster, l cephLab, v snapLatencyVolume, snapID, uuidSeed uint64) snapLatencySample {
	t.Helper()
	snapUUID := uuidFor(uuidSeed)
	name := "snapshot-" + snapUUID
	if out, err := l.rbd(t, "A", "bench", "--io-type", "write", "--io-size", "64K", "--io-total", "256K", "--io-pattern", "rand", v.image()); err != nil {
		t.Fatalf("write to the source: %v %s", err, out)
	}
	if out, err := l.rbd(t, "A", "snap", "create", v.image()+"@"+name); err != nil {
		t.Fatalf("snap create: %v %s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	key := core.SnapshotStatusKey(core.SnapshotRef{Volume: v.ref, SnapshotID: snapID})
	recorded := make(chan time.Time, 1)
	w := c.cli.Watch(ctx, key, clientv3.WithRev(c.revision()+1))
	go func() {
		for resp := range w {
			for _, ev := range resp.Events {
				if st, err := core.DecodeStatus(ev.Kv.Value); ev.Type == clientv3.EventTypePut && err == nil && st.StateCode == core.SnapshotMirrored {
					recorded <- time.Now()
					return
				}
			}
		}
	}()

	var s snapLatencySample
	s.published = time.Now()
	c.publish("cdm.cluster.volume_snapshot.created", map[string]any{"cluster_id": 5, "volume_id": v.ref.VolumeID, "volume_uuid": v.uuid,
		"snapshot_id": snapID, "snapshot_uuid": snapUUID, "snapshot_name": "latency"})
	prev := s.published
	for {
		begin := time.Now()
		ok := usableOnTarget(t, l, v, name)
		end := time.Now()
		if ok {
			s.usable, s.found, s.probe = prev, end, end.Sub(begin)
			break
		}
		prev = end
		if ctx.Err() != nil {
			t.Fatalf("%s mode: snapshot %s not usable on the target within 90s", v.mode, name)
		}
	}
	select {
	case s.recorded = <-recorded:
	case <-ctx.Done():
		t.Fatalf("%s mode: %s not mirrored within 90s: %s", v.mode, key, c.get(key))
	}
	return s
}

// usableOnTarget says, from the rbd CLI on site B, whether the snapshot
// is a recovery point there: protected (clonable), and in snapshot mode
// followed by a complete non-primary mirror snapshot (rbd-mirror creates
// the user snapshots of a sync before it copies their data).
func usableOnTarget(t *testing.T, l cephLab, v snapLatencyVolume, name string) bool {
	t.Helper()
	out, err := l.rbd(t, "B", "snap", "ls", "--all", "--format", "json", v.image())
	if err != nil {
		return false // no copy yet, or a transient error: probe again
	}
	var snaps []rbdSnap
	if err := json.Unmarshal([]byte(out), &snaps); err != nil {
		t.Fatalf("rbd snap ls: %v\n%s", err, out)
	}
	i := slices.IndexFunc(snaps, func(s rbdSnap) bool { return s.Name == name })
	if i < 0 || snaps[i].Protected != "true" {
		return false
	}
	if v.mode != "snapshot" {
		return true
	}
	for _, s := range snaps {
		if s.ID > snaps[i].ID && s.Namespace.Type == "mirror" && s.Namespace.State == "non-primary" && s.Namespace.Complete {
			return true
		}
	}
	return false
}

// rbdSnap is one snapshot in `rbd snap ls --all --format json`.
type rbdSnap struct {
	ID        uint64 `json:"id"`
	Name      string `json:"name"`
	Protected string `json:"protected"`
	Namespace struct {
		Type     string `json:"type"`
		State    string `json:"state"`
		Complete bool   `json:"complete"`
	} `json:"namespace"`
}

type latencyFigures struct{ median, max time.Duration }

func figures(samples []snapLatencySample, f func(snapLatencySample) time.Duration) latencyFigures {
	var ds []time.Duration
	for _, s := range samples {
		ds = append(ds, f(s))
	}
	slices.Sort(ds)
	return latencyFigures{median: ds[len(ds)/2].Round(time.Millisecond), max: ds[len(ds)-1].Round(time.Millisecond)}
}
