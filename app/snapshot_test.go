package app_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cdmdr/mirror/app"
	"github.com/cdmdr/mirror/app/harness"
	"github.com/cdmdr/mirror/core"
)

const snapUUID = "5e2b8c1a-93d4-4f6e-b7a0-1c2d3e4f5a21"

var (
	snap21       = core.SnapshotRef{Volume: vol7, SnapshotID: 21}
	snapKey21    = core.SnapshotKey(snap21)
	snapStatus21 = core.SnapshotStatusKey(snap21)
)

const (
	createdDurable = app.DefaultSnapshotDurable + "-created"
	deletedDurable = app.DefaultSnapshotDurable + "-deleted"
)

// snapshotEvent is the docs/contract.md §5.2 payload for snapshot 21 of a volume.
func snapshotEvent(volumeID uint64, volumeUUID string) map[string]any {
	return map[string]any{"cluster_id": 5, "volume_id": volumeID, "volume_uuid": volumeUUID,
		"snapshot_id": 21, "snapshot_uuid": snapUUID, "snapshot_name": "daily-21"}
}

// publish sends v (JSON, or a raw string) on subject as the cluster
// manager would.
func publish(t *testing.T, h *harness.Harness, subject string, v any) {
	t.Helper()
	data, ok := v.(string)
	if !ok {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		data = string(b)
	}
	if err := h.Shared.Bus.Publish(context.Background(), subject, []byte(data)); err != nil {
		t.Fatal(err)
	}
}

func waitAcked(h *harness.Harness) {
	h.T.Helper()
	h.WaitFor("snapshot events acknowledged", func() bool {
		return h.Shared.Bus.Pending(app.DefaultSnapshotCreatedSubject, createdDurable) == 0 &&
			h.Shared.Bus.Pending(app.DefaultSnapshotDeletedSubject, deletedDurable) == 0
	})
}

// snapshotKeys lists every snapshot key in the store.
func snapshotKeys(h *harness.Harness) []string {
	var out []string
	for k := range h.Shared.KV.Dump() {
		if strings.Contains(k, "/snapshot.") {
			out = append(out, k)
		}
	}
	return out
}

func TestSnapshotCreatedThenDeleted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, _ := mirroringEnv(t)
		bringUp(h, vol7, seedUUID)
		h.Shared.Backend.AddSourceSnapshot(seedUUID, snapUUID)
		h.Shared.Backend.SnapshotDelay(2)

		publish(t, h, app.DefaultSnapshotCreatedSubject, snapshotEvent(7, seedUUID))
		h.WaitFor(snapKey21, func() bool { return h.Get(snapKey21) != "" })
		rec, err := core.DecodeSnapshotRecord(snap21, []byte(h.Get(snapKey21)))
		if err != nil {
			t.Fatal(err)
		}
		if rec.ClusterID != 5 || rec.VolumeUUID != seedUUID || rec.SnapshotUUID != snapUUID || rec.SnapshotName != "daily-21" || rec.Deleted {
			t.Fatalf("snapshot record = %+v", rec)
		}
		h.WaitState(snapStatus21, core.SnapshotMirroring)
		h.TickState(snapStatus21, core.SnapshotMirrored, poll)
		wantStates(t, h, snapStatus21, core.SnapshotMirroring, core.SnapshotMirrored)
		if n := callsFor(h, "AddSnapshot", snapUUID); n != 1 {
			t.Fatalf("AddSnapshot called %d times, want 1", n)
		}
		waitAcked(h)

		// A redelivered created event changes nothing.
		publish(t, h, app.DefaultSnapshotCreatedSubject, snapshotEvent(7, seedUUID))
		waitAcked(h)
		h.WaitIdle() // and whatever the record's rewrite set off is done
		wantStatus(t, h, snapStatus21, core.SnapshotMirrored, "")

		publish(t, h, app.DefaultSnapshotDeletedSubject, snapshotEvent(7, seedUUID))
		h.WaitGone(snapKey21)
		h.WaitGone(snapStatus21)
		wantStates(t, h, snapStatus21, core.SnapshotMirrored, core.SnapshotDeleting)
		if n := callsFor(h, "RemoveSnapshot", snapUUID); n != 1 {
			t.Fatalf("RemoveSnapshot called %d times, want 1", n)
		}
		// The volume itself is untouched.
		wantStatus(t, h, volStatus7, core.StateMirroring, "")
		if got := volumeKeys(h, vol7); len(got) != 3 {
			t.Fatalf("volume keys = %v, want record, operation, status", got)
		}
	})
}

func TestSnapshotEventForVolumeNotReplicated(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, _ := mirroringEnv(t)
		bringUp(h, vol7, seedUUID)
		publish(t, h, app.DefaultSnapshotCreatedSubject, snapshotEvent(99, "99999999-9999-4999-8999-999999999999"))
		publish(t, h, app.DefaultSnapshotCreatedSubject, snapshotEvent(7, uuid8)) // volume 7, another uuid
		other := snapshotEvent(7, seedUUID)
		other["cluster_id"] = 8 // volume 7 of another cluster
		publish(t, h, app.DefaultSnapshotCreatedSubject, other)
		publish(t, h, app.DefaultSnapshotDeletedSubject, snapshotEvent(99, "99999999-9999-4999-8999-999999999999"))
		waitAcked(h)
		h.WaitIdle()
		if keys := snapshotKeys(h); len(keys) != 0 {
			t.Fatalf("snapshot keys written for volumes not replicated: %v", keys)
		}
		if evs := eventsWith(h, "snapshot"); len(evs) != 0 {
			t.Fatalf("events for ignored snapshot events: %+v", evs)
		}
		if n := h.Shared.Backend.Calls("AddSnapshot"); n != 0 {
			t.Fatalf("AddSnapshot called %d times", n)
		}
	})
}

func TestMalformedSnapshotEvent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, _ := mirroringEnv(t)
		bringUp(h, vol7, seedUUID)
		publish(t, h, app.DefaultSnapshotCreatedSubject, `{"cluster_id": 5, "volume_id": 7,`)
		noID := snapshotEvent(7, seedUUID)
		delete(noID, "snapshot_id")
		publish(t, h, app.DefaultSnapshotCreatedSubject, noID)
		badUUID := snapshotEvent(7, seedUUID)
		badUUID["snapshot_uuid"] = "not-a-uuid"
		publish(t, h, app.DefaultSnapshotDeletedSubject, badUUID)
		waitAcked(h)
		h.WaitFor("three decode events", func() bool { return len(eventsWith(h, "decode_event")) == 3 })
		for _, ev := range eventsWith(h, "decode_event") {
			if ev.Code != "cdm-dr.mirror.snapshot.failure-decode_event-malformed" || ev.Message == "" {
				t.Fatalf("event = %+v", ev)
			}
		}
		if keys := snapshotKeys(h); len(keys) != 0 {
			t.Fatalf("snapshot keys written for malformed events: %v", keys)
		}
		// The consumer goes on with the next event.
		h.Shared.Backend.AddSourceSnapshot(seedUUID, snapUUID)
		publish(t, h, app.DefaultSnapshotCreatedSubject, snapshotEvent(7, seedUUID))
		h.TickState(snapStatus21, core.SnapshotMirrored, poll)
	})
}

func TestSnapshotEventsWhileNoDaemonRuns(t *testing.T) {
	t.Run("published before any daemon ran", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			h := harness.New(t)
			seedStorages(h)
			seedEnvironment(h, "start")
			h.Shared.Backend.Sync(seedUUID)
			seedVolume(h, vol7, seedUUID, "start")
			h.Shared.Backend.AddSourceSnapshot(seedUUID, snapUUID)
			publish(t, h, app.DefaultSnapshotCreatedSubject, snapshotEvent(7, seedUUID))
			h.Start("d1")
			h.TickState(volStatus7, core.StateMirroring, fastPoll)
			h.TickState(snapStatus21, core.SnapshotMirrored, fastPoll)
			waitAcked(h)
		})
	})
	t.Run("published while the daemons were down", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			h, d1 := mirroringEnv(t)
			bringUp(h, vol7, seedUUID)
			if err := d1.Stop(); err != nil {
				t.Fatal(err)
			}
			h.Shared.Backend.AddSourceSnapshot(seedUUID, snapUUID)
			publish(t, h, app.DefaultSnapshotCreatedSubject, snapshotEvent(7, seedUUID))
			h.WaitIdle()
			if h.Get(snapKey21) != "" {
				t.Fatal("snapshot recorded with no daemon running")
			}
			if n := h.Shared.Bus.Pending(app.DefaultSnapshotCreatedSubject, createdDurable); n != 1 {
				t.Fatalf("%d events pending, want 1", n)
			}
			h.Start("d2")
			st := h.TickState(snapStatus21, core.SnapshotMirrored, poll)
			if st.Owner != "d2" {
				t.Fatalf("snapshot status = %+v, want owner d2", st)
			}
			wantNoError(t, h, volStatus7) // the restart itself disturbs nothing
			waitAcked(h)

			// And a deletion missed the same way.
			h.StopAll()
			publish(t, h, app.DefaultSnapshotDeletedSubject, snapshotEvent(7, seedUUID))
			h.Start("d3")
			h.WaitGone(snapKey21)
			h.WaitGone(snapStatus21)
			if n := callsFor(h, "RemoveSnapshot", snapUUID); n != 1 {
				t.Fatalf("RemoveSnapshot called %d times, want 1", n)
			}
		})
	})
}

// A recovery point's record turns mirrored within about a second of the
// snapshot being usable on the target, not at the volume's fast poll
// (docs/benchmarks.md, "Snapshot record latency, on Ceph"): the DR manager
// waits on it. The worst case is measured: the snapshot becomes usable
// just after the backend answered pending.
func TestSnapshotRecordFollowsTheTarget(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, _ := mirroringEnv(t)
		bringUp(h, vol7, seedUUID)
		h.Shared.Backend.AddSourceSnapshot(seedUUID, snapUUID)
		h.Shared.Backend.SnapshotDelay(2) // pending at the two looks after AddSnapshot

		publish(t, h, app.DefaultSnapshotCreatedSubject, snapshotEvent(7, seedUUID))
		h.WaitState(snapStatus21, core.SnapshotMirroring)
		// The first look answers absent (AddSnapshot follows), the next
		// two pending; the snapshot is usable from the last of them on.
		h.WaitTicking("the last pending answer", 10*time.Millisecond, func() bool {
			return callsFor(h, "SnapshotStatus", snapUUID) == 3
		})
		usable := h.Shared.Clock.Now()
		h.TickState(snapStatus21, core.SnapshotMirrored, 10*time.Millisecond)
		if d := h.Shared.Clock.Now().Sub(usable); d > app.DefaultSnapshotPollInterval {
			t.Fatalf("record mirrored %s after the snapshot was usable on the target, want within %s", d, app.DefaultSnapshotPollInterval)
		}
		// Paced by the snapshot, not more often: two looks while pending.
		if n := callsFor(h, "SnapshotStatus", snapUUID); n != 4 {
			t.Fatalf("SnapshotStatus called %d times, want 4", n)
		}
	})
}
