package cephrbd

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"time"

	"github.com/ceph/go-ceph/rbd"

	"github.com/cdmdr/mirror/plugins/sdk"
)

// Pacing of removeTarget's loop, and how long it tries when its caller
// set no deadline.
const (
	removeFirstWait = time.Second
	removeMaxWait   = 2 * time.Second
	removeFallback  = 60 * time.Second
)

// DeleteTarget implements sdk.Backend: mirroring disabled on the source,
// so rbd-mirror deletes the non-primary copy; a standalone copy is
// deleted here, and so is a recovery point kept from it (keptpoint.go).
func (b *Backend) DeleteTarget(ctx context.Context, vol sdk.Volume) (err error) {
	defer func() { err = explainDenied(err, vol.Environment, false) }()
	if ship, err := b.ifShip(ctx, vol, b.deleteTargetShip); ship {
		return err
	}
	v, err := b.openVol(ctx, vol)
	if err != nil {
		return err
	}
	defer v.close()
	src, err := inspect(ctx, v.srcIO, v.name, false)
	if err != nil {
		return err
	}
	if src.mirrored() {
		b.removeSchedule(ctx, v, src)
		// rbd-mirror deletes the non-primary copy.
		if err := withImage(ctx, v.srcIO, v.name, func(img *rbd.Image) error { return img.MirrorDisable(false) }); err != nil {
			return fmt.Errorf("disable mirroring of %s/%s on storage %s: %w", v.src.m.Pool, v.name, v.src.key(), err)
		}
	}
	if err := setPaused(ctx, v.dstIO, vol.Environment.ID, v.name, false, v.spec); err != nil {
		return err
	}
	if err := removeTarget(ctx, v); err != nil {
		return err
	}
	// A point kept from the replica before a resync goes with it.
	return dropKeptOf(ctx, v, vol.Environment.ID)
}

// removeTarget deletes a standalone target copy (snapshots included);
// a non-primary mirror copy is left to rbd-mirror.
func removeTarget(ctx context.Context, v *volConns) error {
	dst, err := inspect(ctx, v.dstIO, v.name, false)
	if err != nil || !dst.exists {
		return err
	}
	if dst.mirror.State == rbd.MirrorImageDisabling || dst.following() {
		return nil // a mirror copy: rbd-mirror deletes it
	}
	err = clearTarget(ctx, v, dst)
	if errors.Is(err, rbd.ErrNotFound) {
		return nil // gone meanwhile
	}
	if err != nil {
		return fmt.Errorf("delete %s on storage %s: %w", v.spec, v.dst.key(), err)
	}
	if err := do(ctx, func() error { return rbd.RemoveImage(v.dstIO, v.name) }); err != nil && !errors.Is(err, rbd.ErrNotFound) {
		return fmt.Errorf("delete %s on storage %s: %w", v.spec, v.dst.key(), err)
	}
	return nil
}

// clearTarget runs removeTargetSnapshots until it gets through: right
// after a stop, rbd-mirror's replayer may still hold the image's lock for
// a few seconds (librbd answers EROFS meanwhile). It tries for as long as
// ctx allows.
func clearTarget(ctx context.Context, v *volConns, dst imageInfo) error {
	loop, cancel := retryContext(ctx, removeFallback)
	defer cancel()
	wait := newBackoff(removeFirstWait, removeMaxWait)
	for {
		err := removeTargetSnapshots(loop, v, dst)
		if err == nil || !isErrno(err, syscall.EROFS) {
			return err
		}
		if wait.wait(loop) != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("%w (%v)", ctx.Err(), err)
			}
			return err
		}
	}
}

// removeTargetSnapshots disables mirroring on a standalone target and
// removes its snapshots, so the image itself can be removed.
func removeTargetSnapshots(ctx context.Context, v *volConns, dst imageInfo) error {
	return withImage(ctx, v.dstIO, v.name, func(img *rbd.Image) error {
		if dst.mirror.State != rbd.MirrorImageDisabled {
			if err := img.MirrorDisable(true); err != nil {
				return err
			}
		}
		snaps, err := img.GetSnapshotNames()
		if err != nil {
			return err
		}
		for _, s := range snaps {
			if err := removeSnapshot(img, s.Name); err != nil {
				return err
			}
		}
		return nil
	})
}

// removeSnapshot unprotects and removes one snapshot of a copy; clones
// of it refuse that with ErrPrecondition.
func removeSnapshot(img *rbd.Image, name string) error {
	sn := img.GetSnapshot(name)
	if p, _ := sn.IsProtected(); p {
		if err := sn.Unprotect(); err != nil {
			if isErrno(err, syscall.EBUSY) {
				return fmt.Errorf("snapshot %s has clones: %w", name, sdk.ErrPrecondition)
			}
			return fmt.Errorf("unprotect snapshot %s: %w", name, err)
		}
	}
	if err := sn.Remove(); err != nil {
		return fmt.Errorf("remove snapshot %s: %w", name, err)
	}
	return nil
}
