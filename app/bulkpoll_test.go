package app_test

import (
	"testing"
	"testing/synctest"

	"github.com/cdmdr/mirror/core"
	"github.com/cdmdr/mirror/ports"
)

// TestSettledVolumesPolledInBulk: settled volumes are not asked about one
// by one; each poll interval, one bulk call asks about all of them.
func TestSettledVolumesPolledInBulk(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, _ := mirroringEnv(t)
		bringUp(h, vol7, seedUUID)
		bringUp(h, vol8, uuid8)
		bringUp(h, vol9, uuid9)
		h.Tick(fastPoll) // past the first look after settling
		h.WaitIdle()
		one, bulk := h.Shared.Backend.Calls("VolumeStatus"), h.Shared.Backend.Calls("VolumeStatuses")
		for range 3 {
			h.Tick(poll)
			h.WaitIdle()
		}
		if n := h.Shared.Backend.Calls("VolumeStatus") - one; n != 0 {
			t.Errorf("%d VolumeStatus calls over 3 polls of settled volumes, want none: %v", n, h.Shared.Backend.CallLog())
		}
		if n := h.Shared.Backend.Calls("VolumeStatuses") - bulk; n < 1 || n > 3 {
			t.Errorf("%d bulk calls over 3 polls, want 1 to 3: %v", n, h.Shared.Backend.CallLog())
		}
		if n := callsFor(h, "VolumeStatuses", envID.String()+" 3"); n < 1 {
			t.Errorf("no bulk call asked about the 3 volumes at once: %v", h.Shared.Backend.CallLog())
		}
	})
}

// TestBulkPollReappliesForgottenPause: a pause the backend forgot (a
// restart) is found by the bulk poll and applied again.
func TestBulkPollReappliesForgottenPause(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, _ := mirroringEnv(t)
		bringUp(h, vol7, seedUUID)
		bringUp(h, vol8, uuid8)
		setOp(h, vol7, "pause")
		h.TickState(volStatus7, core.StatePaused, fastPoll)
		h.WaitIdle()
		if n := callsFor(h, "PauseVolume", seedUUID); n != 1 {
			t.Fatalf("PauseVolume called %d times, want 1", n)
		}
		rep := h.Shared.Backend.Replication(seedUUID)
		rep.State = ports.ReplicationReplaying
		h.Shared.Backend.SetReplication(seedUUID, rep) // the backend forgot
		h.WaitTicking("the pause applied again", poll, func() bool { return callsFor(h, "PauseVolume", seedUUID) == 2 })
		wantReplication(t, h, seedUUID, ports.ReplicationPaused, true)
		wantStatus(t, h, volStatus7, core.StatePaused, "")
		if n := callsFor(h, "PauseVolume", uuid8); n != 0 {
			t.Errorf("volume 8 paused %d times: the poll disturbed a neighbour", n)
		}
	})
}

// TestBulkPollFindsLostReplication: a mirroring volume whose replication
// the backend lost is reported and started again.
func TestBulkPollFindsLostReplication(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, _ := mirroringEnv(t)
		bringUp(h, vol7, seedUUID)
		h.WaitIdle()
		h.Shared.Backend.SetReplication(seedUUID, ports.VolumeReplication{State: ports.ReplicationAbsent})
		h.TickState(volStatus7, core.StateError, poll)
		wantStatus(t, h, volStatus7, core.StateError, "cdm-dr.mirror.volume.failure-replication-lost")
		h.Shared.Backend.Sync(seedUUID)
		h.TickState(volStatus7, core.StateMirroring, fastPoll)
		if n := callsFor(h, "StartVolume", seedUUID); n != 2 {
			t.Errorf("StartVolume called %d times, want 2 (the start, then the restart)", n)
		}
	})
}

// TestPausedVolumeLosesReplication: a paused volume whose backend lost its
// replication (a restarted plugin, an operator's hand) is set up again and
// paused, as a mirroring one is started again; it does not stay in error.
func TestPausedVolumeLosesReplication(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, _ := mirroringEnv(t)
		bringUp(h, vol7, seedUUID)
		setOp(h, vol7, "pause")
		h.TickState(volStatus7, core.StatePaused, fastPoll)
		h.WaitIdle()
		h.Shared.Backend.SetReplication(seedUUID, ports.VolumeReplication{State: ports.ReplicationAbsent})
		h.TickState(volStatus7, core.StateError, poll)
		wantStatus(t, h, volStatus7, core.StateError, "cdm-dr.mirror.volume.failure-replication-lost")

		st := h.TickState(volStatus7, core.StatePaused, fastPoll)
		if st.Operation != core.OpPause || st.ErrorReason != nil {
			t.Fatalf("status = %+v, want paused under pause, no reason", st)
		}
		wantReplication(t, h, seedUUID, ports.ReplicationPaused, true)
		wantStates(t, h, volStatus7, core.StateInitializing, core.StateMirroring, core.StatePaused, core.StateError, core.StatePaused)
		if n := callsFor(h, "StartVolume", seedUUID); n != 2 {
			t.Errorf("StartVolume called %d times, want 2 (the start, then the set-up again)", n)
		}
		if n := callsFor(h, "PauseVolume", seedUUID); n != 2 {
			t.Errorf("PauseVolume called %d times, want 2 (the pause, then the pause again)", n)
		}
	})
}
