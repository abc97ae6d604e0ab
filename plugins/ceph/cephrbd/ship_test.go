package cephrbd

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
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

// The ship engine's tests, on the lab: site A is the source, site B the
// target. Each test uses its own small image.

type shipRig struct {
	a, b     labSite
	src, dst ShipSide
}

func newShipRig(t testing.TB) *shipRig {
	l := needLab(t)
	a, b := l.Sites[0], l.Sites[1]
	if a.FSID == "" || b.FSID == "" {
		t.Fatal("CEPH_LAB: lab.json names no fsid")
	}
	return &shipRig{a: a, b: b,
		src: ShipSide{IO: a.connect(t), FSID: a.FSID},
		dst: ShipSide{IO: b.connect(t), FSID: b.FSID}}
}

// image creates a source image of size bytes, removed on both sites when
// the test ends.
func (r *shipRig) image(t testing.TB, size uint64) string {
	t.Helper()
	name := "ship-" + plugintest.NewUUID()[:8]
	if err := rbd.CreateImage(r.src.IO, name, size, rbd.NewRbdImageOptions()); err != nil {
		t.Fatalf("create %s: %v", name, err)
	}
	t.Cleanup(func() {
		var wg sync.WaitGroup
		wg.Go(func() { removeImageForTest(r.src.IO, name) })
		removeImageForTest(r.dst.IO, name)
		removeImageForTest(r.dst.IO, shipCreatingPrefix+name)
		wg.Wait()
	})
	return name
}

// shipEdit runs f on an image's head.
func shipEdit(t testing.TB, io *rados.IOContext, name string, f func(*rbd.Image) error) {
	t.Helper()
	img, err := rbd.OpenImage(io, name, rbd.NoSnapshot)
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	if err := f(img); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
}

// shipWrite writes n random bytes at off.
func shipWrite(t testing.TB, io *rados.IOContext, name string, off, n int64) {
	t.Helper()
	data := make([]byte, n)
	_, _ = rand.Read(data)
	shipEdit(t, io, name, func(img *rbd.Image) error { _, err := img.WriteAt(data, off); return err })
}

func shipDiscard(t testing.TB, io *rados.IOContext, name string, off, n uint64) {
	t.Helper()
	shipEdit(t, io, name, func(img *rbd.Image) error { _, err := img.Discard(off, n); return err })
}

// snapsCLI lists an image's snapshot names with the rbd CLI.
func snapsCLI(t *testing.T, s labSite, name string) []string {
	t.Helper()
	var snaps []struct {
		Name string `json:"name"`
	}
	if err := json.Unmarshal([]byte(rbdCLI(t, s, "snap", "ls", "--format", "json", s.Pool+"/"+name)), &snaps); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, sn := range snaps {
		names = append(names, sn.Name)
	}
	return names
}

// shipSnapsCLI are the ship points among an image's snapshots, by the CLI.
func shipSnapsCLI(t *testing.T, s labSite, name string) []string {
	var pts []string
	for _, n := range snapsCLI(t, s, name) {
		if strings.HasPrefix(n, shipSnapPrefix) {
			pts = append(pts, n)
		}
	}
	return pts
}

// sameAt checks that both sites hold the same content at the point,
// read with go-ceph (cheap; the tests check with the CLI once each, see
// sameAtCLI).
func (r *shipRig) sameAt(t *testing.T, name string, p ShipPoint) {
	t.Helper()
	if a, b := digestAt(t, r.src.IO, name, p.Name), digestAt(t, r.dst.IO, name, p.Name); a != b {
		t.Fatalf("%s@%s: the target's content (sha256 %s) differs from the source's (%s)", name, p.Name, b, a)
	}
}

// sameAtCLI is sameAt with the rbd CLI's export.
func (r *shipRig) sameAtCLI(t *testing.T, name string, p ShipPoint) {
	t.Helper()
	spec := name + "@" + p.Name
	if a, b := exportDigest(t, r.a, spec), exportDigest(t, r.b, spec); a != b {
		t.Fatalf("%s (rbd export): the target's content (sha256 %s) differs from the source's (%s)", spec, b, a)
	}
}

// digestAt is the sha256 of an image's content at a snapshot ("" for its
// head), size included.
func digestAt(t testing.TB, io *rados.IOContext, name, snap string) string {
	t.Helper()
	img, err := rbd.OpenImageReadOnly(io, name, snap)
	if err != nil {
		t.Fatalf("open %s@%s: %v", name, snap, err)
	}
	defer img.Close()
	size, err := img.GetSize()
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	fmt.Fprintf(h, "%d\n", size)
	buf := make([]byte, 4<<20)
	for off := uint64(0); off < size; off += uint64(len(buf)) {
		b := buf[:min(uint64(len(buf)), size-off)]
		if _, err := img.ReadAt(b, int64(off)); err != nil {
			t.Fatalf("read %s@%s at %d: %v", name, snap, off, err)
		}
		h.Write(b)
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}

func mustShip(t *testing.T, r *shipRig, name string) ShipResult {
	t.Helper()
	res, err := ShipStep(t.Context(), r.src, r.dst, name)
	if err != nil {
		t.Fatalf("ShipStep %s: %v", name, err)
	}
	return res
}

// TestShipCopiesOnlyWhatChanged: the first step copies the allocated
// extents only (the target stays sparse), later ones the extents changed
// since the last point, a size change included; points are pruned to one
// on the source and shipTargetKeep on the target; user snapshots stay.
func TestShipCopiesOnlyWhatChanged(t *testing.T) {
	r := newShipRig(t)
	name := r.image(t, 64<<20)
	shipWrite(t, r.src.IO, name, 20<<20, 4<<20)
	shipEdit(t, r.src.IO, name, func(img *rbd.Image) error { _, err := img.CreateSnapshot("user-src"); return err })

	first := mustShip(t, r, name)
	if !first.Created || !first.Base.IsZero() || first.Written != 4<<20 || first.Zeroed != 0 {
		t.Fatalf("first step = %+v; want a created target, no base, 4 MiB written, nothing zeroed", first)
	}
	r.sameAt(t, name, first.Point)
	var du struct {
		Images []struct {
			Used uint64 `json:"used_size"`
		} `json:"images"`
	}
	if err := json.Unmarshal([]byte(rbdCLI(t, r.b, "du", "--format", "json", r.b.Pool+"/"+name)), &du); err != nil {
		t.Fatal(err)
	}
	used := uint64(0)
	for _, i := range du.Images {
		used += i.Used
	}
	if used < 4<<20 || used > 5<<20 {
		t.Errorf("rbd du of the 64 MiB target with 4 MiB written: %d bytes used, want ~4 MiB", used)
	}
	var info struct {
		Features []string `json:"features"`
		Order    int      `json:"order"`
		Size     uint64   `json:"size"`
	}
	if err := json.Unmarshal([]byte(rbdCLI(t, r.b, "info", "--format", "json", r.b.Pool+"/"+name)), &info); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(info.Features, "layering") || !slices.Contains(info.Features, "exclusive-lock") || info.Order != 22 || info.Size != 64<<20 {
		t.Errorf("rbd info of the target = %+v; want layering, exclusive-lock, order 22, 64 MiB", info)
	}
	if mark := rbdCLI(t, r.b, "image-meta", "get", r.b.Pool+"/"+name, shipMarkKey); !strings.Contains(mark, r.a.FSID) || !strings.Contains(mark, name) {
		t.Errorf("the target's mark %q names neither the source cluster nor the image", mark)
	}
	st, err := ShipStatus(t.Context(), r.dst, name)
	if err != nil || !st.FirstCopyDone() || st.Copying || !st.LastSyncTime().Equal(first.Point.Taken) {
		t.Errorf("ShipStatus = %+v, %v; want the first copy done at %v", st, err, first.Point.Taken)
	}
	shipEdit(t, r.dst.IO, name, func(img *rbd.Image) error { _, err := img.CreateSnapshot("user-dst"); return err })

	// 1 MiB written and one object discarded: 1 MiB ships, 4 MiB is zeroed.
	shipWrite(t, r.src.IO, name, 40<<20, 1<<20)
	shipDiscard(t, r.src.IO, name, 20<<20, 4<<20)
	second := mustShip(t, r, name)
	if second.Base != first.Point || second.Written != 1<<20 || second.Zeroed != 4<<20 {
		t.Fatalf("second step = %+v; want base %s, 1 MiB written, 4 MiB zeroed", second, first.Point.Name)
	}
	r.sameAt(t, name, second.Point)
	if pts := shipSnapsCLI(t, r.a, name); !slices.Equal(pts, []string{second.Point.Name}) {
		t.Errorf("the source's points: %v; want only the last one %s", pts, second.Point.Name)
	}

	// The source grows: the target follows.
	shipEdit(t, r.src.IO, name, func(img *rbd.Image) error { return img.Resize(80 << 20) })
	shipWrite(t, r.src.IO, name, 72<<20, 1<<20)
	third := mustShip(t, r, name)
	if third.Size != 80<<20 || third.Written != 1<<20 {
		t.Fatalf("third step = %+v; want 80 MiB, 1 MiB written", third)
	}
	r.sameAtCLI(t, name, third.Point)

	fourth := mustShip(t, r, name)
	if fourth.Written != 0 || fourth.Zeroed != 0 {
		t.Errorf("a step without changes wrote %d and zeroed %d bytes", fourth.Written, fourth.Zeroed)
	}
	want := []string{second.Point.Name, third.Point.Name, fourth.Point.Name}
	if pts := shipSnapsCLI(t, r.b, name); !slices.Equal(pts, want) {
		t.Errorf("the target's points: %v; want the last %d: %v", pts, shipTargetKeep, want)
	}
	if pts := shipSnapsCLI(t, r.a, name); !slices.Equal(pts, []string{fourth.Point.Name}) {
		t.Errorf("the source's points: %v; want only %s", pts, fourth.Point.Name)
	}
	if !slices.Contains(snapsCLI(t, r.a, name), "user-src") || !slices.Contains(snapsCLI(t, r.b, name), "user-dst") {
		t.Errorf("a user snapshot is gone: source %v, target %v", snapsCLI(t, r.a, name), snapsCLI(t, r.b, name))
	}

	// The source shrinks: the target follows.
	shipEdit(t, r.src.IO, name, func(img *rbd.Image) error { return img.Resize(48 << 20) })
	fifth := mustShip(t, r, name)
	if fifth.Size != 48<<20 {
		t.Fatalf("fifth step = %+v; want 48 MiB", fifth)
	}
	r.sameAt(t, name, fifth.Point)
}

// TestShipRefusesImagesItDidNotMake: a target image without the mark, or
// with another source's, is refused and left as it was.
func TestShipRefusesImagesItDidNotMake(t *testing.T) {
	r := newShipRig(t)
	name := r.image(t, 8<<20)
	shipWrite(t, r.src.IO, name, 0, 1<<20)
	if err := rbd.CreateImage(r.dst.IO, name, 8<<20, rbd.NewRbdImageOptions()); err != nil {
		t.Fatal(err)
	}
	shipWrite(t, r.dst.IO, name, 0, 1<<20)
	before := exportDigest(t, r.b, name)

	_, err := ShipStep(t.Context(), r.src, r.dst, name)
	if !errors.Is(err, sdk.ErrPrecondition) || !strings.Contains(err.Error(), r.b.Pool+"/"+name) {
		t.Fatalf("ShipStep into an unmarked image = %v; want ErrPrecondition naming %s/%s", err, r.b.Pool, name)
	}
	other, _ := json.Marshal(shipOrigin{FSID: r.a.FSID, Pool: r.a.Pool, Image: "another"})
	shipEdit(t, r.dst.IO, name, func(img *rbd.Image) error { return img.SetMetadata(shipMarkKey, string(other)) })
	_, err = ShipStep(t.Context(), r.src, r.dst, name)
	if !errors.Is(err, sdk.ErrPrecondition) || !strings.Contains(err.Error(), "another") {
		t.Fatalf("ShipStep into another source's copy = %v; want ErrPrecondition naming it", err)
	}
	if after := exportDigest(t, r.b, name); after != before || len(snapsCLI(t, r.b, name)) != 0 {
		t.Errorf("the refused image changed: sha256 %s -> %s, snapshots %v", before, after, snapsCLI(t, r.b, name))
	}
	if pts := shipSnapsCLI(t, r.a, name); len(pts) != 0 {
		t.Errorf("a refused step left points on the source: %v", pts)
	}
}

// TestShipFencesConcurrentSteps: while another host holds the target's
// lock a step is refused (retryable) and changes nothing; while a step
// runs, another host cannot take the lock.
func TestShipFencesConcurrentSteps(t *testing.T) {
	r := newShipRig(t)
	name := r.image(t, 8<<20)
	shipWrite(t, r.src.IO, name, 0, 1<<20)
	first := mustShip(t, r, name)

	other := r.b.connect(t) // another host's connection
	held, err := rbd.OpenImage(other, name, rbd.NoSnapshot)
	if err != nil {
		t.Fatal(err)
	}
	if err := held.LockAcquire(rbd.LockModeExclusive); err != nil {
		t.Fatal(err)
	}
	shipWrite(t, r.src.IO, name, 0, 1<<20)
	_, err = ShipStep(t.Context(), r.src, r.dst, name)
	if !errors.Is(err, sdk.ErrRetryable) {
		t.Fatalf("ShipStep while another host holds the lock = %v; want ErrRetryable", err)
	}
	if src, dst := shipSnapsCLI(t, r.a, name), shipSnapsCLI(t, r.b, name); !slices.Equal(src, []string{first.Point.Name}) || !slices.Equal(dst, src) {
		t.Errorf("a refused step changed the points: source %v, target %v", src, dst)
	}
	held.Close()

	// Now the other way: the step holds the lock while it writes.
	var lockErr error
	shipAfterChunk = func(uint64) {
		img, err := rbd.OpenImage(other, name, rbd.NoSnapshot)
		if err != nil {
			lockErr = err
			return
		}
		defer img.Close()
		lockErr = img.LockAcquire(rbd.LockModeExclusive)
	}
	t.Cleanup(func() { shipAfterChunk = nil })
	second := mustShip(t, r, name)
	shipAfterChunk = nil
	if lockErr == nil {
		t.Errorf("another host took the target's lock during a step")
	}
	r.sameAtCLI(t, name, second.Point)
}

// TestShipResumesAfterTornSteps: a step cut mid-transfer (here by its
// context) leaves the target's last point intact and usable; the next
// step resumes correctly, a full copy as well as an incremental one, and
// removes the torn attempt's source point; a rollback brings a torn head
// back to the last point.
func TestShipResumesAfterTornSteps(t *testing.T) {
	r := newShipRig(t)
	name := r.image(t, 32<<20)
	shipWrite(t, r.src.IO, name, 0, 12<<20)
	t.Cleanup(func() { shipAfterChunk = nil })
	torn := func() {
		t.Helper()
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		shipAfterChunk = func(uint64) { cancel() }
		_, err := ShipStep(ctx, r.src, r.dst, name)
		shipAfterChunk = nil
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("torn ShipStep = %v; want context.Canceled", err)
		}
	}

	// A torn first copy, then the source drops what the torn attempt may
	// have written: the full copy that resumes must clear it on the target.
	torn()
	st, err := ShipStatus(t.Context(), r.dst, name)
	if err != nil || st.FirstCopyDone() || !st.Copying || st.Total != 32<<20 {
		t.Fatalf("ShipStatus after a torn first copy = %+v, %v; want copying, of 32 MiB, not done", st, err)
	}
	shipDiscard(t, r.src.IO, name, 0, 12<<20)
	shipWrite(t, r.src.IO, name, 16<<20, 4<<20)
	full := mustShip(t, r, name)
	if full.Created || !full.Base.IsZero() {
		t.Fatalf("the step after a torn first copy = %+v; want a full copy onto the existing target", full)
	}
	r.sameAt(t, name, full.Point)
	if pts := shipSnapsCLI(t, r.a, name); !slices.Equal(pts, []string{full.Point.Name}) {
		t.Errorf("the source's points: %v; want only %s (the torn one removed)", pts, full.Point.Name)
	}

	// A torn incremental: the last point stays intact, readable and
	// clonable.
	shipWrite(t, r.src.IO, name, 0, 8<<20)
	torn()
	if pts := shipSnapsCLI(t, r.b, name); !slices.Equal(pts, []string{full.Point.Name}) {
		t.Fatalf("the target's points after a torn step: %v; want %s", pts, full.Point.Name)
	}
	r.sameAt(t, name, full.Point)
	clone := name + "-clone"
	shipEdit(t, r.dst.IO, name, func(img *rbd.Image) error { return img.GetSnapshot(full.Point.Name).Protect() })
	opts := rbd.NewRbdImageOptions()
	defer opts.Destroy()
	if err := rbd.CloneImage(r.dst.IO, name, full.Point.Name, r.dst.IO, clone, opts); err != nil {
		t.Fatalf("clone the last point: %v", err)
	}
	if c, p := exportDigest(t, r.b, clone), exportDigest(t, r.b, name+"@"+full.Point.Name); c != p {
		t.Errorf("the clone of the last point (sha256 %s) differs from it (%s)", c, p)
	}
	removeImageForTest(r.dst.IO, clone)
	shipEdit(t, r.dst.IO, name, func(img *rbd.Image) error { return img.GetSnapshot(full.Point.Name).Unprotect() })

	// The source goes back to the last point's content where the torn
	// attempt wrote: the diff from the base must still cover it.
	shipDiscard(t, r.src.IO, name, 0, 8<<20)
	resumed := mustShip(t, r, name)
	if resumed.Base != full.Point {
		t.Fatalf("the step after a torn one = %+v; want base %s", resumed, full.Point.Name)
	}
	r.sameAt(t, name, resumed.Point)
	if head, pt := digestAt(t, r.dst.IO, name, ""), digestAt(t, r.dst.IO, name, resumed.Point.Name); head != pt {
		t.Errorf("the target's head (sha256 %s) differs from its new point (%s): a torn write survived", head, pt)
	}
	if pts := shipSnapsCLI(t, r.a, name); !slices.Equal(pts, []string{resumed.Point.Name}) {
		t.Errorf("the source's points: %v; want only %s", pts, resumed.Point.Name)
	}

	// A rollback brings a torn head back to the last point.
	shipWrite(t, r.src.IO, name, 24<<20, 4<<20)
	torn()
	point := digestAt(t, r.dst.IO, name, resumed.Point.Name)
	if head := digestAt(t, r.dst.IO, name, ""); head == point {
		t.Fatal("the torn step wrote nothing into the target's head: the rollback test would prove nothing")
	}
	back, err := ShipRollback(t.Context(), r.dst, name)
	if err != nil || back != resumed.Point {
		t.Fatalf("ShipRollback = %+v, %v; want %s", back, err, resumed.Point.Name)
	}
	if head := digestAt(t, r.dst.IO, name, ""); head != point {
		t.Errorf("after the rollback the target's head (sha256 %s) differs from the last point (%s)", head, point)
	}
	mustShip(t, r, name)
	if pts := shipSnapsCLI(t, r.a, name); len(pts) != 1 {
		t.Errorf("the source's points: %v; want one", pts)
	}
}

// TestShipSurvivesTargetCut: the target cluster cuts the step's client
// off mid-transfer (blocklisted, as after a partition): the step fails,
// the target's last point stays intact, and a step from another client
// resumes from it (breaking the dead client's lock).
func TestShipSurvivesTargetCut(t *testing.T) {
	r := newShipRig(t)
	name := r.image(t, 16<<20)
	shipWrite(t, r.src.IO, name, 0, 4<<20)
	first := mustShip(t, r, name)
	shipWrite(t, r.src.IO, name, 0, 12<<20)

	cut, cutIO := shipConnect(t, r.b)
	admin, adminIO := shipConnect(t, r.b)
	var (
		once   sync.Once
		addr   string
		cutErr error
	)
	t.Cleanup(func() { shipAfterChunk = nil })
	shipAfterChunk = func(uint64) {
		once.Do(func() {
			img, err := rbd.OpenImageReadOnly(adminIO, name, rbd.NoSnapshot)
			if err != nil {
				cutErr = err
				return
			}
			ws, err := img.ListWatchers()
			img.Close()
			for _, w := range ws {
				if uint64(w.Id) == cut.GetInstanceID() {
					addr = w.Addr
				}
			}
			if addr == "" {
				cutErr = fmt.Errorf("no watcher of client %d among %+v (%v)", cut.GetInstanceID(), ws, err)
				return
			}
			cmd, _ := json.Marshal(map[string]string{"prefix": "osd blocklist", "blocklistop": "add", "addr": addr})
			_, _, cutErr = admin.MonCommand(cmd)
		})
	}
	t.Cleanup(func() {
		if addr != "" {
			cmd, _ := json.Marshal(map[string]string{"prefix": "osd blocklist", "blocklistop": "rm", "addr": addr})
			_, _, _ = admin.MonCommand(cmd)
		}
	})
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	begin := time.Now()
	_, err := ShipStep(ctx, r.src, ShipSide{IO: cutIO, FSID: r.dst.FSID}, name)
	shipAfterChunk = nil
	if cutErr != nil {
		t.Fatalf("cut the step's client off: %v", cutErr)
	}
	if err == nil {
		t.Fatal("the step succeeded although the target cut its client off")
	}
	t.Logf("the cut step failed after %v: %v", time.Since(begin).Round(time.Millisecond), err)
	if pts := shipSnapsCLI(t, r.b, name); !slices.Equal(pts, []string{first.Point.Name}) {
		t.Fatalf("the target's points after a cut step: %v; want %s", pts, first.Point.Name)
	}
	r.sameAt(t, name, first.Point)
	resumed := mustShip(t, r, name)
	if resumed.Base != first.Point {
		t.Fatalf("the step after the cut = %+v; want base %s", resumed, first.Point.Name)
	}
	r.sameAtCLI(t, name, resumed.Point)
	if head, pt := digestAt(t, r.dst.IO, name, ""), digestAt(t, r.dst.IO, name, resumed.Point.Name); head != pt {
		t.Errorf("the target's head (sha256 %s) differs from its new point (%s)", head, pt)
	}
}

// shipConnect opens its own connection to a lab site (a client of its
// own, as another host would have).
func shipConnect(t *testing.T, s labSite) (*rados.Conn, *rados.IOContext) {
	t.Helper()
	conn, err := rados.NewConnWithClusterAndUser(s.Name, "client.admin")
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range [][2]string{{"keyring", s.AdminKeyring}, {"rados_mon_op_timeout", "10"}, {"rados_osd_op_timeout", "10"}, {"client_mount_timeout", "10"}, {"admin_socket", ""}} {
		if err := conn.SetConfigOption(o[0], o[1]); err != nil {
			t.Fatal(err)
		}
	}
	if err := conn.ReadConfigFile(s.Conf); err != nil {
		t.Fatal(err)
	}
	if err := conn.Connect(); err != nil {
		t.Fatal(err)
	}
	io, err := conn.OpenIOContext(s.Pool)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { io.Destroy(); conn.Shutdown() })
	return conn, io
}

// BenchmarkShip: a first copy of a 64 MiB image with 16 MiB written, and
// an incremental of 1 MiB (docs/benchmarks.md).
//
//	CEPH_LAB=... go test -tags pacific -run '^$' -bench Ship -benchtime 10x ./cephrbd/
func BenchmarkShip(b *testing.B) {
	r := newShipRig(b)
	name := r.image(b, 64<<20)
	for off := int64(0); off < 64<<20; off += 16 << 20 {
		shipWrite(b, r.src.IO, name, off, 4<<20)
	}
	ship := func() ShipResult {
		res, err := ShipStep(b.Context(), r.src, r.dst, name)
		if err != nil {
			b.Fatal(err)
		}
		return res
	}
	b.Run("first-copy", func(b *testing.B) {
		var copyTook time.Duration
		b.SetBytes(16 << 20)
		for b.Loop() {
			b.StopTimer()
			if _, err := ShipForget(b.Context(), r.src, r.dst, name); err != nil {
				b.Fatal(err)
			}
			removeImageForTest(r.dst.IO, name)
			b.StartTimer()
			res := ship()
			if res.Written != 16<<20 {
				b.Fatalf("first copy wrote %d bytes", res.Written)
			}
			copyTook += res.CopyTook
		}
		b.ReportMetric(float64(copyTook.Milliseconds())/float64(b.N), "copy-ms/op")
	})
	b.Run("incremental-1MiB", func(b *testing.B) {
		var copyTook time.Duration
		b.SetBytes(1 << 20)
		ship()
		i := int64(0)
		for b.Loop() {
			b.StopTimer()
			shipWrite(b, r.src.IO, name, (i%16)<<20, 1<<20)
			i++
			b.StartTimer()
			res := ship()
			if res.Written != 1<<20 {
				b.Fatalf("incremental wrote %d bytes", res.Written)
			}
			copyTook += res.CopyTook
		}
		b.ReportMetric(float64(copyTook.Milliseconds())/float64(b.N), "copy-ms/op")
	})
}

// TestShipPointNames: a point's name carries its chain, order and time;
// another chain's points and user snapshots are not read as points.
func TestShipPointNames(t *testing.T) {
	taken := time.UnixMilli(1796068805124).UTC()
	name := shipSnapName("3117e938", 12, taken)
	snaps := []rbd.SnapInfo{{Name: "user"}, {Name: shipSnapName("3117e938", 9, taken)}, {Name: name},
		{Name: shipSnapName("aaaaaaaa", 13, taken)}, {Name: shipSnapPrefix + "3117e938.x.1"}}
	pts := shipPoints(snaps, "3117e938")
	if len(pts) != 2 || pts[1] != (ShipPoint{Name: name, Seq: 12, Taken: taken}) || pts[0].Seq != 9 {
		t.Fatalf("shipPoints = %+v; want points 9 and 12 of chain 3117e938 only", pts)
	}
}
