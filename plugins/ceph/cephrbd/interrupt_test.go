package cephrbd

import (
	"bytes"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ceph/go-ceph/rbd"

	"github.com/cdmdr/mirror/plugins/sdk"
)

// killMirror kills the environment's rbd-mirror as a crash would
// (SIGKILL); the plugin's supervisor starts it again.
func killMirror(t *testing.T, r *labRig, envID string) int {
	t.Helper()
	data, err := os.ReadFile(r.be.pidPath(envID))
	if err != nil {
		t.Fatalf("rbd-mirror's pid file: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 {
		t.Fatalf("rbd-mirror's pid file holds %q", data)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill rbd-mirror %d: %v", pid, err)
	}
	return pid
}

// After the target's rbd-mirror dies, during the first copy and after
// it, with writes on the source meanwhile, replication resumes where it
// was (journal mode: the image sync from its sync point, the replay from
// the commit position): the replica is the same image throughout, and no
// new image sync starts after the first copy completed.
func TestInterruptionResumesWithoutResync(t *testing.T) {
	r := newRig(t, modeJournal)
	ctx := t.Context()
	vol, name := r.startBigVolume(t)
	var firstID string
	waitFor(t, "the first copy under way", time.Minute, func() bool {
		dst, err := inspect(ctx, r.dstIO, name, false)
		if err == nil && dst.exists && hasSyncPoint(dst.snaps) {
			firstID = dst.id
		}
		return firstID != ""
	})
	st, _ := r.be.VolumeStatus(ctx, vol)
	pid := killMirror(t, r, vol.Environment.ID)
	t.Logf("killed rbd-mirror %d during the first copy (%d%%)", pid, st.Progress)
	begin := time.Now()
	waitFor(t, "replaying after the restart", 2*time.Minute, func() bool {
		st, err := r.be.VolumeStatus(ctx, vol)
		return err == nil && st.State == sdk.ReplicationReplaying
	})
	t.Logf("first copy finished %v after the kill", time.Since(begin).Round(100*time.Millisecond))
	dst, err := inspect(ctx, r.dstIO, name, false)
	if err != nil || dst.id != firstID {
		t.Fatalf("the replica is image %q after the restart, was %q (%v): the first copy started over", dst.id, firstID, err)
	}

	// After the first copy: kill, write, let it come back.
	killMirror(t, r, vol.Environment.ID)
	block := bytes.Repeat([]byte("later!!!"), 512)
	img, err := rbd.OpenImage(r.srcIO, name, rbd.NoSnapshot)
	if err != nil {
		t.Fatal(err)
	}
	for _, off := range []int64{0, bigImageSize / 2, bigImageSize - 4096} {
		if _, err := img.WriteAt(block, off); err != nil {
			t.Fatal(err)
		}
	}
	img.Close()
	begin = time.Now()
	waitFor(t, "the writes on the replica", 2*time.Minute, func() bool {
		dst, err := inspect(ctx, r.dstIO, name, false)
		if err != nil || !dst.exists {
			return false
		}
		if dst.id != firstID || hasSyncPoint(dst.snaps) {
			t.Fatalf("the replica was re-created or re-synced after the first copy (id %q, was %q; sync point %v)", dst.id, firstID, hasSyncPoint(dst.snaps))
		}
		got := make([]byte, len(block))
		tail, err := call(ctx, func() (bool, error) {
			img, err := rbd.OpenImageReadOnly(r.dstIO, name, rbd.NoSnapshot)
			if err != nil {
				return false, err
			}
			defer img.Close()
			_, err = img.ReadAt(got, bigImageSize-4096)
			return err == nil && bytes.Equal(got, block), nil
		})
		return err == nil && tail
	})
	t.Logf("writes made while rbd-mirror was down replayed %v later", time.Since(begin).Round(100*time.Millisecond))
	// Until rbd-mirror replays again, the volume may read as syncing,
	// never as a first copy starting over.
	waitFor(t, "replaying after the second restart", time.Minute, func() bool {
		st, err := r.be.VolumeStatus(ctx, vol)
		if err == nil && (st.State == sdk.ReplicationFailed || st.State == sdk.ReplicationSyncing && st.Progress < 100) {
			t.Fatalf("VolumeStatus after the first copy and a restart = %+v: the first copy reads as starting over", st)
		}
		return err == nil && st.State == sdk.ReplicationReplaying
	})
	t.Logf("replaying again %v after the writes", time.Since(begin).Round(100*time.Millisecond))
}
