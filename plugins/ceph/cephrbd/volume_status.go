package cephrbd

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/ceph/go-ceph/rbd"

	"github.com/cdmdr/mirror/plugins/sdk"
)

// VolumeStatus implements sdk.Backend. In order: absent unless the source
// is mirrored, or when a stop without the source kept the copy; paused
// while the pause set has it; failed on an error or a split brain;
// replaying once rbd-mirror replays and the first copy is complete;
// otherwise syncing, with the first copy's progress. With the source
// unreachable, the target's copy answers (statusWithoutSource).
func (b *Backend) VolumeStatus(ctx context.Context, vol sdk.Volume) (sdk.VolumeReplication, error) {
	// The source gets reachTimeout: without it the target's copy answers
	// (statusWithoutSource), so that a pause can end with the source lost.
	v, src, srcErr, err := b.openVolSides(ctx, vol)
	if err != nil {
		return sdk.VolumeReplication{}, err
	}
	defer v.close()
	if ship, err := b.shipEnv(ctx, vol, v); err != nil || ship {
		if err != nil {
			return sdk.VolumeReplication{}, silent(v.dst, err)
		}
		if srcErr != nil {
			return sdk.VolumeReplication{}, fmt.Errorf("volume status: %w: %w", srcErr, sdk.ErrRetryable)
		}
		return b.shipVolumeStatus(ctx, vol, v)
	}
	if srcErr != nil {
		return b.statusWithoutSource(ctx, vol, v, srcErr)
	}
	dst, err := inspect(ctx, v.dstIO, v.name, false)
	if err != nil {
		return sdk.VolumeReplication{}, silent(v.dst, fmt.Errorf("read image %s/%s on storage %s: %w", v.dst.m.Pool, v.name, v.dst.key(), err))
	}
	r, err := b.status(ctx, vol, v, src, dst)
	if err != nil {
		return r, err
	}
	if r.Kept, err = b.keptStatus(ctx, vol, v, dst); err != nil {
		return sdk.VolumeReplication{}, err
	}
	return r, nil
}

// keptAfterStop is the replication of a volume whose copy dst a stop
// without the source kept (keep.go): stopped, the source's mirroring a
// recorded leftover; ok false when dst is no such copy.
func keptAfterStop(ctx context.Context, vol sdk.Volume, v *volConns, dst imageInfo) (r sdk.VolumeReplication, ok bool, err error) {
	if !dst.exists || dst.mirror.State != rbd.MirrorImageDisabled {
		return r, false, nil
	}
	kept, err := keptByStop(ctx, v.dstIO, vol.Environment.ID, v.name)
	if err != nil || !kept {
		return r, false, err
	}
	return sdk.VolumeReplication{TargetExists: true, State: sdk.ReplicationAbsent,
		Description: "stopped while the source was unreachable: the copy was kept standalone, " +
			"and mirroring is still enabled on the source image (a recorded leftover)"}, true, nil
}

// status is VolumeStatus but for the kept point.
func (b *Backend) status(ctx context.Context, vol sdk.Volume, v *volConns, src, dst imageInfo) (sdk.VolumeReplication, error) {
	r := sdk.VolumeReplication{TargetExists: dst.exists}
	if !src.mirrored() {
		r.State = sdk.ReplicationAbsent
		return r, nil
	}
	if kept, ok, err := keptAfterStop(ctx, vol, v, dst); err != nil || ok {
		return kept, err
	}
	paused, err := isPaused(ctx, v.dstIO, vol.Environment.ID, v.name)
	if err != nil {
		return sdk.VolumeReplication{}, err
	}
	if paused {
		r.State, r.Description = sdk.ReplicationPaused, "replay stopped on rbd-mirror by a pause"
		return r, nil
	}
	rs, rsOK := remoteStatus(src)
	if rsOK {
		describeRemote(&r, rs)
	}
	if failed := v.failure(r, rs, rsOK, dst); failed != nil {
		return *failed, nil
	}
	return b.replayStatus(ctx, vol, v, r, replayView{src: src, dst: dst, remote: rs, remoteOK: rsOK})
}

// replayView is what VolumeStatus read of a mirrored volume that is
// neither paused nor failed by the status object.
type replayView struct {
	src, dst imageInfo
	remote   rbd.SiteMirrorImageStatus
	remoteOK bool
}

var percentPattern = regexp.MustCompile(`(\d{1,3})%`)

// entriesBehind is in a journal-mode replay status description
// (rbd-mirror's replay status formatter).
var entriesBehind = regexp.MustCompile(`"entries_behind_primary":\s*(\d+)`)

// describeRemote fills r from the target site's status of the image: its
// description, when it last synced, and how far behind it is (journal
// entries, or time between mirror snapshots).
func describeRemote(r *sdk.VolumeReplication, rs rbd.SiteMirrorImageStatus) {
	r.Description = rs.Description
	if rs.LastUpdate > 0 {
		r.LastSyncTime = time.Unix(rs.LastUpdate, 0)
	}
	if m := entriesBehind.FindStringSubmatch(rs.Description); m != nil {
		r.Lag = m[1] + " entries"
	}
	if d, err := rs.DescriptionReplayStatus(); err == nil && d.LocalSnapshotTimestamp > 0 {
		r.LastSyncTime = time.Unix(d.LocalSnapshotTimestamp, 0)
		if d.RemoteSnapshotTimestamp > d.LocalSnapshotTimestamp {
			r.Lag = (time.Duration(d.RemoteSnapshotTimestamp-d.LocalSnapshotTimestamp) * time.Second).String()
		} else {
			r.Lag = "0s"
		}
	}
}

// failure returns r as failed when the status object says so, or when
// the copy was promoted too (a split brain); else nil.
func (v *volConns) failure(r sdk.VolumeReplication, rs rbd.SiteMirrorImageStatus, rsOK bool, dst imageInfo) *sdk.VolumeReplication {
	switch {
	case rsOK && remoteFailed(rs):
		r.State = sdk.ReplicationFailed
	case dst.mirrored() && dst.mirror.Primary:
		r.State, r.Description = sdk.ReplicationFailed, splitBrain(v.spec, v.dst.key())
	default:
		return nil
	}
	return &r
}

// splitBrain describes a copy that was promoted too.
func splitBrain(spec, storage string) string {
	return fmt.Sprintf("the copy %s on storage %s is primary too (split brain); resume to resync it from the source", spec, storage)
}

// replayStatus decides between replaying, failed, paused and syncing
// from rbd-mirror's own view, which is current (the status object lags
// up to 30 s), and the first copy's state.
func (b *Backend) replayStatus(ctx context.Context, vol sdk.Volume, v *volConns, r sdk.VolumeReplication, view replayView) (sdk.VolumeReplication, error) {
	following := view.dst.following()
	st, asokErr := b.replayer(ctx, vol, v)
	copied := copyState{progress: -1}
	if following {
		// rbd-mirror replays a snapshot-mode image while its first mirror
		// snapshot is still being copied: ask the copy itself.
		var err error
		if copied, err = b.firstCopy(ctx, vol, v, view.src, view.dst); err != nil {
			return r, err
		}
	}
	caughtUp := following && copied.done
	if asokErr == nil {
		if decided, ok := replayerVerdict(r, st, caughtUp); ok {
			return decided, nil
		}
	}
	if view.remoteOK && remoteReplaying(view.remote) && caughtUp {
		r.State = sdk.ReplicationReplaying
		return r, nil
	}
	if asokErr != nil {
		st = imageReplayerState{}
	}
	return syncing(r, st, view, copied), nil
}

// replayerVerdict is what rbd-mirror's replayer state settles: replaying
// (once the copy caught up), failed, or stopped although not paused by
// us (a start that raced a stop, or someone's admin-socket command),
// reported as paused so the daemon's resume (level-based) starts it
// again. ok is false when it settles nothing.
func replayerVerdict(r sdk.VolumeReplication, st imageReplayerState, caughtUp bool) (sdk.VolumeReplication, bool) {
	switch {
	case st.State == replayerReplaying && caughtUp:
		r.State = sdk.ReplicationReplaying
	case st.State == replayerError:
		r.State, r.Description = sdk.ReplicationFailed, st.Description
	case st.State == replayerStopped:
		r.State, r.Description = sdk.ReplicationPaused, "replay is stopped on rbd-mirror although no pause asked for it"
	case strings.Contains(st.Description, splitBrainMark):
		r.State, r.Description = sdk.ReplicationFailed, st.Description
	default:
		return r, false
	}
	return r, true
}

// syncing reports the volume syncing, with the first copy's progress
// from the most precise source: the copy itself, the status object's
// replay status, or a percentage in a description. st is the replayer's
// state, empty when rbd-mirror did not answer.
func syncing(r sdk.VolumeReplication, st imageReplayerState, view replayView, copied copyState) sdk.VolumeReplication {
	r.State = sdk.ReplicationSyncing
	desc := r.Description
	if st.Description != "" {
		desc = st.Description
	}
	if m := percentPattern.FindStringSubmatch(desc); m != nil {
		r.Progress, _ = strconv.Atoi(m[1])
	}
	if d, err := view.remote.DescriptionReplayStatus(); view.remoteOK && err == nil && d.SyncingPercent > 0 {
		r.Progress = d.SyncingPercent
	}
	if copied.progress > 0 && !copied.done {
		r.Progress = copied.progress
	}
	if copied.done {
		// The first copy is complete: rbd-mirror is (re)starting the
		// replay, not copying again.
		r.Progress, desc = 100, "the first copy is complete; rbd-mirror is starting its replay"
		r.Description = ""
	}
	r.Progress = min(max(r.Progress, 0), 100)
	if !copied.done && copied.missing != "" {
		r.Description = "first copy: " + copied.missing
	}
	if r.Description == "" {
		r.Description = desc
	}
	return r
}
