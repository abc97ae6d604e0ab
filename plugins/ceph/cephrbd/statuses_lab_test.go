package cephrbd

import (
	"fmt"
	"testing"
	"time"

	"github.com/cdmdr/mirror/plugins/sdk"
	"github.com/cdmdr/mirror/plugins/sdk/plugintest"
)

// On real Ceph, the pool lists alone settle a replaying, a paused, a
// stopped (its copy kept) and an unknown volume, as VolumeStatus says.
func TestVolumeStatusesFromListsJournal(t *testing.T)  { testStatusesFromLists(t, modeJournal) }
func TestVolumeStatusesFromListsSnapshot(t *testing.T) { testStatusesFromLists(t, modeSnapshot) }

func testStatusesFromLists(t *testing.T, mode string) {
	r := newRig(t, mode)
	ctx := t.Context()
	hs := []*labHarness{r.newHarness(t), r.newHarness(t), r.newHarness(t)}
	env := hs[0].env
	r.prepareEnvironments(t, env)
	for _, h := range hs {
		r.destroyAtEnd(t, h.vol)
		if err := r.be.StartVolume(ctx, h.vol); err != nil {
			t.Fatalf("StartVolume: %v", err)
		}
	}
	for _, h := range hs {
		waitFor(t, "replaying", 90*time.Second, func() bool {
			st, err := r.be.VolumeStatus(ctx, h.vol)
			return err == nil && st.State == sdk.ReplicationReplaying
		})
	}
	if err := r.be.PauseVolume(ctx, hs[1].vol); err != nil {
		t.Fatalf("PauseVolume: %v", err)
	}
	if err := reportless(r.be.StopVolume(ctx, hs[2].vol)); err != nil {
		t.Fatalf("StopVolume: %v", err)
	}
	missing := hs[0].vol
	missing.VolumeUUID = plugintest.NewUUID()
	vols := []sdk.Volume{hs[0].vol, hs[1].vol, hs[2].vol, missing}
	want := []sdk.VolumeReplication{
		{State: sdk.ReplicationReplaying, TargetExists: true},
		{State: sdk.ReplicationPaused, TargetExists: true},
		{State: sdk.ReplicationAbsent, TargetExists: true},
		{State: sdk.ReplicationAbsent},
	}
	var last string
	settled := func() bool {
		reps, err := r.be.VolumeStatuses(ctx, env, vols)
		if err != nil {
			t.Fatalf("VolumeStatuses: %v", err)
		}
		view, err := r.be.readPools(ctx, env)
		if err != nil {
			t.Fatalf("readPools: %v", err)
		}
		last = ""
		for i, vol := range vols {
			one, err := r.be.VolumeStatus(ctx, vol)
			if err != nil {
				t.Fatalf("VolumeStatus: %v", err)
			}
			listed, settled := r.be.listedStatus(view, imageName(vol))
			if reps[i].State != want[i].State || reps[i].TargetExists != want[i].TargetExists ||
				one.State != want[i].State || one.TargetExists != want[i].TargetExists || !settled || listed.State != want[i].State {
				last += fmt.Sprintf("\n volume %d: bulk %+v, VolumeStatus %+v, lists %+v (settled %v); want %s, TargetExists %v",
					i, reps[i], one, listed, settled, want[i].State, want[i].TargetExists)
			}
		}
		return last == ""
	}
	// The status objects lag rbd-mirror up to ~30 s.
	for deadline := time.Now().Add(60 * time.Second); !settled(); time.Sleep(time.Second) {
		if time.Now().After(deadline) {
			t.Fatalf("within 60 s, the bulk answers were not VolumeStatus's, from the lists alone:%s", last)
		}
	}
}
