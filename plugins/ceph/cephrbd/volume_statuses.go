package cephrbd

import (
	"context"
	"fmt"
	"syscall"

	"github.com/ceph/go-ceph/rados"
	"github.com/ceph/go-ceph/rbd"

	"github.com/cdmdr/mirror/plugins/sdk"
)

// VolumeStatuses implements sdk.Backend with a fixed number of pool-wide
// reads per call, however many volumes it is asked about: on the source
// pool, the mirror status list (each mirrored image, and rbd-mirror's
// status of it) and the mirror mode list; on the target pool, the image
// names and the mirror status list (the copies rbd-mirror replays into,
// and whether one was promoted). Added to those, the paused images'
// records and the kept points' records in the target pool's metadata,
// read once each, and one read of each pool within reachTimeout to know it
// answers (reach.go).
//
// What is older than VolumeStatus's answer: the status rbd-mirror writes
// into the source pool's mirror status objects, which lags up to ~30 s,
// where VolumeStatus asks rbd-mirror's admin socket, which is current. So
// a replayer stopped, failed or resyncing in the last half minute may
// still read as replaying here.
//
// What the lists cannot settle is answered by VolumeStatus, one volume at
// a time: a volume in its first copy (or a full resync), or whose
// replayer the status object does not show up and replaying. The daemon
// asks here only about settled volumes, so those are few.
func (b *Backend) VolumeStatuses(ctx context.Context, env sdk.Environment, vols []sdk.Volume) ([]sdk.VolumeReplication, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("volume statuses in environment %s: %w", env.ID, err)
	}
	if len(vols) == 0 {
		return []sdk.VolumeReplication{}, nil
	}
	if err := checkEnvID(env); err != nil {
		return nil, err
	}
	if b.shipEnvironment(ctx, env) {
		// Few reads per volume: the target image's snapshots.
		return sdk.VolumeStatusesOneByOne(ctx, b, env, vols)
	}
	view, err := b.readPools(ctx, env)
	if err != nil {
		return nil, fmt.Errorf("volume statuses in environment %s: %w", env.ID, err)
	}
	reps := make([]sdk.VolumeReplication, len(vols))
	var oneByOne []sdk.Volume
	var at []int // where each of oneByOne's answers goes
	for i, vol := range vols {
		if !uuidPattern.MatchString(vol.VolumeUUID) {
			// It cannot name an image: no storage knows it.
			reps[i] = sdk.VolumeReplication{State: sdk.ReplicationAbsent}
			continue
		}
		rep, ok := b.listedStatus(view, imageName(vol))
		if _, kept := view.kept[imageName(vol)]; !ok || kept {
			// A standing kept point is checked (and removed once a newer
			// point arrived) by VolumeStatus; such volumes are few.
			oneByOne, at = append(oneByOne, vol), append(at, i)
			continue
		}
		reps[i] = rep
	}
	if len(oneByOne) > 0 {
		more, err := sdk.VolumeStatusesOneByOne(ctx, b, env, oneByOne)
		if err != nil {
			return nil, err
		}
		for j, rep := range more {
			reps[at[j]] = rep
		}
	}
	return reps, nil
}

// poolsView is what one VolumeStatuses call read of an environment.
type poolsView struct {
	sources map[string]listedSource // mirror-enabled images of the source pool, by name
	targets map[string]listedTarget // every image of the target pool, by name
	paused  map[string]pausedImage  // the paused images, by spec
	kept    map[string]keptRecord   // the kept points (keptpoint.go), by image
	pool    string                  // the target pool: rbd-mirror's names are pool/image
	storage string                  // the target storage, for messages
}

// listedSource is one source image of the pool's mirror lists.
type listedSource struct {
	status rbd.GlobalMirrorImageStatus // its Info says whether mirroring is enabled
	mode   rbd.ImageMirrorMode
	modeOK bool
}

// listedTarget is one image of the target pool; id and mirror are set
// only for a mirror-enabled image (the mirror status list has only those).
type listedTarget struct {
	id       string
	mirror   rbd.MirrorImageInfo
	mirrored bool
}

// following says whether the image is a non-primary mirror copy.
func (t listedTarget) following() bool {
	return t.mirrored && t.mirror.State == rbd.MirrorImageEnabled && !t.mirror.Primary
}

// listedStatus decides a volume's replication from the lists, as
// VolumeStatus would from its own reads; ok is false when the lists
// cannot settle it (VolumeStatus must).
func (b *Backend) listedStatus(view poolsView, name string) (sdk.VolumeReplication, bool) {
	dst, dstOK := view.targets[name]
	r := sdk.VolumeReplication{TargetExists: dstOK}
	src, srcOK := view.sources[name]
	if !srcOK || src.status.Info.State != rbd.MirrorImageEnabled {
		r.State = sdk.ReplicationAbsent
		return r, true
	}
	spec := view.pool + "/" + name
	if _, paused := view.paused[spec]; paused {
		r.State, r.Description = sdk.ReplicationPaused, "replay stopped on rbd-mirror by a pause"
		return r, true
	}
	rs, rsOK := remoteStatus(imageInfo{statusOK: true, status: src.status})
	if rsOK {
		describeRemote(&r, rs)
	}
	switch {
	case rsOK && remoteFailed(rs):
		r.State = sdk.ReplicationFailed
		return r, true
	case dst.mirrored && dst.mirror.State == rbd.MirrorImageEnabled && dst.mirror.Primary:
		r.State, r.Description = sdk.ReplicationFailed, splitBrain(spec, view.storage)
		return r, true
	case !rsOK || !remoteReplaying(rs) || !dst.following() || !src.modeOK:
		return r, false
	}
	// The status object says replaying. In journal mode rbd-mirror says so
	// only once the image sync is over; in snapshot mode it replays
	// during the first mirror snapshot too, so only a copy VolumeStatus
	// saw complete (under this image id) is.
	if src.mode == rbd.ImageMirrorModeSnapshot {
		if _, done := b.copied.Load(dst.id); !done {
			return r, false
		}
	}
	r.State = sdk.ReplicationReplaying
	return r, true
}

// readPools reads the environment's two pools' lists and the paused set.
func (b *Backend) readPools(ctx context.Context, env sdk.Environment) (poolsView, error) {
	src, err := b.side(env.Source)
	if err != nil {
		return poolsView{}, err
	}
	dst, err := b.side(env.Target)
	if err != nil {
		return poolsView{}, err
	}
	view := poolsView{pool: dst.m.Pool, storage: dst.key()}
	// Each side answers one read within reachTimeout, or the call fails
	// saying which is unreachable, before librados' 30 s OSD timeout: the
	// daemon then asks each volume on its own (VolumeStatus answers from
	// the target when the source is lost), and a lost site shows in the
	// statuses sooner.
	srcIO, err := b.openSide(ctx, src, false)
	if err != nil {
		return poolsView{}, err
	}
	defer releaseAfter(ctx, srcIO.Destroy)
	dstIO, err := b.openSide(ctx, dst, false)
	if err != nil {
		return poolsView{}, err
	}
	defer releaseAfter(ctx, dstIO.Destroy)
	if view.sources, err = call(ctx, func() (map[string]listedSource, error) { return listSources(srcIO) }); err != nil {
		return poolsView{}, fmt.Errorf("list the mirrored images of pool %s on storage %s: %w", src.m.Pool, src.key(), err)
	}
	if view.targets, err = call(ctx, func() (map[string]listedTarget, error) { return listTargets(dstIO) }); err != nil {
		return poolsView{}, fmt.Errorf("list the images of pool %s on storage %s: %w", dst.m.Pool, dst.key(), err)
	}
	if view.paused, err = pausedImages(ctx, dstIO, env.ID); err != nil {
		return poolsView{}, fmt.Errorf("pool %s on storage %s: %w", dst.m.Pool, dst.key(), err)
	}
	if view.kept, err = keptPoints(ctx, dstIO, env.ID); err != nil {
		return poolsView{}, fmt.Errorf("pool %s on storage %s: %w", dst.m.Pool, dst.key(), err)
	}
	return view, nil
}

// listChunk is how many entries each librbd list call returns at most.
const listChunk = 512

// listSources reads the source pool's mirror status and mode lists.
func listSources(io *rados.IOContext) (map[string]listedSource, error) {
	statuses, err := globalStatuses(io)
	if err != nil {
		return nil, err
	}
	modes := map[string]rbd.ImageMirrorMode{} // by image id
	for start := ""; ; {
		chunk, err := rbd.MirrorImageInfoList(io, nil, start, listChunk)
		if isErrno(err, syscall.ENOENT) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("mirror mode list: %w", err)
		}
		if len(chunk) == 0 {
			break
		}
		for _, it := range chunk {
			modes[it.ID] = it.Mode
		}
		start = chunk[len(chunk)-1].ID
	}
	out := make(map[string]listedSource, len(statuses))
	for _, st := range statuses {
		mode, ok := modes[st.ID]
		out[st.Status.Name] = listedSource{status: st.Status, mode: mode, modeOK: ok}
	}
	return out, nil
}

// listTargets reads the target pool's image names and mirror status list.
func listTargets(io *rados.IOContext) (map[string]listedTarget, error) {
	names, err := rbd.GetImageNames(io)
	if err != nil {
		return nil, fmt.Errorf("image list: %w", err)
	}
	statuses, err := globalStatuses(io)
	if err != nil {
		return nil, err
	}
	out := make(map[string]listedTarget, len(names))
	for _, n := range names {
		out[n] = listedTarget{}
	}
	for _, st := range statuses {
		if _, ok := out[st.Status.Name]; ok {
			out[st.Status.Name] = listedTarget{id: st.ID, mirror: st.Status.Info, mirrored: true}
		}
	}
	return out, nil
}

// globalStatuses reads a pool's mirror status list, listChunk at a time
// until a call returns nothing.
func globalStatuses(io *rados.IOContext) ([]rbd.GlobalMirrorImageIDAndStatus, error) {
	var all []rbd.GlobalMirrorImageIDAndStatus
	for start := ""; ; {
		chunk, err := rbd.MirrorImageGlobalStatusList(io, start, listChunk)
		if isErrno(err, syscall.ENOENT) {
			return all, nil // the pool has no mirror directory: nothing is mirrored
		}
		if err != nil {
			return nil, fmt.Errorf("mirror status list: %w", err)
		}
		if len(chunk) == 0 {
			return all, nil
		}
		all = append(all, chunk...)
		start = chunk[len(chunk)-1].ID
	}
}
