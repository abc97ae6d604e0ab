package cephrbd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/ceph/go-ceph/rados"
	"github.com/ceph/go-ceph/rbd"
	"github.com/ceph/go-ceph/rbd/admin"

	"github.com/cdmdr/mirror/plugins/sdk"
)

// poolLeftovers reads the storage's pool, as the most privileged user
// its metadata gives: mirror-enabled images and the snapshots protected
// on them, peers and mirror mode, the plugin's records.
func (b *Backend) poolLeftovers(ctx context.Context, sd side, h held) ([]sdk.Leftover, error) {
	conn, err := b.conn(ctx, sd, true)
	if err != nil {
		return nil, fmt.Errorf("find leftovers on storage %s: %w", sd.key(), err)
	}
	io, err := b.ioctx(ctx, sd, true)
	if err != nil {
		return nil, fmt.Errorf("find leftovers on storage %s: %w", sd.key(), err)
	}
	defer releaseAfter(ctx, io.Destroy)
	p := poolScan{sd: sd, conn: conn, io: io, h: h, where: fmt.Sprintf("in pool %s on storage %s", sd.m.Pool, sd.key())}
	var out []sdk.Leftover
	for _, scan := range []func(context.Context) ([]sdk.Leftover, error){p.images, p.shipImages, p.pairings, p.records, p.feedRecord, p.recorded} {
		found, err := scan(ctx)
		if err != nil {
			return nil, fmt.Errorf("find leftovers %s: %w", p.where, err)
		}
		out = append(out, found...)
	}
	return out, nil
}

// poolScan is one storage's pool, open, and what the query holds.
type poolScan struct {
	sd    side
	conn  *rados.Conn
	io    *rados.IOContext
	h     held
	where string // "in pool P on storage K"
}

// images lists the mirror-enabled images no volume accounts for: source
// images (primaries) and copies (non-primaries), and the snapshots
// AddSnapshot protected on such a source image. Images with mirroring
// disabled are volumes of their own: never leftovers.
func (p poolScan) images(ctx context.Context) ([]sdk.Leftover, error) {
	items, err := call(ctx, func() ([]rbd.MirrorImageInfoItem, error) { return rbd.MirrorImageInfoList(p.io, nil, "", 0) })
	if err != nil {
		return nil, fmt.Errorf("list mirror-enabled images: %w", err)
	}
	var out []sdk.Leftover
	for _, it := range items {
		if it.Info.State != rbd.MirrorImageEnabled {
			continue
		}
		name, err := call(ctx, func() (string, error) { return imageNameByID(p.io, it.ID) })
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			out = append(out, p.unnamedImage(it, err))
			continue
		}
		if it.Info.Primary && !p.h.sources[name] {
			out = append(out, p.sourceImage(name, it.Mode, p.schedules(ctx, name, it.Mode)))
			snaps, err := p.protectedSnapshots(ctx, name)
			if err != nil && !errors.Is(err, rbd.ErrNotFound) { // gone since the list: nothing left
				return nil, err
			}
			out = append(out, snaps...)
		}
		if !it.Info.Primary && !p.h.targets[name] {
			if env, ok, err := imageMark(p.io, it.ID); err == nil && ok && p.h.envs[env] && p.h.envTargets[env] != p.h.key {
				out = append(out, p.unintendedCopy(name, env, it.Mode))
				continue
			}
			l, err := p.copyImage(ctx, name, it.Mode)
			if errors.Is(err, rbd.ErrNotFound) {
				continue
			}
			if err != nil {
				return nil, err
			}
			out = append(out, l)
		}
	}
	return out, nil
}

// unnamedImage is a mirror-enabled image whose name the pool's directory
// does not give (an image being deleted, in the trash): no query can
// account for it, and no command is safe without a look first.
func (p poolScan) unnamedImage(it rbd.MirrorImageInfoItem, err error) sdk.Leftover {
	kind, role := "volume", "source image (primary)"
	if !it.Info.Primary {
		kind, role = "copy", "non-primary copy"
	}
	return sdk.Leftover{
		Kind: kind,
		Name: fmt.Sprintf("image id %s %s", it.ID, p.where),
		Description: fmt.Sprintf("a mirror-enabled %s (global id %s) whose name could not be read (%v): "+
			"an image being deleted, or in the trash", role, it.Info.GlobalID, err),
		Remedy: fmt.Sprintf("Look at it with `rbd trash ls --all --long %s` and `rbd info --image-id %s -p %s`: "+
			"an image being deleted goes once its deletion ends; clean what stays by hand.", p.sd.m.Pool, it.ID, p.sd.m.Pool),
	}
}

func modeWord(m rbd.ImageMirrorMode) string {
	if m == rbd.ImageMirrorModeSnapshot {
		return modeSnapshot
	}
	return modeJournal
}

// sourceImage is a leftover mirror-enabled source image: the image is a
// user's volume, its mirroring (and snapshot schedule) the leftover.
func (p poolScan) sourceImage(name string, mode rbd.ImageMirrorMode, sched imageSchedules) sdk.Leftover {
	spec := p.sd.m.Pool + "/" + name
	check := fmt.Sprintf("the daemon no longer replicates the volume (`rbd mirror image status %s`). Its copy on the target "+
		"cluster, if one is left, is a leftover of the target storage: an rbd-mirror still running there deletes it once "+
		"mirroring is disabled here, so clean (keep) the copy first if it is to be kept.", spec)
	if sched.unknown {
		check += " Whether it has a mirror snapshot schedule could not be read (the manager did not answer): " +
			"list it with rbd mirror snapshot schedule ls --pool " + p.sd.m.Pool + " --image " + name + " and remove it too."
	}
	cmds := append(sched.remove, "rbd mirror image disable "+spec)
	return sdk.Leftover{
		Kind: "volume",
		Name: fmt.Sprintf("image %s on storage %s", spec, p.sd.key()),
		Description: fmt.Sprintf("mirroring (%s mode) is enabled on this source image (primary), and no volume the daemon holds "+
			"replicates it from this storage", modeWord(mode)),
		Remedy: remedy(check+" Disabling mirroring keeps the image, a user's volume.", cmds...),
	}
}

// imageSchedules are the commands that remove an image's mirror snapshot
// schedules; unknown when they could not be read.
type imageSchedules struct {
	remove  []string
	unknown bool
}

// schedules reads a snapshot-mode source image's mirror snapshot
// schedules (addSchedule gives it the storage's) from the manager.
func (p poolScan) schedules(ctx context.Context, name string, mode rbd.ImageMirrorMode) imageSchedules {
	if mode != rbd.ImageMirrorModeSnapshot {
		return imageSchedules{}
	}
	list, err := call(ctx, func() ([]admin.SnapshotSchedule, error) {
		return admin.NewFromConn(p.conn).MirrorSnashotSchedule().List(admin.NewLevelSpec(p.sd.m.Pool, "", name))
	})
	if err != nil {
		return imageSchedules{unknown: true}
	}
	var out imageSchedules
	for _, s := range list {
		if s.Name != name && !strings.HasSuffix(s.Name, "/"+name) {
			continue
		}
		for _, t := range s.Schedule {
			c := fmt.Sprintf("rbd mirror snapshot schedule remove --pool %s --image %s %s", p.sd.m.Pool, name, t.Interval)
			if t.StartTime != "" {
				c += " " + shellQuote(string(t.StartTime))
			}
			out.remove = append(out.remove, c)
		}
	}
	return out
}

// protectedSnapshots lists the snapshot-{uuid} snapshots protected on a
// leftover source image, as AddSnapshot protects recovery points.
func (p poolScan) protectedSnapshots(ctx context.Context, name string) ([]sdk.Leftover, error) {
	type snap struct{ name string }
	snaps, err := call(ctx, func() ([]snap, error) {
		img, err := rbd.OpenImageReadOnly(p.io, name, rbd.NoSnapshot)
		if err != nil {
			return nil, err
		}
		defer img.Close()
		all, err := img.GetSnapshotNames()
		if err != nil {
			return nil, err
		}
		var out []snap
		for _, s := range all {
			if !strings.HasPrefix(s.Name, "snapshot-") {
				continue
			}
			if prot, err := img.GetSnapshot(s.Name).IsProtected(); err != nil || !prot {
				continue
			}
			out = append(out, snap{name: s.Name})
		}
		return out, nil
	})
	if err != nil {
		return nil, fmt.Errorf("snapshots of %s: %w", name, err)
	}
	var out []sdk.Leftover
	for _, s := range snaps {
		at := fmt.Sprintf("%s/%s@%s", p.sd.m.Pool, name, s.name)
		out = append(out, sdk.Leftover{
			Kind: "snapshot",
			Name: fmt.Sprintf("snapshot %s on storage %s", at, p.sd.key()),
			Description: "protected on a mirror-enabled source image no volume the daemon holds accounts for, " +
				"as the plugin protects a recovery point for the target to clone",
			Remedy: remedy(fmt.Sprintf("no clone depends on it (`rbd children %s`), and OpenStack does not keep it protected "+
				"for a snapshot of its own. Unprotecting keeps the snapshot.", at),
				"rbd snap unprotect "+at),
		})
	}
	return out, nil
}

// copyImage is a leftover non-primary copy. It may be the last copy of
// the volume (its source site lost): the remedy keeps it, as a volume of
// its own, and lifts the hold a pause put on it.
func (p poolScan) copyImage(ctx context.Context, name string, mode rbd.ImageMirrorMode) (sdk.Leftover, error) {
	spec := p.sd.m.Pool + "/" + name
	held, err := call(ctx, func() (bool, error) {
		img, err := rbd.OpenImageReadOnly(p.io, name, rbd.NoSnapshot)
		if err != nil {
			return false, err
		}
		defer img.Close()
		_, err = img.GetMetadata(holdMetaKey)
		return err == nil, nil
	})
	if err != nil {
		return sdk.Leftover{}, fmt.Errorf("read the copy %s: %w", name, err)
	}
	cmds := []string{"rbd mirror image promote --force " + spec, "rbd mirror image disable " + spec}
	desc := fmt.Sprintf("a non-primary mirror copy (%s mode) no volume the daemon holds replicates into this storage", modeWord(mode))
	if held {
		cmds = append(cmds, "rbd image-meta remove "+spec+" "+holdMetaKey)
		desc += "; a pause holds its replay (image metadata " + holdMetaKey + ")"
	}
	return sdk.Leftover{
		Kind:        "copy",
		Name:        fmt.Sprintf("image %s on storage %s", spec, p.sd.key()),
		Description: desc,
		Remedy: remedy(fmt.Sprintf("no rbd-mirror replays into it any more (the process leftovers stopped; `rbd mirror image status %s`; "+
			"a copy whose first sync never ended is not a usable volume, and in snapshot mode one without a complete mirror "+
			"snapshot cannot be promoted). It may be the last copy of the volume when its source is lost: the commands keep it "+
			"as a standalone volume, to delete like any volume once it is known not to be needed.", spec), cmds...),
	}, nil
}

// holdMetaKey is the image metadata key of a pause's hold (hold.go),
// as `rbd image-meta` names it.
const holdMetaKey = "conf_rbd_mirroring_replay_delay"

// pairings lists the peers the plugin (or the rbd-mirror it ran)
// registered on the pool that no environment accounts for, and the
// pool's image mirror mode once no environment uses the pool at all.
func (p poolScan) pairings(ctx context.Context) ([]sdk.Leftover, error) {
	peers, err := call(ctx, func() ([]*rbd.MirrorPeerSite, error) { return rbd.ListMirrorPeerSite(p.io) })
	if err != nil {
		return nil, fmt.Errorf("list mirror peers: %w", err)
	}
	pool := p.sd.m.Pool
	var out []sdk.Leftover
	for _, peer := range peers {
		remove := fmt.Sprintf("rbd mirror pool peer remove %s %s", pool, peer.UUID)
		name := fmt.Sprintf("mirror peer %s (site %s) of pool %s on storage %s", peer.UUID, peer.SiteName, pool, p.sd.key())
		switch {
		case peer.Direction == rbd.MirrorPeerDirectionTx && !p.h.asSource:
			out = append(out, sdk.Leftover{
				Kind: "pairing", Name: name,
				Description: "registered by an rbd-mirror of site " + peer.SiteName + " that pulled from this pool (tx), " +
					"and no environment the daemon holds has this storage as its source",
				Remedy: remedy(fmt.Sprintf("no rbd-mirror of that site pulls from this pool any more, the plugin's nor another's "+
					"(`rbd mirror pool status %s --verbose`); a running one registers the peer again.", pool), remove),
			})
		case peer.Direction != rbd.MirrorPeerDirectionTx && peer.ClientName == peerClient && !p.h.asTarget:
			out = append(out, sdk.Leftover{
				Kind: "pairing", Name: name,
				Description: "the source site " + peer.SiteName + " registered by PrepareEnvironment (rx, as " + peerClient +
					"), and no environment the daemon holds has this storage as its target",
				Remedy: remedy(fmt.Sprintf("no rbd-mirror replicates into this pool any more (the process leftovers stopped) "+
					"and no copy is left mirror-enabled (`rbd mirror pool status %s --verbose`).", pool), remove),
			})
		}
	}
	if p.h.uses() {
		return out, nil
	}
	mode, err := call(ctx, func() (rbd.MirrorMode, error) { return rbd.GetMirrorMode(p.io) })
	if err != nil {
		return nil, fmt.Errorf("read the mirror mode: %w", err)
	}
	if mode == rbd.MirrorModeImage {
		out = append(out, sdk.Leftover{
			Kind: "pairing",
			Name: fmt.Sprintf("mirror mode of pool %s on storage %s", pool, p.sd.key()),
			Description: "low severity: the pool mirrors in image mode, as PrepareEnvironment sets it, and no environment " +
				"the daemon holds uses this storage; harmless on its own",
			Remedy: remedy(fmt.Sprintf("nothing outside mirrord mirrors images of this pool, and the images and peers above are "+
				"cleaned: `rbd mirror pool info %s` lists no peer and `rbd mirror pool status %s` no image.", pool, pool),
				"rbd mirror pool disable "+pool),
		})
	}
	return out, nil
}

// records lists the plugin's records in the pool's metadata (poolmeta.go)
// of environments and volumes the query does not hold: prepared markers,
// paused images, rbd-mirror instances.
func (p poolScan) records(ctx context.Context) ([]sdk.Leftover, error) {
	kv, err := call(ctx, func() (map[string]string, error) { return listPoolMeta(p.io, metaPrefix) })
	if err != nil {
		return nil, fmt.Errorf("list the plugin's pool metadata: %w", err)
	}
	keys := make([]string, 0, len(kv))
	for k := range kv {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var out []sdk.Leftover
	for _, k := range keys {
		if l, ok := p.keptCopy(k, kv[k]); ok {
			out = append(out, l)
			continue
		}
		what, check, ok := p.record(k, kv[k])
		if !ok {
			continue
		}
		out = append(out, sdk.Leftover{
			Kind:        "record",
			Name:        fmt.Sprintf("pool metadata key %s %s", k, p.where),
			Description: what,
			Remedy:      remedy(check, p.removeMetaCommand(k)),
		})
	}
	return out, nil
}

// record says why the record key (value v) is a leftover, and what to
// check before removing it; ok is false when it is not one.
func (p poolScan) record(key, v string) (what, check string, ok bool) {
	switch {
	case strings.HasPrefix(key, preparedKey("")):
		env := strings.TrimPrefix(key, preparedKey(""))
		if p.h.envs[env] {
			return "", "", false
		}
		return "environment " + env + " is recorded as prepared on this target pool, and the daemon holds no such environment",
			"no mirrord knows environment " + env + " any more, and its rbd-mirror runs on no host (each host's process leftovers).", true
	case strings.HasPrefix(key, pausedPrefix("")):
		env, image, ok := lastDot(strings.TrimPrefix(key, pausedPrefix("")))
		if !ok || p.h.volumes[env+"/"+image] {
			return "", "", false
		}
		return "image " + image + " is recorded as paused in environment " + env + ", and the daemon holds no such volume",
			"no mirrord replicates " + image + " in environment " + env + " any more.", true
	case strings.HasPrefix(key, shipRecordPrefix("")):
		env, image, ok := lastDot(strings.TrimPrefix(key, shipRecordPrefix("")))
		if !ok || p.h.volumes[env+"/"+image] {
			return "", "", false
		}
		return "image " + image + " is recorded as shipped in environment " + env + ", and the daemon holds no such volume",
			"no mirrord replicates " + image + " in environment " + env + " any more (its ship copy, if any, is listed apart).", true
	case strings.HasPrefix(key, instancePrefix("")):
		env, id, ok := lastDot(strings.TrimPrefix(key, instancePrefix("")))
		if !ok || p.h.envs[env] {
			return "", "", false
		}
		var r instanceRecord
		_ = json.Unmarshal([]byte(v), &r)
		return fmt.Sprintf("rbd-mirror instance %s of environment %s (host %q, pid %d) is recorded here, and the daemon holds no such environment",
				id, env, r.Host, r.Pid),
			fmt.Sprintf("that rbd-mirror no longer runs (pid %d on host %q; that host's process leftovers).", r.Pid, r.Host), true
	}
	return "", "", false
}

// lastDot splits "<env>.<name>" at its last dot: an environment id may
// hold dots, an image name or instance id none.
func lastDot(s string) (env, name string, ok bool) {
	i := strings.LastIndexByte(s, '.')
	if i <= 0 || i == len(s)-1 {
		return "", "", false
	}
	return s[:i], s[i+1:], true
}

// removeMetaCommand removes one key of the pool's RBD metadata: librbd
// keeps it in the omap of the pool's rbd_info object, under "metadata_"
// and the key (the rbd CLI has no command for pool metadata).
func (p poolScan) removeMetaCommand(key string) string {
	return fmt.Sprintf("rados -p %s rmomapkey rbd_info %s", p.sd.m.Pool, shellQuote("metadata_"+key))
}

// recorded lists what earlier calls recorded they could not clean, as
// they recorded it, with how to remove each record once it is cleaned.
func (p poolScan) recorded(ctx context.Context) ([]sdk.Leftover, error) {
	list, err := recordedLeftovers(ctx, p.io)
	if err != nil || len(list) == 0 {
		return list, err
	}
	kv, err := call(ctx, func() (map[string]string, error) { return listPoolMeta(p.io, leftoverPrefix("")) })
	if err != nil {
		return nil, fmt.Errorf("list leftover records: %w", err)
	}
	for i, l := range list {
		if key := recordKey(kv, l); key != "" {
			list[i].Remedy = strings.TrimSpace(l.Remedy+" Once it is cleaned, remove its record "+p.where+":") +
				" `" + p.removeMetaCommand(key) + "`."
		}
	}
	return list, nil
}

// recordKey finds the key of a recorded leftover: the one whose value
// is the leftover as recordLeftover wrote it, or that its Name names
// (a record that does not decode).
func recordKey(kv map[string]string, l sdk.Leftover) string {
	data, _ := json.Marshal(l)
	for k, v := range kv {
		if v == string(data) || l.Name == "pool metadata key "+k {
			return k
		}
	}
	return ""
}

// keptCopy is a recovery point kept before a resync (keptpoint.go) of a
// volume the query does not hold: the copy and its record; ok is false
// for any other key, or a volume held.
func (p poolScan) keptCopy(key, v string) (sdk.Leftover, bool) {
	if !strings.HasPrefix(key, keptPrefix("")) {
		return sdk.Leftover{}, false
	}
	env, image, ok := lastDot(strings.TrimPrefix(key, keptPrefix("")))
	if !ok || p.h.volumes[env+"/"+image] {
		return sdk.Leftover{}, false
	}
	var k keptRecord
	_ = json.Unmarshal([]byte(v), &k)
	if k.Image == "" {
		k.Image = keptImage(image)
	}
	spec := p.sd.m.Pool + "/" + k.Image
	return sdk.Leftover{
		Kind: "copy",
		Name: fmt.Sprintf("image %s on storage %s", spec, p.sd.key()),
		Description: fmt.Sprintf("recovery point %s of image %s (taken %s), kept as a standalone copy before a resync of "+
			"environment %s, and the daemon holds no such volume any more", k.Point, image, k.Taken.UTC().Format(time.RFC3339), env),
		Remedy: remedy(fmt.Sprintf("no one needs this recovery point any more (it may be the last copy of a lost volume; "+
			"`rbd clone` or `rbd export` it first if in doubt), and nothing was cloned from it (`rbd children %s`).", spec),
			"rbd snap purge "+spec, "rbd rm "+spec, p.removeMetaCommand(key)),
	}, true
}
