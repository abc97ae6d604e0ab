package cephrbd

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ceph/go-ceph/rados"
	"github.com/ceph/go-ceph/rbd"

	"github.com/cdmdr/mirror/plugins/sdk"
)

// The volume calls of a ship environment (marker.Path pathShip): the
// volume is a record in the target pool that the environment's ship loop
// (ship_loop.go) steps; no mirroring is enabled on its image.

// shipEnv says whether vol's environment is a ship environment, from its
// marker in the target pool.
func (b *Backend) shipEnv(ctx context.Context, vol sdk.Volume, v *volConns) (bool, error) {
	mk, ok, err := b.preparedMarker(ctx, v.dstIO, vol.Environment.ID)
	if err != nil {
		return false, denied(err, v.dst, false, roleTarget, "read the metadata of pool "+v.dst.m.Pool, "")
	}
	return ok && mk.ship(), nil
}

// startShip records the volume as shipped and wakes the loop. It refuses
// a source image that is mirror-enabled (its rbd-mirror target pulls it
// too) and a target name another image holds.
func (b *Backend) startShip(ctx context.Context, vol sdk.Volume, v *volConns) error {
	in, err := inspect(ctx, v.srcIO, v.name, false)
	if err != nil {
		return denied(fmt.Errorf("read image %s/%s on storage %s: %w", v.src.m.Pool, v.name, v.src.key(), err),
			v.src, false, roleSource, "read image "+v.src.m.Pool+"/"+v.name, "")
	}
	if err := v.checkSource(in); err != nil {
		return err
	}
	if in.mirror.State != rbd.MirrorImageDisabled {
		owner := "an rbd-mirror environment"
		if env, ok, _ := imageMarkByName(ctx, v.srcIO, v.name); ok {
			owner = "environment " + env
		}
		return fmt.Errorf("image %s/%s on storage %s is mirror-enabled, replicated through rbd-mirror by %s: its target pulls it, "+
			"so environment %s cannot ship it too (a volume replicates in one environment); stop it there first: %w",
			v.src.m.Pool, v.name, v.src.key(), owner, vol.Environment.ID, sdk.ErrPrecondition)
	}
	recorded, err := shipRecorded(ctx, v.dstIO, vol.Environment.ID, v.name)
	if err != nil {
		return err
	}
	if !recorded {
		dst, err := b.shipSide(ctx, v.dst, v.dstIO)
		if err != nil {
			return err
		}
		if _, err := ShipStatus(ctx, dst, v.name); err != nil {
			if errors.Is(err, sdk.ErrPrecondition) {
				return fmt.Errorf("%w; a copy a stop kept is a volume of its own: delete or rename it first", err)
			}
			return err
		}
		if err := b.checkRoom(ctx, v); err != nil {
			return err
		}
		if err := markImage(ctx, v.srcIO, v.name, vol.Environment.ID); err != nil {
			return denied(fmt.Errorf("mark image %s/%s on storage %s: %w", v.src.m.Pool, v.name, v.src.key(), err),
				v.src, false, roleSource, "set image metadata on "+v.src.m.Pool+"/"+v.name, "")
		}
		if err := setShipRecord(ctx, v.dstIO, vol.Environment.ID, v.name, &shipRecord{Volume: vol.VolumeID, Source: v.src.key()}); err != nil {
			return err
		}
		b.log.Info("volume shipped", "env", vol.Environment.ID, "image", v.name)
	}
	// Start resumes a paused volume.
	if err := setPaused(ctx, v.dstIO, vol.Environment.ID, v.name, false, v.spec); err != nil {
		return err
	}
	b.wakeShip(vol.Environment.ID)
	return nil
}

// imageMarkByName reads a source image's environment mark.
func imageMarkByName(ctx context.Context, io *rados.IOContext, name string) (string, bool, error) {
	type got struct {
		env string
		ok  bool
	}
	g, err := call(ctx, func() (got, error) {
		img, err := rbd.OpenImageReadOnly(io, name, rbd.NoSnapshot)
		if err != nil {
			return got{}, err
		}
		defer img.Close()
		v, err := img.GetMetadata(markMetaKey)
		if shipNotFound(err) {
			return got{}, nil
		}
		return got{v, err == nil}, err
	})
	return g.env, g.ok, err
}

// shipVolumeStatus reports a shipped volume from its target alone:
// paused, failed (the last step's error on this host), syncing during
// the first copy, replaying once the target holds a complete point.
func (b *Backend) shipVolumeStatus(ctx context.Context, vol sdk.Volume, v *volConns) (sdk.VolumeReplication, error) {
	var r sdk.VolumeReplication
	dst, err := b.shipSide(ctx, v.dst, v.dstIO)
	if err != nil {
		return r, err
	}
	st, err := ShipStatus(ctx, dst, v.name)
	if errors.Is(err, sdk.ErrPrecondition) {
		// A standalone copy (a stop kept it): absent, with a target.
		r.State, r.TargetExists = sdk.ReplicationAbsent, true
		return r, nil
	}
	if err != nil {
		return r, fmt.Errorf("read the ship state of %s on storage %s: %w", v.spec, v.dst.key(), err)
	}
	r.TargetExists = st.Exists
	recorded, err := shipRecorded(ctx, v.dstIO, vol.Environment.ID, v.name)
	if err != nil {
		return r, err
	}
	if !recorded {
		r.State = sdk.ReplicationAbsent
		return r, nil
	}
	if !st.Last.IsZero() {
		r.LastSyncTime = st.Last.Taken
	}
	paused, err := isPaused(ctx, v.dstIO, vol.Environment.ID, v.name)
	if err != nil {
		return r, err
	}
	if paused {
		r.State, r.Description = sdk.ReplicationPaused, "shipping paused"
		return r, nil
	}
	if stepErr := b.shipError(vol.Environment.ID, v.name); stepErr != nil && !errors.Is(stepErr, sdk.ErrRetryable) {
		r.State, r.Description = sdk.ReplicationFailed, "the last ship step failed: "+reason(stepErr)
		return r, nil
	}
	if !st.FirstCopyDone() {
		r.State = sdk.ReplicationSyncing
		r.Description = "first copy by the ship path under way"
		if st.Copying && st.Total > 0 {
			r.Progress = int(min(st.Done*100/st.Total, 99))
			r.Description = fmt.Sprintf("first copy by the ship path: %s of %s", sizeText(st.Done), sizeText(st.Total))
		}
		return r, nil
	}
	r.State = sdk.ReplicationReplaying
	r.Lag = max(time.Since(st.Last.Taken), 0).Truncate(time.Second).String()
	r.Description = "shipped by snapshot diffs; newest complete point " + st.Last.Name
	return r, nil
}

// pauseShip records the pause once no step of the image is under way.
func (b *Backend) pauseShip(ctx context.Context, vol sdk.Volume, v *volConns) error {
	if err := b.needShipped(ctx, vol, v); err != nil {
		return err
	}
	unlock, err := b.lockShip(ctx, vol.Environment.ID, v.name)
	if err != nil {
		return err
	}
	defer unlock()
	return setPaused(ctx, v.dstIO, vol.Environment.ID, v.name, true, v.spec)
}

// resumeShip removes the pause (and a failed step's error) and wakes the
// loop.
func (b *Backend) resumeShip(ctx context.Context, vol sdk.Volume, v *volConns) error {
	if err := b.needShipped(ctx, vol, v); err != nil {
		return err
	}
	if err := setPaused(ctx, v.dstIO, vol.Environment.ID, v.name, false, v.spec); err != nil {
		return err
	}
	// In a pool rbd-mirror fills too, its supervisors hold every paused
	// image's header (hold.go); harmless on a ship copy, but not kept.
	if _, _, err := holdCopy(ctx, v.dstIO, v.name, false); err != nil {
		return err
	}
	b.clearShipError(vol.Environment.ID, v.name)
	b.wakeShip(vol.Environment.ID)
	return nil
}

// needShipped is ErrNotFound unless the volume is shipped.
func (b *Backend) needShipped(ctx context.Context, vol sdk.Volume, v *volConns) error {
	ok, err := shipRecorded(ctx, v.dstIO, vol.Environment.ID, v.name)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("image %s/%s on storage %s is not replicated: %w", v.src.m.Pool, v.name, v.src.key(), sdk.ErrNotFound)
	}
	return nil
}

// stopShip keeps the target as a standalone volume: once the first copy
// is complete, a last step (with the source reachable and the volume not
// paused), the record removed, the target rolled back to its newest
// complete point and unmarked, the source's points forgotten. Before the
// first copy is complete it answers ErrInProgress (a pause gives way).
func (b *Backend) stopShip(ctx context.Context, vol sdk.Volume, v *volConns, srcErr error) (sdk.CleanupReport, error) {
	var rep sdk.CleanupReport
	envID := vol.Environment.ID
	dst, err := b.shipSide(ctx, v.dst, v.dstIO)
	if err != nil {
		return rep, err
	}
	recorded, err := shipRecorded(ctx, v.dstIO, envID, v.name)
	if err != nil {
		return rep, err
	}
	st, err := ShipStatus(ctx, dst, v.name)
	if errors.Is(err, sdk.ErrPrecondition) {
		st, err = ShipState{}, nil // standalone already: only records are left
	}
	if err != nil {
		return rep, err
	}
	if recorded && !st.FirstCopyDone() {
		if srcErr != nil {
			return rep, fmt.Errorf("the copy %s on storage %s is not complete and the source cannot be reached (%v): nothing to keep: %w",
				v.spec, v.dst.key(), srcErr, sdk.ErrPrecondition)
		}
		if err := setPaused(ctx, v.dstIO, envID, v.name, false, v.spec); err != nil {
			return rep, err
		}
		b.wakeShip(envID)
		missing := "no complete point yet"
		if st.Copying && st.Total > 0 {
			missing = fmt.Sprintf("%s of %s copied", sizeText(st.Done), sizeText(st.Total))
		}
		return rep, fmt.Errorf("the copy %s on storage %s is not complete (%s): the stop keeps it once it is; stop_and_delete drops it instead: %w",
			v.spec, v.dst.key(), missing, sdk.ErrInProgress)
	}
	unlock, err := b.lockShip(ctx, envID, v.name)
	if err != nil {
		return rep, err
	}
	defer unlock()
	var src ShipSide
	if srcErr == nil {
		if src, err = b.shipSide(ctx, v.src, v.srcIO); err != nil {
			return rep, err
		}
	}
	paused, err := isPaused(ctx, v.dstIO, envID, v.name)
	if err != nil {
		return rep, err
	}
	if recorded && srcErr == nil && !paused {
		// The last step: the kept copy is as new as the stop.
		if err := shipOneStep(ctx, src, dst, v.name); err != nil {
			if ctx.Err() != nil {
				return rep, ctx.Err()
			}
			b.log.Warn("the last ship step before the stop failed; the newest complete point is kept", "env", envID, "image", v.name, "err", err)
		}
	}
	// The record goes first: no round of the loop steps the image again.
	if err := setShipRecord(ctx, v.dstIO, envID, v.name, nil); err != nil {
		return rep, err
	}
	if err := setPaused(ctx, v.dstIO, envID, v.name, false, v.spec); err != nil {
		return rep, err
	}
	b.clearShipError(envID, v.name)
	if st.Exists {
		if err := b.makeStandalone(ctx, dst, v); err != nil {
			return rep, err
		}
		if err := verifyKept(ctx, v); err != nil {
			return rep, fmt.Errorf("the kept copy %s on storage %s is not a standalone writable image: %w", v.spec, v.dst.key(), err)
		}
	}
	if srcErr != nil {
		rep.Leftovers = append(rep.Leftovers, fmt.Sprintf("the ship points of %s/%s on storage %s (snapshots %s*) were not removed: "+
			"the source could not be reached (%v); remove them with `rbd snap rm` once it is back", v.src.m.Pool, v.name, v.src.key(), shipSnapPrefix, srcErr))
		return rep, nil
	}
	if _, err := ShipForget(ctx, src, dst, v.name); err != nil {
		rep.Leftovers = append(rep.Leftovers, fmt.Sprintf("ship points of %s/%s on storage %s: %v", v.src.m.Pool, v.name, v.src.key(), err))
	}
	return rep, nil
}

// makeStandalone rolls the shipped target back to its newest complete
// point and removes what makes it the engine's: its mark, its progress
// note and its points (user snapshots stay).
func (b *Backend) makeStandalone(ctx context.Context, dst ShipSide, v *volConns) error {
	if _, err := ShipRollback(ctx, dst, v.name); err != nil && !isNotOurs(err) {
		return fmt.Errorf("roll %s on storage %s back to its newest complete point: %w", v.spec, v.dst.key(), err)
	}
	tag, err := shipTag(dst)
	if err != nil {
		return err
	}
	if _, _, err := holdCopy(ctx, v.dstIO, v.name, false); err != nil {
		return err
	}
	return withImage(ctx, v.dstIO, v.name, func(img *rbd.Image) error {
		snaps, err := img.GetSnapshotNames()
		if err != nil {
			return err
		}
		for _, p := range shipPoints(snaps, tag) {
			if err := removeSnap(img, p.Name); err != nil {
				return fmt.Errorf("remove the ship point %s: %w", p.Name, err)
			}
		}
		for _, k := range []string{shipProgressKey, shipMarkKey} {
			if err := img.RemoveMetadata(k); err != nil && !shipNotFound(err) {
				return fmt.Errorf("remove image metadata %s: %w", k, err)
			}
		}
		return nil
	})
}

// isNotOurs: the target carries no ship mark (already standalone).
func isNotOurs(err error) bool { return errors.Is(err, sdk.ErrPrecondition) }

// destroyShip removes the volume's record, deletes the target while the
// source image is read intact in this call (never the last copy; never a
// copy a stop kept), and forgets the source's points.
func (b *Backend) destroyShip(ctx context.Context, vol sdk.Volume) (sdk.CleanupReport, error) {
	var rep sdk.CleanupReport
	envID := vol.Environment.ID
	v, src, srcErr, err := b.openVolSides(ctx, vol)
	if err != nil {
		return rep, err
	}
	defer v.close()
	unlock, err := b.lockShip(ctx, envID, v.name)
	if err != nil {
		return rep, err
	}
	defer unlock()
	if err := setShipRecord(ctx, v.dstIO, envID, v.name, nil); err != nil {
		return rep, err
	}
	if err := setPaused(ctx, v.dstIO, envID, v.name, false, v.spec); err != nil {
		return rep, err
	}
	b.clearShipError(envID, v.name)
	dst, err := b.shipSide(ctx, v.dst, v.dstIO)
	if err != nil {
		return rep, err
	}
	st, err := ShipStatus(ctx, dst, v.name)
	switch {
	case isNotOurs(err) || (err == nil && !st.Exists):
		// No copy, or a standalone one a stop kept: the user's.
	case err != nil:
		rep.Leftovers = append(rep.Leftovers, fmt.Sprintf("the ship copy %s on storage %s: %v", v.spec, v.dst.key(), err))
	case srcErr == nil && src.exists:
		if err := removeTarget(ctx, v); err != nil {
			rep.Leftovers = append(rep.Leftovers, fmt.Sprintf("the ship copy %s on storage %s: %v", v.spec, v.dst.key(), err))
		}
	default:
		why := "the source image does not exist"
		if srcErr != nil {
			why = fmt.Sprintf("the source could not be reached (%v)", srcErr)
		}
		if err := b.makeStandalone(ctx, dst, v); err != nil {
			why += fmt.Sprintf("; making it standalone failed: %v", err)
		}
		rep.Leftovers = append(rep.Leftovers, fmt.Sprintf("the ship copy %s on storage %s was kept: %s, so it may be the last copy. "+
			"Delete it with `rbd snap purge %s && rbd rm %s` once it is not needed", v.spec, v.dst.key(), why, v.spec, v.spec))
	}
	if srcErr == nil {
		srcSide, err := b.shipSide(ctx, v.src, v.srcIO)
		if err == nil {
			_, err = ShipForget(ctx, srcSide, dst, v.name)
		}
		if err != nil {
			rep.Leftovers = append(rep.Leftovers, fmt.Sprintf("ship points of %s/%s on storage %s: %v", v.src.m.Pool, v.name, v.src.key(), err))
		}
	}
	return rep, nil
}

// deleteTargetShip ends the shipping and deletes the target, standalone
// or not.
func (b *Backend) deleteTargetShip(ctx context.Context, vol sdk.Volume, v *volConns) error {
	envID := vol.Environment.ID
	unlock, err := b.lockShip(ctx, envID, v.name)
	if err != nil {
		return err
	}
	defer unlock()
	if err := setShipRecord(ctx, v.dstIO, envID, v.name, nil); err != nil {
		return err
	}
	if err := setPaused(ctx, v.dstIO, envID, v.name, false, v.spec); err != nil {
		return err
	}
	b.clearShipError(envID, v.name)
	dst, err := b.shipSide(ctx, v.dst, v.dstIO)
	if err != nil {
		return err
	}
	if src, err := b.shipSide(ctx, v.src, v.srcIO); err == nil {
		if _, err := ShipForget(ctx, src, dst, v.name); err != nil {
			b.log.Warn("could not remove the ship points on the source", "env", envID, "image", v.name, "err", err)
		}
	}
	return removeTarget(ctx, v)
}

// shipSnapshotStatus: ready once the target has the snapshot.
func (b *Backend) shipSnapshotStatus(ctx context.Context, v *volConns, name string) (sdk.SnapshotReplication, error) {
	var r sdk.SnapshotReplication
	absent, dExists, dProt, err := snapSides(ctx, v, name)
	if err != nil {
		return r, err
	}
	if absent != nil {
		return *absent, nil
	}
	if dExists && dProt {
		r.State, r.Description = sdk.SnapshotReady, "shipped to the target copy and protected there; it can be cloned there"
		return r, nil
	}
	if dExists {
		r.State, r.Description = sdk.SnapshotPending, "shipped to the target copy, not protected there yet"
		return r, nil
	}
	r.State, r.Description = sdk.SnapshotPending, "protected on the source, not yet shipped to the target copy"
	return r, nil
}

// removeShipSnapshot removes the snapshot from the target copy too.
func (b *Backend) removeShipSnapshot(ctx context.Context, vol sdk.Volume, v *volConns, name string) error {
	unlock, err := b.lockShip(ctx, vol.Environment.ID, v.name)
	if err != nil {
		return err
	}
	defer unlock()
	dst, err := b.shipSide(ctx, v.dst, v.dstIO)
	if err != nil {
		return err
	}
	if err := ShipRemoveUserSnapshot(ctx, dst, v.name, name); err != nil {
		return fmt.Errorf("remove snapshot %s of %s on storage %s: %w", name, v.spec, v.dst.key(), err)
	}
	return nil
}

// ifShip runs f with the volume's pools when its environment is a ship
// environment; ship is false (and f not run) otherwise, or when the
// target could not be read (the rbd-mirror path's call then answers).
func (b *Backend) ifShip(ctx context.Context, vol sdk.Volume, f func(context.Context, sdk.Volume, *volConns) error) (ship bool, err error) {
	v, err := b.openVol(ctx, vol)
	if err != nil {
		return false, nil
	}
	defer v.close()
	if ship, err := b.shipEnv(ctx, vol, v); err != nil || !ship {
		return false, nil
	}
	return true, f(ctx, vol, v)
}

// shipEnvironmentWithin is shipEnvironment within a quarter of ctx's
// time left: a destroy with its target lost keeps the rest of its
// budget for its two sides.
func (b *Backend) shipEnvironmentWithin(ctx context.Context, env sdk.Environment) bool {
	if dl, ok := ctx.Deadline(); ok {
		c, cancel := context.WithTimeout(ctx, time.Until(dl)/4)
		defer cancel()
		return b.shipEnvironment(c, env)
	}
	return b.shipEnvironment(ctx, env)
}

// shipEnvironment says whether env is a ship environment, reaching the
// target within reachTimeout; false when that fails.
func (b *Backend) shipEnvironment(ctx context.Context, env sdk.Environment) bool {
	if checkEnvID(env) != nil {
		return false
	}
	sd, err := b.side(env.Target)
	if err != nil {
		return false
	}
	io, err := b.openSide(ctx, sd, false)
	if err != nil {
		return false
	}
	defer releaseAfter(ctx, io.Destroy)
	mk, ok, err := b.preparedMarker(ctx, io, env.ID)
	return err == nil && ok && mk.ship()
}
