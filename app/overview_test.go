package app_test

import (
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cdmdr/mirror/app"
	"github.com/cdmdr/mirror/app/harness"
	"github.com/cdmdr/mirror/core"
)

// reconciles records what the engine tells its ports.Metrics.
type reconciles struct {
	mu     sync.Mutex
	byKind map[string]int
}

func (r *reconciles) Reconciled(kind string, _ time.Duration, _ error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.byKind[kind]++
}

func (r *reconciles) count(kind string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.byKind[kind]
}

// The figures metrics export: states seen, leads, last syncs and
// snapshots pending, and every reconcile measured.
func TestMetricsOverviewAndReconciles(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &reconciles{byKind: map[string]int{}}
		h := harness.New(t)
		h.Config.Metrics = rec
		seedStorages(h)
		seedEnvironment(h, "start")
		d := h.Start("d1")
		h.TickState(core.EnvironmentStatusKey(envID), core.StateMirroring, fastPoll)
		bringUp(h, vol7, seedUUID)
		// A volume with no operation yet: no status, led all the same.
		h.Shared.Backend.AddSourceVolume(uuid8)
		h.Put(core.VolumeKey(vol8), volumeRecord(8, uuid8))
		h.Shared.Backend.AddSourceSnapshot(seedUUID, snapUUID)
		h.Shared.Backend.SnapshotDelay(1000)
		publish(t, h, app.DefaultSnapshotCreatedSubject, snapshotEvent(7, seedUUID))
		h.WaitState(snapStatus21, core.SnapshotMirroring)
		h.WaitIdle()

		o := d.Engine.Overview()
		if o.Volumes["mirroring"] != 1 || o.Volumes[""] != 1 || len(o.Volumes) != 2 {
			t.Errorf("volumes by state = %v, want 1 mirroring, 1 without status", o.Volumes)
		}
		if o.Environments["mirroring"] != 1 || o.LedEnvironments != 1 || o.UnledEnvironments != 0 {
			t.Errorf("environments = %v, led %d, unled %d", o.Environments, o.LedEnvironments, o.UnledEnvironments)
		}
		if o.SnapshotsPending != 1 {
			t.Errorf("snapshots pending = %d, want 1", o.SnapshotsPending)
		}
		byVolume := map[string]string{}
		for _, v := range o.LedVolumes {
			byVolume[v.Environment+"/"+v.Volume] = v.State
			if v.Volume == "volume.7" && v.LastSync.IsZero() {
				t.Errorf("volume 7 led with no last sync: %+v", v)
			}
		}
		if len(byVolume) != 2 || byVolume["storage.11.13/volume.7"] != "mirroring" || byVolume["storage.11.13/volume.8"] != "" {
			t.Errorf("led volumes = %+v", o.LedVolumes)
		}
		if rec.count("volume") == 0 || rec.count("environment") == 0 {
			t.Errorf("reconciles measured: %v, want volumes and environments", rec.byKind)
		}

		// Stopped: it leads nothing, and nobody else does.
		if err := d.Stop(); err != nil {
			t.Fatal(err)
		}
		o = d.Engine.Overview()
		if len(o.LedVolumes) != 0 || o.LedEnvironments != 0 || o.SnapshotsPending != 0 {
			t.Errorf("after the stop: led %d volumes, %d environments, %d snapshots pending", len(o.LedVolumes), o.LedEnvironments, o.SnapshotsPending)
		}
	})
}
