package cephrbd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"syscall"
	"time"

	"github.com/ceph/go-ceph/rados"
	"github.com/ceph/go-ceph/rbd"

	"github.com/cdmdr/mirror/plugins/sdk"
)

// A resync makes rbd-mirror delete the replica, and every recovery point
// on it, before the new first copy is complete. So before the plugin asks
// for one, the newest complete recovery point on the replica is deep
// copied into a standalone image "<image>.kept" in the target pool
// (flattened, no parent, no mirroring; the user snapshots before the
// point come along) and recorded in the target pool's metadata with the
// point's time. It stands until the replica holds a complete recovery
// point made after it (keptStatus), and goes with the target
// (destroy, DeleteTarget); a stop keeps it.

// keptPrefix starts the keys of envID's kept points; "" for every
// environment's.
func keptPrefix(envID string) string {
	if envID == "" {
		return metaPrefix + "kept."
	}
	return metaPrefix + "kept." + envID + "."
}

func keptKey(envID, image string) string { return keptPrefix(envID) + image }

// keptImage names the standalone copy of image's kept point.
func keptImage(image string) string { return image + ".kept" }

// keptRecord is a kept point as the target pool's metadata records it.
// It is written only once the copy is complete: a copy without its
// record is half made.
type keptRecord struct {
	Image string    `json:"image"` // the standalone copy, in the target pool
	Point string    `json:"point"` // the replica's snapshot it was copied from
	Taken time.Time `json:"taken"` // that snapshot's time on the target
}

// recoveryPoint is a complete, consistent point of a replica.
type recoveryPoint struct {
	name  string
	id    uint64
	taken time.Time
}

// newestPoint finds the newest complete recovery point of the replica
// dst. Snapshot mode: the newest complete non-primary mirror snapshot;
// it holds the source as of its mirror snapshot, and the user snapshots
// the source took before it, so none is newer (a demoted or promoted
// snapshot after it holds what was written on the target, not the
// source's data). Journal mode: the newest user snapshot, once no image
// sync runs (until then a snapshot may lack data); journal replay creates
// snapshots in order, so one that exists is complete. ok is false when
// the replica holds none.
func newestPoint(ctx context.Context, io *rados.IOContext, name string, dst imageInfo) (recoveryPoint, bool, error) {
	if !dst.exists || hasSyncPoint(dst.snaps) {
		return recoveryPoint{}, false, nil
	}
	ids := map[string]uint64{}
	for _, s := range dst.snaps {
		ids[s.Name] = s.Id
	}
	var p recoveryPoint
	found := false
	if dst.mode == rbd.ImageMirrorModeSnapshot {
		ms, err := call(ctx, func() ([]mirrorSnapshot, error) { return mirrorSnapshots(io, name, dst.snaps) })
		if err != nil {
			return p, false, err
		}
		for _, s := range ms { // oldest first
			if s.nonPrimary && s.complete {
				p, found = recoveryPoint{name: s.name, id: ids[s.name]}, true
			}
		}
	} else {
		for _, s := range dst.snaps {
			if strings.HasPrefix(s.Name, "snapshot-") && (!found || s.Id > p.id) {
				p, found = recoveryPoint{name: s.Name, id: s.Id}, true
			}
		}
	}
	if !found {
		return p, false, nil
	}
	ts, err := call(ctx, func() (rbd.Timespec, error) {
		img, err := rbd.OpenImageReadOnly(io, name, rbd.NoSnapshot)
		if err != nil {
			return rbd.Timespec{}, err
		}
		defer img.Close()
		return img.GetSnapTimestamp(p.id)
	})
	if err != nil {
		return p, false, fmt.Errorf("read the time of snapshot %s of %s: %w", p.name, name, err)
	}
	p.taken = time.Unix(ts.Sec, ts.Nsec).UTC()
	return p, true, nil
}

// readKept reads the volume's kept record; ok is false when there is
// none (or it does not decode).
func readKept(ctx context.Context, io *rados.IOContext, envID, image string) (k keptRecord, ok bool, err error) {
	key := keptKey(envID, image)
	val, err := call(ctx, func() (string, error) { v, _, err := getPoolMeta(io, key); return v, err })
	if err != nil {
		return k, false, fmt.Errorf("read kept point record %s: %w", key, err)
	}
	if val == "" || json.Unmarshal([]byte(val), &k) != nil || k.Image == "" {
		return keptRecord{}, false, nil
	}
	return k, true, nil
}

// keptPoints reads every kept record of envID in one call, by image.
func keptPoints(ctx context.Context, io *rados.IOContext, envID string) (map[string]keptRecord, error) {
	kv, err := call(ctx, func() (map[string]string, error) { return listPoolMeta(io, keptPrefix(envID)) })
	if err != nil {
		return nil, fmt.Errorf("list kept point records: %w", err)
	}
	out := make(map[string]keptRecord, len(kv))
	for k, v := range kv {
		var r keptRecord
		if json.Unmarshal([]byte(v), &r) == nil && r.Image != "" {
			out[strings.TrimPrefix(k, keptPrefix(envID))] = r
		}
	}
	return out, nil
}

// keepBeforeResync keeps the newest complete recovery point of the
// volume's replica before a resync deletes it. A finished copy (record
// and image there) is reused; a half-made one is made again. Any failure
// is returned, and the caller must not resync then.
func (b *Backend) keepBeforeResync(ctx context.Context, vol sdk.Volume, v *volConns) (keptRecord, bool, error) {
	k, ok, err := readKept(ctx, v.dstIO, vol.Environment.ID, v.name)
	if err != nil {
		return k, false, err
	}
	if ok {
		there, err := imageExists(ctx, v.dstIO, k.Image)
		if err != nil || there {
			return k, there, err
		}
	}
	dst, err := inspect(ctx, v.dstIO, v.name, false)
	if err != nil {
		return k, false, fmt.Errorf("read the replica %s on storage %s: %w", v.spec, v.dst.key(), err)
	}
	p, found, err := newestPoint(ctx, v.dstIO, v.name, dst)
	if err != nil {
		return k, false, fmt.Errorf("find the newest recovery point of %s on storage %s: %w", v.spec, v.dst.key(), err)
	}
	if !found {
		b.log.Info("no complete recovery point to keep before the resync", "env", vol.Environment.ID, "image", v.name)
		return keptRecord{}, false, nil
	}
	k = keptRecord{Image: keptImage(v.name), Point: p.name, Taken: p.taken}
	if err := removeKeptImage(ctx, v.dstIO, k.Image); err != nil { // half made
		return k, false, fmt.Errorf("remove the half-made copy %s/%s on storage %s: %w", v.dst.m.Pool, k.Image, v.dst.key(), err)
	}
	if err := b.checkKeptRoom(ctx, v); err != nil {
		return k, false, err
	}
	err = do(ctx, func() error {
		img, err := rbd.OpenImageReadOnly(v.dstIO, v.name, rbd.NoSnapshot)
		if err != nil {
			return err
		}
		defer img.Close()
		if err := img.SetSnapByID(p.id); err != nil {
			return err
		}
		opts := rbd.NewRbdImageOptions()
		defer opts.Destroy()
		// Standalone: no journal (nor mirroring, which image mode enables
		// only on request). No object map either: Pacific's deep copy
		// from a mirror-namespace snapshot, which it does not copy, rolls
		// the new object map back to a snapshot it lacks and aborts the
		// process (ceph_assert in object_map::SnapshotRollbackRequest).
		// `rbd feature enable IMAGE object-map fast-diff` adds it later.
		features := dst.features &^ (rbd.FeatureJournaling | rbd.FeatureObjectMap | rbd.FeatureFastDiff)
		if err := opts.SetUint64(rbd.ImageOptionFeatures, features); err != nil {
			return err
		}
		return img.DeepCopy(v.dstIO, k.Image, opts)
	})
	if err != nil {
		return k, false, fmt.Errorf("copy recovery point %s of %s into %s/%s on storage %s: %w", p.name, v.spec, v.dst.m.Pool, k.Image, v.dst.key(), err)
	}
	data, _ := json.Marshal(k)
	key := keptKey(vol.Environment.ID, v.name)
	if err := do(ctx, func() error { return setPoolMeta(v.dstIO, key, string(data)) }); err != nil {
		return k, false, fmt.Errorf("record the kept point %s: %w", key, err)
	}
	b.log.Info("recovery point kept", "env", vol.Environment.ID, "image", v.name, "copy", k.Image, "point", p.name, "taken", p.taken)
	return k, true, nil
}

// checkKeptRoom refuses a copy the target pool has no room for: the
// copy may need the whole image.
func (b *Backend) checkKeptRoom(ctx context.Context, v *volConns) error {
	size, err := imageSize(ctx, v.dstIO, v.name)
	if err != nil {
		return fmt.Errorf("read the size of %s on storage %s: %w", v.spec, v.dst.key(), err)
	}
	room, err := b.targetRoom(ctx, v)
	if err != nil {
		return err
	}
	if left := room.left(); left < size {
		return fmt.Errorf("the replica %s on storage %s is %s, more than the %s left in its pool: "+
			"there is no room to keep its newest recovery point: %w", v.spec, v.dst.key(), sizeText(size), sizeText(left), sdk.ErrPrecondition)
	}
	return nil
}

// imageExists says whether the pool holds the image.
func imageExists(ctx context.Context, io *rados.IOContext, name string) (bool, error) {
	return call(ctx, func() (bool, error) {
		img, err := rbd.OpenImageReadOnly(io, name, rbd.NoSnapshot)
		if errors.Is(err, rbd.ErrNotFound) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		img.Close()
		return true, nil
	})
}

// removeKeptImage removes a kept copy and its snapshots (those the deep
// copy brought along, and any an operator took); a missing one is fine.
// A copy someone cloned is left whole (ErrPrecondition): the clone
// depends on it, and removing the snapshot first would only hide it in
// the trash.
func removeKeptImage(ctx context.Context, io *rados.IOContext, name string) error {
	err := do(ctx, func() error {
		img, err := rbd.OpenImage(io, name, rbd.NoSnapshot)
		if err != nil {
			return err
		}
		snaps, err := img.GetSnapshotNames()
		if err != nil {
			img.Close()
			return err
		}
		if err := refuseClones(img, snaps); err != nil {
			img.Close()
			return err
		}
		for _, s := range snaps {
			if err := removeSnapshot(img, s.Name); err != nil {
				img.Close()
				return fmt.Errorf("snapshot %s: %w", s.Name, err)
			}
		}
		img.Close()
		return rbd.RemoveImage(io, name)
	})
	if errors.Is(err, rbd.ErrNotFound) || isErrno(err, syscall.ENOENT) {
		return nil
	}
	return err
}

// dropKept removes the volume's kept copy, then its record.
func dropKept(ctx context.Context, v *volConns, envID string, k keptRecord) error {
	if err := removeKeptImage(ctx, v.dstIO, k.Image); err != nil {
		return fmt.Errorf("remove the kept copy %s/%s on storage %s: %w", v.dst.m.Pool, k.Image, v.dst.key(), err)
	}
	key := keptKey(envID, v.name)
	if err := do(ctx, func() error { return removePoolMeta(v.dstIO, key) }); err != nil {
		return fmt.Errorf("remove the kept point record %s: %w", key, err)
	}
	return nil
}

// keptStatus is what VolumeStatus reports of the volume's kept point.
// Once the replica dst holds a complete recovery point made after it,
// the kept copy is removed here, at the status poll: the poll comes
// regularly, already reads the replica, and the copy should not outlive
// its use by more than one poll. A removal that fails leaves it standing
// and reported (tried again at the next poll).
func (b *Backend) keptStatus(ctx context.Context, vol sdk.Volume, v *volConns, dst imageInfo) (sdk.KeptPoint, error) {
	k, ok, err := readKept(ctx, v.dstIO, vol.Environment.ID, v.name)
	if err != nil || !ok {
		return sdk.KeptPoint{}, err
	}
	kept := sdk.KeptPoint{Name: fmt.Sprintf("image %s/%s on storage %s", v.dst.m.Pool, k.Image, v.dst.key()), Taken: k.Taken}
	if !dst.following() {
		return kept, nil // no replica being replayed into: nothing newer can arrive
	}
	p, found, err := newestPoint(ctx, v.dstIO, v.name, dst)
	if err != nil || !found || !p.taken.After(k.Taken) {
		return kept, nil
	}
	if err := dropKept(ctx, v, vol.Environment.ID, k); err != nil {
		b.log.Warn("kept point not removed", "env", vol.Environment.ID, "image", v.name, "err", err)
		return kept, nil
	}
	b.log.Info("kept point removed: the replica holds a newer one", "env", vol.Environment.ID, "image", v.name, "point", p.name, "taken", p.taken)
	return sdk.KeptPoint{}, nil
}

// dropKeptOf removes the volume's kept point, if one stands.
func dropKeptOf(ctx context.Context, v *volConns, envID string) error {
	k, ok, err := readKept(ctx, v.dstIO, envID, v.name)
	if err != nil || !ok {
		return err
	}
	return dropKept(ctx, v, envID, k)
}

// refuseClones fails when a snapshot of img has clones.
func refuseClones(img *rbd.Image, snaps []rbd.SnapInfo) error {
	defer img.SetSnapshot(rbd.NoSnapshot)
	for _, s := range snaps {
		if err := img.SetSnapByID(s.Id); err != nil {
			return err
		}
		_, children, err := img.ListChildren()
		if err != nil {
			return fmt.Errorf("list the clones of snapshot %s: %w", s.Name, err)
		}
		if len(children) > 0 {
			return fmt.Errorf("snapshot %s has clones (%s); flatten or remove them first: %w", s.Name, strings.Join(children, ", "), sdk.ErrPrecondition)
		}
	}
	return nil
}
