package cephrbd

import (
	"context"
	"errors"
	"math/rand/v2"
	"os"
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

// Two hosts, as two mirrord daemons on two machines drive the plugin: two
// Backends with their own state directories against one lab. Host A
// prepares the environment and starts the volumes; B sees the environment
// prepared and the pause recorded; A is lost (its Backend abandoned, its
// rbd-mirror killed -9) and B takes over: B's rbd-mirror leads within
// seconds, new writes reach the target, and the paused volume's copy
// does not change (rbd export) until B resumes it. Then a graceful
// hand-over back to A: B releases, A prepares, one rbd-mirror runs.
func TestTwoHostsTakeover(t *testing.T) {
	r := newRig(t, modeJournal)
	ctx := t.Context()
	env := r.env(t)
	a := r.be
	r.prepareEnvironments(t, env)
	b := r.newHost(t, filepath.Join(r.stateDir, "b"), env)
	a2 := r.newHost(t, a.stateDir, env) // host A again after the loss: a new plugin process

	paused, moving := r.newVolume(t, env, 301), r.newVolume(t, env, 302)
	for _, v := range []sdk.Volume{paused, moving} {
		if err := a.StartVolume(ctx, v); err != nil {
			t.Fatalf("StartVolume via A: %v", err)
		}
	}
	for _, v := range []sdk.Volume{paused, moving} {
		waitFor(t, "replaying via A", 90*time.Second, func() bool {
			st, err := a.VolumeStatus(ctx, v)
			return err == nil && st.State == sdk.ReplicationReplaying
		})
	}

	// B never prepared the environment, yet sees it prepared; what needs
	// the rbd-mirror it does not run says so rather than lie.
	if err := b.be.StartVolume(ctx, moving); err != nil {
		t.Fatalf("StartVolume via B (the environment prepared via A): %v", err)
	}
	if st, err := b.be.VolumeStatus(ctx, moving); err != nil || st.State == sdk.ReplicationAbsent {
		t.Fatalf("VolumeStatus via B = %+v, %v; want the cluster's mirror status", st, err)
	}
	if h, err := b.be.EnvironmentStatus(ctx, env); err != nil || h.Ready || !strings.Contains(h.Description, "does not run on this host") {
		t.Fatalf("EnvironmentStatus via B = %+v, %v; want not ready: rbd-mirror runs on A", h, err)
	}
	err := b.be.PauseVolume(ctx, paused)
	if !errors.Is(err, sdk.ErrRetryable) || !strings.Contains(err.Error(), "does not run on this host") {
		t.Fatalf("PauseVolume via B = %v; want ErrRetryable naming the cause", err)
	}
	// The pause is a fact of the cluster: A's rbd-mirror applies it.
	asokA := a.asokPath(env.ID)
	waitFor(t, "the pause recorded via B applied on A's rbd-mirror", 30*time.Second, func() bool {
		st, err := replayerStateOf(ctx, asokA, r.srcIO, r.spec(paused))
		return err == nil && st.State == replayerStopped
	})
	if err := a.PauseVolume(ctx, paused); err != nil {
		t.Fatalf("PauseVolume via A: %v", err)
	}
	for _, h := range []*Backend{a, b.be} {
		if st, err := h.VolumeStatus(ctx, paused); err != nil || st.State != sdk.ReplicationPaused {
			t.Fatalf("VolumeStatus of the paused volume = %+v, %v; want paused on both hosts", st, err)
		}
	}

	// The source is written while paused; the other volume replays it.
	held := exportDigest(t, r.lab.Sites[1], imageName(paused))
	r.writeSource(t, paused)
	r.writeSource(t, moving)
	r.waitSame(t, moving, 30*time.Second)

	// Host A is lost: its plugin gone, its rbd-mirror killed -9. The
	// writer holds the source image's lock from before, as a running VM
	// does: a new lock would wait on the dead rbd-mirror's watch.
	writer := r.openWriter(t, moving)
	pidsA := rbdMirrorPids(t, a.stateDir)
	a.Close()
	for _, pid := range pidsA {
		_ = syscall.Kill(-pid, syscall.SIGKILL)
	}
	lost := time.Now()
	writer()
	// B's supervisor stops the paused replayer only after the replayers
	// ran a while: until then, only the copy's hold keeps it unchanged.
	b.be.pauseLoopDelay = 25 * time.Second
	if err := b.be.PrepareEnvironment(ctx, env); err != nil {
		t.Fatalf("PrepareEnvironment via B after A's loss: %v", err)
	}
	prepared := time.Since(lost)
	asokB := b.be.asokPath(env.ID)
	var leads, replays time.Duration
	var atLead sdk.EnvironmentHealth
	var atLeadErr error
	var othersAtLead []string
	waitForFast(t, "B's rbd-mirror leading and replaying the unpaused volume", 60*time.Second, func() bool {
		if leads == 0 {
			if ok, others := leading(ctx, asokB, r.lab.Sites[1].Pool); ok {
				leads = time.Since(lost)
				// A's dead instance is still listed in the pool for a few
				// seconds: it was the plugin's, so not foreign.
				atLead, atLeadErr = b.be.EnvironmentStatus(ctx, env)
				othersAtLead = others
			}
		}
		st, err := imageStateAt(ctx, asokB, r.spec(moving))
		if replays == 0 && err == nil && st.State == replayerReplaying {
			replays = time.Since(lost)
		}
		return leads > 0 && replays > 0
	})
	if leads-prepared > leadsWithin {
		t.Errorf("B's rbd-mirror took the lead %v after B prepared; want within %v (A's instance blocklisted)", leads-prepared, leadsWithin)
	}
	r.waitSame(t, moving, 60*time.Second)
	arrived := time.Since(lost)
	t.Logf("kill of A's rbd-mirror → B prepared %v, B leads %v, B replays the unpaused volume %v, its new write on the target %v",
		prepared.Round(10*time.Millisecond), leads.Round(10*time.Millisecond), replays.Round(10*time.Millisecond), arrived.Round(10*time.Millisecond))
	if got := exportDigest(t, r.lab.Sites[1], imageName(paused)); got != held {
		t.Fatalf("the paused volume's copy changed when B's rbd-mirror replayed before its pause was applied (sha256 %s, was %s)", got, held)
	}
	if atLeadErr != nil || !atLead.Ready {
		t.Fatalf("EnvironmentStatus via B once it leads, the pool listing instances %v besides its own = %+v, %v; want ready (A's rbd-mirror was the plugin's own)",
			othersAtLead, atLead, atLeadErr)
	}
	if len(othersAtLead) == 0 {
		t.Logf("A's dead instance was no longer listed when B led: the foreign check had nothing to tell apart")
	}
	waitFor(t, "the paused volume stopped on B's rbd-mirror", 60*time.Second, func() bool {
		st, err := replayerStateOf(ctx, asokB, r.srcIO, r.spec(paused))
		return err == nil && st.State == replayerStopped
	})
	if got := exportDigest(t, r.lab.Sites[1], imageName(paused)); got != held {
		t.Fatalf("the paused volume's copy changed across the takeover (sha256 %s, was %s)", got, held)
	}
	if st, err := b.be.VolumeStatus(ctx, paused); err != nil || st.State != sdk.ReplicationPaused {
		t.Fatalf("VolumeStatus via B of the paused volume = %+v, %v; want paused", st, err)
	}

	// Volumes via B: start a new one, resume the paused one (its writes
	// arrive), stop it.
	third := r.newVolume(t, env, 303)
	if err := b.be.StartVolume(ctx, third); err != nil {
		t.Fatalf("StartVolume via B: %v", err)
	}
	if err := b.be.ResumeVolume(ctx, paused); err != nil {
		t.Fatalf("ResumeVolume via B: %v", err)
	}
	r.waitSame(t, paused, 60*time.Second)
	waitFor(t, "the new volume replaying via B", 90*time.Second, func() bool {
		st, err := b.be.VolumeStatus(ctx, third)
		return err == nil && st.State == sdk.ReplicationReplaying
	})
	stopKeeping(t, b.be, paused)
	if src, dst := exportDigest(t, r.lab.Sites[0], imageName(paused)), exportDigest(t, r.lab.Sites[1], imageName(paused)); src != dst {
		t.Fatalf("the copy kept by a stop via B (sha256 %s) differs from the source (%s)", dst, src)
	}

	// Graceful hand-over back to A, the third volume paused: B releases,
	// A prepares.
	if err := b.be.PauseVolume(ctx, third); err != nil {
		t.Fatalf("PauseVolume via B: %v", err)
	}
	begin := time.Now()
	if err := b.be.ReleaseEnvironment(ctx, env); err != nil {
		t.Fatalf("ReleaseEnvironment via B: %v", err)
	}
	if pids := rbdMirrorsOf(b.dir); len(pids) != 0 {
		t.Fatalf("rbd-mirror of B still runs after its release: %v", pids)
	}
	if err := a2.be.PrepareEnvironment(ctx, env); err != nil {
		t.Fatalf("PrepareEnvironment via A after B's release: %v", err)
	}
	r.writeSource(t, moving)
	r.waitSame(t, moving, 60*time.Second)
	t.Logf("hand-over B → A: release, prepare and a new write on the target in %v", time.Since(begin).Round(10*time.Millisecond))
	if pids := rbdMirrorsOf(a.stateDir, b.dir); len(pids) != 1 {
		t.Fatalf("rbd-mirror processes of the two hosts after the hand-over: %v; want one", pids)
	}
	waitFor(t, "the volume paused via B stopped on A's new rbd-mirror", 60*time.Second, func() bool {
		st, err := replayerStateOf(ctx, a2.be.asokPath(env.ID), r.srcIO, r.spec(third))
		return err == nil && st.State == replayerStopped
	})
	if st, err := a2.be.VolumeStatus(ctx, third); err != nil || st.State != sdk.ReplicationPaused {
		t.Fatalf("VolumeStatus via A of the volume paused via B = %+v, %v; want paused", st, err)
	}
	stopKeeping(t, a2.be, moving)
	stopKeeping(t, a2.be, third)
}

// leadsWithin bounds the time from B's PrepareEnvironment to B's
// rbd-mirror leading the pool (0.1 s on the lab); without the blocklist,
// B breaks the dead leader's lock only after missed heartbeats (4 s on
// the lab, with the plugin's 1 s heartbeat).
const leadsWithin = 2 * time.Second

// labHost is one more "host": a Backend with its own state directory.
type labHost struct {
	be  *Backend
	dir string
}

// newHost makes a host with state directory dir. When the test ends, it
// releases env (its rbd-mirror stops) and closes, after the volumes made
// later are destroyed (cleanups run last-registered first) and before
// the environment's teardown, registered earlier.
func (r *labRig) newHost(t *testing.T, dir string, env sdk.Environment) *labHost {
	h := &labHost{be: New(sdkLoggerTo(r.logs), dir), dir: dir}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := h.be.ReleaseEnvironment(ctx, env); err != nil {
			t.Errorf("cleanup: release %s on the host of %s: %v", env.ID, dir, err)
		}
		h.be.Close()
	})
	return h
}

// newVolume creates a 4 MiB source image of random data for a new volume
// of env (journaling on, as a journal-mode start would do), removed with
// its copy when the test ends.
func (r *labRig) newVolume(t *testing.T, env sdk.Environment, id uint64) sdk.Volume {
	t.Helper()
	v := sdk.Volume{Environment: env, ClusterID: 5, VolumeID: id, VolumeUUID: plugintest.NewUUID()}
	name := imageName(v)
	if err := rbd.CreateImage(r.srcIO, name, 4<<20, rbd.NewRbdImageOptions()); err != nil {
		t.Fatalf("create %s: %v", name, err)
	}
	t.Cleanup(func() {
		for _, io := range []*rados.IOContext{r.srcIO, r.dstIO} {
			removeImageForTest(io, name)
		}
	})
	r.destroyAtEnd(t, v)
	r.writeSource(t, v)
	return v
}

// writeSource writes 1 MiB of random data at a random 4 KiB-aligned
// offset of the volume's source image, through librbd.
func (r *labRig) writeSource(t *testing.T, v sdk.Volume) {
	t.Helper()
	img, err := rbd.OpenImage(r.srcIO, imageName(v), rbd.NoSnapshot)
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	if err := writeRandom(img); err != nil {
		t.Fatalf("write %s: %v", imageName(v), err)
	}
}

// openWriter opens the volume's source image and writes it once (taking
// its exclusive lock); the returned func writes 1 MiB of random data
// again through the same handle, closed when the test ends.
func (r *labRig) openWriter(t *testing.T, v sdk.Volume) (write func()) {
	t.Helper()
	img, err := rbd.OpenImage(r.srcIO, imageName(v), rbd.NoSnapshot)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = img.Close() })
	write = func() {
		t.Helper()
		if err := writeRandom(img); err != nil {
			t.Fatalf("write %s: %v", imageName(v), err)
		}
	}
	write()
	return write
}

// writeRandom writes 1 MiB of random data at a random 4 KiB-aligned
// offset of the first 4 MiB of img, and flushes.
func writeRandom(img *rbd.Image) error {
	buf := make([]byte, 1<<20)
	for i := range buf {
		buf[i] = byte(rand.Uint32())
	}
	if _, err := img.WriteAt(buf, int64(rand.IntN(3*256))*4096); err != nil {
		return err
	}
	return img.Flush()
}

// waitSame waits until the volume's copy has the source's content
// (rbd export on both sites).
func (r *labRig) waitSame(t *testing.T, v sdk.Volume, timeout time.Duration) {
	t.Helper()
	want := exportDigest(t, r.lab.Sites[0], imageName(v))
	waitForFast(t, "the copy of "+imageName(v)+" equal to its source", timeout, func() bool {
		return exportDigest(t, r.lab.Sites[1], imageName(v)) == want
	})
}

func (r *labRig) spec(v sdk.Volume) string { return r.lab.Sites[1].Pool + "/" + imageName(v) }

// waitForFast is waitFor looking every 100 ms, for timings.
func waitForFast(t testing.TB, what string, timeout time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("not %s within %v", what, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// leading says whether the rbd-mirror at asok leads pool, and which
// other instances it lists there.
func leading(ctx context.Context, asok, pool string) (bool, []string) {
	replayers, err := poolReplayersAt(ctx, asok)
	if err != nil {
		return false, nil
	}
	for _, p := range replayers {
		if p.Pool == pool && p.InstanceID != "" && p.LeaderID == p.InstanceID {
			var others []string
			for _, id := range p.Instances {
				if id != p.InstanceID {
					others = append(others, id)
				}
			}
			return true, others
		}
	}
	return false, nil
}

// stopKeeping stops the volume through be, waiting out a first copy.
func stopKeeping(t *testing.T, be *Backend, v sdk.Volume) {
	t.Helper()
	waitFor(t, "stopped with its copy kept "+imageName(v), 90*time.Second, func() bool {
		err := reportless(be.StopVolume(t.Context(), v))
		if err != nil && !errors.Is(err, sdk.ErrInProgress) {
			t.Fatalf("StopVolume %s: %v", imageName(v), err)
		}
		return err == nil
	})
}

// rbdMirrorsOf lists the live rbd-mirror processes whose command line
// names a file under one of the state directories.
func rbdMirrorsOf(stateDirs ...string) []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmd, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !strings.Contains(string(cmd), "rbd-mirror") {
			continue
		}
		for _, d := range stateDirs {
			if strings.Contains(string(cmd), d+"/") {
				pids = append(pids, pid)
				break
			}
		}
	}
	return pids
}
