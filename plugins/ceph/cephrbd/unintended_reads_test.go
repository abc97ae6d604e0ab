package cephrbd

import (
	"strings"
	"testing"
	"time"

	"github.com/ceph/go-ceph/rbd"

	"github.com/cdmdr/mirror/plugins/sdk/plugintest"
)

// In a layout that feeds only the environment, a status poll reads each
// copy's mark once, not on every poll; a copy marked for another
// environment (mirror-enabled by hand in the source pool) is still
// reported, on every poll.
func TestUnintendedScanReadsEachCopyOnce(t *testing.T) {
	r := newRig(t, modeSnapshot)
	ctx := t.Context()
	a, b := r.lab.Sites[0], r.lab.Sites[1]
	env := r.env(t)
	r.prepareEnvironments(t, env)
	waitMark := func(name, want string) {
		waitFor(t, name+" copied to site-b with its mark", 45*time.Second, func() bool {
			out, err := rbdCLIErr(b, "image-meta", "get", b.Pool+"/"+name, markMetaKey)
			return err == nil && strings.TrimSpace(out) == want
		})
	}
	for id := uint64(61); id <= 63; id++ {
		waitMark(imageName(r.startSmallVolume(t, env, id, r.srcIO, r.dstIO)), env.ID)
	}
	poll := func(what string) (int64, []string) {
		t.Helper()
		before := unintendedMarkReads.Load()
		h, err := r.be.EnvironmentStatus(ctx, env)
		if err != nil {
			t.Fatalf("EnvironmentStatus (%s): %v", what, err)
		}
		n := unintendedMarkReads.Load() - before
		t.Logf("%s: %d mark reads, Unintended %q", what, n, h.Unintended)
		return n, h.Unintended
	}
	if n, u := poll("first poll"); n != 3 || len(u) != 0 {
		t.Errorf("first poll: %d mark reads, Unintended %q; want each of the 3 copies read, none reported", n, u)
	}
	if n, u := poll("second poll"); n != 0 || len(u) != 0 {
		t.Errorf("second poll: %d mark reads, Unintended %q; want none read, none reported", n, u)
	}

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
	waitMark(other, otherEnv)
	for _, what := range []string{"poll with a stray copy", "next poll"} {
		if n, u := poll(what); n != 1 || len(u) != 1 || !strings.Contains(u[0], b.Pool+"/"+other) || !strings.Contains(u[0], otherEnv) {
			t.Errorf("%s: %d mark reads, Unintended %q; want the stray copy alone read and reported", what, n, u)
		}
	}
}
