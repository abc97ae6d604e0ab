package cephrbd

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ceph/go-ceph/rados"

	"github.com/cdmdr/mirror/plugins/sdk"
	"github.com/cdmdr/mirror/plugins/sdk/plugintest"
)

// shipLayoutEnv is layoutEnv with the ship loop's interval set on both
// storages.
func (r *labRig) shipLayoutEnv(t testing.TB, id string, src, dst labSite, srcID, dstID uint64, interval string) sdk.Environment {
	extra := map[string]string{"mirror_mode": r.mode, "mirror_ship_interval": interval}
	return sdk.Environment{
		ID:     id,
		Source: sdk.Storage{ClusterID: 5, StorageID: srcID, Type: StorageType, BackendName: "ceph", Metadata: src.metadata(t, extra)},
		Target: sdk.Storage{ClusterID: 6, StorageID: dstID, Type: StorageType, BackendName: "ceph", Metadata: dst.metadata(t, extra)},
	}
}

// markerPath is the path an environment's marker records ("" rbd-mirror).
func markerPath(t *testing.T, io *rados.IOContext, envID string) string {
	t.Helper()
	v, ok, err := getPoolMeta(io, preparedKey(envID))
	if err != nil || !ok {
		t.Fatalf("marker of %s: found %v, %v", envID, ok, err)
	}
	if strings.Contains(v, `"path":"ship"`) {
		return pathShip
	}
	return ""
}

// exportSum is `rbd export <image> - | sha256sum` on a lab site.
func exportSum(t *testing.T, s labSite, image string) string {
	t.Helper()
	return rbdSum(t, s, s.Pool+"/"+image)
}

// sameSoon waits for the target's head to read as the source's, and
// says how long that took.
func sameSoon(t *testing.T, what string, srcIO, dstIO *rados.IOContext, name string) time.Duration {
	t.Helper()
	want := digestAt(t, srcIO, name, "")
	start := time.Now()
	waitForFast(t, what, 90*time.Second, func() bool { return digestAt(t, dstIO, name, "") == want })
	return time.Since(start)
}

func waitState(t *testing.T, r *labRig, vol sdk.Volume, want sdk.ReplicationState) {
	t.Helper()
	waitFor(t, fmt.Sprintf("volume %d %s", vol.VolumeID, want), 90*time.Second, func() bool {
		st, err := r.be.VolumeStatus(t.Context(), vol)
		return err == nil && st.State == want
	})
}

// wantOnly checks with `rbd ls` that the images on s, less those there
// before the test (what earlier tests left), are exactly names.
func wantOnly(t *testing.T, s labSite, before []string, names ...string) {
	t.Helper()
	var got []string
	for _, n := range rbdImages(t, s) {
		if !slices.Contains(before, n) {
			got = append(got, n)
		}
	}
	sort.Strings(got)
	sort.Strings(names)
	if !slices.Equal(got, names) {
		t.Errorf("`rbd ls` on %s = %v, want exactly %v", s.Name, got, names)
	}
}

func wantReadyAlone(t *testing.T, r *labRig, env sdk.Environment) {
	t.Helper()
	if h, err := r.be.EnvironmentStatus(t.Context(), env); err != nil || !h.Ready || len(h.Unintended) != 0 {
		t.Errorf("EnvironmentStatus %s = %+v, %v; want ready, nothing unintended", env.ID, h, err)
	}
}

// rpoText sums up write→on-target times.
func rpoText(ds []time.Duration) string {
	slices.Sort(ds)
	return fmt.Sprintf("min %v, median %v, max %v over %d writes", ds[0].Round(10*time.Millisecond),
		ds[len(ds)/2].Round(10*time.Millisecond), ds[len(ds)-1].Round(10*time.Millisecond), len(ds))
}

// 1:2 (issue 12): one source pool, environment 1 to site-b, environment
// 2 to site-c. The first takes rbd-mirror, the second the ship path; each
// volume reaches its own environment's target only.
func TestShipOneSourceTwoTargets(t *testing.T) {
	r := newRig(t, modeJournal)
	siteC := r.lab.siteC(t)
	ctx := t.Context()
	a, b := r.lab.Sites[0], r.lab.Sites[1]
	var rounds atomic.Int64
	r.be.shipRoundDone = func(string) { rounds.Add(1) }
	env1 := r.env(t)
	env2 := r.shipLayoutEnv(t, "storage.11.14", a, siteC, 11, 14, "1s")
	beforeB, beforeC := rbdImages(t, b), rbdImages(t, siteC)
	r.prepareEnvironments(t, env1, env2)
	dstC := siteC.connect(t)
	if p1, p2 := markerPath(t, r.dstIO, env1.ID), markerPath(t, dstC, env2.ID); p1 != "" || p2 != pathShip {
		t.Fatalf("paths: %s %q, %s %q; want rbd-mirror, ship", env1.ID, p1, env2.ID, p2)
	}
	vol31 := r.startSmallVolume(t, env1, 31, r.srcIO, r.dstIO)
	vol32 := r.startSmallVolume(t, env2, 32, r.srcIO, dstC)
	name31, name32 := imageName(vol31), imageName(vol32)
	waitState(t, r, vol31, sdk.ReplicationReplaying)
	waitState(t, r, vol32, sdk.ReplicationReplaying)

	// 0 unintended: each target holds its own volume only.
	wantOnly(t, b, beforeB, name31)
	wantOnly(t, siteC, beforeC, name32)
	wantReadyAlone(t, r, env1)
	wantReadyAlone(t, r, env2)
	if st := mirrorImageState(t, a, name32); st != "" {
		t.Errorf("the shipped image %s is mirror-enabled (%s) on the source", name32, st)
	}

	// Write→on target, each path (RPO).
	var viaMirror, viaShip []time.Duration
	for i := range 3 {
		shipWrite(t, r.srcIO, name31, int64(i)<<20, 1<<20)
		viaMirror = append(viaMirror, sameSoon(t, "volume 31's write on site-b", r.srcIO, r.dstIO, name31))
		shipWrite(t, r.srcIO, name32, int64(i)<<20, 1<<20)
		viaShip = append(viaShip, sameSoon(t, "volume 32's write on site-c", r.srcIO, dstC, name32))
	}
	t.Logf("write→on target, 1 MiB into a 16 MiB image: rbd-mirror (journal) %s; ship (interval 1s) %s", rpoText(viaMirror), rpoText(viaShip))
	if exportSum(t, a, name32) != exportSum(t, siteC, name32) || exportSum(t, a, name31) != exportSum(t, b, name31) {
		t.Errorf("`rbd export | sha256sum` differs between a source and its target")
	}

	// Released here, the environment's loop stops; a new leader's loop
	// finds the shipped volume in the target pool and goes on.
	if err := r.be.ReleaseEnvironment(ctx, env2); err != nil {
		t.Fatal(err)
	}
	if h, err := r.be.EnvironmentStatus(ctx, env2); err != nil || h.Ready {
		t.Errorf("EnvironmentStatus %s on the released host = %+v, %v; want not ready", env2.ID, h, err)
	}
	other := New(sdkLoggerTo(r.logs), filepath.Join(t.TempDir(), "state"))
	if err := other.PrepareEnvironment(ctx, env2); err != nil {
		t.Fatal(err)
	}
	shipWrite(t, r.srcIO, name32, 3<<20, 1<<20)
	sameSoon(t, "volume 32's write on site-c by the new leader", r.srcIO, dstC, name32)
	if err := other.ReleaseEnvironment(ctx, env2); err != nil {
		t.Fatal(err)
	}
	other.Close()
	if err := r.be.PrepareEnvironment(ctx, env2); err != nil {
		t.Fatal(err)
	}

	// A pause holds the copy through writes and rounds; the resume
	// brings them.
	if err := r.be.PauseVolume(ctx, vol32); err != nil {
		t.Fatal(err)
	}
	held := exportSum(t, siteC, name32)
	shipWrite(t, r.srcIO, name32, 5<<20, 1<<20)
	n := rounds.Load()
	r.be.wakeShip(env2.ID)
	waitForFast(t, "two ship rounds after the write", 30*time.Second, func() bool { return rounds.Load() >= n+2 })
	if got := exportSum(t, siteC, name32); got != held {
		t.Errorf("the paused copy changed")
	}
	waitState(t, r, vol32, sdk.ReplicationPaused)
	if err := r.be.ResumeVolume(ctx, vol32); err != nil {
		t.Fatal(err)
	}
	sameSoon(t, "the write made while paused on site-c", r.srcIO, dstC, name32)
	waitState(t, r, vol32, sdk.ReplicationReplaying)

	// A snapshot reaches site-c, clones there, and goes with its removal.
	snap := sdk.Snapshot{Volume: vol32, SnapshotID: 1, SnapshotUUID: plugintest.NewUUID()}
	sname := snapName(snap)
	rbdCLI(t, a, "snap", "create", a.Pool+"/"+name32+"@"+sname)
	if err := r.be.AddSnapshot(ctx, snap); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the snapshot ready on site-c", 60*time.Second, func() bool {
		st, err := r.be.SnapshotStatus(ctx, snap)
		return err == nil && st.State == sdk.SnapshotReady
	})
	if out := rbdCLI(t, siteC, "snap", "ls", siteC.Pool+"/"+name32); !strings.Contains(out, sname) {
		t.Errorf("`rbd snap ls` on site-c lacks %s:\n%s", sname, out)
	}
	if exportSum(t, siteC, name32+"@"+sname) != exportSum(t, a, name32+"@"+sname) {
		t.Errorf("the snapshot's content differs on site-c")
	}
	rbdCLI(t, siteC, "clone", siteC.Pool+"/"+name32+"@"+sname, siteC.Pool+"/clone-32")
	rbdCLI(t, siteC, "rm", siteC.Pool+"/clone-32")
	if err := r.be.RemoveSnapshot(ctx, snap); err != nil {
		t.Fatal(err)
	}
	if out := rbdCLI(t, siteC, "snap", "ls", siteC.Pool+"/"+name32); strings.Contains(out, sname) {
		t.Errorf("`rbd snap ls` on site-c still shows %s after its removal:\n%s", sname, out)
	}

	// Stop keeps a standalone, writable copy, equal to the source.
	for {
		_, err := r.be.StopVolume(ctx, vol32)
		if err == nil {
			break
		}
		if !errors.Is(err, sdk.ErrInProgress) {
			t.Fatal(err)
		}
		time.Sleep(time.Second)
	}
	if exportSum(t, siteC, name32) != exportSum(t, a, name32) {
		t.Errorf("the kept copy differs from the source")
	}
	if meta := rbdCLI(t, siteC, "image-meta", "list", siteC.Pool+"/"+name32); strings.Contains(meta, shipMarkKey) {
		t.Errorf("the kept copy still carries the ship mark:\n%s", meta)
	}
	if snaps := rbdCLI(t, siteC, "snap", "ls", siteC.Pool+"/"+name32); strings.Contains(snaps, shipSnapPrefix) {
		t.Errorf("the kept copy still carries ship points:\n%s", snaps)
	}
	shipWrite(t, dstC, name32, 0, 4096) // writable
	if st, err := r.be.VolumeStatus(ctx, vol32); err != nil || st.State != sdk.ReplicationAbsent || !st.TargetExists {
		t.Errorf("VolumeStatus after the stop = %+v, %v; want absent with its target", st, err)
	}
	if snaps := rbdCLI(t, a, "snap", "ls", a.Pool+"/"+name32); strings.Contains(snaps, shipSnapPrefix) {
		t.Errorf("the source still carries ship points after the stop:\n%s", snaps)
	}

	// Destroy of a started volume removes its copy on site-c, and only that.
	vol33 := r.startSmallVolume(t, env2, 33, r.srcIO, dstC)
	waitState(t, r, vol33, sdk.ReplicationReplaying)
	if _, err := r.be.DestroyVolume(ctx, vol33); err != nil {
		t.Fatal(err)
	}
	wantOnly(t, siteC, beforeC, name32)
	wantOnly(t, b, beforeB, name31)
	if !slices.Contains(rbdImages(t, a), imageName(vol33)) {
		t.Errorf("the destroy removed the source image")
	}
}

// N:1 into one pool: site-a's and site-c's volumes into site-b's pool.
// The first environment takes rbd-mirror, the second the ship path; both
// replicate, the first undisturbed.
func TestShipTwoSourcesOnePool(t *testing.T) {
	r := newRig(t, modeJournal)
	siteC := r.lab.siteC(t)
	b := r.lab.Sites[1]
	env1 := r.env(t)
	env3 := r.shipLayoutEnv(t, "storage.21.13", siteC, b, 21, 13, "1s")
	before := rbdImages(t, b)
	r.prepareEnvironments(t, env1, env3)
	if p1, p3 := markerPath(t, r.dstIO, env1.ID), markerPath(t, r.dstIO, env3.ID); p1 != "" || p3 != pathShip {
		t.Fatalf("paths: %s %q, %s %q; want rbd-mirror, ship", env1.ID, p1, env3.ID, p3)
	}
	srcC := siteC.connect(t)
	vol41 := r.startSmallVolume(t, env1, 41, r.srcIO, r.dstIO)
	vol42 := r.startSmallVolume(t, env3, 42, srcC, r.dstIO)
	waitState(t, r, vol41, sdk.ReplicationReplaying)
	waitState(t, r, vol42, sdk.ReplicationReplaying)
	wantOnly(t, b, before, imageName(vol41), imageName(vol42))
	for range 2 {
		shipWrite(t, r.srcIO, imageName(vol41), 0, 1<<20)
		shipWrite(t, srcC, imageName(vol42), 0, 1<<20)
		sameSoon(t, "volume 41's write on site-b", r.srcIO, r.dstIO, imageName(vol41))
		sameSoon(t, "volume 42's write on site-b", srcC, r.dstIO, imageName(vol42))
	}
	waitState(t, r, vol41, sdk.ReplicationReplaying)
	wantReadyAlone(t, r, env1)
	wantReadyAlone(t, r, env3)
	if peers := mirrorPoolInfo(t, b).Peers; len(peers) != 1 || peers[0].SiteName != r.siteName(t, 0) {
		t.Errorf("site-b's peers = %+v, want site-a's alone", peers)
	}
	if st := mirrorImageState(t, b, imageName(vol42)); st != "" {
		t.Errorf("the ship copy %s is mirror-enabled (%s)", imageName(vol42), st)
	}
}
