package cephrbd

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"syscall"
	"time"

	"github.com/ceph/go-ceph/rbd"

	"github.com/cdmdr/mirror/plugins/sdk"
)

// Pacing of verifyKept's loop, and how long it tries when its caller set
// no deadline.
const (
	verifyFirstWait = time.Second
	verifyMaxWait   = 2 * time.Second
	verifyFallback  = 30 * time.Second
)

// StopVolume implements sdk.Backend: once the first copy is complete,
// force-promote the target copy, disable mirroring on both sides, and
// verify the copy is a plain writable image. Before that it answers
// ErrInProgress and lets the copy go on: a stop never keeps a partial
// copy. The target is reached first; the source gets reachTimeout, and
// without it a complete copy is kept on the target alone
// (stopWithoutSource).
func (b *Backend) StopVolume(ctx context.Context, vol sdk.Volume) (_ sdk.CleanupReport, err error) {
	defer func() { err = explainDenied(err, vol.Environment, false) }()
	v, src, srcErr, err := b.openVolSides(ctx, vol)
	if err != nil {
		return sdk.CleanupReport{}, err
	}
	defer v.close()
	if ship, err := b.shipEnv(ctx, vol, v); err != nil || ship {
		if err != nil {
			return sdk.CleanupReport{}, err
		}
		return b.stopShip(ctx, vol, v, srcErr)
	}
	if srcErr != nil {
		return b.stopWithoutSource(ctx, vol, v, srcErr)
	}
	if err := b.stopVolume(ctx, vol, v, src); err != nil {
		return sdk.CleanupReport{}, err
	}
	// The source was reached and its mirroring is disabled: what an
	// earlier stop without it recorded is done.
	return sdk.CleanupReport{}, clearLeftover(ctx, v.dstIO, vol.Environment.ID, v.name)
}

func (b *Backend) stopVolume(ctx context.Context, vol sdk.Volume, v *volConns, src imageInfo) error {
	dst, err := inspect(ctx, v.dstIO, v.name, false)
	if err != nil {
		return fmt.Errorf("read image %s/%s on storage %s: %w", v.dst.m.Pool, v.name, v.dst.key(), err)
	}
	v.globalID = src.mirror.GlobalID
	kept, err := keptByStop(ctx, v.dstIO, vol.Environment.ID, v.name)
	if err != nil {
		return err
	}
	// A copy an earlier stop kept without the source is complete: only
	// the source's mirroring is left to end.
	if src.mirrored() && !kept {
		if err := b.awaitFirstCopy(ctx, vol, v, src, dst); err != nil {
			return err
		}
	}
	if dst.following() {
		if err := b.promoteCopy(ctx, vol, v, dst); err != nil {
			return err
		}
	}
	if err := b.disableBothSides(ctx, v, src, dst); err != nil {
		return err
	}
	if err := setPaused(ctx, v.dstIO, vol.Environment.ID, v.name, false, v.spec); err != nil {
		return err
	}
	if dst.exists {
		// The kept copy is the user's volume: no pause's hold on it.
		if _, _, err := holdCopy(ctx, v.dstIO, v.name, false); err != nil {
			return err
		}
		if err := verifyKept(ctx, v); err != nil {
			return fmt.Errorf("the kept copy %s on storage %s is not a standalone writable image: %w", v.spec, v.dst.key(), err)
		}
	}
	return nil
}

// awaitFirstCopy returns nil once the first copy is complete, else the
// ErrInProgress of waitForCopy.
func (b *Backend) awaitFirstCopy(ctx context.Context, vol sdk.Volume, v *volConns, src, dst imageInfo) error {
	cs, err := b.firstCopy(ctx, vol, v, src, dst)
	if err != nil {
		return err
	}
	if !cs.done {
		return b.waitForCopy(ctx, vol, v, cs.missing)
	}
	return nil
}

// promoteCopy lets rbd-mirror release the copy, then force-promotes it.
func (b *Backend) promoteCopy(ctx context.Context, vol sdk.Volume, v *volConns, dst imageInfo) error {
	if asoks, err := b.localAsoks(vol.Environment, v.dst); err == nil {
		_ = tellAll(ctx, asoks, "rbd mirror stop "+v.spec)
	}
	err := withImage(ctx, v.dstIO, v.name, func(img *rbd.Image) error { return img.MirrorPromote(true) })
	if isErrno(err, syscall.EINVAL) && dst.mode == rbd.ImageMirrorModeSnapshot {
		// librbd promotes to the last complete mirror snapshot and
		// refuses when there is none yet.
		return b.waitForCopy(ctx, vol, v, "it holds no complete mirror snapshot yet")
	}
	if err != nil {
		return fmt.Errorf("promote %s on storage %s: %w", v.spec, v.dst.key(), err)
	}
	b.log.Info("target copy promoted", "env", vol.Environment.ID, "image", v.name)
	return nil
}

// disableBothSides disables mirroring on the source (its schedule
// removed first), then on the copy as it is now.
func (b *Backend) disableBothSides(ctx context.Context, v *volConns, src, dst imageInfo) error {
	if src.mirrored() {
		b.removeSchedule(ctx, v, src)
		if err := withImage(ctx, v.srcIO, v.name, func(img *rbd.Image) error { return img.MirrorDisable(false) }); err != nil {
			return fmt.Errorf("disable mirroring of %s/%s on storage %s: %w", v.src.m.Pool, v.name, v.src.key(), err)
		}
	}
	if !dst.exists {
		return nil
	}
	dst, err := inspect(ctx, v.dstIO, v.name, false)
	if err != nil {
		return err
	}
	if dst.exists && dst.mirror.State != rbd.MirrorImageDisabled {
		if err := withImage(ctx, v.dstIO, v.name, func(img *rbd.Image) error { return img.MirrorDisable(false) }); err != nil {
			return fmt.Errorf("disable mirroring of %s on storage %s (mirroring %s, primary %v): %w",
				v.spec, v.dst.key(), dst.mirror.State, dst.mirror.Primary, err)
		}
	}
	return nil
}

// waitForCopy answers a stop that came before the first copy was
// complete: the stop supersedes a pause, so replay goes on, and the
// daemon asks again later.
func (b *Backend) waitForCopy(ctx context.Context, vol sdk.Volume, v *volConns, missing string) error {
	if err := b.resume(ctx, vol, v, false); err != nil {
		return err
	}
	return fmt.Errorf("the copy %s on storage %s is not complete (%s): the stop keeps it once it is; stop_and_delete drops it instead: %w",
		v.spec, v.dst.key(), missing, sdk.ErrInProgress)
}

// verifyKept checks the kept copy is a plain image we can write:
// mirroring disabled, no snapshot of rbd-mirror's left, and its exclusive
// lock ours to take. rbd-mirror may hold that lock for a few seconds after
// a stop (librbd answers EROFS or EBUSY meanwhile), so it looks again
// for as long as ctx allows.
func verifyKept(ctx context.Context, v *volConns) error {
	loop, cancel := retryContext(ctx, verifyFallback)
	defer cancel()
	wait := newBackoff(verifyFirstWait, verifyMaxWait)
	for {
		err := withImage(loop, v.dstIO, v.name, checkStandalone)
		if err == nil || !(isErrno(err, syscall.EROFS) || isErrno(err, syscall.EBUSY)) {
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

// checkStandalone checks an open kept copy: mirroring disabled, its
// rbd-mirror snapshots removed, its exclusive lock free to take.
func checkStandalone(img *rbd.Image) error {
	mi, err := img.GetMirrorImageInfo()
	if err != nil {
		return err
	}
	if mi.State != rbd.MirrorImageDisabled {
		return fmt.Errorf("mirroring is still %s", mi.State)
	}
	if err := removeMirrorSnapshots(img); err != nil {
		return err
	}
	if err := img.LockAcquire(rbd.LockModeExclusive); err != nil {
		if isErrno(err, syscall.EINVAL) {
			return nil // no exclusive-lock feature: no one can hold it
		}
		return fmt.Errorf("take its exclusive lock: %w", err)
	}
	return img.LockRelease()
}

// removeMirrorSnapshots removes what rbd-mirror left on a kept copy: the
// sync point of a journal-mode image sync, and mirror snapshots (which
// disabling mirroring normally removes itself).
func removeMirrorSnapshots(img *rbd.Image) error {
	snaps, err := img.GetSnapshotNames()
	if err != nil {
		return err
	}
	for _, s := range snaps {
		if !strings.HasPrefix(s.Name, syncPointPrefix) && !strings.HasPrefix(s.Name, mirrorSnapPrefix) {
			continue
		}
		sn := img.GetSnapshot(s.Name)
		if p, _ := sn.IsProtected(); p {
			_ = sn.Unprotect()
		}
		if err := sn.Remove(); err != nil && !errors.Is(err, rbd.ErrNotFound) {
			return fmt.Errorf("remove rbd-mirror's snapshot %s: %w", s.Name, err)
		}
	}
	return nil
}
