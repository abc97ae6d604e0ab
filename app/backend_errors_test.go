package app_test

import (
	"fmt"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cdmdr/mirror/core"
	"github.com/cdmdr/mirror/ports"
)

func TestBackendErrorIsRetriedWithBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, _ := mirroringEnv(t)
		unavailable := fmt.Errorf("plugin restarting: %w", ports.ErrRetryable)
		h.Shared.Backend.FailAlways("StartVolume", unavailable)
		h.Shared.Backend.Sync(seedUUID)
		seedVolume(h, vol7, seedUUID, "start")

		st := h.WaitState(volStatus7, core.StateError)
		if st.ErrorReason == nil || st.ErrorReason.Code != "cdm-dr.mirror.volume.failure-start-unavailable" ||
			!strings.Contains(st.ErrorReason.Contents, "plugin restarting") {
			t.Fatalf("error status = %+v", st)
		}
		ev := waitEvent(h, "failure-start-unavailable")
		if ev.Level != ports.LevelError || ev.Key != core.VolumeKey(vol7) {
			t.Fatalf("event = %+v", ev)
		}
		// Retries wait for the backoff (the nudges of the seed's own writes
		// aside), and come when it is over.
		h.WaitIdle()
		n0 := h.Shared.Backend.Calls("StartVolume")
		h.WaitIdle()
		if n := h.Shared.Backend.Calls("StartVolume"); n != n0 {
			t.Fatalf("StartVolume called %d times, then %d without the clock moving", n0, n)
		}
		h.WaitTicking("a retry", core.DefaultBackoff.Base, func() bool { return h.Shared.Backend.Calls("StartVolume") > n0 })
		wantStatus(t, h, volStatus7, core.StateError, "failure-start-unavailable")

		h.Shared.Backend.FailAlways("StartVolume", nil)
		h.TickState(volStatus7, core.StateMirroring, core.DefaultBackoff.Base)
		wantStates(t, h, volStatus7, core.StateError, core.StateInitializing, core.StateMirroring)
		wantStatus(t, h, volStatus7, core.StateMirroring, "")
	})
}

func TestObservationFailureRecovers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, _ := mirroringEnv(t)
		bringUp(h, vol7, seedUUID)
		failLooks(h, fmt.Errorf("mon unreachable: %w", ports.ErrRetryable))
		h.TickState(volStatus7, core.StateError, poll)
		wantStatus(t, h, volStatus7, core.StateError, "cdm-dr.mirror.volume.failure-observe-unavailable")

		failLooks(h, nil)
		st := h.TickState(volStatus7, core.StateMirroring, fastPoll)
		if st.ErrorReason != nil || st.Operation != core.OpStart {
			t.Fatalf("status = %+v", st)
		}
		wantStates(t, h, volStatus7, core.StateMirroring, core.StateError, core.StateMirroring)
		if n := h.Shared.Backend.Calls("StartVolume"); n != 1 {
			t.Fatalf("StartVolume called %d times: a failed look must not restart replication", n)
		}
	})
}

func TestBackendReportsReplicationFailure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, _ := mirroringEnv(t)
		bringUp(h, vol7, seedUUID)
		h.Shared.Backend.SetReplication(seedUUID, ports.VolumeReplication{State: ports.ReplicationFailed, TargetExists: true, Description: "split-brain detected"})
		st := h.TickState(volStatus7, core.StateError, poll)
		if st.ErrorReason == nil || st.ErrorReason.Code != "cdm-dr.mirror.volume.failure-replication-backend_error" ||
			!strings.Contains(st.ErrorReason.Contents, "split-brain detected") {
			t.Fatalf("status = %+v", st)
		}
		// The replication heals on the backend's side: the volume follows.
		h.Shared.Backend.SetReplication(seedUUID, ports.VolumeReplication{State: ports.ReplicationReplaying, TargetExists: true})
		h.TickState(volStatus7, core.StateMirroring, fastPoll)
	})
}

// A split brain under start waits for a person; an explicit resume asks
// the backend to restart replay, and the volume follows it back.
func TestResumeRepairsFailedReplication(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := mirroringVolume(t)
		h.Shared.Backend.SetReplication(seedUUID, ports.VolumeReplication{State: ports.ReplicationFailed, TargetExists: true, Description: "split-brain detected"})
		h.TickState(volStatus7, core.StateError, 30*time.Second)
		h.WaitIdle()
		if n := h.Shared.Backend.Calls("ResumeVolume"); n != 0 {
			t.Fatalf("start resumed a split brain on its own (%d ResumeVolume calls)", n)
		}
		setOp(h, vol7, "resume")
		h.WaitTicking("ResumeVolume called", time.Second, func() bool { return h.Shared.Backend.Calls("ResumeVolume") > 0 })
		h.Shared.Backend.Sync(seedUUID)
		h.TickState(volStatus7, core.StateMirroring, 2*time.Second)
	})
}
