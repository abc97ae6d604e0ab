package cephrbd

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/ceph/go-ceph/rados"
	"github.com/ceph/go-ceph/rbd"

	"github.com/cdmdr/mirror/plugins/sdk"
)

// StartVolume implements sdk.Backend: mirroring enabled on the source
// image (journal mode with exclusive-lock and journaling, or snapshot
// mode with the storage's schedule), and a paused volume resumed. Before
// it enables mirroring it refuses while the source pool feeds another
// target cluster (layout_check.go), and it marks the image with its
// environment (image_mark.go).
func (b *Backend) StartVolume(ctx context.Context, vol sdk.Volume) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	v, err := b.openVol(ctx, vol)
	if err != nil {
		return err
	}
	defer v.close()
	mk, ok, err := b.preparedMarker(ctx, v.dstIO, vol.Environment.ID)
	if err != nil {
		return denied(err, v.dst, false, roleTarget, "read the metadata of pool "+v.dst.m.Pool, "")
	}
	if !ok {
		return fmt.Errorf("environment %s is not prepared: %w", vol.Environment.ID, sdk.ErrPrecondition)
	}
	if err := refuseKeptCopy(ctx, v, vol.Environment.ID); err != nil {
		return err
	}
	if mk.ship() {
		return b.startShip(ctx, vol, v)
	}
	in, err := inspect(ctx, v.srcIO, v.name, false)
	if err != nil {
		return denied(fmt.Errorf("read image %s/%s on storage %s: %w", v.src.m.Pool, v.name, v.src.key(), err),
			v.src, false, roleSource, "read image "+v.src.m.Pool+"/"+v.name, "")
	}
	if err := v.checkSource(in); err != nil {
		return err
	}
	v.globalID = in.mirror.GlobalID
	if in.mirror.State == rbd.MirrorImageEnabled {
		// Started by an earlier release, or again: the mark tells this
		// environment's copies from unintended ones (unintended.go).
		if err := markImage(ctx, v.srcIO, v.name, vol.Environment.ID); err != nil {
			b.log.Warn("could not mark the image with its environment", "env", vol.Environment.ID, "image", v.name, "err", err)
		}
	}
	if in.mirror.State != rbd.MirrorImageEnabled {
		if err := b.checkVolumeFeed(ctx, vol, v, mk.TargetSite); err != nil {
			return err
		}
		if err := b.checkRoom(ctx, v); err != nil {
			return err
		}
		if err := b.enableMirroring(ctx, vol, v, in); err != nil {
			return denied(err, v.src, false, roleSource, "enable mirroring on image "+v.src.m.Pool+"/"+v.name, "")
		}
	}
	if v.src.m.MirrorMode == modeSnapshot && v.src.m.MirrorSnapshotInterval != "" {
		if err := b.addSchedule(ctx, v); err != nil {
			return err
		}
	}
	// Start resumes a paused volume; the replication is set up whichever
	// host runs rbd-mirror.
	return b.resume(ctx, vol, v, false)
}

// checkRoom refuses, before the first copy starts, a volume whose image
// is larger than the room left in the target pool (its max_avail, or
// what its byte quota leaves).
func (b *Backend) checkRoom(ctx context.Context, v *volConns) error {
	size, err := imageSize(ctx, v.srcIO, v.name)
	if err != nil {
		return fmt.Errorf("read the size of image %s/%s on storage %s: %w", v.src.m.Pool, v.name, v.src.key(), err)
	}
	room, err := b.targetRoom(ctx, v)
	if err != nil {
		return err
	}
	if left := room.left(); left < size {
		why := fmt.Sprintf("max_avail %s", sizeText(room.MaxAvail))
		if room.QuotaBytes > 0 {
			why += fmt.Sprintf(", quota %s of which %s used", sizeText(room.QuotaBytes), sizeText(room.Stored))
		}
		return fmt.Errorf("image %s/%s on storage %s is %s, more than the %s left in pool %s on storage %s (%s); "+
			"make room there (add capacity, raise the quota with `ceph osd pool set-quota %s max_bytes <bytes>`) before replicating it: %w",
			v.src.m.Pool, v.name, v.src.key(), sizeText(size), sizeText(left), v.dst.m.Pool, v.dst.key(), why, v.dst.m.Pool, sdk.ErrPrecondition)
	}
	return nil
}

// checkSource refuses a source image that is missing or is itself a
// non-primary mirror copy.
func (v *volConns) checkSource(in imageInfo) error {
	if !in.exists {
		return fmt.Errorf("image %s/%s does not exist on storage %s: %w", v.src.m.Pool, v.name, v.src.key(), sdk.ErrNotFound)
	}
	if in.following() {
		return fmt.Errorf("image %s/%s on storage %s is a non-primary mirror copy itself; it cannot be a source: %w",
			v.src.m.Pool, v.name, v.src.key(), sdk.ErrPrecondition)
	}
	return nil
}

// enableMirroring enables mirroring on the source image in the storage's
// mode; journal mode first needs the exclusive-lock and journaling
// features.
func (b *Backend) enableMirroring(ctx context.Context, vol sdk.Volume, v *volConns, in imageInfo) error {
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
		// The mark first: the copy's first sync carries it.
		if err := setImageMark(img, vol.Environment.ID); err != nil {
			return err
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
	return nil
}

// refuseKeptCopy refuses a start while the target holds a copy a stop or
// destroy kept when the source was unreachable (its leftover record says
// so): rbd-mirror cannot create its copy under that taken name, and the
// two may differ since (split brain). The operator decides first.
func refuseKeptCopy(ctx context.Context, v *volConns, envID string) error {
	type record struct {
		value string
		found bool
	}
	r, err := call(ctx, func() (record, error) {
		value, found, err := getPoolMeta(v.dstIO, leftoverKey(envID, v.name))
		return record{value, found}, err
	})
	if err != nil || !r.found {
		return err
	}
	var l sdk.Leftover
	_ = json.Unmarshal([]byte(r.value), &l)
	return fmt.Errorf("the target pool %s on storage %s holds %s, a copy kept while the source was unreachable (%s); "+
		"rbd-mirror cannot replicate into that name, and the two may differ since. Decide which to keep "+
		"(docs/runbook.md), clean what `mirrord leftovers` lists, then start again: %w",
		v.dst.m.Pool, v.dst.key(), v.name, l.Description, sdk.ErrPrecondition)
}

// imageSize reads the size of the pool's image.
func imageSize(ctx context.Context, io *rados.IOContext, name string) (uint64, error) {
	return call(ctx, func() (uint64, error) {
		img, err := rbd.OpenImageReadOnly(io, name, rbd.NoSnapshot)
		if err != nil {
			return 0, err
		}
		defer img.Close()
		return img.GetSize()
	})
}

// targetRoom reads the room of v's target pool as the target's client.
func (b *Backend) targetRoom(ctx context.Context, v *volConns) (poolRoom, error) {
	conn, err := b.conn(ctx, v.dst, false)
	if err != nil {
		return poolRoom{}, err
	}
	room, err := poolSpace(ctx, conn, v.dst)
	if err != nil {
		return poolRoom{}, denied(err, v.dst, false, roleTarget, "read the space of pool "+v.dst.m.Pool+" (ceph df)", "")
	}
	return room, nil
}
