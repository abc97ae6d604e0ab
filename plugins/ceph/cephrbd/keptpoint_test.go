package cephrbd

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ceph/go-ceph/rbd"

	"github.com/cdmdr/mirror/plugins/sdk"
)

// rbdSum is the sha256 of an image (or image@snap) as `rbd export` reads
// it, streamed: a test holding whole exports took 10 GiB under -race.
func rbdSum(t *testing.T, s labSite, spec string) string {
	t.Helper()
	cmd := exec.Command("rbd", "--cluster", s.Name, "-c", s.Conf, "--keyring", s.AdminKeyring, "-n", "client.admin",
		"export", "--no-progress", spec, "-")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("rbd export %s on %s: %v", spec, s.Name, err)
	}
	h := sha256.New()
	_, copyErr := io.Copy(h, out)
	if err := cmd.Wait(); err != nil || copyErr != nil {
		t.Fatalf("rbd export %s on %s: %v, %v: %s", spec, s.Name, err, copyErr, stderr.String())
	}
	return hex.EncodeToString(h.Sum(nil))
}

// breakLink makes the volume's snapshot-mode replica split-brained: the
// source's mirror snapshots the replica's last one links to are removed,
// and a new one is taken. rbd-mirror then cannot find its start snapshot
// ("split-brain"), and only a resync mends it; the replica keeps its
// complete non-primary snapshots meanwhile.
func breakLink(t *testing.T, r *labRig, spec string) {
	t.Helper()
	var snaps []struct {
		ID        uint64 `json:"id"`
		Name      string `json:"name"`
		Namespace struct {
			Type string `json:"type"`
		} `json:"namespace"`
	}
	out := rbdCLI(t, r.lab.Sites[0], "snap", "ls", "--all", "--format", "json", spec)
	if err := json.Unmarshal([]byte(out), &snaps); err != nil {
		t.Fatalf("rbd snap ls: %v: %s", err, out)
	}
	for _, s := range snaps {
		if s.Namespace.Type == "mirror" {
			rbdCLI(t, r.lab.Sites[0], "snap", "rm", "--snap-id", strconv.FormatUint(s.ID, 10), spec)
		}
	}
	rbdCLI(t, r.lab.Sites[0], "mirror", "image", "snapshot", spec)
}

// A resume of a split-brained volume keeps the replica's newest complete
// recovery point as a standalone copy before the resync deletes the
// replica: it exists, holds the point's data, can be cloned and exported
// while the new copy runs, is reported by VolumeStatus, and goes once the
// new replica holds a newer point.
func TestKeptPointSurvivesResync(t *testing.T) {
	r := newRig(t, modeSnapshot)
	ctx := t.Context()
	h := r.newHarness(t)
	startReplaying(t, r, h)
	srcSite, dstSite := r.lab.Sites[0], r.lab.Sites[1]
	name := imageName(h.vol)
	spec := srcSite.Pool + "/" + name
	if err := r.be.AddSnapshot(ctx, h.snap); err != nil {
		t.Fatalf("AddSnapshot: %v", err)
	}
	waitFor(t, "the recovery point on the target", time.Minute, func() bool {
		st, err := r.be.SnapshotStatus(ctx, h.snap)
		return err == nil && st.State == sdk.SnapshotReady
	})
	point := rbdSum(t, srcSite, spec) // the source as the replica last got it
	oldID := imageID(t, dstSite, spec)
	t.Cleanup(func() {
		removeImageForTest(r.dstIO, name+".probe")
		removeImageForTest(r.dstIO, name+".kept")
		_ = removePoolMeta(r.dstIO, keptKey(h.env.ID, name))
	})

	// Diverge: new data on the source that the broken link cannot ship.
	img, err := rbd.OpenImage(r.srcIO, name, rbd.NoSnapshot)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := img.WriteAt([]byte(strings.Repeat("after!", 1000)), 0); err != nil {
		t.Fatal(err)
	}
	img.Close()
	breakLink(t, r, spec)
	waitFor(t, "failed (split brain)", time.Minute, func() bool {
		st, err := r.be.VolumeStatus(ctx, h.vol)
		return err == nil && st.State == sdk.ReplicationFailed
	})

	begin := time.Now()
	if err := r.be.ResumeVolume(ctx, h.vol); err != nil {
		t.Fatalf("ResumeVolume: %v", err)
	}
	t.Logf("resume with the kept copy took %v", time.Since(begin).Round(10*time.Millisecond))
	kept := spec + ".kept"
	// Usable while the resync runs: clonable, exportable, the point's data.
	rbdCLI(t, dstSite, "snap", "create", kept+"@probe")
	rbdCLI(t, dstSite, "clone", "--rbd-default-clone-format", "2", kept+"@probe", spec+".probe")
	if got := rbdSum(t, dstSite, kept); got != point {
		t.Fatalf("the kept copy %s holds %s, want the recovery point's %s", kept, got, point)
	}
	if got := rbdSum(t, dstSite, spec+".probe"); got != point {
		t.Fatalf("a clone of the kept copy holds %s, want %s", got, point)
	}
	checkStandaloneCLI(t, dstSite, name+".kept")
	st, err := r.be.VolumeStatus(ctx, h.vol)
	if err != nil || st.Kept.Name == "" || st.Kept.Taken.IsZero() || !strings.Contains(st.Kept.Name, kept) {
		t.Fatalf("VolumeStatus after resume = %+v, %v; want Kept naming %s", st, err, kept)
	}
	sts, err := r.be.VolumeStatuses(ctx, h.env, []sdk.Volume{h.vol})
	if err != nil || sts[0].Kept.Name != st.Kept.Name {
		t.Fatalf("VolumeStatuses = %+v, %v; want Kept %+v\n%s", sts, err, st.Kept, r.logs.String())
	}
	// A retried resume reuses the finished copy.
	k1, _, _ := readKept(ctx, r.dstIO, h.env.ID, name)
	v, err := r.be.openVol(ctx, h.vol)
	if err != nil {
		t.Fatal(err)
	}
	k2, ok, err := r.be.keepBeforeResync(ctx, h.vol, v)
	v.close()
	if err != nil || !ok || k2 != k1 {
		t.Fatalf("keep again = %+v, %v, %v; want the first one %+v reused", k2, ok, err, k1)
	}
	rbdCLI(t, dstSite, "rm", "--no-progress", spec+".probe")
	rbdCLI(t, dstSite, "snap", "rm", kept+"@probe")

	// The new replica's first point is newer: the kept copy goes.
	waitFor(t, "the kept copy removed after a newer point", 90*time.Second, func() bool {
		st, err := r.be.VolumeStatus(ctx, h.vol)
		return err == nil && st.Kept == (sdk.KeptPoint{})
	})
	if _, err := exec.Command("rbd", "--cluster", dstSite.Name, "-c", dstSite.Conf, "--keyring", dstSite.AdminKeyring,
		"-n", "client.admin", "info", kept).CombinedOutput(); err == nil {
		t.Fatalf("%s still exists after the kept point was reported gone", kept)
	}
	if newID := imageID(t, dstSite, spec); newID == oldID {
		t.Fatal("the replica is the same image: no resync happened")
	}
	t.Logf("resync to the kept copy's removal: %v", time.Since(begin).Round(100*time.Millisecond))

	// A point kept from the new replica goes with it when the volume is
	// destroyed (its source intact).
	v, err = r.be.openVol(ctx, h.vol)
	if err != nil {
		t.Fatal(err)
	}
	_, ok, err = r.be.keepBeforeResync(ctx, h.vol, v)
	v.close()
	if err != nil || !ok {
		t.Fatalf("keep from the new replica = %v, %v", ok, err)
	}
	if st, err := r.be.VolumeStatus(ctx, h.vol); err != nil || st.Kept.Name == "" {
		t.Fatalf("VolumeStatus with a point kept from the current replica = %+v, %v; want it kept (no newer point)", st, err)
	}
	if _, err := r.be.DestroyVolume(ctx, h.vol); err != nil {
		t.Fatalf("DestroyVolume: %v", err)
	}
	if out, err := exec.Command("rbd", "--cluster", dstSite.Name, "-c", dstSite.Conf, "--keyring", dstSite.AdminKeyring,
		"-n", "client.admin", "info", kept).CombinedOutput(); err == nil {
		t.Fatalf("%s still exists after DestroyVolume: %s", kept, out)
	}
	if _, ok, err := readKept(ctx, r.dstIO, h.env.ID, name); err != nil || ok {
		t.Fatalf("the kept point's record after DestroyVolume: %v, %v; want none", ok, err)
	}
}

// FindLeftovers lists a kept copy whose volume no longer exists, and not
// one whose volume is held.
func TestKeptCopyLeftover(t *testing.T) {
	p := poolScan{sd: side{m: meta{Pool: "volumes"}}, h: held{volumes: map[string]bool{"storage.11.13/volume-b": true}}}
	val, _ := json.Marshal(keptRecord{Image: "volume-a.kept", Point: "snapshot-x", Taken: time.Date(2026, 5, 6, 7, 0, 0, 0, time.UTC)})
	l, ok := p.keptCopy(keptKey("storage.11.13", "volume-a"), string(val))
	if !ok || l.Kind != "copy" || !strings.Contains(l.Name, "volumes/volume-a.kept") ||
		!strings.Contains(l.Remedy, "rbd rm volumes/volume-a.kept") || !strings.Contains(l.Remedy, "rmomapkey rbd_info") {
		t.Fatalf("keptCopy of a volume gone = %+v, %v", l, ok)
	}
	if _, ok := p.keptCopy(keptKey("storage.11.13", "volume-b"), string(val)); ok {
		t.Fatal("a kept copy of a held volume is listed as a leftover")
	}
	if _, ok := p.keptCopy(pausedKey("storage.11.13", "volume-a"), "{}"); ok {
		t.Fatal("a pause record is listed as a kept copy")
	}
}

// imageID is an image's id as `rbd info` gives it.
func imageID(t *testing.T, s labSite, spec string) string {
	t.Helper()
	var info struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal([]byte(rbdCLI(t, s, "info", "--format", "json", spec)), &info); err != nil || info.ID == "" {
		t.Fatalf("rbd info %s: no id (%v)", spec, err)
	}
	return info.ID
}

// PrepareEnvironment sets the target pool's delete delay: a replica
// whose source image stops mirroring goes to the trash, where it can be
// restored.
func TestDeleteDelayParksReplica(t *testing.T) {
	r := newRig(t, modeJournal)
	h := r.newHarness(t)
	srcSite, dstSite := r.lab.Sites[0], r.lab.Sites[1]
	// An earlier prepare's value must not pass for this one's.
	if err := removePoolMeta(r.dstIO, deleteDelayKey); err != nil {
		t.Fatal(err)
	}
	h.env.Target.Metadata = dstSite.metadata(t, map[string]string{"mirror_mode": modeJournal, "mirror_delete_delay": "2h"})
	h.vol.Environment = h.env
	startReplaying(t, r, h)
	name := imageName(h.vol)
	spec := srcSite.Pool + "/" + name
	if got := strings.TrimSpace(rbdCLI(t, dstSite, "config", "pool", "get", dstSite.Pool, "rbd_mirroring_delete_delay")); got != "7200" {
		t.Fatalf("rbd_mirroring_delete_delay of the target pool = %q, want 7200 (mirror_delete_delay 2h)", got)
	}
	rbdCLI(t, srcSite, "mirror", "image", "disable", spec)
	var id string
	waitFor(t, "the replica in the target's trash", time.Minute, func() bool {
		var items []struct {
			ID   string `json:"id"`
			Name string `json:"name"`
		}
		_ = json.Unmarshal([]byte(rbdCLI(t, dstSite, "trash", "ls", "--all", "--format", "json", dstSite.Pool)), &items)
		for _, it := range items {
			if it.Name == name {
				id = it.ID
			}
		}
		return id != ""
	})
	rbdCLI(t, dstSite, "trash", "restore", dstSite.Pool+"/"+id)
	rbdCLI(t, dstSite, "info", spec)
}

func TestDeleteDelayParse(t *testing.T) {
	for in, want := range map[string]time.Duration{"": 24 * time.Hour, "0": 0, "3600": time.Hour, "7d": -1, "2h30m": 150 * time.Minute,
		"-1s": -1, "1.5s": -1, "x": -1, "0s": 0} {
		got, err := deleteDelay(in)
		if want < 0 {
			if err == nil {
				t.Errorf("deleteDelay(%q) = %v, want an error", in, got)
			}
			continue
		}
		if err != nil || got != want {
			t.Errorf("deleteDelay(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
}
