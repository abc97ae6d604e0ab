package app_test

import (
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cdmdr/mirror/app/harness"
	"github.com/cdmdr/mirror/core"
	"github.com/cdmdr/mirror/ports"
)

// keptIn counts the statuses written at key whose kept point is named name.
func keptIn(t *testing.T, h *harness.Harness, key, name string) int {
	t.Helper()
	n := 0
	for _, st := range statuses(t, h, key) {
		if st.KeptRecoveryPoint != nil && st.KeptRecoveryPoint.Name == name {
			n++
		}
	}
	return n
}

// A recovery point the backend kept is recorded in the settled volume's
// status once, announced once, left alone while it stands and removed
// when the backend no longer reports it.
func TestKeptRecoveryPointRecordedOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, _ := mirroringEnv(t)
		bringUp(h, vol7, seedUUID)
		const name = "image volumes/volume-" + seedUUID + ".kept on storage clusters.6.storages.13"
		taken := time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)
		h.Shared.Backend.SetKept(seedUUID, ports.KeptPoint{Name: name, Taken: taken})

		h.WaitTicking("the kept point in the status", poll, func() bool {
			st, _ := h.Status(volStatus7)
			return st.KeptRecoveryPoint != nil
		})
		st := wantStatus(t, h, volStatus7, core.StateMirroring, "")
		if k := st.KeptRecoveryPoint; k.Name != name || k.TakenAt == nil || !k.TakenAt.Equal(taken) {
			t.Fatalf("kept_recovery_point = %+v, want %s taken %s", k, name, taken)
		}
		if !strings.Contains(h.Get(volStatus7), `"kept_recovery_point":{"name":"`+name+`","taken_at":"2026-11-30T09:00:00Z"}`) {
			t.Fatalf("status JSON = %s", h.Get(volStatus7))
		}
		ev := waitEvent(h, core.KeptPointCode())
		if ev.Level != ports.LevelInfo || ev.Key != core.VolumeKey(vol7) || !strings.Contains(ev.Message, name) ||
			!strings.Contains(ev.Message, "newer recovery point") {
			t.Fatalf("event = %+v", ev)
		}

		// Several polls look at it again: nothing new is written or said.
		before := looks(h)
		h.WaitTicking("three more looks", poll, func() bool { return looks(h) >= before+3 })
		h.WaitIdle()
		if n := keptIn(t, h, volStatus7, name); n != 1 {
			t.Fatalf("the status with the kept point was written %d times, want once", n)
		}
		if n := len(eventsWith(h, core.KeptPointCode())); n != 1 {
			t.Fatalf("%d recovery-point-kept events, want 1", n)
		}

		// Another status (paused) still records the point: no new event.
		setOp(h, vol7, "pause")
		st = h.TickState(volStatus7, core.StatePaused, fastPoll)
		if st.KeptRecoveryPoint == nil || st.KeptRecoveryPoint.Name != name {
			t.Fatalf("paused status = %s, want the kept point still recorded", h.Get(volStatus7))
		}
		h.WaitIdle()
		if n := len(eventsWith(h, core.KeptPointCode())); n != 1 {
			t.Fatalf("%d recovery-point-kept events after the pause, want 1", n)
		}

		// A record mirrord cannot use: error, the point still recorded.
		setOp(h, vol7, "frobnicate")
		st = h.WaitState(volStatus7, core.StateError)
		if st.KeptRecoveryPoint == nil {
			t.Fatalf("error status = %s, want the kept point still recorded", h.Get(volStatus7))
		}
		setOp(h, vol7, "pause")
		h.TickState(volStatus7, core.StatePaused, fastPoll)
		h.WaitIdle()
		if n := len(eventsWith(h, core.KeptPointCode())); n != 1 {
			t.Fatalf("%d recovery-point-kept events after a bad operation, want 1", n)
		}

		// A newer point arrived: the backend deleted the copy.
		h.Shared.Backend.SetKept(seedUUID, ports.KeptPoint{})
		h.WaitTicking("the kept point removed", poll, func() bool {
			st, _ := h.Status(volStatus7)
			return st.KeptRecoveryPoint == nil
		})
		wantStatus(t, h, volStatus7, core.StatePaused, "")
		if n := len(eventsWith(h, core.KeptPointCode())); n != 1 {
			t.Fatalf("%d recovery-point-kept events after it went, want 1", n)
		}
	})
}

// Replicas nobody asked for, reported by a ready environment, are listed
// in its status without changing its state or giving it a reason, written
// and announced once per list, never removed.
func TestUnintendedReplicasListedOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, _ := mirroringEnv(t)
		a := "image volumes/volume-a on storage clusters.7.storages.14, copied from clusters.5.storages.11"
		b := "image volumes/volume-b on storage clusters.7.storages.14, copied from clusters.5.storages.11"
		h.Shared.Backend.SetUnintended(envID.String(), b, a)

		h.WaitTicking("the replicas in the status", poll, func() bool {
			st, _ := h.Status(envStatus)
			return len(st.UnintendedReplicas) > 0
		})
		st := wantStatus(t, h, envStatus, core.StateMirroring, "")
		if !slices.Equal(st.UnintendedReplicas, []string{a, b}) {
			t.Fatalf("unintended_replicas = %q, want %q", st.UnintendedReplicas, []string{a, b})
		}
		ev := waitEvent(h, core.UnintendedCode())
		if ev.Level != ports.LevelWarn || ev.Key != envKey || !strings.Contains(ev.Message, a) || !strings.Contains(ev.Message, b) {
			t.Fatalf("event = %+v", ev)
		}

		// Looks that find the same list write and say nothing.
		written := len(statuses(t, h, envStatus))
		before := callsFor(h, "EnvironmentStatus", envID.String())
		h.WaitTicking("three more looks", poll, func() bool { return callsFor(h, "EnvironmentStatus", envID.String()) >= before+3 })
		h.WaitIdle()
		if n := len(statuses(t, h, envStatus)); n != written {
			t.Fatalf("the environment's status was written %d more times with the same list", n-written)
		}
		if n := len(eventsWith(h, core.UnintendedCode())); n != 1 {
			t.Fatalf("%d unintended-replicas-found events, want 1", n)
		}

		// Another list: written and announced again.
		h.Shared.Backend.SetUnintended(envID.String(), a)
		h.WaitTicking("the new list in the status", poll, func() bool {
			st, _ := h.Status(envStatus)
			return slices.Equal(st.UnintendedReplicas, []string{a})
		})
		h.WaitFor("a second event", func() bool { return len(eventsWith(h, core.UnintendedCode())) == 2 })
		wantStatus(t, h, envStatus, core.StateMirroring, "")
		if n := h.Shared.Backend.Calls("PrepareEnvironment"); n != 1 {
			t.Fatalf("PrepareEnvironment called %d times, want 1", n)
		}
	})
}
