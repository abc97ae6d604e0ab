package cephrbd

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/ceph/go-ceph/rados"
	"github.com/ceph/go-ceph/rbd"

	"github.com/cdmdr/mirror/plugins/sdk"
)

// TeardownEnvironment implements sdk.Backend: refused while an image of
// the pair is mirrored; then it stops rbd-mirror, removes the peers and
// the environment's files.
func (b *Backend) TeardownEnvironment(ctx context.Context, env sdk.Environment) error {
	e, err := b.openEnv(ctx, env)
	if err != nil {
		return err
	}
	defer e.close()
	ours, _, err := e.peers(ctx)
	if err != nil {
		return err
	}
	if ours != nil || b.prepared(env.ID) {
		if err := e.refuseWhileMirrored(ctx, env); err != nil {
			return err
		}
	}
	if err := b.stopDaemon(ctx, env, e.dst); err != nil {
		return err
	}
	if ours != nil {
		if err := b.removePeer(ctx, env, e, ours); err != nil {
			return err
		}
	}
	e.removeTxPeer(ctx)
	return b.removeEnvFiles(env.ID, e)
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

// stopDaemon stops the environment's rbd-mirror, if one runs.
func (b *Backend) stopDaemon(ctx context.Context, env sdk.Environment, dst side) error {
	d := b.existingDaemon(env, dst)
	if d == nil {
		return nil
	}
	if err := d.stop(ctx); err != nil {
		return fmt.Errorf("stop rbd-mirror of environment %s: %w", env.ID, err)
	}
	b.mu.Lock()
	delete(b.daemons, env.ID)
	b.mu.Unlock()
	return nil
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

// removeEnvFiles removes the environment's marker, paused set and run
// directory, and the files of its storages no other environment uses.
func (b *Backend) removeEnvFiles(envID string, e *envConns) error {
	for _, p := range []string{b.markerPath(envID), b.pausedSet(envID).path} {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
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
