package app_test

import (
	"fmt"
	"strings"
	"testing"
	"testing/synctest"

	"github.com/cdmdr/mirror/app/harness"
	"github.com/cdmdr/mirror/core"
	"github.com/cdmdr/mirror/ports"
)

func TestEnvironmentStart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := harness.New(t)
		seedStorages(h)
		seedEnvironment(h, "start")
		h.Start("d1")
		st := h.TickState(envStatus, core.StateMirroring, fastPoll)
		if st.Owner != "d1" || st.ErrorReason != nil || st.Operation != core.OpStart {
			t.Fatalf("environment status = %+v", st)
		}
		wantStates(t, h, envStatus, core.StateInitializing, core.StateMirroring)
		if !h.Shared.Backend.Prepared(envID.String()) {
			t.Fatal("environment not prepared on the backend")
		}
		if n := callsFor(h, "PrepareEnvironment", envID.String()); n != 1 {
			t.Fatalf("PrepareEnvironment called %d times, want 1", n)
		}
		// Settled: polls look, and prepare nothing again.
		h.WaitTicking("a few polls", poll, func() bool { return callsFor(h, "EnvironmentStatus", envID.String()) > 4 })
		if n := callsFor(h, "PrepareEnvironment", envID.String()); n != 1 {
			t.Fatalf("PrepareEnvironment called %d times after settling, want 1", n)
		}
		wantStates(t, h, envStatus, core.StateInitializing, core.StateMirroring)
	})
}

func setEnvOp(h *harness.Harness, op string) {
	h.Put(core.EnvironmentOperationKey(envID), map[string]string{"operation": op})
}

func TestEnvironmentStopWaitsForItsVolumes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, _ := mirroringEnv(t)
		bringUp(h, vol7, seedUUID)
		bringUp(h, vol8, uuid8)

		setEnvOp(h, "stop")
		st := h.WaitState(envStatus, core.StateStopping)
		if st.ErrorReason == nil || st.ErrorReason.Code != "cdm-dr.mirror.environment.waiting-stop-volumes_remain" ||
			!strings.Contains(st.ErrorReason.Contents, core.VolumeKey(vol7)) || !strings.Contains(st.ErrorReason.Contents, core.VolumeKey(vol8)) {
			t.Fatalf("stopping status = %+v, want a reason naming volumes 7 and 8", st)
		}
		h.Tick(poll)
		h.WaitIdle()
		if n := h.Shared.Backend.Calls("TeardownEnvironment"); n != 0 {
			t.Fatalf("TeardownEnvironment called %d times while volumes remain", n)
		}
		if !h.Shared.Backend.Prepared(envID.String()) {
			t.Fatal("environment torn down while volumes remain")
		}
		// Its volumes replicate on, untouched.
		wantStatus(t, h, volStatus7, core.StateMirroring, "")
		wantStatus(t, h, core.VolumeStatusKey(vol8), core.StateMirroring, "")

		setOp(h, vol7, "stop")
		waitVolumeGone(h, vol7)
		h.WaitFor("the reason to name volume 8 only", func() bool {
			st, _ := h.Status(envStatus)
			return st.ErrorReason != nil && !strings.Contains(st.ErrorReason.Contents, core.VolumeKey(vol7)) &&
				strings.Contains(st.ErrorReason.Contents, core.VolumeKey(vol8)) && strings.Contains(st.ErrorReason.Contents, "1 volume")
		})
		h.WaitIdle()
		wantStatus(t, h, envStatus, core.StateStopping, "volumes_remain")
		if n := h.Shared.Backend.Calls("TeardownEnvironment"); n != 0 {
			t.Fatalf("TeardownEnvironment called %d times while volume 8 remains", n)
		}

		setOp(h, vol8, "stop")
		waitVolumeGone(h, vol8)
		h.WaitTicking("environment keys deleted", fastPoll, func() bool {
			for k := range h.Shared.KV.Dump() {
				if k == envKey || strings.HasPrefix(k, envKey+"/") {
					return false
				}
			}
			return true
		})
		if n := callsFor(h, "TeardownEnvironment", envID.String()); n != 1 {
			t.Fatalf("TeardownEnvironment called %d times, want 1", n)
		}
		if h.Shared.Backend.Prepared(envID.String()) {
			t.Fatal("environment still prepared on the backend")
		}
		wantStates(t, h, envStatus, core.StateMirroring, core.StateStopping)
		waitEvent(h, "cdm-dr.mirror.environment.finished-stop")
		h.WaitFor("no leader keys", func() bool { return len(leaderKeys(h)) == 0 })
	})
}

func TestEnvironmentStopWithoutVolumes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, _ := mirroringEnv(t)
		setEnvOp(h, "stop")
		h.WaitGone(envKey)
		h.WaitGone(envStatus)
		h.WaitGone(core.EnvironmentOperationKey(envID))
		if h.Shared.Backend.Prepared(envID.String()) {
			t.Fatal("environment still prepared")
		}
	})
}

func TestEnvironmentPrepareFails(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := harness.New(t)
		seedStorages(h)
		h.Shared.Backend.FailAlways("PrepareEnvironment",
			fmt.Errorf("target pool volumes is already peered with another source: %w", ports.ErrPrecondition))
		seedEnvironment(h, "start")
		h.Start("d1")
		h.WaitState(envStatus, core.StateError)
		st := wantStatus(t, h, envStatus, core.StateError, "cdm-dr.mirror.environment.failure-prepare-precondition")
		if !strings.Contains(st.ErrorReason.Contents, "already peered") {
			t.Fatalf("reason %q does not say why", st.ErrorReason.Contents)
		}
		if ev := waitEvent(h, "environment.failure-prepare-precondition"); ev.Level != ports.LevelError || ev.Key != envKey {
			t.Fatalf("event = %+v, want an error event for the environment", ev)
		}

		// A volume of the environment waits, saying why.
		h.Shared.Backend.Sync(seedUUID)
		seedVolume(h, vol7, seedUUID, "start")
		h.WaitFor("volume 7 waiting for the environment in error", func() bool {
			st, _ := h.Status(volStatus7)
			return st.StateCode == core.StateWaiting && strings.HasSuffix(st.ErrorReason.Contents, "it is error")
		})

		// Retries keep the reason visible; once the backend accepts, all moves on.
		h.Tick(fastPoll)
		h.WaitIdle()
		wantStatus(t, h, envStatus, core.StateError, "failure-prepare-precondition")
		h.Shared.Backend.FailAlways("PrepareEnvironment", nil)
		h.TickState(envStatus, core.StateMirroring, fastPoll)
		h.TickState(volStatus7, core.StateMirroring, fastPoll)
		wantStates(t, h, envStatus, core.StateInitializing, core.StateError, core.StateMirroring)
		wantStates(t, h, volStatus7, core.StateWaiting, core.StateInitializing, core.StateMirroring)
	})
}

// TestTakeoverKeepsAReadyEnvironment: a new leader that finds the work the
// old one ran for a ready environment gone (another host) prepares it again
// without writing a status: a takeover is no change of state.
func TestTakeoverKeepsAReadyEnvironment(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, d1 := mirroringEnv(t)
		if err := d1.Stop(); err != nil {
			t.Fatal(err)
		}
		h.Shared.Backend.SetEnvironmentHealth(envID.String(), ports.EnvironmentHealth{Ready: false, Description: "rbd-mirror runs on no host"})
		h.Start("d2")
		h.WaitFor("d2 to prepare the environment again", func() bool {
			return callsFor(h, "PrepareEnvironment", envID.String()) == 2
		})
		h.WaitIdle()
		wantStates(t, h, envStatus, core.StateInitializing, core.StateMirroring)
		if st, _ := h.Status(envStatus); st.Owner != "d1" {
			t.Fatalf("environment status rewritten by %s on takeover: %+v", st.Owner, st)
		}
	})
}
