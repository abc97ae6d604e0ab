package cephrbd

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/cdmdr/mirror/plugins/sdk"
)

// A pause needs only the target (its record, the copy's hold and the
// replayer are there): with the source site frozen, VolumeStatus answers
// from the target's copy within reachTimeout, instead of waiting out
// librados' 30 s OSD timeout on the source and failing (the daemon's
// observe before the pause); PauseVolume records and applies the pause on
// the target; VolumeStatus then says paused. VolumeStatuses fails within
// reachTimeout too, saying the source is unreachable. Once the source is back the
// volume is still paused, its replayer stopped, and a resume replays again.
func TestPauseSourceLost(t *testing.T) { testPauseSourceLost(t, modeJournal) }

// TestPauseSourceLostSnapshot: the same in snapshot mode, where the pause
// leaves the source's mirror snapshot schedule when it cannot reach it.
func TestPauseSourceLostSnapshot(t *testing.T) { testPauseSourceLost(t, modeSnapshot) }

func testPauseSourceLost(t *testing.T, mode string) {
	r := newRig(t, mode)
	h := r.newHarness(t)
	startReplaying(t, r, h)
	spec := r.lab.Sites[1].Pool + "/" + imageName(h.vol)

	f := freezeSite(t, r.lab, 0)
	// Well under the 30 s OSD timeout the calls used to wait out.
	const bound = reachTimeout + 10*time.Second
	st, took := statusWithin(t, r, h.vol, bound)
	t.Logf("VolumeStatus with the source frozen: %s in %v: %s", st.State, took, st.Description)
	if st.State != sdk.ReplicationFailed || !strings.Contains(st.Description, "source cannot be reached") || !st.TargetExists {
		t.Errorf("VolumeStatus with the source frozen: %+v; want failed, saying the source cannot be reached", st)
	}

	// The bulk call fails as soon, naming the source: the daemon then asks
	// each volume on its own.
	ctx, cancel := context.WithTimeout(t.Context(), lostCallTimeout)
	defer cancel()
	begin := time.Now()
	_, err := r.be.VolumeStatuses(ctx, h.env, []sdk.Volume{h.vol})
	bulkTook := time.Since(begin).Round(100 * time.Millisecond)
	t.Logf("VolumeStatuses with the source frozen: %v in %v", err, bulkTook)
	if !isUnreachable(err) || bulkTook > bound {
		t.Errorf("VolumeStatuses with the source frozen: %v after %v; want the source unreachable within %v", err, bulkTook, bound)
	}

	begin = time.Now()
	if err := r.be.PauseVolume(ctx, h.vol); err != nil {
		t.Fatalf("PauseVolume with the source frozen: %v (after %v)", err, time.Since(begin).Round(100*time.Millisecond))
	}
	pauseTook := time.Since(begin).Round(100 * time.Millisecond)
	t.Logf("PauseVolume with the source frozen: %v", pauseTook)
	if pauseTook > bound {
		t.Errorf("PauseVolume with the source frozen took %v, want at most %v", pauseTook, bound)
	}
	st, took = statusWithin(t, r, h.vol, bound)
	t.Logf("VolumeStatus after the pause, the source frozen: %s in %v: %s", st.State, took, st.Description)
	if st.State != sdk.ReplicationPaused {
		t.Errorf("VolumeStatus after the pause with the source frozen: %+v; want paused", st)
	}
	if paused, err := isPaused(t.Context(), r.dstIO, h.env.ID, imageName(h.vol)); err != nil || !paused {
		t.Errorf("the pause record on the target: %v, %v; want recorded", paused, err)
	}
	f.thaw(t)

	if st, err := r.be.VolumeStatus(t.Context(), h.vol); err != nil || st.State != sdk.ReplicationPaused {
		t.Errorf("VolumeStatus once the source is back: %+v, %v; want paused", st, err)
	}
	asok := r.be.asokPath(h.env.ID)
	var rs imageReplayerState
	waitFor(t, "the paused volume's replayer stopped once the source is back", 60*time.Second, func() bool {
		var err error
		rs, err = replayerStateOf(t.Context(), asok, r.srcIO, spec)
		return err == nil && rs.State == replayerStopped
	})
	t.Logf("replayer once the source is back: %s %s", rs.State, rs.Description)

	if err := r.be.ResumeVolume(t.Context(), h.vol); err != nil {
		t.Fatalf("ResumeVolume: %v", err)
	}
	waitFor(t, "replaying after the resume", 90*time.Second, func() bool {
		st, err := r.be.VolumeStatus(t.Context(), h.vol)
		return err == nil && st.State == sdk.ReplicationReplaying
	})
}

// statusWithin asks VolumeStatus under lostCallTimeout, failing the test
// on an error or when it took longer than bound.
func statusWithin(t *testing.T, r *labRig, vol sdk.Volume, bound time.Duration) (sdk.VolumeReplication, time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), lostCallTimeout)
	defer cancel()
	begin := time.Now()
	st, err := r.be.VolumeStatus(ctx, vol)
	took := time.Since(begin).Round(100 * time.Millisecond)
	if err != nil {
		t.Fatalf("VolumeStatus with the source frozen: %v (after %v)", err, took)
	}
	if took > bound {
		t.Errorf("VolumeStatus with the source frozen took %v, want at most %v", took, bound)
	}
	return st, took
}
