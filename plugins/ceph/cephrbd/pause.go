package cephrbd

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ceph/go-ceph/rbd"

	"github.com/cdmdr/mirror/plugins/sdk"
)

// Pacing of resume's loop, and how long it tries when its caller set no
// deadline.
const (
	resumeFirstWait = 500 * time.Millisecond
	resumeMaxWait   = 2 * time.Second
	resumeFallback  = 10 * time.Second
)

// PauseVolume implements sdk.Backend: the pause is recorded in the
// target pool, the copy held (both hold through restarts and takeovers)
// and the image's replayer stopped on rbd-mirror, under either of its
// names. On
// a host where the environment's rbd-mirror does not run it answers
// ErrRetryable: the pause is recorded, and the host running rbd-mirror
// applies it, but this call cannot see it done.
func (b *Backend) PauseVolume(ctx context.Context, vol sdk.Volume) (err error) {
	defer func() { err = explainDenied(err, vol.Environment, false) }()
	if ship, err := b.ifShip(ctx, vol, b.pauseShip); ship {
		return err
	}
	v, in, err := b.openPausable(ctx, vol)
	if err != nil {
		return err
	}
	defer v.close()
	if err := setPaused(ctx, v.dstIO, vol.Environment.ID, v.name, true, v.spec, v.replayerNames()[1:]...); err != nil {
		return err
	}
	// Held, the copy is replayed into by no rbd-mirror that opens it from
	// now on (hold.go); snapshot mode ships nothing without new mirror
	// snapshots.
	if _, _, err := holdCopy(ctx, v.dstIO, v.name, true); err != nil {
		return err
	}
	if in.mode == rbd.ImageMirrorModeSnapshot && v.srcIO != nil {
		// Without the source its schedule stays: the held copy takes
		// nothing of the mirror snapshots it adds, and resume sets it again.
		b.removeSchedule(ctx, v, in)
	}
	asoks, err := b.localAsoks(vol.Environment, v.dst)
	if err != nil {
		return fmt.Errorf("pause of %s recorded, not applied: %w", v.spec, err)
	}
	// Stop it now wherever rbd-mirror runs it, bootstrapping (the first
	// copy, in journal mode) or replaying; otherwise the supervisor stops
	// it as soon as its replayer appears.
	for _, name := range v.replayerNames() {
		if err := tellAll(ctx, asoks, "rbd mirror stop "+name); err != nil {
			return err
		}
	}
	return nil
}

// ResumeVolume implements sdk.Backend: replay starts again; a failed
// replication (split brain, ...) resumes by a resync.
func (b *Backend) ResumeVolume(ctx context.Context, vol sdk.Volume) (err error) {
	defer func() { err = explainDenied(err, vol.Environment, false) }()
	if ship, err := b.ifShip(ctx, vol, b.resumeShip); ship {
		return err
	}
	v, in, err := b.openReplicated(ctx, vol)
	if err != nil {
		return err
	}
	defer v.close()
	// A failed replica resyncs first (its newest point kept): its
	// replayer stays stopped until the resync flag is set.
	if b.replicaFailed(ctx, vol, v, in) {
		if err := b.resync(ctx, vol, v); err != nil {
			return err
		}
	}
	if err := b.resume(ctx, vol, v, true); err != nil {
		return err
	}
	if in.mode == rbd.ImageMirrorModeSnapshot && v.src.m.MirrorSnapshotInterval != "" {
		if err := b.addSchedule(ctx, v); err != nil {
			return err
		}
	}
	if in.mode == rbd.ImageMirrorModeSnapshot {
		// What the pause held back (writes, recovery points added while
		// paused) reaches the copy now, not at the next schedule, if any.
		err := withImage(ctx, v.srcIO, v.name, func(img *rbd.Image) error { _, err := img.CreateMirrorSnapshot(); return err })
		if err != nil {
			return fmt.Errorf("take a mirror snapshot of %s/%s on storage %s to resume: %w", v.src.m.Pool, v.name, v.src.key(), err)
		}
	}
	return nil
}

// replicaFailed says whether the replica needs a resync: the status
// object says it failed (it lags up to 30 s), or this host's rbd-mirror
// says so now (split brain).
func (b *Backend) replicaFailed(ctx context.Context, vol sdk.Volume, v *volConns, in imageInfo) bool {
	if rs, ok := remoteStatus(in); ok && remoteFailed(rs) {
		return true
	}
	st, err := b.replayer(ctx, vol, v)
	return err == nil && (st.State == replayerError || strings.Contains(st.Description, splitBrainMark))
}

// resync flags the non-primary copy for a resync from the source, once
// its newest complete recovery point is kept (keptpoint.go): rbd-mirror
// deletes the copy, and every point on it, before the new first copy is
// complete. No resync when the point cannot be kept.
func (b *Backend) resync(ctx context.Context, vol sdk.Volume, v *volConns) error {
	if _, _, err := b.keepBeforeResync(ctx, vol, v); err != nil {
		return fmt.Errorf("no resync of %s on storage %s: its newest recovery point could not be kept first: %w", v.spec, v.dst.key(), err)
	}
	err := withImage(ctx, v.dstIO, v.name, func(img *rbd.Image) error { return img.MirrorResync() })
	if err != nil && !errors.Is(err, rbd.ErrNotFound) {
		return fmt.Errorf("resync %s on storage %s: %w", v.spec, v.dst.key(), err)
	}
	b.log.Info("resync requested", "env", vol.Environment.ID, "image", v.name)
	return nil
}

// openReplicated opens a volume for Pause/Resume: ErrNotFound unless its
// source image is replicated. The caller closes the connections.
func (b *Backend) openReplicated(ctx context.Context, vol sdk.Volume) (*volConns, imageInfo, error) {
	v, err := b.openVol(ctx, vol)
	if err != nil {
		return nil, imageInfo{}, err
	}
	in, err := inspect(ctx, v.srcIO, v.name, true)
	if err != nil {
		v.close()
		return nil, in, fmt.Errorf("read image %s/%s on storage %s: %w", v.src.m.Pool, v.name, v.src.key(), err)
	}
	if !in.mirrored() {
		v.close()
		return nil, in, fmt.Errorf("image %s/%s on storage %s is not replicated: %w", v.src.m.Pool, v.name, v.src.key(), sdk.ErrNotFound)
	}
	v.globalID = in.mirror.GlobalID
	return v, in, nil
}

// openPausable opens a volume for Pause: openReplicated's check on the
// source, or, when the source cannot be reached within reachTimeout, on
// the target's copy alone (pauseWithoutSource): a pause needs only the
// target. v.srcIO is nil then. The caller closes the connections.
func (b *Backend) openPausable(ctx context.Context, vol sdk.Volume) (*volConns, imageInfo, error) {
	v, src, srcErr, err := b.openVolSides(ctx, vol)
	if err != nil {
		return nil, imageInfo{}, err
	}
	in := src
	if srcErr != nil {
		in, err = pauseWithoutSource(ctx, v, srcErr)
		if err == nil {
			b.log.Warn("pause without the source: it cannot be reached", "env", vol.Environment.ID, "image", v.name, "err", srcErr)
		}
	} else if !src.mirrored() {
		err = fmt.Errorf("image %s/%s on storage %s is not replicated: %w", v.src.m.Pool, v.name, v.src.key(), sdk.ErrNotFound)
	}
	if err != nil {
		v.close()
		return nil, in, err
	}
	v.globalID = in.mirror.GlobalID
	return v, in, nil
}

// resume releases the copy's hold, removes the volume's pause record and
// restarts its replay (a replayer that opened the copy held is restarted
// once). It
// starts replay while rbd-mirror holds the image stopped, whoever
// stopped it: a start that lands while a stop is still being applied is
// lost, so it looks again until the image replays (level, not edge), for
// as long as ctx allows. Where the environment's rbd-mirror does not run
// on this host, strict (a resume) answers ErrRetryable; otherwise (a
// start, a stop waiting for the first copy) the record's removal is
// enough: the host running rbd-mirror starts what it stopped for it.
func (b *Backend) resume(ctx context.Context, vol sdk.Volume, v *volConns, strict bool) error {
	_, released, err := holdCopy(ctx, v.dstIO, v.name, false)
	if err != nil {
		return err
	}
	if err := setPaused(ctx, v.dstIO, vol.Environment.ID, v.name, false, v.spec); err != nil {
		return err
	}
	asoks, err := b.localAsoks(vol.Environment, v.dst)
	if err != nil {
		if strict {
			return fmt.Errorf("pause of %s lifted, replay not seen started: %w", v.spec, err)
		}
		return nil
	}
	loop, cancel := retryContext(ctx, resumeFallback)
	defer cancel()
	wait := newBackoff(resumeFirstWait, resumeMaxWait)
	for {
		st, asok, name, err := v.findReplayer(loop, asoks)
		if err == nil && released && st.State != replayerStopped && st.State != replayerStopping {
			// It runs, but opened the copy held: it must open it again.
			if _, err := asokCommand(loop, asok, "rbd mirror restart "+name); err != nil && ctx.Err() != nil {
				return ctx.Err()
			}
			return nil
		}
		if err != nil || (st.State != replayerStopped && st.State != replayerStopping) {
			return nil // replaying, starting, or no replayer yet: nothing to start
		}
		if st.State == replayerStopped {
			if _, err := asokCommand(loop, asok, "rbd mirror start "+name); err != nil && ctx.Err() != nil {
				return ctx.Err()
			}
		}
		if err := wait.wait(loop); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("rbd-mirror keeps %s stopped after repeated starts: %w", v.spec, sdk.ErrRetryable)
		}
	}
}

// findReplayer finds the volume's replayer under either of its names:
// what rbd-mirror says of it, at which admin socket, under which name.
func (v *volConns) findReplayer(ctx context.Context, asoks []string) (st imageReplayerState, asok, name string, err error) {
	ctx, cancel := context.WithTimeout(ctx, asokTimeout)
	defer cancel()
	err = errors.New("no replayer")
	for _, name = range v.replayerNames() {
		if st, asok, err = replayerOf(ctx, asoks, name); err == nil {
			break
		}
	}
	return st, asok, name, err
}
