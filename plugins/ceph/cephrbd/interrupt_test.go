package cephrbd

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ceph/go-ceph/rados"
	"github.com/ceph/go-ceph/rbd"

	"github.com/cdmdr/mirror/plugins/sdk"
	"github.com/cdmdr/mirror/plugins/sdk/plugintest"
)

// interruptImageSize: the first copy of an image this size takes seconds
// on the lab, long enough to interrupt it midway.
const interruptImageSize = 256 << 20

// The same two interruptions (during the first copy, and after it with
// writes and a new recovery point meanwhile) in both modes, by a crash
// of the target's rbd-mirror (frozen, then SIGKILL) and by a cut of its
// link to the source cluster. Replication resumes where it was, with the
// same replica: in journal mode the image sync from its sync point and
// the replay from the commit position, in snapshot mode the mirror
// snapshot's copy from its last copied object.
func TestInterruptionKillJournal(t *testing.T)  { testInterruption(t, modeJournal, false) }
func TestInterruptionKillSnapshot(t *testing.T) { testInterruption(t, modeSnapshot, false) }
func TestInterruptionCutJournal(t *testing.T)   { testInterruption(t, modeJournal, true) }
func TestInterruptionCutSnapshot(t *testing.T)  { testInterruption(t, modeSnapshot, true) }

// sourceLinkRate is the rate of the source-to-rbd-mirror link: about
// 24 MiB/s, so the first copy of interruptImageSize takes about 11 s and
// is caught midway whatever the machine's load.
const sourceLinkRate = "200mbit"

// interrupter interrupts the target side's replication.
type interrupter interface {
	// begin interrupts it; end ends the interruption.
	begin(t *testing.T)
	end(t *testing.T)
	// stalled waits for the event that shows the interruption at work
	// (n: how strongly), and fails the test after timeout.
	stalled(t *testing.T, n int, timeout time.Duration)
}

// crash freezes the environment's rbd-mirror (SIGSTOP: it copies
// nothing more, so the bytes read next are final) and ends by killing it
// (SIGKILL): the supervisor starts a new one, which must resume.
type crash struct {
	r   *labRig
	env string
	pid int
}

func (c *crash) begin(t *testing.T) {
	t.Helper()
	c.pid = rbdMirrorPid(t, c.r, c.env)
	if err := syscall.Kill(c.pid, syscall.SIGSTOP); err != nil {
		t.Fatalf("freeze rbd-mirror %d: %v", c.pid, err)
	}
}

func (c *crash) end(t *testing.T) {
	t.Helper()
	if err := syscall.Kill(c.pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill rbd-mirror %d: %v", c.pid, err)
	}
}

// stalled: a frozen process is stalled at once.
func (c *crash) stalled(*testing.T, int, time.Duration) {}

func rbdMirrorPid(t *testing.T, r *labRig, envID string) int {
	t.Helper()
	data, err := os.ReadFile(r.be.pidPath(envID))
	if err != nil {
		t.Fatalf("rbd-mirror's pid file: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 {
		t.Fatalf("rbd-mirror's pid file holds %q", data)
	}
	return pid
}

// cutLink cuts and restores the link between the target's rbd-mirror
// and the source cluster.
type cutLink struct{ c *linkCut }

func (l cutLink) begin(t *testing.T) { l.c.cut() }
func (l cutLink) end(t *testing.T)   { l.c.restore() }
func (l cutLink) stalled(t *testing.T, n int, timeout time.Duration) {
	t.Helper()
	waitForFast(t, fmt.Sprintf("rbd-mirror's traffic to the source stalled (TCP backoff %d)", n), timeout, func() bool { return l.c.stalled(n) })
}

func testInterruption(t *testing.T, mode string, cut bool) {
	l := needLab(t)
	lc := newLinkCut(t, l, sourceLinkRate) // before the rig starts rbd-mirror
	r := newRig(t, mode)
	ctx := t.Context()
	env := r.env(t)
	uuid := plugintest.NewUUID()
	name := "volume-" + uuid
	vol := sdk.Volume{Environment: env, ClusterID: 5, VolumeID: 9, VolumeUUID: uuid}
	src, dstSite := l.Sites[0], l.Sites[1]
	createFilled(t, r.srcIO, name, interruptImageSize)
	t.Cleanup(func() {
		for _, io := range []*rados.IOContext{r.srcIO, r.dstIO} {
			removeImageForTest(io, name)
		}
	})
	p0 := takePoint(t, r, vol, 1)
	r.prepareEnvironments(t, env)
	r.destroyAtEnd(t, vol)
	osdB := siteConn(t, dstSite)
	base := targetWrites(t, osdB)
	if err := r.be.StartVolume(ctx, vol); err != nil {
		t.Fatalf("StartVolume: %v", err)
	}
	if err := r.be.AddSnapshot(ctx, p0); err != nil {
		t.Fatalf("AddSnapshot: %v", err)
	}
	var in interrupter = &crash{r: r, env: env.ID}
	if cut {
		in = cutLink{lc}
	}
	// The cross-site traffic does go through the namespace.
	waitForFast(t, "rbd-mirror connected to the source from its namespace", time.Minute, func() bool { return len(lc.conns(lc.ipA)) > 0 })

	// During the first copy.
	var firstID string
	waitForFast(t, "a third of the first copy on the target", 2*time.Minute, func() bool {
		dst, err := inspect(ctx, r.dstIO, name, false)
		if err != nil || !dst.exists || targetWrites(t, osdB)-base < interruptImageSize/3 {
			return false
		}
		firstID = dst.id
		return true
	})
	in.begin(t)
	atStop := targetWrites(t, osdB) - base
	if atStop > interruptImageSize*9/10 {
		t.Fatalf("%d MiB of %d copied when interrupted: too late to interrupt the first copy", atStop>>20, interruptImageSize>>20)
	}
	if cut {
		in.stalled(t, 2, time.Minute)
		before := targetWrites(t, osdB)
		in.stalled(t, 4, time.Minute)
		if moved := targetWrites(t, osdB) - before; moved > 1<<20 {
			t.Fatalf("%d KiB written on the target with the link cut: the cut does not hold", moved>>10)
		}
		atStop = targetWrites(t, osdB) - base
	}
	// Site A serves its own clients meanwhile. In journal mode an idle
	// source image's exclusive lock is rbd-mirror's (it took it to create
	// its sync point there): the write waits until librbd breaks that
	// lock, blocklisting rbd-mirror's client on the source.
	wrote := time.Now()
	writeBlocks(t, r.srcIO, name, "during!!")
	t.Logf("a write on the source during the interruption took %v", time.Since(wrote).Round(100*time.Millisecond))
	if st, err := r.be.VolumeStatus(ctx, vol); err != nil || st.State == sdk.ReplicationReplaying {
		t.Fatalf("VolumeStatus with the first copy interrupted = %+v, %v; want it still copying", st, err)
	}
	restored := time.Now()
	in.end(t)
	waitFor(t, "the first copy complete after the interruption", 3*time.Minute, func() bool {
		st, err := r.be.VolumeStatus(ctx, vol)
		return err == nil && st.State == sdk.ReplicationReplaying
	})
	done := time.Since(restored)
	checkSameCopy(t, r, name, firstID, mode)
	total := targetWrites(t, osdB) - base
	recopied := total - interruptImageSize
	t.Logf("MEASURE %s first copy: interrupted at %d MiB of %d; done %v after the restore; %d MiB written on the target in all (%d MiB beyond the image)",
		t.Name(), atStop>>20, interruptImageSize>>20, done.Round(100*time.Millisecond), total>>20, recopied>>20)
	// A first copy started over writes again all that was copied before
	// the interruption; a resumed one only the object ranges in flight
	// (in journal mode, since the sync point recorded them: every second,
	// the plugin's rbd_mirror_sync_point_update_age). Except after a cut
	// in journal mode, where the sync point's update in flight when the
	// link went is lost with it: a sync cut seconds after its start may
	// start again from its first record, on the same image (checked
	// above), never twice the image.
	limit := atStop * 3 / 4
	if mode == modeJournal && cut {
		limit = interruptImageSize
	}
	if recopied >= limit {
		t.Fatalf("%d MiB written beyond the image's %d MiB, with %d MiB copied before the interruption: the first copy started over",
			recopied>>20, interruptImageSize>>20, atStop>>20)
	}
	waitPoint(t, r, p0, time.Minute)
	checkPoint(t, src, dstSite, name, p0, true)

	// After the first copy: interrupt, write, take a new point, restore.
	base = targetWrites(t, osdB)
	in.begin(t)
	writeBlocks(t, r.srcIO, name, "later!!!")
	p1 := takePoint(t, r, vol, 2)
	if err := r.be.AddSnapshot(ctx, p1); err != nil {
		t.Fatalf("AddSnapshot with the target side interrupted: %v", err)
	}
	checkPoint(t, src, dstSite, name, p0, false) // listed and clonable meanwhile
	in.stalled(t, 2, 90*time.Second)
	if st, err := r.be.SnapshotStatus(ctx, p1); err != nil || st.State == sdk.SnapshotReady {
		t.Fatalf("SnapshotStatus of a point taken with the target side interrupted = %+v, %v; want pending", st, err)
	}
	restored = time.Now()
	in.end(t)
	checkPoint(t, src, dstSite, name, p0, false) // and while it catches up
	// Until the new point is there, the volume may read as syncing,
	// never as a first copy starting over.
	waitForFast(t, "recovery point "+snapName(p1)+" ready", 3*time.Minute, func() bool {
		if st, err := r.be.VolumeStatus(ctx, vol); err == nil && (st.State == sdk.ReplicationFailed || st.State == sdk.ReplicationSyncing && st.Progress < 100) {
			t.Fatalf("VolumeStatus after the first copy and an interruption = %+v: the first copy reads as starting over", st)
		}
		st, err := r.be.SnapshotStatus(ctx, p1)
		return err == nil && st.State == sdk.SnapshotReady
	})
	done = time.Since(restored)
	checkSameCopy(t, r, name, firstID, mode)
	written := targetWrites(t, osdB) - base
	t.Logf("MEASURE %s after the first copy: caught up (new point ready) %v after the restore; %d KiB written on the target",
		t.Name(), done.Round(100*time.Millisecond), written>>10)
	if written > interruptImageSize/4 {
		t.Fatalf("%d MiB written on the target to catch up three 4 KiB writes: a resync", written>>20)
	}
	checkPoint(t, src, dstSite, name, p1, true)
	checkPoint(t, src, dstSite, name, p0, true)
}

// createFilled creates an image of size with every 4 MiB block written.
func createFilled(t *testing.T, io *rados.IOContext, name string, size int64) {
	t.Helper()
	if err := rbd.CreateImage(io, name, uint64(size), rbd.NewRbdImageOptions()); err != nil {
		t.Fatalf("create %s: %v", name, err)
	}
	img, err := rbd.OpenImage(io, name, rbd.NoSnapshot)
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	block := bytes.Repeat([]byte("mirror!!"), (4<<20)/8)
	for off := int64(0); off < size; off += int64(len(block)) {
		if _, err := img.WriteAt(block, off); err != nil {
			t.Fatalf("write %s at %d: %v", name, off, err)
		}
	}
}

// writeBlocks writes 4 KiB of pattern at the start, middle and end of
// the source image.
func writeBlocks(t *testing.T, io *rados.IOContext, name, pattern string) {
	t.Helper()
	img, err := rbd.OpenImage(io, name, rbd.NoSnapshot)
	if err != nil {
		t.Fatalf("open the source: %v", err)
	}
	defer img.Close()
	block := bytes.Repeat([]byte(pattern), 4096/len(pattern))
	for _, off := range []int64{0, interruptImageSize / 2, interruptImageSize - 4096} {
		if _, err := img.WriteAt(block, off); err != nil {
			t.Fatalf("write the source at %d: %v", off, err)
		}
	}
}

// takePoint creates a recovery point's snapshot on the source, as the
// volume service would before AddSnapshot.
func takePoint(t *testing.T, r *labRig, vol sdk.Volume, id uint64) sdk.Snapshot {
	t.Helper()
	s := sdk.Snapshot{Volume: vol, SnapshotID: id, SnapshotUUID: plugintest.NewUUID(), SnapshotName: "point"}
	img, err := rbd.OpenImage(r.srcIO, imageName(vol), rbd.NoSnapshot)
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	if _, err := img.CreateSnapshot(snapName(s)); err != nil {
		t.Fatalf("create %s: %v", snapName(s), err)
	}
	return s
}

func waitPoint(t *testing.T, r *labRig, s sdk.Snapshot, timeout time.Duration) {
	t.Helper()
	waitForFast(t, "recovery point "+snapName(s)+" ready", timeout, func() bool {
		st, err := r.be.SnapshotStatus(t.Context(), s)
		return err == nil && st.State == sdk.SnapshotReady
	})
}

// checkPoint checks with the rbd CLI that the target lists the recovery
// point and that it can be cloned there; with data, that it holds the
// source's data.
func checkPoint(t *testing.T, src, dst labSite, image string, s sdk.Snapshot, data bool) {
	t.Helper()
	if out := rbdCLI(t, dst, "snap", "ls", dst.Pool+"/"+image); !strings.Contains(out, snapName(s)) {
		t.Fatalf("rbd snap ls on the target does not list %s:\n%s", snapName(s), out)
	}
	clone := dst.Pool + "/clone-" + plugintest.NewUUID()
	rbdCLI(t, dst, "clone", "--rbd-default-clone-format", "1", dst.Pool+"/"+image+"@"+snapName(s), clone)
	rbdCLI(t, dst, "rm", "--no-progress", clone)
	if data {
		spec := "/" + image + "@" + snapName(s)
		if a, b := rbdSum(t, src, src.Pool+spec), rbdSum(t, dst, dst.Pool+spec); a != b {
			t.Fatalf("recovery point %s: sha256 %s on the target, %s on the source; %s", snapName(s), b, a, diffExports(t, src, dst, spec))
		}
	}
}

// checkSameCopy: the target copy is still image id (no re-creation), and
// in journal mode it carries no sync point (no new image sync).
func checkSameCopy(t *testing.T, r *labRig, name, id, mode string) {
	t.Helper()
	dst, err := inspect(t.Context(), r.dstIO, name, false)
	if err != nil || !dst.exists || dst.id != id {
		t.Fatalf("the target copy is image %q (exists %v, %v), was %q: re-created, a full resync", dst.id, dst.exists, err, id)
	}
	if mode == modeJournal && hasSyncPoint(dst.snaps) {
		t.Fatal("the target copy carries a sync point again: a new image sync")
	}
}

// siteConn connects to a lab site as its admin.
func siteConn(t *testing.T, s labSite) *rados.Conn {
	t.Helper()
	conn, err := rados.NewConnWithClusterAndUser(s.Name, "client.admin")
	if err != nil {
		t.Fatal(err)
	}
	if err := conn.ReadConfigFile(s.Conf); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetConfigOption("keyring", s.AdminKeyring)
	_ = conn.SetConfigOption("admin_socket", "")
	if err := conn.Connect(); err != nil {
		t.Fatalf("connect to %s: %v", s.Name, err)
	}
	t.Cleanup(conn.Shutdown)
	return conn
}

// targetWrites is the bytes clients have written to the site's OSD
// (osd.0's op_w_in_bytes): on the target, what rbd-mirror copied plus a
// little metadata.
func targetWrites(t *testing.T, conn *rados.Conn) int64 {
	t.Helper()
	out, _, err := conn.OsdCommand(0, [][]byte{[]byte(`{"prefix": "perf dump"}`)})
	if err != nil {
		t.Fatalf("perf dump of osd.0: %v", err)
	}
	var d struct {
		OSD struct {
			WriteBytes int64 `json:"op_w_in_bytes"`
		} `json:"osd"`
	}
	if err := json.Unmarshal(out, &d); err != nil {
		t.Fatalf("perf dump of osd.0: %v", err)
	}
	return d.OSD.WriteBytes
}

// diffExports says where an image's exports differ between the sites, by
// 4 KiB block, and what the target holds there.
func diffExports(t *testing.T, src, dst labSite, spec string) string {
	t.Helper()
	export := func(s labSite) []byte {
		out, err := exec.Command("rbd", "--cluster", s.Name, "-c", s.Conf, "--keyring", s.AdminKeyring, "-n", "client.admin",
			"export", "--no-progress", s.Pool+spec, "-").Output()
		if err != nil {
			t.Fatalf("rbd export %s on %s: %v", spec, s.Name, err)
		}
		return out
	}
	a, b := export(src), export(dst)
	if len(a) != len(b) {
		return fmt.Sprintf("sizes %d and %d", len(a), len(b))
	}
	var diffs []string
	n := 0
	for off := 0; off < len(a); off += 4096 {
		if !bytes.Equal(a[off:off+4096], b[off:off+4096]) {
			n++
			if len(diffs) < 8 {
				diffs = append(diffs, fmt.Sprintf("%d MiB+%d KiB: source %q target %q", off>>20, off&(1<<20-1)>>10, a[off:off+8], b[off:off+8]))
			}
		}
	}
	return fmt.Sprintf("%d blocks of 4 KiB differ: %s", n, strings.Join(diffs, "; "))
}
