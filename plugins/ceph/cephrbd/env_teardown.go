package cephrbd

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/ceph/go-ceph/rados"
	"github.com/ceph/go-ceph/rbd"

	"github.com/cdmdr/mirror/plugins/sdk"
)

// TeardownEnvironment implements sdk.Backend: refused while an image of
// the environment is mirrored (unless force): images whose mark names
// another environment sharing the source pool neither block it nor are
// touched. Then it stops rbd-mirror, removes
// the peers, the environment's records in the target pool and its files.
// Each side is reached on its own (openEnvSides): with one lost, what the
// other and this host hold is torn down, and what is left on the lost one
// is reported and recorded on the reachable one.
func (b *Backend) TeardownEnvironment(ctx context.Context, env sdk.Environment, force bool) (_ sdk.CleanupReport, err error) {
	defer func() { err = explainDenied(err, env, true) }()
	e, srcErr, dstErr, err := b.openEnvSides(ctx, env)
	if err != nil {
		return sdk.CleanupReport{}, err
	}
	defer e.close()
	if srcErr != nil && dstErr != nil {
		if err := b.stopShipLoop(ctx, env.ID); err != nil {
			return sdk.CleanupReport{}, err
		}
		return b.teardownLocal(ctx, env, e, srcErr, dstErr)
	}
	if e.dstIO != nil {
		mk, ok, err := b.preparedMarker(ctx, e.dstIO, env.ID)
		if err != nil {
			return sdk.CleanupReport{}, err
		}
		if ok && mk.ship() {
			return b.teardownShip(ctx, env, e, force)
		}
	}
	var rep sdk.CleanupReport
	replicated, err := e.mirroredImages(ctx, env.ID)
	if err != nil {
		return rep, err
	}
	var ours *rbd.MirrorPeerSite
	prepared := true // unknown without the target: the source's images decide
	if e.dstIO != nil {
		if ours, _, err = e.peers(ctx); err != nil {
			return rep, err
		}
		if prepared, err = b.prepared(ctx, e.dstIO, env.ID); err != nil {
			return rep, err
		}
	}
	if len(replicated) > 0 && (ours != nil || prepared) {
		if !force {
			return rep, refuseWhileMirrored(env, replicated)
		}
		for _, n := range replicated {
			rep.Leftovers = append(rep.Leftovers, leftoverLine(replicatedLeftover(env, n)))
		}
	}
	if err := b.stopDaemon(ctx, env.ID); err != nil {
		return rep, err
	}
	if e.dstIO != nil {
		if ours != nil {
			if err := b.removePeer(ctx, env, e, ours); err != nil {
				return rep, err
			}
		}
		if err := removeEnvRecords(ctx, e, env.ID); err != nil {
			return rep, err
		}
	}
	if e.srcIO != nil {
		e.removeTxPeer(ctx)
		if err := releaseFeed(ctx, e.srcIO, env.ID); err != nil {
			return rep, fmt.Errorf("pool %s on storage %s: %w", e.src.m.Pool, e.src.key(), err)
		}
	}
	if err := b.recordLostSide(ctx, env, e, srcErr, dstErr, &rep); err != nil {
		return rep, err
	}
	forgetCheckedCopies(env.ID)
	return rep, b.removeEnvFiles(env.ID, e)
}

// recordLostSide reports what a teardown left on a lost side, and records
// it on the reachable one (image ""). With both reached, a record an
// earlier teardown wrote so is done, and removed: records of images
// (stops and destroys without a side) stay.
func (b *Backend) recordLostSide(ctx context.Context, env sdk.Environment, e *envConns, srcErr, dstErr error, rep *sdk.CleanupReport) error {
	var l sdk.Leftover
	var io *rados.IOContext
	switch {
	case srcErr != nil:
		l, io = sourceSideLeftover(env, e, srcErr), e.dstIO
	case dstErr != nil:
		l, io = targetSideLeftover(env, e, dstErr), e.srcIO
	default:
		for _, io := range []*rados.IOContext{e.srcIO, e.dstIO} {
			if err := clearLeftover(ctx, io, env.ID, ""); err != nil {
				return err
			}
		}
		return nil
	}
	rep.Leftovers = append(rep.Leftovers, leftoverLine(l))
	return recordLeftover(ctx, io, env.ID, "", l)
}

// teardownLocal is a teardown with both storages unreachable: only what
// this host holds (rbd-mirror, files) is torn down.
func (b *Backend) teardownLocal(ctx context.Context, env sdk.Environment, e *envConns, srcErr, dstErr error) (sdk.CleanupReport, error) {
	if err := b.stopDaemon(ctx, env.ID); err != nil {
		return sdk.CleanupReport{}, err
	}
	if err := b.removeEnvFiles(env.ID, e); err != nil {
		return sdk.CleanupReport{}, err
	}
	return sdk.CleanupReport{Leftovers: []string{
		fmt.Sprintf("nothing on storages %s and %s was touched: neither could be reached (%v; %v); only this host's rbd-mirror and files "+
			"of environment %s were removed. Tear the environment down again once they are back", e.src.key(), e.dst.key(), srcErr, dstErr, env.ID),
		leftoverLine(sourceSideLeftover(env, e, srcErr)),
		leftoverLine(targetSideLeftover(env, e, dstErr)),
	}}, nil
}

// sourceSideLeftover is what a teardown without the source leaves on it.
func sourceSideLeftover(env sdk.Environment, e *envConns, why error) sdk.Leftover {
	return sdk.Leftover{
		Kind: "pairing",
		Name: fmt.Sprintf("pool %s on storage %s (source of environment %s)", e.src.m.Pool, e.src.key(), env.ID),
		Description: fmt.Sprintf("the environment was torn down without this storage (%v): the tx-only peer rbd-mirror registered there for site %s "+
			"may remain, and mirroring stays enabled on the images it replicated", why, e.dstSite),
		Remedy: fmt.Sprintf("once storage %s is back: `rbd mirror pool info %s` lists the peers; remove the tx-only one of site %s with "+
			"`rbd mirror pool peer remove %s PEER_UUID`; `rbd mirror image disable %s/IMAGE` for each image whose volume is not replicated any more "+
			"(the volumes' own records say which); `rados -p %s rm %s` once `rados -p %s get %s /dev/stdout` names environment %s "+
			"(the record that this pool feeds the environment's target)", e.src.key(), e.src.m.Pool, e.dstSite, e.src.m.Pool, e.src.m.Pool,
			e.src.m.Pool, feedObject, e.src.m.Pool, feedObject, env.ID),
	}
}

// targetSideLeftover is what a teardown without the target leaves on it.
func targetSideLeftover(env sdk.Environment, e *envConns, why error) sdk.Leftover {
	p := e.dst.m.Pool
	return sdk.Leftover{
		Kind: "pairing",
		Name: fmt.Sprintf("pool %s on storage %s (target of environment %s)", p, e.dst.key(), env.ID),
		Description: fmt.Sprintf("the environment was torn down without this storage (%v): its peer for site %s, the environment's records "+
			"in the pool metadata, an rbd-mirror another host runs for it, and the copies in the pool may remain", why, e.srcSite),
		Remedy: fmt.Sprintf("once storage %s is back: tear the environment down again (force if copies remain), or by hand: "+
			"`rbd mirror pool peer remove %s PEER_UUID` for the peer of site %s (`rbd mirror pool info %s`), "+
			"`rados -p %s rmomapkey rbd_info metadata_KEY` for each KEY starting with %s, %s or %s (`rados -p %s listomapkeys rbd_info`: "+
			"the pool metadata, which the rbd CLI does not edit), and stop the rbd-mirror processes serving environment %s on the other hosts",
			e.dst.key(), p, e.srcSite, p, p, preparedKey(env.ID), pausedPrefix(env.ID), instancePrefix(env.ID), p, env.ID),
	}
}

// replicatedLeftover is an image a forced teardown left replicated.
func replicatedLeftover(env sdk.Environment, image string) sdk.Leftover {
	return sdk.Leftover{
		Kind:        "volume",
		Name:        "image " + image,
		Description: fmt.Sprintf("still mirror-enabled when environment %s was torn down by force: the pairing is gone, the image and its mirroring stay", env.ID),
		Remedy: "on a source (primary) image: `rbd mirror image disable POOL/IMAGE`; on a target copy (non-primary): keep it with " +
			"`rbd mirror image promote --force POOL/IMAGE` then `rbd mirror image disable POOL/IMAGE`, or delete it with " +
			"`rbd mirror image disable --force POOL/IMAGE && rbd snap purge POOL/IMAGE && rbd rm POOL/IMAGE`",
	}
}

// removeEnvRecords removes what the target pool's metadata holds of the
// environment: its paused images, its rbd-mirror instances (retired, not
// forgotten), and last its prepared marker (a teardown cut short is done
// again).
func removeEnvRecords(ctx context.Context, e *envConns, envID string) error {
	if err := retireInstances(ctx, e.dstIO, envID); err != nil {
		return fmt.Errorf("pool %s on storage %s: %w", e.dst.m.Pool, e.dst.key(), err)
	}
	var keys []string
	for _, prefix := range []string{pausedPrefix(envID), instancePrefix(envID), shipRecordPrefix(envID)} {
		kv, err := call(ctx, func() (map[string]string, error) { return listPoolMeta(e.dstIO, prefix) })
		if err != nil {
			return fmt.Errorf("list the records of environment %s in pool %s on storage %s: %w", envID, e.dst.m.Pool, e.dst.key(), err)
		}
		for k := range kv {
			if !strings.Contains(strings.TrimPrefix(k, prefix), ".") {
				keys = append(keys, k)
			}
		}
	}
	for _, k := range append(keys, preparedKey(envID)) {
		if err := do(ctx, func() error { return removePoolMeta(e.dstIO, k) }); err != nil {
			return fmt.Errorf("remove %s from pool %s on storage %s: %w", k, e.dst.m.Pool, e.dst.key(), err)
		}
	}
	return nil
}

// refuseWhileMirrored refuses the teardown while images of the
// environment are replicated (names), naming up to five.
func refuseWhileMirrored(env sdk.Environment, names []string) error {
	more := ""
	if len(names) > 5 {
		more = fmt.Sprintf(" and %d more", len(names)-5)
		names = names[:5]
	}
	return fmt.Errorf("environment %s still replicates %s%s; stop or delete those volumes first, or tear it down by force: %w",
		env.ID, strings.Join(names, ", "), more, sdk.ErrPrecondition)
}

// removePeer removes our peer from the target pool and checks it is gone.
func (b *Backend) removePeer(ctx context.Context, env sdk.Environment, e *envConns, ours *rbd.MirrorPeerSite) error {
	if err := do(ctx, func() error { return rbd.RemoveMirrorPeerSite(e.dstIO, ours.UUID) }); err != nil && !errors.Is(err, rbd.ErrNotFound) {
		return fmt.Errorf("remove mirror peer %s from pool %s on storage %s: %w", ours.UUID, e.dst.m.Pool, e.dst.key(), err)
	}
	if again, _, err := e.peers(ctx); err != nil || again != nil {
		return fmt.Errorf("mirror peer of storage %s is still on pool %s of storage %s (%v): %w", e.src.key(), e.dst.m.Pool, e.dst.key(), err, sdk.ErrRetryable)
	}
	b.log.Info("removed mirror peer", "env", env.ID, "pool", e.dst.m.Pool, "target", e.dst.key(), "uuid", ours.UUID)
	return nil
}

// removeTxPeer removes the tx-only peer rbd-mirror registered for the
// target on the source pool: it is ours to remove too (best effort:
// nothing depends on it).
func (e *envConns) removeTxPeer(ctx context.Context) {
	list, err := call(ctx, func() ([]*rbd.MirrorPeerSite, error) { return rbd.ListMirrorPeerSite(e.srcIO) })
	if err != nil {
		return
	}
	for _, p := range list {
		if p.Direction == rbd.MirrorPeerDirectionTx && p.SiteName == e.dstSite {
			_ = do(ctx, func() error { return rbd.RemoveMirrorPeerSite(e.srcIO, p.UUID) })
		}
	}
}

// removeEnvFiles removes the environment's run directory (and the last
// release's marker and paused files), and the files of its storages no
// other environment on this host uses.
func (b *Backend) removeEnvFiles(envID string, e *envConns) error {
	for _, p := range []string{filepath.Join(b.stateDir, envID+".prepared"), filepath.Join(b.stateDir, "paused", envID+".json")} {
		if err := removeFile(p); err != nil {
			return err
		}
	}
	if err := os.RemoveAll(b.runDir(envID)); err != nil {
		return err
	}
	for _, sd := range []side{e.src, e.dst} {
		if !b.storageInUse(sd.key(), envID) {
			if err := b.removeStorageFiles(sd.s, sd.m); err != nil {
				return err
			}
		}
	}
	return nil
}

// mirroredImages lists the images still replicated in environment envID:
// mirror-enabled primaries of the source pool, non-primaries of the
// target pool; of the pools that are open. An image whose mark
// (image_mark.go) names another environment is that one's (a source pool
// shared with it); an image with no mark may be a volume started before
// marks existed, and counts.
func (e *envConns) mirroredImages(ctx context.Context, envID string) ([]string, error) {
	var names []string
	for i, p := range e.pools() {
		if p.io == nil {
			continue
		}
		primary := i == 0
		items, err := call(ctx, func() ([]rbd.MirrorImageInfoItem, error) {
			return rbd.MirrorImageInfoList(p.io, nil, "", 0)
		})
		if err != nil {
			return nil, fmt.Errorf("list mirrored images of pool %s on storage %s: %w", p.s.m.Pool, p.s.key(), err)
		}
		for _, it := range items {
			if it.Info.State != rbd.MirrorImageEnabled || it.Info.Primary != primary {
				continue
			}
			mark, err := call(ctx, func() (string, error) {
				env, _, err := imageMark(p.io, it.ID)
				return env, err
			})
			if err != nil {
				return nil, fmt.Errorf("read the mark of image id %s in pool %s on storage %s: %w", it.ID, p.s.m.Pool, p.s.key(), err)
			}
			if mark != "" && mark != envID {
				continue
			}
			name, err := call(ctx, func() (string, error) { return imageNameByID(p.io, it.ID) })
			if err != nil {
				name = "id " + it.ID
			}
			names = append(names, fmt.Sprintf("%s/%s on storage %s", p.s.m.Pool, name, p.s.key()))
		}
	}
	return names, nil
}

// imageNameByID reads an image's name from the pool's rbd_directory
// object (key "id_<id>", value a length-prefixed string): an image opened
// by id does not know its name.
func imageNameByID(io *rados.IOContext, id string) (string, error) {
	vals, err := io.GetOmapValues("rbd_directory", "", "id_"+id, 1)
	if err != nil {
		return "", err
	}
	v, ok := vals["id_"+id]
	if !ok || len(v) < 4 {
		return "", fmt.Errorf("image id %s not in rbd_directory", id)
	}
	n := int(binary.LittleEndian.Uint32(v[:4]))
	if n > len(v)-4 {
		return "", fmt.Errorf("image id %s: malformed rbd_directory entry", id)
	}
	return string(v[4 : 4+n]), nil
}
