package app_test

import (
	"context"
	"testing"
	"testing/synctest"

	"github.com/cdmdr/mirror/app/harness"
	"github.com/cdmdr/mirror/core"
	"github.com/cdmdr/mirror/ports"
)

func TestResyncCatchesAMissedOperation(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, _ := mirroringEnv(t)
		bringUp(h, vol7, seedUUID)

		h.Shared.KV.DropNextEvents(core.VolumeKey(vol7)+"/operation", 1)
		setOp(h, vol7, "pause")
		h.WaitIdle()
		h.Tick(poll) // a poll reads the (stale) cache: still nothing
		h.WaitIdle()
		wantStatus(t, h, volStatus7, core.StateMirroring, "")
		if n := h.Shared.Backend.Calls("PauseVolume"); n != 0 {
			t.Fatalf("PauseVolume called %d times before the resync", n)
		}

		st := h.TickState(volStatus7, core.StatePaused, poll/3)
		// The first resync comes one interval after the engine started, at
		// the fake clock's epoch (bringUp may have moved the clock on since).
		if elapsed := st.UpdatedAt.Sub(harness.Epoch); elapsed < resync {
			t.Fatalf("paused %v after the engine started, before its first resync (%v)", elapsed, resync)
		}
		wantReplication(t, h, seedUUID, ports.ReplicationPaused, true)
	})
}

func TestResyncCatchesAMissedEnvironmentStart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := idleEnv(t)
		leader := core.LeaderKey(core.DefaultLeaderPrefix, envKey)
		h.WaitFor("d1 to lead the environment", func() bool { return h.Get(leader) == "d1" })
		h.WaitIdle() // and to have read its keys
		h.Shared.KV.DropNextEvents(envKey+"/operation", 1)
		setEnvOp(h, "start")
		h.WaitIdle()
		if _, ok := h.Status(envStatus); ok {
			t.Fatal("environment status written from a dropped event")
		}
		h.TickState(envStatus, core.StateMirroring, poll/3)
		if !h.Shared.Backend.Prepared(envID.String()) {
			t.Fatal("environment not prepared")
		}
	})
}

// The DR manager deletes a volume's keys by hand (etcdctl del) and the
// daemon misses it: the resync finds the volume gone, its worker ends and
// resigns, and nothing is written back.
func TestResyncCatchesMissedDeletion(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, _ := mirroringEnv(t)
		bringUp(h, vol7, seedUUID)
		leader := core.LeaderKey(core.DefaultLeaderPrefix, core.VolumeKey(vol7))
		if h.Get(leader) != "d1" {
			t.Fatalf("leader key %s = %q", leader, h.Get(leader))
		}
		h.Shared.KV.DropNextEvents(core.VolumeKey(vol7), 3) // record, operation, status: one range delete
		if err := h.Shared.KV.DeletePrefix(t.Context(), core.VolumeKey(vol7)); err != nil {
			t.Fatal(err)
		}
		h.WaitTicking("the volume's leader key resigned", poll/3, func() bool { return h.Get(leader) == "" })
		h.WaitIdle()
		if keys := volumeKeys(h, vol7); len(keys) != 0 {
			t.Fatalf("keys written back after the deletion: %v", keys)
		}
	})
}

// The DR manager deletes a volume's keys by hand (no operation): the
// leader lets the volume go, and a volume created again under the same key
// starts from scratch.
func TestVolumeKeysDeletedByHand(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, _ := mirroringEnv(t)
		bringUp(h, vol7, seedUUID)
		leader := core.LeaderKey(core.DefaultLeaderPrefix, core.VolumeKey(vol7))
		if err := h.Shared.KV.DeletePrefix(context.Background(), core.VolumeKey(vol7)); err != nil {
			t.Fatal(err)
		}
		h.WaitFor("the volume's leader key resigned", func() bool { return h.Get(leader) == "" })
		h.Tick(poll)
		h.WaitIdle()
		if keys := volumeKeys(h, vol7); len(keys) != 0 {
			t.Fatalf("keys written back after the deletion: %v", keys)
		}

		h.Shared.Backend.SetReplication(seedUUID, ports.VolumeReplication{State: ports.ReplicationAbsent})
		h.Shared.Backend.Sync(seedUUID)
		seedVolume(h, vol7, seedUUID, "start")
		h.TickState(volStatus7, core.StateMirroring, fastPoll)
		if n := callsFor(h, "StartVolume", seedUUID); n != 2 {
			t.Fatalf("StartVolume called %d times, want 2", n)
		}
	})
}

func TestEnvironmentKeysDeletedByHand(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, _ := mirroringEnv(t)
		leader := core.LeaderKey(core.DefaultLeaderPrefix, envKey)
		if err := h.Shared.KV.DeletePrefix(context.Background(), envKey); err != nil {
			t.Fatal(err)
		}
		h.WaitFor("the environment's leader key resigned", func() bool { return h.Get(leader) == "" })
		h.Tick(poll)
		h.WaitIdle()
		if st := h.Get(envStatus); st != "" {
			t.Fatalf("environment status written back: %s", st)
		}
	})
}
