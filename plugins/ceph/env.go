package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/ceph/go-ceph/rados"
	"github.com/ceph/go-ceph/rbd"

	"github.com/cdmdr/mirror/plugins/sdk"
)

var rbdGetMirrorSiteName = rbd.GetMirrorSiteName

// envConns is an environment's two sides with admin connections and
// pools open.
type envConns struct {
	src, dst         side
	srcConn, dstConn *rados.Conn
	srcIO, dstIO     *rados.IOContext
	srcSite, dstSite string
	srcMonHost       string
}

func (e *envConns) close() {
	if e.srcIO != nil {
		e.srcIO.Destroy()
	}
	if e.dstIO != nil {
		e.dstIO.Destroy()
	}
}

func (b *Backend) openEnv(ctx context.Context, env sdk.Environment) (*envConns, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := checkEnvID(env); err != nil {
		return nil, err
	}
	e := &envConns{}
	var err error
	if e.src, err = b.side(env.Source); err != nil {
		return nil, err
	}
	if e.dst, err = b.side(env.Target); err != nil {
		return nil, err
	}
	if e.srcConn, err = b.conn(ctx, e.src, true); err != nil {
		return nil, err
	}
	if e.dstConn, err = b.conn(ctx, e.dst, true); err != nil {
		return nil, err
	}
	if e.srcIO, err = b.ioctx(ctx, e.src, true); err != nil {
		return nil, err
	}
	if e.dstIO, err = b.ioctx(ctx, e.dst, true); err != nil {
		e.close()
		return nil, err
	}
	if e.srcSite, err = siteName(ctx, e.srcConn); err != nil {
		e.close()
		return nil, fmt.Errorf("mirror site name of storage %s: %w", e.src.key(), err)
	}
	if e.dstSite, err = siteName(ctx, e.dstConn); err != nil {
		e.close()
		return nil, fmt.Errorf("mirror site name of storage %s: %w", e.dst.key(), err)
	}
	if e.srcMonHost, err = e.srcConn.GetConfigOption("mon_host"); err != nil {
		e.close()
		return nil, fmt.Errorf("mon_host of storage %s: %w", e.src.key(), err)
	}
	return e, nil
}

// peerOf finds our peer (the source) among the target pool's peers; a
// peer that pulls from elsewhere is returned as foreign.
func (e *envConns) peers(ctx context.Context) (ours *rbd.MirrorPeerSite, foreign *rbd.MirrorPeerSite, err error) {
	list, err := call(ctx, func() ([]*rbd.MirrorPeerSite, error) { return rbd.ListMirrorPeerSite(e.dstIO) })
	if err != nil {
		return nil, nil, fmt.Errorf("list mirror peers of pool %s on storage %s: %w", e.dst.m.Pool, e.dst.key(), err)
	}
	for _, p := range list {
		if p.Direction == rbd.MirrorPeerDirectionTx {
			continue // registered by an rbd-mirror that pulls from this pool
		}
		if p.SiteName == e.srcSite {
			ours = p
			continue
		}
		attrs, _ := call(ctx, func() (map[string]string, error) { return rbd.GetAttributesMirrorPeerSite(e.dstIO, p.UUID) })
		if attrs["mon_host"] != "" && attrs["mon_host"] == e.srcMonHost {
			ours = p
			continue
		}
		if foreign == nil {
			foreign = p
		}
	}
	return ours, foreign, nil
}

// PrepareEnvironment implements sdk.Backend.
func (b *Backend) PrepareEnvironment(ctx context.Context, env sdk.Environment) error {
	e, err := b.openEnv(ctx, env)
	if err != nil {
		return err
	}
	defer e.close()
	if e.srcSite == e.dstSite {
		return fmt.Errorf("storages %s and %s have the same mirror site name %q (the same cluster?); rbd-mirror needs two clusters: %w",
			e.src.key(), e.dst.key(), e.srcSite, sdk.ErrPrecondition)
	}
	// Check everything that can refuse before changing anything.
	ours, foreign, err := e.peers(ctx)
	if err != nil {
		return err
	}
	if foreign != nil {
		return fmt.Errorf("target pool %s on storage %s already pulls from another cluster: mirror peer site %q (uuid %s, client %s); "+
			"rbd-mirror replicates into one pool from one source only, so this environment cannot share it. "+
			"If that peer is stale, remove it on the target cluster with `rbd mirror pool peer remove %s %s`: %w",
			e.dst.m.Pool, e.dst.key(), foreign.SiteName, foreign.UUID, foreign.ClientName, e.dst.m.Pool, foreign.UUID, sdk.ErrPrecondition)
	}
	pools := []struct {
		s    side
		io   *rados.IOContext
		mode rbd.MirrorMode
	}{{s: e.src, io: e.srcIO}, {s: e.dst, io: e.dstIO}}
	for i, sd := range pools {
		mode, err := call(ctx, func() (rbd.MirrorMode, error) { return rbd.GetMirrorMode(sd.io) })
		if err != nil {
			return fmt.Errorf("mirror mode of pool %s on storage %s: %w", sd.s.m.Pool, sd.s.key(), err)
		}
		if mode == rbd.MirrorModePool {
			return fmt.Errorf("pool %s on storage %s mirrors in pool mode (every image); this product needs image mode. "+
				"Switch it with `rbd mirror pool enable %s image` once you know no image relies on pool mode: %w",
				sd.s.m.Pool, sd.s.key(), sd.s.m.Pool, sdk.ErrPrecondition)
		}
		pools[i].mode = mode
	}
	// Nothing refused: now change what needs changing.
	for _, sd := range pools {
		if sd.mode == rbd.MirrorModeDisabled {
			if err := do(ctx, func() error { return rbd.SetMirrorMode(sd.io, rbd.MirrorModeImage) }); err != nil {
				return fmt.Errorf("enable image mirroring on pool %s of storage %s: %w", sd.s.m.Pool, sd.s.key(), err)
			}
		}
	}
	key, err := b.peerKey(ctx, e)
	if err != nil {
		return err
	}
	if ours == nil {
		uuid, err := call(ctx, func() (string, error) {
			return rbd.AddMirrorPeerSite(e.dstIO, e.srcSite, peerClient, rbd.MirrorPeerDirectionRx)
		})
		if err != nil {
			return fmt.Errorf("add storage %s as mirror peer of pool %s on storage %s: %w", e.src.key(), e.dst.m.Pool, e.dst.key(), err)
		}
		ours = &rbd.MirrorPeerSite{UUID: uuid, SiteName: e.srcSite, ClientName: peerClient}
		b.log.Info("added mirror peer", "env", env.ID, "pool", e.dst.m.Pool, "target", e.dst.key(), "peer_site", e.srcSite, "uuid", uuid)
	}
	attrs, err := call(ctx, func() (map[string]string, error) { return rbd.GetAttributesMirrorPeerSite(e.dstIO, ours.UUID) })
	if err != nil || attrs["mon_host"] != e.srcMonHost || attrs["key"] != key {
		err := do(ctx, func() error {
			return rbd.SetAttributesMirrorPeerSite(e.dstIO, ours.UUID, map[string]string{"mon_host": e.srcMonHost, "key": key})
		})
		if err != nil {
			return fmt.Errorf("set the address and key of mirror peer %s on pool %s of storage %s: %w", ours.UUID, e.dst.m.Pool, e.dst.key(), err)
		}
	}
	mk, _ := json.Marshal(marker{Source: e.src.key(), Target: e.dst.key(), TargetSite: e.dstSite})
	if err := writePrivate(b.markerPath(env.ID), mk); err != nil {
		return err
	}
	d, err := b.daemon(env, e.dst)
	if err != nil {
		return fmt.Errorf("start rbd-mirror for storage %s: %w", e.dst.key(), err)
	}
	// Ready once rbd-mirror answers on its admin socket.
	for {
		if d.running() {
			if _, err := asokCommand(ctx, d.asok, "rbd mirror status"); err == nil {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for rbd-mirror of environment %s: %w", env.ID, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// peerKey creates (or reads) the peer user on the source and returns its
// key. The key is a secret: it goes only into the peer's attributes.
func (b *Backend) peerKey(ctx context.Context, e *envConns) (string, error) {
	cmd, _ := json.Marshal(map[string]any{
		"prefix": "auth get-or-create", "entity": peerClient,
		"caps": []string{"mon", "profile rbd-mirror-peer", "osd", "profile rbd"}, "format": "json",
	})
	out, err := call(ctx, func() ([]byte, error) {
		out, _, err := e.srcConn.MonCommand(cmd)
		return out, err
	})
	if err != nil {
		return "", fmt.Errorf("create user %s on storage %s: %w", peerClient, e.src.key(), err)
	}
	var entries []struct {
		Key string `json:"key"`
	}
	if err := json.Unmarshal(out, &entries); err != nil || len(entries) == 0 || entries[0].Key == "" {
		return "", fmt.Errorf("create user %s on storage %s: the monitors' answer holds no key", peerClient, e.src.key())
	}
	return entries[0].Key, nil
}

// EnvironmentStatus implements sdk.Backend.
func (b *Backend) EnvironmentStatus(ctx context.Context, env sdk.Environment) (sdk.EnvironmentHealth, error) {
	if err := ctx.Err(); err != nil {
		return sdk.EnvironmentHealth{}, err
	}
	if err := checkEnvID(env); err != nil {
		return sdk.EnvironmentHealth{}, err
	}
	if !b.prepared(env.ID) {
		return sdk.EnvironmentHealth{Description: "the environment is not prepared"}, nil
	}
	e, err := b.openEnv(ctx, env)
	if err != nil {
		return sdk.EnvironmentHealth{}, err
	}
	defer e.close()
	var missing []string
	for _, sd := range []struct {
		s  side
		io *rados.IOContext
	}{{e.src, e.srcIO}, {e.dst, e.dstIO}} {
		mode, err := call(ctx, func() (rbd.MirrorMode, error) { return rbd.GetMirrorMode(sd.io) })
		if err != nil {
			return sdk.EnvironmentHealth{}, fmt.Errorf("mirror mode of pool %s on storage %s: %w", sd.s.m.Pool, sd.s.key(), err)
		}
		if mode != rbd.MirrorModeImage {
			missing = append(missing, fmt.Sprintf("pool %s on storage %s mirrors in mode %s, not image", sd.s.m.Pool, sd.s.key(), mode))
		}
	}
	ours, foreign, err := e.peers(ctx)
	if err != nil {
		return sdk.EnvironmentHealth{}, err
	}
	if ours == nil {
		missing = append(missing, fmt.Sprintf("pool %s on storage %s has no mirror peer for storage %s", e.dst.m.Pool, e.dst.key(), e.src.key()))
	}
	if foreign != nil {
		missing = append(missing, fmt.Sprintf("pool %s on storage %s also pulls from mirror peer site %q (uuid %s)", e.dst.m.Pool, e.dst.key(), foreign.SiteName, foreign.UUID))
	}
	d, err := b.daemon(env, e.dst)
	if err != nil || !d.running() {
		missing = append(missing, fmt.Sprintf("rbd-mirror for storage %s is not running (log under %s/log)", e.dst.key(), b.stateDir))
	} else if foreign := foreignInstances(ctx, b.clusterAsoks(env.ID), e.dst.m.Pool); len(foreign) > 0 {
		missing = append(missing, fmt.Sprintf("rbd-mirror instances this plugin does not run (ids %s) replicate pool %s on storage %s: "+
			"they take some of its images, where the plugin can neither pause nor watch them; stop those rbd-mirror daemons "+
			"(the plugin runs its own for this environment)", strings.Join(foreign, ", "), e.dst.m.Pool, e.dst.key()))
	}
	if len(missing) > 0 {
		return sdk.EnvironmentHealth{Description: strings.Join(missing, "; ")}, nil
	}
	return sdk.EnvironmentHealth{Ready: true, Description: "pools in image mode, peer set, rbd-mirror running"}, nil
}

// mirroredImages lists the images still replicated in the environment:
// mirror-enabled primaries of the source pool, non-primaries of the
// target pool.
func (e *envConns) mirroredImages(ctx context.Context) ([]string, error) {
	var names []string
	for _, sd := range []struct {
		s       side
		io      *rados.IOContext
		primary bool
	}{{e.src, e.srcIO, true}, {e.dst, e.dstIO, false}} {
		items, err := call(ctx, func() ([]rbd.MirrorImageInfoItem, error) {
			return rbd.MirrorImageInfoList(sd.io, nil, "", 0)
		})
		if err != nil {
			return nil, fmt.Errorf("list mirrored images of pool %s on storage %s: %w", sd.s.m.Pool, sd.s.key(), err)
		}
		for _, it := range items {
			if it.Info.State != rbd.MirrorImageEnabled || it.Info.Primary != sd.primary {
				continue
			}
			name, err := call(ctx, func() (string, error) { return imageNameByID(sd.io, it.ID) })
			if err != nil {
				name = "id " + it.ID
			}
			names = append(names, fmt.Sprintf("%s/%s on storage %s", sd.s.m.Pool, name, sd.s.key()))
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

// TeardownEnvironment implements sdk.Backend.
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
		names, err := e.mirroredImages(ctx)
		if err != nil {
			return err
		}
		if len(names) > 0 {
			more := ""
			if len(names) > 5 {
				more = fmt.Sprintf(" and %d more", len(names)-5)
				names = names[:5]
			}
			return fmt.Errorf("environment %s still replicates %s%s; stop or delete those volumes first: %w",
				env.ID, strings.Join(names, ", "), more, sdk.ErrPrecondition)
		}
	}
	if d := b.existingDaemon(env, e.dst); d != nil {
		if err := d.stop(ctx); err != nil {
			return fmt.Errorf("stop rbd-mirror of environment %s: %w", env.ID, err)
		}
		b.mu.Lock()
		delete(b.daemons, env.ID)
		b.mu.Unlock()
	}
	if ours != nil {
		if err := do(ctx, func() error { return rbd.RemoveMirrorPeerSite(e.dstIO, ours.UUID) }); err != nil && !errors.Is(err, rbd.ErrNotFound) {
			return fmt.Errorf("remove mirror peer %s from pool %s on storage %s: %w", ours.UUID, e.dst.m.Pool, e.dst.key(), err)
		}
		if again, _, err := e.peers(ctx); err != nil || again != nil {
			return fmt.Errorf("mirror peer of storage %s is still on pool %s of storage %s (%v): %w", e.src.key(), e.dst.m.Pool, e.dst.key(), err, sdk.ErrRetryable)
		}
		b.log.Info("removed mirror peer", "env", env.ID, "pool", e.dst.m.Pool, "target", e.dst.key(), "uuid", ours.UUID)
	}
	// rbd-mirror registered the target as a tx-only peer of the source
	// pool; it is ours to remove too (best effort: nothing depends on it).
	if list, err := call(ctx, func() ([]*rbd.MirrorPeerSite, error) { return rbd.ListMirrorPeerSite(e.srcIO) }); err == nil {
		for _, p := range list {
			if p.Direction == rbd.MirrorPeerDirectionTx && p.SiteName == e.dstSite {
				_ = do(ctx, func() error { return rbd.RemoveMirrorPeerSite(e.srcIO, p.UUID) })
			}
		}
	}
	for _, p := range []string{b.markerPath(env.ID), b.pausedSet(env.ID).path} {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	if err := os.RemoveAll(b.runDir(env.ID)); err != nil {
		return err
	}
	for _, sd := range []side{e.src, e.dst} {
		if !b.storageInUse(sd.key(), env.ID) {
			if err := b.removeStorageFiles(sd.s, sd.m); err != nil {
				return err
			}
		}
	}
	return nil
}
