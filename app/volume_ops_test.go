package app_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cdmdr/mirror/adapters/fake"
	"github.com/cdmdr/mirror/app/harness"
	"github.com/cdmdr/mirror/core"
	"github.com/cdmdr/mirror/ports"
)

var (
	volStatus7 = core.VolumeStatusKey(vol7)
	envStatus  = core.EnvironmentStatusKey(envID)
)

const envRecord = `{"source_cluster_storage":{"cluster_id":5,"storage_id":11},"target_cluster_storage":{"cluster_id":6,"storage_id":13}}`

// idleEnv seeds the storages and environment storage.11.13 without an
// operation (so it has no status) and starts d1.
func idleEnv(t *testing.T) *harness.Harness {
	h := harness.New(t)
	seedStorages(h)
	h.Put(envKey, envRecord)
	h.Start("d1")
	return h
}

func wantReplication(t *testing.T, h *harness.Harness, uuid string, state ports.ReplicationState, targetExists bool) {
	t.Helper()
	rep := h.Shared.Backend.Replication(uuid)
	if rep.State != state || rep.TargetExists != targetExists {
		t.Fatalf("backend replication of %s = %+v, want state %s, target exists %v", uuid, rep, state, targetExists)
	}
}

func TestStartFromNoStatus(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, _ := mirroringEnv(t)
		seedVolume(h, vol7, seedUUID, "start")
		st := h.WaitState(volStatus7, core.StateInitializing)
		if st.Operation != core.OpStart || st.Owner != "d1" {
			t.Fatalf("status = %+v, want operation start, owner d1", st)
		}
		wantReplication(t, h, seedUUID, ports.ReplicationSyncing, true)
		h.Shared.Backend.Sync(seedUUID)
		h.TickState(volStatus7, core.StateMirroring, fastPoll)
		wantStates(t, h, volStatus7, core.StateInitializing, core.StateMirroring)
		wantReplication(t, h, seedUUID, ports.ReplicationReplaying, true)
		if n := callsFor(h, "StartVolume", seedUUID); n != 1 {
			t.Fatalf("StartVolume called %d times, want 1", n)
		}
	})
}

func TestStartWaitsForEnvironment(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := idleEnv(t)
		h.Shared.Backend.Sync(seedUUID)
		seedVolume(h, vol7, seedUUID, "start")
		st := wantStatusEventually(t, h, volStatus7, core.StateWaiting)
		if st.ErrorReason == nil || st.ErrorReason.Code != "cdm-dr.mirror.volume.waiting-environment-not_ready" ||
			!strings.Contains(st.ErrorReason.Contents, "environment") {
			t.Fatalf("waiting status = %+v, want a reason about the environment", st)
		}
		h.WaitIdle()
		if n := h.Shared.Backend.Calls("StartVolume"); n != 0 {
			t.Fatalf("StartVolume called %d times while the environment is not ready", n)
		}

		h.Put(core.EnvironmentOperationKey(envID), map[string]string{"operation": "start"})
		h.TickState(envStatus, core.StateMirroring, fastPoll)
		st = h.TickState(volStatus7, core.StateMirroring, fastPoll)
		if st.ErrorReason != nil {
			t.Fatalf("mirroring status keeps a reason: %+v", st)
		}
		wantStates(t, h, volStatus7, core.StateWaiting, core.StateInitializing, core.StateMirroring)
		wantReplication(t, h, seedUUID, ports.ReplicationReplaying, true)
	})
}

// wantStatusEventually waits for state at key without moving the clock.
func wantStatusEventually(t *testing.T, h *harness.Harness, key string, s core.State) core.Status {
	t.Helper()
	return h.WaitState(key, s)
}

func TestStartFromErrorOfFailedStart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, _ := mirroringEnv(t)
		h.Shared.Backend.FailAlways("StartVolume", fmt.Errorf("pool volumes: mirroring disabled: %w", ports.ErrPrecondition))
		h.Shared.Backend.Sync(seedUUID)
		seedVolume(h, vol7, seedUUID, "start")
		h.WaitState(volStatus7, core.StateError)
		wantStatus(t, h, volStatus7, core.StateError, "cdm-dr.mirror.volume.failure-start-precondition")

		h.Shared.Backend.FailAlways("StartVolume", nil)
		h.TickState(volStatus7, core.StateMirroring, fastPoll)
		wantStates(t, h, volStatus7, core.StateError, core.StateInitializing, core.StateMirroring)
		wantReplication(t, h, seedUUID, ports.ReplicationReplaying, true)
	})
}

func TestStartFromErrorOfOtherOperation(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, _ := mirroringEnv(t)
		bringUp(h, vol7, seedUUID)
		h.Shared.Backend.FailAlways("PauseVolume", fmt.Errorf("rbd: %w", ports.ErrRetryable))
		setOp(h, vol7, "pause")
		h.WaitState(volStatus7, core.StateError)
		wantStatus(t, h, volStatus7, core.StateError, "failure-pause-unavailable")

		setOp(h, vol7, "start")
		st := h.TickState(volStatus7, core.StateMirroring, fastPoll)
		if st.Operation != core.OpStart || st.ErrorReason != nil {
			t.Fatalf("status = %+v, want mirroring under start without a reason", st)
		}
		wantStates(t, h, volStatus7, core.StateMirroring, core.StateError, core.StateMirroring)
		wantReplication(t, h, seedUUID, ports.ReplicationReplaying, true)
		if n := callsFor(h, "StartVolume", seedUUID); n != 1 {
			t.Fatalf("StartVolume called %d times, want 1: the volume was replicating all along", n)
		}
	})
}

func TestPause(t *testing.T) {
	t.Run("from mirroring", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			h, _ := mirroringEnv(t)
			bringUp(h, vol7, seedUUID)
			setOp(h, vol7, "pause")
			st := h.TickState(volStatus7, core.StatePaused, fastPoll)
			if st.Operation != core.OpPause || st.ErrorReason != nil {
				t.Fatalf("status = %+v", st)
			}
			wantStates(t, h, volStatus7, core.StateInitializing, core.StateMirroring, core.StatePaused)
			wantReplication(t, h, seedUUID, ports.ReplicationPaused, true)
			h.WaitTicking("a few polls", poll, func() bool { return looks(h) > 6 })
			if n := callsFor(h, "PauseVolume", seedUUID); n != 1 {
				t.Fatalf("PauseVolume called %d times, want 1", n)
			}
			wantReplication(t, h, seedUUID, ports.ReplicationPaused, true)
		})
	})
	t.Run("from initializing", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			h, _ := mirroringEnv(t)
			seedVolume(h, vol7, seedUUID, "start") // never synced: stays initializing
			h.WaitState(volStatus7, core.StateInitializing)
			setOp(h, vol7, "pause")
			h.TickState(volStatus7, core.StatePaused, fastPoll)
			wantStates(t, h, volStatus7, core.StateInitializing, core.StatePaused)
			wantReplication(t, h, seedUUID, ports.ReplicationPaused, true)
		})
	})
}

func TestResume(t *testing.T) {
	t.Run("from paused", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			h, _ := mirroringEnv(t)
			bringUp(h, vol7, seedUUID)
			setOp(h, vol7, "pause")
			h.TickState(volStatus7, core.StatePaused, fastPoll)
			setOp(h, vol7, "resume")
			st := h.TickState(volStatus7, core.StateMirroring, fastPoll)
			if st.Operation != core.OpResume {
				t.Fatalf("status = %+v, want operation resume", st)
			}
			wantStates(t, h, volStatus7, core.StatePaused, core.StateInitializing, core.StateMirroring)
			wantReplication(t, h, seedUUID, ports.ReplicationReplaying, true)
			if n := callsFor(h, "ResumeVolume", seedUUID); n != 1 {
				t.Fatalf("ResumeVolume called %d times, want 1", n)
			}
		})
	})
	t.Run("from error of a failed resume", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			h, _ := mirroringEnv(t)
			bringUp(h, vol7, seedUUID)
			setOp(h, vol7, "pause")
			h.TickState(volStatus7, core.StatePaused, fastPoll)
			h.Shared.Backend.FailNext("ResumeVolume", fmt.Errorf("plugin restarting: %w", ports.ErrRetryable))
			setOp(h, vol7, "resume")
			// The error may already be followed by the retry's status (a nudge
			// queued while the failing reconcile ran retries at once), so look
			// for it among the statuses written, not only the current one.
			h.WaitFor("the failed resume's error written", func() bool {
				for _, st := range statuses(t, h, volStatus7) {
					if st.StateCode == core.StateError {
						if st.ErrorReason == nil || st.ErrorReason.Code != "cdm-dr.mirror.volume.failure-resume-unavailable" {
							t.Fatalf("error status %+v, want reason cdm-dr.mirror.volume.failure-resume-unavailable", st)
						}
						return true
					}
				}
				return false
			})
			h.TickState(volStatus7, core.StateMirroring, fastPoll)
			wantStates(t, h, volStatus7, core.StatePaused, core.StateError, core.StateInitializing, core.StateMirroring)
			wantReplication(t, h, seedUUID, ports.ReplicationReplaying, true)
			if n := callsFor(h, "ResumeVolume", seedUUID); n != 2 {
				t.Fatalf("ResumeVolume called %d times, want 2 (the failure, the retry)", n)
			}
		})
	})
	t.Run("from error of a failed pause", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			h, _ := mirroringEnv(t)
			bringUp(h, vol7, seedUUID)
			h.Shared.Backend.FailAlways("PauseVolume", fmt.Errorf("rbd: %w", ports.ErrRetryable))
			setOp(h, vol7, "pause")
			h.WaitState(volStatus7, core.StateError)
			setOp(h, vol7, "resume")
			h.TickState(volStatus7, core.StateMirroring, fastPoll)
			wantStates(t, h, volStatus7, core.StateError, core.StateInitializing, core.StateMirroring)
			wantReplication(t, h, seedUUID, ports.ReplicationReplaying, true)
		})
	})
}

// addSnapshotRecord records snapshot 21 of volume ref as the snapshot
// consumer would, the snapshot existing on the source.
func addSnapshotRecord(h *harness.Harness, ref core.VolumeRef, uuid string) {
	h.Shared.Backend.AddSourceSnapshot(uuid, snapUUID)
	h.Put(core.SnapshotKey(core.SnapshotRef{Volume: ref, SnapshotID: 21}), snapshotEvent(ref.VolumeID, uuid))
}

func TestStop(t *testing.T) {
	cases := []struct {
		from  core.State
		setup func(h *harness.Harness)
	}{
		{core.StateMirroring, func(h *harness.Harness) { bringUp(h, vol7, seedUUID) }},
		{core.StatePaused, func(h *harness.Harness) {
			bringUp(h, vol7, seedUUID)
			setOp(h, vol7, "pause")
			h.TickState(volStatus7, core.StatePaused, fastPoll)
		}},
		{core.StateInitializing, func(h *harness.Harness) {
			seedVolume(h, vol7, seedUUID, "start")
			h.WaitState(volStatus7, core.StateInitializing)
		}},
		{core.StateError, func(h *harness.Harness) {
			bringUp(h, vol7, seedUUID)
			failLooks(h, fmt.Errorf("mon unreachable: %w", ports.ErrRetryable))
			h.TickState(volStatus7, core.StateError, poll)
		}},
	}
	for _, c := range cases {
		t.Run("from "+string(c.from), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h, _ := mirroringEnv(t)
				c.setup(h)
				addSnapshotRecord(h, vol7, seedUUID)
				h.WaitFor("snapshot status", func() bool {
					_, ok := h.Status(core.SnapshotStatusKey(core.SnapshotRef{Volume: vol7, SnapshotID: 21}))
					return ok
				})
				if got := volumeKeys(h, vol7); len(got) < 5 {
					t.Fatalf("volume keys before stop = %v, want record, operation, status, snapshot and its status", got)
				}
				setOp(h, vol7, "stop")
				waitVolumeGone(h, vol7)
				wantStates(t, h, volStatus7, c.from, core.StateStopping)
				wantReplication(t, h, seedUUID, ports.ReplicationAbsent, true)
				if n := callsFor(h, "StopVolume", seedUUID); n != 1 {
					t.Fatalf("StopVolume called %d times, want 1", n)
				}
				if n := h.Shared.Backend.Calls("DeleteTarget") + h.Shared.Backend.Calls("DestroyVolume"); n != 0 {
					t.Fatalf("stop deleted the target (%d calls)", n)
				}
				waitEvent(h, "cdm-dr.mirror.volume.finished-stop")
			})
		})
	}
}

// TestStopWaitsForFirstCopy: while the backend says the first copy must
// finish first (ErrInProgress), the volume stays stopping with a reason
// that says so, written once, and the stop goes through afterwards.
func TestStopWaitsForFirstCopy(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, _ := mirroringEnv(t)
		seedVolume(h, vol7, seedUUID, "start")
		h.WaitState(volStatus7, core.StateInitializing)
		h.Shared.Backend.FailAlways("StopVolume", fmt.Errorf("the copy is 40%% done: %w", ports.ErrInProgress))
		setOp(h, vol7, "stop")
		st := h.WaitState(volStatus7, core.StateStopping)
		h.WaitFor("a waiting reason", func() bool {
			st, _ = h.Status(volStatus7)
			return st.ErrorReason != nil
		})
		if st.StateCode != core.StateStopping || st.ErrorReason.Code != "cdm-dr.mirror.volume.waiting-stop-in_progress" ||
			!strings.Contains(st.ErrorReason.Contents, "40% done") {
			t.Fatalf("status while the stop waits = %+v, want stopping with the backend's reason", st)
		}
		h.WaitTicking("StopVolume retried", fastPoll, func() bool { return callsFor(h, "StopVolume", seedUUID) >= 3 })
		h.WaitIdle() // the last retry's reconcile has written what it writes
		waiting := 0
		for _, s := range statuses(t, h, volStatus7) {
			if s.ErrorReason != nil && s.ErrorReason.Code == "cdm-dr.mirror.volume.waiting-stop-in_progress" {
				waiting++
			}
		}
		if waiting != 1 {
			t.Fatalf("the waiting status was written %d times over %d retries, want once", waiting, callsFor(h, "StopVolume", seedUUID))
		}
		if got := volumeKeys(h, vol7); len(got) == 0 {
			t.Fatal("keys deleted while the stop waits")
		}

		h.Shared.Backend.FailAlways("StopVolume", nil)
		waitVolumeGone(h, vol7)
		wantReplication(t, h, seedUUID, ports.ReplicationAbsent, true)
		waitEvent(h, "cdm-dr.mirror.volume.finished-stop")
	})
}

func TestStopAndDelete(t *testing.T) {
	for _, from := range []core.State{core.StateMirroring, core.StatePaused} {
		t.Run("from "+string(from), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h, _ := mirroringEnv(t)
				bringUp(h, vol7, seedUUID)
				if from == core.StatePaused {
					setOp(h, vol7, "pause")
					h.TickState(volStatus7, core.StatePaused, fastPoll)
				}
				addSnapshotRecord(h, vol7, seedUUID)
				h.Shared.Backend.DeleteDelay(3)
				setOp(h, vol7, "stop_and_delete")
				h.WaitState(volStatus7, core.StateDeleting)
				if rep := h.Shared.Backend.Replication(seedUUID); !rep.TargetExists {
					t.Fatalf("deleting while the backend says the target is gone: %+v", rep)
				}
				if got := volumeKeys(h, vol7); len(got) == 0 {
					t.Fatal("keys deleted while the target still exists")
				}
				waitVolumeGone(h, vol7)
				wantStates(t, h, volStatus7, from, core.StateStopping, core.StateDeleting)
				wantReplication(t, h, seedUUID, ports.ReplicationAbsent, false)
				if n := callsFor(h, "DeleteTarget", seedUUID); n < 1 {
					t.Fatal("DeleteTarget never called")
				}
				if n := callsFor(h, "StopVolume", seedUUID); n != 0 {
					t.Fatalf("stop_and_delete called StopVolume %d times", n)
				}
			})
		})
	}
}

func TestDestroy(t *testing.T) {
	cases := []struct {
		name string
		// setup brings volume 7 to its start state and returns what the
		// leftovers event must say ("" for no leftovers event).
		setup        func(h *harness.Harness) string
		backendAsked bool
	}{
		{"from mirroring", func(h *harness.Harness) string {
			bringUp(h, vol7, seedUUID)
			addSnapshotRecord(h, vol7, seedUUID)
			return ""
		}, true},
		{"from paused", func(h *harness.Harness) string {
			bringUp(h, vol7, seedUUID)
			setOp(h, vol7, "pause")
			h.TickState(volStatus7, core.StatePaused, fastPoll)
			return ""
		}, true},
		{"from error", func(h *harness.Harness) string {
			h.Shared.Backend.FailAlways("StartVolume", fmt.Errorf("%w", ports.ErrPrecondition))
			seedVolume(h, vol7, seedUUID, "start")
			h.WaitState(volStatus7, core.StateError)
			return ""
		}, true},
		{"with no status", func(h *harness.Harness) string {
			h.Shared.Backend.AddSourceVolume(seedUUID)
			h.Put(core.VolumeKey(vol7), volumeRecord(7, seedUUID))
			return ""
		}, true},
		{"with the storage record missing", func(h *harness.Harness) string {
			bringUp(h, vol7, seedUUID)
			if err := h.Shared.KV.Delete(context.Background(), core.StorageKey(tgt)); err != nil {
				h.T.Fatal(err)
			}
			// Once the volume says so, the daemon knows the storage is gone.
			h.WaitState(volStatus7, core.StateError)
			wantStatus(t, h, volStatus7, core.StateError, "cdm-dr.mirror.volume.failure-get_storage-not_found")
			return "the backend was not called"
		}, false},
		{"with the volume record missing", func(h *harness.Harness) string {
			h.Put(core.VolumeStatusKey(vol7), `{"state_code":"mirroring"}`)
			return "the mirror volume record does not exist"
		}, false},
		{"with backend leftovers", func(h *harness.Harness) string {
			bringUp(h, vol7, seedUUID)
			h.Shared.Backend.SetLeftovers(seedUUID, "target image volumes/volume-"+seedUUID+" could not be removed")
			return "could not be removed"
		}, true},
		{"with DestroyVolume failing", func(h *harness.Harness) string {
			bringUp(h, vol7, seedUUID)
			h.Shared.Backend.FailNext("DestroyVolume", errors.New("source cluster unreachable"))
			return "source cluster unreachable"
		}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h, _ := mirroringEnv(t)
				leftover := c.setup(h)
				setOp(h, vol7, "destroy")
				waitVolumeGone(h, vol7)
				if got, want := callsFor(h, "DestroyVolume", seedUUID), map[bool]int{true: 1, false: 0}[c.backendAsked]; got != want {
					t.Fatalf("DestroyVolume called %d times, want %d", got, want)
				}
				if c.backendAsked && leftover == "" {
					wantReplication(t, h, seedUUID, ports.ReplicationAbsent, false)
				}
				for _, st := range statuses(t, h, volStatus7) {
					if st.StateCode == core.StateError && st.Operation == core.OpDestroy {
						t.Fatalf("destroy left an error status: %+v", st)
					}
				}
				if leftover == "" {
					waitEvent(h, "cdm-dr.mirror.volume.finished-destroy") // reported after the keys are gone
					if leftovers := eventsWith(h, "destroy-leftovers"); len(leftovers) != 0 {
						t.Fatalf("unexpected leftovers events: %+v", leftovers)
					}
					return
				}
				ev := waitEvent(h, "destroy-leftovers")
				if n := len(eventsWith(h, "destroy")); n != 1 {
					t.Fatalf("destroy events = %+v, want one", eventsWith(h, "destroy"))
				}
				if !strings.Contains(ev.Code, "destroy") || ev.Key != core.VolumeKey(vol7) || ev.Level != ports.LevelWarn ||
					!strings.Contains(ev.Message, leftover) {
					t.Fatalf("leftovers event = %+v, want key %s and a message saying %q", ev, core.VolumeKey(vol7), leftover)
				}
			})
		})
	}
}

func TestDestroyIsBoundedInTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := harness.New(t)
		h.Config.DestroyTimeout = 50 * time.Millisecond
		seedStorages(h)
		seedEnvironment(h, "start")
		h.Start("d1")
		h.TickState(envStatus, core.StateMirroring, fastPoll)
		bringUp(h, vol7, seedUUID)
		release := h.Shared.Backend.Block("DestroyVolume")
		defer release()
		setOp(h, vol7, "destroy")
		waitVolumeGone(h, vol7)
		ev := waitEvent(h, "destroy-leftovers")
		if !strings.Contains(ev.Message, "destroy failed") {
			t.Fatalf("leftovers event = %+v, want it to say the destroy failed", ev)
		}
	})
}

// A destroy whose backend call fails as retryable (the plugin's process
// restarting) asks again within its bound, and ends with nothing left
// behind; a backend failing so every time is asked destroyTries times.
func TestDestroyRetriesARetryableFailure(t *testing.T) {
	for _, c := range []struct {
		name  string
		fail  func(b *fake.Backend, method string, err error)
		calls int
	}{
		{"once", (*fake.Backend).FailNext, 2},
		{"always", (*fake.Backend).FailAlways, 3},
	} {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h, _ := mirroringEnv(t)
				bringUp(h, vol7, seedUUID)
				c.fail(h.Shared.Backend, "DestroyVolume", fmt.Errorf("the plugin process exited during the call: %w", ports.ErrRetryable))
				setOp(h, vol7, "destroy")
				h.WaitTicking("the volume's keys deleted", time.Second, func() bool { return h.Get(core.VolumeKey(vol7)) == "" })
				if got := callsFor(h, "DestroyVolume", seedUUID); got != c.calls {
					t.Fatalf("DestroyVolume called %d times, want %d", got, c.calls)
				}
				if c.calls == 2 {
					wantReplication(t, h, seedUUID, ports.ReplicationAbsent, false)
					waitEvent(h, "cdm-dr.mirror.volume.finished-destroy")
					if ev := eventsWith(h, "destroy-leftovers"); len(ev) != 0 {
						t.Fatalf("leftovers reported after the retry succeeded: %+v", ev)
					}
					return
				}
				if ev := waitEvent(h, "destroy-leftovers"); !strings.Contains(ev.Message, "exited during the call") {
					t.Fatalf("leftovers event = %+v, want the backend's error", ev)
				}
			})
		})
	}
}

func TestRefusedOperation(t *testing.T) {
	t.Run("start while paused", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			h, _ := mirroringEnv(t)
			bringUp(h, vol7, seedUUID)
			setOp(h, vol7, "pause")
			h.TickState(volStatus7, core.StatePaused, fastPoll)
			setOp(h, vol7, "start")
			h.WaitFor("a refusal", func() bool {
				st, _ := h.Status(volStatus7)
				return st.ErrorReason != nil
			})
			st := wantStatus(t, h, volStatus7, core.StatePaused, "refused")
			if st.ErrorReason.Code != "cdm-dr.mirror.volume.refused-operation-start" || !strings.Contains(st.ErrorReason.Contents, "paused") {
				t.Fatalf("reason = %+v", st.ErrorReason)
			}
			for range 3 {
				h.Tick(poll)
				h.WaitIdle()
			}
			wantStatus(t, h, volStatus7, core.StatePaused, "refused-operation-start")
			wantReplication(t, h, seedUUID, ports.ReplicationPaused, true)
			if n := callsFor(h, "StartVolume", seedUUID) + callsFor(h, "ResumeVolume", seedUUID); n != 1 {
				t.Fatalf("start/resume called %d times, want 1 (the first start)", n)
			}
			// Asking for what is allowed clears the refusal.
			setOp(h, vol7, "resume")
			st = h.TickState(volStatus7, core.StateMirroring, fastPoll)
			if st.ErrorReason != nil {
				t.Fatalf("status after resume = %+v", st)
			}
		})
	})
	for _, op := range []string{"pause", "stop"} {
		t.Run(op+" while waiting", func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := idleEnv(t)
				seedVolume(h, vol7, seedUUID, "start")
				h.WaitState(volStatus7, core.StateWaiting)
				setOp(h, vol7, op)
				h.WaitFor("a refusal", func() bool {
					st, _ := h.Status(volStatus7)
					return st.ErrorReason != nil && strings.Contains(st.ErrorReason.Code, "refused")
				})
				wantStatus(t, h, volStatus7, core.StateWaiting, "cdm-dr.mirror.volume.refused-operation-"+op)
				h.Tick(poll)
				h.WaitIdle()
				wantStatus(t, h, volStatus7, core.StateWaiting, "refused-operation-"+op)
				if len(volumeKeys(h, vol7)) != 3 {
					t.Fatalf("keys = %v", volumeKeys(h, vol7))
				}
				// Info (asked once at start, how volumes are placed) touches
				// no storage.
				if log := slices.DeleteFunc(h.Shared.Backend.CallLog(), func(c string) bool { return c == "Info" }); len(log) != 0 {
					t.Fatalf("backend called: %v", log)
				}
			})
		})
	}
}

// TestStopAndDeleteAfterACrash: a daemon died between deleting the target
// and writing deleting. The next finds the volume stopping, the target
// gone, and ends the operation without deleting it a second time.
func TestStopAndDeleteAfterACrash(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, _ := mirroringEnv(t)
		h.Put(volStatus7, core.Status{StateCode: core.StateStopping, Operation: core.OpStopAndDelete}.Encode())
		seedVolume(h, vol7, seedUUID, "stop_and_delete") // the backend has neither replication nor target
		waitVolumeGone(h, vol7)
		wantStates(t, h, volStatus7, core.StateStopping, core.StateDeleting)
		if n := callsFor(h, "DeleteTarget", seedUUID); n != 0 {
			t.Fatalf("DeleteTarget called %d times on a target already deleted", n)
		}
	})
}
