package cephrbd

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/ceph/go-ceph/rbd"

	"github.com/cdmdr/mirror/plugins/sdk"
)

// User snapshots on the ship path: the plugin's own snapshots of a
// source image (recovery points the DR manager asked for) are shipped to
// the target as snapshots of the same name, so that they exist there
// like rbd-mirror would have made them. How they fit the ship scheme is
// in ship_state.go's header comment.

// ShipUserSnapshots ships to dst, oldest first, the snapshots of the
// source image whose names begin with prefix and which the target lacks:
// each becomes a target snapshot of the same name holding exactly the
// source snapshot's content. Returns the names it shipped.
//
// Each is written into the target's head as the diff from its base (the
// newest snapshot, by source snapshot id, older than it that both sides
// have: a point of dst's chain or a snapshot of prefix shipped before),
// plus what the head got since that base (copied again from the
// snapshot, as ShipStep's refresh does); then flushed; only then is the
// target snapshot made. Without a base (the first copy is not done, or
// the snapshot is older than everything both sides still share) it is
// a full copy: the head is cleared and the snapshot's allocated extents
// written. A snapshot is thus never out of reach; the price of one
// without a base is a full copy (and the next ShipStep copies again what
// the head got since its base).
//
// A snapshot that fails is named in the error (a *ShipUserSnapshotError
// each, see ShipFailedUserSnapshots) and the others are still tried; a
// cancelled ctx stops it all; one deleted on the source meanwhile is
// skipped. Nothing is shipped into a target image without the engine's
// mark for this source (ErrPrecondition); the target's exclusive lock
// is held throughout (ErrRetryable while a step holds it). With no
// snapshot to ship it takes no lock and creates no target.
func ShipUserSnapshots(ctx context.Context, src, dst ShipSide, image, prefix string) ([]string, error) {
	if prefix == "" || strings.HasPrefix(shipSnapPrefix, prefix) || strings.HasPrefix(prefix, shipSnapPrefix) {
		return nil, fmt.Errorf("ship user snapshots: the prefix %q would take the engine's points", prefix)
	}
	origin, err := originOf(src, image)
	if err != nil {
		return nil, err
	}
	tag, err := shipTag(dst)
	if err != nil {
		return nil, err
	}
	srcSpec, dstSpec := imageSpec(src, image), imageSpec(dst, image)
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	sImg, err := rbd.OpenImageReadOnly(src.IO, image, rbd.NoSnapshot)
	if err != nil {
		return nil, fmt.Errorf("open the source %s: %w", srcSpec, err)
	}
	defer sImg.Close()
	sSnaps, err := sImg.GetSnapshotNames()
	if err != nil {
		return nil, fmt.Errorf("list the snapshots of the source %s: %w", srcSpec, err)
	}
	slices.SortFunc(sSnaps, func(a, b rbd.SnapInfo) int { return cmp.Compare(a.Id, b.Id) })
	var wanted []rbd.SnapInfo
	for _, s := range sSnaps {
		if strings.HasPrefix(s.Name, prefix) {
			wanted = append(wanted, s)
		}
	}
	if len(wanted) == 0 {
		return nil, nil
	}
	// A first look without the lock: most passes have nothing to ship.
	have, err := targetSnapNames(dst, image)
	if err != nil {
		return nil, err
	}
	if !slices.ContainsFunc(wanted, func(s rbd.SnapInfo) bool { return !have[s.Name] }) {
		return nil, nil
	}

	info, err := sImg.Stat()
	if err != nil {
		return nil, fmt.Errorf("stat the source %s: %w", srcSpec, err)
	}
	tImg, created, err := openShipTarget(dst, image, origin, info.Size, uint64(info.Order))
	if err != nil {
		return nil, err
	}
	defer tImg.Close()
	if err := lockShipTarget(tImg, dstSpec); err != nil {
		return nil, err
	}
	tSnaps, err := tImg.GetSnapshotNames()
	if err != nil {
		return nil, fmt.Errorf("list the snapshots of the target %s: %w", dstSpec, err)
	}
	have = map[string]bool{}
	for _, s := range tSnaps {
		have[s.Name] = true
	}
	// Bases: the snapshots both sides have whose target copy the engine
	// made (so holds the source's content), in source id order.
	var common []rbd.SnapInfo
	for _, s := range sSnaps {
		if _, ok := parseShipPoint(tag, s.Name); (ok || strings.HasPrefix(s.Name, prefix)) && have[s.Name] {
			common = append(common, s)
		}
	}

	var shipped []string
	var errs []error
	headClean := created // a new target's head holds nothing
	for _, s := range wanted {
		if have[s.Name] {
			continue
		}
		base := ""
		for _, c := range common {
			if c.Id < s.Id {
				base = c.Name
			}
		}
		err := shipUserSnapshot(ctx, src, tImg, image, s.Name, base, headClean)
		if err == nil {
			shipped = append(shipped, s.Name)
			have[s.Name] = true
			i, _ := slices.BinarySearchFunc(common, s.Id, func(c rbd.SnapInfo, id uint64) int { return cmp.Compare(c.Id, id) })
			common = slices.Insert(common, i, s)
			headClean = false
			continue
		}
		if cerr := ctx.Err(); cerr != nil {
			return shipped, errors.Join(append(errs, cerr)...)
		}
		if errors.Is(err, errSnapGone) {
			continue // deleted on the source meanwhile: nothing to ship
		}
		headClean = false // it may have written
		errs = append(errs, &ShipUserSnapshotError{Snapshot: s.Name,
			Err: fmt.Errorf("ship the snapshot %s to %s: %w", srcSpec+"@"+s.Name, dstSpec, err)})
	}
	return shipped, errors.Join(errs...)
}

// ShipUserSnapshotError is the failure of one snapshot in
// ShipUserSnapshots' error (an errors.Join of them): which one failed,
// and why.
type ShipUserSnapshotError struct {
	Snapshot string
	Err      error
}

func (e *ShipUserSnapshotError) Error() string { return e.Err.Error() }
func (e *ShipUserSnapshotError) Unwrap() error { return e.Err }

// ShipFailedUserSnapshots are the per-snapshot failures in an error of
// ShipUserSnapshots.
func ShipFailedUserSnapshots(err error) []*ShipUserSnapshotError {
	var out []*ShipUserSnapshotError
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			out = append(out, ShipFailedUserSnapshots(e)...)
		}
		return out
	}
	if e, ok := err.(*ShipUserSnapshotError); ok {
		out = append(out, e)
	}
	return out
}

var errSnapGone = errors.New("the snapshot is gone from the source")

// shipUserSnapshot writes the source's snapshot name into the target's
// head, from base ("" for a full copy), then makes the target snapshot.
// headClean: the head holds nothing yet (no clearing needed).
func shipUserSnapshot(ctx context.Context, src ShipSide, tImg *rbd.Image, image, name, base string, headClean bool) error {
	at, err := rbd.OpenImageReadOnly(src.IO, image, name)
	if shipNotFound(err) {
		return errSnapGone
	}
	if err != nil {
		return fmt.Errorf("open it on the source: %w", err)
	}
	defer at.Close()
	size, err := at.GetSize()
	if err != nil {
		return fmt.Errorf("its size: %w", err)
	}
	if cur, err := tImg.GetSize(); err != nil {
		return fmt.Errorf("size of the target: %w", err)
	} else if cur != size {
		if err := tImg.Resize(size); err != nil {
			return fmt.Errorf("resize the target to %d bytes: %w", size, err)
		}
	}
	c := &shipCopy{ctx: ctx, from: at, to: tImg, size: size}
	var dirty []shipExtent
	if base != "" {
		// The head is base plus whatever was shipped into it since (a
		// newer point, another snapshot, a torn attempt): only the engine
		// writes it, so the target's diff base→head lists it all.
		if dirty, err = diffExtents(tImg, base, 0, size, rbd.EnableWholeObject); err != nil {
			return fmt.Errorf("diff the target from %s: %w", base, err)
		}
	} else if !headClean {
		if err := c.zeroTarget(); err != nil {
			return fmt.Errorf("clear the target for a full copy: %w", err)
		}
	}
	if err := c.run(base); err != nil {
		return err
	}
	if err := c.refresh(dirty); err != nil {
		return fmt.Errorf("copy again what the target's head got since %s: %w", base, err)
	}
	if err := tImg.Flush(); err != nil {
		return fmt.Errorf("flush the target: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if _, err := tImg.CreateSnapshot(name); err != nil {
		return fmt.Errorf("make it on the target: %w", err)
	}
	return nil
}

// targetSnapNames are the snapshot names of the target image (none when
// it does not exist); an image without the engine's mark is refused.
func targetSnapNames(dst ShipSide, image string) (map[string]bool, error) {
	img, err := rbd.OpenImageReadOnly(dst.IO, image, rbd.NoSnapshot)
	if shipNotFound(err) {
		return map[string]bool{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("open the target %s: %w", imageSpec(dst, image), err)
	}
	defer img.Close()
	if _, ok, err := readMark(img); err != nil || !ok {
		return nil, notOurs(dst, image, err)
	}
	snaps, err := img.GetSnapshotNames()
	if err != nil {
		return nil, fmt.Errorf("list the snapshots of the target %s: %w", imageSpec(dst, image), err)
	}
	have := map[string]bool{}
	for _, s := range snaps {
		have[s.Name] = true
	}
	return have, nil
}

// ShipRemoveUserSnapshot removes snapshot name from the target image
// (unprotecting it if needed; refusing with ErrPrecondition, naming
// them, if it has clones); a missing image or snapshot is nil. The
// engine's own points are refused: ShipStep prunes them. It takes the
// target's exclusive lock like a step (ErrRetryable while one runs).
func ShipRemoveUserSnapshot(ctx context.Context, dst ShipSide, image, name string) error {
	spec := imageSpec(dst, image) + "@" + name
	if name == "" || strings.HasPrefix(name, shipSnapPrefix) {
		return fmt.Errorf("remove %s: not a user snapshot (the engine prunes its points itself)", spec)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	img, err := rbd.OpenImage(dst.IO, image, rbd.NoSnapshot)
	if shipNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("open the target %s: %w", imageSpec(dst, image), err)
	}
	defer img.Close()
	if _, ok, err := readMark(img); err != nil || !ok {
		return notOurs(dst, image, err)
	}
	snaps, err := img.GetSnapshotNames()
	if err != nil {
		return fmt.Errorf("list the snapshots of the target %s: %w", imageSpec(dst, image), err)
	}
	if !slices.ContainsFunc(snaps, func(s rbd.SnapInfo) bool { return s.Name == name }) {
		return nil
	}
	// Clones of it, protected or not (clone v2 needs no protection, and
	// removing a snapshot with such clones would only move it to the
	// trash).
	at, err := rbd.OpenImageReadOnly(dst.IO, image, name)
	if shipNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("open %s: %w", spec, err)
	}
	pools, children, err := at.ListChildren()
	at.Close()
	if err != nil {
		return fmt.Errorf("list the clones of %s: %w", spec, err)
	}
	if len(children) > 0 {
		var names []string
		for i, c := range children {
			names = append(names, pools[i]+"/"+c)
		}
		return fmt.Errorf("%s has clones (%s): remove or flatten them first: %w", spec, strings.Join(names, ", "), sdk.ErrPrecondition)
	}
	if err := lockShipTarget(img, imageSpec(dst, image)); err != nil {
		return err
	}
	snap := img.GetSnapshot(name)
	if prot, err := snap.IsProtected(); err != nil {
		if shipNotFound(err) {
			return nil
		}
		return fmt.Errorf("read whether %s is protected: %w", spec, err)
	} else if prot {
		if err := snap.Unprotect(); err != nil && !shipNotFound(err) {
			return fmt.Errorf("unprotect %s: %w", spec, err)
		}
	}
	if err := removeSnap(img, name); err != nil {
		return fmt.Errorf("remove %s: %w", spec, err)
	}
	return nil
}
