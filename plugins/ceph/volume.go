package main

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ceph/go-ceph/rados"
	"github.com/ceph/go-ceph/rbd"
	"github.com/ceph/go-ceph/rbd/admin"

	"github.com/cdmdr/mirror/plugins/sdk"
)

func imageName(vol sdk.Volume) string { return "volume-" + vol.VolumeUUID }

var uuidPattern = regexp.MustCompile(`^[0-9A-Za-z-]{1,64}$`)

// volConns is a volume's two pools, opened as each storage's client.
type volConns struct {
	src, dst     side
	srcIO, dstIO *rados.IOContext
	name         string // volume-{uuid}
	spec         string // pool/volume-{uuid} as rbd-mirror names it on the target
	globalID     string // the source image's mirror global id, once read
}

// replayerNames are the names rbd-mirror may give the image's replayer:
// pool/image once bootstrapped, pool/global-id while it bootstraps (in
// journal mode that includes the whole first copy).
func (v *volConns) replayerNames() []string {
	if v.globalID == "" {
		return []string{v.spec}
	}
	return []string{v.spec, v.dst.m.Pool + "/" + v.globalID}
}

func (v *volConns) close() {
	if v.srcIO != nil {
		v.srcIO.Destroy()
	}
	if v.dstIO != nil {
		v.dstIO.Destroy()
	}
}

// openVol opens the volume's pools; needTarget false tolerates an
// unreachable target (the source side is always needed).
func (b *Backend) openVol(ctx context.Context, vol sdk.Volume) (*volConns, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := checkEnvID(vol.Environment); err != nil {
		return nil, err
	}
	if !uuidPattern.MatchString(vol.VolumeUUID) {
		return nil, fmt.Errorf("volume uuid %q cannot name an image: %w", vol.VolumeUUID, sdk.ErrPrecondition)
	}
	v := &volConns{name: imageName(vol)}
	var err error
	if v.src, err = b.side(vol.Environment.Source); err != nil {
		return nil, err
	}
	if v.dst, err = b.side(vol.Environment.Target); err != nil {
		return nil, err
	}
	v.spec = v.dst.m.Pool + "/" + v.name
	if v.srcIO, err = b.ioctx(ctx, v.src, false); err != nil {
		return nil, err
	}
	if v.dstIO, err = b.ioctx(ctx, v.dst, false); err != nil {
		v.close()
		return nil, err
	}
	return v, nil
}

// imageInfo is what one side says about the volume's image.
type imageInfo struct {
	exists   bool
	id       string         // the image id: a re-created image has a new one
	snaps    []rbd.SnapInfo // every snapshot, rbd-mirror's included
	objects  uint64         // how many objects the image spans
	mirror   rbd.MirrorImageInfo
	mode     rbd.ImageMirrorMode
	features uint64
	status   rbd.GlobalMirrorImageStatus
	statusOK bool
}

// inspect opens an image read-only just long enough to read its state.
func inspect(ctx context.Context, io *rados.IOContext, name string, withStatus bool) (imageInfo, error) {
	return call(ctx, func() (imageInfo, error) {
		var in imageInfo
		img, err := rbd.OpenImageReadOnly(io, name, rbd.NoSnapshot)
		if errors.Is(err, rbd.ErrNotFound) {
			return in, nil
		}
		if err != nil {
			return in, err
		}
		defer img.Close()
		in.exists = true
		if in.features, err = img.GetFeatures(); err != nil {
			return in, err
		}
		if in.id, err = img.GetId(); err != nil {
			return in, err
		}
		if in.snaps, err = img.GetSnapshotNames(); err != nil {
			return in, err
		}
		if st, err := img.Stat(); err == nil {
			in.objects = st.Num_objs
		}
		mi, err := img.GetMirrorImageInfo()
		if err != nil {
			return in, err
		}
		in.mirror = *mi
		if mi.State == rbd.MirrorImageEnabled {
			if in.mode, err = img.GetImageMirrorMode(); err != nil {
				return in, err
			}
			if withStatus {
				if st, err := img.GetGlobalMirrorStatus(); err == nil {
					in.status, in.statusOK = st, true
				}
			}
		}
		return in, nil
	})
}

// withImage opens an image read-write, runs f, and closes it.
func withImage(ctx context.Context, io *rados.IOContext, name string, f func(*rbd.Image) error) error {
	return do(ctx, func() error {
		img, err := rbd.OpenImage(io, name, rbd.NoSnapshot)
		if err != nil {
			return err
		}
		defer img.Close()
		return f(img)
	})
}

// StartVolume implements sdk.Backend.
func (b *Backend) StartVolume(ctx context.Context, vol sdk.Volume) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if !b.prepared(vol.Environment.ID) {
		return fmt.Errorf("environment %s is not prepared: %w", vol.Environment.ID, sdk.ErrPrecondition)
	}
	v, err := b.openVol(ctx, vol)
	if err != nil {
		return err
	}
	defer v.close()
	in, err := inspect(ctx, v.srcIO, v.name, false)
	if err != nil {
		return fmt.Errorf("read image %s/%s on storage %s: %w", v.src.m.Pool, v.name, v.src.key(), err)
	}
	if !in.exists {
		return fmt.Errorf("image %s/%s does not exist on storage %s: %w", v.src.m.Pool, v.name, v.src.key(), sdk.ErrNotFound)
	}
	if in.mirror.State == rbd.MirrorImageEnabled && !in.mirror.Primary {
		return fmt.Errorf("image %s/%s on storage %s is a non-primary mirror copy itself; it cannot be a source: %w",
			v.src.m.Pool, v.name, v.src.key(), sdk.ErrPrecondition)
	}
	v.globalID = in.mirror.GlobalID
	if in.mirror.State != rbd.MirrorImageEnabled {
		mode := rbd.ImageMirrorModeSnapshot
		if v.src.m.MirrorMode == modeJournal {
			mode = rbd.ImageMirrorModeJournal
		}
		err := withImage(ctx, v.srcIO, v.name, func(img *rbd.Image) error {
			if mode == rbd.ImageMirrorModeJournal {
				for _, f := range []uint64{rbd.FeatureExclusiveLock, rbd.FeatureJournaling} {
					if in.features&f == 0 {
						if err := img.UpdateFeatures(f, true); err != nil {
							return fmt.Errorf("enable feature bit %#x: %w", f, err)
						}
					}
				}
			}
			if err := img.MirrorEnable(mode); err != nil {
				return fmt.Errorf("enable %s mirroring: %w", mode, err)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("image %s/%s on storage %s: %w", v.src.m.Pool, v.name, v.src.key(), err)
		}
		b.log.Info("mirroring enabled", "env", vol.Environment.ID, "image", v.name, "mode", mode.String())
	}
	if v.src.m.MirrorMode == modeSnapshot && v.src.m.MirrorSnapshotInterval != "" {
		if err := b.addSchedule(ctx, v); err != nil {
			return err
		}
	}
	// Start resumes a paused volume.
	return b.resume(ctx, vol, v)
}

func (b *Backend) addSchedule(ctx context.Context, v *volConns) error {
	conn, err := b.conn(ctx, v.src, false)
	if err != nil {
		return err
	}
	level := admin.NewLevelSpec(v.src.m.Pool, "", v.name)
	return do(ctx, func() error {
		ra := admin.NewFromConn(conn).MirrorSnashotSchedule()
		list, err := ra.List(level)
		if err == nil {
			for _, s := range list {
				if s.Name == v.name || strings.HasSuffix(s.Name, "/"+v.name) {
					for _, t := range s.Schedule {
						if string(t.Interval) == v.src.m.MirrorSnapshotInterval {
							return nil
						}
					}
				}
			}
		}
		if err := ra.Add(level, admin.Interval(v.src.m.MirrorSnapshotInterval), admin.NoStartTime); err != nil {
			return fmt.Errorf("add mirror snapshot schedule %s to %s/%s on storage %s: %w",
				v.src.m.MirrorSnapshotInterval, v.src.m.Pool, v.name, v.src.key(), err)
		}
		return nil
	})
}

// removeSchedule removes the image's snapshot schedule, before mirroring
// is disabled (notes, gotcha 11). Best effort.
func (b *Backend) removeSchedule(ctx context.Context, v *volConns, in imageInfo) {
	if v.src.m.MirrorSnapshotInterval == "" || in.mode != rbd.ImageMirrorModeSnapshot || in.mirror.State != rbd.MirrorImageEnabled {
		return
	}
	conn, err := b.conn(ctx, v.src, false)
	if err != nil {
		return
	}
	_ = do(ctx, func() error {
		return admin.NewFromConn(conn).MirrorSnashotSchedule().Remove(
			admin.NewLevelSpec(v.src.m.Pool, "", v.name), admin.Interval(v.src.m.MirrorSnapshotInterval), admin.NoStartTime)
	})
}

// resume takes the volume out of the paused set and restarts its replay.
func (b *Backend) resume(ctx context.Context, vol sdk.Volume, v *volConns) error {
	ps := b.pausedSet(vol.Environment.ID)
	if ps.has(v.spec) {
		if err := ps.set(v.spec, false); err != nil {
			return err
		}
	}
	// Start replay while rbd-mirror holds the image stopped, whoever
	// stopped it: a start that lands while a stop is still being applied
	// is lost, so look again until it replays (level, not edge).
	asoks := b.clusterAsoks(vol.Environment.ID)
	for range 20 {
		var st imageReplayerState
		var asok, name string
		err := errors.New("no replayer")
		sctx, cancel := context.WithTimeout(ctx, asokTimeout)
		for _, name = range v.replayerNames() {
			if st, asok, err = replayerOf(sctx, asoks, name); err == nil {
				break
			}
		}
		cancel()
		if err != nil || (st.State != "Stopped" && st.State != "Stopping") {
			return nil // replaying, starting, or no replayer yet: nothing to start
		}
		if st.State == "Stopped" {
			if _, err := asokCommand(ctx, asok, "rbd mirror start "+name); err != nil && ctx.Err() != nil {
				return ctx.Err()
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
	return fmt.Errorf("rbd-mirror keeps %s stopped after repeated starts: %w", v.spec, sdk.ErrRetryable)
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
	if !in.exists || in.mirror.State != rbd.MirrorImageEnabled {
		v.close()
		return nil, in, fmt.Errorf("image %s/%s on storage %s is not replicated: %w", v.src.m.Pool, v.name, v.src.key(), sdk.ErrNotFound)
	}
	v.globalID = in.mirror.GlobalID
	return v, in, nil
}

// PauseVolume implements sdk.Backend.
func (b *Backend) PauseVolume(ctx context.Context, vol sdk.Volume) error {
	v, _, err := b.openReplicated(ctx, vol)
	if err != nil {
		return err
	}
	defer v.close()
	if err := b.pausedSet(vol.Environment.ID).set(v.spec, true, v.replayerNames()[1:]...); err != nil {
		return fmt.Errorf("record the pause: %w", err)
	}
	// Stop it now wherever rbd-mirror runs it, bootstrapping (the first
	// copy, in journal mode) or replaying; otherwise the supervisor stops
	// it as soon as its replayer appears.
	for _, name := range v.replayerNames() {
		if err := tellAll(ctx, b.clusterAsoks(vol.Environment.ID), "rbd mirror stop "+name); err != nil {
			return err
		}
	}
	return nil
}

// ResumeVolume implements sdk.Backend.
func (b *Backend) ResumeVolume(ctx context.Context, vol sdk.Volume) error {
	v, in, err := b.openReplicated(ctx, vol)
	if err != nil {
		return err
	}
	defer v.close()
	if err := b.resume(ctx, vol, v); err != nil {
		return err
	}
	// A failed replication (split brain, ...) resumes by a resync, which
	// is flagged on the non-primary copy.
	if rs, ok := remoteStatus(in); ok && (rs.State == rbd.MirrorImageStatusStateError || strings.Contains(rs.Description, "split-brain")) {
		err := withImage(ctx, v.dstIO, v.name, func(img *rbd.Image) error { return img.MirrorResync() })
		if err != nil && !errors.Is(err, rbd.ErrNotFound) {
			return fmt.Errorf("resync %s on storage %s: %w", v.spec, v.dst.key(), err)
		}
		b.log.Info("resync requested", "env", vol.Environment.ID, "image", v.name)
	}
	return nil
}

// remoteStatus is the target site's status of a source image.
func remoteStatus(in imageInfo) (rbd.SiteMirrorImageStatus, bool) {
	if !in.statusOK {
		return rbd.SiteMirrorImageStatus{}, false
	}
	for _, s := range in.status.SiteStatuses {
		if s.MirrorUUID != "" {
			return s, true
		}
	}
	return rbd.SiteMirrorImageStatus{}, false
}

var percentPattern = regexp.MustCompile(`(\d{1,3})%`)
var entriesBehind = regexp.MustCompile(`"entries_behind_primary":\s*(\d+)`)

// VolumeStatus implements sdk.Backend.
func (b *Backend) VolumeStatus(ctx context.Context, vol sdk.Volume) (sdk.VolumeReplication, error) {
	var r sdk.VolumeReplication
	v, err := b.openVol(ctx, vol)
	if err != nil {
		return r, err
	}
	defer v.close()
	src, err := inspect(ctx, v.srcIO, v.name, true)
	if err != nil {
		return r, fmt.Errorf("read image %s/%s on storage %s: %w", v.src.m.Pool, v.name, v.src.key(), err)
	}
	dst, err := inspect(ctx, v.dstIO, v.name, false)
	if err != nil {
		return r, fmt.Errorf("read image %s/%s on storage %s: %w", v.dst.m.Pool, v.name, v.dst.key(), err)
	}
	r.TargetExists = dst.exists
	if !src.exists || src.mirror.State != rbd.MirrorImageEnabled {
		r.State = sdk.ReplicationAbsent
		return r, nil
	}
	if b.pausedSet(vol.Environment.ID).has(v.spec) {
		r.State = sdk.ReplicationPaused
		r.Description = "replay stopped on rbd-mirror by a pause"
		return r, nil
	}
	rs, ok := remoteStatus(src)
	if ok {
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
	if ok && (rs.State == rbd.MirrorImageStatusStateError || strings.Contains(rs.Description, "split-brain")) {
		r.State = sdk.ReplicationFailed
		return r, nil
	}
	if dst.exists && dst.mirror.State == rbd.MirrorImageEnabled && dst.mirror.Primary {
		r.State = sdk.ReplicationFailed
		r.Description = fmt.Sprintf("the copy %s on storage %s is primary too (split brain); resume to resync it from the source", v.spec, v.dst.key())
		return r, nil
	}
	// rbd-mirror's own view is current; the status object lags by up to
	// 30 s (notes, gotcha 2).
	targetFollowing := dst.exists && dst.mirror.State == rbd.MirrorImageEnabled && !dst.mirror.Primary
	asokCtx, cancel := context.WithTimeout(ctx, asokTimeout)
	st, _, asokErr := replayerOf(asokCtx, b.clusterAsoks(vol.Environment.ID), v.spec)
	cancel()
	copied := copyState{progress: -1}
	if targetFollowing {
		// rbd-mirror replays a snapshot-mode image while its first mirror
		// snapshot is still being copied: ask the copy itself.
		if copied, err = b.firstCopy(ctx, vol, v, src, dst); err != nil {
			return r, err
		}
	}
	if asokErr == nil {
		switch st.State {
		case "Replaying":
			if targetFollowing && copied.done {
				r.State = sdk.ReplicationReplaying
				return r, nil
			}
		case "Error":
			r.State = sdk.ReplicationFailed
			r.Description = st.Description
			return r, nil
		case "Stopped":
			// Stopped, yet not paused by us: a start that raced a stop, or
			// someone's admin-socket command. Report it as paused, so the
			// daemon's resume (level-based) starts it again.
			r.State = sdk.ReplicationPaused
			r.Description = "replay is stopped on rbd-mirror although no pause asked for it"
			return r, nil
		}
		if strings.Contains(st.Description, "split-brain") {
			r.State = sdk.ReplicationFailed
			r.Description = st.Description
			return r, nil
		}
	}
	if ok && rs.Up && rs.State == rbd.MirrorImageStatusStateReplaying && targetFollowing && copied.done {
		r.State = sdk.ReplicationReplaying
		return r, nil
	}
	r.State = sdk.ReplicationSyncing
	desc := r.Description
	if asokErr == nil && st.Description != "" {
		desc = st.Description
	}
	if m := percentPattern.FindStringSubmatch(desc); m != nil {
		r.Progress, _ = strconv.Atoi(m[1])
	}
	if d, err := rs.DescriptionReplayStatus(); ok && err == nil && d.SyncingPercent > 0 {
		r.Progress = d.SyncingPercent
	}
	if copied.progress > 0 && !copied.done {
		r.Progress = copied.progress
	}
	r.Progress = min(max(r.Progress, 0), 100)
	if !copied.done && copied.missing != "" {
		r.Description = "first copy: " + copied.missing
	}
	if r.Description == "" {
		r.Description = desc
	}
	return r, nil
}

// StopVolume implements sdk.Backend: force-promote the target copy,
// disable mirroring on both sides, and verify the copy is a plain
// writable image.
func (b *Backend) StopVolume(ctx context.Context, vol sdk.Volume) error {
	v, err := b.openVol(ctx, vol)
	if err != nil {
		return err
	}
	defer v.close()
	src, err := inspect(ctx, v.srcIO, v.name, true)
	if err != nil {
		return err
	}
	dst, err := inspect(ctx, v.dstIO, v.name, false)
	if err != nil {
		return err
	}
	v.globalID = src.mirror.GlobalID
	if src.exists && src.mirror.State == rbd.MirrorImageEnabled {
		// A stop keeps a complete copy, never a partial one.
		cs, err := b.firstCopy(ctx, vol, v, src, dst)
		if err != nil {
			return err
		}
		if !cs.done {
			return b.waitForCopy(ctx, vol, v, cs.missing)
		}
	}
	if dst.exists && dst.mirror.State == rbd.MirrorImageEnabled && !dst.mirror.Primary {
		// Let rbd-mirror release the copy, then promote it.
		_ = tellAll(ctx, b.clusterAsoks(vol.Environment.ID), "rbd mirror stop "+v.spec)
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
	}
	if src.exists && src.mirror.State == rbd.MirrorImageEnabled {
		b.removeSchedule(ctx, v, src)
		if err := withImage(ctx, v.srcIO, v.name, func(img *rbd.Image) error { return img.MirrorDisable(false) }); err != nil {
			return fmt.Errorf("disable mirroring of %s/%s on storage %s: %w", v.src.m.Pool, v.name, v.src.key(), err)
		}
	}
	if dst.exists {
		dst, err = inspect(ctx, v.dstIO, v.name, false)
		if err != nil {
			return err
		}
	}
	if dst.exists && dst.mirror.State != rbd.MirrorImageDisabled {
		if err := withImage(ctx, v.dstIO, v.name, func(img *rbd.Image) error { return img.MirrorDisable(false) }); err != nil {
			return fmt.Errorf("disable mirroring of %s on storage %s (mirroring %s, primary %v): %w",
				v.spec, v.dst.key(), dst.mirror.State, dst.mirror.Primary, err)
		}
	}
	if err := b.pausedSet(vol.Environment.ID).set(v.spec, false); err != nil {
		return err
	}
	if dst.exists {
		if err := verifyKept(ctx, v); err != nil {
			return fmt.Errorf("the kept copy %s on storage %s is not a standalone writable image: %w", v.spec, v.dst.key(), err)
		}
	}
	return nil
}

// verifyKept checks the kept copy is a plain image we can write:
// mirroring disabled, no snapshot of rbd-mirror's left, and its exclusive
// lock ours to take. rbd-mirror may hold that lock for a few seconds after
// a stop (librbd answers EROFS meanwhile), so it looks again.
func verifyKept(ctx context.Context, v *volConns) error {
	var err error
	for range 30 {
		err = withImage(ctx, v.dstIO, v.name, func(img *rbd.Image) error {
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
		})
		if err == nil || !(isErrno(err, syscall.EROFS) || isErrno(err, syscall.EBUSY)) {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (%v)", ctx.Err(), err)
		case <-time.After(time.Second):
		}
	}
	return err
}

// waitForCopy answers a stop that came before the first copy was
// complete: the stop supersedes a pause, so replay goes on, and the
// daemon asks again later.
func (b *Backend) waitForCopy(ctx context.Context, vol sdk.Volume, v *volConns, missing string) error {
	if err := b.resume(ctx, vol, v); err != nil {
		return err
	}
	return fmt.Errorf("the copy %s on storage %s is not complete (%s): the stop keeps it once it is; stop_and_delete drops it instead: %w",
		v.spec, v.dst.key(), missing, sdk.ErrInProgress)
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

// removeTarget deletes a standalone target copy (snapshots included);
// a non-primary mirror copy is left to rbd-mirror.
func removeTarget(ctx context.Context, v *volConns) error {
	dst, err := inspect(ctx, v.dstIO, v.name, false)
	if err != nil || !dst.exists {
		return err
	}
	if dst.mirror.State == rbd.MirrorImageDisabling || (dst.mirror.State == rbd.MirrorImageEnabled && !dst.mirror.Primary) {
		return nil // a mirror copy: rbd-mirror deletes it
	}
	// Right after a stop, rbd-mirror's replayer may still hold the image's
	// lock for a few seconds; librbd answers EROFS meanwhile. Try again.
	for attempt := 0; ; attempt++ {
		err = removeTargetSnapshots(ctx, v, dst)
		if err == nil || !isErrno(err, syscall.EROFS) || attempt >= 60 {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("delete %s on storage %s: %w (%v)", v.spec, v.dst.key(), ctx.Err(), err)
		case <-time.After(time.Second):
		}
	}
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
			sn := img.GetSnapshot(s.Name)
			if p, _ := sn.IsProtected(); p {
				if err := sn.Unprotect(); err != nil {
					if isErrno(err, syscall.EBUSY) {
						return fmt.Errorf("snapshot %s has clones: %w", s.Name, sdk.ErrPrecondition)
					}
					return fmt.Errorf("unprotect snapshot %s: %w", s.Name, err)
				}
			}
			if err := sn.Remove(); err != nil {
				return fmt.Errorf("remove snapshot %s: %w", s.Name, err)
			}
		}
		return nil
	})
}

// DeleteTarget implements sdk.Backend.
func (b *Backend) DeleteTarget(ctx context.Context, vol sdk.Volume) error {
	v, err := b.openVol(ctx, vol)
	if err != nil {
		return err
	}
	defer v.close()
	src, err := inspect(ctx, v.srcIO, v.name, false)
	if err != nil {
		return err
	}
	if src.exists && src.mirror.State == rbd.MirrorImageEnabled {
		b.removeSchedule(ctx, v, src)
		// rbd-mirror deletes the non-primary copy.
		if err := withImage(ctx, v.srcIO, v.name, func(img *rbd.Image) error { return img.MirrorDisable(false) }); err != nil {
			return fmt.Errorf("disable mirroring of %s/%s on storage %s: %w", v.src.m.Pool, v.name, v.src.key(), err)
		}
	}
	if err := b.pausedSet(vol.Environment.ID).set(v.spec, false); err != nil {
		return err
	}
	return removeTarget(ctx, v)
}

// DestroyVolume implements sdk.Backend: each side in its own goroutine,
// bounded by ctx, so an unreachable cluster blocks nothing.
func (b *Backend) DestroyVolume(ctx context.Context, vol sdk.Volume) (sdk.DestroyReport, error) {
	var rep sdk.DestroyReport
	if err := ctx.Err(); err != nil {
		return rep, err
	}
	if err := checkEnvID(vol.Environment); err != nil {
		return rep, err
	}
	if !uuidPattern.MatchString(vol.VolumeUUID) {
		return rep, fmt.Errorf("volume uuid %q cannot name an image: %w", vol.VolumeUUID, sdk.ErrPrecondition)
	}
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	name := imageName(vol)
	if m, err := parseMeta(vol.Environment.Target); err == nil {
		_ = b.pausedSet(vol.Environment.ID).set(m.Pool+"/"+name, false)
	}
	var mu sync.Mutex
	leftover := func(s string) { mu.Lock(); rep.Leftovers = append(rep.Leftovers, s); mu.Unlock() }
	srcDone := make(chan bool, 1) // true: mirroring disabled on the source
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		ok := false
		defer func() { srcDone <- ok }()
		sd, err := b.side(vol.Environment.Source)
		if err != nil {
			leftover(fmt.Sprintf("source: %v", err))
			return
		}
		io, err := b.ioctx(ctx, sd, false)
		if err != nil {
			leftover(fmt.Sprintf("source image %s/%s on storage %s: mirroring may still be enabled (%v)", "?", name, sd.key(), err))
			return
		}
		defer io.Destroy()
		in, err := inspect(ctx, io, name, false)
		if err == nil && in.exists && in.mirror.State == rbd.MirrorImageEnabled {
			b.removeSchedule(ctx, &volConns{src: sd, name: name}, in)
			err = withImage(ctx, io, name, func(img *rbd.Image) error { return img.MirrorDisable(false) })
			if err != nil {
				err = withImage(ctx, io, name, func(img *rbd.Image) error { return img.MirrorDisable(true) })
			}
		}
		if err != nil {
			leftover(fmt.Sprintf("source image %s/%s on storage %s: mirroring may still be enabled (%v)", sd.m.Pool, name, sd.key(), err))
			return
		}
		ok = true
	}()
	go func() {
		defer wg.Done()
		dd, err := b.side(vol.Environment.Target)
		if err != nil {
			leftover(fmt.Sprintf("target: %v", err))
			return
		}
		io, err := b.ioctx(ctx, dd, false)
		if err != nil {
			leftover(fmt.Sprintf("target copy %s/%s on storage %s may remain (%v)", dd.m.Pool, name, dd.key(), err))
			return
		}
		defer io.Destroy()
		v := &volConns{dst: dd, dstIO: io, name: name, spec: dd.m.Pool + "/" + name}
		var srcOK bool
		select {
		case srcOK = <-srcDone:
		case <-ctx.Done():
		}
		// rbd-mirror deletes a non-primary copy once the source is
		// disabled; give it a moment, then remove it ourselves.
		deadline := time.Now().Add(10 * time.Second)
		for srcOK && time.Now().Before(deadline) {
			in, err := inspect(ctx, io, name, false)
			if err != nil {
				break // tried again below, and reported if it fails again
			}
			if !in.exists {
				return
			}
			time.Sleep(500 * time.Millisecond)
		}
		in, err := inspect(ctx, io, name, false)
		if err == nil && in.exists && in.mirror.State == rbd.MirrorImageEnabled && !in.mirror.Primary {
			err = withImage(ctx, io, name, func(img *rbd.Image) error { return img.MirrorDisable(true) })
		}
		if err == nil {
			err = removeTarget(ctx, v)
		}
		if err != nil {
			leftover(fmt.Sprintf("target copy %s/%s on storage %s could not be deleted (%v)", dd.m.Pool, name, dd.key(), err))
		}
	}()
	wg.Wait()
	return rep, nil
}
