package app_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cdmdr/mirror/adapters/fake"
	"github.com/cdmdr/mirror/app"
	"github.com/cdmdr/mirror/app/harness"
	"github.com/cdmdr/mirror/core"
	"github.com/cdmdr/mirror/ports"
)

// What the operations report when a storage is unreachable (the
// protection site lost): the plugin does what the other side allows and
// lists the rest; the daemon ends the operation and tells the operator.

const sourceLeftover = "mirroring of image volumes/volume-" + seedUUID + " still enabled on storage clusters/5/storages/11 (unreachable)"

// TestStopReportsLeftovers: a stop that kept the target standalone with
// the source unreachable ends with one warn event of its own code listing
// what was left on the source, not the plain finished-stop.
func TestStopReportsLeftovers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, _ := mirroringEnv(t)
		bringUp(h, vol7, seedUUID)
		h.Shared.Backend.SetReport("StopVolume", seedUUID, sourceLeftover)
		setOp(h, vol7, "stop")
		waitVolumeGone(h, vol7)
		ev := waitEvent(h, "cdm-dr.mirror.volume.stop-leftovers-found")
		if ev.Level != ports.LevelWarn || ev.Key != core.VolumeKey(vol7) ||
			!strings.Contains(ev.Message, sourceLeftover) || !strings.Contains(ev.Message, "target copy kept") ||
			strings.Contains(ev.Message, "destroyed") {
			t.Fatalf("stop leftovers event = %+v", ev)
		}
		h.WaitIdle()
		if evs := eventsWith(h, "volume.finished-stop"); len(evs) != 0 {
			t.Fatalf("a stop with leftovers also reported %+v", evs)
		}
		wantReplication(t, h, seedUUID, ports.ReplicationAbsent, true)
	})
}

// TestEnvironmentStopReportsLeftovers: a teardown that could not reach
// one storage ends the environment's stop with a warn event listing what
// it left there.
func TestEnvironmentStopReportsLeftovers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, _ := mirroringEnv(t)
		const left = "peer of pool volumes on storage clusters/5/storages/11 (unreachable)"
		h.Shared.Backend.SetReport("TeardownEnvironment", envID.String(), left)
		setEnvOp(h, "stop")
		h.WaitGone(envKey)
		ev := waitEvent(h, "cdm-dr.mirror.environment.stop-leftovers-found")
		if ev.Level != ports.LevelWarn || ev.Key != envKey || !strings.Contains(ev.Message, left) {
			t.Fatalf("environment leftovers event = %+v", ev)
		}
		h.WaitIdle()
		if evs := eventsWith(h, "environment.finished-stop"); len(evs) != 0 {
			t.Fatalf("a stop with leftovers also reported %+v", evs)
		}
		if n := callsFor(h, "TeardownEnvironment", envID.String()); n != 1 {
			t.Fatalf("plain TeardownEnvironment called %d times, want 1", n)
		}
	})
}

// TestForcedEnvironmentStop: the plain stop refused by the backend (it
// still replicates a volume whose records were deleted by hand) stays in
// error; {"operation":"stop","force":true} passes force to the teardown,
// still waiting while mirror volume records remain.
func TestForcedEnvironmentStop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, _ := mirroringEnv(t)
		bringUp(h, vol8, uuid8)
		h.Shared.Backend.FailAlways("TeardownEnvironment",
			fmt.Errorf("volumes still replicated [%s], stop or destroy them first: %w", seedUUID, ports.ErrPrecondition))

		// A forced stop waits for the environment's volume records too.
		h.Put(core.EnvironmentOperationKey(envID), `{"operation":"stop","force":true}`)
		h.WaitState(envStatus, core.StateStopping)
		wantStatus(t, h, envStatus, core.StateStopping, "waiting-stop-volumes_remain")
		h.Tick(poll)
		h.WaitIdle()
		if n := h.Shared.Backend.Calls("TeardownEnvironment"); n != 0 {
			t.Fatalf("TeardownEnvironment called %d times while a volume record remains", n)
		}

		setEnvOp(h, "stop")
		// The environment's and the volumes' keys come through two
		// watches: let the plain stop reach the cache before the volume
		// goes, or the forced one still standing there is acted on.
		h.WaitIdle()
		setOp(h, vol8, "stop")
		waitVolumeGone(h, vol8)
		h.TickState(envStatus, core.StateError, fastPoll)
		wantStatus(t, h, envStatus, core.StateError, "cdm-dr.mirror.environment.failure-teardown-precondition")
		if n := callsFor(h, "TeardownEnvironment", envID.String()+" force"); n != 0 {
			t.Fatalf("the plain stop tore down by force (%d calls)", n)
		}

		h.Shared.Backend.FailAlways("TeardownEnvironment", nil)
		h.Shared.Backend.SetReport("TeardownEnvironment", envID.String()+" force",
			"replicated image volumes/volume-"+seedUUID+" left on both storages")
		h.Put(core.EnvironmentOperationKey(envID), `{"operation":"stop","force":true}`)
		h.WaitGone(envKey)
		if n := callsFor(h, "TeardownEnvironment", envID.String()+" force"); n != 1 {
			t.Fatalf("forced TeardownEnvironment called %d times, want 1 (calls %v)", n, h.Shared.Backend.CallLog())
		}
		ev := waitEvent(h, "cdm-dr.mirror.environment.stop-leftovers-found")
		if !strings.Contains(ev.Message, "by force") || !strings.Contains(ev.Message, "volume-"+seedUUID) {
			t.Fatalf("forced stop event = %+v", ev)
		}
	})
}

// TestForceIsMalformedUnlessBoolean: a force that is not a boolean makes
// the operation record unusable; nothing is torn down.
func TestForceIsMalformedUnlessBoolean(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, _ := mirroringEnv(t)
		h.Put(core.EnvironmentOperationKey(envID), `{"operation":"stop","force":"yes"}`)
		h.WaitState(envStatus, core.StateError)
		wantStatus(t, h, envStatus, core.StateError, "cdm-dr.mirror.environment.failure-decode_operation-malformed")
		h.WaitIdle()
		if n := h.Shared.Backend.Calls("TeardownEnvironment"); n != 0 {
			t.Fatalf("TeardownEnvironment called %d times", n)
		}
	})
}

// TestEnvironmentNotReadySaysWhy: while the backend reports the
// environment not ready and the prepare has not made it so, the status is
// initializing with the backend's description, written again only when
// the description changes; once ready, mirroring without a reason.
func TestEnvironmentNotReadySaysWhy(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := harness.New(t)
		seedStorages(h)
		const first = "pool volumesdr on storage 13 has no peer yet"
		h.Shared.Backend.SetEnvironmentHealth(envID.String(), ports.EnvironmentHealth{Description: first})
		h.Shared.Backend.FailAlways("PrepareEnvironment", fmt.Errorf("rbd-mirror starting: %w", ports.ErrInProgress))
		seedEnvironment(h, "start")
		h.Start("d1")
		st := h.WaitState(envStatus, core.StateInitializing)
		if st.ErrorReason == nil || st.ErrorReason.Code != "cdm-dr.mirror.environment.waiting-prepare-not_ready" ||
			!strings.Contains(st.ErrorReason.Contents, first) {
			t.Fatalf("initializing status = %+v, want the backend's description", st)
		}
		// Seen again at every look, written once.
		h.WaitTicking("a few looks", fastPoll, func() bool { return callsFor(h, "EnvironmentStatus", envID.String()) >= 4 })
		h.WaitIdle()
		if n := len(statuses(t, h, envStatus)); n != 1 {
			t.Fatalf("%d statuses written for one description, want 1: %+v", n, statuses(t, h, envStatus))
		}
		const second = "rbd-mirror for storage 13 runs on no host"
		h.Shared.Backend.SetEnvironmentHealth(envID.String(), ports.EnvironmentHealth{Description: second})
		h.WaitTicking("the new description", fastPoll, func() bool {
			st, _ := h.Status(envStatus)
			return st.ErrorReason != nil && strings.Contains(st.ErrorReason.Contents, second)
		})
		h.Shared.Backend.FailAlways("PrepareEnvironment", nil)
		h.TickState(envStatus, core.StateMirroring, fastPoll)
		wantStatus(t, h, envStatus, core.StateMirroring, "")
		if n := len(statuses(t, h, envStatus)); n != 3 {
			t.Fatalf("statuses written = %+v, want initializing twice, then mirroring", statuses(t, h, envStatus))
		}
		if evs := eventsWith(h, "environment.waiting-prepare-not_ready"); len(evs) != 2 {
			t.Fatalf("not-ready events = %+v, want one per description", evs)
		}
	})
}

// TestSourceLost: the day the protection site is lost, on the SDK's
// storage model. The source cut, a stop keeps the target and ends, the
// environment's stop ends, each saying what it left on the source; then
// the survey finds those leftovers through the surviving storage and
// reports the lost one as not answered.
func TestSourceLost(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, _ := mirroringEnv(t)
		bringUp(h, vol7, seedUUID)
		restore := h.Shared.Backend.CutStorage(ports.Storage{ClusterID: src.ClusterID, StorageID: src.StorageID})
		defer restore()

		setOp(h, vol7, "stop")
		waitVolumeGone(h, vol7)
		ev := waitEvent(h, "cdm-dr.mirror.volume.stop-leftovers-found")
		if !strings.Contains(ev.Message, seedUUID) {
			t.Fatalf("stop leftovers event = %+v, want it to name the volume", ev)
		}
		wantReplication(t, h, seedUUID, ports.ReplicationAbsent, true)

		setEnvOp(h, "stop")
		h.WaitGone(envKey)
		if ev := waitEvent(h, "cdm-dr.mirror.environment.stop-leftovers-found"); ev.Level != ports.LevelWarn {
			t.Fatalf("environment leftovers event = %+v", ev)
		}

		backends := fake.NewBackends(map[string]ports.StorageBackend{harness.CephType: h.Shared.Backend})
		s, err := app.SurveyLeftovers(context.Background(), h.Shared.KV, backends, time.Second, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if un := s.Unanswered(); len(un) != 1 || un[0].Storage != core.StorageKey(src) {
			t.Fatalf("unanswered = %+v, want the lost source", un)
		}
		kinds := map[string]bool{}
		for _, st := range s.Storages {
			for _, l := range st.Leftovers {
				if st.Storage == core.StorageKey(tgt) && (l.Kind == "pairing" || strings.Contains(l.Name, seedUUID)) {
					kinds[l.Kind] = true
				}
			}
		}
		if !kinds["volume"] || !kinds["pairing"] {
			t.Fatalf("survey = %+v, want the volume and the pairing left on the source, found through the target", s)
		}
	})
}

// TestForcedStopAfterKeysDeletedByHand: the volume's keys deleted by hand
// while the storage still replicates it, the plain stop is refused and
// stays in error; the forced stop ends, listing the volume it left.
func TestForcedStopAfterKeysDeletedByHand(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, _ := mirroringEnv(t)
		bringUp(h, vol7, seedUUID)
		if err := h.Shared.KV.DeletePrefix(context.Background(), core.VolumeKey(vol7)); err != nil {
			t.Fatal(err)
		}
		setEnvOp(h, "stop")
		h.TickState(envStatus, core.StateError, fastPoll)
		wantStatus(t, h, envStatus, core.StateError, "cdm-dr.mirror.environment.failure-teardown-precondition")

		h.Put(core.EnvironmentOperationKey(envID), `{"operation":"stop","force":true}`)
		h.WaitGone(envKey)
		ev := waitEvent(h, "cdm-dr.mirror.environment.stop-leftovers-found")
		if !strings.Contains(ev.Message, seedUUID) || !strings.Contains(ev.Message, "by force") {
			t.Fatalf("forced stop event = %+v, want it to name the replicated volume", ev)
		}
		if h.Shared.Backend.Prepared(envID.String()) {
			t.Fatal("environment still prepared after the forced stop")
		}
	})
}
