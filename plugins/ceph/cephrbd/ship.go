package cephrbd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ceph/go-ceph/rbd"

	"github.com/cdmdr/mirror/plugins/sdk"
)

// The ship engine replicates one image from a source pool to a target
// pool of another cluster by snapshot diffs, driven by the plugin (what
// `rbd export-diff | import-diff` does), where rbd-mirror cannot serve:
// one source pool feeding several target clusters, several sources into
// one target pool. ShipStep runs one step; what it keeps on the storage
// is in ship_state.go.

// ShipResult says what one step did.
type ShipResult struct {
	// Point is the complete point the step made (on both sides).
	Point ShipPoint
	// Base is the point the diff was taken from; zero for a full copy.
	Base ShipPoint
	// Created: the step created the target image.
	Created bool
	// Size is the image's size at Point.
	Size uint64
	// Written is the bytes of data written to the target; Zeroed the
	// bytes discarded there (regions the source zeroed or discarded, or
	// the old content of a target a full copy starts over on).
	Written, Zeroed uint64
	// Refreshed is the bytes copied again because the target's head got
	// them since Base: a torn step's writes, or user snapshots shipped
	// since (ShipUserSnapshots); counted in Written or Zeroed too. Zero
	// after a clean step with no user snapshot shipped in between.
	Refreshed uint64
	// CopyTook is the time spent on the extents (diffs, reads, writes,
	// flush); the rest of a step is snapshot and metadata operations,
	// each a round of the clusters' monitors.
	CopyTook time.Duration
	// Removed are the points the step removed: torn attempts' and older
	// ones on the source, the oldest beyond shipTargetKeep on the target.
	Removed []string
	// Warnings are points it could not prune (a protected snapshot, one
	// a kept copy was cloned from, say); the next step tries again.
	Warnings []string
}

const (
	// shipWindow is how much of the image one diff query covers: the
	// extents of one window are listed, then copied, then the full copy's
	// progress note is updated.
	shipWindow = 256 << 20
	// shipChunk caps one read+write (one object of the default order).
	shipChunk = 4 << 20
	// shipWorkers copy chunks in parallel: librbd serves each in one
	// round trip, so a few in flight keep both clusters busy.
	shipWorkers = 4
	// shipFeatures are the target image's: exclusive-lock fences the
	// writers (see ShipStep), object-map and fast-diff keep `rbd du` and
	// the next diff cheap.
	shipFeatures = rbd.FeatureLayering | rbd.FeatureExclusiveLock | rbd.FeatureObjectMap |
		rbd.FeatureFastDiff | rbd.FeatureDeepFlatten
)

// shipAfterChunk, when set (by tests), is called after each data chunk
// the step wrote to the target, with the bytes written so far.
var shipAfterChunk func(written uint64)

// ShipStep ships image from src to the image of the same name in dst:
// one step to a new complete point.
//
//  1. It opens the target image, creating and marking it if missing, and
//     refuses (ErrPrecondition) one without the engine's mark for this
//     very source: it never writes an image it did not create.
//  2. It takes the target's exclusive lock for the whole step: a second
//     step into the same image, from this host or another, gets
//     ErrRetryable instead of interleaving its writes. The lock is
//     librbd's: the lock of a holder that died is broken (and the holder
//     blocklisted) by the next step once its watch is gone.
//  3. Base: the newest target point the source still has. Every other
//     source point of this target is removed: older ones and those of
//     torn attempts.
//  4. It makes the source snapshot of the new point, sizes the target
//     like it, writes the diff base→point (the whole allocated image
//     without a base), copies again what a torn step left in the
//     target's head (see refresh), flushes, and only then makes the
//     target snapshot of the same name: a target point always holds its
//     whole diff.
//  5. It prunes: the source keeps the new point, the target the newest
//     shipTargetKeep. Snapshots of other names are never touched.
//
// A cancelled ctx stops it at the next chunk (a call in flight ends
// within the connection's op timeouts); the target's points are intact
// and the next step resumes from the newest. src and dst must stay open
// until it returns.
func ShipStep(ctx context.Context, src, dst ShipSide, image string) (ShipResult, error) {
	var res ShipResult
	origin, err := originOf(src, image)
	if err != nil {
		return res, err
	}
	tag, err := shipTag(dst)
	if err != nil {
		return res, err
	}
	srcSpec, dstSpec := imageSpec(src, image), imageSpec(dst, image)
	if err := ctx.Err(); err != nil {
		return res, err
	}

	sImg, err := rbd.OpenImage(src.IO, image, rbd.NoSnapshot)
	if err != nil {
		return res, fmt.Errorf("open the source %s: %w", srcSpec, err)
	}
	defer sImg.Close()
	info, err := sImg.Stat()
	if err != nil {
		return res, fmt.Errorf("stat the source %s: %w", srcSpec, err)
	}

	tImg, created, err := openShipTarget(dst, image, origin, info.Size, uint64(info.Order))
	if err != nil {
		return res, err
	}
	defer tImg.Close()
	res.Created = created
	if err := lockShipTarget(tImg, dstSpec); err != nil {
		return res, err
	}

	sSnaps, err := sImg.GetSnapshotNames()
	if err != nil {
		return res, fmt.Errorf("list the snapshots of the source %s: %w", srcSpec, err)
	}
	tSnaps, err := tImg.GetSnapshotNames()
	if err != nil {
		return res, fmt.Errorf("list the snapshots of the target %s: %w", dstSpec, err)
	}
	sPts, tPts := shipPoints(sSnaps, tag), shipPoints(tSnaps, tag)
	onSource := map[string]bool{}
	var seq uint64
	for _, p := range sPts {
		onSource[p.Name] = true
		seq = max(seq, p.Seq)
	}
	for _, p := range tPts {
		seq = max(seq, p.Seq)
		if onSource[p.Name] {
			res.Base = p
		}
	}
	// The source keeps only the base. Any other point there is older (a
	// step that ended before pruning) or a torn attempt's, not on the
	// target. A torn attempt's point is not reused: a fresh one is the
	// newer recovery point, and its diff from the base covers whatever
	// the torn attempt wrote (see below).
	for _, p := range sPts {
		if p.Name == res.Base.Name {
			continue
		}
		if err := removeSnap(sImg, p.Name); err != nil {
			return res, fmt.Errorf("remove the leftover point %s of the source %s: %w", p.Name, srcSpec, err)
		}
		res.Removed = append(res.Removed, srcSpec+"@"+p.Name)
	}
	if err := ctx.Err(); err != nil {
		return res, err
	}

	res.Point = ShipPoint{Seq: seq + 1, Taken: time.Now().UTC().Truncate(time.Millisecond)}
	res.Point.Name = shipSnapName(tag, res.Point.Seq, res.Point.Taken)
	if _, err := sImg.CreateSnapshot(res.Point.Name); err != nil {
		return res, fmt.Errorf("make the point %s on the source %s: %w", res.Point.Name, srcSpec, err)
	}
	at, err := rbd.OpenImageReadOnly(src.IO, image, res.Point.Name)
	if err != nil {
		return res, fmt.Errorf("open the source %s at %s: %w", srcSpec, res.Point.Name, err)
	}
	defer at.Close()
	if res.Size, err = at.GetSize(); err != nil {
		return res, fmt.Errorf("size of the source %s at %s: %w", srcSpec, res.Point.Name, err)
	}
	if size, err := tImg.GetSize(); err != nil {
		return res, fmt.Errorf("size of the target %s: %w", dstSpec, err)
	} else if size != res.Size {
		if err := tImg.Resize(res.Size); err != nil {
			return res, fmt.Errorf("resize the target %s to %d bytes: %w", dstSpec, res.Size, err)
		}
	}

	c := &shipCopy{ctx: ctx, from: at, to: tImg, size: res.Size}
	if res.Base.IsZero() {
		// A full copy. On a target that is not new (a torn first copy, or
		// a source that lost every common point) the head holds old data
		// the source may not have: zero it all first, since only the
		// source's allocated extents are written.
		if !created {
			if err := c.zeroTarget(); err != nil {
				return res, fmt.Errorf("clear the target %s for a full copy: %w", dstSpec, err)
			}
		}
		c.progress = res.Point.Name
	}
	copyStart := time.Now()
	var dirty []shipExtent
	if !res.Base.IsZero() {
		// What a torn attempt wrote into the target's head is not always
		// in the source's diff base→point: an object the source created
		// after the base and deleted again before the point (the torn
		// attempt's own point gone with it) leaves no trace there, yet
		// the torn attempt may have copied it. The target's own diff
		// base→head, taken before this step writes, has every such write
		// (only the engine writes the target); those extents are copied
		// again from the point after the diff (zeroes as discards). The
		// list is empty after a clean step; user snapshots shipped since
		// the base (ShipUserSnapshots) are in it too, and copied again.
		if dirty, err = diffExtents(tImg, res.Base.Name, 0, res.Size, rbd.EnableWholeObject); err != nil {
			return res, fmt.Errorf("diff the target %s from %s: %w", dstSpec, res.Base.Name, err)
		}
	}
	if err := c.run(res.Base.Name); err != nil {
		return res, fmt.Errorf("ship %s to %s: %w", srcSpec+"@"+res.Point.Name, dstSpec, err)
	}
	if err := c.refresh(dirty); err != nil {
		return res, fmt.Errorf("undo a torn step on %s: %w", dstSpec, err)
	}
	res.Written, res.Zeroed, res.Refreshed = c.written.Load(), c.zeroed.Load(), c.refreshed.Load()
	if err := tImg.Flush(); err != nil {
		return res, fmt.Errorf("flush the target %s: %w", dstSpec, err)
	}
	res.CopyTook = time.Since(copyStart)
	if err := ctx.Err(); err != nil {
		return res, err
	}
	if _, err := tImg.CreateSnapshot(res.Point.Name); err != nil {
		return res, fmt.Errorf("make the point %s on the target %s: %w", res.Point.Name, dstSpec, err)
	}
	if c.progress != "" {
		_ = tImg.RemoveMetadata(shipProgressKey) // ShipStatus ignores a note of a complete point
	}

	// Prune, both sides at once (each removal is a round of the cluster's
	// monitors). The point is complete whatever happens here; what fails
	// is tried again by the next step.
	var wg sync.WaitGroup
	var srcRemoved, srcWarn []string
	if !res.Base.IsZero() {
		wg.Go(func() {
			if err := removeSnap(sImg, res.Base.Name); err != nil {
				srcWarn = append(srcWarn, fmt.Sprintf("%s@%s: %v", srcSpec, res.Base.Name, err))
			} else {
				srcRemoved = append(srcRemoved, srcSpec+"@"+res.Base.Name)
			}
		})
	}
	tPts = append(tPts, res.Point)
	for _, p := range tPts[:max(0, len(tPts)-shipTargetKeep)] {
		if err := removeSnap(tImg, p.Name); err != nil {
			res.Warnings = append(res.Warnings, fmt.Sprintf("%s@%s: %v", dstSpec, p.Name, err))
		} else {
			res.Removed = append(res.Removed, dstSpec+"@"+p.Name)
		}
	}
	wg.Wait()
	res.Removed = append(res.Removed, srcRemoved...)
	res.Warnings = append(res.Warnings, srcWarn...)
	return res, nil
}

// openShipTarget opens the target image read-write, creating it (with
// the source's size and object size) when it does not exist, and checks
// its mark.
func openShipTarget(dst ShipSide, image string, origin shipOrigin, size, order uint64) (*rbd.Image, bool, error) {
	spec := imageSpec(dst, image)
	created := false
	img, err := rbd.OpenImage(dst.IO, image, rbd.NoSnapshot)
	if shipNotFound(err) {
		if err := createShipTarget(dst, image, origin, size, order); err != nil {
			return nil, false, err
		}
		created = true
		img, err = rbd.OpenImage(dst.IO, image, rbd.NoSnapshot)
	}
	if err != nil {
		return nil, false, fmt.Errorf("open the target %s: %w", spec, err)
	}
	mark, ok, err := readMark(img)
	if err != nil || !ok {
		img.Close()
		return nil, false, notOurs(dst, image, err)
	}
	if mark != origin {
		img.Close()
		return nil, false, fmt.Errorf("the target image %s is the ship copy of %s, not of %s: refusing to write it: %w",
			spec, mark, origin, sdk.ErrPrecondition)
	}
	return img, created, nil
}

// notOurs is the error for a target image without the engine's mark (or
// whose mark cannot be read).
func notOurs(dst ShipSide, image string, err error) error {
	spec := imageSpec(dst, image)
	if err != nil {
		return fmt.Errorf("the target image %s: %w", spec, err)
	}
	return fmt.Errorf("the target image %s exists and was not made by the ship engine (no %s metadata): refusing to write it: %w",
		spec, shipMarkKey, sdk.ErrPrecondition)
}

// createShipTarget creates the target image under a temporary name,
// marks it, then renames it: an image under the real name is always
// marked. A temporary image a torn creation left is removed first: the
// name is the engine's own, and one that holds data (snapshots) or
// another origin's mark is refused instead.
func createShipTarget(dst ShipSide, image string, origin shipOrigin, size, order uint64) error {
	tmp := shipCreatingPrefix + image
	tmpSpec := imageSpec(dst, tmp)
	if old, err := rbd.OpenImage(dst.IO, tmp, rbd.NoSnapshot); err == nil {
		mark, ok, _ := readMark(old)
		snaps, err := old.GetSnapshotNames()
		old.Close()
		if err != nil || len(snaps) > 0 || (ok && mark != origin) {
			return fmt.Errorf("the image %s is in the way of creating the target: remove it if no one uses it: %w",
				tmpSpec, sdk.ErrPrecondition)
		}
		if err := rbd.RemoveImage(dst.IO, tmp); err != nil {
			return fmt.Errorf("remove %s, left by a torn creation: %w", tmpSpec, err)
		}
	}
	opts := rbd.NewRbdImageOptions()
	defer opts.Destroy()
	if err := opts.SetUint64(rbd.ImageOptionOrder, order); err != nil {
		return err
	}
	if err := opts.SetUint64(rbd.ImageOptionFeatures, shipFeatures); err != nil {
		return err
	}
	if err := rbd.CreateImage(dst.IO, tmp, size, opts); err != nil {
		if isErrno(err, syscall.EEXIST) {
			return fmt.Errorf("create the target as %s: another step creates it: %w", tmpSpec, sdk.ErrRetryable)
		}
		return fmt.Errorf("create the target as %s: %w", tmpSpec, err)
	}
	mark, err := json.Marshal(origin)
	if err != nil {
		return err
	}
	img, err := rbd.OpenImage(dst.IO, tmp, rbd.NoSnapshot)
	if err != nil {
		return fmt.Errorf("open the new target %s: %w", tmpSpec, err)
	}
	err = img.SetMetadata(shipMarkKey, string(mark))
	if err == nil {
		// Discards must zero the partial objects too: a zeroed extent is
		// shipped as a discard, and librbd skips a partial one by default.
		err = img.SetMetadata("conf_rbd_skip_partial_discard", "false")
	}
	img.Close()
	if err != nil {
		return fmt.Errorf("mark the new target %s: %w", tmpSpec, err)
	}
	if err := rbd.GetImage(dst.IO, tmp).Rename(image); err != nil {
		if isErrno(err, syscall.EEXIST) {
			_ = rbd.RemoveImage(dst.IO, tmp)
			return fmt.Errorf("name the target %s: another step created it: %w", imageSpec(dst, image), sdk.ErrRetryable)
		}
		return fmt.Errorf("rename %s to %s: %w", tmpSpec, image, err)
	}
	return nil
}

// lockShipTarget takes the target's exclusive lock for the step. librbd's
// lock_acquire switches the handle to a policy that refuses to hand the
// lock over, so a second step (another handle: host) gets EROFS and its
// writes are refused while this one holds it.
func lockShipTarget(img *rbd.Image, spec string) error {
	err := img.LockAcquire(rbd.LockModeExclusive)
	if err == nil {
		return nil
	}
	if isErrno(err, syscall.EROFS) || isErrno(err, syscall.EBUSY) || isErrno(err, syscall.EAGAIN) {
		owners, _ := img.LockGetOwners()
		who := ""
		for _, o := range owners {
			who += " " + o.Owner
		}
		return fmt.Errorf("the target %s is locked by another ship step (owner%s): %w: %w", spec, who, err, sdk.ErrRetryable)
	}
	return fmt.Errorf("take the exclusive lock of the target %s: %w", spec, err)
}

// removeSnap removes a snapshot; one already gone is fine.
func removeSnap(img *rbd.Image, name string) error {
	err := img.GetSnapshot(name).Remove()
	if shipNotFound(err) {
		return nil
	}
	return err
}

// shipCopy copies the extents of one diff from an image at a snapshot
// (from) to the target's head (to).
type shipCopy struct {
	ctx      context.Context
	from, to *rbd.Image
	size     uint64
	// progress, for a full copy, is the point whose progress note the
	// target carries.
	progress                   string
	written, zeroed, refreshed atomic.Uint64
}

// shipExtent is one extent of a diff: data to copy, or zeroes.
type shipExtent struct {
	off, len uint64
	data     bool
	// refresh: copy from the source's point what a torn step wrote on
	// the target; zeroes are discarded, not written.
	refresh bool
}

// run copies the diff from the snapshot base ("" for all allocated
// extents) to from's snapshot, one window at a time.
func (c *shipCopy) run(base string) error {
	for off := uint64(0); off < c.size; off += shipWindow {
		if c.progress != "" {
			note := fmt.Sprintf("%s %d %d", c.progress, off, c.size)
			if err := c.to.SetMetadata(shipProgressKey, note); err != nil {
				return fmt.Errorf("note the progress: %w", err)
			}
		}
		exts, err := diffExtents(c.from, base, off, min(shipWindow, c.size-off), rbd.DisableWholeObject)
		if err != nil {
			return fmt.Errorf("diff %d+%d: %w", off, min(shipWindow, c.size-off), err)
		}
		if err := c.apply(exts); err != nil {
			return err
		}
	}
	return nil
}

// refresh copies again, from the point, the extents a torn step wrote
// on the target: after the diff, so that no two workers write one extent
// at once.
func (c *shipCopy) refresh(dirty []shipExtent) error {
	for i := range dirty {
		dirty[i].data, dirty[i].refresh = true, true
	}
	return c.apply(dirty)
}

// zeroTarget discards every allocated extent of the target's head.
func (c *shipCopy) zeroTarget() error {
	exts, err := diffExtents(c.to, "", 0, c.size, rbd.EnableWholeObject)
	if err != nil {
		return err
	}
	for i := range exts {
		exts[i].data = false
	}
	return c.apply(exts)
}

// diffExtents lists the extents of img (at its snapshot) that differ
// from base within off+length, cut into chunks of at most shipChunk.
// Within an object the extents are exact, so a 1 MiB change ships 1 MiB.
func diffExtents(img *rbd.Image, base string, off, length uint64, whole rbd.DiffWholeObject) ([]shipExtent, error) {
	var exts []shipExtent
	err := img.DiffIterate(rbd.DiffIterateConfig{
		SnapName: base, Offset: off, Length: length,
		IncludeParent: rbd.IncludeParent, WholeObject: whole,
		Callback: func(o, l uint64, exists int, _ interface{}) int {
			for l > 0 {
				n := min(l, shipChunk)
				exts = append(exts, shipExtent{off: o, len: n, data: exists != 0})
				o, l = o+n, l-n
			}
			return 0
		},
	})
	return exts, err
}

// apply copies exts with shipWorkers in parallel; it stops at the first
// error or when the step's context ends.
func (c *shipCopy) apply(exts []shipExtent) error {
	ctx, cancel := context.WithCancel(c.ctx)
	defer cancel()
	work := make(chan shipExtent)
	var (
		wg       sync.WaitGroup
		firstErr error
		once     sync.Once
	)
	for range shipWorkers {
		wg.Go(func() {
			buf := make([]byte, shipChunk)
			for e := range work {
				if ctx.Err() != nil {
					continue
				}
				if err := c.one(e, buf); err != nil {
					once.Do(func() { firstErr = err })
					cancel()
				}
			}
		})
	}
feed:
	for _, e := range exts {
		select {
		case work <- e:
		case <-ctx.Done():
			break feed
		}
	}
	close(work)
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	return c.ctx.Err()
}

// one copies or zeroes one extent.
func (c *shipCopy) one(e shipExtent, buf []byte) error {
	if !e.data {
		if _, err := c.to.Discard(e.off, e.len); err != nil {
			return fmt.Errorf("zero %d+%d on the target: %w", e.off, e.len, err)
		}
		c.zeroed.Add(e.len)
		return nil
	}
	b := buf[:e.len]
	n, err := c.from.ReadAt(b, int64(e.off))
	if err != nil {
		return fmt.Errorf("read %d+%d from the source: %w", e.off, e.len, err)
	}
	if uint64(n) != e.len {
		return fmt.Errorf("read %d+%d from the source: got %d bytes", e.off, e.len, n)
	}
	if e.refresh {
		c.refreshed.Add(e.len)
		if allZero(b) {
			if _, err := c.to.Discard(e.off, e.len); err != nil {
				return fmt.Errorf("zero %d+%d on the target: %w", e.off, e.len, err)
			}
			c.zeroed.Add(e.len)
			return nil
		}
	}
	if _, err := c.to.WriteAt(b, int64(e.off)); err != nil {
		return fmt.Errorf("write %d+%d to the target: %w", e.off, e.len, err)
	}
	w := c.written.Add(e.len)
	if shipAfterChunk != nil {
		shipAfterChunk(w)
	}
	return nil
}

func allZero(b []byte) bool {
	for _, x := range b {
		if x != 0 {
			return false
		}
	}
	return true
}

// ShipRollback brings the head of the target image back to its newest
// complete point (`rbd snap rollback`), so that a copy kept after the
// ship stops is consistent even if a step was torn. It needs only the
// target: the source may be lost. It takes the target's exclusive lock
// like a step (ErrRetryable while a step holds it).
func ShipRollback(ctx context.Context, dst ShipSide, image string) (ShipPoint, error) {
	tag, err := shipTag(dst)
	if err != nil {
		return ShipPoint{}, err
	}
	if err := ctx.Err(); err != nil {
		return ShipPoint{}, err
	}
	spec := imageSpec(dst, image)
	img, err := rbd.OpenImage(dst.IO, image, rbd.NoSnapshot)
	if err != nil {
		return ShipPoint{}, fmt.Errorf("open the target %s: %w", spec, err)
	}
	defer img.Close()
	if _, ok, err := readMark(img); err != nil || !ok {
		return ShipPoint{}, notOurs(dst, image, err)
	}
	if err := lockShipTarget(img, spec); err != nil {
		return ShipPoint{}, err
	}
	snaps, err := img.GetSnapshotNames()
	if err != nil {
		return ShipPoint{}, fmt.Errorf("list the snapshots of the target %s: %w", spec, err)
	}
	pts := shipPoints(snaps, tag)
	if len(pts) == 0 {
		return ShipPoint{}, fmt.Errorf("the target %s has no complete point to roll back to: %w", spec, sdk.ErrPrecondition)
	}
	last := pts[len(pts)-1]
	if err := img.GetSnapshot(last.Name).Rollback(); err != nil {
		return ShipPoint{}, fmt.Errorf("roll the target %s back to %s: %w", spec, last.Name, err)
	}
	return last, nil
}

// ShipForget removes the points of dst's chain from the source image:
// for when image is no longer shipped to dst (the target itself need not
// be reachable). No step for this pair may run meanwhile.
func ShipForget(ctx context.Context, src, dst ShipSide, image string) ([]string, error) {
	tag, err := shipTag(dst)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	spec := imageSpec(src, image)
	img, err := rbd.OpenImage(src.IO, image, rbd.NoSnapshot)
	if shipNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("open the source %s: %w", spec, err)
	}
	defer img.Close()
	snaps, err := img.GetSnapshotNames()
	if err != nil {
		return nil, fmt.Errorf("list the snapshots of the source %s: %w", spec, err)
	}
	var removed []string
	var errs []error
	for _, p := range shipPoints(snaps, tag) {
		if err := removeSnap(img, p.Name); err != nil {
			errs = append(errs, fmt.Errorf("remove %s@%s: %w", spec, p.Name, err))
			continue
		}
		removed = append(removed, spec+"@"+p.Name)
	}
	return removed, errors.Join(errs...)
}
