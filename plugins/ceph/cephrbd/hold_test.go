package cephrbd

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ceph/go-ceph/rbd"

	"github.com/cdmdr/mirror/plugins/sdk"
)

// HoldFirstCopy keeps the first copy of the harness's volume from
// completing (the conformance kit's FirstCopyHolder): it freezes
// (SIGSTOP) every rbd-mirror the backend under test runs, so no replayer
// makes progress, and release thaws them (SIGCONT). Called right after
// StartVolume, it is in time: rbd-mirror takes a second or more to
// notice a newly mirrored image. A pause would not hold: a stop during
// the first copy lifts it on purpose (the stop supersedes the pause), so
// the copy could complete while the kit still counts on it being held.
func (h *labHarness) HoldFirstCopy(t *testing.T) (release func()) {
	t.Helper()
	pids := rbdMirrorPids(t, h.stateDir)
	for _, pid := range pids {
		if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
			t.Fatalf("freeze rbd-mirror %d: %v", pid, err)
		}
	}
	var once sync.Once
	release = func() {
		once.Do(func() {
			for _, pid := range pids {
				if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
					t.Errorf("thaw rbd-mirror %d: %v", pid, err)
				}
			}
		})
	}
	t.Cleanup(release)
	return release
}

// rbdMirrorPids returns the live rbd-mirror processes a backend with
// state directory stateDir runs (one per prepared environment).
func rbdMirrorPids(t *testing.T, stateDir string) []int {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(stateDir, "run", "*", "rbd-mirror.pid"))
	var pids []int
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err == nil && pidAlive(pid, filepath.Join(filepath.Dir(f), "rbd-mirror.asok")) {
			pids = append(pids, pid)
		}
	}
	if len(pids) == 0 {
		t.Fatalf("no rbd-mirror of the backend runs (pid files %v): nothing to hold the first copy with", files)
	}
	return pids
}

// While the harness holds the first copy, a stop waits (ErrInProgress)
// and replication goes on; once released, the stop completes and keeps
// a copy equal to the source (compared with the rbd CLI).
func TestHoldFirstCopyJournal(t *testing.T)  { testHoldFirstCopy(t, modeJournal) }
func TestHoldFirstCopySnapshot(t *testing.T) { testHoldFirstCopy(t, modeSnapshot) }

// heldFor is how long the test keeps the first copy held: several times
// what the unheld first copy of the harness's 16 MiB image takes on the
// lab (start → replaying in a few seconds).
const heldFor = 15 * time.Second

func testHoldFirstCopy(t *testing.T, mode string) {
	r := newRig(t, mode)
	h := r.newHarness(t)
	ctx := t.Context()
	name := imageName(h.vol)
	r.prepareEnvironments(t, h.env)
	r.destroyAtEnd(t, h.vol)
	// Held before the start: on a loaded machine a StartVolume that took
	// a few seconds left the 16 MiB copy time to complete (seen in CI).
	release := h.HoldFirstCopy(t)
	if err := r.be.StartVolume(ctx, h.vol); err != nil {
		t.Fatalf("StartVolume: %v", err)
	}
	begin := time.Now()
	for stops := 0; stops < 2 || time.Since(begin) < heldFor; stops++ {
		err := reportless(r.be.StopVolume(ctx, h.vol))
		if !errors.Is(err, sdk.ErrInProgress) {
			t.Fatalf("StopVolume %v into a held first copy = %v; want ErrInProgress", time.Since(begin).Round(time.Second), err)
		}
		st, err := r.be.VolumeStatus(ctx, h.vol)
		if err != nil || st.State != sdk.ReplicationSyncing {
			t.Fatalf("VolumeStatus while held, after a stop that waits = %+v, %v; want syncing", st, err)
		}
		if s := mirrorStateOf(t, r.srcIO, name); s != rbd.MirrorImageEnabled {
			t.Fatalf("source mirroring %v after a stop that waits; want it still enabled", s)
		}
	}
	release()
	begin = time.Now()
	waitFor(t, "the stop done after the release", 2*time.Minute, func() bool {
		err := reportless(r.be.StopVolume(ctx, h.vol))
		if err != nil && !errors.Is(err, sdk.ErrInProgress) {
			t.Fatalf("StopVolume after the release: %v", err)
		}
		return err == nil
	})
	t.Logf("released; the stop went through %v later", time.Since(begin).Round(100*time.Millisecond))
	src, dst := exportDigest(t, r.lab.Sites[0], name), exportDigest(t, r.lab.Sites[1], name)
	if src != dst {
		t.Fatalf("the kept copy's content (sha256 %s) differs from the source's (%s)", dst, src)
	}
}

// exportDigest is the sha256 of a lab site's image, by the rbd CLI.
func exportDigest(t *testing.T, s labSite, image string) string {
	t.Helper()
	return rbdSum(t, s, s.Pool+"/"+image)
}
