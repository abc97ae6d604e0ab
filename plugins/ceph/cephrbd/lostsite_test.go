package cephrbd

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ceph/go-ceph/rbd"

	"github.com/cdmdr/mirror/plugins/sdk"
)

// The protection site lost: the source site's mon and OSD frozen
// (freezeSite) while a volume replicates. Stop keeps a writable copy
// equal to what was replicated, destroy keeps the copy, the environment
// is torn down on the surviving side, and when the source comes back
// nothing replicates into the kept copy, prepared or torn down.

// CutSource implements plugintest.SourceCutter: the source site's mon and
// OSD are frozen until restore (or the test's end). The package's tests
// run one at a time (none calls t.Parallel), and `make test` runs this
// module's tests after every other test using the lab, so no other test
// sees the site frozen.
func (h *labHarness) CutSource(t *testing.T) (restore func()) {
	f := freezeSite(t, h.r.lab, 0)
	return func() { f.thaw(t) }
}

// TestSourceLost runs in journal mode, whose complete copy is the harder
// to tell without the source; the kit's source-cut checks run both modes.
func TestSourceLost(t *testing.T) { testSourceLost(t, modeJournal) }

// lostCallTimeout is what the daemon gives a call at most here; the
// calls must end well within it with the source frozen.
const lostCallTimeout = 2 * time.Minute

func testSourceLost(t *testing.T, mode string) {
	r := newRig(t, mode)
	keep, gone := r.newHarness(t), r.newHarness(t)
	env := keep.env
	src, dst := r.lab.Sites[0], r.lab.Sites[1]
	keepName, goneName := imageName(keep.vol), imageName(gone.vol)
	// Known data, in the first copy.
	data := make([]byte, 1<<20)
	_, _ = rand.Read(data)
	writeImage(t, r, keepName, data)
	r.prepareEnvironments(t, env)
	for _, h := range []*labHarness{keep, gone} {
		r.destroyAtEnd(t, h.vol)
		if err := r.be.StartVolume(t.Context(), h.vol); err != nil {
			t.Fatalf("StartVolume: %v", err)
		}
	}
	want := exportDigest(t, src, keepName)
	gid := mirrorGlobalID(t, r, keepName)
	waitFor(t, "the copies replicated", 90*time.Second, func() bool {
		for _, h := range []*labHarness{keep, gone} {
			st, err := r.be.VolumeStatus(t.Context(), h.vol)
			if err != nil || st.State != sdk.ReplicationReplaying {
				return false
			}
		}
		return exportDigest(t, dst, keepName) == want
	})

	f := freezeSite(t, r.lab, 0)
	rep, took := timed(t, "StopVolume", func(ctx context.Context) (sdk.CleanupReport, error) { return r.be.StopVolume(ctx, keep.vol) })
	t.Logf("StopVolume with the source frozen (%s mode): %v; report %q", mode, took, rep.Leftovers)
	if len(rep.Leftovers) != 1 || !strings.Contains(rep.Leftovers[0], "rbd mirror image disable "+src.Pool+"/"+keepName) {
		t.Errorf("StopVolume's report %q: want one leftover with the command to disable mirroring on the source", rep.Leftovers)
	}
	checkStandaloneCLI(t, dst, keepName)
	if got := exportDigest(t, dst, keepName); got != want {
		t.Fatalf("kept copy's content %s, want the replicated %s", got, want)
	}
	rbdCLI(t, dst, "bench", "--io-type", "write", "--io-size", "4K", "--io-total", "64K", "--io-pattern", "rand", dst.Pool+"/"+keepName)
	kept := exportDigest(t, dst, keepName)
	if kept == want {
		t.Fatalf("writing to the kept copy changed nothing")
	}

	rep, took = timed(t, "DestroyVolume", func(ctx context.Context) (sdk.CleanupReport, error) { return r.be.DestroyVolume(ctx, gone.vol) })
	t.Logf("DestroyVolume with the source frozen (%s mode): %v; report %q", mode, took, rep.Leftovers)
	checkStandaloneCLI(t, dst, goneName)
	f.thaw(t)

	// The source is back, the environment still prepared: rbd-mirror
	// looks at the still-primary source image and leaves the kept copy.
	// A fresh rbd-mirror (another host's, a restart) looks at every
	// mirrored source image again: the stop's replayer stop was in the
	// old one's memory only.
	if err := r.be.ReleaseEnvironment(t.Context(), env); err != nil {
		t.Fatal(err)
	}
	if err := r.be.PrepareEnvironment(t.Context(), env); err != nil {
		t.Fatal(err)
	}
	observeReturn(t, r, env, gid, keepName)
	checkStandaloneCLI(t, dst, keepName)
	if got := exportDigest(t, dst, keepName); got != kept {
		t.Fatalf("the kept copy changed once the source came back (prepared): %s, was %s", got, kept)
	}
	// Starting the volume again would have rbd-mirror replicate into a
	// taken name: refused, saying why, until the operator decides.
	if err := r.be.StartVolume(t.Context(), keep.vol); !errors.Is(err, sdk.ErrPrecondition) || !strings.Contains(err.Error(), "kept while the source was unreachable") {
		t.Fatalf("StartVolume of the volume whose copy the stop kept: %v; want ErrPrecondition naming the kept copy", err)
	}

	f = freezeSite(t, r.lab, 0)
	rep, took = timed(t, "TeardownEnvironment", func(ctx context.Context) (sdk.CleanupReport, error) {
		return r.be.TeardownEnvironment(ctx, env, false)
	})
	t.Logf("TeardownEnvironment with the source frozen (%s mode): %v; report %q", mode, took, rep.Leftovers)
	if len(rep.Leftovers) == 0 {
		t.Errorf("TeardownEnvironment without the source reported nothing left")
	}
	if out := rbdCLI(t, dst, "mirror", "pool", "info", dst.Pool, "--format", "json"); strings.Contains(out, src.FSID) {
		t.Errorf("the source's peer is still on the target pool: %s", out)
	}
	if p := rbdMirrorProcesses(t, r.be.stateDir); len(p) > 0 {
		t.Errorf("rbd-mirror still runs after the teardown: %v", p)
	}
	f.thaw(t)

	checkStandaloneCLI(t, dst, keepName)
	if got := exportDigest(t, dst, keepName); got != kept {
		t.Fatalf("the kept copy changed once the source came back (torn down): %s, was %s", got, kept)
	}
	for image, kind := range map[string]string{keepName: "volume", goneName: "copy", "": "pairing"} {
		if l, ok, err := readLeftover(t.Context(), r.dstIO, env.ID, image); err != nil || !ok || l.Kind != kind {
			t.Errorf("leftover record %q = %+v, %v, %v; want kind %s", image, l, ok, err, kind)
		}
	}
}

// timed runs a call under lostCallTimeout and fails on an error.
func timed(t *testing.T, what string, f func(context.Context) (sdk.CleanupReport, error)) (sdk.CleanupReport, time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), lostCallTimeout)
	defer cancel()
	begin := time.Now()
	rep, err := f(ctx)
	took := time.Since(begin).Round(100 * time.Millisecond)
	if err != nil {
		t.Fatalf("%s with the source frozen: %v (after %v)", what, err, took)
	}
	return rep, took
}

// writeImage writes data at the start of a source image.
func writeImage(t *testing.T, r *labRig, name string, data []byte) {
	t.Helper()
	img, err := rbd.OpenImage(r.srcIO, name, rbd.NoSnapshot)
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	if _, err := img.WriteAt(data, 0); err != nil {
		t.Fatal(err)
	}
}

// rbdCLI runs the rbd CLI against a lab site as its admin.
func rbdCLI(t *testing.T, s labSite, args ...string) string {
	t.Helper()
	out, err := exec.Command("rbd", append([]string{"--cluster", s.Name, "-c", s.Conf, "--keyring", s.AdminKeyring, "-n", "client.admin"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("rbd %s on %s: %v: %s", strings.Join(args, " "), s.Name, err, out)
	}
	return string(out)
}

// checkStandaloneCLI checks with the rbd CLI that an image exists with
// mirroring disabled.
func checkStandaloneCLI(t *testing.T, s labSite, image string) {
	t.Helper()
	var info struct {
		Mirroring *struct {
			State string `json:"state"`
		} `json:"mirroring"`
	}
	out := rbdCLI(t, s, "info", "--format", "json", s.Pool+"/"+image)
	if err := json.Unmarshal([]byte(out), &info); err != nil {
		t.Fatalf("rbd info %s: %v: %s", image, err, out)
	}
	if info.Mirroring != nil && info.Mirroring.State != "disabled" {
		t.Errorf("%s/%s on %s: mirroring %s, want a standalone image", s.Pool, image, s.Name, info.Mirroring.State)
	}
}

// rbdMirrorProcesses lists the rbd-mirror processes run from stateDir.
func rbdMirrorProcesses(t *testing.T, stateDir string) []string {
	t.Helper()
	var out []string
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		cmd, err := os.ReadFile(filepath.Join(d, "cmdline"))
		if err == nil && strings.Contains(string(cmd), "rbd-mirror") && strings.Contains(string(cmd), stateDir) {
			out = append(out, filepath.Base(d)+": "+strings.ReplaceAll(string(cmd), "\x00", " "))
		}
	}
	return out
}

// observeReturn waits for the environment's fresh rbd-mirror to try the
// source image (global id gid) still mirrored while its copy was kept:
// finding no local image of gid (the kept copy has no mirror entry since
// the stop), it tries to create one under the source image's name, which
// the kept copy holds, fails ("start failed: (17) File exists" in its
// log), keeps the replayer stopped and tries again every 30 s. That
// failed attempt is the event after which the kept copy is checked.
func observeReturn(t *testing.T, r *labRig, env sdk.Environment, gid, image string) {
	t.Helper()
	logs, _ := filepath.Glob(filepath.Join(r.be.stateDir, "log", env.ID+".*-client.admin.log"))
	if len(logs) != 1 {
		t.Fatalf("rbd-mirror's log of environment %s: found %v", env.ID, logs)
	}
	var line string
	waitFor(t, "rbd-mirror's attempt at the kept copy's source image", 90*time.Second, func() bool {
		data, _ := os.ReadFile(logs[0])
		for _, l := range strings.Split(string(data), "\n") {
			if strings.Contains(l, gid+"]") && strings.Contains(l, "start failed") {
				line = l
				return true
			}
		}
		return false
	})
	t.Logf("rbd-mirror once the source is back: %s", line)
	if !strings.Contains(line, "File exists") {
		t.Errorf("rbd-mirror's attempt failed otherwise than on the kept copy's name: %s", line)
	}
	img, err := rbd.OpenImageReadOnly(r.dstIO, image, rbd.NoSnapshot)
	if err != nil {
		t.Fatal(err)
	}
	id, err := img.GetId()
	img.Close()
	if err != nil {
		t.Fatal(err)
	}
	if mirroringKey(t, r, "image_"+id) {
		t.Errorf("the kept copy %s (id %s) has a mirror entry again", image, id)
	}
}

// mirroringKey says whether the target pool's mirroring directory
// (the rbd_mirroring object's omap, cls_rbd's layout) holds key.
func mirroringKey(t *testing.T, r *labRig, key string) bool {
	t.Helper()
	vals, err := r.dstIO.GetOmapValues("rbd_mirroring", "", key, 1)
	if err != nil {
		t.Fatalf("read rbd_mirroring: %v", err)
	}
	_, ok := vals[key]
	return ok
}

// mirrorGlobalID is a mirrored source image's global id.
func mirrorGlobalID(t *testing.T, r *labRig, name string) string {
	t.Helper()
	img, err := rbd.OpenImageReadOnly(r.srcIO, name, rbd.NoSnapshot)
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	mi, err := img.GetMirrorImageInfo()
	if err != nil {
		t.Fatal(err)
	}
	return mi.GlobalID
}
