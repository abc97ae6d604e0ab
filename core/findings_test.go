package core_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/cdmdr/mirror/core"
	"github.com/cdmdr/mirror/ports"
)

// A kept recovery point the backend reports is recorded in the volume's
// status, the same point is no new status, and a report without one
// removes it. A status written without a report keeps it.
func TestVolumeStatusRecordsKeptPoint(t *testing.T) {
	t.Parallel()
	taken := time.Date(2026, 11, 30, 10, 0, 0, 0, time.FixedZone("CET", 3600))
	kept := ports.KeptPoint{Name: "image volumes/volume-x.kept on storage clusters.6.storages.13", Taken: taken}
	mirroring := &core.Status{StateCode: core.StateMirroring, Operation: core.OpStart}
	plan := func(cur *core.Status, obs *ports.VolumeReplication) *core.Status {
		t.Helper()
		p := core.PlanVolume(core.VolumeInput{Operation: core.OpStart, Status: cur, EnvState: core.StateMirroring, Observed: obs})
		if p.Write == nil {
			t.Fatalf("plan for %+v writes nothing: %+v", obs, p)
		}
		return p.Write
	}

	resync := &ports.VolumeReplication{State: ports.ReplicationSyncing, TargetExists: true, Progress: 10, Kept: kept}
	st := plan(mirroring, resync)
	if st.StateCode != core.StateMirroring || st.KeptRecoveryPoint == nil || st.KeptRecoveryPoint.Name != kept.Name ||
		st.KeptRecoveryPoint.TakenAt == nil || !st.KeptRecoveryPoint.TakenAt.Equal(taken) || st.KeptRecoveryPoint.TakenAt.Location() != time.UTC {
		t.Fatalf("status during the resync = %+v (kept %+v), want mirroring with the kept point in UTC", st, st.KeptRecoveryPoint)
	}
	// Read back from the store, the next look at the same point is no
	// new status.
	stored, err := core.DecodeStatus(st.Encode())
	if err != nil {
		t.Fatal(err)
	}
	if again := plan(&stored, resync); !stored.Same(*again) {
		t.Fatalf("the same kept point writes a new status:\n%s\n%s", stored.Encode(), again.Encode())
	}
	// A refusal, written without asking the backend, keeps it.
	refused := core.PlanVolume(core.VolumeInput{Operation: core.OpStopAndDelete, Status: &core.Status{
		StateCode: core.StateWaiting, Operation: core.OpStart, KeptRecoveryPoint: stored.KeptRecoveryPoint}})
	if refused.Write == nil || refused.Write.ErrorReason == nil || refused.Write.KeptRecoveryPoint == nil {
		t.Fatalf("refusal = %+v, want it to keep the kept point", refused.Write)
	}
	// A failed look keeps it.
	failed := core.PlanVolume(core.VolumeInput{Operation: core.OpStart, Status: &stored, EnvState: core.StateMirroring,
		ObserveErr: fmt.Errorf("rbd: %w", ports.ErrRetryable)})
	if failed.Write == nil || failed.Write.StateCode != core.StateError || failed.Write.KeptRecoveryPoint == nil {
		t.Fatalf("failed look = %+v, want error keeping the kept point", failed.Write)
	}
	// The backend deleted it (a newer point arrived): removed.
	gone := plan(&stored, &ports.VolumeReplication{State: ports.ReplicationReplaying, TargetExists: true})
	if gone.KeptRecoveryPoint != nil || stored.Same(*gone) {
		t.Fatalf("status once the kept point is gone = %s", gone.Encode())
	}
	if plan(nil, &ports.VolumeReplication{State: ports.ReplicationSyncing, TargetExists: true}).KeptRecoveryPoint != nil {
		t.Fatal("a kept point recorded though the backend reports none")
	}
}

// Unintended replicas a ready environment reports are listed in its
// status, sorted, without changing its state or giving it a reason; the
// same list in another order is no new status.
func TestEnvironmentStatusListsUnintendedReplicas(t *testing.T) {
	t.Parallel()
	mirroring := &core.Status{StateCode: core.StateMirroring, Operation: core.OpStart}
	plan := func(cur *core.Status, h ports.EnvironmentHealth) *core.Status {
		t.Helper()
		p := core.PlanEnvironment(core.EnvironmentInput{Operation: core.OpStart, Status: cur, Observed: &h})
		if p.Write == nil {
			t.Fatalf("plan for %+v writes nothing: %+v", h, p)
		}
		return p.Write
	}
	st := plan(mirroring, ports.EnvironmentHealth{Ready: true, Unintended: []string{"b on 14", "a on 14"}})
	if st.StateCode != core.StateMirroring || st.ErrorReason != nil || !slices.Equal(st.UnintendedReplicas, []string{"a on 14", "b on 14"}) {
		t.Fatalf("status = %s, want mirroring, no reason, the replicas sorted", st.Encode())
	}
	stored, err := core.DecodeStatus(st.Encode())
	if err != nil {
		t.Fatal(err)
	}
	if again := plan(&stored, ports.EnvironmentHealth{Ready: true, Unintended: []string{"a on 14", "b on 14"}}); !stored.Same(*again) {
		t.Fatalf("the same list writes a new status: %s", again.Encode())
	}
	if changed := plan(&stored, ports.EnvironmentHealth{Ready: true, Unintended: []string{"a on 14"}}); stored.Same(*changed) {
		t.Fatal("a changed list writes no new status")
	}
	if gone := plan(&stored, ports.EnvironmentHealth{Ready: true}); gone.UnintendedReplicas != nil || stored.Same(*gone) {
		t.Fatalf("status once none is reported = %s", gone.Encode())
	}
	// A stop, which does not look, keeps the list.
	stop := core.PlanEnvironment(core.EnvironmentInput{Operation: core.OpStop, Status: &stored})
	if stop.Write == nil || !slices.Equal(stop.Write.UnintendedReplicas, stored.UnintendedReplicas) {
		t.Fatalf("stop writes %+v, want the list kept", stop.Write)
	}
}
