package cephrbd

import (
	"context"
	"crypto/rand"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cdmdr/mirror/plugins/sdk"
)

// keepAloneBound is what a stop or a destroy may take with the source
// frozen, rbd-mirror stuck or not: reachTimeout for the source, two
// replayer stops over rbd-mirror's admin socket (asokTimeout each),
// keepLockWait for the copy's lock, then the fence, with a margin for a
// loaded machine.
const keepAloneBound = reachTimeout + 2*asokTimeout + keepLockWait + 14*time.Second

// TestSourceLostStuckMirror is the protection site lost while several
// volumes replicate and the daemon keeps asking their status, as through
// mirrord: the source frozen, a destroy at once, a stop 5 s later.
// rbd-mirror on the target then gets stuck on the frozen source (its
// timer thread blocked in a librados read there, so its replayers never
// stop) and keeps the copies' exclusive locks until the source is back.
// Stop and destroy must still end within keepAloneBound, while the
// source is frozen, each copy kept standalone, holding the replicated
// data and writable; once the source is back, rbd-mirror (fenced and
// replaced, when it was stuck) replicates the other volumes again.
func TestSourceLostStuckMirror(t *testing.T) {
	r := newRig(t, modeJournal)
	var hs []*labHarness
	for range 4 {
		hs = append(hs, r.newHarness(t))
	}
	stop, gone, mirrored := hs[0], hs[1], hs[2]
	src, dst := r.lab.Sites[0], r.lab.Sites[1]
	r.prepareEnvironments(t, stop.env)
	for _, h := range hs {
		data := make([]byte, 1<<20)
		_, _ = rand.Read(data)
		writeImage(t, r, imageName(h.vol), data)
		r.destroyAtEnd(t, h.vol)
		if err := r.be.StartVolume(t.Context(), h.vol); err != nil {
			t.Fatalf("StartVolume: %v", err)
		}
	}
	want := map[string]string{}
	for _, h := range []*labHarness{stop, gone} {
		want[imageName(h.vol)] = exportDigest(t, src, imageName(h.vol))
	}
	waitFor(t, "the copies replicated", 120*time.Second, func() bool {
		for _, h := range hs {
			st, err := r.be.VolumeStatus(t.Context(), h.vol)
			if err != nil || st.State != sdk.ReplicationReplaying {
				return false
			}
		}
		for name, sum := range want {
			if exportDigest(t, dst, name) != sum {
				return false
			}
		}
		return true
	})

	f := freezeSite(t, r.lab, 0)
	frozen := time.Now()
	// The daemon's status reads of the volumes left mirroring.
	polling, stopPolling := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	for _, h := range hs[2:] {
		wg.Go(func() {
			for polling.Err() == nil {
				ctx, cancel := context.WithTimeout(polling, 5*time.Second)
				_, _ = r.be.VolumeStatus(ctx, h.vol)
				cancel()
				_ = sleep(polling, 500*time.Millisecond)
			}
		})
	}
	type result struct {
		rep  sdk.CleanupReport
		err  error
		took time.Duration
	}
	run := func(f func(context.Context) (sdk.CleanupReport, error)) result {
		ctx, cancel := context.WithTimeout(context.Background(), keepAloneBound)
		defer cancel()
		begin := time.Now()
		rep, err := f(ctx)
		return result{rep, err, time.Since(begin).Round(100 * time.Millisecond)}
	}
	var destroyed result
	wg.Go(func() {
		destroyed = run(func(ctx context.Context) (sdk.CleanupReport, error) { return r.be.DestroyVolume(ctx, gone.vol) })
	})
	time.Sleep(5 * time.Second)
	stopped := run(func(ctx context.Context) (sdk.CleanupReport, error) { return r.be.StopVolume(ctx, stop.vol) })
	stopPolling()
	wg.Wait()
	t.Logf("with the source frozen: StopVolume %v (err %v), DestroyVolume %v (err %v); bound %v; %v since the freeze",
		stopped.took, stopped.err, destroyed.took, destroyed.err, keepAloneBound, time.Since(frozen).Round(100*time.Millisecond))
	fenced := strings.Contains(r.logs.String(), "rbd-mirror held the kept copy's lock")
	t.Logf("rbd-mirror stuck and fenced: %v", fenced)
	if stopped.err != nil {
		t.Fatalf("StopVolume with the source frozen: %v (after %v)", stopped.err, stopped.took)
	}
	if len(stopped.rep.Leftovers) != 1 || !strings.Contains(stopped.rep.Leftovers[0], "rbd mirror image disable "+src.Pool+"/"+imageName(stop.vol)) {
		t.Errorf("StopVolume's report %q: want one leftover with the command to disable mirroring on the source", stopped.rep.Leftovers)
	}
	// DestroyVolume reports what it could not do rather than failing:
	// the copy kept standalone is what says it did not wait out its time.
	if destroyed.err != nil || destroyed.took >= keepAloneBound {
		t.Fatalf("DestroyVolume with the source frozen: %v after %v, want it done within %v", destroyed.err, destroyed.took, keepAloneBound)
	}
	if rep := strings.Join(destroyed.rep.Leftovers, "\n"); !strings.Contains(rep, "a standalone writable image now") {
		t.Errorf("DestroyVolume's report: want its copy kept standalone, got %q", destroyed.rep.Leftovers)
	}
	for name, sum := range want {
		checkStandaloneCLI(t, dst, name)
		if got := exportDigest(t, dst, name); got != sum {
			t.Errorf("kept copy %s: content %s, want the replicated %s", name, got, sum)
		}
		// A write takes the copy's exclusive lock: no stuck holder left.
		rbdCLI(t, dst, "bench", "--io-type", "write", "--io-size", "4K", "--io-total", "64K", "--io-pattern", "rand", dst.Pool+"/"+name)
	}
	f.thaw(t)

	// Back: the volume left mirroring replicates a new write.
	name := imageName(mirrored.vol)
	data := make([]byte, 64<<10)
	_, _ = rand.Read(data)
	writeImage(t, r, name, data)
	sum := exportDigest(t, src, name)
	wrote := time.Now()
	waitFor(t, "a write after the thaw replicated", 3*time.Minute, func() bool { return exportDigest(t, dst, name) == sum })
	t.Logf("a write to a mirroring volume after the thaw replicated in %v", time.Since(wrote).Round(100*time.Millisecond))
	// A fenced rbd-mirror is replaced, not left to restart itself.
	if fenced && !strings.Contains(r.logs.String(), "replacing rbd-mirror: it was fenced") {
		t.Errorf("rbd-mirror was fenced but not replaced")
	}
}
