package cephrbd

import (
	"bytes"
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

// In snapshot mode a recovery point added while the volume is paused does
// not reach the copy (a mirror snapshot would carry the writes the pause
// holds back too), even when rbd-mirror restarts and the stop on its admin
// socket is not applied again (held back here); it arrives with the
// resume, which takes a mirror snapshot at once instead of waiting for a
// schedule.
func TestSnapshotWhilePausedWaitsForResume(t *testing.T) {
	r := newRig(t, modeSnapshot)
	r.be.pauseLoopDelay = 60 * time.Second // before any rbd-mirror starts
	h := r.newHarness(t)
	startReplaying(t, r, h)
	ctx := t.Context()
	name := "volume-" + h.vol.VolumeUUID
	if err := r.be.PauseVolume(ctx, h.vol); err != nil {
		t.Fatalf("PauseVolume: %v", err)
	}
	held := readHead(t, r.dstIO, name)

	// Written after the pause, then a recovery point of it.
	snap := sdk.Snapshot{Volume: h.vol, SnapshotID: 22, SnapshotUUID: plugintest.NewUUID(), SnapshotName: "after the pause"}
	img, err := rbd.OpenImage(r.srcIO, name, rbd.NoSnapshot)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := img.WriteAt([]byte("paused"), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := img.CreateSnapshot("snapshot-" + snap.SnapshotUUID); err != nil {
		t.Fatal(err)
	}
	img.Close()
	if err := r.be.AddSnapshot(ctx, snap); err != nil {
		t.Fatalf("AddSnapshot while paused: %v", err)
	}
	// rbd-mirror restarts and replays whatever mirror snapshot the copy
	// lacks once it has the image (its leader waits the dead instance out,
	// about 15 s here); the copy is a few MiB.
	pidFile := filepath.Join(r.be.runDir(h.env.ID), "rbd-mirror.pid")
	asok := r.be.asokPath(h.env.ID)
	pid := readPid(t, pidFile)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill rbd-mirror %d: %v", pid, err)
	}
	waitFor(t, "rbd-mirror restarted", 30*time.Second, func() bool {
		p := readPid(t, pidFile)
		return p != pid && pidAlive(p, asok)
	})
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if got := readHead(t, r.dstIO, name); !bytes.Equal(got, held) {
			t.Fatalf("the paused copy changed after AddSnapshot: %q, was %q", got, held)
		}
		time.Sleep(500 * time.Millisecond)
	}
	if st, err := r.be.SnapshotStatus(ctx, snap); err != nil || st.State == sdk.SnapshotReady {
		t.Fatalf("snapshot status while paused: %+v, %v; want it not on the copy yet", st, err)
	}

	begin := time.Now()
	if err := r.be.ResumeVolume(ctx, h.vol); err != nil {
		t.Fatalf("ResumeVolume: %v", err)
	}
	waitFor(t, "the recovery point on the copy after the resume", 90*time.Second, func() bool {
		st, err := r.be.SnapshotStatus(ctx, snap)
		return err == nil && st.State == sdk.SnapshotReady
	})
	waitFor(t, "the writes made while paused on the copy", 30*time.Second, func() bool {
		return bytes.Equal(readHead(t, r.dstIO, name), []byte("paused"))
	})
	t.Logf("resume → recovery point and writes on the copy in %v", time.Since(begin).Round(100*time.Millisecond))
	if err := r.be.RemoveSnapshot(ctx, snap); err != nil {
		t.Fatalf("RemoveSnapshot: %v", err)
	}
}

// readPid reads a pid file; 0 when it cannot.
func readPid(t testing.TB, path string) int {
	t.Helper()
	b, _ := os.ReadFile(path)
	p, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return p
}

// readHead reads the first six bytes of an image.
func readHead(t testing.TB, io *rados.IOContext, name string) []byte {
	t.Helper()
	img, err := rbd.OpenImageReadOnly(io, name, rbd.NoSnapshot)
	if err != nil {
		t.Fatalf("open %s: %v", name, err)
	}
	defer img.Close()
	buf := make([]byte, 6)
	if _, err := img.ReadAt(buf, 0); err != nil {
		t.Fatalf("read %s: %v", name, err)
	}
	return buf
}
