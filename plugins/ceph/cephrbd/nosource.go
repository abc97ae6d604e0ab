package cephrbd

import (
	"context"
	"fmt"
	"syscall"

	"github.com/cdmdr/mirror/plugins/sdk"
)

// What a volume's status and its pause do when the source cannot be
// reached within reachTimeout (its site lost or frozen): both answer from
// the target alone, where the pause lives (its record, the copy's hold
// and rbd-mirror's replayer are all on the target). Without this, each
// waited out librados' OSD timeout on the source and failed, so a pause
// could not end until the source was back (docs/reliability/ceph.md).

// statusWithoutSource is VolumeStatus from the target's copy, srcErr
// (wrapping errUnreachable) saying why the source was not read: a pause
// recorded on the target is paused; a copy a stop kept is absent, as
// with the source; a copy rbd-mirror replays into cannot follow an
// unreachable source, so the replication is failed, saying why; with no
// mirror copy on the target nothing can be said, and the error names
// the unreachable source.
func (b *Backend) statusWithoutSource(ctx context.Context, vol sdk.Volume, v *volConns, srcErr error) (sdk.VolumeReplication, error) {
	dst, err := inspect(ctx, v.dstIO, v.name, false)
	if err != nil {
		return sdk.VolumeReplication{}, silent(v.dst, fmt.Errorf("read image %s on storage %s: %w", v.spec, v.dst.key(), err))
	}
	r := sdk.VolumeReplication{TargetExists: dst.exists}
	if kept, ok, err := keptAfterStop(ctx, vol, v, dst); err != nil || ok {
		return kept, err
	}
	if !dst.mirrored() {
		return sdk.VolumeReplication{}, fmt.Errorf("the volume's replication cannot be read: %w; the target storage %s has no mirror copy %s to tell it: %w",
			srcErr, v.dst.key(), v.spec, sdk.ErrRetryable)
	}
	if dst.mirror.Primary {
		r.State, r.Description = sdk.ReplicationFailed, splitBrain(v.spec, v.dst.key())
		return r, nil
	}
	paused, err := isPaused(ctx, v.dstIO, vol.Environment.ID, v.name)
	if err != nil {
		return sdk.VolumeReplication{}, err
	}
	if paused {
		r.State, r.Description = sdk.ReplicationPaused, "replay stopped on rbd-mirror by a pause; the source cannot be reached: "+srcErr.Error()
	} else {
		r.State, r.Description = sdk.ReplicationFailed, fmt.Sprintf("the source cannot be reached, so nothing replicates into the copy %s on storage %s, "+
			"which holds what was replicated until then; replay goes on once the source is back: %v", v.spec, v.dst.key(), srcErr)
	}
	if r.Kept, err = b.keptStatus(ctx, vol, v, dst); err != nil {
		return sdk.VolumeReplication{}, err
	}
	return r, nil
}

// pauseWithoutSource is PauseVolume's check of the replication when the
// source cannot be reached: the target's copy must be a mirror copy
// rbd-mirror replays into (a non-primary mirror-enabled image), which
// also gives the image's global id and mirror mode. When it is not, the
// pause waits for the source (ErrRetryable): nothing on the target says
// what the replication is.
func pauseWithoutSource(ctx context.Context, v *volConns, srcErr error) (imageInfo, error) {
	dst, err := inspect(ctx, v.dstIO, v.name, false)
	if err != nil {
		return dst, fmt.Errorf("read image %s on storage %s: %w", v.spec, v.dst.key(), err)
	}
	if !dst.following() {
		return dst, fmt.Errorf("pause with the source unreachable (%v): the target storage %s has no copy %s replayed into; retried once the source is back: %w",
			srcErr, v.dst.key(), v.spec, sdk.ErrRetryable)
	}
	return dst, nil
}

// silent says, of err from a read of sd, that sd does not answer when
// librados gave up waiting on it (ETIMEDOUT: its OSD timeout) or found
// no connection: the daemon then writes a reason naming the storage, of
// cause unavailable (a cluster unreachable, docs/contract.md §7.1),
// rather than a bare "ret=-110" of cause unknown.
func silent(sd side, err error) error {
	if err == nil || !(isErrno(err, syscall.ETIMEDOUT) || isErrno(err, syscall.ENOTCONN) || isErrno(err, syscall.EHOSTUNREACH)) {
		return err
	}
	return fmt.Errorf("storage %s does not answer: %w: %w", sd.key(), err, sdk.ErrRetryable)
}
