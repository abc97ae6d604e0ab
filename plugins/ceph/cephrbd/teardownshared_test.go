package cephrbd

import (
	"strings"
	"testing"
	"time"

	"github.com/ceph/go-ceph/rbd"

	"github.com/cdmdr/mirror/plugins/sdk/plugintest"
)

// A source pool shared with another environment: that one's mirrored
// image (mirror-enabled by hand here, with its mark, since no layout the
// plugin prepares shares a source pool with another target cluster yet)
// neither blocks this environment's teardown nor is touched by it, on
// the source or as a copy on the target. This environment's own volume
// still blocks it.
func TestTeardownLeavesAnotherEnvironmentsImages(t *testing.T) {
	r := newRig(t, modeSnapshot)
	ctx := t.Context()
	a, b := r.lab.Sites[0], r.lab.Sites[1]
	env := r.env(t)
	r.prepareEnvironments(t, env)

	const otherEnv = "storage.21.23"
	other := "volume-" + plugintest.NewUUID()
	if err := rbd.CreateImage(r.srcIO, other, 16<<20, rbd.NewRbdImageOptions()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		removeImageForTest(r.srcIO, other)
		removeImageForTest(r.dstIO, other)
	})
	if err := markImage(ctx, r.srcIO, other, otherEnv); err != nil {
		t.Fatal(err)
	}
	rbdCLI(t, a, "mirror", "image", "enable", a.Pool+"/"+other, "snapshot")
	waitFor(t, other+" copied to site-b with its mark", 45*time.Second, func() bool {
		out, err := rbdCLIErr(b, "image-meta", "get", b.Pool+"/"+other, markMetaKey)
		return err == nil && strings.TrimSpace(out) == otherEnv
	})

	vol := r.startSmallVolume(t, env, 51, r.srcIO, r.dstIO)
	_, err := r.be.TeardownEnvironment(ctx, env, false)
	wantRefused(t, "TeardownEnvironment with a volume of its own", err, imageName(vol))
	if err != nil && strings.Contains(err.Error(), other) {
		t.Errorf("the refusal names %s, another environment's image: %v", other, err)
	}
	if err := reportless(r.be.DestroyVolume(ctx, vol)); err != nil {
		t.Fatalf("DestroyVolume: %v", err)
	}
	rep, err := r.be.TeardownEnvironment(ctx, env, false)
	if err != nil {
		t.Fatalf("TeardownEnvironment with only another environment's image mirrored: %v", err)
	}
	if strings.Contains(strings.Join(rep.Leftovers, "\n"), other) {
		t.Errorf("the teardown report names %s, another environment's image: %q", other, rep.Leftovers)
	}
	// Untouched, as the rbd CLI shows it.
	if st := mirrorImageState(t, a, other); st != "enabled" {
		t.Errorf("%s on site-a: mirroring %q after the teardown, want enabled", other, st)
	}
	if got := strings.TrimSpace(rbdCLI(t, a, "image-meta", "get", a.Pool+"/"+other, markMetaKey)); got != otherEnv {
		t.Errorf("%s on site-a: mark %q after the teardown, want %q", other, got, otherEnv)
	}
	if st := mirrorImageState(t, b, other); st != "enabled" {
		t.Errorf("the copy of %s on site-b: mirroring %q after the teardown, want enabled", other, st)
	}
}
