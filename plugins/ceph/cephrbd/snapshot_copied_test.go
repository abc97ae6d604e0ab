package cephrbd

import (
	"crypto/rand"
	"encoding/json"
	"os/exec"
	"testing"
	"time"

	"github.com/ceph/go-ceph/rbd"

	"github.com/cdmdr/mirror/plugins/sdk"
	"github.com/cdmdr/mirror/plugins/sdk/plugintest"
)

// In snapshot mode rbd-mirror creates a sync's user snapshots on the copy,
// protected, before it copies their data: SnapshotStatus says ready only
// once the non-primary mirror snapshot carrying the snapshot is complete.
// The sync is caught in between by freezing the environment's rbd-mirror
// as soon as the snapshot shows on the copy, and the copy's state is read
// with the rbd CLI.
func TestSnapshotReadyOnlyOnceCopied(t *testing.T) {
	r := newRig(t, modeSnapshot)
	h := r.newHarness(t)
	startReplaying(t, r, h)
	ctx := t.Context()
	name := imageName(h.vol)
	for attempt := 1; ; attempt++ {
		snap := sdk.Snapshot{Volume: h.vol, SnapshotID: uint64(30 + attempt), SnapshotUUID: plugintest.NewUUID(), SnapshotName: "copied"}
		// New data all over the image, so the sync takes a while.
		img, err := rbd.OpenImage(r.srcIO, name, rbd.NoSnapshot)
		if err != nil {
			t.Fatal(err)
		}
		data := make([]byte, 16<<20)
		_, _ = rand.Read(data)
		if _, err := img.WriteAt(data, 0); err != nil {
			t.Fatal(err)
		}
		if _, err := img.CreateSnapshot(snapName(snap)); err != nil {
			t.Fatal(err)
		}
		img.Close()
		if err := r.be.AddSnapshot(ctx, snap); err != nil {
			t.Fatalf("AddSnapshot: %v", err)
		}
		deadline := time.Now().Add(60 * time.Second)
		for {
			if exists, prot, err := snapOn(ctx, r.dstIO, name, snapName(snap)); err == nil && exists && prot {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("snapshot %s not on the copy within 60s", snapName(snap))
			}
		}
		release := h.HoldFirstCopy(t) // freezes the rbd-mirror
		if cliCopied(t, r.lab.Sites[1], name, snapName(snap)) {
			release()
			if attempt == 3 {
				t.Fatal("the sync ended before the test could freeze it, three times")
			}
			continue
		}
		st, err := r.be.SnapshotStatus(ctx, snap)
		if err != nil || st.State != sdk.SnapshotPending {
			t.Fatalf("SnapshotStatus with the snapshot protected on the copy, its data not copied yet = %+v, %v; want pending", st, err)
		}
		t.Logf("caught at attempt %d: %s", attempt, st.Description)
		release()
		waitFor(t, "the snapshot ready once the sync goes on", 60*time.Second, func() bool {
			st, err := r.be.SnapshotStatus(ctx, snap)
			return err == nil && st.State == sdk.SnapshotReady
		})
		if !cliCopied(t, r.lab.Sites[1], name, snapName(snap)) {
			t.Fatal("SnapshotStatus ready while the rbd CLI shows the snapshot's data not copied")
		}
		return
	}
}

// cliCopied says, from the rbd CLI, whether the copy holds snapshot name
// with a complete non-primary mirror snapshot after it.
func cliCopied(t *testing.T, s labSite, image, name string) bool {
	t.Helper()
	out, err := exec.Command("rbd", "--cluster", s.Name, "-c", s.Conf, "--keyring", s.AdminKeyring, "-n", "client.admin",
		"snap", "ls", "--all", "--format", "json", s.Pool+"/"+image).Output()
	if err != nil {
		t.Fatalf("rbd snap ls on %s: %v", s.Name, err)
	}
	var snaps []struct {
		ID        uint64 `json:"id"`
		Name      string `json:"name"`
		Namespace struct {
			Type     string `json:"type"`
			State    string `json:"state"`
			Complete bool   `json:"complete"`
		} `json:"namespace"`
	}
	if err := json.Unmarshal(out, &snaps); err != nil {
		t.Fatalf("rbd snap ls: %v\n%s", err, out)
	}
	var id uint64
	for _, sn := range snaps {
		if sn.Name == name {
			id = sn.ID
		}
	}
	for _, sn := range snaps {
		if id != 0 && sn.ID > id && sn.Namespace.Type == "mirror" && sn.Namespace.State == "non-primary" && sn.Namespace.Complete {
			return true
		}
	}
	return false
}
