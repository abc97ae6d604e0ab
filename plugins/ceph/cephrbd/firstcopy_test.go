package cephrbd

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ceph/go-ceph/rados"
	"github.com/ceph/go-ceph/rbd"

	"github.com/cdmdr/mirror/plugins/sdk"
	"github.com/cdmdr/mirror/plugins/sdk/plugintest"
)

// A stop that comes while the first copy runs must neither keep a
// partial copy nor leave rbd-mirror's snapshots on it: it waits
// (ErrInProgress) and then keeps a copy equal to the source.
func TestStopDuringFirstCopyJournal(t *testing.T)  { testStopDuringFirstCopy(t, modeJournal, false) }
func TestStopDuringFirstCopySnapshot(t *testing.T) { testStopDuringFirstCopy(t, modeSnapshot, false) }

// A pause during the first copy gives way to the stop.
func TestStopOfPausedFirstCopy(t *testing.T) { testStopDuringFirstCopy(t, modeJournal, true) }

// bigImageSize is large enough for the first copy to take seconds on the
// lab (about 7 s in journal mode for 512 MiB), small enough for its
// memstore OSDs.
const bigImageSize = 512 << 20

func testStopDuringFirstCopy(t *testing.T, mode string, pause bool) {
	r := newRig(t, mode)
	ctx := t.Context()
	vol, name := r.startBigVolume(t)
	if pause {
		if err := r.be.PauseVolume(ctx, vol); err != nil {
			t.Fatalf("PauseVolume: %v", err)
		}
	}
	begin := time.Now()
	waited, progress := 0, []int{}
	var err error
	for {
		err = reportless(r.be.StopVolume(ctx, vol))
		if !errors.Is(err, sdk.ErrInProgress) || time.Since(begin) > 2*time.Minute {
			break
		}
		waited++
		st, serr := r.be.VolumeStatus(ctx, vol)
		if serr != nil {
			t.Fatalf("VolumeStatus while the stop waits: %v", serr)
		}
		if st.State == sdk.ReplicationAbsent || st.State == sdk.ReplicationPaused {
			t.Fatalf("a waiting stop left the volume %+v; want it still copying", st)
		}
		progress = append(progress, st.Progress)
		if waited == 1 {
			t.Logf("the stop waits: %v; status %+v", err, st)
		}
		time.Sleep(500 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("StopVolume: %v", err)
	}
	t.Logf("the stop waited %d times (%v) for the first copy; progress seen %v", waited, time.Since(begin).Round(100*time.Millisecond), progress)
	if waited == 0 {
		t.Fatalf("the first stop went through at once: the first copy of %d MiB cannot be done yet, so it kept a partial copy", bigImageSize>>20)
	}
	if err := reportless(r.be.StopVolume(ctx, vol)); err != nil {
		t.Fatalf("StopVolume again: %v", err)
	}
	checkKeptCopy(t, r, name)
}

// startBigVolume prepares the rig's environment and starts a volume of
// bigImageSize; cleanup destroys it and tears the environment down.
func (r *labRig) startBigVolume(t *testing.T) (sdk.Volume, string) {
	t.Helper()
	ctx := t.Context()
	env := r.env(t)
	uuid := plugintest.NewUUID()
	name := "volume-" + uuid
	writeBigImage(t, r.srcIO, name)
	t.Cleanup(func() {
		for _, io := range []*rados.IOContext{r.srcIO, r.dstIO} {
			removeImageForTest(io, name)
		}
	})
	vol := sdk.Volume{Environment: env, ClusterID: 5, VolumeID: 9, VolumeUUID: uuid}
	r.prepareEnvironments(t, env)
	r.destroyAtEnd(t, vol)
	if err := r.be.StartVolume(ctx, vol); err != nil {
		t.Fatalf("StartVolume: %v", err)
	}
	return vol, name
}

// writeBigImage creates an image of bigImageSize with every 4 MiB block
// written, so a partial copy shows as blocks of zeros.
func writeBigImage(t *testing.T, io *rados.IOContext, name string) {
	t.Helper()
	if err := rbd.CreateImage(io, name, bigImageSize, rbd.NewRbdImageOptions()); err != nil {
		t.Fatalf("create %s: %v", name, err)
	}
	img, err := rbd.OpenImage(io, name, rbd.NoSnapshot)
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	block := bytes.Repeat([]byte("mirror!!"), (4<<20)/8)
	for off := int64(0); off < bigImageSize; off += int64(len(block)) {
		if _, err := img.WriteAt(block, off); err != nil {
			t.Fatalf("write %s at %d: %v", name, off, err)
		}
	}
}

// checkKeptCopy: the kept copy is a plain writable image, every block of
// it copied, with no snapshot of rbd-mirror's left on it.
func checkKeptCopy(t *testing.T, r *labRig, name string) {
	t.Helper()
	img, err := rbd.OpenImage(r.dstIO, name, rbd.NoSnapshot)
	if err != nil {
		t.Fatalf("open the kept copy: %v", err)
	}
	defer img.Close()
	mi, err := img.GetMirrorImageInfo()
	if err != nil || mi.State != rbd.MirrorImageDisabled {
		t.Fatalf("the kept copy's mirroring = %+v, %v; want disabled", mi, err)
	}
	snaps, err := img.GetSnapshotNames()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range snaps {
		if strings.HasPrefix(s.Name, ".") {
			t.Errorf("the kept copy carries rbd-mirror's snapshot %s", s.Name)
		}
	}
	buf := make([]byte, 4<<20)
	missing := 0
	for off := int64(0); off < bigImageSize; off += int64(len(buf)) {
		if _, err := img.ReadAt(buf, off); err != nil {
			t.Fatalf("read the kept copy at %d: %v", off, err)
		}
		if !bytes.HasPrefix(buf, []byte("mirror!!")) {
			missing++
		}
	}
	if missing > 0 {
		t.Fatalf("the kept copy lacks %d of %d blocks: a partial copy was kept", missing, bigImageSize/len(buf))
	}
	if _, err := img.WriteAt([]byte("writable"), 0); err != nil {
		t.Fatalf("the kept copy is not writable: %v", err)
	}
}

// In journal mode the first copy is part of rbd-mirror's bootstrap, when
// the replayer is named after the image's global id: a pause then must
// still stop it, hold across the time the copy would take, and a resume
// must let it finish.
func TestPauseDuringFirstCopy(t *testing.T) {
	r := newRig(t, modeJournal)
	ctx := t.Context()
	vol, name := r.startBigVolume(t)
	if err := r.be.PauseVolume(ctx, vol); err != nil {
		t.Fatalf("PauseVolume: %v", err)
	}
	// Unpaused, the copy takes about 7 s here; give it three times that.
	copied := func() bool {
		v, err := r.be.openVol(ctx, vol)
		if err != nil {
			t.Fatal(err)
		}
		defer v.close()
		src, _ := inspect(ctx, v.srcIO, v.name, true)
		dst, _ := inspect(ctx, v.dstIO, v.name, false)
		v.globalID = src.mirror.GlobalID
		cs, err := r.be.firstCopy(ctx, vol, v, src, dst)
		return err == nil && cs.done
	}
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if copied() {
			t.Fatal("the first copy completed while the volume was paused")
		}
		if st, err := r.be.VolumeStatus(ctx, vol); err != nil || st.State != sdk.ReplicationPaused {
			t.Fatalf("VolumeStatus while paused = %+v, %v; want paused", st, err)
		}
		time.Sleep(time.Second)
	}
	if err := r.be.ResumeVolume(ctx, vol); err != nil {
		t.Fatalf("ResumeVolume: %v", err)
	}
	begin := time.Now()
	waitFor(t, "replaying after resume", 2*time.Minute, func() bool {
		st, err := r.be.VolumeStatus(ctx, vol)
		return err == nil && st.State == sdk.ReplicationReplaying
	})
	t.Logf("resumed; the first copy finished in %v", time.Since(begin).Round(100*time.Millisecond))
	waitFor(t, "stopped with its copy kept", time.Minute, func() bool {
		err := reportless(r.be.StopVolume(ctx, vol))
		if err != nil && !errors.Is(err, sdk.ErrInProgress) {
			t.Fatalf("StopVolume: %v", err)
		}
		return err == nil
	})
	checkKeptCopy(t, r, name)
}
