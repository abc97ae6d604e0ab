package app_test

import (
	"slices"
	"sync"
	"testing"
	"testing/synctest"

	"github.com/cdmdr/mirror/app/harness"
	"github.com/cdmdr/mirror/core"
	"github.com/cdmdr/mirror/ports"
)

// An operation written while the daemon finishes the previous one is not
// deleted with the keys: the keys go only while the operation key is the
// one the reconcile carried out (docs/contract.md §4.3).

// TestStopAndDeleteWrittenWhileAStopFinishes: the DR manager writes
// stop_and_delete (allowed from stopping) while the stop's StopVolume
// runs. The stop's end keeps the keys; stop_and_delete goes on from
// stopping, deletes the target, and only then are the keys deleted.
func TestStopAndDeleteWrittenWhileAStopFinishes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, _ := mirroringEnv(t)
		bringUp(h, vol7, seedUUID)
		release := h.Shared.Backend.Block("StopVolume")
		defer release()
		setOp(h, vol7, "stop")
		h.WaitFor("StopVolume to be under way", func() bool { return h.Shared.Backend.Blocked("StopVolume") == 1 })
		wantStatus(t, h, volStatus7, core.StateStopping, "")
		setOp(h, vol7, "stop_and_delete")
		release()

		waitVolumeGone(h, vol7)
		wantReplication(t, h, seedUUID, ports.ReplicationAbsent, false)
		if n := callsFor(h, "DeleteTarget", seedUUID); n != 1 {
			t.Fatalf("DeleteTarget called %d times, want 1", n)
		}
		wantStates(t, h, volStatus7, core.StateStopping, core.StateDeleting)
		wantDeletedAfterDeleting(t, h, vol7)
		waitEvent(h, "cdm-dr.mirror.volume.finished-stop_and_delete")
		if evs := eventsWith(h, "finished-stop"); len(evs) != 1 {
			t.Fatalf("finished events = %+v, want the stop_and_delete's only (the stop did not end the volume)", evs)
		}
	})
}

// TestStopWrittenWhileAStopAndDeleteDeletesTheTarget: the DR manager
// writes stop (allowed from stopping) while a stop_and_delete's
// DeleteTarget runs, and the daemon loses its lead before it can write
// deleting. The next leader finds the stop over a stop_and_delete whose
// target is gone: it refuses the stop (there is no copy left to keep)
// instead of ending it as a stop done; the DR manager's stop_and_delete
// then ends the volume without deleting the target again.
func TestStopWrittenWhileAStopAndDeleteDeletesTheTarget(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, d1 := mirroringEnv(t)
		bringUp(h, vol7, seedUUID)
		h.Start("d2")
		release := h.Shared.Backend.Block("DeleteTarget")
		defer release()
		setOp(h, vol7, "stop_and_delete")
		h.WaitFor("DeleteTarget to be under way", func() bool { return h.Shared.Backend.Blocked("DeleteTarget") == 1 })
		setOp(h, vol7, "stop")
		h.WaitIdle()
		var once sync.Once
		d1.Election.BeforeFencedWrite(func() { once.Do(d1.Election.Expire) }) // deleting is never written
		release()

		h.WaitTicking("the stop refused, or the volume gone", fastPoll, func() bool {
			if len(volumeKeys(h, vol7)) == 0 {
				return true
			}
			st, ok := h.Status(volStatus7)
			return ok && st.ErrorReason != nil && st.ErrorReason.Code == "cdm-dr.mirror.volume.refused-operation-stop"
		})
		if slices.Contains(states(t, h, volStatus7), core.StateDeleting) {
			t.Fatal("deleting written: the lead was not lost between DeleteTarget and deleting")
		}
		if len(volumeKeys(h, vol7)) == 0 || len(eventsWith(h, "finished-stop")) != 0 {
			t.Fatalf("the stop ended the volume with its target deleted: events %+v", eventsWith(h, "finished"))
		}
		got, _ := h.Status(volStatus7)
		if got.StateCode != core.StateStopping || got.Operation != core.OpStopAndDelete {
			t.Fatalf("status = %+v, want stopping under stop_and_delete, refusing the stop", got)
		}
		if n := callsFor(h, "StopVolume", seedUUID); n != 0 {
			t.Fatalf("StopVolume called %d times on a volume whose target is gone", n)
		}

		setOp(h, vol7, "stop_and_delete") // the DR manager's answer to the refusal
		waitVolumeGone(h, vol7)
		wantReplication(t, h, seedUUID, ports.ReplicationAbsent, false)
		if n := callsFor(h, "DeleteTarget", seedUUID); n != 1 {
			t.Fatalf("DeleteTarget called %d times, want 1", n)
		}
		waitEvent(h, "cdm-dr.mirror.volume.finished-stop_and_delete")
	})
}

// TestOperationWrittenWhileADestroyFinishes: a stop_and_delete written
// while a destroy's DestroyVolume runs is carried out after it: the keys
// stay until it is done.
func TestOperationWrittenWhileADestroyFinishes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, _ := mirroringEnv(t)
		bringUp(h, vol7, seedUUID)
		release := h.Shared.Backend.Block("DestroyVolume")
		defer release()
		setOp(h, vol7, "destroy")
		h.WaitFor("DestroyVolume to be under way", func() bool { return h.Shared.Backend.Blocked("DestroyVolume") == 1 })
		setOp(h, vol7, "stop_and_delete")
		release()

		waitVolumeGone(h, vol7)
		wantReplication(t, h, seedUUID, ports.ReplicationAbsent, false)
		waitEvent(h, "cdm-dr.mirror.volume.finished-stop_and_delete")
		if evs := eventsWith(h, "finished-destroy"); len(evs) != 0 {
			t.Fatalf("destroy reported finished although an operation was written meanwhile: %+v", evs)
		}
	})
}

// TestEnvironmentStartWrittenWhileAStopFinishes: a start written while an
// environment's teardown runs is carried out after it; without the guard
// the stop's end deleted it with the keys and the environment was gone.
func TestEnvironmentStartWrittenWhileAStopFinishes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, _ := mirroringEnv(t)
		release := h.Shared.Backend.Block("TeardownEnvironment")
		defer release()
		setEnvOp(h, "stop")
		h.WaitFor("TeardownEnvironment to be under way", func() bool { return h.Shared.Backend.Blocked("TeardownEnvironment") == 1 })
		setEnvOp(h, "start")
		release()

		h.TickState(envStatus, core.StateMirroring, fastPoll)
		if h.Get(envKey) == "" || h.Get(core.EnvironmentOperationKey(envID)) == "" {
			t.Fatal("environment keys deleted although a start was written during its stop")
		}
		if !h.Shared.Backend.Prepared(envID.String()) {
			t.Fatal("environment not prepared again after the start")
		}
		if evs := eventsWith(h, "environment.finished-stop"); len(evs) != 0 {
			t.Fatalf("stop reported finished although a start was written meanwhile: %+v", evs)
		}
	})
}

// wantDeletedAfterDeleting checks, in the store's history, that ref's
// operation key was deleted after its status said deleting: the keys went
// only once the target was.
func wantDeletedAfterDeleting(t *testing.T, h *harness.Harness, ref core.VolumeRef) {
	t.Helper()
	deleting, deleted := int64(0), int64(0)
	for _, ev := range history(t, h, core.VolumeKey(ref)) {
		switch {
		case ev.KV.Key == core.VolumeStatusKey(ref) && ev.Type == ports.EventPut:
			if st, err := core.DecodeStatus(ev.KV.Value); err == nil && st.StateCode == core.StateDeleting {
				deleting = ev.KV.ModRevision
			}
		case ev.KV.Key == core.VolumeOperationKey(ref) && ev.Type == ports.EventDelete:
			deleted = ev.KV.ModRevision
		}
	}
	if deleting == 0 || deleted <= deleting {
		t.Fatalf("deleting written at revision %d, operation deleted at %d: want the deletion after", deleting, deleted)
	}
}
