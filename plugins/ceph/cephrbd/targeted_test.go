package cephrbd

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ceph/go-ceph/rados"
	"github.com/ceph/go-ceph/rbd"

	"github.com/cdmdr/mirror/plugins/sdk"
	"github.com/cdmdr/mirror/plugins/sdk/plugintest"
)

func waitFor(t testing.TB, what string, timeout time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("not %s within %v", what, timeout)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// startReplaying prepares the environment, starts the volume and waits
// for it to replay; cleanup destroys it and tears the environment down.
func startReplaying(t testing.TB, r *labRig, h *labHarness) {
	t.Helper()
	ctx := t.Context()
	r.prepareEnvironments(t, h.env)
	r.destroyAtEnd(t, h.vol)
	if err := r.be.StartVolume(ctx, h.vol); err != nil {
		t.Fatalf("StartVolume: %v", err)
	}
	begin := time.Now()
	waitFor(t, "replaying", 90*time.Second, func() bool {
		st, err := r.be.VolumeStatus(ctx, h.vol)
		return err == nil && st.State == sdk.ReplicationReplaying && st.TargetExists
	})
	t.Logf("start → replaying in %v", time.Since(begin).Round(100*time.Millisecond))
}

// TestMultiplePeerTakesShipPath: a target pool that already pulls from
// another source through rbd-mirror (N:1 into one pool) still refuses
// the rbd-mirror environment prepared before that peer came (it keeps
// its path), and serves a new environment by the ship path, touching
// neither the foreign peer nor the source pool's mirroring.
func TestMultiplePeerTakesShipPath(t *testing.T) {
	r := newRig(t, modeJournal)
	env := r.env(t)
	ctx := t.Context()
	pidFile := filepath.Join(r.be.runDir(env.ID), "rbd-mirror.pid")
	pathOf := func() (string, bool) {
		t.Helper()
		mk, ok, err := r.be.preparedMarker(ctx, r.dstIO, env.ID)
		if err != nil {
			t.Fatalf("read the marker: %v", err)
		}
		return mk.Path, ok
	}

	r.prepareEnvironments(t, env)
	if p, ok := pathOf(); !ok || p != "" {
		t.Fatalf("marker after the first prepare: path %q, prepared %v; want rbd-mirror", p, ok)
	}
	uuid, err := rbd.AddMirrorPeerSite(r.dstIO, "foreign-site", "client.foreign", rbd.MirrorPeerDirectionRx)
	if err != nil {
		t.Fatalf("add a foreign peer: %v", err)
	}
	t.Cleanup(func() {
		if err := rbd.RemoveMirrorPeerSite(r.dstIO, uuid); err != nil {
			t.Errorf("remove the foreign peer: %v", err)
		}
	})

	// Prepared as rbd-mirror: it keeps that path, and refuses.
	err = r.be.PrepareEnvironment(ctx, env)
	if !errors.Is(err, sdk.ErrPrecondition) || !strings.Contains(err.Error(), uuid) || !strings.Contains(err.Error(), "peer remove") {
		t.Fatalf("PrepareEnvironment of the rbd-mirror environment with a foreign peer on the target pool = %v; want ErrPrecondition naming it and how to remove it", err)
	}
	t.Logf("refusal: %v", err)
	if p, ok := pathOf(); !ok || p != "" {
		t.Errorf("marker after the refusal: path %q, prepared %v; want rbd-mirror, kept", p, ok)
	}
	if err := reportless(r.be.TeardownEnvironment(ctx, env, false)); err != nil {
		t.Fatalf("TeardownEnvironment: %v", err)
	}
	if _, ok := pathOf(); ok {
		t.Fatalf("still prepared after the teardown")
	}

	// New: the ship path.
	srcMode, err := rbd.GetMirrorMode(r.srcIO)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.be.PrepareEnvironment(ctx, env); err != nil {
		t.Fatalf("PrepareEnvironment of a new environment with a foreign peer on the target pool = %v; want the ship path", err)
	}
	if p, ok := pathOf(); !ok || p != pathShip {
		t.Errorf("marker: path %q, prepared %v; want %q", p, ok, pathShip)
	}
	peers, err := rbd.ListMirrorPeerSite(r.dstIO)
	if err != nil || len(peers) != 1 || peers[0].UUID != uuid {
		t.Errorf("peers of the target pool: %+v, %v; want only the foreign one", peers, err)
	}
	if m, _ := rbd.GetMirrorMode(r.srcIO); m != srcMode {
		t.Errorf("source pool mirror mode changed from %v to %v", srcMode, m)
	}
	if _, err := os.Stat(pidFile); err == nil {
		t.Errorf("an rbd-mirror was started for a ship environment")
	}
	if h, err := r.be.EnvironmentStatus(ctx, env); err != nil || !h.Ready {
		t.Errorf("EnvironmentStatus = %+v, %v; want ready (its ship loop runs here)", h, err)
	}
}

func TestPauseSurvivesRestart(t *testing.T) {
	r := newRig(t, modeJournal)
	h := r.newHarness(t)
	startReplaying(t, r, h)
	ctx := t.Context()
	if err := r.be.PauseVolume(ctx, h.vol); err != nil {
		t.Fatalf("PauseVolume: %v", err)
	}
	spec := "volumes/volume-" + h.vol.VolumeUUID
	asok := r.be.asokPath(h.env.ID)
	stopped := func() bool {
		st, err := replayerStateOf(ctx, asok, r.srcIO, spec)
		return err == nil && st.State == replayerStopped
	}
	waitFor(t, "stopped on the admin socket", 30*time.Second, stopped)
	pidFile := filepath.Join(r.be.runDir(h.env.ID), "rbd-mirror.pid")
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill rbd-mirror %d: %v", pid, err)
	}
	begin := time.Now()
	waitFor(t, "rbd-mirror restarted", 30*time.Second, func() bool {
		b, _ := os.ReadFile(pidFile)
		p, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		return p != pid && pidAlive(p, asok)
	})
	// The killed rbd-mirror stays the pool's leader until its lock times
	// out; it was ours, so the environment must not call it foreign.
	time.Sleep(8 * time.Second)
	if h, err := r.be.EnvironmentStatus(ctx, h.env); err != nil || !h.Ready {
		t.Fatalf("EnvironmentStatus right after rbd-mirror restarted = %+v, %v; want ready", h, err)
	}
	waitFor(t, "stopped again after the restart", 60*time.Second, stopped)
	t.Logf("rbd-mirror killed; restarted and the image stopped again in %v", time.Since(begin).Round(100*time.Millisecond))
	// It stays stopped.
	time.Sleep(6 * time.Second)
	if !stopped() {
		t.Fatalf("the paused image replays again after the restart")
	}
	if st, err := r.be.VolumeStatus(ctx, h.vol); err != nil || st.State != sdk.ReplicationPaused {
		t.Fatalf("VolumeStatus = %+v, %v; want paused", st, err)
	}
	if err := r.be.ResumeVolume(ctx, h.vol); err != nil {
		t.Fatalf("ResumeVolume: %v", err)
	}
	waitFor(t, "replaying after resume", 60*time.Second, func() bool {
		st, err := imageStateAt(ctx, asok, spec)
		return err == nil && st.State == replayerReplaying
	})
	if err := reportless(r.be.StopVolume(ctx, h.vol)); err != nil {
		t.Fatalf("StopVolume: %v", err)
	}
	r.checkNoSecrets(t)
}

// replayerStateOf asks the rbd-mirror at asok about the image's replayer
// under either of its names: pool/image, or pool/<global id> while it
// bootstraps (a replayer stopped then keeps that name).
func replayerStateOf(ctx context.Context, asok string, srcIO *rados.IOContext, spec string) (imageReplayerState, error) {
	st, err := imageStateAt(ctx, asok, spec)
	if err == nil {
		return st, nil
	}
	img, oerr := rbd.OpenImageReadOnly(srcIO, path.Base(spec), rbd.NoSnapshot)
	if oerr != nil {
		return st, err
	}
	defer img.Close()
	mi, oerr := img.GetMirrorImageInfo()
	if oerr != nil {
		return st, err
	}
	return imageStateAt(ctx, asok, path.Dir(spec)+"/"+mi.GlobalID)
}

func TestSnapshotClonableOnTarget(t *testing.T) {
	r := newRig(t, modeJournal)
	h := r.newHarness(t)
	startReplaying(t, r, h)
	ctx := t.Context()
	if err := r.be.AddSnapshot(ctx, h.snap); err != nil {
		t.Fatalf("AddSnapshot: %v", err)
	}
	begin := time.Now()
	waitFor(t, "snapshot ready", 90*time.Second, func() bool {
		st, err := r.be.SnapshotStatus(ctx, h.snap)
		return err == nil && st.State == sdk.SnapshotReady
	})
	t.Logf("AddSnapshot → ready in %v", time.Since(begin).Round(100*time.Millisecond))
	clone := "clone-" + plugintest.NewUUID()
	opts := rbd.NewRbdImageOptions()
	defer opts.Destroy()
	if err := opts.SetUint64(rbd.ImageOptionFeatures, rbd.FeatureLayering); err != nil {
		t.Fatal(err)
	}
	name := "volume-" + h.vol.VolumeUUID
	if err := rbd.CloneImage(r.dstIO, name, "snapshot-"+h.snap.SnapshotUUID, r.dstIO, clone, opts); err != nil {
		t.Fatalf("clone the snapshot on the target: %v", err)
	}
	img, err := rbd.OpenImage(r.dstIO, clone, rbd.NoSnapshot)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 6)
	_, err = img.ReadAt(buf, 0)
	img.Close()
	if err != nil || string(buf) != "mirror" {
		t.Fatalf("clone reads %q, %v; want the source's data", buf, err)
	}
	if err := rbd.RemoveImage(r.dstIO, clone); err != nil {
		t.Errorf("remove clone: %v", err)
	}
	if err := reportless(r.be.StopVolume(ctx, h.vol)); err != nil {
		t.Fatalf("StopVolume: %v", err)
	}
	if err := r.be.RemoveSnapshot(ctx, h.snap); err != nil {
		t.Fatalf("RemoveSnapshot: %v", err)
	}
}

// A refused teardown names the images still replicated, so the operator
// knows what to stop.
func TestTeardownRefusalNamesImages(t *testing.T) {
	r := newRig(t, "journal")
	h := r.newHarness(t)
	ctx := t.Context()
	t.Cleanup(func() {
		cctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		_, _ = r.be.DestroyVolume(cctx, h.vol)
		_ = reportless(r.be.TeardownEnvironment(cctx, h.env, false))
	})
	if err := r.be.PrepareEnvironment(ctx, h.env); err != nil {
		t.Fatalf("PrepareEnvironment: %v", err)
	}
	if err := r.be.StartVolume(ctx, h.vol); err != nil {
		t.Fatalf("StartVolume: %v", err)
	}
	err := reportless(r.be.TeardownEnvironment(ctx, h.env, false))
	if !errors.Is(err, sdk.ErrPrecondition) {
		t.Fatalf("teardown with a volume replicated: %v, want ErrPrecondition", err)
	}
	if !strings.Contains(err.Error(), "volume-"+h.vol.VolumeUUID) {
		t.Fatalf("refusal does not name the image: %v", err)
	}
}

// Snapshot mode with mirror_snapshot_interval in the storage's metadata:
// start adds the image's mirror-snapshot schedule (read back from the
// cluster with the rbd CLI), and stop removes it before disabling.
func TestSnapshotScheduleFromMetadata(t *testing.T) {
	r := newRig(t, "snapshot")
	h := r.newHarness(t)
	extra := map[string]string{"mirror_mode": "snapshot", "mirror_snapshot_interval": "3m"}
	h.env.Source.Metadata = r.lab.Sites[0].metadata(t, extra)
	h.env.Target.Metadata = r.lab.Sites[1].metadata(t, extra)
	h.vol.Environment = h.env
	h.snap.Volume = h.vol
	startReplaying(t, r, h)

	site := r.lab.Sites[0]
	schedules := func() string {
		out, err := exec.Command("rbd", "--cluster", site.Name, "-c", site.Conf, "--keyring", site.AdminKeyring, "-n", "client.admin",
			"mirror", "snapshot", "schedule", "ls", "--pool", site.Pool, "--recursive").CombinedOutput()
		if err != nil {
			t.Fatalf("schedule ls: %v %s", err, out)
		}
		for _, line := range strings.Split(string(out), "\n") {
			if strings.Contains(line, "volume-"+h.vol.VolumeUUID) {
				return line
			}
		}
		return ""
	}
	if got := schedules(); !strings.Contains(got, "3m") {
		t.Fatalf("no 3m schedule on the image after start: %q", got)
	}
	if err := reportless(r.be.StopVolume(t.Context(), h.vol)); err != nil {
		t.Fatalf("StopVolume: %v", err)
	}
	if got := schedules(); strings.Contains(got, "3m") {
		t.Fatalf("the schedule outlived the mirroring: %q", got)
	}
}
