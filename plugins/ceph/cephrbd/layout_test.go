package cephrbd

import (
	"context"
	"encoding/json"
	"errors"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ceph/go-ceph/rados"
	"github.com/ceph/go-ceph/rbd"

	"github.com/cdmdr/mirror/plugins/sdk"
	"github.com/cdmdr/mirror/plugins/sdk/plugintest"
)

// layoutEnv is an environment of the three-site lab: src's pool into
// dst's, with storage ids of its own.
func (r *labRig) layoutEnv(t testing.TB, id string, src, dst labSite, srcID, dstID uint64) sdk.Environment {
	extra := map[string]string{"mirror_mode": r.mode}
	return sdk.Environment{
		ID:     id,
		Source: sdk.Storage{ClusterID: 5, StorageID: srcID, Type: StorageType, BackendName: "ceph", Metadata: src.metadata(t, extra)},
		Target: sdk.Storage{ClusterID: 6, StorageID: dstID, Type: StorageType, BackendName: "ceph", Metadata: dst.metadata(t, extra)},
	}
}

// rbdImages lists a lab site's pool with the rbd CLI.
func rbdImages(t *testing.T, s labSite) []string {
	t.Helper()
	var names []string
	if err := json.Unmarshal([]byte(rbdCLI(t, s, "ls", "--format", "json", s.Pool)), &names); err != nil {
		t.Fatal(err)
	}
	return names
}

// rbdPoolInfo is `rbd mirror pool info` of a lab site's pool.
type rbdPoolInfo struct {
	Mode  string `json:"mode"`
	Peers []struct {
		UUID      string `json:"uuid"`
		Direction string `json:"direction"`
		SiteName  string `json:"site_name"`
	} `json:"peers"`
}

func mirrorPoolInfo(t *testing.T, s labSite) rbdPoolInfo {
	t.Helper()
	var info rbdPoolInfo
	if err := json.Unmarshal([]byte(rbdCLI(t, s, "mirror", "pool", "info", "--format", "json", s.Pool)), &info); err != nil {
		t.Fatal(err)
	}
	return info
}

func wantRefused(t *testing.T, what string, err error, mentions ...string) {
	t.Helper()
	if !errors.Is(err, sdk.ErrPrecondition) {
		t.Fatalf("%s = %v, want a refusal (ErrPrecondition)", what, err)
	}
	for _, m := range mentions {
		if !strings.Contains(err.Error(), m) {
			t.Errorf("%s: the refusal does not mention %q: %v", what, m, err)
		}
	}
}

// siteName is a lab site's mirror site name as the plugin reads it.
func (r *labRig) siteName(t *testing.T, i int) string {
	t.Helper()
	conn, err := labConn(r.lab.Sites[i])
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Shutdown()
	name, err := siteName(t.Context(), conn)
	if err != nil {
		t.Fatal(err)
	}
	return name
}

// Two daemons prepare, at the same moment, two environments from one
// source pool into two target clusters: exactly one claims the pool for
// rbd-mirror, the other takes the ship path.
func TestLayoutConcurrentPrepareOneClaims(t *testing.T) {
	r := newRig(t, modeJournal)
	siteC := r.lab.siteC(t)
	a, b := r.lab.Sites[0], r.lab.Sites[1]
	dir := t.TempDir()
	other := New(sdkLoggerTo(r.logs), filepath.Join(dir, "state"))
	t.Cleanup(other.Close)
	envs := []sdk.Environment{r.layoutEnv(t, "storage.11.13", a, b, 11, 13), r.layoutEnv(t, "storage.11.14", a, siteC, 11, 14)}
	bes := []*Backend{r.be, other}
	for i := range envs {
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			if err := reportless(bes[i].TeardownEnvironment(ctx, envs[i], false)); err != nil {
				t.Errorf("cleanup: teardown %s: %v", envs[i].ID, err)
			}
		})
	}
	errs := make([]error, 2)
	var start, wg sync.WaitGroup
	start.Add(1)
	for i := range envs {
		wg.Go(func() {
			start.Wait()
			errs[i] = bes[i].PrepareEnvironment(t.Context(), envs[i])
		})
	}
	start.Done()
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("PrepareEnvironment %s: %v", envs[i].ID, err)
		}
	}
	paths := []string{markerPath(t, r.dstIO, envs[0].ID), markerPath(t, siteC.connect(t), envs[1].ID)}
	f, ok, err := readFeed(t.Context(), r.srcIO)
	if err != nil || !ok {
		t.Fatalf("the source pool's feed record: %v, %v", ok, err)
	}
	claimed := slices.Index([]string{envs[0].ID, envs[1].ID}, f.Environment)
	if claimed < 0 || paths[claimed] != "" || paths[1-claimed] != pathShip {
		t.Errorf("feed held by %q, paths %q; want one environment on rbd-mirror holding the feed, the other on the ship path", f.Environment, paths)
	}
}

// A claim of a pool another environment holds answers with the holder's
// record. It is the path the race above takes only when the two creates
// meet, so it is checked here on its own.
func TestClaimFeedHeld(t *testing.T) {
	r := newRig(t, modeJournal)
	if f, ok, err := readFeed(t.Context(), r.srcIO); err != nil || ok {
		t.Fatalf("the source pool already has a feed record (%+v) or cannot be read: %v", f, err)
	}
	first := feed{Environment: "storage.11.13", Target: "clusters.6.storages.13", TargetSite: "b", TargetPool: "volumes"}
	second := feed{Environment: "storage.11.14", Target: "clusters.6.storages.14", TargetSite: "c", TargetPool: "volumes"}
	held, err := claimFeed(t.Context(), r.srcIO, first)
	if err != nil || held != first {
		t.Fatalf("first claim = %+v, %v; want %+v", held, err, first)
	}
	t.Cleanup(func() {
		if err := releaseFeed(context.Background(), r.srcIO, first.Environment); err != nil {
			t.Errorf("cleanup: release the feed record: %v", err)
		}
	})
	held, err = claimFeed(t.Context(), r.srcIO, second)
	if err != nil || held != first {
		t.Fatalf("second claim = %+v, %v; want the first's record %+v", held, err, first)
	}
}

// A second environment prepared before this release's check (its peer set
// up without it) makes each target hold the other's volume: Unintended
// and FindLeftovers list exactly those copies, and a new volume is
// refused at start.
func TestLayoutUnintendedReplicasFound(t *testing.T) { testUnintended(t, modeJournal) }

// The same in snapshot mode, where the copy's metadata arrives with a
// mirror snapshot.
func TestLayoutUnintendedReplicasFoundSnapshot(t *testing.T) { testUnintended(t, modeSnapshot) }

// txPeers counts the tx peers of a lab site's pool (rbd-mirror daemons
// pulling from it).
func txPeers(t *testing.T, s labSite) int {
	n := 0
	for _, p := range mirrorPoolInfo(t, s).Peers {
		if p.Direction == "tx-only" {
			n++
		}
	}
	return n
}

func testUnintended(t *testing.T, mode string) {
	r := newRig(t, mode)
	siteC := r.lab.siteC(t)
	ctx := t.Context()
	a := r.lab.Sites[0]
	env1 := r.env(t)
	env2 := r.layoutEnv(t, "storage.11.14", a, siteC, 11, 14)
	r.prepareEnvironments(t, env1)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := reportless(r.be.TeardownEnvironment(ctx, env2, false)); err != nil {
			t.Errorf("cleanup: teardown %s: %v", env2.ID, err)
		}
	})
	if mode == modeSnapshot {
		// A mirror snapshot reaches only the peers registered when it is
		// taken, the first one included.
		waitFor(t, "site-b's rbd-mirror registered on site-a's pool", 60*time.Second, func() bool { return txPeers(t, a) >= 1 })
	}
	vol31 := r.startSmallVolume(t, env1, 31, r.srcIO, r.dstIO)
	prepareWithoutLayoutCheck(t, r.be, env2)
	waitFor(t, "site-c's rbd-mirror registered on site-a's pool", 60*time.Second, func() bool { return txPeers(t, a) >= 2 })
	// Volume 32 of env2, mirror-enabled as StartVolume would without the
	// check (and with its mark).
	vol32 := sdk.Volume{Environment: env2, ClusterID: 5, VolumeID: 32, VolumeUUID: plugintest.NewUUID()}
	dstC := siteC.connect(t)
	name31, name32 := imageName(vol31), imageName(vol32)
	if err := rbd.CreateImage(r.srcIO, name32, 16<<20, rbd.NewRbdImageOptions()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, io := range []*rados.IOContext{r.srcIO, r.dstIO, dstC} {
			removeImageForTest(io, name32)
		}
		removeImageForTest(dstC, name31)
	})
	r.destroyAtEnd(t, vol32)
	if err := markImage(ctx, r.srcIO, name32, env2.ID); err != nil {
		t.Fatal(err)
	}
	if err := withImage(ctx, r.srcIO, name32, func(img *rbd.Image) error {
		if mode == modeSnapshot {
			return img.MirrorEnable(rbd.ImageMirrorModeSnapshot)
		}
		for _, f := range []uint64{rbd.FeatureExclusiveLock, rbd.FeatureJournaling} {
			if feats, _ := img.GetFeatures(); feats&f != 0 {
				continue
			}
			if err := img.UpdateFeatures(f, true); err != nil {
				return err
			}
		}
		return img.MirrorEnable(rbd.ImageMirrorModeJournal)
	}); err != nil {
		t.Fatal(err)
	}

	if mode == modeSnapshot {
		// Volume 31's first snapshot predates site-c's peer: the next
		// one (a schedule's) reaches site-c too.
		rbdCLI(t, a, "mirror", "image", "snapshot", a.Pool+"/"+name31)
	}
	// rbd-mirror brings both volumes to both targets, their marks with them.
	for _, s := range []labSite{r.lab.Sites[1], siteC} {
		for _, n := range []string{name31, name32} {
			waitFor(t, n+" with its mark on "+s.Name, 90*time.Second, func() bool {
				out, err := rbdCLIErr(s, "image-meta", "get", s.Pool+"/"+n, markMetaKey)
				return err == nil && strings.TrimSpace(out) != ""
			})
		}
	}
	if got := strings.TrimSpace(rbdCLI(t, siteC, "image-meta", "get", siteC.Pool+"/"+name31, markMetaKey)); got != env1.ID {
		t.Errorf("the mark of %s on site-c = %q, want %q (rbd-mirror copies image metadata)", name31, got, env1.ID)
	}

	// A new volume of either environment is refused before its image is
	// mirror-enabled: the source pool feeds two target clusters.
	vol33 := sdk.Volume{Environment: env1, ClusterID: 5, VolumeID: 33, VolumeUUID: plugintest.NewUUID()}
	name33 := imageName(vol33)
	if err := rbd.CreateImage(r.srcIO, name33, 16<<20, rbd.NewRbdImageOptions()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { removeImageForTest(r.srcIO, name33) })
	wantRefused(t, "StartVolume 33", r.be.StartVolume(ctx, vol33), "already feeds another target cluster", "dr-x")
	if st := mirrorImageState(t, a, name33); st != "" {
		t.Errorf("image %s is mirror-enabled (%s) after the refusal", name33, st)
	}

	// Each environment reports exactly the other's copy.
	for _, c := range []struct {
		env    sdk.Environment
		stray  string
		target labSite
	}{{env1, name32, r.lab.Sites[1]}, {env2, name31, siteC}} {
		h, err := r.be.EnvironmentStatus(ctx, c.env)
		if err != nil {
			t.Fatalf("EnvironmentStatus %s: %v", c.env.ID, err)
		}
		if len(h.Unintended) != 1 || !strings.Contains(h.Unintended[0], c.target.Pool+"/"+c.stray) ||
			!strings.Contains(h.Unintended[0], "rbd rm "+c.target.Pool+"/"+c.stray) {
			t.Errorf("EnvironmentStatus %s Unintended = %q, want exactly %s with its remedy", c.env.ID, h.Unintended, c.stray)
		}
		t.Logf("%s: %s", c.env.ID, h.Unintended)
	}
	found, err := r.be.FindLeftovers(ctx, sdk.LeftoverQuery{Storage: env2.Target,
		Environments: []sdk.Environment{env1, env2}, Volumes: []sdk.Volume{vol31, vol32}})
	if err != nil {
		t.Fatal(err)
	}
	var copies []sdk.Leftover
	for _, l := range found {
		if l.Kind == "copy" {
			copies = append(copies, l)
		}
	}
	if len(copies) != 1 || !strings.Contains(copies[0].Name, name31) || !strings.Contains(copies[0].Remedy, "rbd rm "+siteC.Pool+"/"+name31) ||
		strings.Contains(copies[0].Remedy, name32) {
		t.Errorf("FindLeftovers on site-c: copies %+v, want exactly %s with a remedy removing it alone", copies, name31)
	}
}

// prepareWithoutLayoutCheck prepares env as the last release did: no
// claim of the source pool, no look at who else it feeds.
func prepareWithoutLayoutCheck(t *testing.T, be *Backend, env sdk.Environment) {
	t.Helper()
	ctx := t.Context()
	e, err := be.openEnv(ctx, env)
	if err != nil {
		t.Fatal(err)
	}
	defer e.close()
	ours, modes, err := e.checkPreparable(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.enableImageMode(ctx, modes); err != nil {
		t.Fatal(err)
	}
	if err := be.ensurePeer(ctx, env, e, ours); err != nil {
		t.Fatal(err)
	}
	if err := writeMarker(ctx, e.dstIO, env.ID, marker{Source: e.src.key(), Target: e.dst.key(), TargetSite: e.dstSite}); err != nil {
		t.Fatal(err)
	}
	if err := be.startDaemon(ctx, env, e.dst, e.dstSite); err != nil {
		t.Fatal(err)
	}
}

func rbdCLIErr(s labSite, args ...string) (string, error) {
	out, err := exec.Command("rbd", append([]string{"--cluster", s.Name, "-c", s.Conf, "--keyring", s.AdminKeyring, "-n", "client.admin"}, args...)...).Output()
	return string(out), err
}

// mirrorImageState is the image's mirroring state as the rbd CLI shows
// it ("" when disabled).
func mirrorImageState(t *testing.T, s labSite, image string) string {
	t.Helper()
	var info struct {
		Mirroring *struct {
			State string `json:"state"`
		} `json:"mirroring"`
	}
	if err := json.Unmarshal([]byte(rbdCLI(t, s, "info", "--format", "json", s.Pool+"/"+image)), &info); err != nil {
		t.Fatal(err)
	}
	if info.Mirroring == nil || info.Mirroring.State == "disabled" {
		return ""
	}
	return info.Mirroring.State
}
