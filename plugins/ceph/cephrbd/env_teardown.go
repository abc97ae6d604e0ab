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
// the pair is mirrored; then it stops rbd-mirror, removes the peers, the
// environment's records in the target pool and its files.
func (b *Backend) TeardownEnvironment(ctx context.Context, env sdk.Environment, force bool) (sdk.CleanupReport, error) {
	return sdk.CleanupReport{}, b.teardownEnvironment(ctx, env)
}

func (b *Backend) teardownEnvironment(ctx context.Context, env sdk.Environment) error {
	e, err := b.openEnv(ctx, env)
	if err != nil {
		return err
	}
	defer e.close()
	ours, _, err := e.peers(ctx)
	if err != nil {
		return err
	}
	prepared, err := b.prepared(ctx, e.dstIO, env.ID)
	if err != nil {
		return err
	}
	if ours != nil || prepared {
		if err := e.refuseWhileMirrored(ctx, env); err != nil {
			return err
		}
	}
	if err := b.stopDaemon(ctx, env.ID); err != nil {
		return err
	}
	if ours != nil {
		if err := b.removePeer(ctx, env, e, ours); err != nil {
			return err
		}
	}
	e.removeTxPeer(ctx)
	if err := removeEnvRecords(ctx, e, env.ID); err != nil {
		return err
	}
	return b.removeEnvFiles(env.ID, e)
}

// removeEnvRecords removes what the target pool's metadata holds of the
// environment: its paused images, its rbd-mirror instances, and last its
// prepared marker (a teardown cut short is done again).
func removeEnvRecords(ctx context.Context, e *envConns, envID string) error {
	var keys []string
	for _, prefix := range []string{pausedPrefix(envID), instancePrefix(envID)} {
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
// environment are replicated, naming up to five.
func (e *envConns) refuseWhileMirrored(ctx context.Context, env sdk.Environment) error {
	names, err := e.mirroredImages(ctx)
	if err != nil || len(names) == 0 {
		return err
	}
	more := ""
	if len(names) > 5 {
		more = fmt.Sprintf(" and %d more", len(names)-5)
		names = names[:5]
	}
	return fmt.Errorf("environment %s still replicates %s%s; stop or delete those volumes first: %w",
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

// mirroredImages lists the images still replicated in the environment:
// mirror-enabled primaries of the source pool, non-primaries of the
// target pool.
func (e *envConns) mirroredImages(ctx context.Context) ([]string, error) {
	var names []string
	for i, p := range e.pools() {
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
